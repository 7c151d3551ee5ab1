"""This tool's own wheel for an image, found without asking: built from its source, or repacked.

An image installs the comfy-install that made its context, from a wheel in the context.
Where the running comfy-install came from decides how that wheel is made:

1. It runs from a source checkout (`src/installer` of a comfy-install checkout, an editable
   install included): `uv build --wheel` there.
2. It was installed from a local wheel file (PEP 610's `direct_url.json` names it) that is
   still there and holds the installed files: that wheel.
3. It was installed from a local directory (`pip install .`, which `direct_url.json` also
   names): `uv build --wheel` in that directory, kept only when the wheel holds the files
   installed (the checkout may have moved on since, or be gone).
4. Otherwise (installed from an index, or the file or directory changed): the installed files,
   as the distribution's `RECORD` lists them, repacked into a wheel; what runs is what the
   image gets.

Only where none of these works (no installed metadata, no `RECORD`, a file gone) does the
user have to pass `--wheel`. Every wheel made here is the same bytes for the same files
(sorted entries, fixed times and modes).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path

from installer.core.errors import CommandFailedError, UsageError
from installer.image.containerfile import SOURCE_DATE_EPOCH

DISTRIBUTION = "comfy-install"
# What an installer writes into .dist-info (PEP 376, PEP 610, PEP 627): not part of a wheel.
INSTALLER_FILES = frozenset({"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"})


@dataclass(frozen=True)
class ToolWheel:
    """This tool's wheel and where it came from."""

    path: Path
    """The wheel file."""
    origin: str
    """How it was found, for people (`built from the checkout /src/comfy-install`)."""


def checkout_root() -> Path | None:
    """Return the source checkout this tool runs from, or None when it runs from an install."""
    import installer

    return source_root(Path(installer.__file__).resolve().parents[2])


def source_root(folder: Path) -> Path | None:
    """Return ``folder`` when it holds comfy-install's source (its `pyproject.toml`), else None.

    Args:
        folder: A folder that may be a checkout of this tool.
    """
    pyproject = folder / "pyproject.toml"
    try:
        text = pyproject.read_text(encoding="utf-8")
    except OSError:
        return None
    return folder if f'name = "{DISTRIBUTION}"' in text else None


def tool_wheel(out_dir: Path, version: str) -> ToolWheel:
    """Return this tool's wheel, made in ``out_dir`` (see the module's docstring for how).

    Args:
        out_dir: Where a built or repacked wheel is written.
        version: This tool's version (names the wheel).

    Raises:
        UsageError: No source, wheel or installed files of this tool can be found: the user
            passes `--wheel FILE`.
        CommandFailedError: `uv build` failed in this tool's own checkout.
    """
    root = checkout_root()
    if root is not None:
        return ToolWheel(build_wheel(root, out_dir, version), f"built from the checkout {root}")
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        dist = distribution(DISTRIBUTION)
    except PackageNotFoundError:
        raise _not_found(version, f"no installed {DISTRIBUTION} metadata") from None
    site = Path(str(dist.locate_file(""))).resolve()
    try:
        installed = installed_files(site, [str(p) for p in dist.files or []])
    except OSError as exc:
        raise _not_found(version, f"an installed file is gone ({exc})") from None
    if not installed:
        raise _not_found(version, f"its installed files are not listed (no RECORD in {site})")
    origin = _direct_url(dist.read_text("direct_url.json"))
    if origin is not None and origin.suffix == ".whl" and origin.is_file():
        if wheel_files(origin) == installed:
            copy = out_dir / wheel_name(version)
            copy.write_bytes(origin.read_bytes())
            return ToolWheel(copy, f"the wheel it was installed from ({origin})")
    elif origin is not None and source_root(origin) is not None:
        try:
            built = build_wheel(origin, out_dir, version)
        except (CommandFailedError, OSError):
            built = None
        if built is not None and wheel_files(built) == installed:
            return ToolWheel(built, f"built from {origin}, the folder it was installed from")
        if built is not None:
            built.unlink()
    wheel = repack(site, [str(p) for p in dist.files or []], out_dir, version)
    note = f"; {origin}, where it was installed from, no longer holds them" if origin else ""
    return ToolWheel(wheel, f"repacked from the installed files in {site}{note}")


def _not_found(version: str, why: str) -> UsageError:
    return UsageError(
        "This comfy-install runs neither from a source checkout nor from an install whose "
        f"files can be found ({why}), so it cannot make its own wheel for the image.",
        f"Pass the wheel of comfy-install {version} with --wheel FILE (`uv build --wheel` in "
        f"a checkout of {version} makes it), or reinstall comfy-install "
        "(`python -m pip install --force-reinstall .` in its checkout).",
    )


def _direct_url(text: str | None) -> Path | None:
    """The local file or folder that PEP 610's `direct_url.json` names, or None."""
    if not text:
        return None
    try:
        url = json.loads(text).get("url", "")
    except (ValueError, AttributeError):
        return None
    if not isinstance(url, str) or not url.startswith("file:"):
        return None
    from urllib.parse import urlsplit
    from urllib.request import url2pathname

    return Path(url2pathname(urlsplit(url).path))


