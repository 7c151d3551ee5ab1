"""Ctrl-C (SIGINT) and `kill -9` (SIGKILL) in the middle of each long step.

The installer runs as a real process in its own process group, like a job in
a shell; the signal goes to the whole group, as a terminal's Ctrl-C or a
`kill -9 -PGID` (or a container stop) would, so uv and git are hit too. Each
test waits until the step's transfer is really under way (the local server
holds it with a `Stall`), sends the signal, checks what the user sees and
that nothing was lost, then runs the same command again (in process) and
checks that it completes.

SIGINT and SIGKILL during the torch step, and SIGINT during requirements,
are in tests/e2e/test_install.py (signal to the installer's pid only).
"""

from __future__ import annotations

import shutil
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from faults.faultkit import (
    FRESH_REQUIREMENT,
    Case,
    Snapshot,
    assert_clean_after_rerun,
    assert_nothing_lost,
    assert_state_valid,
    clone_changes,
    clone_head,
    error_and_hint,
    finish,
    manifest_file,
    sa_wheel_entry,
    serve_git_repo,
    signal_group,
    spawn,
    wait_until,
)
from support.cli import venv_dists
from support.comfy_repo import git
from support.http_server import GeneratedBody, Stall
from support.package_index import file_path
from support.wheels import sha256_of

SIGNALS = [pytest.param(signal.SIGINT, id="SIGINT"), pytest.param(signal.SIGKILL, id="SIGKILL")]
STALL = Stall(seconds=60, after_bytes=100)


def interrupt_when(case: Case, ready: Callable[[], bool], sig: int) -> tuple[int, str]:
    """Run the install as a process; signal its group once ``ready()``; return (rc, stderr)."""
    process = spawn(case.args(), case.full_env())
    try:
        wait_until(lambda: ready() or process.poll() is not None, 90, "the step to be under way")
        assert process.poll() is None, f"the run ended before the signal: {process.stderr}"
        signal_group(process, sig)
        return finish(process)
    finally:
        if process.poll() is None:
            signal_group(process, signal.SIGKILL)
            process.wait()


def stalled(case: Case, path: str, after: int = STALL.after_bytes) -> Callable[[], bool]:
    """True once the server holds a transfer of ``path`` in its stall."""

    def check() -> bool:
        return any(r.bytes_sent >= after and not r.finished for r in case.server.requests_for(path))

    return check


def check_stopped(case: Case, code: int, stderr: str, sig: int, step: str) -> None:
    """What the user sees and what the state says right after the signal."""
    steps = assert_state_valid(case.dir)["steps"]
    if sig in (signal.SIGINT, signal.SIGTERM):
        assert code == 130, stderr
        error, hint = error_and_hint(stderr)
        assert error == f"Interrupted during step {step}; run the same command to continue."
        assert "Run the same command to continue" in hint
        assert steps[step]["status"] == "interrupted"
    else:
        assert code == -signal.SIGKILL, stderr
        assert steps[step]["status"] == "running"


def check_rerun(case: Case, sig: int) -> None:
    """The same command, without the fault, completes (taking over a killed run's lock)."""
    case.server.clear_faults()
    again = case.run()
    assert again.code == 0, again.stderr
    if sig == signal.SIGKILL:
        assert "took over a stale lock of pid" in again.stderr


# --------------------------------------------------------------------------- step 5: the clone


def v3_repo(case: Case) -> tuple[Path, str]:
    """A copy of the fixture ComfyUI repository with one more commit, tagged v3."""
    work = case.tmp / "comfy-v3"
    git("clone", "-q", str(case.fixtures.comfy_repo), str(work), cwd=case.tmp)
    (work / "comfy" / "model.py").write_text("VERSION = 3\n")
    env = ("-c", "user.name=t", "-c", "user.email=t@example.invalid")
    git(*env, "commit", "-qam", "fixture ComfyUI v3", cwd=work)
    git("tag", "v3", cwd=work)
    return work, git("rev-parse", "HEAD", cwd=work)


@pytest.mark.parametrize("sig", SIGNALS)
def test_signal_while_fetching_a_new_comfyui_commit(case: Case, sig: int) -> None:
    repo, v3 = v3_repo(case)
    served = serve_git_repo(case.server, repo, case.tmp)
    case.config(comfyui={"url": served["url"], "ref": "v3", "commit": v3})
    before = Snapshot.take(case.dir)
    case.server.inject(served["pack"], STALL, times=None)
    code, stderr = interrupt_when(case, stalled(case, served["pack"]), sig)
    check_stopped(case, code, stderr, sig, "comfyui")
    assert_nothing_lost(before, lock_left=sig == signal.SIGKILL)
    check_rerun(case, sig)
    assert clone_head(case.dir) == v3
    assert_clean_after_rerun(before, head=v3)


