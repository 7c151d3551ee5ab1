"""Step 10 for real: uv installs tiny real wheels, httpx downloads SageAttention wheels.

The wheels are served by the local test server (named like the real ones), the
checksums come from a test `tools_manifest.json`, and every test checks that
torch in the venv is exactly what it was before the step.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from installer.core.config import Dependencies, IndexOptions, ToolsManifest
from installer.core.errors import DownloadError, IntegrityError
from installer.core.facts import gpu_override, no_gpu
from installer.core.log import InstallerLogger
from installer.edges.environment import find_uv_binary
from installer.edges.probe import installed_distributions
from installer.edges.uv import Uv
from installer.optimizations.install import install_optimizations
from installer.optimizations.outcome import OptimizationOutcome
from installer.optimizations.target import StepTarget
from installer.optimizations.venv import inspect_venv_torch
from support.cli import (
    SHIPPED_DEPS,
    Fixtures,
    cli_path,
    install_args,
    installer_env,
    read_state,
    run,
    write_config,
)
from support.http_server import Drop, LocalHTTPServer, Respond
from support.package_index import serve_index
from support.wheels import WheelSpec, build_wheel, sha256_of

SA_WHEELS = {
    # name in config: (file name, cc range, module)
    "sageattention2-sm75-89": (
        "sageattention-2.2.0+cu128torch2.9.1-cp39-abi3-linux_x86_64.whl",
        ">=7.5,<9.0",
        "sageattention",
    ),
    "sageattention2-sm90": (
        "sageattention-2.2.0+cu128torch2.9.1sm90-cp39-abi3-linux_x86_64.whl",
        ">=9.0,<10.0",
        "sageattention",
    ),
    "sageattention2-sm120": (
        "sageattention-2.2.0+cu128torch2.9.1sm120-cp39-abi3-linux_x86_64.whl",
        ">=12.0,<13.0",
        "sageattention",
    ),
    "sageattention3": (
        "sageattn3-1.0.0+cu128torch2.9.1-cp39-abi3-linux_x86_64.whl",
        ">=10.0,<13.0",
        "sageattn3",
    ),
}


def _sa_spec(config_name: str) -> WheelSpec:
    filename, _, module = SA_WHEELS[config_name]
    dist, version = filename.split("-")[:2]
    return WheelSpec(
        dist,
        version,
        tag="cp39-abi3-linux_x86_64",
        filename=filename,
        files={f"{module}/__init__.py": f'__version__ = "{version}"\nBUILD = "{config_name}"\n'},
    )


@pytest.fixture(scope="module")
def sa_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The SageAttention stand-in wheels, built once."""
    folder = tmp_path_factory.mktemp("sa-wheels")
    return {name: build_wheel(_sa_spec(name), folder) for name in SA_WHEELS}


@pytest.fixture
def wheel_server(sa_files: dict[str, Path], fixtures: Fixtures):
    """One local server: the package index of the fixture wheels and the SA wheel files."""
    with LocalHTTPServer() as server:
        index_url = serve_index(server, sorted(fixtures.links.glob("*.whl")))
        for path in sa_files.values():
            server.add(f"/releases/{path.name}", path.read_bytes())
        yield server, index_url


def step10_config(
    server: LocalHTTPServer, *, xformers_spec: str = "==0.0.33.post2", required: bool = False
) -> dict[str, Any]:
    """The shipped dependencies.json with step 10 pointed at the local server."""
    deps = json.loads(SHIPPED_DEPS.read_text())
    deps["optimizations"]["packages"][0]["torch_constraints"] = [
        {"torch": ">=2.9,<2.10", "spec": xformers_spec}
    ]
    deps["optimizations"]["packages"][0]["required"] = required
    deps["optimizations"]["packages"][0]["retry_options"] = {"attempts": 1, "backoff_seconds": 0}
    deps["pip_packages"]["sageattention_wheels"] = [
        {
            "name": name,
            "cc": cc,
            "torch": ">=2.9.1,<2.9.2",
            "cuda": ["cu128"],
            "python": ">=3.9",
            "platform": "linux",
            "import_name": module,
            "url": server.url(f"/releases/{filename}"),
        }
        for name, (filename, cc, module) in SA_WHEELS.items()
    ]
    return deps


