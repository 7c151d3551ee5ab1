"""Fixtures of the end-to-end suites: one real install of ComfyUI per session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from support.cli import run
from support.real import REAL_ENV, real_install_args


@pytest.fixture(scope="session")
def real_install(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One real install of ComfyUI v0.33.0, shared by every test (and xdist worker).

    Under pytest-xdist each worker runs this fixture; they share one DIR in the
    run's common temp folder, one after the other under a file lock: the first
    installs, the others find the install done (a re-run is a no-op by design).
    """
    import fcntl
    import os

    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    target = shared / "real" / "inst"
    target.parent.mkdir(parents=True, exist_ok=True)
    with (shared / "real.lock").open("w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        done = run(real_install_args(target), REAL_ENV, timeout=900)
        fcntl.flock(guard, fcntl.LOCK_UN)
    assert done.returncode == 0, done.stderr[-4000:]
    yield target
