"""End to end: `comfy-install install` against the local fixtures, for real.

Real uv installs tiny real wheels from a local index server, real git clones
the fixture ComfyUI repository; the assertions look at the venv, the clone,
the state file and the exit codes.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import time
from pathlib import Path

import pytest

from support.cli import (
    Fixtures,
    install_args,
    installer_env,
    read_state,
    run,
    venv_dists,
    write_config,
)
from support.comfy_repo import git
from support.http_server import LocalHTTPServer, Stall
from support.package_index import file_path

STEPS = [
    "preflight",
    "uv",
    "python",
    "venv",
    "comfyui",
    "gpu",
    "torch",
    "requirements",
    "custom_nodes",
    "optimizations",
    "launchers",
    "models",
    "verify",
]


@pytest.fixture
def installed(tmp_path: Path, fixtures: Fixtures, index_server) -> dict:
    """A finished install in tmp_path/inst (and what made it)."""
    server, url = index_server
    config = write_config(tmp_path / "deps.json", fixtures)
    target = tmp_path / "inst"
    env = installer_env(fixtures)
    done = run(install_args(target, config, url), env)
    assert done.returncode == 0, done.stderr
    return {
        "dir": target,
        "config": config,
        "url": url,
        "env": env,
        "server": server,
        "first": done,
    }


def test_full_install_leaves_a_working_comfyui(installed: dict, fixtures: Fixtures) -> None:
    target: Path = installed["dir"]
    assert (target / "venv" / "bin" / "python").is_file()
    head = git("rev-parse", "HEAD", cwd=target / "ComfyUI")
    assert head == fixtures.commits["v2"]
    for folder in ("custom_nodes", "models", "input", "output"):
        assert (target / "ComfyUI" / folder).is_dir()
    launcher = target / "run_comfyui.sh"
    assert os.access(launcher, os.X_OK)
    assert f"launch {shlex.quote(str(target))} " in launcher.read_text()
    dists = venv_dists(target)
    assert dists["torch"] == "2.9.1+cu128"
    assert dists["torchvision"] == "0.24.1"
    assert dists["needs-torch"] == "1.0"
    state = read_state(target)
    statuses = {step: record["status"] for step, record in state["steps"].items()}
    assert statuses == {
        "preflight": "done",
        "uv": "done",
        "python": "done",
        "venv": "done",
        "comfyui": "done",
        "gpu": "done",
        "torch": "done",
        "requirements": "done",
        "custom_nodes": "skipped",
        "optimizations": "skipped",
        "launchers": "done",
        "models": "skipped",
        "verify": "done",
    }
    assert state["steps"]["verify"]["outputs"]["main_help"] == "ok"
    constraints = (target / ".comfy-install" / "constraints.txt").read_text()
    assert "torch==2.9.1+cu128" in constraints
    assert "[13/13] verify" in installed["first"].stderr
    assert "Next: comfy-install launch" in installed["first"].stderr


def test_rerun_is_a_no_op_without_network(installed: dict) -> None:
    target: Path = installed["dir"]
    before = read_state(target)
    installed["server"].stop()
    again = run(install_args(target, installed["config"], installed["url"]), installed["env"])
    assert again.returncode == 0, again.stderr
    assert again.stderr.count("up to date") >= 10
    for step in ("torch", "requirements", "comfyui", "verify"):
        assert f"[{STEPS.index(step) + 1}/13] {step}" in again.stderr
    after = read_state(target)
    assert {k: v["seq"] for k, v in after["steps"].items()} == {
        k: v["seq"] for k, v in before["steps"].items()
    }


def test_status_reports_inputs(installed: dict, fixtures: Fixtures) -> None:
    from support.cli import cli_path

    done = run([cli_path(), "status", str(installed["dir"]), "--json"], installed["env"])
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)["data"]
    assert data["summary"]["comfyui_commit"] == fixtures.commits["v2"]
    assert data["summary"]["torch"] == "2.9.1+cu128"
    assert [s["id"] for s in data["steps"]] == STEPS


def test_changed_pin_reruns_only_affected_steps(
    installed: dict, fixtures: Fixtures, tmp_path: Path
) -> None:
    target: Path = installed["dir"]
    config = write_config(tmp_path / "deps-v1.json", fixtures, comfyui_ref="v1")
    before = read_state(target)
    done = run(install_args(target, config, installed["url"]), installed["env"])
    assert done.returncode == 0, done.stderr
    assert git("rev-parse", "HEAD", cwd=target / "ComfyUI") == fixtures.commits["v1"]
    after = read_state(target)
    ran = {
        k for k in STEPS
        if k in after["steps"] and k in before["steps"]
        and after["steps"][k]["started_at"] != before["steps"][k]["started_at"]
    }  # fmt: skip
    assert ran == {"preflight", "comfyui", "requirements", "verify"}
    # Steps that ran again with unchanged outputs are current now: the next run is a no-op.
    again = run(install_args(target, config, installed["url"]), installed["env"])
    assert again.returncode == 0, again.stderr
    final = read_state(target)
    assert {k: v["started_at"] for k, v in final["steps"].items()} == {
        k: v["started_at"] for k, v in after["steps"].items()
    }, again.stderr


def test_new_torch_version_reruns_torch_and_dependents(
    installed: dict, fixtures: Fixtures, tmp_path: Path
) -> None:
    target: Path = installed["dir"]
    deps = json.loads(installed["config"].read_text())
    deps["torch"]["packages"] = ["torch==2.10.0", "torchvision==0.25.0", "torchaudio==2.10.0"]
    config = tmp_path / "deps-torch.json"
    config.write_text(json.dumps(deps))
    done = run(install_args(target, config, installed["url"]), installed["env"])
    assert done.returncode == 0, done.stderr
    assert venv_dists(target)["torch"] == "2.10.0+cu128"
    assert "inputs changed (packages)" in done.stderr or "[7/13] torch" in done.stderr
    state = read_state(target)
    assert state["steps"]["comfyui"]["seq"] < state["steps"]["torch"]["seq"]
    again = run(install_args(target, config, installed["url"]), installed["env"])
    assert again.returncode == 0, again.stderr
    assert again.stderr.count("up to date") >= 10, again.stderr
    assert {k: v["started_at"] for k, v in read_state(target)["steps"].items()} == {
        k: v["started_at"] for k, v in state["steps"].items()
    }, again.stderr


def test_force_redoes_a_step(installed: dict) -> None:
    target: Path = installed["dir"]
    before = read_state(target)["steps"]["torch"]
    done = run(
        install_args(target, installed["config"], installed["url"], "--force", "torch"),
        installed["env"],
    )
    assert done.returncode == 0, done.stderr
    after = read_state(target)["steps"]
    # torch ran again; the same versions came out, so nothing after it had to run.
    assert after["torch"]["finished_at"] >= before["finished_at"]
    assert after["torch"]["started_at"] != before["started_at"]
    assert after["torch"]["seq"] == before["seq"]
    assert "[7/13] torch" in done.stderr
    assert "up to date (the steps it depends on ran again without changes)" in done.stderr


def test_conflicting_requirement_keeps_torch(
    tmp_path: Path, fixtures: Fixtures, index_server
) -> None:
    _, url = index_server
    config = write_config(
        tmp_path / "deps.json", fixtures, extra_requirements=["wants-new-torch==1.0"]
    )
    target = tmp_path / "inst"
    done = run(install_args(target, config, url), installed_env := installer_env(fixtures))
    assert done.returncode == 1
    assert "wants-new-torch needs torch==2.10.0" in done.stderr
    assert "(requirements) failed" in done.stderr
    assert venv_dists(target)["torch"] == "2.9.1+cu128"
    assert read_state(target)["steps"]["requirements"]["status"] == "failed"
    fixed = write_config(tmp_path / "deps-fixed.json", fixtures)
    again = run(install_args(target, fixed, url), installed_env)
    assert again.returncode == 0, again.stderr


def _interrupt_at(
    args: list[str],
    env: dict[str, str],
    marker: str,
    sig: int,
    stalled: tuple[LocalHTTPServer, str] | None = None,
) -> tuple[int, str]:
    """Start the installer, send ``sig`` once ``marker`` appears on stderr; return (rc, stderr).

    With ``stalled`` (the index server and the path of a wheel it stalls), the signal waits
    until that wheel's request has reached the server: it lands while uv is downloading,
    however slow the machine, and no sooner (a fixed sleep after the marker guessed at that,
    and cost 1-1.5 s a test).
    """
    process = subprocess.Popen(
        args, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
    )
    assert process.stderr is not None
    seen: list[str] = []
    deadline = time.monotonic() + 120
    for line in process.stderr:
        seen.append(line)
        if marker in line:
            if stalled is not None:
                server, path = stalled
                while not server.requests_for(path):
                    assert process.poll() is None, "the installer ended before the download"
                    assert time.monotonic() < deadline, f"{path} was never requested"
                    time.sleep(0.02)
            process.send_signal(sig)
            break
        assert time.monotonic() < deadline, "marker never appeared"
    rest = process.stderr.read()
    process.wait(timeout=60)
    return process.returncode, "".join(seen) + rest


@pytest.mark.parametrize("step", ["torch", "requirements"])
def test_sigint_during_a_step_then_resume(
    step: str, tmp_path: Path, fixtures: Fixtures, index_server
) -> None:
    server, url = index_server
    slow = {"torch": "torch==2.9.1+cu128", "requirements": "needs-torch==1.0"}[step]
    wheel = file_path(fixtures.wheels[slow])
    server.inject(wheel, Stall(seconds=30), times=None)
    config = write_config(tmp_path / "deps.json", fixtures)
    target = tmp_path / "inst"
    env = installer_env(fixtures, UV_HTTP_TIMEOUT="120", UV_CACHE_DIR=str(tmp_path / "cache"))
    code, stderr = _interrupt_at(
        install_args(target, config, url),
        env,
        f"{STEPS.index(step) + 1}/13] {step}",
        signal.SIGINT,
        stalled=(server, wheel),
    )
    assert code == 130, stderr
    assert f"Interrupted during step {step}; run the same command to continue." in stderr
    state = read_state(target)
    assert state["steps"][step]["status"] == "interrupted"
    assert not (target / ".comfy-install" / "lock").exists()
    server.clear_faults()
    again = run(install_args(target, config, url), env)
    assert again.returncode == 0, again.stderr
    assert "was interrupted last time; redoing it" in again.stderr or step in again.stderr
    assert read_state(target)["steps"][step]["status"] == "done"
    assert venv_dists(target)["torch"] == "2.9.1+cu128"


def test_sigkill_mid_step_is_redone(tmp_path: Path, fixtures: Fixtures, index_server) -> None:
    server, url = index_server
    # uv, orphaned by the kill, keeps waiting on the stalled download: keep the stall short.
    # The kill lands once the download has reached the server, so the stall only has to
    # outlast the kill itself.
    wheel = file_path(fixtures.wheels["torch==2.9.1+cu128"])
    server.inject(wheel, Stall(seconds=2), times=None)
    config = write_config(tmp_path / "deps.json", fixtures)
    target = tmp_path / "inst"
    env = installer_env(fixtures, UV_HTTP_TIMEOUT="120", UV_CACHE_DIR=str(tmp_path / "cache"))
    code, _ = _interrupt_at(
        install_args(target, config, url), env, "7/13] torch", signal.SIGKILL, (server, wheel)
    )
    assert code == -signal.SIGKILL
    state = read_state(target)
    assert state["steps"]["torch"]["status"] == "running"
    assert (target / ".comfy-install" / "lock").exists()
    server.clear_faults()
    again = run(install_args(target, config, url), env)
    assert again.returncode == 0, again.stderr
    assert "took over a stale lock" in again.stderr
    assert "did not finish last time" in again.stderr or "[7/13] torch" in again.stderr
    assert read_state(target)["steps"]["torch"]["status"] == "done"


def test_live_lock_exits_3_naming_the_pid(tmp_path: Path, fixtures: Fixtures, index_server) -> None:
    _, url = index_server
    target = tmp_path / "inst"
    (target / ".comfy-install").mkdir(parents=True)
    holder = subprocess.Popen(["sleep", "60"])
    try:
        import socket

        (target / ".comfy-install" / "lock").write_text(
            json.dumps({"pid": holder.pid, "host": socket.gethostname(), "started_at": "now"})
        )
        config = write_config(tmp_path / "deps.json", fixtures)
        done = run(install_args(target, config, url), installer_env(fixtures))
    finally:
        holder.kill()
        holder.wait()
    assert done.returncode == 3
    assert f"pid {holder.pid}" in done.stderr
    assert not (target / "venv").exists()


def test_dirty_clone_is_never_overwritten(
    installed: dict, fixtures: Fixtures, tmp_path: Path
) -> None:
    target: Path = installed["dir"]
    main = target / "ComfyUI" / "main.py"
    main.write_text(main.read_text() + "\n# my local change\n")
    config = write_config(tmp_path / "deps-v1.json", fixtures, comfyui_ref="v1")
    done = run(install_args(target, config, installed["url"]), installed["env"])
    assert done.returncode == 1
    assert "has local changes (main.py)" in done.stderr
    assert "git -C" in done.stderr and "stash" in done.stderr
    assert main.read_text().endswith("# my local change\n")
    assert git("rev-parse", "HEAD", cwd=target / "ComfyUI") == fixtures.commits["v2"]


def test_missing_git_exits_3(tmp_path: Path, fixtures: Fixtures, index_server) -> None:
    _, url = index_server
    config = write_config(tmp_path / "deps.json", fixtures)
    env = installer_env(fixtures, PATH="/nonexistent-bin")
    done = run(install_args(tmp_path / "inst", config, url), env)
    assert done.returncode == 3, done.stderr
    assert "git is needed to clone ComfyUI" in done.stderr


def test_too_little_disk_exits_3_with_numbers(
    tmp_path: Path, fixtures: Fixtures, index_server
) -> None:
    _, url = index_server
    config = write_config(tmp_path / "deps.json", fixtures)
    done = run(
        install_args(tmp_path / "inst", config, url, "--min-free-gb", "1000000"),
        installer_env(fixtures),
    )
    assert done.returncode == 3
    assert "Not enough free disk space" in done.stderr
    assert "1000000 GiB needed" in done.stderr
    assert not (tmp_path / "inst" / "venv").exists()


def test_dir_that_is_a_file_exits_3(tmp_path: Path, fixtures: Fixtures, index_server) -> None:
    _, url = index_server
    config = write_config(tmp_path / "deps.json", fixtures)
    target = tmp_path / "a-file"
    target.write_text("not a directory")
    done = run(install_args(target, config, url), installer_env(fixtures))
    assert done.returncode == 3
    assert "is not a directory" in done.stderr
    assert target.read_text() == "not a directory"


def test_offline_with_empty_cache_names_what_is_missing(
    tmp_path: Path, fixtures: Fixtures, index_server
) -> None:
    _, url = index_server
    config = write_config(tmp_path / "deps.json", fixtures)
    env = installer_env(fixtures, UV_CACHE_DIR=str(tmp_path / "empty-cache"))
    done = run(install_args(tmp_path / "inst", config, url, "--offline"), env)
    assert done.returncode == 1
    assert "--offline" in done.stderr
    assert "torch" in done.stderr


def test_find_links_mirror_installs_without_an_index(tmp_path: Path, fixtures: Fixtures) -> None:
    config = write_config(tmp_path / "deps.json", fixtures)
    target = tmp_path / "inst"
    args = install_args(
        target,
        config,
        "http://127.0.0.1:9/simple/",
        "--find-links",
        str(fixtures.links),
        "--offline",
    )
    done = run(args, installer_env(fixtures))
    assert done.returncode == 0, done.stderr
    assert venv_dists(target)["torch"] == "2.9.1+cu128"


def test_redoing_comfyui_keeps_an_existing_custom_nodes_folder(installed: dict) -> None:
    # ComfyUI v0.33.0 lists custom_nodes/ at start-up (os.listdir) and dies without it, and
    # its release tree has none: the comfyui step creates it, and never touches one that
    # is there.
    target: Path = installed["dir"]
    node = target / "ComfyUI" / "custom_nodes" / "my-node"
    node.mkdir()
    (node / "__init__.py").write_text("NODE_CLASS_MAPPINGS = {}\n")
    done = run([*install_args(target, installed["config"], installed["url"]), "--force", "comfyui"],
               installed["env"])  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (node / "__init__.py").read_text() == "NODE_CLASS_MAPPINGS = {}\n"
