"""The `update` benchmark: a real update against a fresh install, rollback, a generation's disk.

    uv run python bench/run.py --only update

1. A real install of ComfyUI v0.3.77 (the old pin, from ../shared/fixtures, `--gpu none
   --torch-index default`), with a user's files added (models, input, output, workflows,
   a custom node, extra_model_paths.yaml), is updated to v0.33.0 (the pin); the same run
   times a fresh install of v0.33.0 into an empty DIR. Both use the same warm uv cache.
2. `rollback` back to generation 1 is timed (the whole process, Python's start included).
3. The disk the second generation adds (`du -sk` of DIR after the update minus before;
   `du` counts a hard-linked file once) against a full copy of one install (`du -sk` of
   the fresh install alone).
4. The user's files are hashed (sha256) before, after the update and after the rollback.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def du_kib(path: Path) -> int:
    """`du -sk`: KiB on disk, a file with several hard links counted once."""
    done = subprocess.run(["du", "-sk", str(path)], capture_output=True, text=True, check=True)
    return int(done.stdout.split()[0])


def bench_update(
    work: Path,
    env: dict[str, str],
    timed: Callable[..., float],
    result: Callable[..., Any],
    runs: int = 1,
) -> list[Any]:
    """Measure update vs fresh install, rollback, and a second generation's disk.

    Args:
        work: bench/.work.
        env: The benchmark environment (warm uv cache).
        timed: bench/run.py's `timed` (seconds of one command).
        result: bench/run.py's `Result` class.
        runs: How many update / fresh pairs.
    """
    from support.cli import cli_path
    from support.real import bundle_path, real_install_args
    from support.user_data import add_user_data, user_hashes

    updates: list[float] = []
    fresh: list[float] = []
    rollbacks: list[float] = []
    added: list[float] = []
    full: list[float] = []
    proofs: list[str] = []
    for _ in range(runs):
        root = Path(tempfile.mkdtemp(prefix="update-", dir=work))
        install = root / "inst"
        timed([*real_install_args(install, "v0.3.77"), "-q"], env)
        add_user_data(install / "ComfyUI")
        before_hashes = user_hashes(install / "ComfyUI")
        before_kib = du_kib(install)
        update = [
            cli_path(), "update", str(install), "--comfyui-url", str(bundle_path("v0.33.0")),
            "--comfyui-ref", "v0.33.0", "--gpu", "none", "--torch-index", "default", "-q",
        ]  # fmt: skip
        updates.append(timed(update, env))
        after_kib = du_kib(install)
        after_hashes = user_hashes(install / "ComfyUI")
        target = root / "fresh"
        fresh.append(timed([*real_install_args(target, "v0.33.0"), "-q"], env))
        full.append(du_kib(target) / 1024)
        added.append((after_kib - before_kib) / 1024)
        start = time.perf_counter()
        done = subprocess.run(
            [cli_path(), "rollback", str(install)], env=env, capture_output=True, text=True
        )
        rollbacks.append(time.perf_counter() - start)
        assert done.returncode == 0, done.stderr
        back_hashes = user_hashes(install / "ComfyUI")
        same = before_hashes == after_hashes == back_hashes
        proofs.append(f"{len(before_hashes)} user files, sha256 unchanged: {same}")
        assert same, "the update or the rollback changed the user's files"
        shutil.rmtree(root, ignore_errors=True)
    import statistics

    ratio = statistics.median(updates) / statistics.median(fresh)
    disk = statistics.median(added) / statistics.median(full)
    return [
        result(
            "update v0.3.77 -> v0.33.0 (real, warm cache) vs fresh install of v0.33.0",
            updates,
            fresh,
            target="<= 0.80x",
            met=ratio <= 0.8,
            floor_name="comfy-install install of v0.33.0 into an empty DIR",
            notes="; ".join(sorted(set(proofs))),
        ),
        result(
            "rollback to the previous generation (whole process)",
            rollbacks,
            target="<= 5 s",
            met=max(rollbacks) <= 5,
        ),
        result(
            "disk a second generation adds vs a full copy (du -sk, hard links once)",
            added,
            full,
            unit="MiB",
            target="<= 0.25x",
            met=disk <= 0.25,
            floor_name="du -sk of a fresh install (one full generation)",
        ),
    ]
