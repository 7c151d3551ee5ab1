"""`comfy-install snapshot restore FILE DIR` into an existing install: a new generation.

Install A (the fixture ComfyUI v2, two nodes added) is saved to a snapshot; install B (the
fixture tagged `no-torchaudio`, a user's files in `DIR/ComfyUI`) gets it restored as
generation 2: its checkout at A's commit, its venv exactly A's, the user's files untouched,
and `rollback` back to B's generation 1. Real uv, real git, the tiny wheels, offline.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from support.cli import (
    Fixtures,
    cli,
    install_args,
    installer_env,
    run,
    venv_dists,
    write_config,
)
from support.comfy_repo import NO_TORCHAUDIO, git
from support.node_repos import build_node_wheels, make_node_repo
from support.user_data import add_user_data, user_hashes


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, fixtures: Fixtures) -> dict[str, Any]:
    """A's snapshot (v2; plain-node at its second commit, dry-node) and B (no-torchaudio)."""
    root = tmp_path_factory.mktemp("restore-generation")
    wheels = root / "node-wheels"
    build_node_wheels(wheels)
    repos = root / "repos"
    first = make_node_repo(repos / "plain-node", requirements=["plain-new"])
    (repos / "plain-node" / "README.md").write_text("second commit\n")
    git("add", "-A", cwd=repos / "plain-node")
    git("commit", "-q", "-m", "second", cwd=repos / "plain-node")
    second = git("rev-parse", "HEAD", cwd=repos / "plain-node")
    make_node_repo(repos / "dry-node", requirements=["dry-lib"])
    env = installer_env(fixtures)
    mirror = ["--find-links", str(fixtures.links), "--find-links", str(wheels), "--offline"]

    def install(target: Path, config: Path) -> None:
        args = install_args(target, config, "http://127.0.0.1:9/simple/")
        at = args.index("--index-url")
        args[at : at + 2] = mirror
        done = run(args, env, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]

    a = root / "a"
    install(a, write_config(root / "deps-a.json", fixtures))
    for name in ("plain-node", "dry-node"):
        done = run(cli("nodes", "add", a, repos / name, *mirror), env)
        assert done.returncode == 0, done.stderr
    file = root / "snap.json"
    done = run(cli("snapshot", "save", a, file, "--config", root / "deps-a.json", *mirror), env)
    assert done.returncode == 0, done.stderr
    b = root / "b"
    install(b, write_config(root / "deps-b.json", fixtures, comfyui_ref=NO_TORCHAUDIO))
    add_user_data(b / "ComfyUI")
    return {"a": a, "b": b, "file": file, "env": env, "mirror": mirror, "repos": repos,
            "first": first, "second": second, "commits": fixtures.commits}  # fmt: skip


def restore(world: dict[str, Any], target: Path, *extra: str) -> Any:
    args = cli("snapshot", "restore", world["file"], target, "--gpu", "none", *world["mirror"])
    return run([*args, *extra], world["env"], timeout=300)


def unchanged(before: dict[str, str], after: dict[str, str]) -> bool:
    """Every file of the user's that was there is still there, byte for byte."""
    return all(after.get(path) == digest for path, digest in before.items())


@pytest.fixture
def b(world: dict[str, Any], tmp_path: Path) -> Path:
    target = tmp_path / "b"
    shutil.copytree(world["b"], target, symlinks=True)
    return target


