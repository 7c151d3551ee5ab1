"""`tune --workflow` (issue 30): the pure plan, the verdict rule of `launch`, levers.json's merge.

The plan is data (workflows, variants, levers chosen with reasons, the launch command of each
variant); the verdict rule is `plan_launch` with levers.json's `tuned_vs_stock` record read
through the real file reader; the file is written by the real atomic writer.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from installer.attention.rules.routing import AttentionProbe, CalibrationRead
from installer.core.errors import UsageError
from installer.core.facts import GpuInfo, GpuReport, TorchInstalled
from installer.launch.levers import levers_path, read_levers, write_levers
from installer.plan.launch import LaunchFacts, LaunchPlan, LaunchRequest, plan_launch
from installer.plan.launch import render_print_env as print_env
from installer.plan.launch_attention import ROUTING_NOISE
from installer.plan.levers import CPU_KEY, decide_levers, parse_levers
from installer.plan.workflow_check import (
    EXPORT_HINT,
    KNOWN_LEVERS,
    choose_levers,
    comfyui_options,
    launch_variants,
    parse_workflow,
    plan_check,
    workflow_names,
)
from installer.workflows.results import (
    CheckOutcome,
    RunResult,
    VariantResult,
    WorkflowResult,
    levers_record,
)
from installer.workflows.run import (
    first_phase_records,
    launch_differs,
    plan_variant,
    routed_shapes,
    variant_environ,
    variant_plans,
)
from support.attention import H200_VERSIONS, h200_calibration

H200 = "NVIDIA H200"
GPU = GpuReport("nvml", "test", (GpuInfo(0, H200, "9.0", 143 * 2**30),), "580.159.04", "13.0")
AMPERE = GpuReport("nvml", "test", (GpuInfo(0, "NVIDIA A10", "8.6", 24 * 2**30),), "580", "13.0")
CPU = GpuReport("none", "no GPU")
TORCH = TorchInstalled("2.11.0+cu130", "13.0")
ALL_OPTIONS = frozenset(need for lever in KNOWN_LEVERS.values() for need in lever.needs)
SDXL = {
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sdxl.safetensors"}},
    "3": {"class_type": "KSampler", "inputs": {"seed": 42, "steps": 20, "model": ["4", 0]}},
    "10": {"class_type": "KSamplerAdvanced", "inputs": {"noise_seed": ["11", 0]}},
    "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0]}},
}


def workflow(nodes: dict[str, Any] | None = None, name: str = "sdxl") -> Any:
    return parse_workflow(json.dumps(nodes or SDXL), f"/w/{name}.json", name)


# --- the workflow file -------------------------------------------------------------------


def test_an_api_workflow_is_read_with_its_seed_and_reruns_with_others() -> None:
    found = workflow()
    assert found.seed_inputs == (("3", "seed"),)  # a linked seed cannot be changed: left alone
    assert found.seed == 42
    changed = found.with_seed(44)
    assert changed["3"]["inputs"]["seed"] == 44 and SDXL["3"]["inputs"]["seed"] == 42
    # A saved /prompt body, and another node's seed (ImageAddNoise), count too.
    noise = {"1": {"class_type": "ImageAddNoise", "inputs": {"seed": 7, "image": ["2", 0]}}}
    body = parse_workflow(json.dumps({"prompt": noise}), "n.json", "n")
    assert (body.seed_inputs, body.seed) == ((("1", "seed"),), 7)
    assert workflow_names(["a/sdxl.json", "b/sdxl.json", "wan.JSON"]) == ["sdxl", "sdxl-2", "wan"]
    # Two samplers keep their own seeds, moved together.
    two = {**SDXL, "10": {"class_type": "KSamplerAdvanced", "inputs": {"noise_seed": 1000}}}
    both = workflow(two)
    assert both.seed_inputs == (("3", "seed"), ("10", "noise_seed"))
    moved = both.with_seed(43)
    assert (moved["3"]["inputs"]["seed"], moved["10"]["inputs"]["noise_seed"]) == (43, 1001)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "is not valid JSON"),
        (json.dumps({"nodes": [], "links": [], "version": 0.4}), "in ComfyUI's UI format"),
        (json.dumps([1, 2]), "is not an API-format ComfyUI workflow"),
        (json.dumps({"1": {"inputs": {}}}), "is not an API-format ComfyUI workflow"),
    ],
)
def test_a_bad_workflow_file_says_how_to_export_the_api_format(text: str, message: str) -> None:
    with pytest.raises(UsageError) as raised:
        parse_workflow(text, "/w/x.json", "x")
    assert message in raised.value.message and raised.value.exit_code == 2
    assert raised.value.hint == EXPORT_HINT and "Export (API)" in EXPORT_HINT


def test_a_workflow_without_a_seed_is_refused_it_would_be_served_from_the_cache() -> None:
    nodes = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8}}}
    with pytest.raises(UsageError, match="has no sampler with a seed of its own"):
        parse_workflow(json.dumps(nodes), "e.json", "e")


# --- the levers measured ----------------------------------------------------------------


def test_the_default_levers_are_those_that_apply_to_this_gpu_and_comfyui() -> None:
    choices = {c.name: c for c in choose_levers(None, GPU, TORCH, ALL_OPTIONS, frozenset(), ())}
    assert {n for n, c in choices.items() if c.runs} == {
        "fp16acc", "autotune", "fp8mm", "nodyn", "highvram",
    }  # fmt: skip
    assert choices["cublas"].reason == "needs the cublas-ops package, which the venv lacks"
    ampere = {c.name: c for c in choose_levers(None, AMPERE, TORCH, ALL_OPTIONS, frozenset(), ())}
    assert not ampere["fp8mm"].runs and "compute capability 8.9" in ampere["fp8mm"].reason
    old = choose_levers(
        None, GPU, TorchInstalled("2.6.0+cu126", "12.6"), ALL_OPTIONS, frozenset(), ()
    )
    assert [c.reason for c in old if c.name == "fp16acc"] == [
        "needs torch 2.7 or newer (the venv: 2.6.0+cu126)"
    ]
    # An older ComfyUI without comfy-aimdo's switch, the user's own --fast and VRAM mode.
    older = choose_levers(None, GPU, TORCH, ALL_OPTIONS - {"--disable-dynamic-vram"}, frozenset(),
                          ("--fast", "--lowvram"))  # fmt: skip
    reasons = {c.name: c.reason for c in older}
    assert reasons["nodyn"] == "DIR's ComfyUI has no --disable-dynamic-vram"
    assert reasons["autotune"] == "you pass --fast yourself"
    assert reasons["highvram"] == "you choose a VRAM mode yourself"
    assert not any(c.runs for c in older)


def test_on_the_cpu_no_lever_runs_unless_asked_for_and_unknown_names_are_refused() -> None:
    assert not any(c.runs for c in choose_levers(None, CPU, None, ALL_OPTIONS, frozenset(), ()))
    asked = {c.name: c for c in choose_levers(["nodyn"], CPU, None, ALL_OPTIONS, frozenset(), ())}
    assert asked["nodyn"].runs and asked["nodyn"].reason.startswith("asked for (though ComfyUI")
    assert asked["autotune"].reason == "not in --levers"
    with pytest.raises(UsageError, match="Unknown lever turbo"):
        choose_levers(["turbo"], GPU, TORCH, ALL_OPTIONS, frozenset(), ())


def test_comfyui_options_come_from_its_cli_args() -> None:
    text = (
        'class PerformanceFeature(enum.Enum):\n    AutoTune = "autotune"\n'
        'parser.add_argument("--highvram", action="store_true")\n'
    )
    assert comfyui_options(text) == {"autotune", "--highvram"}


# --- the plan and the dry run -----------------------------------------------------------


def launch_facts(
    install: Path, gpu: GpuReport = GPU, read: CalibrationRead | None = None
) -> LaunchFacts:
    return LaunchFacts(
        platform="linux",
        venv_python=install / "venv/bin/python",
        comfyui_dir=install / "ComfyUI",
        gpu=gpu,
        torch=TORCH,
        attention=AttentionProbe(H200_VERSIONS),
        calibration=read,
        shim="current",
        site_packages=install / "venv/lib/python3.12/site-packages",
        levers=read_levers(install, gpu),
    )


def test_the_plan_runs_stock_tuned_and_each_lever_and_the_dry_run_shows_each_command() -> None:
    levers = choose_levers(["nodyn", "autotune"], GPU, TORCH, ALL_OPTIONS, frozenset(), ())
    check = plan_check([workflow()], levers, runs=2, budget_s=300)
    assert [(v.name, v.tune, v.lever_args) for v in check.variants] == [
        ("stock", False, ()),
        ("tuned", True, ()),
        ("tuned+autotune", True, ("--fast", "autotune")),
        ("tuned+nodyn", True, ("--disable-dynamic-vram",)),
    ]
    assert check.seeds(check.workflows[0]) == [42, 43, 44]
    data = check.as_data()
    assert data["workflows"][0]["seed_inputs"] == ["3.seed"] and data["budget_s"] == 300
    assert [lever["name"] for lever in data["levers"] if lever["runs"]] == ["autotune", "nodyn"]
    install = Path("/srv/i")
    read = CalibrationRead(install / ".comfy-install/calibration.json", h200_calibration())
    plans = variant_plans(check, launch_facts(install, read=read), install, ("--x",), {})
    stock, tuned = plans["stock"], plans["tuned"]
    assert stock.env_set == {} and not stock.needs_shim  # plain main.py
    assert stock.argv[3:] == ("--port", "8188", "--x", "--output-directory", "<scratch>/stock")
    assert tuned.tuning("attention").status == "on"  # type: ignore[union-attr]
    assert tuned.env_set["COMFY_INSTALL_TUNING"] == "1"
    assert plans["tuned+nodyn"].argv[-4:] == (
        "--x", "--disable-dynamic-vram", "--output-directory", "<scratch>/tuned+nodyn",
    )  # fmt: skip
    with pytest.raises(UsageError, match="--runs must be at least 1"):
        plan_check([workflow()], levers, runs=0)
    with pytest.raises(UsageError, match="No workflow"):
        plan_check([], levers)


# --- the verdict: launch turns routing off where tuned measured slower than stock --------


def outcome(stock: float, tuned: float | None, *, lever: float | None = None,
            tuned_ok: bool = True, routed: bool = True,
            calibration: str | None = None, key: str = H200) -> CheckOutcome:  # fmt: skip
    def result(name: str, seconds: float | None, ok: bool = True) -> VariantResult:
        if seconds is None:
            return VariantResult(name, "failed", reason="node 3 (KSampler): CUDA error")
        runs = [RunResult(42, "cold", seconds * 5, None), RunResult(43, "warm", seconds, None)]
        distance = {"relative": 0.01 if ok else 0.6, "threshold_relative": 0.1, "ok": ok}
        return VariantResult(name, "ok", runs=runs, distance=distance)

    found = WorkflowResult("sdxl", "/w/sdxl.json")
    found.variants = {"stock": result("stock", stock), "tuned": result("tuned", tuned, tuned_ok)}
    if lever is not None:
        found.variants["tuned+nodyn"] = result("tuned+nodyn", lever)
    at = h200_calibration().measured_on.measured_at if calibration is None else calibration
    return CheckOutcome(key, routed, at, {"nodyn": ("--disable-dynamic-vram",)}, [found], "now")


def routed_plan(install: Path, check: CheckOutcome) -> tuple[LaunchPlan, LaunchFacts]:
    write_levers(install, check.key, levers_record(check))
    read = CalibrationRead(install / ".comfy-install/calibration.json", h200_calibration())
    facts = launch_facts(install, read=read)
    return plan_launch(LaunchRequest(install), facts, {}), facts


def test_a_tuned_launch_slower_than_stock_turns_routing_off_with_the_figure(
    tmp_path: Path,
) -> None:
    # Issue 30's H100 SDXL: tuned 0.119 s against stock's 0.109 (0.92x).
    plan, facts = routed_plan(tmp_path, outcome(0.109, 0.119, lever=0.100))
    attention = plan.tuning("attention")
    assert attention is not None and attention.status == "off"
    assert (
        "measured slower than stock (or wrong) end to end: 0.92× stock on sdxl" in attention.reason
    )
    assert "(0.109 → 0.119 s a prompt, output distance 0.01 ok)" in attention.reason
    assert "COMFY_INSTALL_ATTENTION_ROUTES" not in plan.env_set
    assert plan.attention is not None and plan.attention.routes is None
    # Stock let ComfyUI pick xformers; the tuned launch turned it off and lost: it stays on.
    xformers = plan.tuning("xformers")
    assert xformers is not None and xformers.status == "off"
    assert "--disable-xformers" not in plan.argv
    assert "measured slower than stock end to end" in xformers.reason
    text = print_env(plan, facts)
    assert "# attention end to end (tune --workflow): 0.92× stock on sdxl" in text
    # Levers keep their own rule: nodyn is 1.19x tuned on this workflow, so it goes on.
    lever = plan.tuning("lever-nodyn")
    assert lever is not None and lever.status == "on" and "--disable-dynamic-vram" in plan.argv
    assert "1.19× on sdxl (0.119 → 0.100 s a prompt" in lever.reason


@pytest.mark.parametrize(
    ("check", "status", "says"),
    [
        (outcome(1.00, 0.90), "on", "; end to end 1.11× stock on sdxl"),
        # Within the noise allowance: 1.5% slower is not "slower".
        (outcome(1.000, 1.015), "on", "end to end 0.99× stock on sdxl"),
        (outcome(1.00, 1.00 / (1 - ROUTING_NOISE) + 0.01), "off", "0.97× stock on sdxl"),
        (outcome(1.00, None), "off", "the tuned launch failed on sdxl (node 3 (KSampler)"),
        (outcome(1.00, 0.80, tuned_ok=False), "off", "output distance 0.6 over the threshold"),
    ],
)
def test_the_verdict_rule(tmp_path: Path, check: CheckOutcome, status: str, says: str) -> None:
    plan, _ = routed_plan(tmp_path, check)
    attention = plan.tuning("attention")
    assert attention is not None and attention.status == status, attention
    assert says in attention.reason
    # xformers is turned off as long as the tuned launch (which turns it off) is not beaten.
    assert ("--disable-xformers" in plan.argv) is (status == "on")


def test_a_verdict_of_another_calibration_or_without_routing_changes_nothing(
    tmp_path: Path,
) -> None:
    plan, _ = routed_plan(tmp_path, outcome(0.109, 0.119, calibration="2026-01-01T00:00:00"))
    assert plan.tuning("attention").status == "on"  # type: ignore[union-attr]
    assert plan.attention is not None
    assert any("measured with the calibration of 2026-01-01" in d for d in plan.attention.details)
    plan, _ = routed_plan(tmp_path, outcome(0.109, 0.119, routed=False))
    assert plan.tuning("attention").status == "on"  # type: ignore[union-attr]
    assert plan.attention is not None
    assert any("measured without attention routing" in d for d in plan.attention.details)
    # --no-tune: nothing of it.
    off = plan_launch(LaunchRequest(tmp_path, tune=False), launch_facts(tmp_path), {})
    assert off.tuning("attention").reason == "--no-tune"  # type: ignore[union-attr]


# --- routing judged against the same launch with the router off --------------------------


def two_workflows(sdxl_routing: float, *, sdxl_shapes: dict[str, str] | None = None,
                  wan_routing: float = 1.40) -> CheckOutcome:  # fmt: skip
    """SDXL and Wan, tuned beating stock on both; routing's own figure is tuned-norouting's."""

    def result(name: str, seconds: float, shapes: dict[str, str] | None = None) -> VariantResult:
        runs = [RunResult(42, "cold", seconds * 5, None), RunResult(43, "warm", seconds, None)]
        distance = {"relative": 0.01, "threshold_relative": 0.1, "ok": True}
        return VariantResult(name, "ok", runs=runs, distance=distance,
                             routed_shapes=shapes or {})  # fmt: skip

    sdxl = WorkflowResult("sdxl", "/w/sdxl.json")
    shapes = {"fp16 D=64 N=36864": "sageattention"} if sdxl_shapes is None else sdxl_shapes
    sdxl.variants = {
        "stock": result("stock", 0.0971),
        "tuned": result("tuned", 0.0591, shapes),
        "tuned-norouting": result("tuned-norouting", 0.0591 * sdxl_routing),
    }
    wan = WorkflowResult("wan", "/w/wan.json")
    wan.variants = {
        "stock": result("stock", 0.41),
        "tuned": result("tuned", 0.29, {"fp16 D=128 N=20000": "sageattention"}),
        "tuned-norouting": result("tuned-norouting", 0.29 * wan_routing),
    }
    at = h200_calibration().measured_on.measured_at
    return CheckOutcome(H200, True, at, {}, [sdxl, wan], "now")


def bands(plan: LaunchPlan) -> list[tuple[str, int, int, str]]:
    assert plan.attention is not None and plan.attention.routes is not None
    return [
        (route["dtype"], route["head_dim"], band["min_tokens"], band["backend"])
        for route in plan.attention.routes["routes"]
        for band in route["bands"]
    ]


def test_a_band_a_workflow_was_slower_through_than_with_the_router_off_is_not_routed(
    tmp_path: Path,
) -> None:
    # The H100 of 2026-12-07 (dynamic VRAM off): SDXL 0.0568 s/step with the router off,
    # 0.0591 with it (0.96x); Wan's SageAttention band 1.4x. Only SDXL's band goes.
    check = two_workflows(0.0568 / 0.0591)
    record = levers_record(check)["tuned_vs_stock"]["workflows"]
    assert record["sdxl"]["norouting_s"] == 0.0568
    assert record["sdxl"]["routed_shapes"] == {"fp16 D=64 N=36864": "sageattention"}
    plan, facts = routed_plan(tmp_path, check)
    attention = plan.tuning("attention")
    assert attention is not None and attention.status == "on"
    assert "sageattention for fp16 D=64 at 32768 and more tokens not routed" in attention.reason
    assert "routing 0.96× on sdxl (0.057 → 0.059 s a prompt, router off → on)" in attention.reason
    assert bands(plan) == [
        ("bf16", 64, 32768, "sageattention"),
        ("bf16", 128, 16384, "sageattention"),
        ("fp16", 128, 16384, "sageattention"),
    ]
    text = print_env(plan, facts)
    assert "routing 1.40× on wan" in text and "not routed, slower end to end" in text
    # Within the noise (1.5% slower) nothing is dropped, and the figures are shown.
    plan, _ = routed_plan(tmp_path, two_workflows(0.985))
    assert len(bands(plan)) == 4
    assert plan.attention is not None
    assert any("router off against on" in line for line in plan.attention.details)


def test_routing_slower_everywhere_or_through_unknown_shapes_is_turned_off(tmp_path: Path) -> None:
    # Both workflows slower with the router: both fp16 bands go; the bf16 ones, which no
    # workflow measured went through, stay.
    plan, _ = routed_plan(tmp_path, two_workflows(0.95, wan_routing=0.9))
    assert bands(plan) == [
        ("bf16", 64, 32768, "sageattention"),
        ("bf16", 128, 16384, "sageattention"),
    ]
    both = {
        "fp16 D=64 N=36864": "sageattention",
        "bf16 D=64 N=40000": "sageattention",
        "fp16 D=128 N=20000": "sageattention",
        "bf16 D=128 N=20000": "sageattention",
    }
    plan, _ = routed_plan(tmp_path, two_workflows(0.95, sdxl_shapes=both))
    attention = plan.tuning("attention")
    assert attention is not None and attention.status == "off"
    assert attention.reason.startswith("every band routed was slower end to end")
    assert "COMFY_INSTALL_ATTENTION_ROUTES" not in plan.env_set
    # Slower, but the counters named no shape: nothing to drop, so no routing at all.
    plan, _ = routed_plan(tmp_path, two_workflows(0.95, sdxl_shapes={}))
    attention = plan.tuning("attention")
    assert attention is not None and attention.status == "off"
    assert "the shapes it routed were not recorded" in attention.reason
    # The tuned launch is still faster than stock: its other tunings stay.
    assert plan.tuning("tf32") is not None and plan.tuning("tf32").status == "on"  # type: ignore[union-attr]


def test_the_check_runs_the_router_off_variant_when_the_tuned_launch_routes() -> None:
    check = plan_check([workflow()], [], runs=1, budget_s=60, routed=True)
    assert [(v.name, v.kind, v.tune) for v in check.variants] == [
        ("stock", "stock", False), ("tuned", "tuned", True),
        ("tuned-norouting", "norouting", True),
    ]  # fmt: skip
    assert [v.name for v in plan_check([workflow()], [], runs=1).variants] == ["stock", "tuned"]
    install = Path("/srv/i")
    read = CalibrationRead(install / ".comfy-install/calibration.json", h200_calibration())
    plans = variant_plans(check, launch_facts(install, read=read), install, (), {})
    off, tuned = plans["tuned-norouting"], plans["tuned"]
    assert off.env_set.get("COMFY_INSTALL_ATTENTION_ROUTES") is None
    assert off.tuning("attention").status == "off"  # type: ignore[union-attr]
    assert "you set COMFY_INSTALL_ATTENTION_ROUTES=off" in off.tuning("attention").reason  # type: ignore[union-attr]
    assert tuned.tuning("attention").status == "on"  # type: ignore[union-attr]
    assert variant_environ(check.variants[2], {"COMFY_INSTALL_ATTENTION_ROUTES": "/mine.json"}) == {
        "COMFY_INSTALL_ATTENTION_ROUTES": "off"
    }
    # Every other tuning is the tuned launch's.
    others = {t.name: t.status for t in tuned.tunings if t.name != "attention"}
    assert {t.name: t.status for t in off.tunings if t.name != "attention"} == others


def test_the_routed_shapes_are_read_from_the_routers_counters(tmp_path: Path) -> None:
    counts = tmp_path / "attention-counts.json"
    counts.write_text(json.dumps({"attached": True, "calls": {}, "shapes": {
        "fp16 D=64 N=4096": {"cudnn": 5600}, "fp16 D=64 N=77": {"sdpa": 5600},
        "fp16 D=128 N=14040": {"sage_per_warp": 1199, "comfyui": 1},
        "fp16 D=40 N=9": {"comfyui": 3},
    }}))  # fmt: skip
    assert routed_shapes(counts) == {
        "fp16 D=64 N=4096": "cudnn", "fp16 D=128 N=14040": "sage_per_warp",
    }  # fmt: skip
    assert routed_shapes(tmp_path / "none.json") == {}
    counts.write_text("{half")
    assert routed_shapes(counts) == {}


# --- levers.json: merged per GPU, old files readable --------------------------------------


def test_levers_json_is_merged_per_gpu_and_a_schema_1_file_stays_readable(tmp_path: Path) -> None:
    path = levers_path(tmp_path)
    path.parent.mkdir(parents=True)
    bench = {"schema_version": 1, "gpus": {"NVIDIA H100 80GB HBM3": {"levers": {"autotune": {
        "args": ["--fast", "autotune"], "workflows": {"sdxl-1024": {
            "baseline_s_per_step": 0.151, "s_per_step": 0.140, "distance": 0.005,
            "distance_ok": True}}}}}}}  # fmt: skip
    path.write_text(json.dumps(bench))
    write_levers(tmp_path, H200, levers_record(outcome(1.0, 0.9, lever=0.8)))
    write_levers(tmp_path, CPU_KEY, levers_record(outcome(2.0, 2.1, key=CPU_KEY)))
    document = json.loads(path.read_text())
    assert document["schema_version"] == 2
    assert set(document["gpus"]) == {"NVIDIA H100 80GB HBM3", H200, CPU_KEY}
    h100 = parse_levers(document, "NVIDIA H100 80GB HBM3")
    [figure] = h100.levers[0].figures
    assert (figure.unit, figure.baseline_s, figure.s) == ("s/step", 0.151, 0.140)
    assert h100.tuned_vs_stock is None
    h200 = parse_levers(document, H200)
    assert h200.tuned_vs_stock is not None and h200.tuned_vs_stock.routed
    [end] = h200.tuned_vs_stock.figures
    assert (end.stock_s, end.tuned_s, round(end.speedup, 3)) == (1.0, 0.9, 1.111)
    assert h200.levers[0].figures[0].unit == "s a prompt"
    # A re-run on one GPU replaces that GPU's record only.
    write_levers(tmp_path, H200, levers_record(outcome(1.0, 0.95)))
    again = parse_levers(json.loads(path.read_text()), H200)
    assert again.levers == () and again.tuned_vs_stock is not None
    assert parse_levers(json.loads(path.read_text()), "NVIDIA H100 80GB HBM3").levers
    # A damaged file is replaced by the next write; until then launch reads no levers.
    path.write_text("{not json")
    assert read_levers(tmp_path, GPU) is None
    write_levers(tmp_path, H200, levers_record(outcome(1.0, 0.9)))
    assert set(json.loads(path.read_text())["gpus"]) == {H200}


def test_figures_measured_on_the_cpu_decide_on_the_cpu_only(tmp_path: Path) -> None:
    write_levers(tmp_path, CPU_KEY, levers_record(outcome(2.0, 2.0, lever=1.5, key=CPU_KEY)))
    records = read_levers(tmp_path, CPU)
    assert records is not None and records.gpu == CPU_KEY
    tunings, args = decide_levers(True, CPU, records, ())
    assert [(t.name, t.status) for t in tunings] == [("lever-nodyn", "on")]
    assert args == ["--disable-dynamic-vram"]
    # Figures of a GPU are not used for ComfyUI on the CPU.
    gpu_records = replace(records, gpu=H200)
    assert decide_levers(True, CPU, gpu_records, ())[1] == []


# --- the second phase: the launch as decided, measured against stock and the router off --


def with_launch(check: CheckOutcome, name: str, launch: float | None, norouting: float | None,
                shapes: dict[str, str] | None = None, ok: bool = True) -> CheckOutcome:  # fmt: skip
    """``check`` with the second phase's figures on workflow ``name``."""
    found = next(w for w in check.workflows if w.name == name)
    distance = {"relative": 0.01 if ok else 0.6, "threshold_relative": 0.1, "ok": ok}
    for variant, seconds, routed in (("launch", launch, shapes or {}),
                                     ("launch-norouting", norouting, {})):  # fmt: skip
        if seconds is None:
            continue
        runs = [RunResult(42, "cold", seconds * 5, None), RunResult(43, "warm", seconds, None)]
        found.variants[variant] = VariantResult(
            variant, "ok", runs=runs, distance=distance, routed_shapes=routed
        )
    return check


