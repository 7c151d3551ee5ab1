"""`update`, `rollback`, `status` and `launch` across generations, against the local fixtures.

A real install of the fixture ComfyUI v2 (real uv, real git, the tiny torch wheels) is
updated to the fixture tagged `no-torchaudio`, whose requirements no longer list
torchaudio; the user's files are hashed before and after every change.
"""

from __future__ import annotations

import json
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
from support.comfy_repo import NO_TORCHAUDIO
from support.user_data import add_user_data, user_hashes


def envelope(done: Any) -> dict[str, Any]:
    data = json.loads(done.stdout)
    assert data["schema_version"] == 1
    return data


@pytest.fixture(scope="module")
def installed(
    fixtures: Fixtures, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path, dict[str, str]]:
    """A finished install of the fixture v2 with a user's files, kept as a template."""
    from support.http_server import LocalHTTPServer
    from support.package_index import serve_index

    root = tmp_path_factory.mktemp("update")
    config = write_config(root / "deps.json", fixtures)
    target = root / "template"
    env = installer_env(fixtures)
    with LocalHTTPServer() as server:
        url = serve_index(server, sorted(fixtures.links.glob("*.whl")))
        done = run(install_args(target, config, url), env, timeout=300)
    assert done.returncode == 0, done.stderr
    add_user_data(target / "ComfyUI")
    return target, config, env


@pytest.fixture
def install(installed: tuple[Path, Path, dict[str, str]], tmp_path: Path) -> Path:
    target = tmp_path / "inst"
    shutil.copytree(installed[0], target, symlinks=True)
    return target


def update_args(install: Path, config: Path, url: str, *extra: str) -> list[str]:
    return cli(
        "update", install, "--config", config, "--comfyui-ref", NO_TORCHAUDIO, "--index-url", url,
        "--gpu", "none", *extra,
    )  # fmt: skip


def test_update_then_rollback_keeps_the_users_files_and_follows_requirements(
    install: Path,
    installed: tuple[Path, Path, dict[str, str]],
    index_server: tuple[Any, str],
    fixtures: Fixtures,
) -> None:
    _, config, env = installed
    _, url = index_server
    before = user_hashes(install / "ComfyUI")
    assert len(before) == 8

    preview = run(update_args(install, config, url, "--dry-run", "--json"), env)
    assert preview.returncode == 0, preview.stderr
    diff = envelope(preview)["data"]
    assert diff["comfyui"] == {
        "name": "ComfyUI", "old": fixtures.commits["v2"], "new": fixtures.commits[NO_TORCHAUDIO],
        "note": diff["comfyui"]["note"],
    }  # fmt: skip
    torch = {change["name"]: change for change in diff["torch"]}
    assert torch["torchaudio"]["old"] == "2.9.1" and torch["torchaudio"]["new"] is None
    assert torch["torch"]["old"] == "2.9.1+cu128" and torch["torch"]["new"] == "2.9.1"
    assert [c["name"] for c in diff["requirements"]] == ["torchaudio"]
    assert diff["requirements"][0]["new"] is None
    assert any("--quick-test-for-ci" in line or "main.py" in line for line in diff["verify"])
    assert not (install / ".comfy-install" / "generations").exists(), "a dry run built nothing"
    text = run(update_args(install, config, url, "--dry-run"), env)
    assert text.returncode == 0, text.stderr
    assert "generation 1 -> 2" in text.stdout
    assert "2.9.1 -> -" in text.stdout  # torchaudio, no longer held
    assert "switch: rename(2) over the pointer" in text.stdout

    done = run(update_args(install, config, url), env, timeout=300)
    assert done.returncode == 0, done.stderr
    pointer = install / ".comfy-install" / "current-generation"
    assert pointer.read_text().strip() == "2"
    second = install / ".comfy-install" / "generations" / "2"
    dists = venv_dists(second)
    assert "torch" in dists and "torchvision" in dists and "torchaudio" not in dists
    assert "torchaudio" not in (second / ".comfy-install" / "constraints.txt").read_text()
    assert "torchaudio" in venv_dists(install), "generation 1's venv was changed"
    assert (second / "ComfyUI" / "comfy" / "model.py").read_text() == "VERSION = 3\n"
    assert (install / "ComfyUI" / "comfy" / "model.py").read_text() == "VERSION = 2\n"
    assert user_hashes(install / "ComfyUI") == before
    assert not (second / "ComfyUI" / "models" / "checkpoints").exists()

    status = run(cli("status", install, "--json"), env)
    assert status.returncode == 0, status.stderr
    report = envelope(status)["data"]
    listed = {g["id"]: g for g in report["generations"]}
    assert listed[1]["comfyui_commit"] == fixtures.commits["v2"] and listed[1]["verified"]
    assert listed[2]["comfyui_commit"] == fixtures.commits[NO_TORCHAUDIO] and listed[2]["current"]
    assert listed[2]["torch"] and listed[2]["created_at"]
    assert report["summary"]["comfyui_commit"] == fixtures.commits[NO_TORCHAUDIO]

    launched = run(cli("launch", install, "--print-env", "--port", "8199"), env)
    assert launched.returncode == 0, launched.stderr
    line = launched.stdout.splitlines()[-1]
    data = install / "ComfyUI"
    assert line.startswith(f"{second}/venv/bin/python -u {second}/ComfyUI/main.py")
    assert f"--base-directory {data}" in line
    assert f"--extra-model-paths-config {data}/extra_model_paths.yaml" in line

    back = run(cli("rollback", install, "--json"), env)
    assert back.returncode == 0, back.stderr
    assert envelope(back)["data"]["to_generation"] == 1
    assert pointer.read_text().strip() == "1"
    launched = run(cli("launch", install, "--print-env", "--port", "8199"), env)
    line = launched.stdout.splitlines()[-1]
    assert line.startswith(f"{install}/venv/bin/python -u {install}/ComfyUI/main.py --port 8199")
    assert "--base-directory" not in line and "--extra-model-paths-config" not in line
    assert user_hashes(install / "ComfyUI") == before

    again = run(cli("rollback", install), env)
    assert again.returncode == 2, again.stderr
    assert "no previous generation" in again.stderr

    forward = run(update_args(install, config, url), env, timeout=300)
    assert forward.returncode == 0, forward.stderr
    assert "already built and verified" in forward.stderr
    assert pointer.read_text().strip() == "2"
    assert user_hashes(install / "ComfyUI") == before