def test_restore_into_an_install_builds_a_generation_that_rollback_undoes(
    world: dict[str, Any], b: Path
) -> None:
    before = user_hashes(b / "ComfyUI")
    first_venv = venv_dists(b)
    preview = restore(world, b, "--dry-run", "--json")
    assert preview.returncode == 0, preview.stderr
    changes = {c["what"]: c for c in json.loads(preview.stdout)["data"]["changes"]}
    assert changes["ComfyUI"]["now"] == world["commits"][NO_TORCHAUDIO]
    assert changes["ComfyUI"]["snapshot"] == world["commits"]["v2"]
    assert changes["plain-new"]["kind"] == "add"
    assert not (b / ".comfy-install" / "generations").exists(), "a dry run built nothing"

    done = restore(world, b, "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads(done.stdout)["data"]
    assert data["switched"] and data["generation"] == 2 and data["previous_generation"] == 1
    assert sorted(data["nodes"]["added"]) == ["dry-node", "plain-node"]
    assert data["nodes"]["extra"] == ["my-node"]
    assert (b / ".comfy-install" / "current-generation").read_text().strip() == "2"
    second = b / ".comfy-install" / "generations" / "2"
    assert git("rev-parse", "HEAD", cwd=second / "ComfyUI") == world["commits"]["v2"]
    assert venv_dists(second) == venv_dists(world["a"])
    assert venv_dists(b) == first_venv, "generation 1's venv was changed"
    assert git("rev-parse", "HEAD", cwd=b / "ComfyUI") == world["commits"][NO_TORCHAUDIO]
    after = user_hashes(b / "ComfyUI")
    assert unchanged(before, after)
    # The nodes go where launch (and the generation's verify) loads them: DIR/ComfyUI's.
    assert not (second / "ComfyUI" / "custom_nodes" / "plain-node").exists()
    nodes = b / "ComfyUI" / "custom_nodes"
    assert git("rev-parse", "HEAD", cwd=nodes / "plain-node") == world["second"]
    assert (nodes / "dry-node" / "requirements.txt").is_file()
    status = json.loads(run(cli("status", b, "--json"), world["env"]).stdout)["data"]
    assert status["summary"]["comfyui_commit"] == world["commits"]["v2"]

    again = restore(world, b, "--json")
    assert again.returncode == 0, again.stderr[-2000:]
    assert not json.loads(again.stdout)["data"]["switched"]
    assert "already holds the snapshot" in again.stderr

    back = run(cli("rollback", b, "--json"), world["env"])
    assert back.returncode == 0, back.stderr
    assert json.loads(back.stdout)["data"]["to_generation"] == 1
    assert (b / ".comfy-install" / "current-generation").read_text().strip() == "1"
    assert venv_dists(b) == first_venv
    assert unchanged(before, user_hashes(b / "ComfyUI"))


def test_node_folders_at_other_commits_are_never_rewritten(world: dict[str, Any], b: Path) -> None:
    node = b / "ComfyUI" / "custom_nodes" / "plain-node"
    git("clone", "-q", str(world["repos"] / "plain-node"), str(node), cwd=b)
    git("checkout", "-q", world["first"], cwd=node)
    before = user_hashes(b / "ComfyUI")

    for extra in (("--dry-run",), ()):  # the dry run says what the restore would refuse
        refused = restore(world, b, *extra)
        assert refused.returncode == 2, refused.stderr
        text = " ".join(refused.stderr.split())
        assert "plain-node" in text and world["first"][:12] in text and "--keep-nodes" in text
    assert not (b / ".comfy-install" / "generations").exists()
    assert not (b / ".comfy-install" / "current-generation").exists()

    done = restore(world, b, "--keep-nodes", "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    assert " ".join(done.stderr.split()).count("used as it is (--keep-nodes)") == 1, done.stderr
    data = json.loads(done.stdout)["data"]
    assert [n["name"] for n in data["nodes"]["differing"]] == ["plain-node"]
    assert data["nodes"]["added"] == ["dry-node"]
    assert git("rev-parse", "HEAD", cwd=node) == world["first"], "the user's folder was moved"
    assert unchanged(before, user_hashes(b / "ComfyUI"))
    assert (b / ".comfy-install" / "current-generation").read_text().strip() == "2"
    assert git("rev-parse", "HEAD", cwd=b / "ComfyUI" / "custom_nodes" / "dry-node") == git(
        "rev-parse", "HEAD", cwd=world["repos"] / "dry-node"
    )


def test_a_restore_that_fails_its_build_leaves_the_current_generation_as_it_was(
    world: dict[str, Any], b: Path, tmp_path: Path
) -> None:
    data = json.loads(world["file"].read_text())
    head, sep, rest = data["lock"].partition("plain-new==1.3 \\\n    --hash=sha256:")
    assert sep, "the lock pins plain-new with its hash"
    data["lock"] = head + sep + "0" * 64 + rest[64:]  # a hash no wheel has
    file = tmp_path / "tampered.json"
    file.write_text(json.dumps(data))
    before = user_hashes(b / "ComfyUI")
    first_venv = venv_dists(b)
    done = run(cli("snapshot", "restore", file, b, "--gpu", "none", *world["mirror"]),
               world["env"], timeout=300)  # fmt: skip
    assert done.returncode not in (0, 2), done.stderr[-2000:]
    assert "Generation 1 is still current and was not changed" in " ".join(done.stderr.split())
    named = re.search(r"\(log: (\S+)\)", done.stderr)
    assert named and Path(named[1]).is_file(), done.stderr[-2000:]
    assert done.stderr.count(named[1]) == 1, "the log file is named once, in the message"
    assert not (b / ".comfy-install" / "current-generation").exists()
    assert venv_dists(b) == first_venv
    assert user_hashes(b / "ComfyUI") == before, "a node folder was added before the build"
    status = json.loads(run(cli("status", b, "--json"), world["env"]).stdout)["data"]
    assert {g["id"]: g["status"] for g in status["generations"]}[2] == "failed"


def test_a_restore_switches_back_only_to_a_generation_that_holds_its_lock(
    world: dict[str, Any], b: Path, tmp_path: Path
) -> None:
    state = b / ".comfy-install"
    done = restore(world, b)
    assert done.returncode == 0, done.stderr[-3000:]
    assert run(cli("rollback", b), world["env"]).returncode == 0

    # The same snapshot again: generation 2 holds it, so the restore is a switch back.
    again = restore(world, b, "--json")
    assert again.returncode == 0, again.stderr[-3000:]
    data = json.loads(again.stdout)["data"]
    assert data["reused"] and data["generation"] == 2, again.stderr[-3000:]
    assert "generation 2 is already built and verified" in again.stderr
    assert not (state / "generations" / "3").exists(), "the staged files were left behind"
    assert run(cli("rollback", b), world["env"]).returncode == 0

    # Another lock for the same ComfyUI commit: generation 2's venv does not hold it.
    snapshot = json.loads(world["file"].read_text())
    wheel = next(Path(world["mirror"][3]).glob("plain_new-1.2-*.whl"))
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    lock, count = re.subn(
        r"plain-new==1\.3 \\\n    --hash=sha256:[0-9a-f]{64}",
        f"plain-new==1.2 \\\\\n    --hash=sha256:{digest}",
        snapshot["lock"],
    )
    assert count == 1, "the lock pins plain-new with its hash"
    other = tmp_path / "other.json"
    other.write_text(json.dumps({**snapshot, "lock": lock}))
    args = cli("snapshot", "restore", other, b, "--gpu", "none", *world["mirror"], "--json")
    done = run(args, world["env"], timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads(done.stdout)["data"]
    assert not data["reused"] and data["generation"] == 3, done.stderr[-3000:]
    said = " ".join(done.stderr.split())
    assert "generation 2 is not reused" in said
    assert "its .comfy-install/snapshot/locks is missing or not the same as this build's" in said
    assert venv_dists(state / "generations" / "3")["plain-new"] == "1.2"
    assert venv_dists(state / "generations" / "2")["plain-new"] == "1.3", "generation 2 changed"


def test_a_node_folder_with_local_changes_stops_the_restore_before_anything_changes(
    world: dict[str, Any], b: Path
) -> None:
    node = b / "ComfyUI" / "custom_nodes" / "plain-node"
    git("clone", "-q", str(world["repos"] / "plain-node"), str(node), cwd=b)
    git("checkout", "-q", world["second"], cwd=node)  # the snapshot's commit, but edited
    (node / "__init__.py").write_text("# my edit\n")
    before = user_hashes(b / "ComfyUI")

    for extra in (("--dry-run",), ()):  # the dry run says what the restore would refuse
        refused = restore(world, b, *extra)
        assert refused.returncode == 2, refused.stderr[-3000:]
        said = " ".join(refused.stderr.split())
        assert f"custom node plain-node in {node} has local changes (__init__.py)" in said
        assert f"the snapshot pins {world['second'][:12]}" in said
        assert "Nothing was changed." in said and "--keep-nodes" in said
        assert f"git -C {node} stash" in said
        assert not (b / ".comfy-install" / "generations").exists(), "a generation was started"
        assert not (b / ".comfy-install" / "generations.json").exists()
        assert not (b / ".comfy-install" / "current-generation").exists()
        assert (node / "__init__.py").read_text() == "# my edit\n"
        assert unchanged(before, user_hashes(b / "ComfyUI"))

    kept = restore(world, b, "--keep-nodes", "--json")
    assert kept.returncode == 0, kept.stderr[-3000:]
    said = " ".join(kept.stderr.split())
    assert said.count("has local changes (__init__.py)") == 1, "the warning is said once"
    assert said.count("used as it is (--keep-nodes)") == 1, kept.stderr[-3000:]
    assert f"plain-node at {world['second'][:12]}, as it is (--keep-nodes)" in said  # step 9
    assert [n["name"] for n in json.loads(kept.stdout)["data"]["nodes"]["differing"]] == [
        "plain-node"
    ]
    assert (b / ".comfy-install" / "current-generation").read_text().strip() == "2"
    assert (node / "__init__.py").read_text() == "# my edit\n"