def test_a_band_slower_as_launched_with_the_levers_is_not_routed(tmp_path: Path) -> None:
    # Without levers routing is neutral on SDXL (1.00x); with the levers that went on, the
    # router costs 4% (the H100's cuDNN band with dynamic VRAM off): that band goes.
    shapes = {"fp16 D=64 N=36864": "sageattention"}
    check = with_launch(two_workflows(1.0), "sdxl", 0.0591, 0.0568, shapes)
    check.launch_levers = ("nodyn",)
    record = levers_record(check)["tuned_vs_stock"]
    assert record["launch_levers"] == ["nodyn"]
    assert record["workflows"]["sdxl"]["launch_s"] == 0.0591
    assert record["workflows"]["sdxl"]["launch_norouting_s"] == 0.0568
    assert record["workflows"]["sdxl"]["launch_routed_shapes"] == shapes
    assert "launch_s" not in record["workflows"]["wan"]
    plan, _ = routed_plan(tmp_path, check)
    attention = plan.tuning("attention")
    assert attention is not None and attention.status == "on"
    assert "sageattention for fp16 D=64 at 32768 and more tokens not routed" in attention.reason
    assert "routing 0.96× on sdxl as launched (0.057 → 0.059 s a prompt" in attention.reason
    assert len(bands(plan)) == 3
    # A band the first phase lost through stays dropped though the second phase, which
    # no longer routed it, measured nothing against it.
    check = with_launch(two_workflows(0.0568 / 0.0591), "sdxl", 0.0568, 0.0568, {})
    plan, _ = routed_plan(tmp_path, check)
    assert len(bands(plan)) == 3
    # Both pairs within the noise: every band stays.
    plan, _ = routed_plan(tmp_path, with_launch(two_workflows(1.0), "sdxl", 0.059, 0.0585, shapes))
    assert len(bands(plan)) == 4


