"""Fixtures of the end-to-end suites: one real install of ComfyUI per session."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.real import REAL_ENV, real_install_args


@pytest.fixture(scope="session")
def real_install(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One real install of ComfyUI v0.3.77 for the session."""
    target = tmp_path_factory.mktemp("real") / "inst"
    done = subprocess.run(
        real_install_args(target),
        env=REAL_ENV,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    yield target
