"""The package's shape: no module grows past what a reader can hold (issue 16).

The import rules (layers, a pure planner, no cycles) are import-linter contracts in
pyproject.toml, checked by `uv run lint-imports` in .ci/run; this file checks what
import-linter cannot: module size, and that every package says what lives in it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import installer

PACKAGE = Path(installer.__file__).parent
MAX_LINES = 600
MODULES = sorted(PACKAGE.rglob("*.py"))


def test_the_package_is_found() -> None:
    assert len(MODULES) > 30


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_is_longer_than_600_lines(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(PACKAGE)} has {lines} lines (limit {MAX_LINES})"


@pytest.mark.parametrize(
    "path",
    [p for p in MODULES if p.name == "__init__.py" and p.parent != PACKAGE],
    ids=lambda p: str(p.parent.relative_to(PACKAGE)),
)
def test_every_subpackage_says_what_lives_there_and_what_it_may_import(path: Path) -> None:
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    assert "May import" in doc, f"{path.relative_to(PACKAGE)}: docstring lacks 'May import'"


def test_every_command_module_is_in_the_independence_contract() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    pyproject = tomllib.loads((PACKAGE.parents[1] / "pyproject.toml").read_text(encoding="utf-8"))
    contracts = pyproject["tool"]["importlinter"]["contracts"]
    [independent] = [c for c in contracts if c["type"] == "independence"]
    shared = {"__init__", "app", "common", "options", "render"}
    commands = {f"installer.cli.{p.stem}" for p in (PACKAGE / "cli").glob("*.py")} - {
        f"installer.cli.{name}" for name in shared
    }
    assert commands == set(independent["modules"])
