"""The runtime tuning shim in the venv: its six files, their state, and writing them.

`launch` copies [`installer.launch.shim_module`][installer.launch.shim_module] into
the venv's site-packages as `comfy_install_tuning.py`, next to a one-line
`comfy_install_tuning.pth` that activates it only when `COMFY_INSTALL_TUNING` is
set, and the attention router [`installer.attention.shim.router`][installer.attention.shim.router]
as `comfy_install_attention.py`, with its SDPA back ends
[`sdpa`][installer.attention.shim.sdpa] as `comfy_install_sdpa.py` and its SageAttention
route [`sage`][installer.attention.shim.sage] as `comfy_install_sage.py`, and the routing
table's schema both read, [`routes`][installer.attention.shim.routes], as
`comfy_install_routes.py`. The modules
are read as text from the package, never imported here. A file of those names
that comfy-install did not write is never replaced.
"""

from __future__ import annotations

from pathlib import Path

from installer.edges.state import atomic_write_text
from installer.plan.launch import SHIM_MODULE, ShimStatus
from installer.plan.launch_settings import MARKER_ENV

SHIM_MARKER = "# comfy-install runtime tuning shim"
ROUTER_MARKER = "# comfy-install attention router"
ROUTER_MODULE = "comfy_install_attention"
SDPA_MODULE = "comfy_install_sdpa"
SDPA_MARKER = "# comfy-install SDPA back ends"
SAGE_MODULE = "comfy_install_sage"
SAGE_MARKER = "# comfy-install SageAttention routes"
ROUTES_MODULE = "comfy_install_routes"
ROUTES_MARKER = "# comfy-install attention routes schema"


def _source(package: str, name: str) -> str:
    from importlib.resources import files

    return files(package).joinpath(name).read_text(encoding="utf-8")


def shim_source() -> str:
    """Return the source of the tuning shim as it is written into the venv."""
    return _source("installer.launch", "shim_module.py")


def router_source() -> str:
    """Return the source of the attention router as it is written into the venv."""
    return _source("installer.attention.shim", "router.py")


def sdpa_source() -> str:
    """Return the source of the router's SDPA back ends as it is written into the venv."""
    return _source("installer.attention.shim", "sdpa.py")


def sage_source() -> str:
    """Return the source of the router's SageAttention route as it is written into the venv."""
    return _source("installer.attention.shim", "sage.py")


def routes_source() -> str:
    """Return the source of the routes schema (the router and the shim import it), for the venv."""
    return _source("installer.attention.shim", "routes.py")


def shim_pth() -> str:
    """Return the `.pth` file that activates the shim only when the launcher asks for it."""
    return (
        f"{SHIM_MARKER}: starts {SHIM_MODULE} only under `comfy-install launch`.\n"
        f"import os; os.environ.get({MARKER_ENV!r}) and __import__({SHIM_MODULE!r}).activate()\n"
    )


def shim_paths(site_packages: Path) -> tuple[Path, Path, Path]:
    """Return the shim module, its `.pth` file and the attention router inside ``site_packages``.

    Args:
        site_packages: The venv's site-packages folder.

    Returns:
        ``(module, pth, router)``: where the three files are, whether or not they exist.
    """
    return (
        site_packages / f"{SHIM_MODULE}.py",
        site_packages / f"{SHIM_MODULE}.pth",
        site_packages / f"{ROUTER_MODULE}.py",
    )


def _wanted(site_packages: Path) -> dict[Path, tuple[str, str]]:
    module, pth, router = shim_paths(site_packages)
    return {
        module: (shim_source(), SHIM_MARKER),
        pth: (shim_pth(), SHIM_MARKER),
        router: (router_source(), ROUTER_MARKER),
        site_packages / f"{SDPA_MODULE}.py": (sdpa_source(), SDPA_MARKER),
        site_packages / f"{SAGE_MODULE}.py": (sage_source(), SAGE_MARKER),
        site_packages / f"{ROUTES_MODULE}.py": (routes_source(), ROUTES_MARKER),
    }


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
    current, missing = True, True
    for path, (wanted, marker) in _wanted(site_packages).items():
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            current = False
            continue
        except OSError:
            return "foreign"
        if not text.startswith(marker):
            return "foreign"
        missing = False
        current = current and text == wanted
    if current:
        return "current"
    return "missing" if missing else "outdated"


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
        for path, (text, _) in _wanted(site_packages).items():
            atomic_write_text(path, text)
        return "current"
    return status
