"""SageAttention's routes, planned from data: prebuilt wheel → source build → SA 1 → none.

The plan is made for machines described as data (compute capability, driver, CUDA
toolkit, compiler, platform, Python), with the shipped `sageattention_sources` and a
torch section fixed here (torch 2.11.0; cu128 preferred, then cu130, cu126, CPU) so the
route rules are tested whatever the shipped torch pin is.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from packaging.version import Version

import installer.plan.build as build_module
from installer.core.config import Dependencies, ToolsManifest
from installer.core.config_files import load_dependencies
from installer.core.errors import ConfigError
from installer.core.facts import (
    BuildHost,
    GpuInfo,
    GpuReport,
    InstallProbe,
    Tool,
    TorchInstalled,
    gpu_override,
)
from installer.optimizations.build import first_error
from installer.optimizations.build_cache import BuildKey
from installer.plan.build import build_plan
from installer.plan.optimizations import PlannedOptimization, plan_optimizations
from installer.plan.records import InstallOptions, Plan
from installer.plan.sage_routes import (
    NONE,
    ROUTES,
    SAGE1,
    SOURCE,
    WHEEL,
    module_routes,
    route_lines,
    route_of,
)
from installer.plan.sage_sources import cuda_major

DIR = Path("/srv/comfy")
GIB = 2**30
WIN_WHEEL = "https://github.com/woct0rdho/SageAttention/releases/download/v2.2.0-windows.post6/"
WIN_CU128 = "sageattention-2.2.0%2Bcu128torch2.10.0andhigher.post6-cp310-abi3-win_amd64.whl"
WIN_CU130 = "sageattention-2.2.0%2Bcu130torch2.10.0andhigher.post6-cp310-abi3-win_amd64.whl"


@pytest.fixture(scope="module")
def config(deps: Dependencies) -> Dependencies:
    """The shipped config with a fixed torch section and the Windows wheels for torch ≥ 2.10."""
    data = deps.model_dump(mode="json", exclude_none=True)
    data["torch"] = {
        "packages": ["torch==2.11.0", "torchvision==0.26.0", "torchaudio==2.11.0"],
        "variants": [
            {"name": "cu128", "index_url": "https://download.pytorch.org/whl/cu128",
             "min_cuda_driver": "12.8", "cc": ">=7.5,<13.0"},
            {"name": "cu130", "index_url": "https://download.pytorch.org/whl/cu130",
             "min_cuda_driver": "13.0", "cc": ">=7.5,<13.0"},
            {"name": "cu126", "index_url": "https://download.pytorch.org/whl/cu126",
             "min_cuda_driver": "12.6", "cc": ">=5.0,<10.0"},
            {"name": "cpu", "index_url": "https://download.pytorch.org/whl/cpu"},
        ],
    }  # fmt: skip
    data["optimizations"] = {"packages": []}
    data["pip_packages"]["sageattention_wheels"] = [
        {"name": f"sageattention2-{cuda}-torch2.10+", "cc": ">=8.0,<12.1,!=10.*,!=11.*",
         "torch": ">=2.10", "cuda": cuda_list, "python": ">=3.10", "platform": "windows",
         "url": WIN_WHEEL + name}
        for cuda, cuda_list, name in (
            ("cu12x", ["cu128", "cu126"], WIN_CU128), ("cu130", ["cu130"], WIN_CU130)
        )
    ]  # fmt: skip
    return Dependencies.model_validate(data)


def machine(
    ref: SimpleNamespace,
    platform: str = "linux",
    toolkit: str | None = "13.0",
    compiler: bool = True,
    cores: int = 16,
    memory_gib: float = 128,
    git: bool = True,
) -> Any:
    """A machine described as data: its toolkit, compiler, cores, memory and git."""
    cl = "cl" if platform == "windows" else "c++"
    return ref.make_env(
        platform,
        compiler=Tool("compiler", path=f"/usr/bin/{cl}", version=cl)
        if compiler
        else Tool("compiler", error=f"no C++ compiler found (looked for {cl})"),
        nvcc=Tool("nvcc", path="/usr/local/cuda/bin/nvcc", version=toolkit)
        if toolkit
        else Tool("nvcc", error="the CUDA toolkit (nvcc) was not found"),
        git=Tool("git", path="/usr/bin/git", version="2.43.0")
        if git
        else Tool("git", error="git was not found on PATH"),
        cpu_count=cores,
        memory_total_bytes=int(memory_gib * GIB),
    )


def plan(
    config: Dependencies,
    manifest: ToolsManifest,
    env: Any,
    gpu: GpuReport,
    probe: InstallProbe | None = None,
    **options: Any,
) -> Plan:
    options.setdefault("dry_run", True)
    return build_plan(config, manifest, env, gpu, InstallOptions(install_dir=DIR, **options), probe)


def route(result: Plan, module: str) -> tuple[str, PlannedOptimization | None]:
    """The route taken for a module (wheel, source, fallback or none) and its entry."""
    for entry in result.optimizations:
        if entry.import_name == module and entry.action == "install":
            return entry.kind, entry
    return "none", None


def entry(result: Plan, name: str) -> PlannedOptimization:
    return next(e for e in result.optimizations if e.name == name)


SA2, SA3, SA1 = (
    "sageattention2 (source)",
    "sageattention3 (source)",
    "sageattention==1.0.6 (fallback)",
)

# (platform, cc, driver, toolkit, Python) → (torch build, route for `sageattention`,
#  a phrase of the SageAttention 2 source entry's reason)
CASES = [
    ("linux", "7.5", "13.0", "13.0", "3.12", "cu128", "none", "GPU is cc 7.5, outside its range"),
    ("linux", "8.0", "13.0", "13.0", "3.12", "cu130", "source", "for sm80 against torch 2.11.0"),
    ("linux", "8.6", "13.0", "13.0", "3.12", "cu130", "source", "for sm86"),
    ("linux", "8.6", "13.0", None, "3.12", "cu128", "fallback", "building it needs nvcc"),
    ("linux", "8.9", "12.8", "12.3", "3.12", "cu128", "fallback",
     "nvcc 12.3 is older than 12.4, which compute capability 8.9 needs"),
    ("linux", "8.9", "12.8", "12.4", "3.12", "cu128", "source", "with nvcc 12.4 for sm89"),
    ("linux", "9.0", "12.8", "12.2", "3.12", "cu128", "fallback",
     "nvcc 12.2 is older than 12.3, which compute capability 9.0 needs"),
    ("linux", "9.0", "13.0", "12.8", "3.12", "cu128", "source", "with nvcc 12.8 for sm90"),
    ("linux", "9.0", "13.0", "13.0", "3.12", "cu130", "source", "with nvcc 13.0 for sm90"),
    ("linux", "9.0", "12.8", "13.0", "3.12", "cu128", "fallback",
     "nvcc 13.0 is CUDA 13, torch cu128 is CUDA 12: torch's extension builder refuses"),
    ("linux", "9.0", "13.0", "11.8", "3.12", "cu128", "fallback", "older than 12.3"),
    ("linux", "10.0", "13.0", "13.0", "3.12", "cu128", "fallback",
     "Unsupported CUDA architecture"),
    ("linux", "12.0", "12.8", "12.8", "3.12", "cu128", "source", "for sm120"),
    ("linux", "12.0", "13.0", "12.6", "3.12", "cu128", "fallback", "older than 12.8"),
    ("linux", "12.0", "13.0", "13.0", "3.12", "cu130", "source", "for sm120"),
    ("windows", "8.9", "12.8", "12.8", "3.12", "cu128", "wheel", "a prebuilt wheel fits"),
    ("windows", "9.0", "13.0", None, "3.12", "cu128", "wheel", "a prebuilt wheel fits"),
    ("windows", "10.0", "13.0", "13.0", "3.12", "cu128", "fallback",
     "Unsupported CUDA architecture"),
    ("windows", "12.0", "13.0", "13.0", "3.12", "cu128", "wheel", "a prebuilt wheel fits"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("platform", "cc", "driver", "toolkit", "python", "torch", "sa2_route", "phrase"), CASES
)
def test_route_per_machine(
    config: Dependencies,
    manifest: ToolsManifest,
    ref: SimpleNamespace,
    platform: str,
    cc: str,
    driver: str,
    toolkit: str | None,
    python: str,
    torch: str,
    sa2_route: str,
    phrase: str,
) -> None:
    result = plan(
        config,
        manifest,
        machine(ref, platform, toolkit),
        gpu_override(cc, driver),
        platform=platform,
        python=python,
    )
    assert result.torch.variant == torch
    kind, taken = route(result, "sageattention")
    assert kind == sa2_route
    assert phrase in entry(result, SA2).reason
    for item in result.optimizations:
        assert item.reason, item.name
    fallback = entry(result, SA1)
    if kind == "source":
        assert taken is not None and taken.source is not None
        assert taken.source.build_env["TORCH_CUDA_ARCH_LIST"] == cc
        assert (fallback.action, fallback.fallback_for) == ("skip", SA2)
        assert fallback.reason == f"stands by: installed only if the {SA2} build fails"
        step = result.step("optimizations")
        assert any("build from source" in line and "if the build fails" in line
                   for line in step.details)  # fmt: skip
    else:
        assert entry(result, SA2).source is None and fallback.fallback_for is None


def test_the_whole_grid_keeps_the_rules(
    config: Dependencies, manifest: ToolsManifest, ref: SimpleNamespace
) -> None:
    """Every planned build satisfies what torch's builder and setup.py demand."""
    ccs = ["7.5", "8.0", "8.6", "8.7", "8.9", "9.0", "10.0", "10.3", "12.0", "12.1"]
    toolkits = [None, "12.3", "12.4", "12.8", "13.0"]
    builds = 0
    for platform, cc, driver, toolkit, compiler in itertools.product(
        ("linux", "windows"), ccs, ("12.8", "13.0"), toolkits, (True, False)
    ):
        env = machine(ref, platform, toolkit, compiler=compiler)
        result = plan(config, manifest, env, gpu_override(cc, driver), platform=platform)
        kinds = [route(result, m)[0] for m in ("sageattention", "sageattn3")]
        for module in ("sageattention", "sageattn3"):
            kind, taken = route(result, module)
            if kind != "source":
                continue
            builds += 1
            assert taken is not None and taken.source is not None
            nvcc = Version(taken.source.nvcc)
            assert toolkit is not None and compiler
            assert nvcc.major == cuda_major(result.torch.cuda)
            assert nvcc >= Version("12.0")
            if cc == "8.9":
                assert nvcc >= Version("12.4")
            if cc == "9.0":
                assert nvcc >= Version("12.3")
            if cc.startswith("12."):
                assert nvcc >= Version("12.8")
            assert cc not in ("7.5", "8.7", "10.0", "10.3") or module == "sageattn3"
        # SageAttention 3 needs Python 3.13; the default venv is 3.12.
        assert kinds[1] == "none"
        if kinds[0] == "source":  # only where no prebuilt wheel fits
            assert not any(
                e.kind == "wheel" and e.action == "install" for e in result.optimizations
            )
    assert builds > 25


