"""What blocks an install before its first step, decided from detected facts (no disk touched)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from installer.core.config import Dependencies, ToolsManifest
from installer.core.facts import Environment, TargetDir, Tool, gpu_override
from installer.plan.build import build_plan
from installer.plan.preflight import GIT_STEPS, HEAVY_STEPS, blocking_error, preflight_blockers
from installer.plan.records import InstallOptions

ALL_STEPS = {"preflight", *HEAVY_STEPS, *GIT_STEPS, "launchers", "verify"}
FRESH = TargetDir("/srv/new", False, False, "/srv", True, True)


def make_env(platform: str = "linux", **changes: Any) -> Environment:
    """A Linux machine with git and uv, 200 GiB free at /srv."""
    values: dict[str, Any] = {
        "platform": platform,
        "arch": "x86_64",
        "os_name": "Ubuntu 24.04.3 LTS",
        "python_version": "3.12.3",
        "python_executable": "/usr/bin/python3",
        "free_disk_bytes": 200 * 2**30,
        "disk_path": "/srv",
        "git": Tool("git", path="/usr/bin/git", version="2.43.0"),
        "uv": Tool("uv", path="/opt/uv/bin/uv", version="0.11.15"),
        "compiler": Tool("compiler"),
        "nvcc": Tool("nvcc"),
        "target": FRESH,
    }
    values.update(changes)
    return Environment(**values)


def blockers(
    *, will_run: set[str] = ALL_STEPS, platform: str = "linux", **env: object
) -> list[str]:
    found = preflight_blockers(
        make_env(**env), platform=platform, will_run=will_run, min_free_gb=15
    )
    return [b.message for b in found]


def test_a_usable_dir_on_a_roomy_disk_is_not_blocked() -> None:
    assert blockers() == []


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (TargetDir("/srv/f", True, False, "/srv/f", False, False),
         "/srv/f exists and is not a directory."),
        (TargetDir("/srv/f/x", False, False, "/srv/f", False, False),
         "/srv/f/x cannot be created: /srv/f is a file."),
        (TargetDir("/ro/x", False, False, "/ro", True, False),
         "/ro/x cannot be created: /ro is not writable (no permission, or a read-only file "
         "system)."),
        (TargetDir("/ro/x", True, True, "/ro/x/.comfy-install", True, False),
         "/ro/x is not writable (no permission, or a read-only file system)."),
    ],
)  # fmt: skip
def test_dir_problems(target: TargetDir, message: str) -> None:
    assert blockers(target=target) == [message]
    # DIR is created whatever runs: these block even when no step would run.
    assert blockers(target=target, will_run=set()) == [message]


def test_too_little_room_only_when_a_heavy_step_runs() -> None:
    small = {"free_disk_bytes": 2 * 2**30}
    assert blockers(**small) == ["Not enough free disk space at /srv: 2.0 GiB free, 15 GiB needed."]
    assert blockers(will_run={"preflight", "launchers", "gpu"}, **small) == []


def test_unknown_free_space_does_not_block() -> None:
    assert blockers(free_disk_bytes=None) == []


def test_git_only_when_a_step_clones() -> None:
    no_git = {"git": Tool("git", error="git was not found on PATH")}
    assert blockers(**no_git) == ["git is needed to clone ComfyUI, but git was not found on PATH."]
    assert blockers(will_run={"torch"}, **no_git) == []


def test_unsupported_os() -> None:
    env = make_env("darwin", os_name="macOS 15", target=FRESH)
    found = preflight_blockers(env, platform="darwin", will_run=ALL_STEPS, min_free_gb=15)
    assert [b.message for b in found] == ["macOS 15 is not supported."]


def test_a_plan_for_another_os_is_not_checked_against_this_machine() -> None:
    target = TargetDir("/srv/f", True, False, "/srv/f", False, False)
    assert blockers(platform="windows", target=target, free_disk_bytes=0) == []


def test_every_problem_is_listed_and_the_error_counts_them() -> None:
    target = TargetDir("/ro/x", False, False, "/ro", True, False)
    env = make_env(target=target, free_disk_bytes=0, git=Tool("git", error="git was not found"))
    found = preflight_blockers(env, platform="linux", will_run=ALL_STEPS, min_free_gb=15)
    assert len(found) == 3
    assert {(b.step, b.code, b.exit_code) for b in found} == {("preflight", "environment", 3)}
    error = blocking_error(found)
    assert error.exit_code == 3
    assert error.message == found[0].message + " (and 2 more problems: see the plan)"
    assert error.hint == found[0].hint
    one = blocking_error(found[:2])
    assert one.message == found[0].message + " (and 1 more problem: see the plan)"
    assert blocking_error(found[:1]).message == found[0].message


def test_a_real_run_names_the_dry_run_that_shows_every_problem() -> None:
    """The real run shows no plan: its own command with --dry-run does, options and all."""
    env = make_env(target=FRESH, free_disk_bytes=0, git=Tool("git", error="git was not found"))
    found = preflight_blockers(env, platform="linux", will_run=ALL_STEPS, min_free_gb=15)
    typed = ["install", "/srv/my comfy", "--gpu", "none", "--index-url", "https://u:pw@idx/s"]
    error = blocking_error(found, typed)
    assert error.message == (
        f"{found[0].message} (and 1 more problem: `comfy-install install '/srv/my comfy' "
        "--gpu none --index-url https://u:***@idx/s --dry-run` shows them all)"
    )
    assert error.hint == found[0].hint


def test_another_command_blocked_names_the_other_problems() -> None:
    """An update's new generation has no dry run that lists its problems: they are named."""
    env = make_env(target=FRESH, free_disk_bytes=0, git=Tool("git", error="git was not found"))
    found = preflight_blockers(env, platform="linux", will_run=ALL_STEPS, min_free_gb=15)
    error = blocking_error(found, ["update", "/srv/comfy"])
    assert error.message == f"{found[0].message} (and 1 more problem: {found[1].message})"


def test_the_typed_command_stands_in_for_an_install_started_through_the_api() -> None:
    typed = InstallOptions(install_dir=Path("/srv/c"), command_line=("install", "/srv/c", "-v"))
    assert typed.typed_command() == ["install", "/srv/c", "-v"]
    generation = Path("/srv/c/.comfy-install/generations/2")
    assert InstallOptions(install_dir=generation).typed_command() == ["install", "/srv/c"]


def test_the_plan_carries_the_blockers(deps: Dependencies, manifest: ToolsManifest) -> None:
    target = TargetDir("/srv/f", True, False, "/srv/f", False, False)
    options = InstallOptions(install_dir=Path("/srv/f"), dry_run=True)
    plan = build_plan(deps, manifest, make_env(target=target), gpu_override("9.0", "13.0"), options)
    assert [b.message for b in plan.blocking] == ["/srv/f exists and is not a directory."]
    assert plan.model_dump(mode="json")["blocking"][0]["exit_code"] == 3
    fine = build_plan(deps, manifest, make_env(target=FRESH), gpu_override("9.0", "13.0"), options)
    assert fine.blocking == []
