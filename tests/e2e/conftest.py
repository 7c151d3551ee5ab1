"""Fixtures of the end-to-end suites: one real install of each ComfyUI release per session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from support.cli import run
from support.real import (
    BUNDLE_REF,
    LEGACY_REF,
    REAL_ENV,
    real_install_args,
    shared_folder,
    shared_install_lock,
)


def _shared_install(factory: pytest.TempPathFactory, name: str, ref: str) -> Path:
    """Install ComfyUI ``ref`` once into the run's common temp folder (see real_install)."""
    target = shared_folder(factory) / name / "inst"
    target.parent.mkdir(parents=True, exist_ok=True)
    with shared_install_lock(factory, name):
        done = run(real_install_args(target, ref), REAL_ENV, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    return target


@pytest.fixture(scope="session")
def real_install(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One real install of the pinned ComfyUI (v0.33.0), shared by every test (and xdist worker).

    Under pytest-xdist each worker runs this fixture; they share one DIR in the
    run's common temp folder, one after the other under a file lock: the first
    installs, the others find the install done (a re-run is a no-op by design).
    """
    yield _shared_install(tmp_path_factory, "real", BUNDLE_REF)


@pytest.fixture(scope="session")
def real_install_033(real_install: Path) -> Iterator[Path]:
    """ComfyUI v0.33.0 (with comfy-kitchen): the pinned release, so the same install.

    Tests that launch from it while others do work in a DIR of their own over it (its venv
    and ComfyUI linked), as the attention tests do.
    """
    yield real_install


@pytest.fixture(scope="session")
def real_install_0377(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One real install of ComfyUI v0.3.77 (the old pin) with the new torch, shared the same way."""
    yield _shared_install(tmp_path_factory, "real0377", LEGACY_REF)