def test_nvcc_13_only_trades_the_torch_build_and_says_so(
    config: Dependencies, manifest: ToolsManifest, ref: SimpleNamespace
) -> None:
    with_toolkit = plan(config, manifest, machine(ref, toolkit="13.0"), gpu_override("9.0", "13.0"))
    without = plan(config, manifest, machine(ref, toolkit=None), gpu_override("9.0", "13.0"))
    assert (without.torch.variant, with_toolkit.torch.variant) == ("cu128", "cu130")
    reason = with_toolkit.torch.reason
    assert reason.startswith("cu130 rather than cu128 (the first configured build that fits)")
    assert "nvcc 13.0" in reason and "torch's CUDA major to match" in reason
    assert "sageattention: a build from source instead of SageAttention 1" in reason
    assert "needs a driver supporting CUDA 13.0" in reason
    # An explicit --torch-index is never traded away.
    asked = plan(
        config, manifest, machine(ref, toolkit="13.0"), gpu_override("9.0", "13.0"),
        torch_index="cu128",
    )  # fmt: skip
    assert asked.torch.variant == "cu128"
    assert "CUDA 13, torch cu128 is CUDA 12" in entry(asked, SA2).reason


def test_no_trade_when_the_other_build_does_not_fit_the_driver(
    config: Dependencies, manifest: ToolsManifest, ref: SimpleNamespace
) -> None:
    result = plan(config, manifest, machine(ref, toolkit="13.0"), gpu_override("9.0", "12.8"))
    assert result.torch.variant == "cu128"
    assert route(result, "sageattention")[0] == "fallback"