def test_keep_1_prunes_generation_1s_venv_but_never_the_users_folder(
    install: Path, installed: tuple[Path, Path, dict[str, str]], index_server: tuple[Any, str]
) -> None:
    _, config, env = installed
    before = user_hashes(install / "ComfyUI")
    done = run(update_args(install, config, index_server[1], "--keep", "1"), env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert not (install / "venv").exists()
    assert user_hashes(install / "ComfyUI") == before
    assert (install / "ComfyUI" / ".git").is_dir()
    status = envelope(run(cli("status", install, "--json"), env))["data"]
    assert [g["id"] for g in status["generations"]] == [2]
    rollback = run(cli("rollback", install), env)
    assert rollback.returncode == 2 and "no previous generation" in rollback.stderr


def test_update_of_an_install_already_at_the_target_builds_nothing(
    install: Path, installed: tuple[Path, Path, dict[str, str]], index_server: tuple[Any, str]
) -> None:
    _, config, env = installed
    args = cli("update", install, "--config", config, "--index-url", index_server[1],
               "--gpu", "none")  # fmt: skip
    done = run(args, env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "nothing to do" in done.stderr
    assert not (install / ".comfy-install" / "generations").exists()
    assert not (install / ".comfy-install" / "current-generation").exists()


def test_bytecode_is_shared_only_for_the_very_same_source_file(tmp_path: Path) -> None:
    import os
    import py_compile

    from installer.edges.generations import share_bytecode

    old = tmp_path / "old" / "lib" / "python3.12" / "site-packages" / "pkg"
    new = tmp_path / "new" / "lib" / "python3.12" / "site-packages" / "pkg"
    old.mkdir(parents=True)
    new.mkdir(parents=True)
    (old / "same.py").write_text("X = 1\n")
    os.link(old / "same.py", new / "same.py")  # one inode, as uv's hard links give
    (old / "other.py").write_text("Y = 1\n")
    (new / "other.py").write_text("Y = 1\n")  # equal text, another file: not shared
    for name in ("same", "other"):
        py_compile.compile(
            str(old / f"{name}.py"), cfile=str(old / "__pycache__" / f"{name}.cpython-312.pyc")
        )
    before = (old / "__pycache__" / "same.cpython-312.pyc").read_bytes()

    assert share_bytecode(tmp_path / "old", tmp_path / "new", "linux") == 1
    shared = new / "__pycache__" / "same.cpython-312.pyc"
    assert shared.samefile(old / "__pycache__" / "same.cpython-312.pyc")
    assert not (new / "__pycache__" / "other.cpython-312.pyc").exists()
    assert (old / "__pycache__" / "same.cpython-312.pyc").read_bytes() == before
    assert share_bytecode(tmp_path / "old", tmp_path / "new", "linux") == 0, "linked twice"


def test_staged_files_are_the_same_only_byte_for_byte(tmp_path: Path) -> None:
    from installer.edges.generations import same_files

    for name in ("a", "b"):
        (tmp_path / name / "locks").mkdir(parents=True)
        (tmp_path / name / "locks" / "linux.txt").write_text("x==1\n")
    assert same_files(tmp_path / "a" / "locks", tmp_path / "b" / "locks")
    assert same_files(
        tmp_path / "a" / "locks" / "linux.txt", tmp_path / "b" / "locks" / "linux.txt"
    )
    (tmp_path / "b" / "locks" / "windows.txt").write_text("x==1\n")
    assert not same_files(tmp_path / "a" / "locks", tmp_path / "b" / "locks")
    (tmp_path / "b" / "locks" / "linux.txt").write_text("x==2\n")
    assert not same_files(
        tmp_path / "a" / "locks" / "linux.txt", tmp_path / "b" / "locks" / "linux.txt"
    )
    assert not same_files(tmp_path / "a" / "locks", tmp_path / "missing")


def test_install_rerun_and_doctor_act_on_the_current_generation(
    install: Path, installed: tuple[Path, Path, dict[str, str]], index_server: tuple[Any, str]
) -> None:
    _, config, env = installed
    done = run(update_args(install, config, index_server[1]), env, timeout=300)
    assert done.returncode == 0, done.stderr
    second = install / ".comfy-install" / "generations" / "2"
    first_state = (install / ".comfy-install" / "state.json").read_text()
    steps_before = json.loads((second / ".comfy-install" / "state.json").read_text())["steps"]
    dists = venv_dists(second)
    before = user_hashes(install / "ComfyUI")

    rerun = run(cli("install", install, "--json"), env, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    outcomes = {s["id"]: s["result"] for s in envelope(rerun)["data"]["steps"]}
    assert set(outcomes.values()) <= {"up to date", "skipped"}, rerun.stderr
    assert outcomes["launchers"] == outcomes["models"] == "skipped"
    after = json.loads((second / ".comfy-install" / "state.json").read_text())["steps"]
    for step, record in steps_before.items():  # a skipped step's record is only re-dated
        if record["status"] == "skipped":
            record.pop("finished_at"), after[step].pop("finished_at")
    assert after == steps_before, "a step of generation 2 was redone"
    assert (install / ".comfy-install" / "state.json").read_text() == first_state
    assert venv_dists(second) == dists and user_hashes(install / "ComfyUI") == before

    moved = run(cli("install", install, "--comfyui-ref", "v1"), env)
    assert moved.returncode == 2, moved.stderr
    assert f"comfy-install update {install} --comfyui-ref v1" in " ".join(moved.stderr.split())
    models = run(cli("install", install, "--only", "models"), env)
    assert models.returncode == 2 and "belongs to DIR" in models.stderr

    shutil.rmtree(second / "ComfyUI")  # the generation's checkout, the tool's: repaired
    repaired = run(cli("install", install, "--json"), env, timeout=300)
    assert repaired.returncode == 0, repaired.stderr
    assert (second / "ComfyUI" / ".git").is_file(), "not a worktree of DIR/ComfyUI again"
    assert (second / "ComfyUI" / "comfy" / "model.py").read_text() == "VERSION = 3\n"
    assert (install / "ComfyUI" / "comfy" / "model.py").read_text() == "VERSION = 2\n"
    assert user_hashes(install / "ComfyUI") == before
    assert (install / ".comfy-install" / "state.json").read_text() == first_state

    shutil.rmtree(install / "venv")  # as `update --keep 1` prunes it: doctor reads 2's
    doctor = run(cli("doctor", install, "--json"), env, timeout=300)
    report = envelope(doctor)["data"]
    assert report["install"]["generation"] == 2 and report["install"]["root"] == str(second)
    assert report["install"]["install_dir"] == str(install)
    assert report["torch"]["installed"] == dists["torch"]  # generation 1's venv is gone
    assert not any(p.startswith("torchaudio") for p in report["torch"]["packages"])
    assert report["install"]["steps"]["models"] == "skip"
    assert {report["install"]["steps"][s] for s in ("venv", "torch", "verify")} == {"done"}


def test_nodes_add_after_an_update_goes_to_the_current_generation(
    install: Path,
    installed: tuple[Path, Path, dict[str, str]],
    index_server: tuple[Any, str],
    fixtures: Fixtures,
    tmp_path: Path,
) -> None:
    """After an update, `nodes add` installs into generation 2's venv (the one launch runs),
    puts the node's folder among the user's, in DIR/ComfyUI, and leaves generation 1 as it was."""
    from support.node_repos import build_node_wheels, make_node_repo

    _, config, env = installed
    _, url = index_server
    done = run(update_args(install, config, url), env, timeout=300)
    assert done.returncode == 0, done.stderr
    second = install / ".comfy-install" / "generations" / "2"
    wheels = tmp_path / "node-wheels"
    build_node_wheels(wheels)
    repo = tmp_path / "plain-node"
    make_node_repo(repo, requirements=["plain-new"])
    first_before = venv_dists(install)
    added = run(
        cli("nodes", "add", install, repo, "--find-links", fixtures.links, "--find-links", wheels,
            "--offline"),
        env,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert venv_dists(second)["plain-new"] == "1.3"
    assert venv_dists(install) == first_before, "generation 1's venv was changed"
    assert (install / "ComfyUI" / "custom_nodes" / "plain-node" / "__init__.py").is_file()
    assert not (second / "ComfyUI" / "custom_nodes" / "plain-node").exists()
    # A rollback moves no node folder (they are the user's) and says whose requirements the
    # generation it goes back to lacks.
    back = run(cli("rollback", install, "--json"), env)
    assert back.returncode == 0, back.stderr
    assert envelope(back)["data"]["nodes_without_requirements"] == {"plain-node": ["plain-new"]}
    assert (install / "ComfyUI" / "custom_nodes" / "plain-node" / "__init__.py").is_file()
    said = " ".join(back.stderr.split())
    assert "custom node plain-node stays in DIR/ComfyUI/custom_nodes" in said
    assert "lacks its requirements (plain-new)" in said
