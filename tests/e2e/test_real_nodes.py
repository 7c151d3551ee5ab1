"""`comfy-install nodes` on the real ComfyUI v0.33.0 (CPU): torch the same distribution after
`nodes add`, then `nodes missing` asking a ComfyUI it starts for this, whose `/object_info` lists
the node's class beside ComfyUI's own.

Works in a DIR of its own over the shared real install: its venv hard-linked (uv replaces files,
it never writes into them), its ComfyUI and state copied. The node's requirement is a tiny wheel
from a local folder; ComfyUI's own requirements resolve against the package registry (uv's cache).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from support.cli import cli_path, run, venv_dists
from support.node_repos import build_node_wheels, make_node_repo, node_class
from support.real import REAL_ENV

pytestmark = pytest.mark.real


def torch_identity(install: Path) -> str:
    """sha256 of torch's dist-info bytes and the inode, size and mtime of every file it lists."""
    (info,) = install.glob("venv/lib/python*/site-packages/torch-*.dist-info")
    digest = hashlib.sha256()
    for file in sorted(p for p in info.rglob("*") if p.is_file()):
        digest.update(file.name.encode() + file.read_bytes())
    for line in (info / "RECORD").read_text().splitlines():
        path = info.parent / line.rsplit(",", 2)[0]
        if path.exists():
            stat = path.stat()
            digest.update(f"{path}:{stat.st_ino}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def own_dir(real_install: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DIR of this module's own: the real install's venv hard-linked, ComfyUI and state copied."""
    target = tmp_path_factory.mktemp("real-nodes") / "inst"
    target.mkdir()
    subprocess.run(["cp", "-al", str(real_install / "venv"), str(target / "venv")], check=True)
    shutil.copytree(real_install / "ComfyUI", target / "ComfyUI", symlinks=True)
    shutil.copytree(real_install / ".comfy-install", target / ".comfy-install",
                    ignore=shutil.ignore_patterns("lock", "*.pid", "logs"))  # fmt: skip
    return target


def test_nodes_add_keeps_torch_and_a_started_comfyui_lists_the_node(
    own_dir: Path, tmp_path: Path
) -> None:
    """One ComfyUI start proves the node loads: `nodes missing` starts ComfyUI from DIR (the
    same `launch` in the background, then `stop`) and asks its `/object_info`.

    The added node's class and KSampler are listed there, the unknown class is not, and the
    frontend-only Reroute is never reported. A `launch` of this test's own after `nodes add`
    cost the suite a second ComfyUI start for the same `/object_info`; `launch --background`
    and `stop` on the real install are test_real_comfyui.py's.
    """
    wheels = tmp_path / "wheels"
    build_node_wheels(wheels)
    repo = tmp_path / "plain-node"
    commit = make_node_repo(repo, requirements=["plain-new", "requests"])
    before = torch_identity(own_dir)
    torch_version = venv_dists(own_dir)["torch"]
    done = run([cli_path(), "nodes", "add", str(own_dir), str(repo), "--find-links", str(wheels),
                "--json"], REAL_ENV, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads(done.stdout)["data"]
    assert data["commit"] == commit
    assert data["install"] == ["plain-new==1.3"]  # requests is ComfyUI's already
    assert torch_identity(own_dir) == before
    assert venv_dists(own_dir)["torch"] == torch_version
    assert venv_dists(own_dir)["plain-new"] == "1.3"

    workflow = {
        "nodes": [{"id": 1, "type": "KSampler"}, {"id": 2, "type": node_class("plain-node")},
                  {"id": 3, "type": "NoSuchNodeAnywhere"}, {"id": 4, "type": "Reroute"}],
        "links": [],
    }  # fmt: skip
    file = tmp_path / "workflow.json"
    file.write_text(json.dumps(workflow))
    done = run([cli_path(), "nodes", "missing", str(own_dir), str(file), "--json"], REAL_ENV,
               timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads(done.stdout)["data"]
    assert data["missing"] == ["NoSuchNodeAnywhere"]
    assert "started for this" in data["asked"]
    assert not (own_dir / ".comfy-install" / "comfyui.pid").exists()


def test_a_node_wanting_torch_2_1_is_refused_on_the_real_install(
    own_dir: Path, tmp_path: Path
) -> None:
    repo = tmp_path / "old-torch"
    make_node_repo(repo, requirements=["torch==2.1.0"])
    done = run([cli_path(), "nodes", "add", str(own_dir), str(repo)], REAL_ENV, timeout=600)
    assert done.returncode == 1
    torch = venv_dists(own_dir)["torch"]
    assert f"torch==2.1.0 conflicts with the held torch {torch}" in " ".join(done.stderr.split())
    assert not (own_dir / "ComfyUI" / "custom_nodes" / "old-torch").exists()
