"""Safe file names from untrusted text (a URL, a server header, a manifest).

[`safe_filename`][installer.core.filenames.safe_filename] is a pure function of a string, so the
planner (which checks manifest file names) and the downloader (which names what a server sends)
share one rule. Imports nothing from the installer.
"""

from __future__ import annotations

import re
import unicodedata

_DRIVE = re.compile(r"^[A-Za-z]:")
_WINDOWS_INVALID = re.compile(r'[<>:"|?*]')
_RESERVED_STEMS = frozenset(
    {"CON", "PRN", "AUX", "NUL"}
    | {f"{port}{n}" for port in ("COM", "LPT") for n in "0123456789\u00b9\u00b2\u00b3"}
)
_MAX_NAME_BYTES = 200
_MAX_SUFFIX_CHARS = 20
_FALLBACK_NAME = "download"


def safe_filename(name: str) -> str:
    r"""Return a file name that is safe to create inside a folder on any OS.

    Keeps only the last path component (`/`, `\\` and drive letters removed, so
    `../../etc/passwd` gives `passwd`), drops control and format characters,
    replaces characters Windows forbids (`<>:"|?*`) with `_`, strips leading
    and trailing dots and spaces, prefixes reserved Windows device names
    (`CON`, `NUL.txt`, `com1`, ...) with `_`, and shortens names longer than
    200 UTF-8 bytes while keeping a short extension.

    Args:
        name: A name from a URL path, a `Content-Disposition` header or a
            manifest.

    Returns:
        A non-empty name without path separators; `download` when nothing
        usable is left.
    """
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = _DRIVE.sub("", name)
    name = "".join(ch for ch in name if unicodedata.category(ch) not in ("Cc", "Cf", "Cs"))
    name = _WINDOWS_INVALID.sub("_", name).strip(" .")
    if not name:
        return _FALLBACK_NAME
    if name.split(".", 1)[0].rstrip(" ").upper() in _RESERVED_STEMS:
        name = "_" + name
    return _shorten(name, _MAX_NAME_BYTES).rstrip(" .")


def _shorten(name: str, limit: int) -> str:
    """Cut ``name`` to ``limit`` UTF-8 bytes, keeping a short extension."""
    if len(name.encode()) <= limit:
        return name
    stem, dot, suffix = name.rpartition(".")
    if not dot or not stem or len(suffix) > _MAX_SUFFIX_CHARS:
        stem, suffix = name, ""
    tail = f".{suffix}" if suffix else ""
    room = limit - len(tail.encode())
    return stem.encode()[:room].decode(errors="ignore") + tail