def lever_outcome(launch: float | None, *, ok: bool = True,
                  levers: tuple[str, ...] = ("nodyn",)) -> CheckOutcome:  # fmt: skip
    """Stock 0.12, tuned 0.10, nodyn 0.09 against tuned (on alone); the launch with it."""
    check = outcome(0.12, 0.10, lever=0.09, routed=False)
    check.launch_levers = levers
    return with_launch(check, "sdxl", launch, None, ok=ok) if launch else check


@pytest.mark.parametrize(
    ("check", "status", "says"),
    [
        (lever_outcome(0.09), "on", "end to end the launch as decided 1.33× stock on sdxl"),
        (lever_outcome(0.125), "off", "the launch with nodyn measured slower than stock (or "
         "wrong) end to end: the launch as decided 0.96× stock on sdxl"),
        (lever_outcome(0.09, ok=False), "off", "the launch as decided 1.33× stock on sdxl "
         "(0.120 → 0.090 s a prompt, output differs)"),
        (lever_outcome(0.125, levers=("autotune",)), "on",
         "end to end, the launch was measured with autotune lever, not with these"),
        (lever_outcome(None), "on", "measured faster on this GPU: 1.11× on sdxl"),
    ],
)  # fmt: skip
def test_the_levers_that_go_on_are_judged_together_by_the_launch_with_them(
    tmp_path: Path, check: CheckOutcome, status: str, says: str
) -> None:
    write_levers(tmp_path, H200, levers_record(check))
    records = read_levers(tmp_path, GPU)
    tunings, args = decide_levers(True, GPU, records, ())
    [lever] = tunings
    assert (lever.status, says in lever.reason) == (status, True), lever.reason
    assert args == (["--disable-dynamic-vram"] if status == "on" else [])


