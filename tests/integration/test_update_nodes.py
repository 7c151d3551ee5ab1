"""Custom nodes across generations: `update` keeps every node where `launch` loads it.

A later generation is launched with `--base-directory DIR/ComfyUI`, so ComfyUI loads nodes only
from `DIR/ComfyUI/custom_nodes`. A real install of the fixture ComfyUI v2 (real uv, real git, the
tiny wheels) is updated to the fixture tagged `no-torchaudio` with a dependencies.json that
configures a node (a real git repository whose requirement is a tiny wheel): the node must end
in DIR/ComfyUI/custom_nodes at its pin, with its requirement in the new generation's venv; a
folder already at the pin is used as it is; one at another commit stops the update before
anything changes. A node added with `nodes add` (recorded in DIR's nodes.json, its requirement
only in the old venv) gets its requirement in the new generation's venv too, and one whose
requirement the new ComfyUI excludes stops the update before anything changes. An install
restored from a snapshot keeps the snapshot's nodes when an update moves it to the shipped pins
(a comfy-install copy whose shipped dependencies.json is the fixtures').
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from support.cli import (
    REPO_ROOT,
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

NODE = "cfg-node"


@pytest.fixture(scope="module")
def world(fixtures: Fixtures, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A finished install of the fixture v2 without nodes, and a node repo with two commits."""
    from support.http_server import LocalHTTPServer
    from support.package_index import serve_index

    root = tmp_path_factory.mktemp("update-nodes")
    wheels = root / "node-wheels"
    build_node_wheels(wheels)
    repo = root / "repos" / NODE
    first = make_node_repo(repo, requirements=["plain-new"])
    (repo / "README.md").write_text("second commit\n")
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "second", cwd=repo)
    second = git("rev-parse", "HEAD", cwd=repo)
    env = installer_env(fixtures)
    target = root / "template"
    with LocalHTTPServer() as server:
        url = serve_index(server, sorted(fixtures.links.glob("*.whl")))
        done = run(install_args(target, write_config(root / "plain.json", fixtures), url), env)
    assert done.returncode == 0, done.stderr
    add_user_data(target / "ComfyUI")
    return {"template": target, "root": root, "env": env, "wheels": wheels, "repo": repo,
            "first": first, "second": second, "fixtures": fixtures}  # fmt: skip


@pytest.fixture
def install(world: dict[str, Any], tmp_path: Path) -> Path:
    target = tmp_path / "inst"
    shutil.copytree(world["template"], target, symlinks=True)
    return target


def configured(world: dict[str, Any], tmp_path: Path, commit: str) -> Path:
    """A dependencies.json that configures the node at ``commit``."""
    node = {"name": NODE, "url": str(world["repo"]), "commit": commit, "requirements": True}
    return write_config(tmp_path / "nodes.json", world["fixtures"], custom_nodes=[node])


def update(
    world: dict[str, Any], install: Path, config: Path, url: str, *extra: str, **env: str
) -> Any:
    args = cli("update", install, "--config", config, "--comfyui-ref", NO_TORCHAUDIO,
               "--index-url", url, "--find-links", world["wheels"], "--gpu", "none")  # fmt: skip
    return run([*args, *extra], dict(world["env"], **env), timeout=300)


def head(folder: Path) -> str:
    return git("rev-parse", "HEAD", cwd=folder)


def clone_shared(world: dict[str, Any], install: Path, commit: str) -> Path:
    """The user's own clone of the node in DIR/ComfyUI/custom_nodes, checked out at COMMIT."""
    shared = install / "ComfyUI" / "custom_nodes" / NODE
    git("clone", "-q", str(world["repo"]), str(shared), cwd=install)
    git("checkout", "-q", commit, cwd=shared)
    return shared


