"""Names and places taken from URLs and server headers.

The host and origin of a URL (the unit tokens are tied to), the file name in its path or in a
`Content-Disposition` header, and the check that a file stays inside its destination folder.
The names are cleaned with [`safe_filename`][installer.core.filenames.safe_filename].
"""

from __future__ import annotations

import re
import urllib.parse
from pathlib import Path

from installer.core.errors import DownloadError

_DISPOSITION_PARAM = re.compile(
    r";\s*([!#$%&'*+.^_`|~0-9A-Za-z-]+)\s*=\s*(\"(?:[^\"\\]|\\.)*\"|[^;]*)"
)


def content_disposition_filename(value: str | None) -> str | None:
    """Return the file name a `Content-Disposition` header proposes, uncleaned.

    `filename*=` (RFC 5987/6266, e.g. `UTF-8''na%C3%AFve.bin`) wins over
    `filename=`; quoted values are unescaped.

    Args:
        value: The header value, or `None`.

    Returns:
        The proposed name (pass it to
        [`safe_filename`][installer.core.filenames.safe_filename] before use), or
        `None` when the header names no file.
    """
    if not value:
        return None
    params: dict[str, str] = {}
    for key, raw in _DISPOSITION_PARAM.findall(value):
        raw = raw.strip()
        if raw.startswith('"') and raw.endswith('"') and len(raw) >= 2:
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        params.setdefault(key.lower(), raw)
    extended = params.get("filename*")
    if extended and extended.count("'") >= 2:
        charset, _lang, encoded = extended.split("'", 2)
        try:
            return urllib.parse.unquote(encoded, encoding=charset or "utf-8", errors="replace")
        except LookupError:
            pass
    return params.get("filename") or None


def ensure_within(base: Path, target: Path) -> Path:
    """Return ``target`` resolved, after checking that it lies inside ``base``.

    Symlinks are followed, so a link pointing out of ``base`` is caught too.

    Args:
        base: The folder that must contain the target.
        target: A path, absolute or relative to ``base``.

    Returns:
        The resolved target.

    Raises:
        DownloadError: The target resolves outside ``base``.
    """
    root = base.resolve()
    resolved = (root / target).resolve()
    if not resolved.is_relative_to(root):
        raise DownloadError(
            f"refusing to write {target}: it resolves to {resolved}, outside {root}",
            hint="A file name from the manifest or the server tried to leave the folder; "
            "check the manifest entry.",
        )
    return resolved


def url_host(url: str) -> str:
    """Return the lower-case host of ``url`` ('' when it has none).

    Args:
        url: Any URL.

    Returns:
        The host without a trailing dot, in lower case.
    """
    return (urllib.parse.urlsplit(url).hostname or "").rstrip(".").lower()


def url_origin(url: str) -> tuple[str, str, int | None]:
    """Return (scheme, host, port) of ``url``, the unit tokens are tied to.

    Args:
        url: Any URL.

    Returns:
        The lower-case scheme and host, and the port (`None` when not given).
    """
    parts = urllib.parse.urlsplit(url)
    return parts.scheme.lower(), url_host(url), parts.port


def url_name(url: str) -> str:
    """Return the last path segment of ``url``, percent-decoded ('' when none).

    Args:
        url: Any URL.

    Returns:
        The proposed file name, uncleaned.
    """
    path = urllib.parse.urlsplit(url).path
    return urllib.parse.unquote(path.rstrip("/").rsplit("/", 1)[-1])
