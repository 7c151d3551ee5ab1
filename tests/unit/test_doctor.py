"""`comfy-install doctor`: checks with a status and a hint, on this machine and on a faked H100."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from installer.commands.doctor import Check, checks_from_report, doctor_report, system_checks
from installer.core.config import Dependencies, ToolsManifest
from installer.core.facts import Environment, GpuReport, InstallProbe, Tool
from installer.core.records import InstallState, StepRecord
from installer.edges.gpu import detect_gpus
from installer.plan.build import build_plan
from installer.plan.records import InstallOptions, Plan

STATUSES = {"ok", "warn", "fail", "info"}


def plan_for(
    deps: Dependencies, manifest: ToolsManifest, env: Environment, gpu: GpuReport, target: Path
) -> Plan:
    return build_plan(deps, manifest, env, gpu, InstallOptions(install_dir=target, dry_run=True))


def check(report: dict[str, Any], section: str, name: str) -> dict[str, Any]:
    found = [c for c in report["checks"] if c["section"] == section and c["name"] == name]
    assert len(found) == 1, (section, name, report["checks"])
    return found[0]


@pytest.fixture
def h100_report(
    nvml: Callable[..., Any],
    deps: Dependencies,
    manifest: ToolsManifest,
    fake_env: Environment,
    tmp_path: Path,
) -> dict[str, Any]:
    nvml()
    gpu = detect_gpus()
    plan = plan_for(deps, manifest, fake_env, gpu, tmp_path / "x")
    return doctor_report(fake_env, gpu, plan, None)


def test_doctor_on_the_h100(h100_report: dict[str, Any]) -> None:
    report = h100_report
    driver = check(report, "gpu", "driver")
    assert driver["status"] == "ok"
    assert driver["detail"] == "driver 580.159.04, supports CUDA 13.0 (nvml)"
    gpu = check(report, "gpu", "gpu 0")
    assert gpu["status"] == "ok"
    assert gpu["detail"] == (
        "NVIDIA H100 80GB HBM3, compute capability 9.0, 79.6 GiB VRAM, 79.2 GiB free"
    )
    torch = check(report, "torch", "build")
    assert torch["status"] == "ok"
    assert torch["detail"].startswith(
        "cu130 (https://download.pytorch.org/whl/cu130): newest configured build for "
        "compute capability 9.0"
    )
    assert "the driver supports CUDA 13.0" in torch["detail"]
    assert report["gpu"]["gpus"][0]["name"] == "NVIDIA H100 80GB HBM3"
    assert report["gpu"]["cuda_driver_version"] == "13.0"
    assert report["torch"]["variant"] == "cu130"
    assert report["overall"] == "ok"
    xformers = check(report, "optimizations", "xformers")
    assert (xformers["status"], xformers["detail"].split(":")[0]) == (
        "ok",
        "xformers==0.0.35",
    )
    assert report["install"] is None
    json.dumps(report)  # the data of `doctor --json`: must serialise as is


def test_doctor_on_an_h100_with_an_old_driver_says_minor_version_compatibility(
    nvml: Callable[..., Any],
    deps: Dependencies,
    manifest: ToolsManifest,
    fake_env: Environment,
    tmp_path: Path,
) -> None:
    # A 550 driver (CUDA 12.4): cu128 runs through minor-version compatibility; doctor says
    # so, with the limits, and which driver lifts them.
    nvml(driver="550.127.05", cuda=12040)
    gpu = detect_gpus()
    report = doctor_report(fake_env, gpu, plan_for(deps, manifest, fake_env, gpu, tmp_path), None)
    torch = check(report, "torch", "build")
    assert torch["status"] == "warn"
    assert torch["detail"].startswith("cu128 ")
    assert "through CUDA minor-version compatibility, with limits" in torch["detail"]
    assert torch["hint"] == (
        "Install a driver that supports CUDA 12.8 (Linux ≥ 570.26) to lift the limits of "
        "minor-version compatibility."
    )
    assert report["torch"]["minor_version_compat"] in torch["detail"]
    triton = check(report, "optimizations", "triton")
    assert "device kernel image is invalid" in triton["detail"]
    assert check(report, "optimizations", "xformers")["status"] == "ok"
    assert report["overall"] == "warn"


def test_doctor_on_a_gpu_with_a_cuda_11_driver_says_what_to_install(
    nvml: Callable[..., Any],
    deps: Dependencies,
    manifest: ToolsManifest,
    fake_env: Environment,
    tmp_path: Path,
) -> None:
    nvml(driver="520.61.05", cuda=11080)
    gpu = detect_gpus()
    report = doctor_report(fake_env, gpu, plan_for(deps, manifest, fake_env, gpu, tmp_path), None)
    torch = check(report, "torch", "build")
    assert torch["status"] == "warn"
    assert torch["detail"].startswith("cpu ")
    assert torch["hint"].startswith("Install a driver that supports CUDA 13.0 (Linux ≥ 580.65.06)")
    assert "any CUDA 12 driver runs cu128" in torch["hint"]


def test_doctor_without_a_gpu(
    deps: Dependencies, manifest: ToolsManifest, fake_env: Environment, tmp_path: Path
) -> None:
    from installer.core.facts import no_gpu

    gpu = no_gpu("no NVIDIA GPU: NVML is unavailable")
    report = doctor_report(fake_env, gpu, plan_for(deps, manifest, fake_env, gpu, tmp_path), None)
    none = check(report, "gpu", "nvidia gpu")
    assert none["status"] == "warn"
    assert "CPU" in none["hint"]
    assert check(report, "torch", "build")["status"] == "ok"
    assert all(c["status"] == "info" for c in report["checks"] if c["section"] == "optimizations")


def test_system_checks_fail_with_hints(ref: SimpleNamespace) -> None:
    env = ref.make_env(
        git=Tool("git", error="git was not found on PATH"),
        uv=Tool("uv", error="uv was not found on PATH"),
        free_disk_bytes=2 * 2**30,
        platform="darwin",
    )
    checks = {c.name: c for c in system_checks(env, 15, ">=3.10,<3.14")}
    assert checks["os"].status == "fail"
    assert checks["git"].status == "fail"
    assert checks["uv"].status == "fail"
    assert checks["disk"].status == "warn"
    assert "2.0 GiB free" in checks["disk"].detail
    for name in ("os", "git", "uv", "disk"):
        assert checks[name].hint, name


def test_unprobed_build_tools_are_not_shown_as_none(fake_env: Environment) -> None:
    checks = {c.name: c for c in system_checks(fake_env, 15, ">=3.10,<3.14")}
    assert checks["compiler"].detail != "None"
    assert checks["cuda toolkit"].detail != "None"


def test_doctor_reports_an_existing_install(
    deps: Dependencies, manifest: ToolsManifest, fake_env: Environment, tmp_path: Path
) -> None:
    from installer.core.facts import gpu_override

    gpu = gpu_override("9.0", "13.0")
    first = plan_for(deps, manifest, fake_env, gpu, tmp_path)
    state = InstallState(
        steps={
            s.id: StepRecord(
                status="failed" if s.id == "torch" else "done",
                fingerprint=s.fingerprint,
                inputs=s.inputs,
                seq=s.number,
                finished_at="2026-11-23T08:00:00+00:00",
            )
            for s in first.steps
            if s.id in ("uv", "gpu", "torch", "launchers")
        }
    )
    probe = InstallProbe(install_dir=tmp_path, state=state, existing_files=frozenset({"launcher"}))
    plan = build_plan(
        deps, manifest, fake_env, gpu, InstallOptions(install_dir=tmp_path, dry_run=True), probe
    )
    report = doctor_report(fake_env, gpu, plan, probe)
    assert check(report, "install", "uv")["detail"] == "done 2026-11-23T08:00:00+00:00"
    assert check(report, "install", "launchers")["status"] == "ok"
    torch = check(report, "install", "torch")
    assert torch["status"] == "fail"
    assert torch["hint"] == f"comfy-install install {tmp_path}"
    assert check(report, "install", "models")["status"] == "info"
    assert report["install"]["steps"]["torch"] == "run"
    assert report["overall"] == "fail"


def test_checks_round_trip(h100_report: dict[str, Any]) -> None:
    checks = checks_from_report(h100_report)
    assert all(isinstance(c, Check) for c in checks)
    assert [c.name for c in checks] == [c["name"] for c in h100_report["checks"]]


def test_doctor_json_on_this_machine(cli: Callable[..., Any], tmp_path: Path) -> None:
    result = cli("doctor", tmp_path / "none-here", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["command"] == ["doctor", str(tmp_path / "none-here")]
    data = document["data"]
    assert data["overall"] in {"ok", "warn", "fail"}
    assert data["checks"]
    for item in data["checks"]:
        assert set(item) == {"section", "name", "status", "detail", "hint"}
        assert item["status"] in STATUSES
        if item["status"] == "fail":
            assert item["hint"], item
    sections = {c["section"] for c in data["checks"]}
    assert {"system", "gpu", "torch", "optimizations", "install"} <= sections
    if data["gpu"]["gpus"]:
        assert check(data, "gpu", "driver")["status"] == "ok"
    else:
        no = check(data, "gpu", "nvidia gpu")
        assert no["status"] == "warn"
        assert no["hint"]
        assert data["torch"]["variant"] == "cpu"
    assert (
        check(data, "install", "state")["detail"]
        == f"no install recorded in {tmp_path / 'none-here'}"
    )
    assert not (tmp_path / "none-here").exists()


def test_doctor_cli_with_the_faked_h100(
    cli: Callable[..., Any], nvml: Callable[..., Any], tmp_path: Path
) -> None:
    nvml()
    result = cli("doctor", tmp_path, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)["data"]
    gpu = check(data, "gpu", "gpu 0")
    assert "NVIDIA H100 80GB HBM3, compute capability 9.0, 79.6 GiB VRAM" in gpu["detail"]
    assert check(data, "gpu", "driver")["detail"].startswith(
        "driver 580.159.04, supports CUDA 13.0"
    )
    assert check(data, "torch", "build")["detail"].startswith("cu130 ")
    # PATH holds only an empty folder here, so git is missing: a failure with a hint.
    git = check(data, "system", "git")
    assert git["status"] == "fail"
    assert git["hint"] == "Install git and make sure it is on PATH."


def test_doctor_text_output(
    cli: Callable[..., Any],
    nvml: Callable[..., Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "250")  # one table row per line
    nvml()
    result = cli("doctor", tmp_path)
    assert result.exit_code == 0, result.output
    assert "NVIDIA H100 80GB HBM3" in result.output
    assert "compute capability 9.0" in result.output


@pytest.mark.parametrize(
    ("gpu", "torch_cuda", "cuda", "status", "hint"),
    [
        ("none", None, False, "info", None),
        ("9.0", "13.0", True, "ok", None),
        ("9.0", "12.8", True, "warn", "a cu130 torch on a CUDA 13 driver"),
    ],
)
def test_doctor_says_which_comfy_kitchen_back_ends_load(
    deps: Dependencies,
    manifest: ToolsManifest,
    fake_env: Environment,
    tmp_path: Path,
    gpu: str,
    torch_cuda: str | None,
    cuda: bool,
    status: str,
    hint: str | None,
) -> None:
    from installer.core.facts import KitchenBackend, KitchenReport, gpu_override, no_gpu

    report_gpu = no_gpu("--gpu none") if gpu == "none" else gpu_override(gpu, "13.0")
    kitchen = KitchenReport(
        True,
        "0.2.31",
        torch_cuda,
        (
            KitchenBackend(
                "cuda", cuda, reason=None if cuda else "CUDA not available on this system"
            ),
            KitchenBackend("eager", True),
        ),
    )
    plan = plan_for(deps, manifest, fake_env, report_gpu, tmp_path)
    report = doctor_report(fake_env, report_gpu, plan, None, kitchen)
    found = check(report, "optimizations", "comfy-kitchen")
    assert found["status"] == status
    assert found["detail"] == kitchen.summary()
    assert (hint is None and found["hint"] is None) or hint in found["hint"]
    assert report["comfy_kitchen"]["backends"]["cuda"]["available"] is cuda