def test_an_update_clones_a_new_configured_node_where_launch_loads_it(
    world: dict[str, Any], install: Path, index_server: tuple[Any, str], tmp_path: Path
) -> None:
    config = configured(world, tmp_path, world["second"])
    shared = install / "ComfyUI" / "custom_nodes" / NODE
    first_venv = venv_dists(install)

    preview = update(world, install, config, index_server[1], "--dry-run", "--json")
    assert preview.returncode == 0, preview.stderr
    nodes = {c["name"]: c for c in json.loads(preview.stdout)["data"]["custom_nodes"]}
    assert nodes[NODE]["old"] is None and nodes[NODE]["new"] == world["second"]
    assert str(shared) in nodes[NODE]["note"]
    assert not shared.exists(), "a dry run cloned the node"

    echo = tmp_path / "echo.json"
    done = update(world, install, config, index_server[1], COMFY_FIXTURE_ECHO=str(echo))
    assert done.returncode == 0, done.stderr[-3000:]
    second = install / ".comfy-install" / "generations" / "2"
    assert (install / ".comfy-install" / "current-generation").read_text().strip() == "2"
    assert head(shared) == world["second"]
    assert not (second / "ComfyUI" / "custom_nodes" / NODE).exists()
    assert venv_dists(second)["plain-new"] == "1.3"
    assert venv_dists(install) == first_venv, "generation 1's venv was changed"
    # The start-up test (the last main.py run of verify) loaded the shared nodes folder.
    argv = json.loads(echo.read_text())["argv"]
    assert "--quick-test-for-ci" in argv
    paths = Path(argv[argv.index("--extra-model-paths-config") + 1])
    assert str(install / "ComfyUI" / "custom_nodes") in paths.read_text()
    assert paths.is_relative_to(second)

    launched = run(cli("launch", install, "--print-env", "--port", "8199"), world["env"])
    assert launched.returncode == 0, launched.stderr
    assert f"--base-directory {install / 'ComfyUI'}" in launched.stdout.splitlines()[-1]

    # The same update again finds the node at its pin where launch loads it: nothing to build.
    again = update(world, install, config, index_server[1])
    assert again.returncode == 0, again.stderr[-3000:]
    assert "nothing to do" in again.stderr
    assert not (install / ".comfy-install" / "generations" / "3").exists()

    # Step 9 itself never moves a shared folder either (a re-run of install on generation 2).
    git("checkout", "-q", world["first"], cwd=shared)
    rerun = run(cli("install", install, "--force", "custom_nodes"), world["env"], timeout=300)
    assert rerun.returncode == 2, rerun.stderr[-3000:]
    said = " ".join(rerun.stderr.split())
    assert f"custom node {NODE} is at {world['first'][:12]} in {shared}" in said
    assert "No node folder was changed." in said
    assert head(shared) == world["first"]


def test_a_node_already_at_the_pin_is_used_as_it_is(
    world: dict[str, Any], install: Path, index_server: tuple[Any, str], tmp_path: Path
) -> None:
    shared = clone_shared(world, install, world["second"])
    marker = shared / "my-notes.txt"  # untracked: the user's, not a local change
    marker.write_text("mine\n")
    before = {p: os.stat(p) for p in (shared, marker, shared / "__init__.py")}
    config = configured(world, tmp_path, world["second"])

    done = update(world, install, config, index_server[1])
    assert done.returncode == 0, done.stderr[-3000:]
    second = install / ".comfy-install" / "generations" / "2"
    assert head(shared) == world["second"]
    for path, stat in before.items():
        now = os.stat(path)
        assert (now.st_ino, now.st_mtime_ns) == (stat.st_ino, stat.st_mtime_ns), path
    assert marker.read_text() == "mine\n"
    assert venv_dists(second)["plain-new"] == "1.3", "the new venv lacks the node's requirement"
    assert not (second / "ComfyUI" / "custom_nodes" / NODE).exists()


