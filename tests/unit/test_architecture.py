"""The package's shape: no module grows past what a reader can hold (issue 16).

The import rules (layers, a pure planner, no cycles) are import-linter contracts in
pyproject.toml, checked by `uv run lint-imports` in .ci/run; this file checks what
import-linter cannot: module size, and that every package says what lives in it.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

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


@pytest.mark.parametrize(
    ("package", "shared"),
    [
        ("cli", {"__init__", "app", "common", "options", "render", "tune_render"}),
        ("commands", {"__init__", "executor", "generations", "planning"}),
    ],
)
def test_every_command_module_is_in_the_independence_contract(
    package: str, shared: set[str]
) -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    pyproject = tomllib.loads((PACKAGE.parents[1] / "pyproject.toml").read_text(encoding="utf-8"))
    contracts = pyproject["tool"]["importlinter"]["contracts"]
    [independent] = [
        c
        for c in contracts
        if c["type"] == "independence" and c["modules"][0].startswith(f"installer.{package}.")
    ]
    commands = {f"installer.{package}.{p.stem}" for p in (PACKAGE / package).glob("*.py")} - {
        f"installer.{package}.{name}" for name in shared
    }
    assert commands == set(independent["modules"])


# The terminal is drawn at the edge: the CLI, and the logger it hands down. benchmark/ keeps
# its report until issue 30's rework lands (tune's renderer is the CLI's now).
RICH_ALLOWED = ("cli/", "core/log.py", "benchmark/render.py")


def _imports_rich(path: Path) -> bool:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "rich" for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "rich":
            return True
    return False


def test_only_the_edge_renders_with_rich() -> None:
    rendering = {
        str(path.relative_to(PACKAGE)).replace("\\", "/") for path in MODULES if _imports_rich(path)
    }
    outside = sorted(r for r in rendering if not r.startswith(RICH_ALLOWED))
    assert outside == []
    assert "cli/render.py" in rendering  # the check sees imports inside functions too


def test_the_cli_logger_shows_download_bars() -> None:
    from installer.cli.common import make_logger
    from installer.cli.render import TransferBars
    from installer.core.downloads import DownloadRequest

    log = make_logger()
    assert log.transfer_display is not None
    request = DownloadRequest(url="https://127.0.0.1/x.bin", dest_dir=Path("models"))
    assert isinstance(log.transfer_display([request]), TransferBars)


def _contracts() -> list[dict[str, Any]]:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    pyproject = tomllib.loads((PACKAGE.parents[1] / "pyproject.toml").read_text(encoding="utf-8"))
    contracts: list[dict[str, Any]] = pyproject["tool"]["importlinter"]["contracts"]
    return contracts


def test_every_package_is_in_a_layer_and_checked_for_cycles_inside() -> None:
    # Between the top-level packages the layers contract forbids cycles; inside each one
    # the acyclic contract does: a new package left out of either would escape both.
    packages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    [acyclic] = [c for c in _contracts() if c["type"] == "acyclic_siblings"]
    assert set(acyclic["ancestors"]) == {f"installer.{name}" for name in packages}
    [layers] = [c for c in _contracts() if c["type"] == "layers"]
    named = {
        part.strip().split(".")[0]
        for layer in layers["layers"]
        for part in layer.replace(":", "|").split("|")
    }
    assert packages <= named, sorted(packages - named)