def test_sigkill_during_a_fresh_clone_leaves_no_half_made_comfyui(case: Case) -> None:
    served = serve_git_repo(case.server, case.fixtures.comfy_repo, case.tmp)
    commit = case.fixtures.commits["v2"]
    case.config(comfyui={"url": served["url"], "ref": "v2", "commit": commit})
    shutil.rmtree(case.dir / "ComfyUI")
    before = Snapshot.take(case.dir)
    case.server.inject(served["pack"], STALL, times=None)
    code, stderr = interrupt_when(case, stalled(case, served["pack"]), signal.SIGKILL)
    check_stopped(case, code, stderr, signal.SIGKILL, "comfyui")
    assert not (case.dir / "ComfyUI").exists(), "a half-made clone is under the final name"
    check_rerun(case, signal.SIGKILL)
    assert clone_head(case.dir) == commit
    assert clone_changes(case.dir) == ""
    assert not list(case.dir.glob(".ComfyUI.partial-*")), "the killed run's staging clone is left"
    assert_clean_after_rerun(before, head=commit)


# --------------------------------------------------------------------------- step 8: requirements


def test_sigkill_during_requirements(case: Case) -> None:
    case.config(extra_requirements=[FRESH_REQUIREMENT])
    wheel = file_path(case.fixtures.wheels[FRESH_REQUIREMENT])
    before = Snapshot.take(case.dir)
    case.server.inject(wheel, STALL, times=None)
    code, stderr = interrupt_when(case, stalled(case, wheel), signal.SIGKILL)
    check_stopped(case, code, stderr, signal.SIGKILL, "requirements")
    assert_nothing_lost(before, lock_left=True)
    check_rerun(case, signal.SIGKILL)
    assert venv_dists(case.dir)["triton"] == "3.5.1"
    assert_clean_after_rerun(before)


# ------------------------------------------------------------------------ step 10: wheel download


@pytest.mark.parametrize("sig", SIGNALS)
def test_signal_during_the_step_10_wheel_download(case: Case, sig: int) -> None:
    url = case.serve_sa_wheel()
    manifest = manifest_file(case.tmp / "tools_manifest.json", {case.sa_wheel.name: case.sa_wheel})
    case.config(
        pip_packages={"sageattention_wheels": [sa_wheel_entry(url)], "sageattention_fallback": None}
    )
    case.extra = ["--tools-manifest", str(manifest)]
    path = f"/releases/{case.sa_wheel.name}"
    final = case.cache / case.sa_wheel.name
    before = Snapshot.take(case.dir)
    case.server.inject(path, STALL, times=None)
    code, stderr = interrupt_when(case, stalled(case, path), sig)
    check_stopped(case, code, stderr, sig, "optimizations")
    assert not final.exists(), "the wheel is under its final name though it was not finished"
    assert_nothing_lost(
        before,
        verified={final: sha256_of(case.sa_wheel)},
        download_roots=[case.cache],
        lock_left=sig == signal.SIGKILL,
    )
    check_rerun(case, sig)
    assert "sageattention" in venv_dists(case.dir)
    assert_clean_after_rerun(before, case.cache)


# ------------------------------------------------------------------------ step 12: model download

MODEL = "/m/big.safetensors"


@pytest.mark.parametrize("sig", [*SIGNALS, pytest.param(signal.SIGTERM, id="SIGTERM")])
def test_signal_during_a_model_download_then_resume(case: Case, sig: int) -> None:
    resource = case.server.add(MODEL, GeneratedBody(4 << 20, seed=5))
    case.config(
        models=[
            {
                "url": case.server.url(MODEL),
                "kind": "checkpoints",
                "sha256": resource.sha256,
                "size": resource.size,
            }
        ]
    )
    folder = case.models / "checkpoints"
    final = folder / "big.safetensors"
    before = Snapshot.take(case.dir)
    case.server.inject(MODEL, Stall(seconds=60, after_bytes=1 << 20), times=None)

    def half_on_disk() -> bool:
        return any(p.stat().st_size >= 512 << 10 for p in folder.glob("*.part"))

    code, stderr = interrupt_when(case, half_on_disk, sig)
    check_stopped(case, code, stderr, sig, "models")
    assert not final.exists(), "the model is under its final name though it was not finished"
    parts = list(folder.glob("*.part"))
    assert len(parts) == 1, parts
    kept = parts[0].stat().st_size
    assert_nothing_lost(before, verified={final: resource.sha256}, lock_left=sig == signal.SIGKILL)
    check_rerun(case, sig)
    resumed = case.server.requests_for(MODEL)[-1]
    assert resumed.range == f"bytes={kept}-", "the re-run did not resume the kept .part"
    assert resumed.bytes_sent == resource.size - kept
    assert final.stat().st_size == resource.size
    assert_clean_after_rerun(before)