def test_the_second_phase_runs_only_when_the_launch_as_decided_is_not_tuned() -> None:
    install = Path("/srv/i")
    check = plan_check([workflow()], [], runs=1, budget_s=60)
    tuned = check.variants[1]
    facts = launch_facts(install)
    plain = plan_variant(tuned, facts, install, (), {}, output="<o>")
    [launch] = launch_variants(False)
    # No lever on: the launch as decided is the tuned variant, measured already.
    same = plan_variant(launch, replace(facts, levers=None), install, (), {}, output="<o>")
    assert not launch_differs(plain, same)
    # nodyn measured faster and on: the launch adds it, so the second phase runs.
    records = first_phase_records(outcome(0.12, 0.10, lever=0.09, routed=False))
    decided = plan_variant(launch, replace(facts, levers=records), install, (), {}, output="<o>")
    assert "--disable-dynamic-vram" in decided.argv
    assert launch_differs(plain, decided)
    assert [(v.name, v.kind, v.router_off) for v in launch_variants(True)] == [
        ("launch", "launch", False), ("launch-norouting", "launch_norouting", True),
    ]  # fmt: skip
    assert variant_environ(launch_variants(True)[1], {}) == {
        "COMFY_INSTALL_ATTENTION_ROUTES": "off"
    }


def test_figures_that_do_not_read_back_skip_the_second_phase_with_a_warning() -> None:
    import io

    from installer.core.log import InstallerLogger
    from installer.workflows.run import _second_phase

    # A lever "ran" in no time: levers.json could not hold that figure, so nothing is planned.
    check = outcome(0.12, 0.10, lever=0.0, routed=False)
    stream = io.StringIO()
    plan = plan_check([workflow()], [], runs=1, budget_s=60)
    install = Path("/srv/i")
    facts = launch_facts(install)
    tuned = variant_plans(plan, facts, install, (), {})["tuned"]
    found = _second_phase(check, facts, install, (), {}, tuned, InstallerLogger(stream=stream))
    assert found is None
    assert "second phase not run: the first phase's figures do not read back" in stream.getvalue()
