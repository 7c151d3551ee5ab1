"""`comfy-install nodes` for real: real git node repositories, real uv, a real (fixture) install.

The install is the local fixture ComfyUI with the tiny torch trio, from a find-links folder
(offline); the nodes' requirements are tiny real wheels in a second folder. Each test looks at
the venv, custom_nodes/, nodes.json and the exit code and message.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

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


def uv_bin() -> str:
    """The uv of the test environment."""
    from installer.edges.environment import find_uv_binary

    return find_uv_binary() or "uv"


SITE = "venv/lib/python*/site-packages"


def torch_files_digest(install: Path) -> str:
    """sha256 over torch's dist-info files and every file its RECORD lists (bytes)."""
    (info,) = install.glob(f"{SITE}/torch-*.dist-info")
    digest = hashlib.sha256()
    for line in sorted((info / "RECORD").read_text().splitlines()):
        path = info.parent / line.rsplit(",", 2)[0]
        digest.update(line.encode() + (path.read_bytes() if path.is_file() else b"-"))
    return digest.hexdigest()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, fixtures: Fixtures) -> dict[str, Any]:
    """A finished fixture install, the node wheels, and the node repositories."""
    root = tmp_path_factory.mktemp("nodes")
    wheels = root / "node-wheels"
    build_node_wheels(wheels)
    repos = root / "repos"
    commits = {
        "plain-node": make_node_repo(repos / "plain-node", requirements=["plain-new"]),
        "pins-old": make_node_repo(repos / "pins-old", requirements=["shared-lib==1.0"]),
        "needs-new": make_node_repo(repos / "needs-new", requirements=["helper-lib"]),
        "old-torch": make_node_repo(repos / "old-torch", requirements=["torch==2.1.0"]),
        "scripted": make_node_repo(
            repos / "scripted", pyproject_deps=["only-mine", "shared-lib"], install_py=True
        ),
    }
    config = write_config(root / "deps.json", fixtures)
    target = root / "inst"
    env = installer_env(fixtures)
    args = install_args(target, config, "http://127.0.0.1:9/simple/")
    at = args.index("--index-url")
    args[at : at + 2] = ["--find-links", str(fixtures.links), "--offline"]
    done = run(args, env)
    assert done.returncode == 0, done.stderr[-3000:]
    mirror = ["--find-links", str(fixtures.links), "--find-links", str(wheels), "--offline"]
    return {"dir": target, "env": env, "repos": repos, "commits": commits, "mirror": mirror}


def nodes(world: dict[str, Any], *args: str) -> Any:
    """Run `comfy-install nodes ARGS...` against the world's install."""
    return run([cli_path(), "nodes", *args], world["env"])


def add(world: dict[str, Any], name: str, *extra: str) -> Any:
    """`comfy-install nodes add DIR REPO` with the local wheel folders."""
    repo = str(world["repos"] / name)
    return nodes(world, "add", str(world["dir"]), repo, *world["mirror"], *extra)


def record(world: dict[str, Any]) -> dict[str, Any]:
    """DIR/.comfy-install/nodes.json."""
    path: Path = world["dir"] / ".comfy-install" / "nodes.json"
    return json.loads(path.read_text()) if path.exists() else {}


def ensure_added(world: dict[str, Any], name: str) -> None:
    """Add node ``name`` unless an earlier test did: each test can run alone (``-k``)."""
    if name not in {node["name"] for node in record(world).get("nodes", [])}:
        done = add(world, name)
        assert done.returncode == 0, done.stderr