def manifest_for(files: dict[str, Path], **override: str) -> ToolsManifest:
    """A tools manifest with the real sha256 of each wheel (or an override by file name)."""
    entries = {
        p.name: {"sha256": override.get(p.name, sha256_of(p)), "size": p.stat().st_size}
        for p in files.values()
    }
    return ToolsManifest.model_validate({"schema_version": 1, "files": entries})


@pytest.fixture
def venv(tmp_path: Path, fixtures: Fixtures) -> Path:
    """A venv holding the fake torch 2.9.1+cu128 trio; returns its Python."""
    uv = find_uv_binary()
    assert uv
    env = installer_env(fixtures)
    subprocess.run(
        [uv, "venv", "-q", str(tmp_path / "venv"), "--python", _base_python()], check=True, env=env
    )
    python = tmp_path / "venv" / "bin" / "python"
    subprocess.run(
        [
            uv,
            "pip",
            "install",
            "-q",
            "--python",
            str(python),
            "--offline",
            "--find-links",
            str(fixtures.links),
            "torch==2.9.1",
            "torchvision==0.24.1",
            "torchaudio==2.9.1",
        ],
        check=True,
        env=env,
    )
    return python


def _base_python() -> str:
    from support.cli import BASE_PYTHON

    return BASE_PYTHON


