"""The command line, in-process (typer's CliRunner) and as the installed console script.

The subprocess runs are started all at once by one module fixture (each pays
Python's start-up), then each test reads its own result.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from installer import __version__

INSTALL_OPTIONS = (
    "--dry-run", "--json", "--config", "--gpu", "--cuda-driver", "--platform", "--python",
    "--comfyui-ref", "--comfyui-url", "--torch-index", "--index-url", "--extra-index-url",
    "--find-links", "--only", "--skip", "--force", "--offline", "--verbose", "--quiet",
)  # fmt: skip
HEAVY = ("httpx", "pydantic", "pynvml")

IMPORT_CHECK = f"""
import contextlib, io, json, sys
import installer.cli.app
after_import = sorted(m for m in {HEAVY!r} if m in sys.modules)
from installer.cli.app import app
out = io.StringIO()
with contextlib.redirect_stdout(out):
    try:
        code = app(["--help"], standalone_mode=False)
    except SystemExit as exc:
        code = exc.code
print(json.dumps({{
    "after_import": after_import,
    "after_help": sorted(m for m in {HEAVY!r} if m in sys.modules),
    "code": code,
    "help": out.getvalue(),
}}))
"""


def console_script() -> Path:
    found = Path(sys.executable).parent / "comfy-install"
    if found.is_file():
        return found
    which = shutil.which("comfy-install")
    assert which, "the comfy-install console script is not installed"
    return Path(which)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run every subprocess case in parallel; return name -> (result, context)."""
    root = tmp_path_factory.mktemp("cli")
    exe = str(console_script())
    bad = root / "bad.json"
    bad.write_text('{"schema_version": 1, "colour": }', encoding="utf-8")
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
    cases: dict[str, list[str]] = {
        "version": [exe, "--version"],
        "module-version": [sys.executable, "-m", "installer", "--version"],
        "help": [exe, "--help"],
        "install-help": [exe, "install", "--help"],
        "imports": [sys.executable, "-c", IMPORT_CHECK],
        "dry-run": [exe, "install", str(root / "plain" / "x"), "--dry-run"],
        "bad-config-json": [
            exe, "install", str(root / "bad" / "x"), "--dry-run", "--json", "--config", str(bad),
        ],
    }  # fmt: skip
    procs = {
        name: subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=root
        )
        for name, args in cases.items()
    }
    results = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=120)
        results[name] = subprocess.CompletedProcess(cases[name], proc.returncode, stdout, stderr)
    return {"root": root, "bad": bad, **results}


# --- in-process -----------------------------------------------------------------------


def test_version(cli: Callable[..., Any]) -> None:
    result = cli("--version")
    assert result.exit_code == 0
    assert result.stdout == f"comfy-install {__version__}\n"


def test_help_lists_the_commands(cli: Callable[..., Any]) -> None:
    result = cli("--help")
    assert result.exit_code == 0
    for command in ("install", "doctor", "status", "config"):
        assert command in result.stdout


def test_install_help_lists_the_options(cli: Callable[..., Any]) -> None:
    result = cli("install", "--help")
    assert result.exit_code == 0
    for option in INSTALL_OPTIONS:
        assert option in result.stdout, option


def test_config_help(cli: Callable[..., Any]) -> None:
    result = cli("config", "--help")
    assert result.exit_code == 0
    assert "schema" in result.stdout
    assert "validate" in result.stdout


def test_unknown_option_is_exit_2(cli: Callable[..., Any]) -> None:
    result = cli("install", "--dry-run", "--no-such-option")
    assert result.exit_code == 2


def test_dry_run_creates_nothing_in_process(cli: Callable[..., Any], tmp_path: Path) -> None:
    target = tmp_path / "deep" / "x"
    result = cli("install", target, "--dry-run", "--gpu", "none")
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "deep").exists()
    assert list(tmp_path.iterdir()) == []


# --- the installed console script ------------------------------------------------------


def test_script_version(runs: dict[str, Any]) -> None:
    for name in ("version", "module-version"):
        result = runs[name]
        assert result.returncode == 0, result.stderr
        assert result.stdout == f"comfy-install {__version__}\n"
        assert result.stderr == ""


def test_script_help(runs: dict[str, Any]) -> None:
    result = runs["help"]
    assert result.returncode == 0, result.stderr
    assert "Install ComfyUI" in result.stdout
    for command in ("install", "doctor", "status", "config"):
        assert command in result.stdout
    install = runs["install-help"]
    assert install.returncode == 0, install.stderr
    for option in INSTALL_OPTIONS:
        assert option in install.stdout, option


def test_help_imports_no_heavy_module(runs: dict[str, Any]) -> None:
    result = runs["imports"]
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["code"] == 0
    assert "install" in report["help"]
    assert report["after_import"] == []
    assert report["after_help"] == []


def test_script_dry_run_creates_nothing(runs: dict[str, Any]) -> None:
    result = runs["dry-run"]
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    root: Path = runs["root"]
    assert not (root / "plain").exists()
    assert "verify" in result.stderr + result.stdout


def test_script_bad_config(runs: dict[str, Any]) -> None:
    bad: Path = runs["bad"]
    result = runs["bad-config-json"]
    assert result.returncode == 2
    document = json.loads(result.stdout)
    assert document["status"] == "error"
    assert document["exit_code"] == 2
    assert document["errors"][0]["code"] == "config"
    assert str(bad) in document["errors"][0]["message"]
    assert "line 1 column 33" in document["errors"][0]["message"]
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(f"error: {bad} is not valid JSON")
