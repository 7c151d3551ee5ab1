"""The entry point answers `--version` and a cached `--help` importing nothing it does not need.

Start-up time itself is measured in bench/ (`bench/run.py --only cli`); this pins the cause:
which modules the two answers load beyond what Python's own start-up has loaded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from installer import __version__

# Run as the console script runs: import the entry, call main(), then list the new modules.
PROBE = """
import json, sys
before = set(sys.modules)
sys.argv = ["comfy-install", *json.loads(sys.argv[1])]
from installer.entry import main
try:
    main()
except SystemExit:  # typer ends the command groups' runs so
    pass
print("\\n" + json.dumps(sorted(set(sys.modules) - before)))
"""


def loaded(arguments: list[str], env: dict[str, str]) -> tuple[str, list[str]]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(arguments)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    text, _, modules = done.stdout.removesuffix("\n").rpartition("\n")
    return text, json.loads(modules)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "COMFY_INSTALL_CACHE_DIR": str(tmp_path), "COLUMNS": "100"}


def test_version_loads_only_the_entry(env: dict[str, str]) -> None:
    text, modules = loaded(["--version"], env)
    assert text == f"comfy-install {__version__}\n"
    assert modules == ["installer", "installer.entry"]


def test_cached_help_loads_only_the_entry(env: dict[str, str], tmp_path: Path) -> None:
    first, rendered = loaded(["--help"], env)
    assert "installer.cli.app" in rendered, "the first --help renders through typer"
    [cache] = (tmp_path / "cli").glob("help-*-100-*.txt")
    assert cache.read_text(encoding="utf-8") == first
    second, modules = loaded(["--help"], env)
    assert second == first
    assert "install" in second and "doctor" in second
    assert modules == ["installer", "installer.entry"]


@pytest.mark.parametrize("group", ["nodes", "snapshot"])
def test_a_command_group_runs_alone_and_says_what_the_whole_app_says(
    group: str, env: dict[str, str]
) -> None:
    import contextlib
    import io

    from installer.cli.app import app

    text, modules = loaded([group, "--help"], env)
    assert f"installer.cli.{group}" in modules
    assert "installer.cli.app" not in modules  # nor the other commands' modules
    whole = io.StringIO()
    with contextlib.redirect_stdout(whole), contextlib.suppress(SystemExit):
        app([group, "--help"], prog_name="comfy-install")
    assert text == whole.getvalue()


def test_the_groups_run_alone_are_the_ones_the_app_mounts() -> None:
    import importlib

    from installer.cli.app import app
    from installer.entry import GROUPS

    mounted = {info.name: info.typer_instance for info in app.registered_groups}
    for name, (module, attribute) in GROUPS.items():
        assert mounted[name] is getattr(importlib.import_module(module), attribute)


def test_nodes_add_loads_no_planner_it_does_not_use(env: dict[str, str], tmp_path: Path) -> None:
    # DIR holds no install: the run stops at open_install, with add's module graph loaded.
    # What it must not pull in: the config and generation planners (about 40 ms of start-up,
    # `nodes add` meets no generation), and the resolution of everything together (only
    # when the install with the venv pinned fails).
    _, modules = loaded(["nodes", "add", str(tmp_path / "none"), str(tmp_path / "node")], env)
    assert "installer.commands.nodes" in modules
    unused = {
        "installer.core.config",
        "installer.plan.generations",
        "installer.plan.records",
        "installer.nodes.resolve",
        "installer.core.lockfile",
    }
    assert unused.isdisjoint(modules)
