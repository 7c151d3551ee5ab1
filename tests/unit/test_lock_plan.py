"""The lock's step 10 inputs: planned once per group of compute capabilities, the same result.

A lock covers every NVIDIA GPU, so its inputs hold the union of step 10's index packages
over every compute capability in use. The capabilities that pass and fail the
configuration's tests alike are planned once; the reference here is the plan of every one.
"""

from __future__ import annotations

from typing import Any

import pytest

import installer.plan.lock as lock_plan
from installer.core.config import Dependencies, ToolsManifest
from installer.core.facts import gpu_override
from installer.plan.lock import NVIDIA_CCS, distinct_ccs, lock_inputs, lock_targets, torch_source


def every_cc(deps: Dependencies, target: lock_plan.LockTarget) -> list[str]:
    """step 10's index packages for the target, planned for each of NVIDIA_CCS (the reference)."""
    source = torch_source(deps, target.platform, target.variant)
    if source.cuda is None:
        return []
    found: set[str] = set()
    for cc in NVIDIA_CCS:
        planned = lock_plan.plan_optimizations(
            deps,
            ToolsManifest(schema_version=1),
            platform=target.platform,
            gpu=gpu_override(cc, None),
            torch_version=deps.torch.torch_version,
            torch_cuda=source.cuda,
            torch_index_url=source.index_url,
            python_version=target.python,
            allow_unverified=True,
        )
        found.update(
            entry.requirement
            for entry in planned
            if entry.action == "install"
            and entry.kind in ("package", "fallback")
            and not entry.builds_from_source
            and entry.requirement
        )
    return sorted(found, key=str.lower)


def other_tests(shipped_raw: dict[str, Any]) -> Dependencies:
    """The shipped configuration with other compute-capability tests on its packages."""
    raw = {**shipped_raw, "optimizations": {**shipped_raw["optimizations"]}}
    packages = [dict(p) for p in raw["optimizations"]["packages"]]
    for package in packages:
        if package["name"] == "xformers":
            package["requires"] = ["nvidia", "cc==8.6"]  # only 8.6: no shipped group has it
            package["pypi_build"] = {**package["pypi_build"], "sass": ["8.6", "9.0a", "12.0"]}
        if package["name"] == "triton":
            package["requires"] = ["nvidia", "linux:cc==10.3", "windows:cc>=7.0"]
            package["requires_notes"] = {}
    raw["optimizations"]["packages"] = packages
    return Dependencies.model_validate(raw)


def test_the_lock_inputs_are_those_of_every_compute_capability(
    deps: Dependencies, shipped_raw: dict[str, Any]
) -> None:
    for config in (deps, other_tests(shipped_raw)):
        targets = lock_targets(config, pythons=["3.11", "3.12"])
        assert len(targets) > 10
        for target in targets:
            expected = every_cc(config, target)
            assert list(lock_inputs(config, target).step10) == expected, target.name
    # The groups follow the configuration's tests: planning the shipped groups only would
    # miss the changed configuration's xformers (its one capability, 8.6, is in none).
    changed = other_tests(shipped_raw)
    assert "8.6" not in distinct_ccs(deps, "linux", "cu128")
    assert "8.6" in distinct_ccs(changed, "linux", "cu128")
    linux = lock_plan.LockTarget("linux", "cu128", "3.12")
    assert "xformers==0.0.35" in lock_inputs(changed, linux).step10


def test_the_shipped_configuration_is_planned_ten_times_per_cuda_target_not_19(
    deps: Dependencies, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    plan = lock_plan.plan_optimizations

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs["gpu"].gpus[0].cc)
        return plan(*args, **kwargs)

    monkeypatch.setattr(lock_plan, "plan_optimizations", counting)
    lock_inputs(deps, lock_plan.LockTarget("linux", "cu128", "3.12"))
    # 7.5 (xformers' cc>=7.5, the 7.5 kernels), 8.0 (cc>=8.0), 8.7 and 9.0 (the SageAttention
    # wheels' ranges leave out 8.7, the 9.0a kernels run on 9.0 only), and so on.
    assert calls == ["5.0", "7.5", "8.0", "8.7", "9.0", "10.0", "10.3", "11.0", "12.0", "12.1"]
    calls.clear()
    lock_inputs(deps, lock_plan.LockTarget("linux", "cpu", "3.12"))
    assert calls == []  # a CPU torch has no step 10 packages to lock
    calls.clear()
    targets = lock_targets(deps)
    for target in targets:
        lock_inputs(deps, target)
    assert len(calls) == 70  # was 19 per CUDA target: 133 for the 7 of the shipped 10


def test_step_8s_inputs_hold_the_locks_content_only_with_a_lock(tmp_path: Any) -> None:
    """Two locks from the same inputs (one header) with other pins give step 8 other inputs;
    an install resolved live keeps the inputs it always had."""
    from installer.core.lockfile import LockTarget, read_header
    from installer.plan.lock import lock_status

    target = LockTarget("linux", "default", "3.12")
    header = (
        "# comfy-install lock v1 inputs-sha256=" + "a" * 64 + "\n"
        "# platform: linux\n# torch-variant: default\n# python: 3.12\n"
        "# config-sha256: cfg\n"
    )
    path = tmp_path / target.filename
    inputs = []
    for pin in ("lockdep==1.0", "lockdep==1.1"):
        path.write_text(header + pin + "\n")
        found = read_header(path)
        assert found is not None and found.inputs_sha256 == "a" * 64
        inputs.append(lock_status(found, "cfg", target).step_input())
    assert inputs[0]["lock_sha256"] == inputs[1]["lock_sha256"]
    assert inputs[0]["lock_content_sha256"] != inputs[1]["lock_content_sha256"]
    assert "lock_content_sha256" not in lock_status(None, "cfg", target).step_input()
