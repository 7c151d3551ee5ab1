"""The tests' own helpers in tests/support/ are used: a helper nothing calls is dead code.

Each public function and class of a module there must be named somewhere else in tests/ or
bench/ (a fixture is called by name, so `conftest.py` files are read too). A helper that
went unused when its last caller changed is removed, not kept in case.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
SOURCES = sorted([*TESTS.rglob("*.py"), *(TESTS.parent / "bench").rglob("*.py")])
SUPPORT = sorted((TESTS / "support").glob("*.py"))


def public_names(module: Path) -> list[str]:
    """The module's top-level functions and classes whose names do not start with `_`."""
    tree = ast.parse(module.read_text(encoding="utf-8"))
    return [
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        and not node.name.startswith("_")
    ]


@cache
def everything() -> str:
    """Every source file of tests/ and bench/, one after the other (the definitions too)."""
    return "\n".join(path.read_text(encoding="utf-8") for path in SOURCES)


@pytest.mark.parametrize("module", SUPPORT, ids=lambda path: path.name)
def test_every_support_helper_has_a_user(module: Path) -> None:
    unused = [
        name for name in public_names(module) if len(re.findall(rf"\b{name}\b", everything())) <= 1
    ]
    assert unused == [], f"{module.name}: no test or benchmark uses {', '.join(unused)}"