def test_an_installed_torch_is_kept_and_the_plan_says_how_to_switch(
    config: Dependencies, manifest: ToolsManifest, ref: SimpleNamespace
) -> None:
    probe = InstallProbe(install_dir=DIR, torch=TorchInstalled("2.11.0+cu128", "12.8"))
    result = plan(
        config, manifest, machine(ref, toolkit="13.0"), gpu_override("9.0", "13.0"), probe
    )
    assert result.torch.variant == "cu128"
    assert any("--torch-index cu130 --force torch" in w for w in result.warnings)


def test_blackwell_plans_sageattention_3_from_source_on_python_3_13(
    config: Dependencies, manifest: ToolsManifest, ref: SimpleNamespace
) -> None:
    for cc in ("10.0", "12.0"):
        result = plan(
            config, manifest, machine(ref, toolkit="13.0"), gpu_override(cc, "13.0"),
            python="3.13",
        )  # fmt: skip
        kind, taken = route(result, "sageattn3")
        assert kind == "source", entry(result, SA3).reason
        assert taken is not None and taken.source is not None
        assert taken.source.subdirectory == "sageattention3_blackwell"
        assert "TORCH_CUDA_ARCH_LIST" not in taken.source.build_env  # it builds for its GPU
        assert "for the GPU it sees (sm" in taken.reason
        assert "NVIDIA/cutlass" in taken.reason  # its build downloads cutlass
        expected = "fallback" if cc == "10.0" else "source"
        assert route(result, "sageattention")[0] == expected
    offline = plan(
        config, manifest, machine(ref, toolkit="12.8"), gpu_override("12.0", "13.0"),
        python="3.13", offline=True,
    )  # fmt: skip
    assert "--offline: cloning https://github.com/thu-ml/SageAttention.git" in (
        entry(offline, SA3).reason
    )
    assert route(offline, "sageattn3")[0] == "none"


