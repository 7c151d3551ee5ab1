"""One ComfyUI per GPU: choosing the GPUs, ports and folders, sharing calibrations by model.

The GPU list is a recorded NVML answer of three GPUs (two H100s and an H200,
`tests/data/nvml-3gpu.json`) played back through pynvml's functions, so
`edges/gpu.py` parses it as it parses a real one.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from installer.attention.rules.records import dump_calibration, parse_calibration
from installer.attention.rules.routing import AttentionProbe
from installer.core.errors import EnvironmentUnsupportedError, UsageError
from installer.core.facts import GpuReport
from installer.core.log import InstallerLogger
from installer.edges.gpu import detect_gpus
from installer.plan.fleet import (
    check_distinct_ports,
    member_args,
    member_environment,
    member_report,
    parse_gpu_selection,
    plan_fleet,
    select_gpus,
)
from installer.plan.launch import LaunchFacts
from support.attention import H200_VERSIONS, h200_calibration
from support.nvml_record import load_answer, play_answer

H100 = "NVIDIA H100 80GB HBM3"


@pytest.fixture
def three(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> GpuReport:
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi to fall back to
    play_answer(monkeypatch)
    return detect_gpus()


def test_the_recorded_answer_is_parsed_by_the_real_detection(three: GpuReport) -> None:
    answer = load_answer()
    assert three.source == "nvml"
    assert [(g.index, g.name, g.cc) for g in three.gpus] == [
        (0, H100, "9.0"), (1, H100, "9.0"), (2, "NVIDIA H200", "9.0"),
    ]  # fmt: skip
    assert three.gpus[2].vram_total_bytes == answer["devices"][2]["nvmlDeviceGetMemoryInfo.total"]
    assert three.gpus[1].uuid != three.gpus[0].uuid
    assert (three.driver_version, three.cuda_driver_version) == ("580.159.04", "13.0")


@pytest.mark.parametrize(
    ("text", "wanted"),
    [("all", None), ("ALL", None), ("0", (0,)), ("2,0", (2, 0)), (" 1 , 2 ", (1, 2))],
)
def test_gpu_selection(text: str, wanted: tuple[int, ...] | None) -> None:
    assert parse_gpu_selection(text) == wanted


@pytest.mark.parametrize("text", ["", "one", "0,,1", "-1", "0,0", "1.5"])
def test_bad_gpu_selections_are_refused(text: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_gpu_selection(text)
    assert caught.value.exit_code == 2


def test_select_gpus_from_the_report(three: GpuReport) -> None:
    assert [g.index for g in select_gpus("all", three)] == [0, 1, 2]
    assert [g.index for g in select_gpus("2,0", three)] == [2, 0]
    with pytest.raises(UsageError) as caught:
        select_gpus("0,5", three)
    assert "GPU 5" in caught.value.message
    assert "2 (NVIDIA H200)" in (caught.value.hint or "")


def test_no_gpu_means_no_fleet() -> None:
    with pytest.raises(EnvironmentUnsupportedError) as caught:
        select_gpus("all", GpuReport("none", "NVML is unavailable"))
    assert caught.value.exit_code == 3
    assert "NVML is unavailable" in caught.value.message


def test_ports_folders_and_who_measures(three: GpuReport) -> None:
    fleet = plan_fleet(select_gpus("all", three), 8188)
    assert [(m.gpu.index, m.port, m.folder, m.measures) for m in fleet.members] == [
        (0, 8188, "gpu-0", True), (1, 8189, "gpu-1", False), (2, 8190, "gpu-2", True),
    ]  # fmt: skip
    assert {model: [m.gpu.index for m in ms] for model, ms in fleet.models.items()} == {
        f"{H100} (cc 9.0)": [0, 1],
        "NVIDIA H200 (cc 9.0)": [2],
    }
    with pytest.raises(UsageError):
        plan_fleet(three.gpus, 65534)


def test_each_member_sees_only_its_gpu(three: GpuReport) -> None:
    report = member_report(three, three.gpus[2])
    assert [g.name for g in report.gpus] == ["NVIDIA H200"]
    assert report.driver_version == three.driver_version
    assert report.reason.startswith("GPU 2 of 3")


def test_member_arguments(three: GpuReport) -> None:
    member = plan_fleet(three.gpus, 9000).members[1]
    assert member_args(("--cpu",), member, "/d/gpu-1") == (
        "--cpu", "--cuda-device", "1", "--temp-directory", "/d/gpu-1",
    )  # fmt: skip
    kept = member_args(("--temp-directory", "/mine"), member, "/d/gpu-1")
    assert kept.count("--temp-directory") == 1
    for taken in (("--port", "1"), ("--cuda-device=0",)):
        with pytest.raises(UsageError) as caught:
            member_args(taken, member, "/d")
        assert "conflicts with --gpus" in caught.value.message


def test_device_order_follows_nvml_unless_the_user_chose() -> None:
    assert member_environment({}) == {"CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    assert member_environment({"CUDA_DEVICE_ORDER": "FASTEST_FIRST"}) == {}


def test_shared_ports_are_refused() -> None:
    check_distinct_ports([8188, 8189])
    with pytest.raises(UsageError):
        check_distinct_ports([8188, 8188])


def _facts(install: Path, report: GpuReport) -> LaunchFacts:
    return LaunchFacts(
        platform="linux",
        venv_python=install / "venv/bin/python",
        comfyui_dir=install / "ComfyUI",
        gpu=report,
        attention=AttentionProbe(dict(H200_VERSIONS)),
    )


def test_one_calibration_per_gpu_model(three: GpuReport, tmp_path: Path) -> None:
    from installer.commands.launch_fleet import share_calibrations

    install = tmp_path / "inst"
    state = install / ".comfy-install"
    state.mkdir(parents=True)
    own = dump_calibration(h200_calibration(gpu=H100))
    (state / "calibration.json").write_text(own)
    measured: list[int] = []

    def tuner(directory: Path, member: object, log: InstallerLogger) -> Path:
        index = member.gpu.index  # type: ignore[attr-defined]
        measured.append(index)
        target = directory / ".comfy-install/fleet" / f"gpu-{index}" / "calibration.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(dump_calibration(h200_calibration()))
        return target

    fleet = plan_fleet(three.gpus, 8188)
    log = InstallerLogger(verbosity=-1)
    found = share_calibrations(fleet, _facts(install, three), install, log, tuner)
    assert measured == [2], "the H200 is measured once, the two H100s share the install's"
    assert found[f"{H100} (cc 9.0)"] == str(state / "calibration.json")
    assert found["NVIDIA H200 (cc 9.0)"] == "measured"
    for index, name in ((0, H100), (1, H100), (2, "NVIDIA H200")):
        text = (state / f"fleet/gpu-{index}/calibration.json").read_text()
        assert parse_calibration(text).measured_on.gpu_name == name
    assert (state / "calibration.json").read_text() == own, "the install's own is untouched"

    again = share_calibrations(fleet, _facts(install, three), install, log, tuner)
    assert measured == [2], "a calibration that still describes the GPU is kept"
    assert set(again.values()) == {"kept"}


def test_a_failed_measurement_leaves_the_default_attention(
    three: GpuReport, tmp_path: Path
) -> None:
    from installer.commands.launch_fleet import share_calibrations

    install = tmp_path / "inst"
    (install / ".comfy-install").mkdir(parents=True)
    fleet = plan_fleet(three.gpus[:2], 8188)
    log = InstallerLogger(verbosity=-1)
    calls: list[int] = []

    def failing(directory: Path, member: object, log: InstallerLogger) -> None:
        calls.append(member.gpu.index)  # type: ignore[attr-defined]

    found = share_calibrations(fleet, _facts(install, three), install, log, failing)
    assert calls == [0]
    assert found == {f"{H100} (cc 9.0)": "none"}
    assert not list((install / ".comfy-install").rglob("calibration.json"))


def test_status_and_stop_without_a_fleet(tmp_path: Path) -> None:
    from installer.commands.launch_fleet import stop_install
    from installer.launch.fleet import fleet_status

    install = tmp_path / "inst"
    (install / ".comfy-install").mkdir(parents=True)
    assert fleet_status(install) == []
    data = stop_install(install, InstallerLogger(verbosity=-1))
    assert data["was_running"] is False
    assert "fleet" not in data


def test_a_dead_member_is_listed_and_cleaned_by_stop(tmp_path: Path) -> None:
    import json

    from installer.commands.launch_fleet import stop_install
    from installer.launch.fleet import fleet_status

    install = tmp_path / "inst"
    folder = install / ".comfy-install/fleet/gpu-1"
    folder.mkdir(parents=True)
    dead = 2**22 + os.getpid()  # above the default pid_max: no such process
    record = {"pid": dead, "port": 8189, "url": "http://127.0.0.1:8189",
              "started_at": "2026-12-06", "log": "x.log", "argv": ["main.py"]}  # fmt: skip
    (folder / "comfyui.pid").write_text(json.dumps(record))
    [listed] = fleet_status(install, probe=lambda url: pytest.fail("a dead member is not asked"))
    assert (listed["gpu"], listed["port"], listed["running"], listed["ready"]) == (
        1, 8189, False, False,
    )  # fmt: skip
    data = stop_install(install, InstallerLogger(verbosity=-1))
    assert data["fleet"][0]["stale"] is True
    assert not (folder / "comfyui.pid").exists()
