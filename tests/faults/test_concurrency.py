"""Concurrency faults: two installs into one DIR, and locks left behind.

Only one process may work on an install directory: the second one stops
with exit code 3 naming the first one's pid, before it writes anything; a
lock whose process is gone is taken over with a warning. Installs started at
the very same instant are tried with six real processes contending for the
real lock, twenty times over (a race shows up in a few rounds, not in one).
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

from faults.faultkit import (
    Case,
    Snapshot,
    assert_clean_after_rerun,
    assert_nothing_lost,
    contend_for_locks,
    error_and_hint,
    finish,
    invoke,
    pid_is_dead,
    signal_group,
    spawn,
)
from support.http_server import GeneratedBody, Stall

MODEL = "/m/slow.safetensors"


def slow_model(case: Case, seconds: float) -> None:
    """Configure a model download the server holds for ``seconds`` (the run holds its lock)."""
    resource = case.server.add(MODEL, GeneratedBody(200_000, seed=4))
    case.server.inject(MODEL, Stall(seconds=seconds, after_bytes=1000), times=None)
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


def lock_path(case: Case) -> Path:
    return case.dir / ".comfy-install" / "lock"


ROUNDS, CONTENDERS = 20, 6


def test_installs_started_at_the_same_instant_never_both_hold_the_lock(tmp_path: Path) -> None:
    import multiprocessing

    directories = []
    for number in range(ROUNDS):
        directory = tmp_path / f"round-{number}"
        (directory / ".comfy-install").mkdir(parents=True)
        directories.append(str(directory))
    context = multiprocessing.get_context("spawn")
    start, attempted = context.Barrier(CONTENDERS), context.Barrier(CONTENDERS)
    winners = context.Queue()
    contenders = [
        context.Process(target=contend_for_locks, args=(directories, start, attempted, winners))
        for _ in range(CONTENDERS)
    ]
    for process in contenders:
        process.start()
    for process in contenders:
        process.join(timeout=120)
        assert process.exitcode == 0
    per_round: dict[str, list[int]] = {directory: [] for directory in directories}
    while not winners.empty():
        directory, pid = winners.get()
        per_round[directory].append(pid)
    doubled = {d: pids for d, pids in per_round.items() if len(pids) != 1}
    assert doubled == {}, f"{len(doubled)} of {ROUNDS} rounds had not exactly one lock holder"


def test_install_while_another_one_runs_exits_3_naming_it(case: Case) -> None:
    slow_model(case, seconds=1)
    before = Snapshot.take(case.dir)
    first = spawn(case.args(), case.full_env())
    try:
        deadline = time.monotonic() + 60
        while not case.server.requests_for(MODEL):
            assert first.poll() is None, first.stderr
            assert time.monotonic() < deadline, "the first install never reached its download"
            time.sleep(0.02)
        holder = json.loads(lock_path(case).read_text(encoding="utf-8"))
        assert holder["pid"] == first.pid
        second = case.run()
        code, stderr = finish(first, 120)
    finally:
        if first.poll() is None:
            signal_group(first, 9)
    assert second.code == 3, second.stderr
    error, _ = error_and_hint(second.stderr)
    assert f"pid {first.pid}" in error
    assert code == 0, stderr
    assert_clean_after_rerun(before)


def test_stale_lock_of_a_dead_process_is_taken_over(case: Case) -> None:
    dead = pid_is_dead()
    case.config()
    before = Snapshot.take(case.dir)
    with open(lock_path(case), "w", encoding="utf-8") as handle:
        json.dump({"pid": dead, "host": socket.gethostname(), "started_at": "earlier"}, handle)
    done = case.run()
    assert done.code == 0, done.stderr
    assert f"warning: took over a stale lock of pid {dead}" in done.stderr
    assert_nothing_lost(before)


def test_lock_from_another_host_says_how_to_clear_it(case: Case) -> None:
    case.config()
    with open(lock_path(case), "w", encoding="utf-8") as handle:
        json.dump({"pid": 1, "host": "other-host", "started_at": "earlier"}, handle)
    failed = case.run()
    assert failed.code == 3, failed.stderr
    error, hint = error_and_hint(failed.stderr)
    assert "other-host" in error
    assert str(lock_path(case)) in error + hint


def test_every_command_that_changes_dir_says_it_took_over_a_stale_lock(case: Case) -> None:
    """rollback and nodes remove take DIR's lock as install does, and say so when it was stale."""
    dead = pid_is_dead()
    for words in (["rollback", str(case.dir)], ["nodes", "remove", str(case.dir), "no-such-node"]):
        with open(lock_path(case), "w", encoding="utf-8") as handle:
            json.dump({"pid": dead, "host": socket.gethostname(), "started_at": "earlier"}, handle)
        done = invoke(words, case.env)
        assert f"warning: took over a stale lock of pid {dead}" in done.stderr, (words, done.stderr)
        assert done.code == 2, (words, done.stderr)  # nothing to roll back; no such node
