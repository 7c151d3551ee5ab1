"""Attention by measurement: route tables from medians, staleness, and the launch decision."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from installer.attention.rules.records import (
    CalibrationPoint,
    MachineNow,
    dump_calibration,
    parse_calibration,
)
from installer.attention.rules.routing import AttentionProbe, CalibrationRead
from installer.attention.rules.tables import build_tables, stale_reasons, tokens_text
from installer.attention.shim.routes import ROUTES_ENV
from installer.core.facts import GpuInfo, GpuReport
from installer.plan.launch import LaunchFacts, LaunchPlan, LaunchRequest, plan_launch
from installer.plan.launch import render_print_env as print_env
from installer.plan.launch_attention import ATTENTION_FLAGS
from support.attention import H200_VERSIONS, SAGE, h200_calibration, h200_points

CALIBRATION = Path("/srv/i/.comfy-install/calibration.json")


def point(backend: str, tokens: int, speedup: float, status: str = "ok") -> CalibrationPoint:
    return CalibrationPoint(
        backend=backend, tokens=tokens, head_dim=128, dtype="fp16", batch=1, heads=24,
        status=status, median_ms=1.0 / speedup, speedup=speedup,  # type: ignore[arg-type]
    )  # fmt: skip


def bands(points: list[CalibrationPoint]) -> list[tuple[int, int | None, str]]:
    [table] = build_tables(points)
    return [(b.min_tokens, b.max_tokens, b.backend) for b in table.bands]


# --- route tables from the raw medians ---------------------------------------------------


def test_the_h200_crossovers() -> None:
    calibration = h200_calibration()
    d128 = calibration.table(128, "fp16")
    assert d128 is not None
    assert d128.crossovers == [16384]
    assert [(b.min_tokens, b.max_tokens, b.backend) for b in d128.bands] == [
        (0, 16384, "sdpa"),
        (16384, None, "sageattention"),
    ]
    sage = d128.bands[1]
    assert (sage.least_speedup, sage.best_speedup, sage.best_at_tokens) == (1.2, 1.46, 75600)
    # 1.01x at 16K is noise, not a win: D=64 fp16 crosses at 32K.
    assert h200_calibration().table(64, "fp16").crossovers == [32768]  # type: ignore[union-attr]
    # SD1.5's head dim: SageAttention never wins, so there is no band for it.
    assert h200_calibration().table(40, "fp16").bands[0].backend == "sdpa"  # type: ignore[union-attr]
    assert d128.backend_for(4096) == "sdpa" and d128.backend_for(32760) == "sageattention"
    assert d128.backend_for(200_000) == "sageattention"  # beyond the longest measured


def test_a_wrong_or_failing_backend_is_never_chosen_however_fast() -> None:
    points = [point("sdpa", n, 1.0) for n in (1024, 4096)]
    points += [
        point("sageattention", 1024, 3.0, "wrong"),
        point("sageattention", 4096, 3.0, "error"),
    ]
    assert bands(points) == [(0, None, "sdpa")]


def test_a_stretch_goes_to_a_backend_only_when_it_won_at_both_ends() -> None:
    lengths = (1024, 2048, 4096, 8192)
    points = [point("sdpa", n, 1.0) for n in lengths]
    speedups = (0.5, 1.3, 0.9, 1.2)
    points += [point("sageattention", n, s) for n, s in zip(lengths, speedups, strict=True)]
    # The lone win at 2K does not make 2K..4K a band; the win from 8K up does.
    assert bands(points) == [(0, 8192, "sdpa"), (8192, None, "sageattention")]


def test_of_two_winners_the_one_with_the_better_worst_end_wins() -> None:
    points = [point("sdpa", n, 1.0) for n in (1024, 2048)]
    points += [point("sageattention", 1024, 1.1), point("sageattention", 2048, 1.4)]
    points += [point("xformers", 1024, 1.2), point("xformers", 2048, 1.2)]
    assert bands(points) == [
        (0, 1024, "sdpa"),
        (1024, 2048, "xformers"),
        (2048, None, "sageattention"),
    ]


@pytest.mark.parametrize(
    ("tokens", "text"),
    [(512, "512"), (1024, "1K"), (16384, "16K"), (75600, "75.6K"), (4608, "4.6K")],
)
def test_tokens_text(tokens: int, text: str) -> None:
    assert tokens_text(tokens) == text


# --- the file and staleness ------------------------------------------------------------


def test_the_file_round_trips_and_bad_files_say_why() -> None:
    calibration = h200_calibration()
    assert parse_calibration(dump_calibration(calibration)) == calibration
    with pytest.raises(ValueError, match="not a calibration"):
        parse_calibration('{"schema_version": 1}')
    with pytest.raises(ValueError, match="not a calibration"):
        parse_calibration("{not json")
    newer = json.loads(dump_calibration(calibration)) | {"schema_version": 99}
    with pytest.raises(ValueError, match="newer comfy-install"):
        parse_calibration(json.dumps(newer))


H200_NOW = MachineNow(gpus=(("NVIDIA H200", "9.0"),), driver="580.159.04", versions=H200_VERSIONS)


V = H200_VERSIONS
STALE_CASES = [
    ({}, None),
    ({"driver": "590.44.01"}, "driver 580.159.04 then, 590.44.01 now"),
    ({"gpus": (("NVIDIA H100 80GB HBM3", "9.0"),)}, "measured on NVIDIA H200, this machine has"),
    ({"gpus": ()}, "this machine has no GPU"),
    ({"versions": {**V, "torch": "2.12.0+cu130"}}, "torch 2.11.0+cu130 then, 2.12.0"),
    ({"versions": {**V, "sageattn3": "1.0.0"}}, "sageattn3 1.0.0 was installed since"),
    ({"versions": {**V, "sageattention": None}}, "sageattention 2.2.0 was removed"),
    ({"versions": {**V, "triton": "3.7.0"}}, "triton 3.6.0 then, 3.7.0 now"),
]


@pytest.mark.parametrize(("change", "reason"), STALE_CASES)
def test_any_change_of_gpu_driver_torch_or_backend_makes_it_stale(
    change: dict[str, object], reason: str | None
) -> None:
    now = MachineNow(**{**H200_NOW.__dict__, **change})  # type: ignore[arg-type]
    found = stale_reasons(h200_calibration(), now)
    if reason is None:
        assert found == []
    else:
        assert any(reason in line for line in found), found


# --- the launch decision -----------------------------------------------------------------

H200 = GpuReport(
    "nvml", "test", (GpuInfo(0, "NVIDIA H200", "9.0", 143 * 2**30),), "580.159.04", "13.0"
)


def facts(
    calibration: object = "h200",
    versions: dict[str, str | None] | None = None,
    gpu: GpuReport = H200,
    shim: str = "current",
) -> LaunchFacts:
    read: CalibrationRead | None
    if calibration == "h200":
        read = CalibrationRead(CALIBRATION, h200_calibration())
    elif isinstance(calibration, CalibrationRead) or calibration is None:
        read = calibration
    else:
        read = CalibrationRead(CALIBRATION, calibration)  # type: ignore[arg-type]
    return LaunchFacts(
        platform="linux",
        venv_python=Path("/srv/i/venv/bin/python"),
        comfyui_dir=Path("/srv/i/ComfyUI"),
        gpu=gpu,
        attention=AttentionProbe(H200_VERSIONS if versions is None else versions),
        calibration=read,
        shim=shim,  # type: ignore[arg-type]
        site_packages=Path("/srv/i/venv/lib/python3.12/site-packages"),
    )


def plan(f: LaunchFacts, *extra: str, env: dict[str, str] | None = None) -> LaunchPlan:
    return plan_launch(LaunchRequest(Path("/srv/i"), extra_args=extra), f, env or {})


def tuning(p: LaunchPlan, name: str) -> tuple[str, str]:
    found = p.tuning(name)
    assert found is not None
    return found.status, found.reason


def test_a_fresh_calibration_routes_video_to_sage_and_images_stay_on_sdpa() -> None:
    p = plan(facts())
    status, reason = tuning(p, "attention")
    assert status == "on", reason
    assert "SageAttention 2.2.0 where measured faster, SDPA elsewhere" in reason
    assert "measured 2026-11-30 on this GPU, an NVIDIA H200" in reason
    routes_file = str(CALIBRATION.with_name("attention-routes.json"))
    assert p.env_set[ROUTES_ENV] == routes_file and p.env_set["COMFY_INSTALL_TUNING"] == "1"
    assert p.needs_shim
    assert p.attention is not None and p.attention.routes is not None
    routes = {(r["head_dim"], r["dtype"]): r["bands"] for r in p.attention.routes["routes"]}
    assert routes[(128, "fp16")] == [
        {"min_tokens": 16384, "max_tokens": None, "backend": "sageattention"}
    ]
    assert routes[(64, "bf16")][0]["min_tokens"] == 32768
    assert (40, "fp16") not in routes  # SD1.5: SDPA everywhere
    assert p.attention.routes["counts_file"].endswith("attention-calls.json")
    assert not any(a.startswith("--use-") for a in p.argv)
    # xformers is installed (and broken on this GPU): ComfyUI must not pick it by itself.
    assert "--disable-xformers" in p.argv
    status, reason = tuning(p, "xformers")
    assert status == "on" and "is broken on this GPU" in reason
    text = print_env(p, facts())
    assert (
        "# attention D=128 fp16: SDPA below 16K tokens; SageAttention 2.2.0 from 16K tokens "
        "(1.46× at 75.6K tokens)" in text
    )
    data = p.as_data()["attention"]
    assert data["status"] == "on" and data["routes_file"] == routes_file
    assert data["routes"]["routes"] and len(data["details"]) == 6


@pytest.mark.parametrize("flag", ATTENTION_FLAGS)
def test_the_users_attention_flag_always_wins(flag: str) -> None:
    p = plan(facts(), flag)
    assert tuning(p, "attention")[0] == "user"
    assert ROUTES_ENV not in p.env_set
    assert p.argv.count(flag) == 1 and "--disable-xformers" not in p.argv
    assert tuning(p, "xformers")[0] == "off"


def test_the_users_own_routing_table_is_kept() -> None:
    p = plan(facts(calibration=None), env={ROUTES_ENV: "/mine.json"})
    assert tuning(p, "attention") == (
        "user",
        f"you set {ROUTES_ENV}: the shim routes by your table",
    )
    assert ROUTES_ENV not in p.env_set and p.needs_shim
    assert p.env_set["COMFY_INSTALL_TUNING"] == "1"


@pytest.mark.parametrize("value", ["off", "OFF", "0", "false"])
def test_the_users_off_turns_routing_off_and_keeps_every_other_tuning(value: str) -> None:
    routed = plan(facts())
    p = plan(facts(), env={ROUTES_ENV: value})
    assert tuning(p, "attention") == (
        "off",
        f"you set {ROUTES_ENV}={value}; ComfyUI's own attention",
    )
    # No table is written or named: the variable stays the user's.
    assert p.attention is not None and p.attention.routes is None
    assert p.attention.routes_path is None and not p.attention.routed
    assert ROUTES_ENV not in p.env_set and p.user_env[ROUTES_ENV] == value
    assert p.as_data()["attention"]["routes_file"] is None
    # Every other tuning, variable and argument is the routed launch's.
    others = [t for t in p.tunings if t.name != "attention"]
    assert others == [t for t in routed.tunings if t.name != "attention"]
    assert p.env_set == {k: v for k, v in routed.env_set.items() if k != ROUTES_ENV}
    assert p.argv == routed.argv and p.needs_shim
    text = print_env(p, facts())
    assert f"# attention: off (you set {ROUTES_ENV}={value}; ComfyUI's own attention)\n" in text
    assert f"export {ROUTES_ENV}={value}\n" in text.split("# variables you set")[1]


def test_without_a_calibration_nothing_is_enabled() -> None:
    p = plan(facts(calibration=CalibrationRead(CALIBRATION)))
    status, reason = tuning(p, "attention")
    assert status == "off" and "no calibration" in reason and "comfy-install tune" in reason
    assert ROUTES_ENV not in p.env_set
    assert not any(a.startswith("--use-") for a in p.argv)
    status, reason = tuning(p, "xformers")
    assert status == "on" and "was not measured on this GPU" in reason
    # Without xformers installed, nothing is added at all: ComfyUI's default is SDPA.
    bare = plan(facts(calibration=None, versions={**H200_VERSIONS, "xformers": None}))
    assert "--disable-xformers" not in bare.argv
    assert tuning(bare, "xformers") == ("off", "xformers is not installed")


def test_a_stale_calibration_is_not_used() -> None:
    newer = {**H200_VERSIONS, "sageattention": "2.2.1"}
    p = plan(facts(versions=newer))
    status, reason = tuning(p, "attention")
    assert status == "off"
    assert "the calibration of 2026-11-30 is stale (sageattention 2.2.0 then, 2.2.1 now)" in reason
    assert ROUTES_ENV not in p.env_set and "--disable-xformers" in p.argv
    assert p.attention is not None and p.attention.warning is not None
    assert p.attention.warning.startswith("attention is not routed: the calibration of 2026-11-30")
    # No calibration at all is no warning: nothing was measured yet.
    none = plan(facts(calibration=CalibrationRead(CALIBRATION)))
    assert none.attention is not None and none.attention.warning is None


def test_an_unreadable_calibration_is_not_used() -> None:
    read = CalibrationRead(CALIBRATION, problem=f"{CALIBRATION} is not a calibration (x)")
    status, reason = tuning(plan(facts(calibration=read)), "attention")
    assert status == "off" and "cannot be used" in reason


def test_sdpa_fastest_everywhere_routes_nothing() -> None:
    slow = {key: tuple(min(r, 0.99) for r in ratios) for key, ratios in SAGE.items()}
    calibration = h200_calibration(points=h200_points(slow))
    p = plan(facts(calibration=calibration))
    status, reason = tuning(p, "attention")
    assert status == "off" and "SDPA measured fastest at every length" in reason
    assert ROUTES_ENV not in p.env_set


def test_xformers_measured_faster_is_routed_and_not_disabled() -> None:
    calibration = h200_calibration()
    points = [
        p.model_copy(update={"status": "ok", "speedup": 1.3, "median_ms": 1.0, "error": None})
        if p.backend == "xformers" and p.head_dim == 64
        else p
        for p in calibration.points
    ]
    p = plan(facts(calibration=h200_calibration(points=points)))
    assert p.attention is not None and "xformers" in p.attention.routed
    assert "--disable-xformers" not in p.argv
    assert "routed where it measured faster" in tuning(p, "xformers")[1]
    # Your --disable-xformers: ComfyUI will not load it, so nothing is routed to it.
    mine = plan(facts(calibration=h200_calibration(points=points)), "--disable-xformers")
    assert mine.attention is not None and "xformers" not in mine.attention.routed
    assert tuning(mine, "xformers")[0] == "user" and tuning(mine, "attention")[0] == "on"


def test_cpu_no_gpu_and_no_tune_route_nothing() -> None:
    assert tuning(plan(facts(), "--cpu"), "attention") == ("off", "ComfyUI runs with --cpu")
    none = GpuReport("none", "no NVIDIA GPU: test")
    assert tuning(plan(facts(gpu=none)), "attention")[0] == "off"
    request = LaunchRequest(Path("/srv/i"), tune=False)
    assert plan_launch(request, facts(), {}).tuning("attention").status == "off"  # type: ignore[union-attr]


def test_a_foreign_shim_turns_routing_off_and_keeps_xformers_away() -> None:
    p = plan(facts(shim="foreign"))
    status, reason = tuning(p, "attention")
    assert status == "off" and "not written by comfy-install" in reason
    assert p.attention is not None and p.attention.routes is None
    assert ROUTES_ENV not in p.env_set and "--disable-xformers" in p.argv


def test_another_gpu_makes_the_calibration_stale() -> None:
    h100 = GpuReport("nvml", "test", (GpuInfo(0, "NVIDIA H100 80GB HBM3", "9.0"),), "580.159.04")
    status, reason = tuning(plan(facts(gpu=h100)), "attention")
    assert status == "off" and "measured on NVIDIA H200" in reason


# --- the calibration's state, for status and doctor -----------------------------------


def test_the_calibration_state_says_whether_launch_can_use_it() -> None:
    from installer.attention.rules.routing import calibration_state

    probe = AttentionProbe(H200_VERSIONS)
    read = CalibrationRead(CALIBRATION, h200_calibration())
    fresh = calibration_state(read, probe, H200, Path("/srv/i"))
    assert fresh.status == "fresh" and fresh.hint is None
    assert "measured 2026-11-30 on this GPU, an NVIDIA H200 (raw kernels); 4 of 6" in fresh.detail
    stale = calibration_state(
        read, AttentionProbe({**H200_VERSIONS, "torch": "2.12.0"}), H200, Path("/srv/i")
    )
    assert stale.status == "stale" and "torch 2.11.0+cu130 then, 2.12.0 now" in stale.detail
    assert stale.hint == "comfy-install tune /srv/i"
    missing = calibration_state(CalibrationRead(CALIBRATION), probe, H200, Path("/srv/i"))
    assert missing.status == "missing"
    broken = CalibrationRead(CALIBRATION, problem="x is not a calibration")
    assert calibration_state(broken, probe, H200, Path("/srv/i")).status == "unreadable"
    assert calibration_state(read, None, H200, Path("/srv/i")).status == "unchecked"