def test_sageattention_3_refuses_a_machine_of_two_blackwell_kinds(
    config: Dependencies, manifest: ToolsManifest, ref: SimpleNamespace
) -> None:
    gpus = GpuReport(
        "override",
        "two GPUs",
        (GpuInfo(0, "B200", "10.0"), GpuInfo(1, "RTX PRO 6000", "12.0")),
        None,
        "13.0",
    )
    result = plan(config, manifest, machine(ref, toolkit="13.0"), gpus, python="3.13")
    assert "compiles only for the GPU it sees while building" in entry(result, SA3).reason


def test_a_mixed_machine_builds_for_every_gpu(
    config: Dependencies, manifest: ToolsManifest, ref: SimpleNamespace
) -> None:
    gpus = GpuReport(
        "override", "two GPUs", (GpuInfo(0, "A6000", "8.6"), GpuInfo(1, "H100", "9.0")),
        None, "13.0",
    )  # fmt: skip
    result = plan(config, manifest, machine(ref, toolkit="13.0"), gpus)
    kind, taken = route(result, "sageattention")
    assert kind == "source" and taken is not None and taken.source is not None
    assert taken.source.build_env["TORCH_CUDA_ARCH_LIST"] == "8.6;9.0"  # never spaces
    assert "for sm86, sm90" in taken.reason