def test_a_node_at_another_commit_stops_the_update_before_anything_changes(
    world: dict[str, Any], install: Path, index_server: tuple[Any, str], tmp_path: Path
) -> None:
    shared = clone_shared(world, install, world["first"])
    before = user_hashes(install / "ComfyUI")
    first_venv = venv_dists(install)
    config = configured(world, tmp_path, world["second"])

    for extra in (("--dry-run",), ()):
        refused = update(world, install, config, index_server[1], *extra)
        assert refused.returncode == 2, refused.stderr[-3000:]
        said = " ".join(refused.stderr.split())
        assert f"custom node {NODE} is at {world['first'][:12]} in {shared}" in said
        assert f"this update pins {world['second'][:12]}" in said
        assert "Nothing was changed." in said
        assert f"git -C {shared} checkout {world['second']}" in said
        assert f"pin {world['first']} for {NODE} in dependencies.json" in said
        assert head(shared) == world["first"], "the user's node folder was moved"
        assert user_hashes(install / "ComfyUI") == before
        assert not (install / ".comfy-install" / "current-generation").exists()
        assert not (install / ".comfy-install" / "generations").exists(), "a generation was built"
        assert venv_dists(install) == first_venv

    # Local changes at the pinned commit are refused too: the build would claim the pin.
    git("checkout", "-q", world["second"], cwd=shared)
    (shared / "__init__.py").write_text("# edited\n")
    refused = update(world, install, config, index_server[1])
    assert refused.returncode == 2, refused.stderr[-3000:]
    said = " ".join(refused.stderr.split())
    assert f"custom node {NODE} in {shared} has local changes (__init__.py)" in said
    assert f"git -C {shared} stash" in said
    assert (shared / "__init__.py").read_text() == "# edited\n"
    assert not (install / ".comfy-install" / "generations").exists()


def test_a_built_generation_without_the_configured_node_is_not_switched_back_to(
    world: dict[str, Any], install: Path, index_server: tuple[Any, str], tmp_path: Path
) -> None:
    plain = write_config(tmp_path / "plain.json", world["fixtures"])
    first = update(world, install, plain, index_server[1])
    assert first.returncode == 0, first.stderr[-3000:]
    back = run(cli("rollback", install), world["env"])
    assert back.returncode == 0, back.stderr[-3000:]
    state = install / ".comfy-install"
    assert (state / "current-generation").read_text().strip() == "1"

    # The same ComfyUI commit again, now with a configured node: generation 2 was built and
    # verified for that commit, but without the node (its venv lacks the node's requirement).
    config = configured(world, tmp_path, world["second"])
    done = update(world, install, config, index_server[1])
    assert done.returncode == 0, done.stderr[-3000:]
    assert "already built and verified" not in done.stderr
    current = (state / "current-generation").read_text().strip()
    assert current == "3", done.stderr[-3000:]
    assert head(install / "ComfyUI" / "custom_nodes" / NODE) == world["second"]
    assert venv_dists(state / "generations" / "3")["plain-new"] == "1.3"
    assert "plain-new" not in venv_dists(state / "generations" / "2")


def test_a_built_generation_with_other_packages_is_not_switched_back_to(
    world: dict[str, Any], install: Path, index_server: tuple[Any, str], tmp_path: Path
) -> None:
    """Generation 2 was built for the same ComfyUI commit, but with another requirement pin:
    switching back to it would launch the old packages, so a new generation is built."""
    fixtures = world["fixtures"]
    old = write_config(tmp_path / "old.json", fixtures, extra_requirements=["plain-new==1.2"])
    first = update(world, install, old, index_server[1])
    assert first.returncode == 0, first.stderr[-3000:]
    state = install / ".comfy-install"
    assert venv_dists(state / "generations" / "2")["plain-new"] == "1.2"
    back = run(cli("rollback", install), world["env"])
    assert back.returncode == 0, back.stderr[-3000:]

    new = write_config(tmp_path / "new.json", fixtures, extra_requirements=["plain-new==1.3"])
    done = update(world, install, new, index_server[1])
    assert done.returncode == 0, done.stderr[-3000:]
    said = " ".join(done.stderr.split())
    assert "already built and verified" not in said
    assert "generation 2 is not reused" in said and "requirements: inputs changed (extra)" in said
    assert (state / "current-generation").read_text().strip() == "3", said[-3000:]
    assert venv_dists(state / "generations" / "3")["plain-new"] == "1.3"
    assert venv_dists(state / "generations" / "2")["plain-new"] == "1.2", "generation 2 changed"


