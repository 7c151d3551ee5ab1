"""bench/gpu/stage_wheels.py cuts a wheel larger than a batch into pieces that fit, and
bench/gpu/install_staged.sh puts it together again, checked, once every piece has come."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path
from types import ModuleType

from support.bench_scripts import load_bench_script

REPO = Path(__file__).resolve().parents[2]


def stage_wheels() -> ModuleType:
    return load_bench_script("stage_wheels")


def test_a_large_wheel_is_cut_into_pieces_that_fit_the_batches(tmp_path: Path) -> None:
    stage = stage_wheels()
    big = tmp_path / "comfy_kitchen-0.2.31-cp312-abi3-manylinux_2_28_x86_64.whl"
    data = os.urandom(2_500_000)
    big.write_bytes(data)
    small = tmp_path / "av-19.0.2-cp312-abi3-manylinux_2_28_x86_64.whl"
    small.write_bytes(os.urandom(300_000))
    files = {"comfy-kitchen": big, "av": small}
    split = stage.split_large(files, 1_000_000)
    assert split == {big.name: {"sha256": hashlib.sha256(data).hexdigest(), "pieces": 3,
                                "mib": 2.4}}  # fmt: skip
    assert not big.exists() and sorted(files) == ["av", "comfy-kitchen#1", "comfy-kitchen#2",
                                                  "comfy-kitchen#3"]  # fmt: skip
    bins = stage.batches(files, 1_000_000)
    assert all(sum(p.stat().st_size for p in items) <= 1_000_000 for items in bins)
    pieces = sorted(p for items in bins for p in items if ".part" in p.name)
    assert b"".join(p.read_bytes() for p in pieces) == data


def test_install_staged_reassembles_over_two_calls_and_checks_the_digest(tmp_path: Path) -> None:
    stage = stage_wheels()
    wheel = tmp_path / "w" / "demo-1.0-py3-none-any.whl"
    wheel.parent.mkdir()
    data = os.urandom(50_000)
    wheel.write_bytes(data)
    files = {"demo": wheel}
    info = stage.split_large(files, 20_000)[wheel.name]
    pip_log = tmp_path / "pip.log"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # python3 stand-in: records what pip would install (the real pip is not the subject here).
    (bin_dir / "python3").write_text(f'#!/bin/sh\necho "$@" >> {pip_log}\n')
    (bin_dir / "python3").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SITE": str(tmp_path / "site")}
    pieces = sorted(files.values())
    for call, chosen in enumerate((pieces[:2], pieces[2:]), 1):  # two device calls
        root = tmp_path / f"call{call}"
        batch = root / ".whl" / f"b{call}"
        batch.mkdir(parents=True)
        for piece in chosen:
            (batch / piece.name).write_bytes(piece.read_bytes())
        (batch / f"{wheel.name}.parts").write_text(f"{info['pieces']} {info['sha256']}\n")
        done = subprocess.run(["bash", str(REPO / "bench/gpu/install_staged.sh")], cwd=root,
                              env=env, capture_output=True, text=True, check=False)  # fmt: skip
        if call == 1:
            assert "2 of 3 pieces so far" in done.stdout and not pip_log.exists()
    assert "reassembled from 3 pieces, SHA-256 checked, installed" in done.stdout, done.stdout
    assert (tmp_path / "site" / ".parts" / wheel.name).read_bytes() == data
    assert wheel.name in pip_log.read_text()


def test_a_corrupt_piece_stops_the_install_with_exit_code_4(tmp_path: Path) -> None:
    stage = stage_wheels()
    wheel = tmp_path / "demo-1.0-py3-none-any.whl"
    wheel.write_bytes(os.urandom(30_000))
    files = {"demo": wheel}
    info = stage.split_large(files, 20_000)[wheel.name]
    batch = tmp_path / "root" / ".whl" / "b1"
    batch.mkdir(parents=True)
    for piece in files.values():
        (batch / piece.name).write_bytes(piece.read_bytes()[:-1] + b"x")
    (batch / f"{wheel.name}.parts").write_text(f"{info['pieces']} {info['sha256']}\n")
    env = {**os.environ, "SITE": str(tmp_path / "site")}
    done = subprocess.run(["bash", str(REPO / "bench/gpu/install_staged.sh")],
                          cwd=tmp_path / "root", env=env, capture_output=True, text=True,
                          check=False)  # fmt: skip
    assert done.returncode == 4 and "does not match" in done.stdout