def run_step(
    python: Path,
    deps: dict[str, Any],
    manifest: ToolsManifest,
    index_url: str,
    cc: str | None,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    fixtures: Fixtures,
) -> list[OptimizationOutcome]:
    """Run step 10 (install_optimizations) against the venv."""
    monkeypatch.setenv("COMFY_INSTALL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("UV_CACHE_DIR", str(fixtures.uv_cache))
    log = InstallerLogger(verbosity=-1, log_file=tmp_path / "step10.log")
    gpu = gpu_override(cc, "12.8") if cc else no_gpu("--gpu none")
    uv = Uv(binary=find_uv_binary() or "uv", index=IndexOptions(index_url=index_url), log=log)
    target = StepTarget(
        python_exe=python,
        install_path=tmp_path,
        platform="linux",
        gpu=gpu,
        uv=uv,
        manifest=manifest,
    )
    (tmp_path / ".comfy-install").mkdir(exist_ok=True)
    return install_optimizations(
        python,
        tmp_path / "ComfyUI",
        tmp_path,
        Dependencies.model_validate(deps),
        log,
        target=target,
    )


def by_name(outcomes: list[OptimizationOutcome]) -> dict[str, OptimizationOutcome]:
    return {outcome.name: outcome for outcome in outcomes}


@pytest.mark.parametrize(
    ("cc", "expected"),
    [
        ("7.5", {"sageattention2-sm75-89"}),
        ("8.6", {"sageattention2-sm75-89"}),
        ("8.9", {"sageattention2-sm75-89"}),
        ("9.0", {"sageattention2-sm90"}),
        ("12.0", {"sageattention2-sm120", "sageattention3"}),
        ("6.1", set()),
    ],
)
def test_the_right_sageattention_wheels_per_compute_capability(
    cc: str,
    expected: set[str],
    venv: Path,
    wheel_server,
    sa_files,
    monkeypatch,
    tmp_path: Path,
    fixtures: Fixtures,
) -> None:
    server, index_url = wheel_server
    before = inspect_venv_torch(venv).pins
    outcomes = run_step(
        venv,
        step10_config(server),
        manifest_for(sa_files),
        index_url,
        cc,
        monkeypatch,
        tmp_path,
        fixtures,
    )
    installed = {o.name for o in outcomes if o.kind == "wheel" and o.status == "installed"}
    assert installed == expected
    dists = installed_distributions(venv.parent.parent, "linux")
    if expected & {"sageattention2-sm75-89", "sageattention2-sm90", "sageattention2-sm120"}:
        build = next(iter(expected - {"sageattention3"}))
        module = venv.parent.parent / "lib"
        init = next(module.glob("python*/site-packages/sageattention/__init__.py"))
        assert f'BUILD = "{build}"' in init.read_text()
    assert ("sageattn3" in dists) == ("sageattention3" in expected)
    fallback = by_name(outcomes)["sageattention==1.0.6 (fallback)"]
    if cc == "6.1":
        assert fallback.status == "skipped"
        assert "compute capability >=8.0" in fallback.reason
        assert "xformers" not in dists  # xformers requires cc>=7.5
    else:
        assert fallback.status == "skipped"
        assert fallback.reason == "a prebuilt SageAttention wheel fits"
        assert by_name(outcomes)["xformers"].status == "installed"
        assert dists["xformers"] == "0.0.33.post2"
    assert inspect_venv_torch(venv).pins == before


def test_no_nvidia_gpu_skips_everything(
    venv: Path, wheel_server, sa_files, monkeypatch, tmp_path: Path, fixtures: Fixtures
) -> None:
    server, index_url = wheel_server
    outcomes = run_step(
        venv,
        step10_config(server),
        manifest_for(sa_files),
        index_url,
        None,
        monkeypatch,
        tmp_path,
        fixtures,
    )
    assert {o.status for o in outcomes} == {"skipped"}
    assert {o.reason for o in outcomes} == {"no NVIDIA GPU"}
    assert server.requests_for("/simple/xformers/") == []


def test_bad_checksum_deletes_the_file_and_exits_4(
    venv: Path, wheel_server, sa_files, monkeypatch, tmp_path: Path, fixtures: Fixtures
) -> None:
    server, index_url = wheel_server
    name = sa_files["sageattention2-sm90"].name
    wrong = "0" * 64
    with pytest.raises(IntegrityError) as caught:
        run_step(
            venv,
            step10_config(server),
            manifest_for(sa_files, **{name: wrong}),
            index_url,
            "9.0",
            monkeypatch,
            tmp_path,
            fixtures,
        )
    assert caught.value.exit_code == 4
    assert wrong in caught.value.message
    assert sha256_of(sa_files["sageattention2-sm90"]) in caught.value.message
    cache = tmp_path / "cache" / "downloads"
    assert not (cache / name).exists()
    assert not list(cache.glob("*.part"))
    assert "sageattention" not in installed_distributions(venv.parent.parent, "linux")


@pytest.mark.usefixtures("fast_clock")  # the retry, not its 0.5-1 s backoff
def test_dropped_connection_resumes(
    venv: Path, wheel_server, sa_files, monkeypatch, tmp_path: Path, fixtures: Fixtures
) -> None:
    server, index_url = wheel_server
    wheel = sa_files["sageattention2-sm90"]
    path = f"/releases/{wheel.name}"
    half = wheel.stat().st_size // 2
    server.inject(path, Drop(after_bytes=half))
    outcomes = run_step(
        venv,
        step10_config(server),
        manifest_for(sa_files),
        index_url,
        "9.0",
        monkeypatch,
        tmp_path,
        fixtures,
    )
    assert by_name(outcomes)["sageattention2-sm90"].status == "installed"
    requests = [r for r in server.requests_for(path) if r.method == "GET"]
    assert len(requests) == 2
    assert requests[1].range == f"bytes={half}-"
    assert requests[1].bytes_sent == wheel.stat().st_size - half


@pytest.mark.usefixtures("fast_clock")  # the retry, not its 0.5-1 s backoff
def test_server_error_then_success(
    venv: Path, wheel_server, sa_files, monkeypatch, tmp_path: Path, fixtures: Fixtures
) -> None:
    server, index_url = wheel_server
    path = f"/releases/{sa_files['sageattention2-sm90'].name}"
    server.inject(path, Respond(500))
    outcomes = run_step(
        venv,
        step10_config(server),
        manifest_for(sa_files),
        index_url,
        "9.0",
        monkeypatch,
        tmp_path,
        fixtures,
    )
    assert by_name(outcomes)["sageattention2-sm90"].status == "installed"
    assert [r.status for r in server.requests_for(path) if r.method == "GET"] == [500, 200]


def test_missing_wheel_is_a_clear_failure_of_that_package(
    venv: Path, wheel_server, sa_files, monkeypatch, tmp_path: Path, fixtures: Fixtures
) -> None:
    server, index_url = wheel_server
    deps = step10_config(server)
    for entry in deps["pip_packages"]["sageattention_wheels"]:
        entry["url"] = entry["url"].replace("/releases/", "/gone/")
    outcomes = run_step(
        venv, deps, manifest_for(sa_files), index_url, "9.0", monkeypatch, tmp_path, fixtures
    )
    outcome = by_name(outcomes)["sageattention2-sm90"]
    assert outcome.status == "failed"
    assert "404" in outcome.reason
    assert by_name(outcomes)["xformers"].status == "installed"


def test_missing_required_wheel_fails_the_step(
    venv: Path, wheel_server, sa_files, monkeypatch, tmp_path: Path, fixtures: Fixtures
) -> None:
    server, index_url = wheel_server
    deps = step10_config(server)
    deps["optimizations"]["packages"][0]["torch_constraints"] = [
        {"torch": ">=2.9,<2.10", "spec": "==9.9.9"}
    ]
    deps["optimizations"]["packages"][0]["required"] = True
    with pytest.raises(Exception) as caught:
        run_step(
            venv, deps, manifest_for(sa_files), index_url, "9.0", monkeypatch, tmp_path, fixtures
        )
    assert "xformers" in str(caught.value)
    assert not isinstance(caught.value, DownloadError)


def test_package_wanting_another_torch_is_skipped_and_torch_kept(
    venv: Path, wheel_server, sa_files, monkeypatch, tmp_path: Path, fixtures: Fixtures
) -> None:
    server, index_url = wheel_server
    before = inspect_venv_torch(venv).pins
    deps = step10_config(server, xformers_spec="==0.0.34")  # 0.0.34 requires torch==2.10.0
    outcomes = run_step(
        venv, deps, manifest_for(sa_files), index_url, "9.0", monkeypatch, tmp_path, fixtures
    )
    xformers = by_name(outcomes)["xformers"]
    assert xformers.status == "skipped"
    assert "needs torch==2.10.0" in xformers.reason
    assert (
        inspect_venv_torch(venv).pins
        == before
        == {"torch": "2.9.1+cu128", "torchvision": "0.24.1", "torchaudio": "2.9.1"}
    )
    assert "xformers" not in installed_distributions(venv.parent.parent, "linux")


def test_executor_does_what_the_dry_run_planned(
    tmp_path: Path, fixtures: Fixtures, wheel_server, sa_files
) -> None:
    server, index_url = wheel_server
    config = write_config(
        tmp_path / "deps.json",
        fixtures,
        optimizations=step10_config(server)["optimizations"],
        pip_packages=step10_config(server)["pip_packages"],
    )
    manifest = tmp_path / "tools_manifest.json"
    manifest.write_text(manifest_for(sa_files).model_dump_json())
    target = tmp_path / "inst"
    env = installer_env(fixtures, COMFY_INSTALL_CACHE_DIR=str(tmp_path / "cache"))
    args = [
        *install_args(target, config, index_url, "--tools-manifest", str(manifest)),
        "--gpu",
        "12.0",
        "--cuda-driver",
        "12.8",
    ]
    planned = run([*args, "--dry-run", "--json"], env)
    assert planned.returncode == 0, planned.stderr
    assert not target.exists()
    plan = json.loads(planned.stdout)["data"]
    done = run(args, env)
    assert done.returncode == 0, done.stderr
    recorded = read_state(target)["steps"]["optimizations"]["outputs"]["packages"]
    assert [(p["name"], p["action"] == "install") for p in plan["optimizations"]] == [
        (p["name"], p["status"] == "installed") for p in recorded
    ]
    assert {p["name"] for p in recorded if p["status"] == "installed"} == {
        "xformers",
        "triton",
        "sageattention2-sm120",
        "sageattention3",
    }
    status = run([cli_path(), "status", str(target), "--json"], env)
    assert "sageattention3" in status.stdout
    assert read_state(target)["steps"]["torch"]["outputs"]["torch"] == "2.9.1+cu128"


def test_a_package_already_in_the_venv_is_not_installed_again(
    venv: Path, wheel_server, sa_files, monkeypatch, tmp_path: Path, fixtures: Fixtures
) -> None:
    server, index_url = wheel_server
    uv = find_uv_binary()
    assert uv
    subprocess.run(
        [uv, "pip", "install", "-q", "--python", str(venv), "--offline", "--find-links",
         str(fixtures.links), "triton==3.5.1"],
        check=True, env=installer_env(fixtures),
    )  # fmt: skip
    outcomes = run_step(venv, step10_config(server), manifest_for(sa_files), index_url, "9.0",
                        monkeypatch, tmp_path, fixtures)  # fmt: skip
    triton = by_name(outcomes)["triton"]
    assert triton.status == "installed"
    assert triton.version == "3.5.1"
    assert server.requests_for("/simple/triton/") == []
    assert server.requests_for("/simple/xformers/") != []
