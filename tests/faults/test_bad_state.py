"""Bad state never costs the user anything (issue 33, parts 1 and 2).

A state file that is not UTF-8, cut short, valid JSON of the wrong shape, from a
newer comfy-install, or not a file at all: every command ends with a message (or
goes on with a warning), never a traceback; `install` moves the damaged file aside,
checks what DIR holds and keeps what is right. The proof is a package the user
added to the venv by hand (a real wheel installed by real uv): it is still there,
byte for byte, after the re-run, and torch's files are the very same files.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from faults.faultkit import Case, Snapshot, assert_nothing_lost, error_and_hint, invoke
from support.cli import venv_dists
from support.wheels import WheelSpec, build_wheel, sha256_of

USER_MODULE = "my_own_tool/__init__.py"
USER_TEXT = 'MINE = "added by the user"\n'


def add_user_package(case: Case) -> Path:
    """Install a tiny wheel of the user's own into the venv with real uv; return its module."""
    from installer.edges.environment import find_uv_binary

    wheel = build_wheel(
        WheelSpec("my-own-tool", "1.0", files={USER_MODULE: USER_TEXT}), case.tmp / "user"
    )
    python = case.dir / "venv" / "bin" / "python"
    subprocess.run(
        [find_uv_binary() or "uv", "pip", "install", "--python", str(python), str(wheel)],
        check=True,
        capture_output=True,
        env={**case.full_env(), "UV_OFFLINE": "1"},
    )
    module = next((case.dir / "venv").glob(f"lib/python*/site-packages/{USER_MODULE}"))
    assert venv_dists(case.dir)["my-own-tool"] == "1.0"
    return module


def state_file(case: Case) -> Path:
    """DIR/.comfy-install/state.json."""
    return case.dir / ".comfy-install" / "state.json"


def truncated(text: bytes) -> bytes:
    """The first 200 bytes of the state (cut mid-JSON)."""
    return text[:200]


DAMAGES = {
    "not UTF-8": lambda text: bytes(range(256)) * 16,
    "truncated": truncated,
    "empty": lambda text: b"",
    "a JSON list": lambda text: b"[1, 2, 3]",
    "a JSON string": lambda text: b'"state"',
    "wrong shape": lambda text: json.dumps({"steps": {"venv": {"status": 7}}}).encode(),
    "schema 0": lambda text: json.dumps({"schema_version": 0}).encode(),
}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_damaged_state_is_moved_aside_and_nothing_is_lost(case: Case, damage: str) -> None:
    module = add_user_package(case)
    before = Snapshot.take(case.dir, module)
    damaged = DAMAGES[damage](state_file(case).read_bytes())
    state_file(case).write_bytes(damaged)

    for command in (["status", str(case.dir)], ["doctor", str(case.dir)]):
        looked = invoke(command, case.env)
        assert "Traceback" not in looked.text
        assert "damaged" in looked.text, looked.text
    printed = invoke(["launch", str(case.dir), "--print-env"], case.env)
    assert printed.code == 0, printed.stderr
    dry = invoke([*case.args("--dry-run", "--json")], case.env)
    assert dry.code == 0, dry.stderr
    plan = json.loads(dry.stdout)["data"]
    assert any("damaged" in warning for warning in plan["warnings"])
    assert state_file(case).read_bytes() == damaged, "a dry run changed the state file"

    again = case.run("--json")
    assert again.code == 0, again.stderr
    assert json.loads(again.stdout)["status"] == "ok"
    assert "moved the unusable state file aside" in again.stderr
    assert "kept the venv" in again.stderr
    aside = sorted(state_file(case).parent.glob("state.json.damaged-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == damaged
    assert venv_dists(case.dir)["my-own-tool"] == "1.0"
    assert module.read_text() == USER_TEXT
    assert_nothing_lost(before)
    settled = case.run()
    assert settled.code == 0 and "unusable state" not in settled.stderr, settled.stderr


@pytest.mark.parametrize("version", [99, "99", 99.0])
def test_state_of_a_newer_comfy_install_is_refused(case: Case, version: object) -> None:
    module = add_user_package(case)
    before = Snapshot.take(case.dir, module)
    data = json.loads(state_file(case).read_text())
    data.update(schema_version=version, tool_version="9.0.0", generations=[{"id": 1}])
    state_file(case).write_text(json.dumps(data))
    written = state_file(case).read_bytes()
    for extra in ((), ("--dry-run",), ("--json",)):
        refused = case.run(*extra)
        assert refused.code == 3, refused.stderr
        error, hint = error_and_hint(refused.stderr)
        assert "newer comfy-install (9.0.0)" in error and "schema 99" in error
        assert "Upgrade comfy-install" in hint
        if "--json" in extra:
            envelope = json.loads(refused.stdout)
            assert envelope["errors"][0]["code"] == "state-too-new"
    for command in ("status", "doctor", "launch"):
        refused = invoke([command, str(case.dir)], case.env)
        assert refused.code == 3, (command, refused.stderr)
        assert "newer comfy-install" in error_and_hint(refused.stderr)[0]
    assert state_file(case).read_bytes() == written
    assert venv_dists(case.dir)["my-own-tool"] == "1.0"
    assert_nothing_lost(before)


def test_state_that_is_a_directory_is_moved_aside(case: Case) -> None:
    module = add_user_package(case)
    before = Snapshot.take(case.dir, module)
    state_file(case).unlink()
    state_file(case).mkdir()
    (state_file(case) / "note.txt").write_text("mine")
    looked = invoke(["status", str(case.dir)], case.env)
    assert looked.code == 2 and "cannot be read" in looked.stderr, looked.stderr
    again = case.run()
    assert again.code == 0, again.stderr
    aside = next(state_file(case).parent.glob("state.json.damaged-*"))
    assert (aside / "note.txt").read_text() == "mine"
    assert venv_dists(case.dir)["my-own-tool"] == "1.0"
    assert_nothing_lost(before)


def test_a_garbage_install_lock_file_is_taken_over(case: Case) -> None:
    lock = case.dir / ".comfy-install" / "lock"
    lock.write_bytes(bytes(range(256)))
    again = case.run()
    assert again.code == 0, again.stderr
    assert not lock.exists()


def test_a_state_lost_entirely_keeps_the_venv(case: Case) -> None:
    module = add_user_package(case)
    before = Snapshot.take(case.dir, module)
    state_file(case).unlink()
    again = case.run()
    assert again.code == 0, again.stderr
    assert "kept the venv" in again.stderr
    assert venv_dists(case.dir)["my-own-tool"] == "1.0"
    assert sha256_of(module) == before.extra_files[module]
    assert_nothing_lost(before)
