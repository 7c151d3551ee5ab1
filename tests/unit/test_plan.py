"""The plan: 13 steps with run/skip/done and why, built purely from data.

`build_plan` gets a hand-made Environment, GPU reports and InstallProbes; the
command-line tests run the real `comfy-install install --dry-run`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path, PureWindowsPath
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from installer.core.config import (
    Dependencies,
    OptimizationPackage,
    OptimizationsConfig,
    ToolsManifest,
)
from installer.core.errors import PlanError, UsageError
from installer.core.facts import (
    Environment,
    GpuReport,
    InstallProbe,
    TorchInstalled,
    gpu_override,
    no_gpu,
)
from installer.core.records import InstallState, StepRecord
from installer.plan.build import build_plan
from installer.plan.records import STEP_IDS, InstallOptions, Plan

DIR = Path("/srv/comfy")
COMMIT = "2f35f4a08176d993cded35dac3332be4f7287f41"
H100 = gpu_override("9.0", "13.0")

ORDER = (
    "preflight", "uv", "python", "venv", "comfyui", "gpu", "torch",
    "requirements", "custom_nodes", "optimizations", "launchers", "models", "verify",
)  # fmt: skip

ALWAYS = "checks are made on every run (no network)"
UP_TO_DATE = "up to date"


def make(
    deps: Dependencies,
    manifest: ToolsManifest,
    env: Environment,
    gpu: GpuReport = H100,
    probe: InstallProbe | None = None,
    **options: Any,
) -> Plan:
    options.setdefault("dry_run", True)
    return build_plan(deps, manifest, env, gpu, InstallOptions(install_dir=DIR, **options), probe)


def actions(plan: Plan) -> list[tuple[str, str, str]]:
    return [(s.id, s.action, s.reason) for s in plan.steps]


def test_step_ids_are_the_13_of_the_design() -> None:
    assert STEP_IDS == ORDER


def test_fresh_plan_with_a_gpu(
    deps: Dependencies, manifest: ToolsManifest, fake_env: Environment
) -> None:
    plan = make(deps, manifest, fake_env)
    assert [s.number for s in plan.steps] == list(range(1, 14))
    assert actions(plan) == [
        ("preflight", "run", ALWAYS),
        ("uv", "run", "not done yet"),
        ("python", "run", "uv will run first"),
        ("venv", "run", "python will run first"),
        ("comfyui", "run", "not done yet"),
        ("gpu", "run", "not done yet"),
        ("torch", "run", "venv will run first"),
        ("requirements", "run", "venv, torch, comfyui will run first"),
        ("custom_nodes", "skip", "no custom nodes configured"),
        ("optimizations", "run", "torch, requirements will run first"),
        ("launchers", "run", "not done yet"),
        ("models", "skip", "no models configured"),
        ("verify", "run", "venv, comfyui, torch, requirements, optimizations will run first"),
    ]
    assert plan.platform == "linux"
    assert plan.torch.variant == "cu130"
    assert plan.torch.version == "2.11.0"
    assert plan.torch.minor_version_compat is None
    assert plan.comfyui.commit == COMMIT
    assert plan.paths.venv_python == "venv/bin/python"
    assert plan.paths.launcher == "run_comfyui.sh"
    assert plan.gpu.planning_cc == "9.0"
    assert plan.warnings == []
    assert {s.fingerprint for s in plan.steps}.isdisjoint({""})
    installs = {o.name: o.requirement for o in plan.optimizations if o.action == "install"}
    assert installs == {
        "xformers": "xformers==0.0.35",
        "triton": "triton<3.7,>=3.6",
        "sageattention==1.0.6 (fallback)": "sageattention==1.0.6",
    }


def test_fresh_plan_without_a_gpu(
    deps: Dependencies, manifest: ToolsManifest, fake_env: Environment
) -> None:
    plan = make(deps, manifest, fake_env, no_gpu("--gpu none: planning for the CPU"))
    got = dict((s.id, (s.action, s.reason)) for s in plan.steps)
    assert got["optimizations"] == ("skip", "no NVIDIA GPU")
    assert got["verify"] == ("run", "venv, comfyui, torch, requirements will run first")
    assert plan.torch.variant == "cpu"
    assert plan.torch.cuda is None
    assert all(o.action == "skip" for o in plan.optimizations)


def test_gpu_on_a_cuda_11_driver_plans_cpu_torch_and_warns(
    deps: Dependencies, manifest: ToolsManifest, fake_env: Environment
) -> None:
    plan = make(deps, manifest, fake_env, gpu_override("12.0", "11.8"))
    assert plan.torch.variant == "cpu"
    assert plan.step("optimizations").action == "skip"
    assert plan.step("optimizations").reason == "torch is a CPU build"
    assert len(plan.warnings) == 1
    assert "Install a driver that supports CUDA 13.0" in plan.warnings[0]
    assert plan.torch.advice is not None and "any CUDA 12 driver runs cu128" in plan.torch.advice


def test_gpu_on_an_older_driver_of_the_builds_cuda_major_runs_through_minor_compat(
    deps: Dependencies, manifest: ToolsManifest, fake_env: Environment
) -> None:
    # An RTX 5090 on a 560 driver (CUDA 12.6): cu126 has no Blackwell kernels, cu128 has and
    # runs on any CUDA 12 driver, with limits.
    plan = make(deps, manifest, fake_env, gpu_override("12.0", "12.6"))
    assert plan.torch.variant == "cu128"
    assert plan.torch.cuda == "cu128"
    assert plan.torch.minor_version_compat is not None
    assert "CUDA minor-version compatibility" in plan.torch.minor_version_compat
    assert "(Linux ≥ 570.26) removes them" in plan.torch.minor_version_compat
    assert plan.warnings == [plan.torch.minor_version_compat]
    assert plan.step("optimizations").action == "run"
    skipped = {o.name: o.reason for o in plan.optimizations if o.action == "skip"}
    # xformers has no Blackwell kernels (only PTX, which this driver cannot compile).
    assert "no compiled kernels for compute capability 12.0" in skipped["xformers"]
    assert "device kernel image is invalid" in skipped["triton"]
    assert skipped["sageattention==1.0.6 (fallback)"].startswith(
        "SageAttention runs Triton kernels"
    )


def test_windows_plan(deps: Dependencies, manifest: ToolsManifest, fake_env: Environment) -> None:
    plan = make(deps, manifest, fake_env, gpu_override("8.9", "12.8"), platform="windows")
    assert plan.platform == "windows"
    assert PureWindowsPath(plan.paths.venv_python) == PureWindowsPath("venv/Scripts/python.exe")
    assert plan.paths.venv_python == "venv\\Scripts\\python.exe"
    assert plan.paths.launcher == "run_comfyui.bat"
    triton = next(o for o in plan.optimizations if o.name == "triton")
    assert triton.distribution == "triton-windows"
    assert (triton.requirement or "").startswith("triton-windows")


def test_other_platform_needs_dry_run(
    deps: Dependencies, manifest: ToolsManifest, fake_env: Environment
) -> None:
    with pytest.raises(UsageError) as caught:
        make(deps, manifest, fake_env, platform="windows", dry_run=False)
    assert caught.value.exit_code == 2
    assert "--platform windows plans for another OS" in caught.value.message
    # The advice is given once, in the hint, not in the message as well.
    assert "--dry-run" not in caught.value.message and "--dry-run" in caught.value.hint


@pytest.mark.parametrize("flag", ["only", "skip", "force"])
def test_unknown_step_is_a_usage_error(
    deps: Dependencies, manifest: ToolsManifest, fake_env: Environment, flag: str
) -> None:
    with pytest.raises(UsageError) as caught:
        make(deps, manifest, fake_env, **{flag: ("torch,bogus",)})
    assert caught.value.exit_code == 2
    assert "bogus" in caught.value.message
    assert "torch" not in caught.value.message.split("unknown step")[1]


def test_unsupported_python_is_a_usage_error(
    deps: Dependencies, manifest: ToolsManifest, fake_env: Environment
) -> None:
    with pytest.raises(UsageError, match=r"Python 3\.9 is not supported"):
        make(deps, manifest, fake_env, python="3.9")


def test_only_selects_steps(
    deps: Dependencies, manifest: ToolsManifest, fake_env: Environment
) -> None:
    plan = make(deps, manifest, fake_env, only=("uv,gpu",))
    got = {s.id: (s.action, s.reason) for s in plan.steps}
    assert got["uv"] == ("run", "not done yet")
    assert got["gpu"] == ("run", "not done yet")
    assert got["torch"] == ("skip", "not selected by --only")
    assert got["custom_nodes"] == ("skip", "no custom nodes configured")
    assert [s.id for s in plan.to_run] == ["uv", "gpu"]


def test_skip_removes_a_step(
    deps: Dependencies, manifest: ToolsManifest, fake_env: Environment
) -> None:
    plan = make(deps, manifest, fake_env, skip=("launchers",))
    assert (plan.step("launchers").action, plan.step("launchers").reason) == (
        "skip",
        "skipped by --skip",
    )
    assert plan.step("torch").action == "run"


def test_only_a_step_whose_dependency_is_missing_is_a_plan_error(
    deps: Dependencies, manifest: ToolsManifest, fake_env: Environment
) -> None:
    with pytest.raises(PlanError) as caught:
        make(deps, manifest, fake_env, only=("requirements",))
    assert caught.value.exit_code == 2
    assert "requirements needs venv" in caught.value.message


# --- an existing install -----------------------------------------------------------

TORCH_OUT = {"torch": "2.9.1+cu128", "torchvision": "0.24.1+cu128", "torchaudio": "2.9.1+cu128"}


def finished_state(plan: Plan, **status: str) -> InstallState:
    """Record every step of ``plan`` as done (or as ``status[id]``) with its fingerprint."""
    outputs = {
        "python": {"interpreter": "/opt/python/3.12/bin/python3.12", "version": "3.12.3"},
        "comfyui": {"commit": COMMIT},
        "torch": TORCH_OUT,
    }
    steps = {
        step.id: StepRecord(
            status=status.get(step.id, "done"),  # type: ignore[arg-type]
            fingerprint=step.fingerprint,
            inputs=step.inputs,
            outputs=outputs.get(step.id, {}),
            seq=step.number,
        )
        for step in plan.steps
        if step.action == "run"
    }
    return InstallState(tool_version="0.1.0", seq=len(plan.steps), steps=steps)


def finished_probe(state: InstallState, **changes: Any) -> InstallProbe:
    values: dict[str, Any] = {
        "install_dir": DIR,
        "state": state,
        "venv_python_exists": True,
        "venv_python_version": "3.12.3",
        "recorded_python_exists": True,
        "comfyui_head": COMMIT,
        "installed": {"torch": "2.9.1+cu128", "torchvision": "0.24.1+cu128",
                      "torchaudio": "2.9.1+cu128"},
        "torch": TorchInstalled("2.9.1+cu128", "12.8"),
        "existing_files": frozenset({"launcher"}),
    }  # fmt: skip
    values.update(changes)
    return InstallProbe(**values)


@pytest.fixture
def first(deps: Dependencies, manifest: ToolsManifest, fake_env: Environment) -> Plan:
    return make(deps, manifest, fake_env)


def expect(**runs: str) -> list[tuple[str, str, str]]:
    """Every step done (skips stay skips) except those in ``runs`` (id -> reason)."""
    skips = {"custom_nodes": "no custom nodes configured", "models": "no models configured"}
    rows = []
    for step_id in ORDER:
        if step_id in skips:
            rows.append((step_id, "skip", skips[step_id]))
        elif step_id in runs:
            rows.append((step_id, "run", runs[step_id]))
        elif step_id == "preflight":
            rows.append(
                ("preflight", "run", ALWAYS)
                if runs
                else ("preflight", "done", "up to date (nothing to check: no step runs)")
            )
        else:
            rows.append((step_id, "done", UP_TO_DATE))
    return rows


def test_finished_install_is_all_done(
    deps: Dependencies, manifest: ToolsManifest, fake_env: Environment, first: Plan
) -> None:
    probe = finished_probe(finished_state(first))
    plan = make(deps, manifest, fake_env, probe=probe)
    assert actions(plan) == expect()
    assert plan.to_run == []
    # The same inputs give the same fingerprints.
    assert [s.fingerprint for s in plan.steps] == [s.fingerprint for s in first.steps]
    assert plan.torch.installed == "2.9.1+cu128"


def test_changed_python_reruns_it_and_its_dependents_only(
    deps: Dependencies, manifest: ToolsManifest, fake_env: Environment, first: Plan
) -> None:
    probe = finished_probe(finished_state(first))
    plan = make(deps, manifest, fake_env, probe=probe, python="3.11")
    assert actions(plan) == expect(
        python="inputs changed (request)",
        venv="python will run first",
        torch="venv will run first",
        requirements="venv, torch will run first",
        optimizations="torch, requirements will run first",
        verify="venv, torch, requirements, optimizations will run first",
    )


def test_changed_driver_reruns_gpu_and_torch_chain(
    deps: Dependencies, manifest: ToolsManifest, fake_env: Environment, first: Plan
) -> None:
    probe = finished_probe(finished_state(first))
    plan = make(deps, manifest, fake_env, gpu_override("9.0", "12.6"), probe=probe)
    assert plan.torch.variant == "cu126"
    assert actions(plan) == expect(
        gpu="inputs changed (cuda_driver)",
        torch="inputs changed (index_url, variant)",
        requirements="torch will run first",
        optimizations="torch, requirements will run first",
        verify="torch, requirements, optimizations will run first",
    )


def test_changed_gpu_without_other_effect_reruns_only_gpu(
    deps: Dependencies, manifest: ToolsManifest, fake_env: Environment, first: Plan
) -> None:
    probe = finished_probe(finished_state(first))
    plan = make(deps, manifest, fake_env, gpu_override("8.9", "13.0"), probe=probe)
    assert actions(plan) == expect(gpu="inputs changed (gpus)")


def test_running_record_is_redone(
    deps: Dependencies, manifest: ToolsManifest, fake_env: Environment, first: Plan
) -> None:
    probe = finished_probe(finished_state(first, torch="running"))
    plan = make(deps, manifest, fake_env, probe=probe)
    assert actions(plan) == expect(
        torch="did not finish last time (the process stopped mid-step); redoing it",
        requirements="torch will run first",
        optimizations="torch, requirements will run first",
        verify="torch, requirements, optimizations will run first",
    )


@pytest.mark.parametrize(
    ("status", "reason"),
    [("failed", "failed last time"), ("interrupted", "was interrupted last time; redoing it")],
)
def test_failed_or_interrupted_record_is_redone(
    deps: Dependencies,
    manifest: ToolsManifest,
    fake_env: Environment,
    first: Plan,
    status: str,
    reason: str,
) -> None:
    probe = finished_probe(finished_state(first, launchers=status))
    plan = make(deps, manifest, fake_env, probe=probe)
    assert actions(plan) == expect(launchers=reason)


@pytest.mark.parametrize(
    ("changes", "runs"),
    [
        (
            {"existing_files": frozenset()},
            {"launchers": "the launcher script is missing"},
        ),
        (
            {"venv_python_exists": False, "installed": {}, "torch": None},
            {
                "venv": "the venv's Python is missing",
                "torch": "venv will run first",
                "requirements": "venv, torch will run first",
                "optimizations": "torch, requirements will run first",
                "verify": "venv, torch, requirements, optimizations will run first",
            },
        ),
        (
            {"comfyui_head": "0" * 40},
            {
                "comfyui": f"ComfyUI's HEAD is {'0' * 40}, not {COMMIT}",
                "requirements": "comfyui will run first",
                "optimizations": "requirements will run first",
                "verify": "comfyui, requirements, optimizations will run first",
            },
        ),
        (
            {
                "torch": TorchInstalled("2.10.0+cu128", "12.8"),
                "installed": {
                    "torch": "2.10.0+cu128",
                    "torchvision": "0.24.1+cu128",
                    "torchaudio": "2.9.1+cu128",
                },
            },
            {
                "torch": "the venv has torch 2.10.0+cu128, not the recorded 2.9.1+cu128",
                "requirements": "torch will run first",
                "optimizations": "torch, requirements will run first",
                "verify": "torch, requirements, optimizations will run first",
            },
        ),
    ],
    ids=["launcher-gone", "venv-gone", "comfyui-moved", "torch-replaced"],
)
def test_missing_outputs_are_redone(
    deps: Dependencies,
    manifest: ToolsManifest,
    fake_env: Environment,
    first: Plan,
    changes: dict[str, Any],
    runs: dict[str, str],
) -> None:
    probe = finished_probe(finished_state(first), **changes)
    plan = make(deps, manifest, fake_env, probe=probe)
    assert actions(plan) == expect(**runs)


def test_force_reruns_a_done_step(
    deps: Dependencies, manifest: ToolsManifest, fake_env: Environment, first: Plan
) -> None:
    probe = finished_probe(finished_state(first))
    plan = make(deps, manifest, fake_env, probe=probe, force=("launchers",))
    assert actions(plan) == expect(launchers="forced by --force")


def test_dependency_that_ran_later_reruns_the_step(
    deps: Dependencies, manifest: ToolsManifest, fake_env: Environment, first: Plan
) -> None:
    state = finished_state(first)
    state.steps["torch"].seq = 99  # torch was redone after requirements, optimizations, verify
    plan = make(deps, manifest, fake_env, probe=finished_probe(state))
    assert actions(plan) == expect(
        requirements="torch changed since it ran",
        optimizations="requirements will run first",
        verify="requirements, optimizations will run first",
    )


# --- properties ---------------------------------------------------------------------

requires_terms = st.lists(
    st.sampled_from(["nvidia", "cpu", "linux", "windows", "cc>=8.0", "cc<7.5"]), max_size=3
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    platform=st.sampled_from(["linux", "windows"]),
    torch_index=st.sampled_from(["auto", "cpu", "cu126", "cu128", "cu130", "default"]),
    python=st.sampled_from(["3.10", "3.11", "3.12", "3.13"]),
    extra=st.lists(requires_terms, max_size=3),
)
def test_no_gpu_plans_no_optimizations(
    deps: Dependencies,
    manifest: ToolsManifest,
    ref: SimpleNamespace,
    platform: str,
    torch_index: str,
    python: str,
    extra: list[list[str]],
) -> None:
    packages = list(deps.optimizations.packages) + [
        OptimizationPackage(name=f"extra{i}", pypi_package=f"extra{i}", requires=terms)
        for i, terms in enumerate(extra)
    ]
    config = deps.model_copy(update={"optimizations": OptimizationsConfig(packages=packages)})
    plan = make(
        config,
        manifest,
        ref.make_env(platform),
        no_gpu("--gpu none: planning for the CPU"),
        torch_index=torch_index,
        python=python,
    )
    assert plan.optimizations, "every configured package is listed, even when skipped"
    assert (
        len(plan.optimizations)
        == len(packages)
        + len(deps.pip_packages.sageattention_wheels)
        + len(deps.pip_packages.sageattention_sources)
        + 1
    )
    assert all(entry.action == "skip" for entry in plan.optimizations)
    assert plan.torch.cuda is None
    step = plan.step("optimizations")
    assert (step.action, step.reason) == ("skip", "no NVIDIA GPU")


# --- the command line ---------------------------------------------------------------


def dry_run_json(cli: Callable[..., Any], target: Path, *args: str) -> dict[str, Any]:
    result = cli("install", target, "--dry-run", "--json", *args)
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["status"] == "ok"
    return document["data"]


def test_cli_windows_dry_run(cli: Callable[..., Any], tmp_path: Path) -> None:
    target = tmp_path / "win"
    data = dry_run_json(
        cli, target, "--platform", "windows", "--gpu", "8.9", "--cuda-driver", "12.8"
    )
    assert data["platform"] == "windows"
    assert data["paths"]["venv_python"] == "venv\\Scripts\\python.exe"
    assert data["paths"]["launcher"] == "run_comfyui.bat"
    assert data["torch"]["variant"] == "cu128"
    assert data["torch"]["index_url"] == "https://download.pytorch.org/whl/cu128"
    by_name = {o["name"]: o for o in data["optimizations"] if o["action"] == "install"}
    assert by_name["triton"]["distribution"] == "triton-windows"
    installed_wheels = [o["wheel"]["filename"] for o in data["optimizations"]
                        if o["kind"] == "wheel" and o["action"] == "install"]  # fmt: skip
    assert installed_wheels == [
        "sageattention-2.2.0+cu128torch2.10.0andhigher.post6-cp310-abi3-win_amd64.whl"
    ]
    assert not any(
        o["kind"] == "fallback" and o["action"] == "install" for o in data["optimizations"]
    )
    launchers = next(s for s in data["steps"] if s["id"] == "launchers")
    assert launchers["inputs"]["launcher"] == "run_comfyui.bat"
    assert not target.exists()


@pytest.mark.parametrize("cc", ["6.1", "7.5"])
def test_cli_windows_below_cc_8_gets_no_triton_windows(
    cli: Callable[..., Any], tmp_path: Path, cc: str
) -> None:
    data = dry_run_json(
        cli, tmp_path / "win", "--platform", "windows", "--gpu", cc, "--cuda-driver", "13.0"
    )
    assert data["torch"]["variant"] == ("cu126" if cc == "6.1" else "cu130")
    by_name = {o["name"]: o for o in data["optimizations"]}
    assert by_name["triton"]["action"] == "skip"
    assert by_name["triton"]["reason"].startswith(
        f"needs compute capability >=8.0 (have {cc}) on windows: triton-windows supports Turing"
    )
    assert not [
        o for o in data["optimizations"] if o["action"] == "install" and o["kind"] != "package"
    ]
    assert all(
        o["reason"].startswith("SageAttention runs Triton kernels")
        for o in data["optimizations"]
        if o["kind"] != "package"
    )


@pytest.mark.parametrize(
    ("cc", "driver", "variant"),
    [("6.1", "12.4", "cu126"), ("5.2", "12.2", "cu126"), ("8.0", "12.2", "cu128")],
)
def test_cli_dry_run_of_the_issue_20_machines(
    cli: Callable[..., Any], tmp_path: Path, cc: str, driver: str, variant: str
) -> None:
    data = dry_run_json(cli, tmp_path / "old", "--gpu", cc, "--cuda-driver", driver)
    assert data["torch"]["variant"] == variant
    assert "minor-version compatibility" in data["torch"]["minor_version_compat"]
    assert data["torch"]["minor_version_compat"] in data["warnings"]
    text = cli("install", str(tmp_path / "old"), "--dry-run", "--gpu", cc, "--cuda-driver", driver)
    assert text.exit_code == 0, text.output
    assert "minor-version compatibility" in " ".join(text.output.split())


def test_cli_linux_dry_run_has_no_sa2_wheel(cli: Callable[..., Any], tmp_path: Path) -> None:
    data = dry_run_json(
        cli, tmp_path / "lin", "--platform", "linux", "--gpu", "8.9", "--cuda-driver", "12.8",
        "--cuda-toolkit", "none",
    )  # fmt: skip
    assert data["torch"]["variant"] == "cu128"
    assert data["paths"]["venv_python"] == "venv/bin/python"
    installing = {o["name"]: o for o in data["optimizations"] if o["action"] == "install"}
    assert set(installing) == {"xformers", "triton", "sageattention==1.0.6 (fallback)"}
    assert installing["triton"]["distribution"] == "triton"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--cuda-driver", "12.8"), "--cuda-driver needs --gpu CC"),
        (("--gpu", "none", "--cuda-driver", "12.8"), "--cuda-driver needs --gpu CC"),
        (("--gpu", "8.9", "--cuda-driver", "12"), "expected X.Y"),
        (("--gpu", "ampere"), "--gpu ampere"),
        (("--only", "torch,bogus"), "--only: unknown step bogus"),
        (("--skip", "nope"), "--skip: unknown step nope"),
        (("--force", "nope"), "--force: unknown step nope"),
        (("--gpu", "8.9", "--torch-index", "cu999"), "--torch-index cu999"),
    ],
)
def test_cli_bad_usage_is_exit_2(
    cli: Callable[..., Any], tmp_path: Path, args: tuple[str, ...], needle: str
) -> None:
    target = tmp_path / "x"
    result = cli("install", target, "--dry-run", *args)
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    assert needle in result.stderr
    assert "Traceback" not in result.output
    assert result.stdout == ""
    assert not target.exists()


# Belt and braces for the tests below that run without --dry-run: should the usage check
# ever be lost, nothing may reach the network.
NO_NETWORK = (
    "--offline",
    "--index-url",
    "http://127.0.0.1:9/simple",
    "--comfyui-url",
    "/nonexistent",
)


@pytest.mark.parametrize(
    "args",
    [("--platform", "windows"), ("--cuda-driver", "12.8"), ("--only", "bogus")],
    ids=["platform", "cuda-driver", "only"],
)
def test_cli_bad_usage_without_dry_run_is_exit_2(
    cli: Callable[..., Any], tmp_path: Path, args: tuple[str, ...]
) -> None:
    result = cli("install", tmp_path / "x", *args, *NO_NETWORK)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output


def test_cli_bad_usage_without_dry_run_creates_nothing(
    cli: Callable[..., Any], tmp_path: Path
) -> None:
    target = tmp_path / "x"
    result = cli("install", target, "--platform", "windows", *NO_NETWORK)
    assert result.exit_code == 2
    assert not target.exists()


def test_cli_dry_run_shows_every_step(cli: Callable[..., Any], tmp_path: Path) -> None:
    result = cli("install", tmp_path / "x", "--dry-run", "--gpu", "8.9", "--cuda-driver", "12.8")
    assert result.exit_code == 0, result.output
    for step_id in ORDER:
        assert step_id in result.output
    assert "cu128" in result.output


def test_cli_dry_run_plan_is_on_stdout(cli: Callable[..., Any], tmp_path: Path) -> None:
    result = cli("install", tmp_path / "x", "--dry-run", "--gpu", "8.9", "--cuda-driver", "12.8")
    assert result.exit_code == 0
    assert "optimizations" in result.stdout
    assert "verify" in result.stdout


def test_pypi_torch_whose_dist_version_lacks_the_local_label_stays_done(
    deps: Dependencies, manifest: ToolsManifest, fake_env: Environment, first: Plan
) -> None:
    # PyPI's torch 2.9.1 says 2.9.1 in its dist-info and 2.9.1+cu128 in torch/version.py;
    # the step records the dist-info version, and a re-run must not reinstall torch.
    state = finished_state(first)
    state.steps["torch"].outputs = {
        "torch": "2.9.1",
        "torchvision": "0.24.1",
        "torchaudio": "2.9.1",
        "cuda": "12.8",
    }
    probe = finished_probe(
        state,
        installed={"torch": "2.9.1", "torchvision": "0.24.1", "torchaudio": "2.9.1"},
        torch=TorchInstalled("2.9.1+cu128", "12.8"),
    )
    plan = make(deps, manifest, fake_env, probe=probe)
    assert actions(plan) == expect()


def test_the_plan_decides_the_tune_after_install(
    deps: Dependencies, manifest: ToolsManifest, fake_env: Environment
) -> None:
    measured = make(deps, manifest, fake_env)  # --gpu auto, the whole install
    assert measured.tune is not None
    assert measured.tune.action == "run"
    assert "comfy-install tune" in measured.tune.reason
    cases = {
        "--no-tune": make(deps, manifest, fake_env, tune=False),
        "--gpu 8.9: not this machine's GPU": build_plan(
            deps, manifest, fake_env, H100, InstallOptions(install_dir=DIR, gpu="8.9", dry_run=True)
        ),
        "--only: a partial install": make(deps, manifest, fake_env, only=("comfyui",)),
        "no NVIDIA GPU (no GPU here)": make(deps, manifest, fake_env, no_gpu("no GPU here")),
    }
    for reason, plan in cases.items():
        assert plan.tune is not None
        assert (plan.tune.action, plan.tune.reason) == ("skip", reason)


def test_cli_dry_run_shows_the_tune_after_install(cli: Callable[..., Any], tmp_path: Path) -> None:
    data = dry_run_json(cli, tmp_path / "x", "--gpu", "8.9", "--cuda-driver", "12.8")
    assert data["tune"] == {"action": "skip", "reason": "--gpu 8.9: not this machine's GPU"}
    shown = cli("install", tmp_path / "x", "--dry-run", "--gpu", "none", "--no-tune")
    assert shown.exit_code == 0, shown.output
    assert "measure attention (skip) — --no-tune" in shown.output
