"""The real ComfyUI bundles (v0.33.0, the pin; v0.3.77, the old pin): where they are, how to
install and start them in tests."""

from __future__ import annotations

import fcntl
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from support.cli import BASE_PYTHON, REPO_ROOT, cli_path

BUNDLE_REF = "v0.33.0"
"""The pinned release (`comfyui.ref`): the default of every helper here."""
LEGACY_REF = "v0.3.77"
"""The old pin, which must keep installing and starting with the new torch."""
BUNDLES = {"v0.33.0": "comfyui-v0.33.0.bundle", "v0.3.77": "comfyui-v0.3.77.bundle"}
BUNDLE_NAME = BUNDLES[BUNDLE_REF]
FIXTURE_FOLDERS = [
    REPO_ROOT.parent / "shared" / "fixtures",
    REPO_ROOT / "shared" / "fixtures",
    Path("/work/shared/fixtures"),
]
BUNDLE_CANDIDATES = [folder / BUNDLE_NAME for folder in FIXTURE_FOLDERS]


def find_bundle(ref: str = BUNDLE_REF) -> Path | None:
    """A ComfyUI bundle: for the pinned ref COMFYUI_BUNDLE first, else the fixtures folder."""
    override = os.environ.get("COMFYUI_BUNDLE") if ref == BUNDLE_REF else None
    candidates = [Path(override)] if override else [f / BUNDLES[ref] for f in FIXTURE_FOLDERS]
    return next((candidate for candidate in candidates if candidate.is_file()), None)


def bundle_path(ref: str = BUNDLE_REF) -> Path:
    """The ComfyUI bundle of ``ref``, or a skip of the test that needs it."""
    found = find_bundle(ref)
    if found is not None:
        return found
    pytest.skip(
        f"the real ComfyUI bundle ({BUNDLES[ref]}) is not on this machine; "
        "set COMFYUI_BUNDLE to run the real end-to-end tests"
    )


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def real_install_args(target: Path, ref: str = BUNDLE_REF) -> list[str]:
    """The command line of the real install of ComfyUI ``ref`` into ``target``."""
    return [
        cli_path(),
        "install",
        str(target),
        "--gpu",
        "none",
        "--torch-index",
        "default",
        "--comfyui-url",
        str(bundle_path(ref)),
        "--comfyui-ref",
        ref,
        "--python",
        BASE_PYTHON,
    ]


def real_env() -> dict[str, str]:
    """The environment of the real installs and everything run on them: no colours, no
    Python downloads, and bytecode caching on, as on a user's machine.

    A PYTHONDONTWRITEBYTECODE of the test run's own (some dev containers set it) is dropped:
    with it every ComfyUI start on the shared real installs compiled its ~7,000 modules again,
    11 of its 17 s on two cores. CI runs the suite in a clean environment (`env -i`,
    bench/debian_readme.sh), where it was never set; `bench/run.py` drops it the same way.
    """
    env = dict(os.environ, NO_COLOR="1", UV_PYTHON_DOWNLOADS="never")
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


REAL_ENV = real_env()


def shared_folder(factory: pytest.TempPathFactory) -> Path:
    """The run's common temp folder: the same for every xdist worker."""
    base = factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@contextmanager
def shared_install_lock(factory: pytest.TempPathFactory, name: str) -> Iterator[None]:
    """Hold the file lock of the shared install ``name`` (installs on it must not overlap)."""
    with (shared_folder(factory) / f"{name}.lock").open("w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(guard, fcntl.LOCK_UN)
