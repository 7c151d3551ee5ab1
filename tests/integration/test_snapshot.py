"""`comfy-install snapshot save|restore` for real: a fixture install with nodes, saved to one
file and rebuilt in a new DIR offline (uv's cache, local wheel folders, the nodes' own repos).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from installer.core.snapshot import Snapshot
from support.cli import (
    Fixtures,
    cli_path,
    install_args,
    installer_env,
    read_state,
    run,
    venv_dists,
    write_config,
)
from support.comfy_repo import git
from support.node_repos import build_node_wheels, make_node_repo


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory, fixtures: Fixtures) -> dict[str, Any]:
    """An install with two added nodes (one with an install.py that ran), and its snapshot."""
    root = tmp_path_factory.mktemp("snapshot")
    wheels = root / "node-wheels"
    build_node_wheels(wheels)
    repos = root / "repos"
    make_node_repo(repos / "plain-node", requirements=["plain-new"])
    make_node_repo(repos / "scripted", pyproject_deps=["only-mine"], install_py=True)
    config = write_config(root / "deps.json", fixtures)
    target = root / "inst"
    env = installer_env(fixtures)
    mirror = ["--find-links", str(fixtures.links), "--find-links", str(wheels), "--offline"]
    args = install_args(target, config, "http://127.0.0.1:9/simple/")
    at = args.index("--index-url")
    args[at : at + 2] = mirror
    assert run(args, env).returncode == 0
    for name, extra in (("plain-node", []), ("scripted", ["--allow-install-script"])):
        done = run(
            [cli_path(), "nodes", "add", str(target), str(repos / name), *mirror, *extra], env
        )
        assert done.returncode == 0, done.stderr
    file = root / "snap.json"
    done = run([cli_path(), "snapshot", "save", str(target), str(file), "--config", str(config),
                *mirror, "--json"], env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return {"root": root, "dir": target, "file": file, "env": env, "mirror": mirror,
            "repos": repos}  # fmt: skip


def restore(saved: dict[str, Any], target: Path, *extra: str) -> Any:
    """`comfy-install snapshot restore FILE TARGET` offline, nodes from their local repos."""
    return run([cli_path(), "snapshot", "restore", str(saved["file"]), str(target), "--gpu", "none",
                *saved["mirror"], *extra], saved["env"])  # fmt: skip


def test_the_snapshot_holds_every_pin_and_the_hashed_resolution(saved: dict) -> None:
    snapshot = Snapshot.model_validate_json(saved["file"].read_text())
    state = read_state(saved["dir"])
    assert snapshot.comfyui.commit == state["steps"]["comfyui"]["outputs"]["commit"]
    heads = {n.name: n.commit for n in snapshot.nodes}
    for name, commit in heads.items():
        assert (
            git("rev-parse", "HEAD", cwd=saved["dir"] / "ComfyUI" / "custom_nodes" / name) == commit
        )
    assert snapshot.torch.versions["torch"] == "2.9.1+cu128"
    assert snapshot.platform == "linux" and snapshot.python.count(".") == 2
    assert "plain-new==1.3 \\\n    --hash=sha256:" in snapshot.lock
    assert "# [torch]" in snapshot.lock and "torch==2.9.1+cu128 \\" in snapshot.lock


def test_restore_rebuilds_the_install_in_a_new_dir_offline(saved: dict) -> None:
    target = saved["root"] / "copy"
    sources = [f"--source={n}={saved['repos'] / n}" for n in ("plain-node", "scripted")]
    done = restore(saved, target, *sources, "--allow-install-script")
    assert done.returncode == 0, done.stderr[-3000:]
    assert venv_dists(target) == venv_dists(saved["dir"])
    for name in ("plain-node", "scripted"):
        here = git("rev-parse", "HEAD", cwd=target / "ComfyUI" / "custom_nodes" / name)
        assert here == git(
            "rev-parse", "HEAD", cwd=saved["dir"] / "ComfyUI" / "custom_nodes" / name
        )
    assert (target / "ComfyUI" / "custom_nodes" / "scripted" / "install-ran.txt").is_file()
    assert "hashes checked" in done.stderr
    listed = run([cli_path(), "nodes", "list", str(target), "--json"], saved["env"])
    names = [n["name"] for n in json.loads(listed.stdout)["data"]["nodes"]]
    assert names == ["plain-node", "scripted"]
    again = restore(saved, target, "--dry-run", "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["data"]["changes"] == []


def test_dry_run_shows_the_diff_against_what_dir_holds(saved: dict, tmp_path: Path) -> None:
    make_node_repo(saved["repos"] / "later", requirements=["dry-lib"])
    added = run([cli_path(), "nodes", "add", str(saved["dir"]), str(saved["repos"] / "later"),
                 *saved["mirror"]], saved["env"])  # fmt: skip
    assert added.returncode == 0, added.stderr
    done = restore(saved, saved["dir"], "--dry-run", "--json")
    assert done.returncode == 0, done.stderr
    changes = {c["what"]: c for c in json.loads(done.stdout)["data"]["changes"]}
    assert changes["custom node later"]["kind"] == "remove"
    assert changes["dry-lib"] == {"what": "dry-lib", "kind": "remove", "now": "1.0",
                                  "snapshot": None}  # fmt: skip
    # Into an install it is a new generation (tests/integration/test_snapshot_generation.py);
    # into a folder that holds something else, nothing is written.
    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / "notes.txt").write_text("mine")
    refused = restore(saved, stray)
    assert refused.returncode == 2
    assert "holds no finished comfy-install install" in " ".join(refused.stderr.split())
    assert [p.name for p in stray.iterdir()] == ["notes.txt"]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"platform": "windows"}, "the snapshot was taken on windows, this machine runs linux"),
        (
            {"accelerators": [{"name": "xformers", "kind": "index", "version": "0.0.33.post2"}]},
            "xformers: skip here (no NVIDIA GPU",
        ),
    ],
)
def test_restore_refuses_a_machine_that_cannot_run_it(
    saved: dict, tmp_path: Path, change: dict, reason: str
) -> None:
    data = json.loads(saved["file"].read_text())
    data.update(change)
    file = tmp_path / "other.json"
    file.write_text(json.dumps(data))
    target = tmp_path / "target"
    done = run([cli_path(), "snapshot", "restore", str(file), str(target), "--gpu", "none",
                *saved["mirror"]], saved["env"])  # fmt: skip
    assert done.returncode == 3, done.stderr
    assert reason in " ".join(done.stderr.split())
    assert not (target / "venv").exists() and not (target / ".comfy-install").exists()