def test_windows_without_msvc_skips_the_source_route_with_the_reason(
    config: Dependencies, manifest: ToolsManifest, ref: SimpleNamespace
) -> None:
    # cc 12.1 (DGX Spark class): the prebuilt Windows wheels stop below it, the source has it.
    with_cl = plan(
        config, manifest, machine(ref, "windows", "12.8"), gpu_override("12.1", "12.8"),
        platform="windows",
    )  # fmt: skip
    assert with_cl.torch.variant == "cu128"
    assert route(with_cl, "sageattention")[0] == "source"
    without = plan(
        config, manifest, machine(ref, "windows", "12.8", compiler=False),
        gpu_override("12.1", "12.8"), platform="windows",
    )  # fmt: skip
    assert route(without, "sageattention")[0] == "fallback"
    assert "building it needs MSVC (cl.exe)" in entry(without, SA2).reason
    assert "Developer prompt" in entry(without, SA2).reason


@pytest.mark.parametrize(
    ("cores", "memory", "archs", "expected", "jobs"),
    [
        (16, 128, ["9.0"], {"EXT_PARALLEL": "4", "MAX_JOBS": "8"}, 32),
        (2, 24, ["9.0"], {"EXT_PARALLEL": "4", "MAX_JOBS": "1"}, 4),
        (2, 4, ["9.0"], {"EXT_PARALLEL": "1", "MAX_JOBS": "1"}, 1),
        (16, 128, ["8.6", "9.0"], {"EXT_PARALLEL": "4", "MAX_JOBS": "4"}, 16),
    ],
)
def test_parallel_jobs_follow_cores_and_memory(
    config: Dependencies,
    manifest: ToolsManifest,
    ref: SimpleNamespace,
    cores: int,
    memory: float,
    archs: list[str],
    expected: dict[str, str],
    jobs: int,
) -> None:
    gpus = GpuReport(
        "override", "GPUs", tuple(GpuInfo(i, "GPU", cc) for i, cc in enumerate(archs)),
        None, "13.0",
    )  # fmt: skip
    env = machine(ref, toolkit="13.0", cores=cores, memory_gib=memory)
    _, taken = route(plan(config, manifest, env, gpus), "sageattention")
    assert taken is not None and taken.source is not None
    assert {k: taken.source.build_env[k] for k in expected} == expected
    assert taken.source.jobs == jobs


def test_expected_time_scales_from_the_measured_build(
    config: Dependencies, manifest: ToolsManifest, ref: SimpleNamespace
) -> None:
    def expected(cores: int) -> float | None:
        env = machine(ref, toolkit="13.0", cores=cores, memory_gib=256)
        _, taken = route(plan(config, manifest, env, gpu_override("9.0", "13.0")), "sageattention")
        assert taken is not None and taken.source is not None
        return taken.source.expected_seconds

    assert expected(16) == pytest.approx(226)
    assert expected(64) == pytest.approx(226)  # never faster than measured
    assert expected(2) == pytest.approx(226 * 8)


@pytest.mark.parametrize(
    ("change", "phrase"),
    [
        ({"memory_gib": 2}, "one compile job needs about 4 GiB of memory; this machine has 2 GiB"),
        ({"git": False}, "git is needed to clone the source"),
        ({"compiler": False}, "building it needs a C++ compiler (no C++ compiler found"),
    ],
)
def test_a_machine_that_cannot_build_says_why(
    config: Dependencies,
    manifest: ToolsManifest,
    ref: SimpleNamespace,
    change: dict[str, Any],
    phrase: str,
) -> None:
    env = machine(ref, toolkit="12.8", **change)
    result = plan(config, manifest, env, gpu_override("9.0", "13.0"))
    assert phrase in entry(result, SA2).reason
    assert route(result, "sageattention")[0] == "fallback"


def test_offline_cannot_clone_from_github(
    config: Dependencies, manifest: ToolsManifest, ref: SimpleNamespace
) -> None:
    result = plan(
        config, manifest, machine(ref, toolkit="12.8"), gpu_override("9.0", "13.0"), offline=True
    )
    assert "--offline: cloning https://github.com/thu-ml/SageAttention.git needs the network" in (
        entry(result, SA2).reason
    )


