"""Faults of `update`: signals in each phase, a full disk, a new ComfyUI that fails to start,
and a rollback with nothing to go back to.

Every test starts from the fault suite's finished install (generation 1) with a user's
files added, and checks the same promises afterwards: the current generation is still
generation 1 and untouched (torch's files, ComfyUI's HEAD, its state), the user's files
hash the same, and the same command run again finishes the update.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from faults.faultkit import (
    GPU_ARGS,
    Case,
    Snapshot,
    assert_nothing_lost,
    copy_install,
    error_and_hint,
    fill_disk,
    finish,
    invoke,
    serve_git_repo,
    signal_group,
    spawn,
    tmpfs,
    wait_until,
)
from support.cli import BASE_PYTHON, venv_dists
from support.comfy_repo import NO_TORCHAUDIO
from support.http_server import Stall
from support.package_index import file_path
from support.user_data import add_user_data, user_hashes

SIGNALS = [pytest.param(signal.SIGINT, id="SIGINT"), pytest.param(signal.SIGKILL, id="SIGKILL")]
STALL = Stall(seconds=60, after_bytes=100)


def update_args(case: Case, *extra: str) -> list[str]:
    return [
        "update", str(case.dir), "--config", str(case.configs[-1] if case.configs else
                                                 case.config()),
        "--torch-index", "default", "--index-url", case.index_url, "--python", BASE_PYTHON,
        *GPU_ARGS, "--comfyui-ref", NO_TORCHAUDIO, *extra,
    ]  # fmt: skip


def pointer(case: Case) -> Path:
    return case.dir / ".comfy-install" / "current-generation"


def second(case: Case) -> Path:
    return case.dir / ".comfy-install" / "generations" / "2"


def prepared(case: Case) -> tuple[Snapshot, dict[str, str]]:
    add_user_data(case.dir / "ComfyUI")
    return Snapshot.take(case.dir), user_hashes(case.dir / "ComfyUI")


def assert_still_generation_1(
    case: Case, before: Snapshot, users: dict[str, str], **kw: bool
) -> None:
    assert not pointer(case).exists(), "the update switched though it did not finish"
    assert_nothing_lost(before, **kw)
    assert user_hashes(case.dir / "ComfyUI") == users
    assert "torchaudio" in venv_dists(case.dir)


def rerun_finishes(case: Case, users: dict[str, str], *extra: str) -> str:
    case.server.clear_faults()
    again = invoke(update_args(case, *extra), case.env)
    assert again.code == 0, again.stderr
    assert pointer(case).read_text().strip() == "2"
    assert "torchaudio" not in venv_dists(second(case))
    assert user_hashes(case.dir / "ComfyUI") == users
    return again.stderr


def signal_when(case: Case, ready: Callable[[], bool], sig: int, *extra: str) -> tuple[int, str]:
    process = spawn(update_args(case, *extra), case.full_env())
    try:
        wait_until(lambda: ready() or process.poll() is not None, 90, "the phase to be under way")
        assert process.poll() is None, f"the update ended before the signal: {process.stderr}"
        signal_group(process, sig)
        return finish(process)
    finally:
        if process.poll() is None:
            signal_group(process, signal.SIGKILL)
            process.wait()


def stalled(case: Case, path: str) -> Callable[[], bool]:
    def check() -> bool:
        return any(
            r.bytes_sent >= STALL.after_bytes and not r.finished
            for r in case.server.requests_for(path)
        )

    return check


def step_running(case: Case, step: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            state = json.loads((second(case) / ".comfy-install" / "state.json").read_text())
        except (OSError, ValueError):
            return False
        return bool(state["steps"].get(step, {}).get("status") == "running")

    return check


def check_signalled(code: int, stderr: str, sig: int) -> None:
    if sig == signal.SIGINT:
        assert code == 130, stderr
        assert "run the same command to continue" in stderr.lower()
    else:
        assert code == -signal.SIGKILL, stderr


@pytest.mark.parametrize("sig", SIGNALS)
def test_signal_while_fetching_the_new_commit(case: Case, sig: int) -> None:
    served = serve_git_repo(case.server, case.fixtures.comfy_repo, case.tmp)
    # A ComfyUI clone that lacks the target commit, so the update must fetch it.
    from support.comfy_repo import git

    git("tag", "-d", NO_TORCHAUDIO, cwd=case.dir / "ComfyUI")
    git("update-ref", "-d", "refs/remotes/origin/next", cwd=case.dir / "ComfyUI")
    git("reflog", "expire", "--expire=now", "--all", cwd=case.dir / "ComfyUI")
    git("gc", "-q", "--prune=now", cwd=case.dir / "ComfyUI")
    before, users = prepared(case)
    case.server.inject(served["pack"], STALL, times=None)
    code, stderr = signal_when(
        case, stalled(case, served["pack"]), sig, "--comfyui-url", served["url"]
    )
    check_signalled(code, stderr, sig)
    assert_still_generation_1(case, before, users, lock_left=sig == signal.SIGKILL)
    rerun_finishes(case, users, "--comfyui-url", served["url"])


@pytest.mark.parametrize("sig", SIGNALS)
@pytest.mark.parametrize("step", ["torch", "requirements"])
def test_signal_while_the_new_venv_is_built(case: Case, sig: int, step: str) -> None:
    wheel = {"torch": "torch==2.9.1+cu128", "requirements": "needs-torch==1.0"}[step]
    path = file_path(case.fixtures.wheels[wheel])
    before, users = prepared(case)
    case.server.inject(path, STALL, times=None)
    code, stderr = signal_when(case, stalled(case, path), sig)
    check_signalled(code, stderr, sig)
    state = json.loads((second(case) / ".comfy-install" / "state.json").read_text())
    assert state["steps"][step]["status"] == ("interrupted" if sig == signal.SIGINT else "running")
    assert_still_generation_1(case, before, users, lock_left=sig == signal.SIGKILL)
    registry = json.loads((case.dir / ".comfy-install" / "generations.json").read_text())
    assert {g["id"]: g["status"] for g in registry["generations"]} == {1: "ready", 2: "building"}
    out = rerun_finishes(case, users)
    if sig == signal.SIGKILL:
        assert "took over a stale lock of pid" in out


@pytest.mark.parametrize("sig", SIGNALS)
def test_signal_during_the_new_generations_start_up_test(case: Case, sig: int) -> None:
    before, users = prepared(case)
    case.env["COMFY_FIXTURE_DELAY"] = "60"
    code, stderr = signal_when(case, step_running(case, "verify"), sig)
    check_signalled(code, stderr, sig)
    assert_still_generation_1(case, before, users, lock_left=sig == signal.SIGKILL)
    del case.env["COMFY_FIXTURE_DELAY"]
    out = rerun_finishes(case, users)
    assert "[4/13] venv" in out and "up to date" in out


def test_a_new_comfyui_that_fails_its_start_up_test_is_not_switched_to(case: Case) -> None:
    before, users = prepared(case)
    failed = invoke(update_args(case), {**case.env, "COMFY_FIXTURE_EXIT": "1"})
    assert failed.code == 1, failed.stderr
    error, hint = error_and_hint(failed.stderr)
    assert error.startswith("The new generation 2 failed its checks (log: ")
    assert "): Step 13 (verify) failed: ComfyUI does not start" in error
    log = error.split("(log: ", 1)[1].split("): ", 1)[0]
    assert Path(log).is_file() and Path(log).is_relative_to(second(case))
    assert "fixture ComfyUI: exiting early on purpose" in Path(log).read_text()
    assert "Generation 1 is still current" in hint
    assert_still_generation_1(case, before, users)
    registry = json.loads((case.dir / ".comfy-install" / "generations.json").read_text())
    assert registry["generations"][1]["status"] == "failed"
    rerun_finishes(case, users)


@pytest.mark.usefixtures("mountable")
def test_disk_full_while_the_new_generation_is_built(case: Case) -> None:
    small = case.tmp / "small-disk"
    with tmpfs(small, "40m"):
        case.dir = copy_install(case.dir, small / "inst ü")
        before, users = prepared(case)
        filler = fill_disk(small, 200_000)
        failed = invoke(update_args(case, "--min-free-gb", "0"), case.env)
        assert failed.code == 3, failed.stderr
        _, hint = error_and_hint(failed.stderr)
        assert "Free disk space" in hint
        assert_still_generation_1(case, before, users)
        filler.unlink()
        rerun_finishes(case, users, "--min-free-gb", "0")


def test_rollback_with_no_previous_generation_exits_2(case: Case) -> None:
    before, users = prepared(case)
    done = invoke(["rollback", str(case.dir)], case.env)
    assert done.code == 2, done.stderr
    error, hint = error_and_hint(done.stderr)
    assert "no previous generation" in error
    assert "comfy-install status" in hint
    assert_still_generation_1(case, before, users)


def test_killed_between_writing_the_new_pointer_and_the_rename(case: Case) -> None:
    """A kill inside the switch can only leave the temporary file: the pointer is as it was."""
    before, users = prepared(case)
    stale = case.dir / ".comfy-install" / ".current-generation.2.tmp"
    stale.write_text("2")  # what a process killed before its rename leaves
    assert_still_generation_1(case, before, users)
    launched = invoke(["launch", str(case.dir), "--print-env"], case.env)
    assert launched.code == 0, launched.stderr
    assert f"{case.dir}/venv/bin/python" in launched.stdout.splitlines()[-1]
    rerun_finishes(case, users)
    assert not stale.exists()


def test_a_prune_that_did_not_finish_is_finished_by_the_next_update(case: Case) -> None:
    """Killed after the switch, before (or during) the prune: the next update prunes."""
    before, users = prepared(case)
    rerun_finishes(case, users, "--keep", "5")
    assert (case.dir / "venv").is_dir()
    orphan = case.dir / ".comfy-install" / "generations" / "7"
    (orphan / "venv").mkdir(parents=True)  # a generation whose record was already dropped
    again = invoke(update_args(case, "--keep", "1"), case.env)
    assert again.code == 0, again.stderr
    assert "nothing to do" in again.stderr
    assert not (case.dir / "venv").exists() and not orphan.exists()
    assert user_hashes(case.dir / "ComfyUI") == users
    assert before.head is not None