def _install_with(
    world: dict[str, Any], url: str, tmp_path: Path, name: str, requirement: str
) -> tuple[Path, Path]:
    """Install the fixture into `tmp_path/name` with a config adding ``requirement``.

    The config is `tmp_path/name.json`; the requirement's wheel comes from the node wheels'
    find-links. Returns DIR and the config, once the install holds the requirement.
    """
    install = tmp_path / name
    config = write_config(
        tmp_path / f"{name}.json", world["fixtures"], extra_requirements=[requirement]
    )
    links = ("--find-links", str(world["wheels"]))
    done = run(install_args(install, config, url, *links), world["env"], timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    wanted, version = requirement.split("==")
    assert venv_dists(install)[wanted] == version
    return install, config


def test_an_update_to_the_same_commit_builds_when_the_current_generation_lacks_a_requirement(
    world: dict[str, Any], index_server: tuple[Any, str], tmp_path: Path
) -> None:
    """Only the configured requirement's pin changed, not ComfyUI's commit, the torch set or the
    nodes: the current generation does not hold what the config asks for, so `update` builds a
    new one (and says why) instead of saying it is up to date."""
    fixtures, env, url = world["fixtures"], world["env"], index_server[1]
    install, old = _install_with(world, url, tmp_path, "pinned", "plain-new==1.2")
    links = ("--find-links", str(world["wheels"]))
    first_venv = venv_dists(install)
    state = install / ".comfy-install"

    def update_to(config: Path, *extra: str) -> Any:
        args = cli("update", install, "--config", config, "--index-url", url, *links,
                   "--gpu", "none", *extra)  # fmt: skip
        return run(args, env, timeout=300)

    new = write_config(tmp_path / "new.json", fixtures, extra_requirements=["plain-new==1.3"])
    preview = update_to(new, "--dry-run")
    assert preview.returncode == 0, preview.stderr[-3000:]
    shown = " ".join(preview.stdout.split())
    assert "nothing would be built" not in shown
    assert "generation 1 is at the target commit, but this update would change it" in shown
    assert "requirements: inputs changed (extra)" in shown, shown
    assert not (state / "generations").exists(), "a dry run built something"

    done = update_to(new)
    assert done.returncode == 0, done.stderr[-3000:]
    said = " ".join(done.stderr.split())
    assert "nothing to do" not in said
    assert "generation 1 is at" in said and "but this update would change it" in said, said
    assert "requirements: inputs changed (extra)" in said
    assert (state / "current-generation").read_text().strip() == "2", said[-3000:]
    second = state / "generations" / "2"
    assert (second / "ComfyUI" / ".git").exists()
    assert venv_dists(second)["plain-new"] == "1.3"
    assert venv_dists(install) == first_venv, "generation 1's venv was changed"

    again = update_to(new)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "nothing to do" in again.stderr
    assert not (state / "generations" / "3").exists()

    # Back to the old pin: generation 2 (current) lacks it, generation 1 holds it.
    back = update_to(old)
    assert back.returncode == 0, back.stderr[-3000:]
    said = " ".join(back.stderr.split())
    assert "generation 2 is at" in said and "but this update would change it" in said, said
    assert "generation 1 is already built and verified" in said
    assert (state / "current-generation").read_text().strip() == "1"
    assert not (state / "generations" / "3").exists()


def test_an_update_without_config_plans_with_the_config_the_install_recorded(
    world: dict[str, Any], index_server: tuple[Any, str], tmp_path: Path
) -> None:
    """Installed with `--config mine.json`: `update DIR` alone plans with mine.json (read again
    from disk), the indexes, find-links and GPU the install recorded, not the shipped config."""
    fixtures, env = world["fixtures"], world["env"]
    install, mine = _install_with(world, index_server[1], tmp_path, "mine", "plain-new==1.2")
    state = install / ".comfy-install"

    preview = run(cli("update", install, "--dry-run", "--json"), env, timeout=300)
    assert preview.returncode == 0, preview.stderr[-3000:]
    diff = json.loads(preview.stdout)["data"]
    assert f"config: {mine} (recorded by the install)" in diff["inputs"], diff["inputs"]
    assert diff["up_to_date"], diff
    shown = run(cli("update", install, "--dry-run"), env, timeout=300).stdout
    assert "(recorded by the install)" in shown and "nothing would be built" in shown, shown

    same = run(cli("update", install), env, timeout=300)
    assert same.returncode == 0, same.stderr[-3000:]
    assert "nothing to do" in same.stderr, same.stderr[-3000:]
    assert not (state / "generations").exists()
    assert venv_dists(install)["plain-new"] == "1.2"

    write_config(mine, fixtures, extra_requirements=["plain-new==1.3"])  # the user edits it
    moved = run(cli("update", install), env, timeout=300)
    assert moved.returncode == 0, moved.stderr[-3000:]
    said = " ".join(moved.stderr.split())
    assert "requirements: inputs changed (extra)" in said, said[-3000:]
    assert (state / "current-generation").read_text().strip() == "2"
    second = state / "generations" / "2"
    assert venv_dists(second)["plain-new"] == "1.3"
    assert venv_dists(install)["plain-new"] == "1.2", "generation 1's venv was changed"
    # Generation 2 recorded the same inputs: the next update plans with mine.json again.
    again = run(cli("update", install), env, timeout=300)
    assert again.returncode == 0 and "nothing to do" in again.stderr, again.stderr[-3000:]

    mine.unlink()
    gone = run(cli("update", install, "--dry-run"), env, timeout=300)
    assert gone.returncode == 2, gone.stderr[-3000:]
    said = " ".join(gone.stderr.split())
    assert f"--config {mine}" in said and "no longer exists" in said, said
    assert "pass --config" in said.lower(), said


def add_node(world: dict[str, Any], install: Path, repo: Path, url: str) -> None:
    """`comfy-install nodes add DIR REPO` against the local index and the node wheels."""
    args = cli("nodes", "add", install, repo, "--index-url", url, "--find-links", world["wheels"])
    done = run(args, world["env"], timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def _added_node(world: dict[str, Any], install: Path, url: str, repo: Path) -> str:
    """Make REPO, a node needing plain-new==1.2, add it to INSTALL (`nodes add`): its commit."""
    commit = make_node_repo(repo, requirements=["plain-new==1.2"])
    add_node(world, install, repo, url)
    assert venv_dists(install)["plain-new"] == "1.2"
    return commit


def test_an_update_keeps_a_node_nodes_add_added_with_its_requirement(
    world: dict[str, Any], install: Path, index_server: tuple[Any, str], tmp_path: Path
) -> None:
    url = index_server[1]
    commit = _added_node(world, install, url, tmp_path / "repos" / "added-node")
    config = world["root"] / "plain.json"

    preview = update(world, install, config, url, "--dry-run", "--json")
    assert preview.returncode == 0, preview.stderr[-3000:]
    nodes = {c["name"]: c for c in json.loads(preview.stdout)["data"]["custom_nodes"]}
    assert nodes["added-node"]["old"] == nodes["added-node"]["new"] == commit
    assert "into the new venv: plain-new==1.2" in nodes["added-node"]["note"]
    assert not (install / ".comfy-install" / "generations").exists(), "a dry run built"

    done = update(world, install, config, url)
    assert done.returncode == 0, done.stderr[-3000:]
    second = install / ".comfy-install" / "generations" / "2"
    assert (install / ".comfy-install" / "current-generation").read_text().strip() == "2"
    assert venv_dists(second)["plain-new"] == "1.2", "the new venv lacks the added node's need"
    assert head(install / "ComfyUI" / "custom_nodes" / "added-node") == commit

    # The same update again: generation 2 holds the node's requirement, nothing to build.
    again = update(world, install, config, url)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "nothing to do" in again.stderr

    back = run(cli("rollback", install, "--json"), world["env"])
    assert back.returncode == 0, back.stderr[-3000:]
    data = json.loads(back.stdout)["data"]
    assert data["to_generation"] == 1
    assert data["nodes_without_requirements"] == {}, "generation 1 had the node's requirement"
    assert (install / ".comfy-install" / "current-generation").read_text().strip() == "1"


def test_a_node_the_new_comfyui_excludes_stops_the_update_before_anything_changes(
    world: dict[str, Any], install: Path, index_server: tuple[Any, str], tmp_path: Path
) -> None:
    url = index_server[1]
    repo = tmp_path / "repos" / "pins-node"
    make_node_repo(repo, requirements=["shared-lib==1.0"])
    add_node(world, install, repo, url)
    # A newer ComfyUI (of a fork: another source) that requires shared-lib 2.
    comfy = tmp_path / "comfy-fork"
    git("clone", "-q", str(world["fixtures"].comfy_repo), str(comfy), cwd=tmp_path)
    text = (comfy / "requirements.txt").read_text()
    (comfy / "requirements.txt").write_text(text + "shared-lib==2.0\n")
    git("commit", "-q", "-am", "needs shared-lib 2", cwd=comfy)
    git("tag", "shared-two", cwd=comfy)
    before = venv_dists(install)
    pointer = install / ".comfy-install" / "current-generation"

    for extra in (("--dry-run",), ()):
        args = cli("update", install, "--config", world["root"] / "plain.json",
                   "--comfyui-url", comfy, "--comfyui-ref", "shared-two", "--index-url", url,
                   "--find-links", world["wheels"], "--gpu", "none", *extra)  # fmt: skip
        refused = run(args, world["env"], timeout=300)
        assert refused.returncode == 1, refused.stderr[-3000:]
        said = " ".join(refused.stderr.split())
        assert "this update cannot keep custom node pins-node" in said
        assert "its requirement shared-lib==1.0 conflicts with" in said
        assert "shared-lib==2.0 (required by ComfyUI)" in said
        assert "nothing was changed" in said
        assert f"comfy-install nodes remove {install} pins-node" in said
        assert not pointer.exists(), "the current generation moved"
        assert not (install / ".comfy-install" / "generations").exists(), "a generation was built"
        assert venv_dists(install) == before
        assert venv_dists(install)["shared-lib"] == "1.0"


def shipping(world: dict[str, Any], tmp_path: Path, **changes: Any) -> Path:
    """A copy of this comfy-install whose shipped dependencies.json is the fixtures' one.

    The update of a restored install moves to the shipped pins; the real shipped file pins a
    torch and a ComfyUI on the network. Its ComfyUI URL is one that cannot be reached.
    """
    site = tmp_path / "site"
    shutil.copytree(REPO_ROOT / "src" / "installer", site / "installer",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    data = site / "installer" / "_data"
    (data / "locks").mkdir(parents=True)
    shutil.copy(REPO_ROOT / "tools_manifest.json", data / "tools_manifest.json")
    config = write_config(data / "dependencies.json", world["fixtures"], **changes)
    deps = json.loads(config.read_text())
    deps["comfyui"]["url"] = "https://example.invalid/ComfyUI.git"
    config.write_text(json.dumps(deps, indent=2))
    return site


def test_an_update_of_a_restored_install_keeps_the_snapshots_nodes(
    world: dict[str, Any], install: Path, index_server: tuple[Any, str], tmp_path: Path
) -> None:
    url = index_server[1]
    commit = _added_node(world, install, url, tmp_path / "repos" / "snap-node")
    file = tmp_path / "snap.json"
    saved = run(cli("snapshot", "save", install, file, "--config", world["root"] / "plain.json",
                    "--index-url", url, "--find-links", world["wheels"]), world["env"])  # fmt: skip
    assert saved.returncode == 0, saved.stderr[-3000:]
    restored = tmp_path / "restored"
    args = cli("snapshot", "restore", file, restored, "--gpu", "none", "--index-url", url,
               "--find-links", world["wheels"])  # fmt: skip
    done = run(args, world["env"], timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    staged = restored / ".comfy-install" / "snapshot" / "dependencies.json"
    assert staged.is_file()

    site = shipping(world, tmp_path, comfyui_ref=NO_TORCHAUDIO)
    env = dict(world["env"], PYTHONPATH=str(site))
    updater = [sys.executable, "-m", "installer", "update", str(restored), "--gpu", "none",
               "--index-url", url, "--find-links", str(world["wheels"])]  # fmt: skip
    preview = run([*updater, "--dry-run", "--json"], env, timeout=300)
    assert preview.returncode == 0, preview.stderr[-3000:]
    diff = json.loads(preview.stdout)["data"]
    nodes = {c["name"]: c for c in diff["custom_nodes"]}
    assert "no longer configured" not in nodes["snap-node"]["note"]
    assert nodes["snap-node"]["new"] == commit
    carried = " ".join(line for line in diff["inputs"] if line.startswith("carried over"))
    assert "custom_nodes: snap-node" in carried and "plain-new==1.2" in carried
    assert f"comfyui.url: {world['fixtures'].comfy_repo}" in carried
    assert diff["comfyui"]["new"] == world["fixtures"].commits[NO_TORCHAUDIO]
    assert not (restored / ".comfy-install" / "generations").exists(), "a dry run wrote"

    done = run(updater, env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    second = restored / ".comfy-install" / "generations" / "2"
    assert (restored / ".comfy-install" / "current-generation").read_text().strip() == "2"
    assert venv_dists(second)["plain-new"] == "1.2", "the restored node's requirement is gone"
    assert head(second / "ComfyUI") == world["fixtures"].commits[NO_TORCHAUDIO]
    kept = json.loads((second / ".comfy-install" / "update" / "dependencies.json").read_text())
    assert [node["name"] for node in kept["custom_nodes"]] == ["snap-node"]
    assert kept["comfyui"]["url"] == str(world["fixtures"].comfy_repo)
    assert kept["comfyui"]["commit"] == world["fixtures"].commits[NO_TORCHAUDIO]


def test_an_update_finds_a_kept_nodes_wheels_where_nodes_add_found_them(
    world: dict[str, Any], install: Path, index_server: tuple[Any, str], tmp_path: Path
) -> None:
    """The node's requirement is only in the find-links folder `nodes add` was given: an update
    given no --find-links reuses nodes.json's, says so, and the new generation records it."""
    url = index_server[1]
    _added_node(world, install, url, tmp_path / "repos" / "links-node")
    args = cli("update", install, "--config", world["root"] / "plain.json", "--comfyui-ref",
               NO_TORCHAUDIO, "--index-url", url, "--gpu", "none")  # fmt: skip

    preview = run([*args, "--dry-run", "--json"], world["env"], timeout=300)
    assert preview.returncode == 0, preview.stderr[-3000:]
    inputs = json.loads(preview.stdout)["data"]["inputs"]
    assert (
        f"find-links: {world['wheels']} (recorded by nodes add in nodes.json, for "
        "links-node)" in inputs
    ), inputs

    done = run(args, world["env"], timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    second = install / ".comfy-install" / "generations" / "2"
    assert venv_dists(second)["plain-new"] == "1.2"
    state = json.loads((second / ".comfy-install" / "state.json").read_text())
    assert state["inputs"]["find_links"] == [str(world["wheels"])]