def test_add_installs_the_new_requirement_pins_the_commit_and_keeps_torch(world: dict) -> None:
    before = torch_files_digest(world["dir"])
    done = add(world, "plain-node", "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)["data"]
    assert data["commit"] == world["commits"]["plain-node"]
    assert data["install"] == ["plain-new==1.3"]
    assert venv_dists(world["dir"])["plain-new"] == "1.3"
    node = world["dir"] / "ComfyUI" / "custom_nodes" / "plain-node"
    assert (node / "__init__.py").is_file()
    assert torch_files_digest(world["dir"]) == before
    (entry,) = [n for n in record(world)["nodes"] if n["name"] == "plain-node"]
    assert entry["commit"] == world["commits"]["plain-node"]
    assert entry["url"] == str(world["repos"] / "plain-node")
    assert entry["installed_packages"] == ["plain-new"]
    listed = json.loads(nodes(world, "list", str(world["dir"]), "--json").stdout)["data"]
    assert {"name": "plain-node", "origin": "added"}.items() <= listed["nodes"][0].items()


def test_a_node_pinning_what_another_needs_changes_nothing_and_says_who(world: dict) -> None:
    ensure_added(world, "pins-old")
    dists, saved = venv_dists(world["dir"]), record(world)
    done = add(world, "needs-new")
    assert done.returncode == 1, done.stderr
    message = " ".join(done.stderr.split())
    assert "custom node needs-new cannot be installed: its requirement helper-lib" in message
    assert "shared-lib==1.0 (required by custom node pins-old)" in message
    assert "--skip-requirement helper-lib" in message and "--no-deps" in message
    assert not (world["dir"] / "ComfyUI" / "custom_nodes" / "needs-new").exists()
    assert venv_dists(world["dir"]) == dists
    assert record(world) == saved


def test_a_node_asking_for_another_torch_is_a_conflict_never_an_install(world: dict) -> None:
    before = torch_files_digest(world["dir"])
    done = add(world, "old-torch")
    assert done.returncode == 1
    message = " ".join(done.stderr.split())
    assert "its requirement torch==2.1.0 conflicts with the held torch 2.9.1+cu128" in message
    assert not (world["dir"] / "ComfyUI" / "custom_nodes" / "old-torch").exists()
    skipped = add(world, "old-torch", "--skip-requirement", "torch")
    assert skipped.returncode == 0, skipped.stderr
    assert venv_dists(world["dir"])["torch"] == "2.9.1+cu128"
    assert torch_files_digest(world["dir"]) == before
    (entry,) = [n for n in record(world)["nodes"] if n["name"] == "old-torch"]
    assert entry["skipped_requirements"] == ["torch==2.1.0"]


def test_install_py_runs_only_when_allowed_and_remove_takes_only_its_packages(
    world: dict,
) -> None:
    ensure_added(world, "pins-old")  # shared-lib 1.0 comes with it, not with scripted
    node = world["dir"] / "ComfyUI" / "custom_nodes" / "scripted"
    done = add(world, "scripted", "-q")
    assert done.returncode == 0, done.stderr
    # --quiet: the skipped script is still said, what was installed is not
    assert done.stdout.startswith("scripted: ") and "install.py will not run" in done.stdout
    assert "added" not in done.stdout and "torch unchanged" not in done.stdout
    assert not (node / "install-ran.txt").exists()
    assert {"only-mine", "only-dep"} <= set(venv_dists(world["dir"]))
    # shared-lib came with pins-old: the pyproject dependency does not make it scripted's.
    removed = nodes(world, "remove", str(world["dir"]), "scripted", "--json")
    assert removed.returncode == 0, removed.stderr
    data = json.loads(removed.stdout)["data"]
    assert data["removed_packages"] == ["only-dep", "only-mine"]
    dists = venv_dists(world["dir"])
    assert "only-mine" not in dists and "only-dep" not in dists
    assert dists["shared-lib"] == "1.0"
    aside = Path(data["moved_to"])
    assert (aside / "install.py").is_file() and not node.exists()
    again = add(world, "scripted", "--allow-install-script")
    assert again.returncode == 0, again.stderr
    assert (node / "install-ran.txt").read_text() == "yes"
    (entry,) = [n for n in record(world)["nodes"] if n["name"] == "scripted"]
    assert entry["install_script"] == "ran"


def test_dry_run_changes_nothing(world: dict) -> None:
    ensure_added(world, "plain-node")  # plain-new is in the venv: only dry-lib is new
    before = venv_dists(world["dir"])
    repos: Path = world["repos"]
    make_node_repo(repos / "dry", requirements=["plain-new", "dry-lib"])
    done = add(world, "dry", "--dry-run", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["data"]["install"] == ["dry-lib==1.0"]
    assert venv_dists(world["dir"]) == before
    assert not (world["dir"] / "ComfyUI" / "custom_nodes" / "dry").exists()


def test_a_node_needing_a_newer_package_than_the_venv_has_is_resolved_with_all(
    world: dict,
) -> None:
    python = str(world["dir"] / "venv" / "bin" / "python")
    by_hand = run([uv_bin(), "pip", "install", "--python", python, "loose-lib==1.0",
                   *world["mirror"]], world["env"])  # fmt: skip
    assert by_hand.returncode == 0, by_hand.stderr
    make_node_repo(world["repos"] / "upgrader", requirements=["loose-lib>=2"])
    done = add(world, "upgrader", "--json")
    assert done.returncode == 0, done.stderr
    assert "resolving all" in done.stderr
    assert json.loads(done.stdout)["data"]["install"] == ["loose-lib==2.0"]
    assert venv_dists(world["dir"])["loose-lib"] == "2.0"
    assert "loose-lib==2.0" in record(world)["resolution"]


def test_step_9_reads_pyproject_dependencies_too(
    tmp_path: Path, fixtures: Fixtures, world: dict
) -> None:
    commit = make_node_repo(tmp_path / "cfg-node", pyproject_deps=["plain-new==1.2"])
    node = {"name": "cfg-node", "url": str(tmp_path / "cfg-node"), "commit": commit}
    config = write_config(tmp_path / "deps.json", fixtures, custom_nodes=[node])
    args = install_args(tmp_path / "inst", config, "http://127.0.0.1:9/simple/")
    at = args.index("--index-url")
    args[at : at + 2] = world["mirror"]
    done = run(args, world["env"])
    assert done.returncode == 0, done.stderr[-3000:]
    assert venv_dists(tmp_path / "inst")["plain-new"] == "1.2"
    state = read_state(tmp_path / "inst")
    assert state["steps"]["custom_nodes"]["outputs"]["nodes"] == {"cfg-node": commit}


def test_step_9_installs_every_nodes_requirements_together(
    tmp_path: Path, fixtures: Fixtures, world: dict
) -> None:
    """Two configured nodes that pin one package differently: installed one by one, the second
    would silently move the first's package; installed in one uv call, the step fails naming
    both pins, before either is installed. Compatible nodes share the one call."""
    one = make_node_repo(tmp_path / "needs-13", requirements=["plain-new==1.3"])
    two = make_node_repo(tmp_path / "needs-12", requirements=["plain-new==1.2"])
    three = make_node_repo(tmp_path / "needs-any", requirements=["plain-new", "dry-lib"])
    nodes = [{"name": "needs-13", "url": str(tmp_path / "needs-13"), "commit": one},
             {"name": "needs-12", "url": str(tmp_path / "needs-12"), "commit": two}]  # fmt: skip
    config = write_config(tmp_path / "deps.json", fixtures, custom_nodes=nodes)
    args = install_args(tmp_path / "inst", config, "http://127.0.0.1:9/simple/")
    at = args.index("--index-url")
    args[at : at + 2] = world["mirror"]
    done = run(args, world["env"])
    assert done.returncode != 0, done.stderr[-3000:]
    said = " ".join(done.stderr.split())
    assert (
        "The custom nodes needs-13, needs-12 ask for requirements no one venv can hold "
        "together: needs-13 needs plain-new==1.3; needs-12 needs plain-new==1.2"
    ) in said, said[-3000:]
    assert "Nothing of theirs was installed." in said, said[-3000:]
    assert '"requirements": false' in said and "comfy-install nodes remove DIR NAME" in said
    assert "plain-new" not in venv_dists(tmp_path / "inst")

    nodes[1] = {"name": "needs-any", "url": str(tmp_path / "needs-any"), "commit": three}
    write_config(tmp_path / "deps.json", fixtures, custom_nodes=nodes)
    again = run(args, world["env"])
    assert again.returncode == 0, again.stderr[-3000:]
    dists = venv_dists(tmp_path / "inst")
    assert (dists["plain-new"], dists["dry-lib"]) == ("1.3", "1.0")


def test_a_configured_node_taken_out_by_remove_stays_out_until_added_again(
    tmp_path: Path, fixtures: Fixtures
) -> None:
    wheels = tmp_path / "node-wheels"
    build_node_wheels(wheels)
    repo = tmp_path / "cfg-node"
    commit = make_node_repo(repo, requirements=["plain-new"])
    node = {"name": "cfg-node", "url": str(repo), "commit": commit}
    config = write_config(tmp_path / "deps.json", fixtures, custom_nodes=[node])
    target = tmp_path / "inst"
    env = installer_env(fixtures)
    args = install_args(target, config, "http://127.0.0.1:9/simple/")
    at = args.index("--index-url")
    mirror = ["--find-links", str(fixtures.links), "--find-links", str(wheels), "--offline"]
    args[at : at + 2] = mirror
    assert (done := run(args, env)).returncode == 0, done.stderr[-3000:]
    folder = target / "ComfyUI" / "custom_nodes" / "cfg-node"
    assert (folder / "__init__.py").is_file()

    removed = run([cli_path(), "nodes", "remove", str(target), "cfg-node"], env)
    assert removed.returncode == 0, removed.stderr
    assert not folder.exists()
    again = run([*args, "--force", "custom_nodes"], env)  # step 9 runs again for sure
    assert again.returncode == 0, again.stderr[-3000:]
    assert not folder.exists()  # dependencies.json still lists it; the removal wins
    said = " ".join(again.stderr.split())
    assert "cfg-node: not installed again, `comfy-install nodes remove` took it out" in said

    back = run([cli_path(), "nodes", "add", str(target), str(repo), *mirror], env)
    assert back.returncode == 0, back.stderr
    plan = run([*args, "--dry-run", "--json"], env)
    assert plan.returncode == 0, plan.stderr
    planned = json.loads(plan.stdout)["data"]
    assert [n["name"] for n in planned["custom_nodes"]] == ["cfg-node"]
    assert planned["removed_custom_nodes"] == []
    assert (done := run(args, env)).returncode == 0, done.stderr[-3000:]
    assert (folder / "__init__.py").is_file()

    # Removed again within the same second as an earlier removal: kept beside it, not onto it.
    import datetime as dt

    now = dt.datetime.now()
    taken = [
        target / "removed-nodes" / f"cfg-node-{(now + dt.timedelta(seconds=s)):%Y%m%d-%H%M%S}"
        for s in range(3)
    ]
    for earlier in taken:
        earlier.mkdir(parents=True, exist_ok=True)
        (earlier / "mine.txt").write_text("kept")
    twice = run([cli_path(), "nodes", "remove", str(target), "cfg-node", "--json"], env)
    assert twice.returncode == 0, twice.stderr
    moved = Path(json.loads(twice.stdout)["data"]["moved_to"])
    assert moved.name.endswith("-2") and (moved / "__init__.py").is_file()
    assert all((earlier / "mine.txt").read_text() == "kept" for earlier in taken)


def test_torchs_fingerprint_changes_with_any_file_replaced_grown_or_removed(
    tmp_path: Path,
) -> None:
    """The proof `nodes add` gives: dist-info bytes, and size, mtime and inode of each file."""
    import os

    from installer.nodes.install import distribution_digest

    site = tmp_path / "venv" / "lib" / "python3.12" / "site-packages"
    info = site / "torch-2.9.1.dist-info"
    (site / "torch" / "lib").mkdir(parents=True)
    info.mkdir()
    files = {"torch/__init__.py": b"import os\n", "torch/lib/libtorch.so": b"\x7fELF" * 64}
    for name, data in files.items():
        (site / name).write_bytes(data)
    record = "".join(f"{name},sha256=x,{len(data)}\n" for name, data in files.items())
    (info / "RECORD").write_text(record + "torch-2.9.1.dist-info/RECORD,,\n")
    (info / "METADATA").write_text("Name: torch\nVersion: 2.9.1\n")
    venv = tmp_path / "venv"
    first = distribution_digest(venv, "linux", "torch")
    assert first is not None and first == distribution_digest(venv, "linux", "torch")

    library = site / "torch/lib/libtorch.so"
    stat = library.stat()
    replacement = library.with_name("new.so")
    replacement.write_bytes(b"\x7fELX" * 64)  # same size, other bytes
    os.utime(replacement, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # and the same mtime
    replacement.replace(library)  # as an installer writes a file: a new inode
    assert distribution_digest(venv, "linux", "torch") != first

    second = distribution_digest(venv, "linux", "torch")
    with (site / "torch/__init__.py").open("ab") as handle:
        handle.write(b"# grown\n")
    assert distribution_digest(venv, "linux", "torch") != second

    third = distribution_digest(venv, "linux", "torch")
    (site / "torch/__init__.py").unlink()
    assert distribution_digest(venv, "linux", "torch") != third
    assert distribution_digest(venv, "linux", "torchvision") is None


def test_a_node_at_head_is_cloned_with_two_git_processes_and_detached_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HEAD is read from the clone's files (packed or loose), not asked of `git rev-parse`."""
    import installer.edges.git as git_edge
    from installer.core.log import InstallerLogger

    repo = tmp_path / "node"
    make_node_repo(repo, requirements=["plain-new"])
    (repo / "more.py").write_text("x = 1\n")
    for args in (["add", "-A"], ["commit", "-q", "-m", "more"], ["pack-refs", "--all"]):
        git(*args, cwd=repo)  # a fixed identity: CI's fresh machine has none configured
    latest = git("rev-parse", "HEAD", cwd=repo).strip()
    started: list[list[str]] = []
    real = git_edge.run_command

    def recording(argv: list[Any], **kwargs: Any) -> Any:
        started.append([str(a) for a in argv])
        return real(argv, **kwargs)

    monkeypatch.setattr(git_edge, "run_command", recording)
    dest = tmp_path / "clone"
    assert git_edge.checkout_pinned(dest, str(repo), "HEAD", InstallerLogger()) == latest
    assert len(started) == 2, started
    assert "clone" in started[0] and "checkout" in started[1], started
    assert (dest / ".git" / "HEAD").read_text().strip() == latest  # detached at it
    assert (dest / "more.py").is_file()
