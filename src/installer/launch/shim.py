"""The runtime tuning shim in the venv: its two files, their state, and writing them.

`launch` copies [`installer.launch.shim_module`][installer.launch.shim_module] into
the venv's site-packages as `comfy_install_tuning.py`, next to a one-line
`comfy_install_tuning.pth` that activates it only when `COMFY_INSTALL_TUNING` is
set. The module is read as text from the package, never imported here. A file of
that name that comfy-install did not write is never replaced.
"""

from __future__ import annotations

from pathlib import Path

from installer.edges.state import atomic_write_text
from installer.plan.launch import SHIM_MODULE, ShimStatus
from installer.plan.launch_settings import MARKER_ENV

SHIM_MARKER = "# comfy-install runtime tuning shim"


def shim_source() -> str:
    """Return the source of the tuning shim as it is written into the venv."""
    from importlib.resources import files

    return files("installer.launch").joinpath("shim_module.py").read_text(encoding="utf-8")


def shim_pth() -> str:
    """Return the `.pth` file that activates the shim only when the launcher asks for it."""
    return (
        f"{SHIM_MARKER}: starts {SHIM_MODULE} only under `comfy-install launch`.\n"
        f"import os; os.environ.get({MARKER_ENV!r}) and __import__({SHIM_MODULE!r}).activate()\n"
    )


def shim_paths(site_packages: Path) -> tuple[Path, Path]:
    """Return the shim module and its `.pth` file inside ``site_packages``.

    Args:
        site_packages: The venv's site-packages folder.

    Returns:
        ``(module, pth)``: where the two files are, whether or not they exist.
    """
    return site_packages / f"{SHIM_MODULE}.py", site_packages / f"{SHIM_MODULE}.pth"


def shim_status(site_packages: Path | None) -> ShimStatus:
    """Say whether the venv holds the current tuning shim (reads only).

    Args:
        site_packages: The venv's site-packages, or None when it has none.

    Returns:
        ``current``, ``missing``, ``outdated`` (ours, older), ``foreign`` (a
        file of that name not written by comfy-install) or ``unavailable``.
    """
    if site_packages is None or not site_packages.is_dir():
        return "unavailable"
    wanted = (shim_source(), shim_pth())
    found: list[str | None] = []
    for path in shim_paths(site_packages):
        try:
            found.append(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            found.append(None)
        except OSError:
            return "foreign"
    if any(text is not None and not text.startswith(SHIM_MARKER) for text in found):
        return "foreign"
    if tuple(found) == wanted:
        return "current"
    return "missing" if all(text is None for text in found) else "outdated"


def ensure_shim(site_packages: Path) -> ShimStatus:
    """Write the tuning shim into the venv when it is missing or outdated (atomically).

    A file of the same name that comfy-install did not write is never replaced.

    Args:
        site_packages: The venv's site-packages.

    Returns:
        ``current`` after writing (or when nothing needed writing), else the
        status that prevented it (``foreign`` or ``unavailable``).

    Raises:
        EnvironmentUnsupportedError: The folder is not writable.
    """
    status = shim_status(site_packages)
    if status in ("missing", "outdated"):
        module, pth = shim_paths(site_packages)
        atomic_write_text(module, shim_source())
        atomic_write_text(pth, shim_pth())
        return "current"
    return status
