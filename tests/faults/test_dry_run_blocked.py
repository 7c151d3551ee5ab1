"""A DIR that cannot be used: `install --dry-run` shows why and exits 3, as the real run does.

The real console script runs against real paths: a file as DIR, a file in the way of DIR, a
parent on a read-only bind mount (the tests run as root, which ignores file modes but not a
read-only mount; skipped where mounting is not permitted), a parent under `/proc` (where not
even root may create a folder, no mount needed), and a disk with too little room
(`--min-free-gb` above the free space). Each time the dry run and the real run end with exit
code 3 and the same message, and neither writes anything: no DIR, no `.comfy-install` (state,
lock, log) inside it.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from faults.faultkit import error_and_hint, read_only
from installer.core.envelope import ENVELOPE_KEYS
from support.cli import cli_path

ENV = dict(os.environ, NO_COLOR="1", COLUMNS="200")


def install(target: Path | str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [cli_path(), "install", str(target), "--gpu", "none", *extra],
        env=ENV, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def listing(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` with a file's bytes (None for a folder)."""
    return {
        str(path.relative_to(root)): path.read_bytes() if path.is_file() else None
        for path in sorted(root.rglob("*"))
    }


def check_blocked(target: Path | str, message: str, *extra: str) -> None:
    """The dry run (text and JSON) and the real run all exit 3 with ``message``."""
    dry = install(target, "--dry-run", *extra)
    assert dry.returncode == 3, dry.stderr
    error, hint = error_and_hint(dry.stderr)
    assert error.startswith(message), error
    assert "Plan for" in dry.stdout  # the plan is still shown ...
    assert f"blocked: {message}" in dry.stdout  # ... with what blocks it
    assert "The install cannot start" in dry.stdout and "(exit code 3)" in dry.stdout

    as_json = install(target, "--dry-run", "--json", *extra)
    assert as_json.returncode == 3, as_json.stderr
    document = json.loads(as_json.stdout)
    assert tuple(document) == ENVELOPE_KEYS
    assert (document["status"], document["exit_code"]) == ("error", 3)
    [reported] = document["errors"]
    assert reported["code"] == "environment" and reported["message"].startswith(message)
    assert reported["hint"] == hint
    blocking = document["data"]["blocking"]
    assert blocking[0] == {
        "step": "preflight", "code": "environment", "exit_code": 3,
        "message": blocking[0]["message"], "hint": hint,
    }  # fmt: skip
    assert blocking[0]["message"].startswith(message)
    assert len(document["data"]["steps"]) == 13  # the whole plan comes with the error

    real = install(target, *extra)
    assert real.returncode == 3, real.stderr
    real_error, real_hint = error_and_hint(real.stderr)
    assert real_error.startswith(message) and real_hint == hint  # free space may move between


def test_a_file_as_dir(tmp_path: Path) -> None:
    target = tmp_path / "notes.txt"
    target.write_text("my notes")
    before = listing(tmp_path)

    check_blocked(target, f"{target} exists and is not a directory.")

    assert listing(tmp_path) == before
    # The preflight's disk line names the folder it measured, never the file.
    shown = install(target, "--dry-run", "--json")
    preflight = json.loads(shown.stdout)["data"]["steps"][0]
    assert preflight["id"] == "preflight"
    assert preflight["details"][0].endswith(f"GiB free at {tmp_path}"), preflight["details"]


def test_a_file_in_the_way_of_dir(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("my notes")
    before = listing(tmp_path)
    target = tmp_path / "notes.txt" / "ComfyUI-install"

    check_blocked(target, f"{target} cannot be created: {tmp_path / 'notes.txt'} is a file.")

    assert listing(tmp_path) == before


@pytest.mark.usefixtures("mountable")
def test_a_read_only_parent(tmp_path: Path) -> None:
    parent = tmp_path / "parent"
    parent.mkdir()
    (parent / "kept.txt").write_text("mine")
    target = parent / "Comfy dir ü"
    before = listing(tmp_path)

    with read_only(parent):
        check_blocked(
            target,
            f"{target} cannot be created: {parent} is not writable (no permission, or a "
            "read-only file system).",
        )

    assert listing(tmp_path) == before


@pytest.mark.usefixtures("mountable")
def test_a_read_only_dir_that_exists(tmp_path: Path) -> None:
    target = tmp_path / "inst"
    target.mkdir()
    (target / "kept.txt").write_text("mine")
    before = listing(tmp_path)

    with read_only(target):
        check_blocked(target, f"{target} is not writable")

    assert listing(tmp_path) == before


@pytest.mark.skipif(not Path("/proc/1").is_dir(), reason="needs Linux /proc")
def test_a_parent_where_not_even_root_can_create_a_folder() -> None:
    target = Path("/proc/1/ComfyUI-install")
    assert not os.access("/proc/1", os.W_OK)

    check_blocked(target, f"{target} cannot be created: /proc/1 is not writable")

    assert not target.exists()


def test_too_little_room(tmp_path: Path) -> None:
    target = tmp_path / "inst"
    free_gib = shutil.disk_usage(tmp_path).free / 2**30
    wanted = str(int(free_gib * 2) + 10)

    check_blocked(
        target,
        f"Not enough free disk space at {tmp_path}: ",
        "--min-free-gb",
        wanted,
    )

    assert list(tmp_path.iterdir()) == []  # no DIR, so no state, lock or log in it


def test_a_usable_dir_is_not_blocked(tmp_path: Path) -> None:
    done = install(tmp_path / "inst", "--dry-run", "--json")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["status"] == "ok" and document["data"]["blocking"] == []
    assert list(tmp_path.iterdir()) == []


def test_a_real_run_with_several_problems_names_the_dry_run_that_shows_them(
    tmp_path: Path,
) -> None:
    """The real run shows no plan; the dry run its error names (the same options) shows all."""
    target = tmp_path / "notes.txt"
    target.write_text("my notes")
    wanted = str(int(shutil.disk_usage(tmp_path).free / 2**30 * 2) + 10)

    real = install(target, "--min-free-gb", wanted)

    assert real.returncode == 3, real.stderr
    error, _ = error_and_hint(real.stderr)
    dry_run = f"comfy-install install {target} --gpu none --min-free-gb {wanted} --dry-run"
    assert error == (
        f"{target} exists and is not a directory. (and 1 more problem: `{dry_run}` shows them all)"
    )
    words = shlex.split(dry_run)
    shown = subprocess.run(
        [cli_path(), *words[1:]], env=ENV, capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip
    assert shown.returncode == 3, shown.stderr
    assert f"blocked: {target} exists and is not a directory." in shown.stdout
    # The disk line names the folder it measured: the file's, never the file.
    assert f"blocked: Not enough free disk space at {tmp_path}: " in shown.stdout
    assert "The install cannot start: 2 problem(s) above" in shown.stdout
    assert target.read_text() == "my notes"