def test_a_fitting_verified_wheel_wins_over_the_source(
    config: Dependencies, manifest: ToolsManifest, ref: SimpleNamespace
) -> None:
    result = plan(
        config, manifest, machine(ref, "windows", "12.8"), gpu_override("8.9", "12.8"),
        platform="windows",
    )  # fmt: skip
    assert route(result, "sageattention")[0] == "wheel"
    assert entry(result, SA2).reason == "a prebuilt wheel fits (sageattention2-cu12x-torch2.10+)"
    assert entry(result, SA1).reason == "a prebuilt SageAttention wheel fits"


def test_no_gpu_skips_the_sources_too(
    config: Dependencies, manifest: ToolsManifest, ref: SimpleNamespace
) -> None:
    from installer.core.facts import no_gpu

    result = plan(config, manifest, machine(ref), no_gpu("--gpu none"))
    assert entry(result, SA2).reason == "no NVIDIA GPU"
    assert entry(result, SA3).reason == "no NVIDIA GPU"


# --- configuration ----------------------------------------------------------------------

SOURCES = ("pip_packages", "sageattention_sources")


@pytest.mark.parametrize(
    ("field", "value", "phrase"),
    [
        ("commit", "main", "'main' is a moving ref"),
        ("commit", "v2.2.0", "'v2.2.0' is a moving ref"),
        ("commit", "d1a57a5", "'d1a57a5' is an abbreviated hash"),
        ("commit", "D1A57A546C3D395B1FFCBEECC66D81DB76F3B4B5", "in lowercase"),
        ("subdirectory", "../elsewhere", "plain relative folder"),
        ("subdirectory", "/abs", "plain relative folder"),
        ("cc", ">=8.0,,<9", "PEP 440"),
        ("min_nvcc", {"sm90": "12.3"}, "should match pattern"),
        ("min_nvcc", {"9.0": "twelve"}, "is not a version"),
        ("platforms", ["mac"], "'linux' or 'windows'"),
        ("arch_source", "all", "'arch_list' or 'local_gpu'"),
        ("build_requires", ["setuptools>>62"], "PEP 508"),
    ],
)
def test_bad_source_entries_name_the_json_path(
    write_config: Callable[[Callable[[dict[str, Any]], Any]], Path],
    field: str,
    value: Any,
    phrase: str,
) -> None:
    def mutate(data: dict[str, Any]) -> None:
        data[SOURCES[0]][SOURCES[1]][0][field] = value

    with pytest.raises(ConfigError) as caught:
        load_dependencies(write_config(mutate))
    assert f"pip_packages.sageattention_sources[0].{field}" in caught.value.message
    assert phrase in caught.value.message


def test_one_source_per_module(
    write_config: Callable[[Callable[[dict[str, Any]], Any]], Path],
) -> None:
    def mutate(data: dict[str, Any]) -> None:
        sources = data[SOURCES[0]][SOURCES[1]]
        sources.append(json.loads(json.dumps(sources[0])) | {"name": "again"})

    with pytest.raises(ConfigError) as caught:
        load_dependencies(write_config(mutate))
    assert "pip_packages.sageattention_sources" in caught.value.message
    assert "both provide the module 'sageattention'" in caught.value.message


def test_shipped_sources_pin_upstream_d1a57a5(deps: Dependencies) -> None:
    sources = {s.name: s for s in deps.pip_packages.sageattention_sources}
    assert set(sources) == {"sageattention2", "sageattention3"}
    for source in sources.values():
        assert source.url == "https://github.com/thu-ml/SageAttention.git"
        assert source.commit == "d1a57a546c3d395b1ffcbeecc66d81db76f3b4b5"
    sa2, sa3 = sources["sageattention2"], sources["sageattention3"]
    assert [str(sa2.min_nvcc_for(cc)) for cc in ("8.0", "8.6", "8.9", "9.0", "12.0", "12.1")] == [
        "12.0", "12.0", "12.4", "12.3", "12.8", "12.8",
    ]  # fmt: skip
    assert sa2.min_nvcc_for("10.0") == Version("12.8")
    assert sa3.subdirectory == "sageattention3_blackwell"
    assert (sa3.python, sa3.torch, str(sa3.min_nvcc_for("12.0"))) == (">=3.13", ">=2.8", "12.8")
    assert sa3.platforms == ["linux"] and sa3.arch_source == "local_gpu"