def wheel_name(version: str) -> str:
    """The file name of this tool's wheel (`comfy_install-0.1.0-py3-none-any.whl`).

    Args:
        version: This tool's version.
    """
    return f"comfy_install-{version}-py3-none-any.whl"


def _payload(name: str) -> bool:
    """True for a wheel entry that is a file of the package (not .dist-info, not bytecode)."""
    parts = name.split("/")
    return not parts[0].endswith(".dist-info") and "__pycache__" not in parts


def _digest(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def installed_files(site: Path, listed: list[str]) -> dict[str, str]:
    """Return the installed package files (not .dist-info, not bytecode) and their hashes.

    Args:
        site: The folder the distribution is installed into (its `RECORD` is relative to it).
        listed: The paths its `RECORD` lists.

    Raises:
        OSError: A listed file cannot be read.
    """
    found: dict[str, str] = {}
    for name in listed:
        name = name.replace(os.sep, "/")
        if name.startswith("../") or name.startswith("/") or not _payload(name):
            continue  # console scripts outside the site folder are made by the installer
        found[name] = _digest((site / name).read_bytes())
    return found


def wheel_files(wheel: Path) -> dict[str, str]:
    """Return the package files of a wheel (not .dist-info) and their hashes.

    Args:
        wheel: A wheel file.
    """
    with zipfile.ZipFile(wheel) as archive:
        return {
            info.filename: _digest(archive.read(info))
            for info in archive.infolist()
            if not info.is_dir() and _payload(info.filename)
        }


def repack(site: Path, listed: list[str], out_dir: Path, version: str) -> Path:
    """Pack the installed distribution into a wheel again: its files and its own .dist-info.

    The installer's own records (`RECORD`, `INSTALLER`, `REQUESTED`, `direct_url.json`) and
    bytecode are left out, and a new `RECORD` is written; entries are sorted, with fixed times
    and modes, so the same installed files give the same bytes.

    Args:
        site: The folder the distribution is installed into.
        listed: The paths its `RECORD` lists.
        out_dir: Where the wheel is written.
        version: This tool's version (names the wheel).

    Raises:
        UsageError: A listed file is gone (`--wheel` is then the way).
    """
    names = [n.replace(os.sep, "/") for n in listed]
    keep = sorted(
        n
        for n in names
        if not n.startswith(("../", "/"))
        and "__pycache__" not in n.split("/")
        and n.split("/")[-1] not in INSTALLER_FILES
    )
    info_dirs = sorted({n.split("/")[0] for n in keep if n.split("/")[0].endswith(".dist-info")})
    if len(info_dirs) != 1:
        raise _not_found(version, f"{len(info_dirs)} .dist-info folders in its RECORD")
    package = [n for n in keep if not n.startswith(info_dirs[0] + "/")]
    metadata = [n for n in keep if n.startswith(info_dirs[0] + "/")]
    wheel = out_dir / wheel_name(version)
    partial = wheel.with_suffix(".part")
    records: list[str] = []
    try:
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
            for name in [*package, *metadata]:
                data = (site / name).read_bytes()
                archive.writestr(_entry(name), data)
                records.append(f"{name},{_digest(data)},{len(data)}")
            record = f"{info_dirs[0]}/RECORD"
            archive.writestr(_entry(record), "".join(f"{r}\n" for r in [*records, f"{record},,"]))
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise _not_found(version, f"an installed file is gone ({exc})") from None
    partial.replace(wheel)
    return wheel


def _entry(name: str) -> zipfile.ZipInfo:
    import time

    info = zipfile.ZipInfo(name, time.gmtime(SOURCE_DATE_EPOCH)[:6])
    info.external_attr = 0o100644 << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    return info


def build_wheel(root: Path, out_dir: Path, version: str) -> Path:
    """Build this tool's wheel from a checkout with `uv build --wheel`.

    The build runs with `SOURCE_DATE_EPOCH` set, so the wheel of one checkout is the same bytes
    each time.

    Args:
        root: The checkout (its `pyproject.toml` names comfy-install).
        out_dir: Where the wheel is written.
        version: This tool's version (names the wheel).

    Raises:
        CommandFailedError: `uv build` failed, or built another version.
    """
    from uv import find_uv_bin

    env = {**os.environ, "SOURCE_DATE_EPOCH": str(SOURCE_DATE_EPOCH)}
    done = subprocess.run(
        [str(find_uv_bin()), "build", "--wheel", "--out-dir", str(out_dir), str(root)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if done.returncode != 0:
        raise CommandFailedError("uv build --wheel", done.returncode, done.stdout + done.stderr)
    wheel = out_dir / wheel_name(version)
    if not wheel.is_file():
        raise CommandFailedError(
            "uv build --wheel", 1, f"{wheel.name} was not built:\n{done.stderr}"
        )
    return wheel
