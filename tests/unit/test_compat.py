"""The pure compatibility rules, checked against the SHIPPED dependencies.json.

The expected values below are worked out by hand from the rules (the first
configured CUDA variant whose `cc` range holds the GPU and whose
`min_cuda_driver` the driver reaches; else CPU with a warning) and the shipped
facts (`/work/scratch/research/compat.md`):

    cu128  min driver 12.8  cc >=7.0,<13.0   (listed first: the stable 2.9 build)
    cu130  min driver 13.0  cc >=7.5,<13.0   (reachable with --torch-index cu130)
    cu126  min driver 12.6  cc >=5.0,<10.0
    cpu

xformers needs `nvidia` and `cc>=7.5`; for torch 2.9.1 it is 0.0.33.post2.
triton is `triton` on Linux, `triton-windows` on Windows, `>=3.5,<3.6`.
SageAttention: only Windows SA2 wheels ship (cc >=8.0,<12.1 minus 10.x/11.x,
torch 2.9.1 with cu128 or cu130); anything else with cc >= 8.0 gets the SA1
fallback `sageattention==1.0.6` from PyPI.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from installer.core.config import (
    Dependencies,
    OptimizationPackage,
    SageAttentionWheel,
    TorchConfig,
    TorchVariant,
)
from installer.core.errors import PlanError
from installer.core.facts import GpuInfo, GpuReport, gpu_override, no_gpu
from installer.plan.compat import (
    requires_met,
    resolve_torch_constraint,
    select_sageattention_wheels,
    select_torch,
    variant_fits,
)
from installer.plan.optimizations import PlannedOptimization, plan_optimizations

CC = ("6.1", "7.0", "7.5", "8.0", "8.6", "8.9", "9.0", "10.0", "12.0")
DRIVERS = ("11.8", "12.4", "12.6", "12.8", "13.0")

# (cc, driver CUDA) -> torch variant. Worked out by hand, one row per pair.
TORCH_TABLE: dict[tuple[str, str], str] = {
    ("6.1", "11.8"): "cpu", ("6.1", "12.4"): "cpu", ("6.1", "12.6"): "cu126",
    ("6.1", "12.8"): "cu126", ("6.1", "13.0"): "cu126",
    ("7.0", "11.8"): "cpu", ("7.0", "12.4"): "cpu", ("7.0", "12.6"): "cu126",
    ("7.0", "12.8"): "cu128", ("7.0", "13.0"): "cu128",
    ("7.5", "11.8"): "cpu", ("7.5", "12.4"): "cpu", ("7.5", "12.6"): "cu126",
    ("7.5", "12.8"): "cu128", ("7.5", "13.0"): "cu128",
    ("8.0", "11.8"): "cpu", ("8.0", "12.4"): "cpu", ("8.0", "12.6"): "cu126",
    ("8.0", "12.8"): "cu128", ("8.0", "13.0"): "cu128",
    ("8.6", "11.8"): "cpu", ("8.6", "12.4"): "cpu", ("8.6", "12.6"): "cu126",
    ("8.6", "12.8"): "cu128", ("8.6", "13.0"): "cu128",
    ("8.9", "11.8"): "cpu", ("8.9", "12.4"): "cpu", ("8.9", "12.6"): "cu126",
    ("8.9", "12.8"): "cu128", ("8.9", "13.0"): "cu128",
    ("9.0", "11.8"): "cpu", ("9.0", "12.4"): "cpu", ("9.0", "12.6"): "cu126",
    ("9.0", "12.8"): "cu128", ("9.0", "13.0"): "cu128",
    ("10.0", "11.8"): "cpu", ("10.0", "12.4"): "cpu", ("10.0", "12.6"): "cpu",
    ("10.0", "12.8"): "cu128", ("10.0", "13.0"): "cu128",
    ("12.0", "11.8"): "cpu", ("12.0", "12.4"): "cpu", ("12.0", "12.6"): "cpu",
    ("12.0", "12.8"): "cu128", ("12.0", "13.0"): "cu128",
}  # fmt: skip

INDEX = {
    "cu126": "https://download.pytorch.org/whl/cu126",
    "cu128": "https://download.pytorch.org/whl/cu128",
    "cu130": "https://download.pytorch.org/whl/cu130",
    "cpu": "https://download.pytorch.org/whl/cpu",
}
XFORMERS = "xformers==0.0.33.post2"
SA2_CU128 = "sageattention-2.2.0+cu128torch2.9.1.post6-cp310-abi3-win_amd64.whl"
SA2_CU130 = "sageattention-2.2.0+cu130torch2.9.1.post6-cp310-abi3-win_amd64.whl"
SA2_CC = {"8.0", "8.6", "8.9", "9.0", "12.0"}  # >=8.0,<12.1,!=10.*,!=11.*


def expected_xformers(cc: str, variant: str) -> tuple[str, str]:
    """(action, requirement or skip reason) for xformers."""
    if variant == "cpu":
        return "skip", "torch is a CPU build"
    if Version(cc) < Version("7.5"):
        return "skip", f"needs compute capability >=7.5 (have {cc})"
    return "install", XFORMERS


def expected_sageattention(cc: str, variant: str, platform: str) -> str:
    """'cpu' (all skipped), 'none' (cc too low), 'SA1' (fallback) or a wheel file name."""
    if variant == "cpu":
        return "cpu"
    if Version(cc) < Version("8.0"):
        return "none"
    if platform == "windows" and variant == "cu128" and cc in SA2_CC:
        return SA2_CU128
    return "SA1"


TABLE = [
    pytest.param(cc, driver, platform, id=f"cc{cc}-driver{driver}-{platform}")
    for cc in CC
    for driver in DRIVERS
    for platform in ("linux", "windows")
]


def by_name(planned: list[PlannedOptimization], name: str) -> PlannedOptimization:
    (entry,) = [p for p in planned if p.name == name]
    return entry


def plan_for(
    deps: Dependencies, manifest: Any, gpu: GpuReport, platform: str, request: str = "auto"
) -> tuple[Any, list[PlannedOptimization]]:
    selection = select_torch(gpu, deps.torch, platform, request)
    planned = plan_optimizations(
        deps,
        manifest,
        platform=platform,
        gpu=gpu,
        torch_version=deps.torch.torch_version,
        torch_cuda=selection.cuda,
        torch_index_url=selection.index_url,
        python_version="3.12",
    )
    return selection, planned


def test_the_table_covers_every_pair() -> None:
    assert set(TORCH_TABLE) == {(cc, d) for cc in CC for d in DRIVERS}


def test_shipped_torch_pin_is_2_9_1(deps: Dependencies) -> None:
    # The table above is worked out for torch 2.9.1; a new pin needs a new table.
    assert str(deps.torch.torch_version) == "2.9.1"
    assert [v.name for v in deps.torch.variants] == ["cu128", "cu130", "cu126", "cpu"]


@pytest.mark.parametrize(("cc", "driver", "platform"), TABLE)
def test_shipped_config_table(
    deps: Dependencies, manifest: Any, cc: str, driver: str, platform: str
) -> None:
    gpu = gpu_override(cc, driver)
    selection, planned = plan_for(deps, manifest, gpu, platform)
    variant = TORCH_TABLE[(cc, driver)]

    # torch
    assert selection.variant == variant
    assert selection.index_url == INDEX[variant]
    assert selection.cuda == (None if variant == "cpu" else variant)
    if variant == "cpu":
        # A GPU that gets no CUDA build must be told so, with what to do.
        assert selection.warnings, "a GPU planned onto the CPU build must warn"
        assert "Update the NVIDIA driver" in selection.warnings[0]
        assert "CPU build" in selection.reason
    else:
        assert selection.warnings == ()
        assert f"compute capability {cc}" in selection.reason

    # xformers
    action, what = expected_xformers(cc, variant)
    xformers = by_name(planned, "xformers")
    assert xformers.action == action
    if action == "install":
        assert xformers.requirement == what
        assert xformers.install_options == ["--no-deps"]
        assert xformers.extra_index_urls == [INDEX[variant]]
    else:
        assert xformers.requirement is None
        assert xformers.reason == what

    # triton
    triton = by_name(planned, "triton")
    expected_name = "triton-windows" if platform == "windows" else "triton"
    assert triton.distribution == expected_name
    if variant == "cpu":
        assert (triton.action, triton.reason) == ("skip", "torch is a CPU build")
    else:
        assert triton.action == "install"
        requirement = Requirement(triton.requirement or "")
        assert requirement.name == expected_name
        assert requirement.specifier == SpecifierSet(">=3.5,<3.6")

    # SageAttention
    wheels = [p for p in planned if p.kind == "wheel"]
    (fallback,) = [p for p in planned if p.kind == "fallback"]
    chosen = sorted(p.requirement for p in wheels if p.action == "install")
    sa = expected_sageattention(cc, variant, platform)
    if sa == "cpu":
        assert all(p.action == "skip" for p in planned)
        assert {p.reason for p in wheels} | {fallback.reason} == {"torch is a CPU build"}
    elif sa == "none":
        assert chosen == []
        assert fallback.action == "skip"
        assert fallback.reason == f"supports compute capability >=8.0, GPU is {cc}"
    elif sa == "SA1":
        assert chosen == []
        assert fallback.action == "install"
        assert fallback.requirement == "sageattention==1.0.6"
        assert fallback.builds_from_source is False
        assert fallback.install_options == []
    else:
        assert chosen == [sa]
        (wheel,) = [p for p in wheels if p.action == "install"]
        assert wheel.wheel is not None
        assert wheel.wheel.sha256 == (
            "867862a3c582a058caf825bedeff6e36cabafe6ca954236db5544b78c626f9e9"
        )
        assert (fallback.action, fallback.reason) == ("skip", "a prebuilt SageAttention wheel fits")


@pytest.mark.parametrize(
    ("cc", "driver", "platform", "variant", "sa2"),
    [
        # cu130 is never the automatic choice (cu128 is listed first) but can be asked for.
        ("9.0", "13.0", "windows", "cu130", SA2_CU130),
        ("12.0", "13.0", "windows", "cu130", SA2_CU130),
        ("9.0", "13.0", "linux", "cu130", None),
        ("10.0", "13.0", "windows", "cu130", None),
    ],
)
def test_cu130_on_request(
    deps: Dependencies,
    manifest: Any,
    cc: str,
    driver: str,
    platform: str,
    variant: str,
    sa2: str | None,
) -> None:
    selection, planned = plan_for(deps, manifest, gpu_override(cc, driver), platform, "cu130")
    assert (selection.variant, selection.cuda, selection.index_url) == (
        "cu130",
        "cu130",
        INDEX["cu130"],
    )
    assert selection.warnings == ()
    assert selection.reason == "--torch-index cu130 (requested)"
    chosen = [p.requirement for p in planned if p.kind == "wheel" and p.action == "install"]
    assert chosen == ([sa2] if sa2 else [])
    assert by_name(planned, "xformers").extra_index_urls == [INDEX["cu130"]]


def test_requested_variant_that_does_not_fit_warns(deps: Dependencies) -> None:
    selection = select_torch(gpu_override("6.1", "13.0"), deps.torch, "linux", "cu130")
    assert selection.variant == "cu130"
    assert len(selection.warnings) == 1
    assert "no kernels for compute capability 6.1" in selection.warnings[0]


def test_requested_cuda_variant_without_gpu_runs_on_cpu(deps: Dependencies) -> None:
    selection = select_torch(no_gpu("--gpu none"), deps.torch, "linux", "cu128")
    assert selection.variant == "cu128"
    assert selection.cuda is None
    assert "no NVIDIA GPU" in selection.warnings[0]


def test_unknown_requested_variant_is_a_plan_error(deps: Dependencies) -> None:
    with pytest.raises(PlanError) as caught:
        select_torch(gpu_override("8.9", "12.8"), deps.torch, "linux", "cu999")
    assert "cu999" in caught.value.message
    assert "cu128" in caught.value.message
    assert caught.value.exit_code == 2


@pytest.mark.parametrize(
    ("request_", "variant", "index_url", "cuda"),
    [
        ("cpu", "cpu", INDEX["cpu"], None),
        ("default", "default", None, "cu128"),
        ("https://mirror.example/whl/cu126", "custom", "https://mirror.example/whl/cu126", "cu126"),
        ("/srv/wheels", "custom", "/srv/wheels", None),
    ],
)
def test_torch_index_requests(
    deps: Dependencies, request_: str, variant: str, index_url: str | None, cuda: str | None
) -> None:
    selection = select_torch(
        gpu_override("8.9", "12.8"),
        deps.torch,
        "linux",
        request_,
        {str(k): v for k, v in deps.torch.default_index_builds.items()},
    )
    assert (selection.variant, selection.index_url, selection.cuda) == (variant, index_url, cuda)


def test_default_index_on_windows_is_the_cpu_build(deps: Dependencies) -> None:
    builds = {str(k): v for k, v in deps.torch.default_index_builds.items()}
    selection = select_torch(gpu_override("8.9", "12.8"), deps.torch, "windows", "default", builds)
    assert selection.cuda is None
    assert "cpu build" in selection.reason


def test_no_fitting_variant_and_no_cpu_build_names_torch_variants() -> None:
    torch = TorchConfig(
        packages=["torch==2.9.1"],
        variants=[
            TorchVariant(
                name="cu130", index_url="https://x/cu130", min_cuda_driver="13.0", cc=">=7.5"
            )
        ],
    )
    with pytest.raises(PlanError) as caught:
        select_torch(gpu_override("6.1", "13.0"), torch, "linux")
    assert caught.value.message.startswith("torch.variants")
    assert "compute capability 6.1" in caught.value.message


def test_no_gpu_and_no_cpu_build_is_a_plan_error() -> None:
    torch = TorchConfig(
        packages=["torch==2.9.1"],
        variants=[TorchVariant(name="cu128", index_url="https://x/cu128", min_cuda_driver="12.8")],
    )
    with pytest.raises(PlanError, match="no CPU build"):
        select_torch(no_gpu("--gpu none"), torch, "linux")


def test_variant_limited_to_one_platform() -> None:
    torch = TorchConfig(
        packages=["torch==2.9.1"],
        variants=[
            TorchVariant(
                name="cu129", index_url="https://x/cu129", min_cuda_driver="12.9",
                platforms=["linux"],
            ),
            TorchVariant(name="cpu", index_url="https://x/cpu"),
        ],
    )  # fmt: skip
    gpu = gpu_override("8.9", "13.0")
    assert select_torch(gpu, torch, "linux").variant == "cu129"
    assert select_torch(gpu, torch, "windows").variant == "cpu"


def test_unknown_driver_is_assumed_new_enough(deps: Dependencies) -> None:
    selection = select_torch(gpu_override("8.9", None), deps.torch, "linux")
    assert selection.variant == "cu128"
    assert "assumed new enough" in selection.reason


@pytest.mark.parametrize(
    ("terms", "platform", "gpu", "cuda", "ok", "reason"),
    [
        ([], "linux", None, None, True, "no requirements"),
        (["nvidia"], "linux", "8.9", "cu128", True, "requirements met"),
        (["nvidia"], "linux", None, None, False, "no NVIDIA GPU"),
        (["nvidia"], "linux", "8.9", None, False, "torch is a CPU build"),
        (["cpu"], "linux", None, None, True, "requirements met"),
        (["cpu"], "linux", "8.9", "cu128", False, "only for machines without an NVIDIA GPU"),
        (["windows"], "linux", "8.9", "cu128", False, "only for windows"),
        (["linux", "cc>=8.0"], "linux", "8.9", "cu128", True, "requirements met"),
        (["cc>=8.0"], "linux", "7.5", "cu128", False, "needs compute capability >=8.0 (have 7.5)"),
        (["cc>=8.0"], "linux", None, None, False, "needs compute capability >=8.0 (have none)"),
        (["cc >=7.5,<10.0"], "linux", "10.0", "cu128", False, "needs compute capability"),
    ],
)
def test_requires_terms(
    terms: list[str], platform: str, gpu: str | None, cuda: str | None, ok: bool, reason: str
) -> None:
    report = gpu_override(gpu, "12.8") if gpu else no_gpu("none here")
    result = requires_met(terms, platform, report, cuda)
    assert result.value is ok
    assert result.reason.startswith(reason)


def test_torch_constraint_first_match_wins_and_none_matching_skips() -> None:
    package = OptimizationPackage(
        name="xformers",
        pypi_package="xformers",
        torch_constraints=[
            {"torch": ">=2.9.1,<2.10", "spec": "==0.0.33.post2"},
            {"torch": ">=2.9,<2.10", "spec": "xformers==0.0.33.post1"},
        ],
    )
    assert resolve_torch_constraint(package, "xformers", "2.9.1+cu128").value == (
        "xformers==0.0.33.post2"
    )
    assert resolve_torch_constraint(package, "xformers", "2.9.0").value == (
        "xformers==0.0.33.post1"
    )
    missing = resolve_torch_constraint(package, "xformers", "2.11.0")
    assert missing.value is None
    assert "2.11.0" in missing.reason
    assert ">=2.9.1,<2.10" in missing.reason
    free = resolve_torch_constraint(OptimizationPackage(name="t", pypi_package="t"), "t", "2.9.1")
    assert free.value == "t"


# --- properties --------------------------------------------------------------

versions = st.builds(lambda major, minor: f"{major}.{minor}", st.integers(3, 13), st.integers(0, 9))
drivers = st.builds(lambda major, minor: f"{major}.{minor}", st.integers(10, 13), st.integers(0, 9))


@st.composite
def cc_ranges(draw: Any) -> str | None:
    kind = draw(st.sampled_from(["none", "lower", "upper", "both", "excl"]))
    low, high = sorted(draw(st.lists(versions, min_size=2, max_size=2)), key=Version)
    return {
        "none": None,
        "lower": f">={low}",
        "upper": f"<{high}",
        "both": f">={low},<{high}",
        "excl": f">={low},!={high.split('.')[0]}.*",
    }[kind]


@st.composite
def torch_configs(draw: Any) -> TorchConfig:
    names = draw(st.lists(st.integers(100, 140), min_size=1, max_size=5, unique=True))
    variants = [
        TorchVariant(
            name=f"cu{n}",
            index_url=f"https://x/cu{n}",
            min_cuda_driver=draw(drivers),
            cc=draw(cc_ranges()),
            platforms=draw(st.sampled_from([["linux"], ["windows"], ["linux", "windows"]])),
        )
        for n in names
    ]
    if draw(st.booleans()):
        variants.insert(
            draw(st.integers(0, len(variants))), TorchVariant(name="cpu", index_url="https://x/cpu")
        )
    return TorchConfig(packages=["torch==2.9.1"], variants=variants)


PROPERTY = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FEWER = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(
    torch=torch_configs(),
    cc=versions,
    driver=drivers,
    platform=st.sampled_from(["linux", "windows"]),
)
def test_chosen_variant_fits_driver_and_cc(
    torch: TorchConfig, cc: str, driver: str, platform: str
) -> None:
    gpu = gpu_override(cc, driver)
    candidates = [v for v in torch.variants if platform in v.platforms]

    def fits(v: TorchVariant) -> bool:
        return Version(v.min_cuda_driver or "0") <= Version(driver) and (
            v.cc is None or Version(cc) in SpecifierSet(v.cc)
        )

    try:
        selection = select_torch(gpu, torch, platform)
    except PlanError as error:
        assert not any(v.is_cuda and fits(v) for v in candidates)
        assert not any(not v.is_cuda for v in candidates)
        assert error.message.startswith("torch.variants")
        return
    chosen = next(v for v in candidates if v.name == selection.variant)
    if chosen.is_cuda:
        assert Version(chosen.min_cuda_driver or "") <= Version(driver)
        if chosen.cc is not None:
            assert Version(cc) in SpecifierSet(chosen.cc)
        # ... and it is the first one in config order that fits.
        assert chosen == next(v for v in candidates if v.is_cuda and fits(v))
    else:
        assert not any(v.is_cuda and fits(v) for v in candidates)
        assert selection.warnings


@PROPERTY
@given(cc=versions, driver=drivers, platform=st.sampled_from(["linux", "windows"]))
def test_shipped_variant_never_needs_a_newer_driver(
    deps: Dependencies, cc: str, driver: str, platform: str
) -> None:
    selection = select_torch(gpu_override(cc, driver), deps.torch, platform)
    variant = next(v for v in deps.torch.variants if v.name == selection.variant)
    assert Version(variant.min_cuda_driver or "0") <= Version(driver)
    if variant.cc is not None:
        assert Version(cc) in SpecifierSet(variant.cc)


@PROPERTY
@given(ccs=st.lists(versions, min_size=1, max_size=4))
def test_planning_cc_is_the_lowest_cc(ccs: list[str]) -> None:
    report = GpuReport(
        "override",
        "test",
        tuple(GpuInfo(index=i, name="gpu", cc=cc) for i, cc in enumerate(ccs)),
        None,
        "13.0",
    )
    assert report.planning_cc == min(Version(cc) for cc in ccs)


@st.composite
def wheels(draw: Any) -> SageAttentionWheel:
    return SageAttentionWheel(
        name=draw(st.sampled_from(["sageattention2", "sageattention3"])),
        cc=draw(cc_ranges().filter(lambda spec: spec is not None)),
        torch=draw(st.sampled_from([">=2.9.1,<2.9.2", ">=2.10", ">=2.9,<2.12", "==2.9.0"])),
        cuda=draw(st.lists(st.sampled_from(["cu126", "cu128", "cu130"]), min_size=1, max_size=2)),
        python=draw(st.sampled_from([">=3.9", ">=3.10", ">=3.13"])),
        platform=draw(st.sampled_from(["linux", "windows"])),
        url=f"https://x/w{draw(st.integers(0, 10**6))}.whl",
    )


@FEWER
@given(
    configured=st.lists(wheels(), max_size=6),
    cc=versions,
    torch_version=st.sampled_from(["2.9.0", "2.9.1", "2.9.1+cu128", "2.10.0", "2.11.0+cu130"]),
    torch_cuda=st.sampled_from(["cu126", "cu128", "cu130", None]),
    python=st.sampled_from(["3.10", "3.12", "3.13"]),
    platform=st.sampled_from(["linux", "windows"]),
)
def test_no_wheel_is_chosen_outside_its_ranges(
    configured: list[SageAttentionWheel],
    cc: str,
    torch_version: str,
    torch_cuda: str | None,
    python: str,
    platform: str,
) -> None:
    chosen, rejected = select_sageattention_wheels(
        configured, Version(cc), torch_version, torch_cuda, python, platform
    )
    assert len(chosen) + len(rejected) == len(configured)
    public = Version(Version(torch_version).public)
    for choice in chosen:
        wheel = choice.value
        assert Version(cc) in SpecifierSet(wheel.cc)
        assert wheel.platform == platform
        assert torch_cuda in wheel.cuda
        assert public in SpecifierSet(wheel.torch)
        assert Version(python) in SpecifierSet(wheel.python)
    for choice in rejected:
        wheel = choice.value
        assert not (
            Version(cc) in SpecifierSet(wheel.cc)
            and wheel.platform == platform
            and torch_cuda in wheel.cuda
            and public in SpecifierSet(wheel.torch)
            and Version(python) in SpecifierSet(wheel.python)
        ), choice.reason
        assert choice.reason


@settings(max_examples=25, deadline=None)
@given(
    configured=st.lists(wheels(), max_size=4),
    torch_cuda=st.sampled_from(["cu128", "cu130", None]),
)
def test_no_wheel_without_a_gpu(
    configured: list[SageAttentionWheel], torch_cuda: str | None
) -> None:
    chosen, rejected = select_sageattention_wheels(
        configured, None, "2.9.1", torch_cuda, "3.12", "linux"
    )
    assert chosen == []
    assert len(rejected) == len(configured)


operators = st.sampled_from(["==", ">=", "<=", "<", ">", "!=", "~="])
release = st.builds(
    lambda a, b, c: f"{a}.{b}.{c}", st.integers(0, 5), st.integers(0, 40), st.integers(0, 9)
)


@st.composite
def specifier_texts(draw: Any) -> str:
    clauses = draw(st.lists(st.tuples(operators, release), min_size=1, max_size=3))
    return ",".join(op + version for op, version in clauses)


@PROPERTY
@given(
    distribution=st.sampled_from(["xformers", "triton", "triton-windows", "sageattention"]),
    spec=specifier_texts(),
    as_requirement=st.booleans(),
    torch_version=st.sampled_from(["2.9.1", "2.9.1+cu128", "2.10.0", "2.9.0"]),
)
def test_resolved_requirement_round_trips(
    distribution: str, spec: str, as_requirement: bool, torch_version: str
) -> None:
    public = Version(torch_version).public
    text = distribution + spec if as_requirement else spec
    package = OptimizationPackage(
        name=distribution,
        pypi_package=distribution,
        torch_constraints=[
            {"torch": "<2.0", "spec": "==0.0.1"},
            {"torch": f"=={public}", "spec": text},
        ],
    )
    result = resolve_torch_constraint(package, distribution, torch_version)
    assert result.value is not None
    requirement = Requirement(result.value)
    assert requirement.name == distribution
    assert requirement.specifier == SpecifierSet(spec)
    # A specifier set "contains" the constraint: every clause written is kept.
    assert {str(s) for s in SpecifierSet(spec)} <= {str(s) for s in requirement.specifier}


@PROPERTY
@given(cc=versions, driver=drivers)
def test_variant_fits_agrees_with_the_ranges(cc: str, driver: str) -> None:
    variant = TorchVariant(
        name="cu128", index_url="https://x", min_cuda_driver="12.8", cc=">=7.0,<13.0"
    )
    fit = variant_fits(variant, Version(cc), Version(driver))
    expected = Version("7.0") <= Version(cc) < Version("13.0") and Version(driver) >= Version(
        "12.8"
    )
    assert fit.value is expected


def test_unknown_cc_and_driver_are_not_checked() -> None:
    variant = TorchVariant(name="cu128", index_url="https://x", min_cuda_driver="12.8", cc=">=7.0")
    assert variant_fits(variant, None, None).value is True


# --- machines with several different GPUs ------------------------------------


def machine(ccs: list[str], driver: str | None) -> GpuReport:
    gpus = tuple(GpuInfo(index=i, name=f"gpu{i}", cc=cc) for i, cc in enumerate(ccs))
    return GpuReport("nvml", "test", gpus, "580.00", driver)


@PROPERTY
@given(
    torch=torch_configs(),
    ccs=st.lists(versions, min_size=1, max_size=3),
    driver=drivers,
    platform=st.sampled_from(["linux", "windows"]),
)
def test_chosen_variant_covers_every_gpu(
    torch: TorchConfig, ccs: list[str], driver: str, platform: str
) -> None:
    try:
        selection = select_torch(machine(ccs, driver), torch, platform)
    except PlanError:
        return
    chosen = next(v for v in torch.variants if v.name == selection.variant)
    if chosen.is_cuda:
        assert Version(chosen.min_cuda_driver or "") <= Version(driver)
        for cc in ccs:
            assert chosen.cc is None or Version(cc) in SpecifierSet(chosen.cc), (cc, chosen.cc)


@FEWER
@given(
    configured=st.lists(wheels(), max_size=4),
    ccs=st.lists(versions, min_size=1, max_size=3),
    platform=st.sampled_from(["linux", "windows"]),
)
def test_chosen_wheels_cover_every_gpu(
    deps: Dependencies,
    manifest: Any,
    configured: list[SageAttentionWheel],
    ccs: list[str],
    platform: str,
) -> None:
    configured = [
        w.model_copy(update={"url": f"https://x/w{i}.whl"}) for i, w in enumerate(configured)
    ]
    pip = deps.pip_packages.model_copy(update={"sageattention_wheels": configured})
    config = deps.model_copy(update={"pip_packages": pip})
    planned = plan_optimizations(
        config,
        manifest,
        platform=platform,
        gpu=machine(ccs, "13.0"),
        torch_version="2.9.1",
        torch_cuda="cu128",
        torch_index_url=INDEX["cu128"],
        python_version="3.12",
        allow_unverified=True,
    )
    by_url = {w.url: w for w in configured}
    for entry in planned:
        if entry.kind == "wheel" and entry.action == "install":
            assert entry.wheel is not None
            wheel = by_url[entry.wheel.url]
            for cc in ccs:
                assert Version(cc) in SpecifierSet(wheel.cc), (cc, wheel.cc)
            assert wheel.platform == platform


def two_gpus(low: str, high: str, driver: str) -> GpuReport:
    return GpuReport(
        "nvml",
        "test",
        (GpuInfo(index=0, name="low", cc=low), GpuInfo(index=1, name="high", cc=high)),
        "570.00",
        driver,
    )


def test_mixed_gpus_get_a_build_that_covers_every_gpu(deps: Dependencies) -> None:
    # RTX 4090 (8.9) + RTX 5090 (12.0) on a driver that supports CUDA 12.6: cu126 covers only
    # the 4090 and cu128 needs a newer driver, so no CUDA build fits both cards.
    selection = select_torch(two_gpus("8.9", "12.0", "12.6"), deps.torch, "linux")
    variant = next(v for v in deps.torch.variants if v.name == selection.variant)
    for cc in ("8.9", "12.0"):
        assert variant.cc is None or Version(cc) in SpecifierSet(variant.cc)


def test_mixed_gpus_get_only_wheels_that_cover_every_gpu(deps: Dependencies, manifest: Any) -> None:
    gpu = two_gpus("9.0", "10.0", "12.8")
    _, planned = plan_for(deps, manifest, gpu, "windows")
    chosen = [p.requirement for p in planned if p.kind == "wheel" and p.action == "install"]
    assert chosen == []