# --- helpers of the build ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (["x.cpp:3:1: warning: unused", "csrc/a.cu(12): error: identifier \"x\" is undefined",
          "b.cpp:1:2: error: later"], 'csrc/a.cu(12): error: identifier "x" is undefined'),
        (["In file included from y.h:1,", "y.h:10:10: fatal error: cusparse.h: No such file",
          "ninja: build stopped"], "y.h:10:10: fatal error: cusparse.h: No such file"),
        (["Traceback (most recent call last):", '  File "setup.py", line 3',
          "RuntimeError: CUDA 12.0 or higher is required to build the package.",
          "error: Failed to build `/tmp/src`"],
         "RuntimeError: CUDA 12.0 or higher is required to build the package."),
        (["kernel.cu(3): catastrophic error: cannot open source file \"cuda.h\""],
         'kernel.cu(3): catastrophic error: cannot open source file "cuda.h"'),
        (["attn.cpp(7): error C2065: 'x': undeclared identifier"],
         "attn.cpp(7): error C2065: 'x': undeclared identifier"),
        (["nvcc fatal   : Unsupported gpu architecture 'compute_100a'"],
         "nvcc fatal   : Unsupported gpu architecture 'compute_100a'"),
        (["building", "something else went wrong", ""], "something else went wrong"),
        ([], None),
    ],
)  # fmt: skip
def test_first_error(lines: list[str], expected: str | None) -> None:
    assert first_error(lines) == expected


def test_cache_key_folder_is_readable_and_separates_what_differs() -> None:
    key = BuildKey(
        "sageattention2", "d1a57a546c3d395b1ffcbeecc66d81db76f3b4b5", None, "2.11.0+cu130",
        "cu130", "cp312", "8.6;9.0", "linux_x86_64",
    )  # fmt: skip
    assert key.folder() == (
        "sageattention2-d1a57a546c3d-torch2.11.0+cu130-cu130-cp312-sm86_sm90-linux_x86_64"
    )
    other = BuildKey(**{**key.__dict__, "arch_list": "9.0"})
    assert other.folder() != key.folder()


def test_cuda_major_and_cuda_home() -> None:
    assert [cuda_major(b) for b in ("cu130", "cu128", "cu126", "cu118", "cpu", None)] == [
        13, 12, 12, 11, None, None,
    ]  # fmt: skip
    host = BuildHost(
        compiler=Tool("compiler", path="/usr/bin/c++", version="c++"),
        nvcc=Tool("nvcc", path="/usr/local/cuda-13.0/bin/nvcc", version="13.0"),
    )
    assert host.cuda_home == "/usr/local/cuda-13.0"
    assert host.nvcc_version == Version("13.0")
    described = BuildHost(host.compiler, Tool("nvcc", path="nvcc", version="12.8"))
    assert described.cuda_home is None  # --cuda-toolkit describes; there is no folder


# --- the command line -------------------------------------------------------------------


def dry_run(cli: Callable[..., Any], target: Path, *args: str) -> dict[str, Any]:
    result = cli("install", target, "--dry-run", "--json", *args)
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.stdout)["data"]
    return data


