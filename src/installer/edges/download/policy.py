"""The download policy, checked before anything is fetched.

A file without a pinned sha256 is refused unless the caller allows unverified files, plain
`http://` is refused unless the sha256 is pinned, and a file name must be a plain, safe name.
"""

from __future__ import annotations

import re
import urllib.parse

from installer.core.downloads import DownloadRequest
from installer.core.errors import ConfigError, DownloadError, IntegrityError
from installer.core.filenames import safe_filename
from installer.core.log import redact
from installer.edges.download.names import url_host

_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


def normalized_sha256(request: DownloadRequest) -> str | None:
    """Return the request's sha256 in lower case (`None` when not given).

    Args:
        request: The request whose sha256 is read.

    Returns:
        The 64 lower-case hex digits, or `None`.

    Raises:
        ConfigError: The sha256 is not 64 hex digits.
    """
    if request.sha256 is None:
        return None
    value = request.sha256.strip().lower()
    if not _SHA256_HEX.match(value):
        raise ConfigError(
            f"the sha256 given for {redact(request.url)} is not 64 hex digits: {request.sha256!r}",
            hint="Copy the full sha256 hex digest of the file into the manifest.",
        )
    return value


def check_request(request: DownloadRequest, *, allow_unverified: bool = False) -> None:
    """Check a request against the download policy before anything is fetched.

    Args:
        request: The request to check.
        allow_unverified: Accept a request without `sha256` (never over plain
            HTTP).

    Raises:
        DownloadError: Not an http(s) URL, or plain HTTP without a pinned sha256.
        IntegrityError: No sha256 and unverified downloads not allowed.
        ConfigError: A malformed sha256, size or file name.
    """
    shown = redact(request.url)
    scheme = urllib.parse.urlsplit(request.url).scheme.lower()
    sha = normalized_sha256(request)
    if scheme not in ("http", "https") or not url_host(request.url):
        raise DownloadError(
            f"cannot download {shown}: only http:// and https:// URLs are supported",
            hint="Fix the URL in the manifest.",
        )
    if scheme == "http" and sha is None:
        raise DownloadError(
            f"refusing plain-HTTP download of {shown} without a pinned sha256",
            hint="Use an https:// URL, or pin the file's sha256 in the manifest.",
        )
    if sha is None and not allow_unverified:
        raise IntegrityError(
            f"no sha256 is recorded for {shown}; refusing to download an unverified file",
            hint="Add the file's sha256 (and size) to the manifest, "
            "or pass --allow-unverified to accept it unchecked.",
        )
    if request.size is not None and request.size < 0:
        raise ConfigError(f"negative size given for {shown}: {request.size}")
    if request.filename is not None and safe_filename(request.filename) != request.filename:
        raise ConfigError(
            f"unsafe file name for {shown}: {request.filename!r}",
            hint=f"Use a plain file name such as {safe_filename(request.filename)!r}; "
            "choose the folder with the destination instead.",
        )
