"""Lock files for real: `uv pip compile` and `uv pip install --require-hashes` on tiny wheels.

A local simple index (the session's fixture wheels plus `lockdep` 1.0/1.1/1.2,
`lockapp` and `nodedep`) stands in for the registry, the fixture ComfyUI
repository and a custom node repository for GitHub. The tests write locks with
the real command, read them back, install them into real venvs, serve a
tampered wheel from a second index, and change the configuration under a lock.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.cli import (
    BASE_PYTHON,
    Fixtures,
    installer_env,
    lock_cli,
    run,
    venv_dists,
    write_config,
)
from support.comfy_repo import git
from support.http_server import LocalHTTPServer
from support.package_index import serve_index
from support.wheels import WheelSpec, build_wheel

PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
TARGET = f"linux-default-py{PYTHON.replace('.', '')}"
BUNDLE = "comfyui-v0.33.0.bundle"


@pytest.fixture(scope="module")
def world(fixtures: Fixtures, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """Wheels, an index serving them, a custom node repo and a config that uses them."""
    root = tmp_path_factory.mktemp("lock-world")
    links = root / "links"
    links.mkdir()
    for wheel in fixtures.links.glob("*.whl"):
        shutil.copy2(wheel, links)
    for spec in (
        WheelSpec("lockdep", "1.0"),
        WheelSpec("lockdep", "1.1"),
        WheelSpec("lockdep", "1.2"),
        WheelSpec("lockapp", "1.0", requires=["lockdep>=1.0"]),
        WheelSpec("nodedep", "1.0"),
        WheelSpec("nodepy", "1.0"),
    ):
        build_wheel(spec, links)
    node = root / "node-repo"
    node.mkdir()
    git("init", "-q", "-b", "main", cwd=node)
    (node / "requirements.txt").write_text("nodedep\n")
    # Its other dependency only in pyproject.toml, as ComfyUI-Manager (and `nodes add`) read it.
    (node / "pyproject.toml").write_text(
        '[project]\nname = "locknode"\nversion = "1"\ndependencies = ["nodepy"]\n'
    )
    (node / "__init__.py").write_text("NODE_CLASS_MAPPINGS = {}\n")
    git("add", "-A", cwd=node)
    git(
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@example.invalid",
        "commit",
        "-q",
        "-m",
        "node",
        cwd=node,
    )
    node_commit = git("rev-parse", "HEAD", cwd=node)
    config = write_config(
        root / "deps.json",
        fixtures,
        extra_requirements=["lockapp", "lockdep<1.2"],
        custom_nodes=[{"name": "LockNode", "url": str(node), "commit": node_commit}],
        optimizations={
            "packages": [
                {
                    "name": "xformers",
                    "requires": ["nvidia"],
                    "pypi_package": "xformers",
                    "torch_constraints": [{"torch": ">=2.9,<2.10", "spec": "==0.0.33.post2"}],
                }
            ]
        },
        pip_packages={},
    )
    env = installer_env(fixtures, UV_HTTP_RETRIES="0")
    with LocalHTTPServer() as server:
        url = serve_index(server, sorted(links.glob("*.whl")))
        lock_dir = root / "locks"
        done = run(
            lock_cli(
                "--config",
                str(config),
                "--platform",
                "linux",
                "--torch-variant",
                "default",
                "--python",
                PYTHON,
                "--index-url",
                url,
                "--lock-dir",
                str(lock_dir),
            ),
            env,
        )
        assert done.returncode == 0, done.stderr
        yield {
            "root": root,
            "links": links,
            "config": config,
            "url": url,
            "env": env,
            "lock_dir": lock_dir,
            "lock": lock_dir / f"{TARGET}.txt",
            "first": done,
            "fixtures": fixtures,
        }


def test_lock_is_deterministic_hashed_and_newest_allowed(world: dict) -> None:
    from installer.core.lockfile import parse_lock

    lock: Path = world["lock"]
    first = lock.read_bytes()
    again = run(
        lock_cli(
            "--config",
            str(world["config"]),
            "--platform",
            "linux",
            "--torch-variant",
            "default",
            "--python",
            PYTHON,
            "--index-url",
            world["url"],
            "--lock-dir",
            str(world["lock_dir"]),
        ),
        world["env"],
    )
    assert again.returncode == 0, again.stderr
    assert lock.read_bytes() == first
    assert f"unchanged {lock}" in again.stderr
    assert f"wrote {lock}" in world["first"].stderr

    parsed = parse_lock(lock)
    pins = {e.name: e.requirement for e in parsed.entries}
    assert pins["lockdep"] == "lockdep==1.1"  # 1.2 exists, `lockdep<1.2` allows 1.1 at most
    assert pins["torch"] == "torch==2.9.1+cu128"
    sections = {name: {e.name for e in entries} for name, entries in parsed.sections.items()}
    assert sections["requirements"] == {"lockapp", "lockdep", "needs-torch", "nodedep", "nodepy"}
    assert sections["optimizations"] == {"xformers"}
    assert sections["torch"] == {"torch", "torchvision", "torchaudio"}
    for entry in parsed.entries:
        version = entry.requirement.split("==")[1]
        wheel = next(world["links"].glob(f"{entry.name.replace('-', '_')}-{version}-*.whl"))
        assert entry.hashes == (f"sha256:{hashlib.sha256(wheel.read_bytes()).hexdigest()}",)

    text = lock.read_text()
    assert text.splitlines()[0] == (
        f"# comfy-install lock v1 inputs-sha256={parsed.header.inputs_sha256}"
    )
    assert len(parsed.header.inputs_sha256) == 64
    deps = json.loads(world["config"].read_text())
    assert parsed.header.values["comfyui-commit"] == deps["comfyui"]["commit"]
    assert parsed.header.recorded("step-10-packages") == ["xformers==0.0.33.post2"]
    assert parsed.header.recorded("extra-requirements") == ["lockapp", "lockdep<1.2"]
    assert "# via -r custom-node-LockNode.txt" in text
    via = text.split("nodepy==1.0", 1)[1].split("\n\n")[0]
    assert "custom-node-LockNode.txt" in via  # the pyproject dependency, locked for the node


def _uv(world: dict, index_url: str, log_path: Path):
    from installer.core.config import IndexOptions
    from installer.core.log import InstallerLogger
    from installer.edges.environment import find_uv_binary
    from installer.edges.uv import Uv

    log = InstallerLogger(verbosity=-1, stream=io.StringIO(), log_file=log_path)
    return Uv(
        binary=find_uv_binary() or "uv",
        index=IndexOptions(index_url=index_url),
        log=log,
        env=dict(world["env"]),
    ), log


def _venv_with_torch(world: dict, root: Path) -> tuple[Path, Path]:
    """Steps 4 and 7 against the first index: a venv, the torch trio, the constraints file."""
    from installer.edges.uv import write_constraints

    uv, _ = _uv(world, world["url"], root / "torch.log")
    uv.venv(root / "venv", BASE_PYTHON, clear=True)
    python = root / "venv" / "bin" / "python"
    uv.pip_install(
        python,
        ["torch==2.9.1", "torchvision==0.24.1", "torchaudio==2.9.1"],
        constraints=[world["lock"]],
        what="install torch",
    )
    dists = venv_dists(root)
    pins = {name: dists[name] for name in ("torch", "torchvision", "torchaudio")}
    return python, write_constraints(root / ".comfy-install" / "constraints.txt", pins)


def test_install_from_lock_checks_every_hash_and_holds_torch(world: dict, tmp_path: Path) -> None:
    from installer.lock.install import install_from_lock

    python, constraints = _venv_with_torch(world, tmp_path)
    before = venv_dists(tmp_path)
    uv, log = _uv(world, world["url"], tmp_path / "lock.log")
    result = install_from_lock(uv, python, world["lock"], constraints, log)
    after = venv_dists(tmp_path)
    assert result.packages == 5
    assert {k: after[k] for k in ("lockapp", "lockdep", "needs-torch", "nodedep", "nodepy")} == {
        "lockapp": "1.0",
        "lockdep": "1.1",
        "needs-torch": "1.0",
        "nodedep": "1.0",
        "nodepy": "1.0",
    }
    assert {k: after[k] for k in ("torch", "torchvision", "torchaudio")} == {
        k: before[k] for k in ("torch", "torchvision", "torchaudio")
    }
    assert "xformers" not in after  # step 10's section is not step 8's business
    log_text = (tmp_path / "lock.log").read_text()
    assert "--require-hashes" in log_text and "--no-deps" in log_text
    section = (tmp_path / ".comfy-install" / "locked-requirements.txt").read_text()
    assert "--hash=sha256:" in section
    assert not [line for line in section.splitlines() if line.startswith("torch")]


def test_tampered_wheel_stops_with_integrity_error_and_installs_nothing(
    world: dict, tmp_path: Path
) -> None:
    from installer.core.errors import IntegrityError
    from installer.lock.install import install_from_lock

    python, constraints = _venv_with_torch(world, tmp_path)
    evil = tmp_path / "evil-links"
    evil.mkdir()
    for wheel in world["links"].glob("*.whl"):
        if not wheel.name.startswith("lockdep-1.1-"):
            shutil.copy2(wheel, evil)
    tampered = build_wheel(
        WheelSpec("lockdep", "1.1", files={"lockdep/__init__.py": "X = 1\n"}), evil
    )
    assert tampered.name == next(world["links"].glob("lockdep-1.1-*.whl")).name
    before = venv_dists(tmp_path)
    with LocalHTTPServer() as server:
        url = serve_index(server, sorted(evil.glob("*.whl")))
        uv, log = _uv(world, url, tmp_path / "lock.log")
        with pytest.raises(IntegrityError) as caught:
            install_from_lock(uv, python, world["lock"], constraints, log)
    assert caught.value.exit_code == 4
    assert "lockdep==1.1" in caught.value.message
    assert "nothing was installed" in caught.value.message
    # uv downloads and checks every file before installing any: the venv is as it was.
    assert venv_dists(tmp_path) == before


def test_check_passes_then_names_the_stale_lock(world: dict, tmp_path: Path) -> None:
    config = world["config"]
    ok = run(
        lock_cli("--check", "--config", str(config), "--lock-dir", str(world["lock_dir"])),
        world["env"],
    )
    assert ok.returncode == 0, ok.stderr
    assert f"{world['lock']}: up to date" in ok.stderr

    deps = json.loads(config.read_text())
    deps["extra_requirements"] = ["lockapp", "lockdep<1.1"]
    changed = tmp_path / "deps.json"
    changed.write_text(json.dumps(deps))
    stale = run(
        lock_cli("--check", "--config", str(changed), "--lock-dir", str(world["lock_dir"])),
        world["env"],
    )
    assert stale.returncode == 1, stale.stderr
    assert f"{world['lock']} is stale: extra_requirements changed" in stale.stderr
    assert (
        f"comfy-install lock --platform linux --torch-variant default --python {PYTHON} "
        f"--config {changed}"
    ) in stale.stderr


def test_check_notices_a_changed_requirements_file(world: dict) -> None:
    from installer.core.config_files import load_dependencies
    from installer.core.lockfile import LockSources, read_header
    from installer.lock.check import check_lock

    fixtures: Fixtures = world["fixtures"]
    deps = load_dependencies(world["config"])
    header = read_header(world["lock"])
    assert header is not None
    original = (fixtures.comfy_repo / "requirements.txt").read_text()
    nodes = {"LockNode": "nodedep\nnodepy\n"}
    same = LockSources(original.replace("\n", "\r\n"), deps.comfyui.commit, nodes)
    assert check_lock(header, deps, same).ok
    changed = check_lock(header, deps, LockSources(original + "lockdep\n", "0" * 40, nodes))
    assert not changed.ok
    assert changed.reason == "ComfyUI's requirements.txt changed since it was made"
    node = check_lock(header, deps, LockSources(original, deps.comfyui.commit, {"LockNode": None}))
    assert node.reason == "custom node requirements changed since it was made"


def test_plan_side_choice_matches_and_falls_back(world: dict) -> None:
    from installer.core.config_files import load_dependencies
    from installer.lock.files import lock_choice, read_lock_headers
    from installer.plan.lock import choose_lock

    deps = load_dependencies(world["config"])
    headers = read_lock_headers(world["lock_dir"])
    assert set(headers) == {TARGET}
    kwargs = {
        "platform": "linux",
        "variant": "default",
        "python": PYTHON,
        "headers": headers,
        "comfyui_commit": deps.comfyui.commit,
    }
    chosen = choose_lock(deps, **kwargs)
    assert chosen.locked and chosen.path == world["lock"]
    assert chosen.reason == f"locked ({world['lock']})"
    assert chosen.lock_sha256 == headers[TARGET].inputs_sha256
    assert lock_choice(deps, "linux", "default", PYTHON, world["lock_dir"]) == chosen

    other = deps.model_copy(update={"extra_requirements": ["lockapp"]})
    stale = choose_lock(other, **kwargs)
    assert not stale.locked and stale.stale
    assert "extra_requirements changed" in stale.reason
    assert stale.warning and "comfy-install lock --platform linux" in stale.warning

    torch = deps.torch.model_copy(update={"packages": ["torch==2.10.0"]})
    assert (
        "is stale: torch packages"
        in choose_lock(deps.model_copy(update={"torch": torch}), **kwargs).reason
    )
    assert choose_lock(deps, **{**kwargs, "python": "3.10"}).reason == (
        "resolved live (no lock for linux-default-py310)"
    )
    assert choose_lock(deps, **kwargs, no_lock=True).reason == "resolved live (--no-lock)"
    assert not choose_lock(deps, **{**kwargs, "comfyui_commit": None}).locked
    assert not choose_lock(deps, **{**kwargs, "python": BASE_PYTHON}).locked
    assert not choose_lock(deps, **{**kwargs, "variant": "custom"}).locked


def test_step8_compares_the_checked_out_requirements(world: dict, tmp_path: Path) -> None:
    from installer.lock.check import lock_sources_mismatch

    fixtures: Fixtures = world["fixtures"]
    deps = json.loads(world["config"].read_text())
    comfy = tmp_path / "ComfyUI"
    git("clone", "-q", str(fixtures.comfy_repo), str(comfy), cwd=tmp_path)
    node = comfy / "custom_nodes" / "LockNode"
    git("clone", "-q", deps["custom_nodes"][0]["url"], str(node), cwd=tmp_path)
    assert lock_sources_mismatch(world["lock"], comfy) is None
    (comfy / "requirements.txt").write_bytes(
        (comfy / "requirements.txt").read_bytes().replace(b"\n", b"\r\n")
    )
    assert lock_sources_mismatch(world["lock"], comfy) is None  # a CRLF checkout still matches
    pyproject = (node / "pyproject.toml").read_text()
    (node / "pyproject.toml").write_text(pyproject.replace('"nodepy"', '"nodepy", "lockdep"'))
    assert "LockNode" in (lock_sources_mismatch(world["lock"], comfy) or "")
    (node / "pyproject.toml").write_text(pyproject)
    assert lock_sources_mismatch(world["lock"], comfy) is None
    (node / "requirements.txt").write_text("nodedep>=1\n")
    assert "LockNode" in (lock_sources_mismatch(world["lock"], comfy) or "")
    (comfy / "requirements.txt").write_text("torch\n")
    assert "requirements.txt differs" in (lock_sources_mismatch(world["lock"], comfy) or "")


def test_refresh_all_writes_what_resolves_and_says_what_does_not(
    world: dict, tmp_path: Path
) -> None:
    deps = json.loads(world["config"].read_text())
    deps["torch"]["variants"] = [
        {"name": "cu128", "index_url": "http://127.0.0.1:9/whl/cu128", "min_cuda_driver": "12.8"}
    ]
    config = tmp_path / "deps.json"
    config.write_text(json.dumps(deps))
    lock_dir = tmp_path / "locks"
    lock_dir.mkdir()
    # A lock for another Python already there: a refresh of everything refreshes it too.
    other = "3.10" if PYTHON != "3.10" else "3.12"
    old = f"linux-default-py{other.replace('.', '')}"
    (lock_dir / f"{old}.txt").write_text(
        f"# comfy-install lock v1 inputs-sha256={'0' * 64}\n# platform: linux\n"
        f"# python: {other}\n# torch-variant: default\n"
    )
    done = run(
        lock_cli(
            "--config",
            str(config),
            "--platform",
            "linux",
            "--index-url",
            world["url"],
            "--lock-dir",
            str(lock_dir),
            "--json",
        ),
        world["env"],
    )
    assert done.returncode == 0, done.stderr
    assert "could not resolve linux-cu128-py" in done.stderr
    assert "127.0.0.1:9" in done.stderr
    assert sorted(p.name for p in lock_dir.iterdir()) == sorted([f"{TARGET}.txt", f"{old}.txt"])
    rows = {row["target"]: row for row in json.loads(done.stdout)["data"]["locks"]}
    assert rows[TARGET]["status"] == rows[old]["status"] == "written"
    assert rows[f"linux-cu128-py{PYTHON.replace('.', '')}"]["status"] == "failed"
    assert "2 of 4 locks written; 2 could not be resolved from here" in done.stderr


def _bundle() -> Path:
    from support.real import BUNDLE_CANDIDATES

    for candidate in BUNDLE_CANDIDATES:
        if candidate.is_file():
            return candidate
    pytest.skip(f"the real ComfyUI bundle ({BUNDLE}) is not on this machine")


def test_shipped_locks_are_current() -> None:
    """CI: every lock in locks/ matches dependencies.json and ComfyUI's requirements.txt.

    The shipped config pins upstream commit 2f35f4a0…, which the offline fixture
    bundle lacks; the bundle's v0.33.0 has the same tree, so its requirements.txt
    is read there (the lock records the configured pin and the file's sha256).
    """
    done = subprocess.run(
        lock_cli("--check", "--comfyui-url", str(_bundle()), "--comfyui-ref", "v0.33.0"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=dict(os.environ, NO_COLOR="1"),
    )
    assert done.returncode == 0, done.stderr


def test_sections_split_by_who_needs_a_package() -> None:
    from installer.core.lockfile import parse_entries
    from installer.lock.compile import split_sections

    resolved = """\
filelock==1.0 \\
    --hash=sha256:aa
    # via
    #   huggingface-hub
    #   torch
huggingface-hub==1.0 \\
    --hash=sha256:bb
    # via -r /tmp/x/comfyui-requirements.txt
nvidia-cublas==1.0 \\
    --hash=sha256:cc
    # via torch
torch==2.9.1 \\
    --hash=sha256:dd
    # via
    #   -c /tmp/x/torch-constraints.txt
    #   -r /tmp/x/comfyui-requirements.txt
    #   xformers
triton==3.5.1 \\
    --hash=sha256:ee
    # via
    #   -r /tmp/x/step10-packages.txt
    #   torch
xformers==0.0.33 \\
    --hash=sha256:ff
    # via -r /tmp/x/step10-packages.txt
"""
    entries = parse_entries(resolved.splitlines())
    assert entries[3].via == ("-c torch-constraints.txt", "-r comfyui-requirements.txt", "xformers")
    sections = {k: [e.name for e in v] for k, v in split_sections(entries).items()}
    assert sections == {
        "requirements": ["filelock", "huggingface-hub"],
        "optimizations": ["triton", "xformers"],
        "torch": ["nvidia-cublas", "torch"],
    }
    assert entries[0].render() == (
        "filelock==1.0 \\\n    --hash=sha256:aa\n    # via\n    #   huggingface-hub\n    #   torch"
    )


def test_uv_errors_become_one_line_or_an_integrity_error(tmp_path: Path) -> None:
    from installer.core.errors import CommandFailedError
    from installer.edges.uv_output import integrity_error, uv_failure_summary

    dns = (
        "error: Request failed after 3 retries in 5.2s\n"
        "  cause: Failed to fetch: https://download.pytorch.org/whl/cu128/torch/\n"
        "  cause: dns error\n  cause: failed to lookup address information\n"
    )
    assert uv_failure_summary(dns) == (
        "Request failed after 3 retries in 5.2s: Failed to fetch: "
        "https://download.pytorch.org/whl/cu128/torch/; failed to lookup address information"
    )
    mismatch = (
        "error: Failed to download `beta==2.0`\n  cause: Hash mismatch for `beta==2.0`\n"
        f"  Expected:\n    sha256:{'a' * 64}\n  Computed:\n    sha256:{'b' * 64}\n"
    )
    error = integrity_error(CommandFailedError("uv pip install", 1, mismatch), tmp_path / "x.txt")
    assert error is not None and error.exit_code == 4
    assert error.message.startswith("beta==2.0 does not match its sha256 in x.txt")
    assert integrity_error(CommandFailedError("uv pip install", 1, dns)) is None


def _install_knows_locks() -> bool:
    from support.cli import cli_path

    done = subprocess.run(
        [cli_path(), "install", "--help"], capture_output=True, text=True, check=False
    )
    return "--no-lock" in done.stdout


def test_install_uses_the_lock_and_stops_with_exit_4_on_a_tampered_wheel(
    world: dict, tmp_path: Path
) -> None:
    from support.cli import cli_path

    if not _install_knows_locks():
        pytest.skip("`install` has no --no-lock yet: the lock is not wired into the plan")
    base = [
        "--config", str(world["config"]), "--gpu", "none", "--torch-index", "default",
        "--python", PYTHON, "--lock-dir", str(world["lock_dir"]),
    ]  # fmt: skip
    target = tmp_path / "inst"
    args = [cli_path(), "install", str(target), *base, "--index-url", world["url"]]
    dry = run([*args, "--dry-run", "--json"], world["env"])
    assert dry.returncode == 0, dry.stderr
    plan = json.loads(dry.stdout)["data"]
    assert plan["lock"]["path"] == str(world["lock"])
    assert f"locked ({world['lock']})" in plan["steps"][7]["details"]
    done = run(args, world["env"])
    assert done.returncode == 0, done.stderr
    assert venv_dists(target)["lockdep"] == "1.1"

    evil = tmp_path / "evil-links"
    evil.mkdir()
    for wheel in world["links"].glob("*.whl"):
        if not wheel.name.startswith("lockdep-1.1-"):
            shutil.copy2(wheel, evil)
    build_wheel(WheelSpec("lockdep", "1.1", files={"lockdep/__init__.py": "X = 1\n"}), evil)
    bad = tmp_path / "bad"
    with LocalHTTPServer() as server:
        url = serve_index(server, sorted(evil.glob("*.whl")))
        failed = run([cli_path(), "install", str(bad), *base, "--index-url", url], world["env"])
    assert failed.returncode == 4, failed.stderr
    assert "lockdep==1.1 does not match its sha256" in failed.stderr
    assert not {"lockapp", "lockdep", "needs-torch"} & set(venv_dists(bad))


def test_a_lock_for_another_python_than_the_venvs_is_not_used(tmp_path: Path) -> None:
    # The plan picks the lock for the Python it asks for (3.12); when the python step had
    # to take another supported Python (3.11), the lock must not be used.
    from types import SimpleNamespace

    from installer.core.log import InstallerLogger
    from installer.steps.packages import lock_path

    shipped = Path(__file__).resolve().parents[2] / "locks" / "linux-default-py312.txt"
    venv = tmp_path / "venv"
    venv.mkdir()
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\nversion_info = 3.11.7\n")
    log_file = tmp_path / "log.txt"
    ctx = SimpleNamespace(
        plan=SimpleNamespace(lock=SimpleNamespace(path=str(shipped))),
        paths={"venv": venv},
        log=InstallerLogger(verbosity=-1, log_file=log_file),
    )
    assert lock_path(ctx) is None  # type: ignore[arg-type]
    assert "is for Python 3.12 but the venv has Python 3.11.7" in log_file.read_text()
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\nversion_info = 3.12.1\n")
    assert lock_path(ctx) == shipped  # type: ignore[arg-type]


def test_a_rewritten_lock_at_the_same_path_is_installed_again(world: dict, tmp_path: Path) -> None:
    """Step 8's inputs hold the lock's content: a lock re-resolved to other pins (the same
    inputs, so the same `inputs-sha256` header, at the same path) re-runs the step."""
    from installer.core.lockfile import parse_lock
    from support.cli import cli_path

    lock_dir = tmp_path / "locks"
    shutil.copytree(world["lock_dir"], lock_dir)
    lock = lock_dir / world["lock"].name
    target = tmp_path / "inst"
    args = [
        cli_path(), "install", str(target), "--config", str(world["config"]), "--gpu", "none",
        "--torch-index", "default", "--python", PYTHON, "--lock-dir", str(lock_dir),
        "--index-url", world["url"], "--json",
    ]  # fmt: skip

    def steps(done: subprocess.CompletedProcess[str]) -> dict[str, str]:
        assert done.returncode == 0, done.stderr[-3000:]
        return {s["id"]: s["result"] for s in json.loads(done.stdout)["data"]["steps"]}

    steps(run(args, world["env"], timeout=300))
    assert venv_dists(target)["lockdep"] == "1.1"
    header = parse_lock(lock).header

    old = next(world["links"].glob("lockdep-1.0-*.whl"))
    new = next(world["links"].glob("lockdep-1.1-*.whl"))
    text = lock.read_text()
    text = text.replace("lockdep==1.1", "lockdep==1.0").replace(
        hashlib.sha256(new.read_bytes()).hexdigest(), hashlib.sha256(old.read_bytes()).hexdigest()
    )
    lock.write_text(text)
    assert parse_lock(lock).header.inputs_sha256 == header.inputs_sha256

    again = steps(run(args, world["env"], timeout=300))
    assert again["requirements"] not in ("up to date", "skipped"), again
    assert venv_dists(target)["lockdep"] == "1.0"

    unchanged = steps(run(args, world["env"], timeout=300))
    assert unchanged["requirements"] == "up to date", unchanged