def test_cli_cuda_toolkit_plans_the_build_or_not(cli: Callable[..., Any], tmp_path: Path) -> None:
    common = ("--platform", "linux", "--gpu", "9.0", "--cuda-driver", "13.0")
    built = dry_run(cli, tmp_path / "a", *common, "--cuda-toolkit", "13.0")
    none = dry_run(cli, tmp_path / "b", *common, "--cuda-toolkit", "none")
    by_name = {o["name"]: o for o in built["optimizations"]}
    assert by_name[SA2]["action"] == "install"
    assert by_name[SA2]["source"]["nvcc"] == "13.0"
    assert by_name[SA2]["source"]["build_env"]["TORCH_CUDA_ARCH_LIST"] == "9.0"
    assert built["torch"]["cuda"] == "cu130"
    by_name = {o["name"]: o for o in none["optimizations"]}
    assert by_name[SA2]["action"] == "skip"
    assert "--cuda-toolkit none" in by_name[SA2]["reason"]
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--dry-run", "--cuda-toolkit", "13"), "--cuda-toolkit 13: expected X.Y"),
        (("--gpu", "none", "--cuda-toolkit", "12.8"), "it works only with --dry-run"),
    ],
)
def test_cli_cuda_toolkit_usage_errors(
    cli: Callable[..., Any], tmp_path: Path, args: tuple[str, ...], needle: str
) -> None:
    result = cli("install", tmp_path / "x", *args)
    assert result.exit_code == 2
    assert needle in result.output


# --- the routes as strategies; step 10 planned once per plan -----------------------------


def test_the_routes_are_ranked_best_first_with_one_vocabulary() -> None:
    assert ROUTES == (WHEEL, SOURCE, SAGE1)
    assert [route.rank for route in (*ROUTES, NONE)] == [3, 2, 1, 0]
    assert [route.label for route in (*ROUTES, NONE)] == [
        "a prebuilt wheel", "a build from source", "SageAttention 1", "nothing",
    ]  # fmt: skip
    assert [route.kind for route in ROUTES] == ["wheel", "source", "fallback"]


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every call build_plan makes to plan step 10, with its keyword arguments."""
    calls: list[dict[str, Any]] = []

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs)
        return plan_optimizations(*args, **kwargs)

    monkeypatch.setattr(build_module, "plan_optimizations", counting)
    return calls


def test_step_10_is_planned_once_when_no_build_is_traded(
    config: Dependencies,
    manifest: ToolsManifest,
    ref: SimpleNamespace,
    counted: list[dict[str, Any]],
) -> None:
    result = plan(config, manifest, machine(ref, toolkit="12.8"), gpu_override("9.0", "13.0"))
    assert len(counted) == 1
    assert counted[0]["torch_cuda"] == result.torch.cuda == "cu128"
    assert module_routes(result.optimizations)["sageattention"] is SOURCE
    assert route_lines(result.optimizations)[0].startswith(
        f"SageAttention route for `sageattention`: build from source {SA2}"
    )
    assert f"if the build fails: {SA1}" in route_lines(result.optimizations)[0]


def test_a_traded_build_reuses_the_plan_made_for_it(
    config: Dependencies,
    manifest: ToolsManifest,
    ref: SimpleNamespace,
    counted: list[dict[str, Any]],
) -> None:
    env = machine(ref, toolkit="13.0")
    result = plan(config, manifest, env, gpu_override("9.0", "13.0"))
    assert result.torch.variant == "cu130"
    assert [call["torch_cuda"] for call in counted] == ["cu128", "cu130"]
    fresh = plan_optimizations(config, manifest, **counted[1])
    assert result.optimizations == fresh
    assert module_routes(result.optimizations)["sageattention"] is SOURCE
    before = plan_optimizations(config, manifest, **counted[0])
    assert module_routes(before)["sageattention"] is SAGE1


def test_module_routes_say_none_where_nothing_installs(
    config: Dependencies, manifest: ToolsManifest, ref: SimpleNamespace
) -> None:
    result = plan(config, manifest, machine(ref, toolkit=None), gpu_override("5.0", "13.0"))
    routes = module_routes(result.optimizations)
    assert routes and set(routes.values()) == {NONE}
    assert all(line.endswith("none (every route's reason below)") for line in
               route_lines(result.optimizations))  # fmt: skip
    assert all(route_of(e) is not None for e in result.optimizations if e.kind != "package")
