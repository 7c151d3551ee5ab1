"""Parallel, resumable, verified downloads: the only place the installer fetches files.

[`download_files`][installer.download.download_files] fetches a batch of
[`DownloadRequest`][installer.download.DownloadRequest]s over one shared
httpx client with a few transfers at a time, and returns one
[`DownloadResult`][installer.download.DownloadResult] per request. Each file
streams into `NAME.part` next to its final place, in chunks, so memory stays
flat whatever its size, while its sha256 is computed; only a file whose hash
(and size, when known) match the request is renamed to its final name, so a
final file is always a verified one. A file already present with the right
hash is skipped without a request. A file without a pinned sha256 is refused
unless the caller allows unverified files, and plain `http://` is refused
unless the sha256 is pinned.

Interrupted transfers resume: a small sidecar, `NAME.part.json`, records the
URL and the server's validators (`ETag`, `Last-Modified`, size), and the next
try asks for the rest with `Range` and `If-Range`; a server that ignores the
range or whose file changed is detected and the download restarts from zero.
Connection errors, timeouts (a stalled transfer included), HTTP 5xx, 408 and
429 are retried with exponential backoff and jitter, honouring `Retry-After`
(see [`RetryPolicy`][installer.download.RetryPolicy]); other 4xx answers fail
at once with a [`DownloadError`][installer.core.errors.DownloadError].

Tokens come from the environment (`HF_TOKEN` for Hugging Face, `CIVITAI_TOKEN`
for Civitai, see [`auth_headers_for`][installer.download.auth_headers_for]),
go only to their own hosts over HTTPS, are dropped as soon as a redirect
leaves the original host, and never reach a log line: every URL shown is
passed through [`redact`][installer.core.log.redact]. File names given by a server
are cleaned with [`safe_filename`][installer.download.safe_filename] and kept
inside the destination folder with
[`ensure_within`][installer.download.ensure_within].
"""

from __future__ import annotations

import contextlib
import dataclasses
import email.utils
import functools
import hashlib
import ipaddress
import json
import os
import queue
import random
import re
import ssl
import threading
import time
import unicodedata
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, wait
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, BinaryIO, Protocol

import httpx

from installer import __version__
from installer.core.errors import (
    ConfigError,
    DownloadError,
    EnvironmentUnsupportedError,
    InstallerError,
    IntegrityError,
    NetworkError,
    UsageError,
)
from installer.core.log import InstallerLogger, redact
from installer.edges.environment import proxy_note

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

DEFAULT_TOKEN_HOSTS: Mapping[str, str] = MappingProxyType(
    {"huggingface.co": "HF_TOKEN", "hf.co": "HF_TOKEN", "civitai.com": "CIVITAI_TOKEN"}
)
"""Host suffix → environment variable holding the bearer token for that host."""

HASH_CHUNK_SIZE = 1024 * 1024
"""Bytes read at a time when hashing a file on disk."""

MAX_REDIRECTS = 10
"""Redirects followed for one request before giving up."""

WRITE_BEHIND_BYTES = 16 * 2**20
"""After this many bytes, the kernel is asked to start writing a download to disk.

Without it every dirty page waits for the `fsync` at the end of the file, so the
disk sits idle during the transfer and then holds the finished download up."""

_PART_SUFFIX = ".part"
_SIDECAR_SUFFIX = ".part.json"
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
_RETRY_AFTER_SECONDS = re.compile(r"^\d+(\.\d+)?$")
_CONTENT_RANGE = re.compile(r"^bytes\s+(\d+)-(\d+)/(\d+|\*)$")
_DISPOSITION_PARAM = re.compile(
    r";\s*([!#$%&'*+.^_`|~0-9A-Za-z-]+)\s*=\s*(\"(?:[^\"\\]|\\.)*\"|[^;]*)"
)
_DRIVE = re.compile(r"^[A-Za-z]:")
_WINDOWS_INVALID = re.compile(r'[<>:"|?*]')
_RESERVED_STEMS = frozenset(
    {"CON", "PRN", "AUX", "NUL"}
    | {f"{port}{n}" for port in ("COM", "LPT") for n in "0123456789\u00b9\u00b2\u00b3"}
)
_MAX_NAME_BYTES = 200
_MAX_SUFFIX_CHARS = 20
_FALLBACK_NAME = "download"


@dataclass(frozen=True)
class RetryPolicy:
    """How many times a transfer is tried, and how long to wait in between.

    Attributes:
        attempts: Tries per file, the first one included (at least 1).
        backoff_seconds: Base of the exponential backoff: after the n-th
            failure the wait is between half and all of
            `backoff_seconds * 2**(n-1)` (random jitter spreads retries).
        max_backoff_seconds: Cap on one backoff wait.
        retry_after_cap_seconds: Cap on a wait asked for by a server's
            `Retry-After` header.
    """

    attempts: int = 5
    backoff_seconds: float = 1.0
    max_backoff_seconds: float = 30.0
    retry_after_cap_seconds: float = 120.0

    def __post_init__(self) -> None:
        """Reject a policy that cannot work.

        Raises:
            ValueError: `attempts` below 1 or a negative duration.
        """
        if self.attempts < 1:
            raise ValueError("RetryPolicy.attempts must be at least 1")
        if min(self.backoff_seconds, self.max_backoff_seconds, self.retry_after_cap_seconds) < 0:
            raise ValueError("RetryPolicy durations must not be negative")

    def delay(self, failures: int, retry_after: float | None = None) -> float:
        """Return the seconds to wait before the next try.

        Args:
            failures: How many tries have failed so far (1 after the first).
            retry_after: The server's `Retry-After`, in seconds, if it sent one.

        Returns:
            The server's wish capped at `retry_after_cap_seconds` when given,
            else the jittered exponential backoff.
        """
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.retry_after_cap_seconds)
        ceiling = min(self.max_backoff_seconds, self.backoff_seconds * 2.0 ** min(failures - 1, 62))
        # Jitter is for spreading load, not for security.
        return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311


DEFAULT_RETRY = RetryPolicy()
"""The retry policy used when none is given."""


@dataclass(frozen=True)
class DownloadRequest:
    """One file to fetch.

    Attributes:
        url: Where to fetch it (`https://`; `http://` only with `sha256`).
        dest_dir: The folder the file lands in (created when missing).
        filename: The final file name; when `None` it comes from the server's
            `Content-Disposition`, else from the URL path (both cleaned with
            [`safe_filename`][installer.download.safe_filename]).
        sha256: The expected hex digest; required unless unverified downloads
            are allowed.
        size: The expected size in bytes, when known (checked too, and used
            for the total progress before the transfer starts).
    """

    url: str
    dest_dir: Path
    filename: str | None = None
    sha256: str | None = None
    size: int | None = None


@dataclass(frozen=True)
class DownloadResult:
    """What happened to one requested file.

    Attributes:
        path: The final, verified file.
        sha256: Its hex digest.
        size: Its size in bytes.
        bytes_transferred: Body bytes received over the network for it in this
            call, failed tries included (0 when skipped).
        resumed_from: The offset the successful transfer started at (0 for a
            fresh download).
        skipped: True when the file was already present and nothing was
            downloaded.
        seconds: Wall time spent on this file.
    """

    path: Path
    sha256: str
    size: int
    bytes_transferred: int
    resumed_from: int
    skipped: bool
    seconds: float


class ProgressSink(Protocol):
    """Receives transfer progress; the rich bars implement it, tests may too.

    Methods are called from worker threads, so implementations must be
    thread-safe.
    """

    def started(self, request: DownloadRequest, name: str, total: int | None, done: int) -> None:
        """A transfer of ``request`` began (again) with ``done`` bytes already on disk.

        Args:
            request: The file being fetched.
            name: The file name shown for it.
            total: The file's full size in bytes, None when unknown.
            done: Bytes already on disk from an earlier try (the resume offset); 0 if none.
        """

    def advanced(self, request: DownloadRequest, amount: int) -> None:
        """``amount`` more bytes of ``request`` arrived.

        Args:
            request: The file being fetched.
            amount: The bytes received since the last call.
        """

    def finished(self, request: DownloadRequest) -> None:
        """``request`` ended: downloaded, skipped or failed.

        Args:
            request: The file whose transfer ended.
        """


class _NoProgress:
    """A progress sink that shows nothing (quiet or non-terminal output)."""

    def started(self, request: DownloadRequest, name: str, total: int | None, done: int) -> None:
        """Ignore the start."""

    def advanced(self, request: DownloadRequest, amount: int) -> None:
        """Ignore the bytes."""

    def finished(self, request: DownloadRequest) -> None:
        """Ignore the end."""


class _RichProgress:
    """One bar per active file and a total bar with rate and ETA."""

    def __init__(self, console: Console, requests: Sequence[DownloadRequest]) -> None:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self._progress: Progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(binary_units=True),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
        self._lock = threading.Lock()
        self._expected: dict[DownloadRequest, int] = {r: r.size or 0 for r in requests}
        self._done: dict[DownloadRequest, int] = dict.fromkeys(requests, 0)
        self._tasks: dict[DownloadRequest, TaskID] = {}
        self._total = self._progress.add_task("total", total=self._sum_expected())

    def __enter__(self) -> _RichProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._progress.stop()

    def _sum_expected(self) -> int | None:
        return sum(self._expected.values()) or None

    def started(self, request: DownloadRequest, name: str, total: int | None, done: int) -> None:
        """Show (or reset) the bar of ``request``."""
        with self._lock:
            task = self._tasks.get(request)
            if task is None:
                self._tasks[request] = self._progress.add_task(name, total=total, completed=done)
            else:
                self._progress.update(task, total=total, completed=done)
            self._expected[request] = total or request.size or 0
            self._done[request] = done
            self._progress.update(
                self._total, total=self._sum_expected(), completed=sum(self._done.values())
            )

    def advanced(self, request: DownloadRequest, amount: int) -> None:
        """Move the bar of ``request`` and the total."""
        with self._lock:
            self._done[request] = self._done.get(request, 0) + amount
            task = self._tasks.get(request)
            if task is not None:
                self._progress.advance(task, amount)
            self._progress.advance(self._total, amount)

    def finished(self, request: DownloadRequest) -> None:
        """Remove the bar of ``request``; a skipped file leaves the total."""
        with self._lock:
            task = self._tasks.pop(request, None)
            if task is None:
                self._expected[request] = 0
            else:
                self._progress.remove_task(task)
            self._progress.update(
                self._total, total=self._sum_expected(), completed=sum(self._done.values())
            )


@dataclass(frozen=True)
class _PartInfo:
    """What the sidecar of a `.part` file remembers about its source."""

    url: str
    filename: str
    etag: str | None
    last_modified: str | None
    size: int | None

    def if_range(self) -> str | None:
        """Return the validator for `If-Range` (a strong ETag, else the date)."""
        if self.etag and not self.etag.startswith("W/"):
            return self.etag
        return self.last_modified


class _Retryable(Exception):
    """A failed try that may succeed later."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class _StartOver(Exception):
    """The partial file cannot be trusted: download again from byte 0."""


class _Cancelled(Exception):
    """The batch was interrupted; stop this transfer and keep its `.part`."""


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Return the wait a `Retry-After` header asks for, in seconds.

    Args:
        value: The header value: delta-seconds (`"120"`) or an HTTP date.
        now: The current POSIX time (default: the clock), for dates.

    Returns:
        The seconds to wait (0 for a date in the past), or `None` when the
        header is missing or unreadable.
    """
    if value is None:
        return None
    value = value.strip()
    if _RETRY_AFTER_SECONDS.match(value):
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


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


def content_disposition_filename(value: str | None) -> str | None:
    """Return the file name a `Content-Disposition` header proposes, uncleaned.

    `filename*=` (RFC 5987/6266, e.g. `UTF-8''na%C3%AFve.bin`) wins over
    `filename=`; quoted values are unescaped.

    Args:
        value: The header value, or `None`.

    Returns:
        The proposed name (pass it to
        [`safe_filename`][installer.download.safe_filename] before use), or
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


def _host(url: str) -> str:
    """Return the lower-case host of ``url`` ('' when it has none)."""
    return (urllib.parse.urlsplit(url).hostname or "").rstrip(".").lower()


def _origin(url: str) -> tuple[str, str, int | None]:
    """Return (scheme, host, port) of ``url``, the unit tokens are tied to."""
    parts = urllib.parse.urlsplit(url)
    return parts.scheme.lower(), _host(url), parts.port


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def token_env_var(url: str, token_hosts: Mapping[str, str] = DEFAULT_TOKEN_HOSTS) -> str | None:
    """Return the environment variable whose token belongs to the host of ``url``.

    Args:
        url: The URL about to be requested.
        token_hosts: Host suffix → variable name; a suffix matches the host
            itself and its subdomains (`hf.co` matches `cdn-lfs.hf.co`, not
            `nothf.co`). The longest matching suffix wins.

    Returns:
        The variable name, or `None` when the host gets no token.
    """
    host = _host(url)
    if not host:
        return None
    for suffix in sorted(token_hosts, key=len, reverse=True):
        wanted = suffix.strip(".").lower()
        if wanted and (host == wanted or host.endswith("." + wanted)):
            return token_hosts[suffix]
    return None


def auth_headers_for(
    url: str, env: Mapping[str, str], token_hosts: Mapping[str, str] = DEFAULT_TOKEN_HOSTS
) -> dict[str, str]:
    """Return the `Authorization` header to send with a request to ``url``.

    A token goes only to its own host (see
    [`token_env_var`][installer.download.token_env_var]) and only over HTTPS,
    or plain HTTP to a loopback host, where nothing can overhear it.

    Args:
        url: The URL about to be requested (not one reached by a redirect to
            another host: callers drop the header then).
        env: Where to read tokens from, usually `os.environ`.
        token_hosts: Host suffix → variable name (default: Hugging Face and
            Civitai).

    Returns:
        `{"Authorization": "Bearer <token>"}`, or `{}` when no token applies.
    """
    variable = token_env_var(url, token_hosts)
    if variable is None:
        return {}
    scheme, host, _port = _origin(url)
    if scheme != "https" and not (scheme == "http" and _is_loopback(host)):
        return {}
    token = env.get(variable, "").strip()
    return {"Authorization": f"Bearer {token}"} if token else {}


def sha256_file(path: Path) -> str:
    """Return the hex sha256 of the file at ``path``, read in chunks.

    Args:
        path: The file to hash.

    Returns:
        The lower-case hex digest.
    """
    digest = hashlib.sha256()
    _hash_into(digest, path)
    return digest.hexdigest()


class _Digest(Protocol):
    def update(self, data: bytes, /) -> None: ...


def _start_writeback(fh: BinaryIO) -> None:
    """Ask the kernel to start writing ``fh``'s dirty pages now, without waiting.

    Linux starts the write-back of a range on `POSIX_FADV_DONTNEED` (and then
    drops the pages it has written, so a large model does not push the user's
    other files out of the page cache). Where the call does not exist (Windows,
    macOS), nothing happens: the final `fsync` writes everything.

    Args:
        fh: The open `.part` file being written.
    """
    advise = getattr(os, "posix_fadvise", None)
    if advise is None:
        return
    fh.flush()
    with contextlib.suppress(OSError):
        advise(fh.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def _hash_into(digest: _Digest, path: Path) -> None:
    with path.open("rb") as fh:
        while chunk := fh.read(HASH_CHUNK_SIZE):
            digest.update(chunk)


def human_size(count: float) -> str:
    """Return a byte count as text with binary units, e.g. ``12.3 MiB``.

    Args:
        count: A number of bytes (a float for rates, e.g. bytes per second).

    Returns:
        Whole bytes below 1 KiB (``512 B``), else one decimal in KiB, MiB or GiB.
    """
    if abs(count) < 1024:
        return f"{count:.0f} B"
    units = ("KiB", "MiB", "GiB")
    index = 0
    count /= 1024
    while abs(count) >= 1024 and index < len(units) - 1:
        count /= 1024
        index += 1
    return f"{count:.1f} {units[index]}"


def _url_name(url: str) -> str:
    """Return the last path segment of ``url``, percent-decoded ('' when none)."""
    path = urllib.parse.urlsplit(url).path
    return urllib.parse.unquote(path.rstrip("/").rsplit("/", 1)[-1])


def _normalized_sha256(request: DownloadRequest) -> str | None:
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
    sha = _normalized_sha256(request)
    if scheme not in ("http", "https") or not _host(request.url):
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


def _tls_failure(exc: BaseException) -> ssl.SSLError | None:
    """Return the TLS error behind an httpx exception, if there is one."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _content_range(value: str | None) -> tuple[int, int | None] | None:
    """Return (first byte, total size or None) of a `Content-Range` value."""
    match = _CONTENT_RANGE.match((value or "").strip())
    if match is None:
        return None
    total = match.group(3)
    return int(match.group(1)), None if total == "*" else int(total)


class _FileDownload:
    """The state of one file's download across tries."""

    def __init__(
        self,
        request: DownloadRequest,
        *,
        log: InstallerLogger,
        client: httpx.Client,
        retry: RetryPolicy,
        progress: ProgressSink,
        env: Mapping[str, str],
        token_hosts: Mapping[str, str],
        cancel: threading.Event,
    ) -> None:
        self.request = request
        self.log = log
        self.client = client
        self.retry = retry
        self.progress = progress
        self.env = env
        self.token_hosts = token_hosts
        self.cancel = cancel
        self.shown_url = redact(request.url)
        self.sha256 = _normalized_sha256(request)
        self.dest_dir = request.dest_dir
        self.name = request.filename or safe_filename(_url_name(request.url))
        self.final: Path | None = None
        if request.filename is not None:
            self.final = ensure_within(self.dest_dir, self.dest_dir / request.filename)
            self.part = self.final.with_name(self.final.name + _PART_SUFFIX)
        else:
            key = hashlib.sha256(request.url.encode()).hexdigest()[:16]
            self.part = ensure_within(self.dest_dir, self.dest_dir / f".download-{key}.part")
        self.sidecar = self.part.with_name(self.part.name[: -len(_PART_SUFFIX)] + _SIDECAR_SUFFIX)
        self.transferred = 0
        self.resumed_from = 0
        self.fresh_start_used = False
        self.began = time.monotonic()

    def run(self) -> DownloadResult:
        """Download the file, retrying per the policy.

        Raises:
            NetworkError: Still failing after the last try.
            DownloadError: The server refused the file.
            IntegrityError: The bytes do not match the expected hash or size.
            EnvironmentUnsupportedError: The file cannot be written.
        """
        try:
            self.dest_dir.mkdir(parents=True, exist_ok=True)
            if self.final is not None:
                present = self._already_present(self.final)
                if present is not None:
                    return present
            return self._run_tries()
        except OSError as exc:
            raise EnvironmentUnsupportedError(
                f"cannot write {self.name} in {self.dest_dir}: {exc.strerror or exc}",
                hint="Free disk space or fix the folder's permissions, then run again.",
            ) from exc
        finally:
            self.progress.finished(self.request)

    def _run_tries(self) -> DownloadResult:
        failures = 0
        while True:
            self._check_cancel()
            try:
                return self._attempt()
            except _StartOver:
                continue
            except _Retryable as exc:
                failures += 1
                if failures >= self.retry.attempts:
                    raise self._gave_up(exc.reason, failures) from exc
                delay = self.retry.delay(failures, exc.retry_after)
                self.log.info(
                    f"{self.name}: {exc.reason}; retrying in {delay:.1f} s "
                    f"(attempt {failures + 1} of {self.retry.attempts})"
                )
                if self.cancel.wait(delay):
                    raise _Cancelled from None

    def _check_cancel(self) -> None:
        if self.cancel.is_set():
            raise _Cancelled

    def _gave_up(self, reason: str, tries: int) -> NetworkError:
        host = _host(self.request.url)
        attempts = "attempt" if tries == 1 else "attempts"
        return NetworkError(
            f"could not download {self.name} from {host} ({self.shown_url})"
            f"{proxy_note(self.request.url, self.env)} after {tries} {attempts}: "
            f"{reason.rstrip('.')}",
            hint="Check the network connection or proxy settings (or the server's status), "
            "then run the same command again; the partial download resumes.",
        )

    def _result(self, path: Path, sha256: str, size: int, *, skipped: bool) -> DownloadResult:
        return DownloadResult(
            path=path,
            sha256=sha256,
            size=size,
            bytes_transferred=self.transferred,
            resumed_from=self.resumed_from,
            skipped=skipped,
            seconds=time.monotonic() - self.began,
        )

    def _already_present(self, final: Path) -> DownloadResult | None:
        """Return a skipped result when ``final`` already holds the right file."""
        if not final.is_file():
            return None
        name = final.name
        size = final.stat().st_size
        if self.request.size is not None and size != self.request.size:
            self.log.warn(
                f"{name} exists with {size} bytes instead of {self.request.size}; "
                "downloading it again"
            )
            return None
        actual = sha256_file(final)
        if self.sha256 is None:
            self.log.info(f"{name} already present (not verified: no sha256 given)")
        elif actual != self.sha256:
            self.log.warn(
                f"{name} exists but its sha256 is {actual}, expected {self.sha256}; "
                "downloading it again"
            )
            return None
        else:
            self.log.info(f"{name} already present, checksum ok")
        self._remove_part()
        return self._result(final, actual, size, skipped=True)

    def _remove_part(self) -> None:
        self.part.unlink(missing_ok=True)
        self.sidecar.unlink(missing_ok=True)

    def _load_part_info(self) -> _PartInfo | None:
        """Return the sidecar of a `.part` that may be resumed; discard any other."""
        info: _PartInfo | None = None
        with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
            data = json.loads(self.sidecar.read_text(encoding="utf-8"))
            info = _PartInfo(
                url=str(data["url"]),
                filename=str(data["filename"]),
                etag=data.get("etag"),
                last_modified=data.get("last_modified"),
                size=data.get("size"),
            )
        usable = (
            info is not None
            and self.part.is_file()
            and info.url == self.request.url
            and (info.if_range() is not None or self.sha256 is not None)
            and (info.size is None or self.part.stat().st_size <= info.size)
        )
        if not usable:
            if self.part.exists() or self.sidecar.exists():
                self.log.debug(f"{self.name}: discarding a partial download that cannot resume")
            self._remove_part()
            return None
        return info

    def _save_part_info(self, info: _PartInfo) -> None:
        tmp = self.sidecar.with_name(self.sidecar.name + ".tmp")
        tmp.write_text(json.dumps(dataclasses.asdict(info)), encoding="utf-8")
        tmp.replace(self.sidecar)

    def _attempt(self) -> DownloadResult:
        """Make one try: resume or start, stream, verify, rename."""
        info = self._load_part_info()
        offset = self.part.stat().st_size if info is not None else 0
        if info is not None and offset and offset == info.size:
            return self._verify_and_finish(info.filename, offset)
        headers: dict[str, str] = {}
        if info is not None and offset:
            headers["Range"] = f"bytes={offset}-"
            validator = info.if_range()
            if validator:
                headers["If-Range"] = validator
        try:
            with self._open(headers) as response:
                offset = self._check_resume(response, info, offset)
                return self._receive(response, info, offset)
        except httpx.TimeoutException as exc:
            raise _Retryable(self._timeout_reason(exc)) from exc
        except httpx.TransportError as exc:
            tls = _tls_failure(exc)
            if tls is not None:
                raise self._tls_error(tls) from exc
            detail = redact(str(exc)) or type(exc).__name__
            raise _Retryable(f"connection failed: {detail}") from exc

    def _timeout_reason(self, exc: httpx.TimeoutException) -> str:
        limits = self.client.timeout
        if isinstance(exc, httpx.ConnectTimeout):
            return f"connecting timed out after {limits.connect} s"
        if isinstance(exc, httpx.ReadTimeout):
            return f"no data received for {limits.read} s (read timeout)"
        return f"timed out ({type(exc).__name__})"

    def _tls_error(self, exc: ssl.SSLError) -> NetworkError:
        host = _host(self.request.url)
        if isinstance(exc, ssl.SSLCertVerificationError):
            what = f"TLS certificate verification failed for {host}"
            detail = exc.verify_message or exc.reason
        else:
            what = f"TLS handshake with {host} failed"
            detail = exc.reason or str(exc)
        return NetworkError(
            f"{what} while downloading {self.name} ({self.shown_url}): {detail}",
            hint="A proxy or firewall may be intercepting HTTPS: point SSL_CERT_FILE at its "
            "CA certificate, or fix the system clock and CA store, then run again.",
        )

    @contextlib.contextmanager
    def _open(self, headers: Mapping[str, str]) -> Iterator[httpx.Response]:
        """Send the GET, following redirects and dropping tokens off the origin."""
        url = self.request.url
        origin = _origin(url)
        auth = auth_headers_for(url, self.env, self.token_hosts)
        for _ in range(MAX_REDIRECTS + 1):
            if _origin(url) != origin:
                auth = {}
            request = self.client.build_request("GET", url, headers={**headers, **auth})
            response = self.client.send(request, stream=True)
            if response.status_code not in _REDIRECT_STATUSES:
                try:
                    self._raise_for_status(response)
                    yield response
                finally:
                    response.close()
                return
            location = response.headers.get("location")
            response.close()
            if not location:
                raise DownloadError(
                    f"{self.name}: the server answered HTTP {response.status_code} without "
                    f"a Location header ({self.shown_url})"
                )
            url = str(response.url.join(location))
            self._check_redirect(url)
        raise DownloadError(
            f"{self.name}: more than {MAX_REDIRECTS} redirects from {self.shown_url}",
            hint="The server is misconfigured or loops; check the URL in the manifest.",
        )

    def _check_redirect(self, url: str) -> None:
        scheme = urllib.parse.urlsplit(url).scheme.lower()
        if scheme == "https" or (scheme == "http" and self.sha256 is not None):
            return
        raise DownloadError(
            f"{self.name}: {self.shown_url} redirects to {redact(url)}, which is not allowed "
            "(only https://, or http:// for files with a pinned sha256)",
        )

    def _raise_for_status(self, response: httpx.Response) -> None:
        status = response.status_code
        if status in (200, 206, 416):
            return
        if status in (408, 429) or 500 <= status <= 599:
            wait_for = parse_retry_after(response.headers.get("retry-after"))
            raise _Retryable(f"the server answered HTTP {status}", retry_after=wait_for)
        if status in (404, 410):
            raise DownloadError(
                f"{self.name}: the server has no file at {self.shown_url} (HTTP {status})",
                hint="Check the URL in the manifest; the file may have moved or been removed.",
            )
        if status in (401, 403):
            raise DownloadError(
                f"{self.name}: access denied by {_host(self.request.url)} (HTTP {status}) "
                f"for {self.shown_url}",
                hint=self._auth_hint(),
            )
        raise DownloadError(
            f"{self.name}: the server refused {self.shown_url} (HTTP {status})",
            hint="Check the URL in the manifest.",
        )

    def _auth_hint(self) -> str:
        variable = token_env_var(self.request.url, self.token_hosts)
        if variable is None:
            return "The file needs credentials this installer cannot send; check the URL."
        if self.env.get(variable, "").strip():
            return (
                f"{variable} is set but was refused: check that the token is valid and that "
                "its account has accepted the model's terms (gated files)."
            )
        return f"Set {variable} to an access token that can read this file (gated or private)."

    def _check_resume(self, response: httpx.Response, info: _PartInfo | None, offset: int) -> int:
        """Return the offset the body of ``response`` starts at.

        Raises:
            _StartOver: The partial file does not belong to what the server
                sends now.
            DownloadError: The server sent a range that was not asked for.
        """
        status = response.status_code
        if status == 200:
            if offset:
                self.log.debug(f"{self.name}: the server sent the whole file; restarting at 0")
            return 0
        content_range = _content_range(response.headers.get("content-range"))
        if status == 206 and offset and info is not None and content_range is not None:
            start, total = content_range
            etag = response.headers.get("etag")
            if (
                start == offset
                and (info.size is None or total == info.size)
                and (info.etag is None or etag is None or etag == info.etag)
            ):
                return offset
        if not offset:
            raise DownloadError(
                f"{self.name}: the server answered HTTP {status} to a request for the whole "
                f"file ({self.shown_url})",
                hint="The server is misbehaving; try again later or use another mirror.",
            )
        self.log.debug(f"{self.name}: the file changed on the server; restarting at 0")
        self._remove_part()
        raise _StartOver

    def _receive(
        self, response: httpx.Response, info: _PartInfo | None, offset: int
    ) -> DownloadResult:
        """Stream the body into the `.part` file, then verify and rename it."""
        encoded = response.headers.get("content-encoding", "identity").lower()
        total: int | None = None
        if encoded in ("", "identity"):
            if offset:
                content_range = _content_range(response.headers.get("content-range"))
                total = content_range[1] if content_range is not None else None
            else:
                length = response.headers.get("content-length", "")
                total = int(length) if length.isdigit() else None
        if self.request.size is not None and total is not None and total != self.request.size:
            self._remove_part()
            raise IntegrityError(
                f"{self.name}: the server offers {total} bytes, expected {self.request.size} "
                f"({self.shown_url})",
                hint="The upstream file changed; do not use it until its checksum is confirmed.",
            )
        if offset and info is not None:
            name = self.name = info.filename
        else:
            name = self.request.filename or safe_filename(
                content_disposition_filename(response.headers.get("content-disposition"))
                or _url_name(self.request.url)
            )
            self.name = name
            if self.final is None:
                final = ensure_within(self.dest_dir, self.dest_dir / name)
                present = self._already_present(final)
                if present is not None:
                    return present
            if encoded in ("", "identity"):
                etag = response.headers.get("etag")
                modified = response.headers.get("last-modified")
                self._save_part_info(_PartInfo(self.request.url, name, etag, modified, total))
            else:
                # Byte ranges of an encoded body do not map to the file: never resume it.
                self.sidecar.unlink(missing_ok=True)

        digest = hashlib.sha256()
        if offset:
            _hash_into(digest, self.part)
        self.progress.started(self.request, name, total, offset)
        received = 0
        limit = self.request.size if self.request.size is not None else total
        overflow = False
        written_behind = 0
        with self.part.open("ab" if offset else "wb") as fh:
            # Pieces as they arrive (at most 64 KiB): memory stays flat, and no
            # received byte is held back in a buffer when the connection drops.
            for chunk in response.iter_bytes():
                self._check_cancel()
                if limit is not None and offset + received + len(chunk) > limit:
                    overflow = True
                    break
                fh.write(chunk)
                digest.update(chunk)
                received += len(chunk)
                if received - written_behind >= WRITE_BEHIND_BYTES:
                    _start_writeback(fh)
                    written_behind = received
                self.transferred += len(chunk)
                self.progress.advanced(self.request, len(chunk))
            fh.flush()
            os.fsync(fh.fileno())
        if overflow:
            self._remove_part()
            raise IntegrityError(
                f"{name}: the server sent more than the expected {limit} bytes ({self.shown_url})",
                hint="The upstream file changed or the server is faulty; "
                "do not use it until its checksum is confirmed.",
            )
        size = offset + received
        if total is not None and size < total:
            raise _Retryable(f"the transfer ended early ({size} of {total} bytes)")
        self.resumed_from = offset
        return self._finish(name, digest.hexdigest(), size)

    def _verify_and_finish(self, name: str, size: int) -> DownloadResult:
        """Finish a `.part` that is already complete (a run stopped before its rename)."""
        self.resumed_from = size
        return self._finish(name, sha256_file(self.part), size)

    def _finish(self, name: str, actual: str, size: int) -> DownloadResult:
        """Check hash and size, then move the `.part` to its final name."""
        problem = None
        if self.sha256 is not None and actual != self.sha256:
            problem = f"sha256 mismatch: expected {self.sha256}, got {actual}"
        elif self.request.size is not None and size != self.request.size:
            problem = f"size mismatch: expected {self.request.size} bytes, got {size}"
        if problem is not None:
            self._remove_part()
            if self.resumed_from and not self.fresh_start_used:
                # The old part may be what is corrupt: one clean download decides.
                self.fresh_start_used = True
                self.log.warn(f"{name}: {problem} after resuming; downloading it afresh")
                self.resumed_from = 0
                raise _StartOver
            raise IntegrityError(
                f"{name}: {problem} (downloaded from {self.shown_url})",
                hint="Run again to download it afresh; if it fails again, the upstream file "
                "changed: do not use it until its checksum is confirmed.",
            )
        final = ensure_within(self.dest_dir, self.dest_dir / name)
        self.part.replace(final)
        self.sidecar.unlink(missing_ok=True)
        elapsed = max(time.monotonic() - self.began, 1e-6)
        resumed = f", resumed at {human_size(self.resumed_from)}" if self.resumed_from else ""
        self.log.info(
            f"downloaded {name} ({human_size(size)}, "
            f"{human_size(self.transferred / elapsed)}/s{resumed})"
        )
        return self._result(final, actual, size, skipped=False)


def download_file(
    request: DownloadRequest,
    *,
    log: InstallerLogger,
    client: httpx.Client,
    retry: RetryPolicy = DEFAULT_RETRY,
    allow_unverified: bool = False,
    progress: ProgressSink | None = None,
    env: Mapping[str, str] | None = None,
    token_hosts: Mapping[str, str] = DEFAULT_TOKEN_HOSTS,
    cancel: threading.Event | None = None,
) -> DownloadResult:
    """Download one file and verify it; see the module documentation for the rules.

    Args:
        request: What to fetch and where.
        log: Where status lines go (one line per finished file).
        client: The httpx client to use; its timeout applies to each connect
            and read, so a stalled transfer fails after it. Redirects are
            followed here, so the client should not follow them itself.
        retry: How often to try and how long to wait in between.
        allow_unverified: Accept a request without `sha256`.
        progress: Receives byte counts (default: nothing shown).
        env: Where tokens are read from (default: `os.environ`).
        token_hosts: Host suffix → token variable (default: Hugging Face and
            Civitai).
        cancel: When set, the transfer stops at the next chunk and keeps its
            `.part` (used by [`download_files`][installer.download.download_files]
            on Ctrl-C).

    Returns:
        The verified file and how it was obtained.

    Raises:
        NetworkError: The server stayed unreachable or kept failing, or TLS
            verification failed; the `.part` file is kept for a resume.
        DownloadError: The server refused the file (404, 401/403, ...), or the
            URL breaks the policy.
        IntegrityError: The file's hash or size is wrong (the `.part` file is
            deleted), or it has no sha256 and unverified files are not allowed.
        ConfigError: A malformed sha256, size or file name in the request.
        EnvironmentUnsupportedError: The file cannot be written (disk full,
            permissions).
    """
    check_request(request, allow_unverified=allow_unverified)
    download = _FileDownload(
        request,
        log=log,
        client=client,
        retry=retry,
        progress=progress if progress is not None else _NoProgress(),
        env=os.environ if env is None else env,
        token_hosts=token_hosts,
        cancel=cancel if cancel is not None else threading.Event(),
    )
    return download.run()


def make_client(*, jobs: int = 4, timeout: float = 30.0) -> httpx.Client:
    """Return an httpx client set up for downloads.

    Args:
        jobs: Transfers that may run at once (sizes the connection pool).
        timeout: Seconds allowed for connecting and for each read.

    Returns:
        A client that does not follow redirects itself, asks for
        uncompressed bodies (so byte ranges match the file) and honours the
        proxy and CA settings of the environment.
    """
    return httpx.Client(
        timeout=httpx.Timeout(timeout),
        limits=httpx.Limits(max_connections=jobs, max_keepalive_connections=jobs),
        follow_redirects=False,
        headers={"User-Agent": f"comfy-install/{__version__}", "Accept-Encoding": "identity"},
    )


def _check_distinct(requests: Sequence[DownloadRequest]) -> None:
    seen: set[tuple[Path, str]] = set()
    for request in requests:
        key = (request.dest_dir.resolve(), request.filename or request.url)
        if key in seen:
            raise ConfigError(
                f"two downloads write the same file {request.filename or redact(request.url)} "
                f"in {request.dest_dir}",
                hint="Remove the duplicate entry from the manifest.",
            )
        seen.add(key)


def download_files(
    requests: Sequence[DownloadRequest],
    *,
    log: InstallerLogger,
    jobs: int = 4,
    retry: RetryPolicy = DEFAULT_RETRY,
    timeout: float = 30.0,
    allow_unverified: bool = False,
    env: Mapping[str, str] | None = None,
    token_hosts: Mapping[str, str] = DEFAULT_TOKEN_HOSTS,
) -> list[DownloadResult]:
    """Download several files, ``jobs`` at a time, with progress display.

    Every request is checked against the policy before any transfer starts.
    When a file fails, the others still finish (their verified files stay in
    place, so a re-run skips them), then the first failure is raised, an
    [`IntegrityError`][installer.core.errors.IntegrityError] before any other; the
    other failures are logged as warnings. Ctrl-C stops every transfer at its
    next chunk and keeps the `.part` files for a resume.

    Args:
        requests: The files to fetch.
        log: Rich bars on an interactive terminal, otherwise one line per file.
        jobs: Transfers at a time (at least 1).
        retry: Retry policy for each file.
        timeout: Seconds allowed for connecting and for each read.
        allow_unverified: Accept requests without `sha256` (not over plain HTTP).
        env: Where tokens are read from (default: `os.environ`).
        token_hosts: Host suffix → token variable (default: Hugging Face and
            Civitai).

    Returns:
        One result per request, in the order of ``requests``.

    Raises:
        UsageError: ``jobs`` below 1.
        ConfigError: Two requests write the same file, or a malformed request.
        IntegrityError: A file's hash or size is wrong, or one lacks a sha256.
        NetworkError: A server stayed unreachable or kept failing.
        DownloadError: A server refused a file, or a URL breaks the policy.
        EnvironmentUnsupportedError: A file cannot be written.
    """
    futures = _run_downloads(
        requests,
        log=log,
        jobs=jobs,
        retry=retry,
        timeout=timeout,
        allow_unverified=allow_unverified,
        env=env,
        token_hosts=token_hosts,
    )
    return _collect(requests, futures, log)


def download_files_settled(
    requests: Sequence[DownloadRequest],
    *,
    log: InstallerLogger,
    jobs: int = 4,
    retry: RetryPolicy = DEFAULT_RETRY,
    timeout: float = 30.0,
    allow_unverified: bool = False,
    env: Mapping[str, str] | None = None,
    token_hosts: Mapping[str, str] = DEFAULT_TOKEN_HOSTS,
) -> list[DownloadResult | InstallerError]:
    """Download several files like `download_files`, returning each file's own outcome.

    A caller that can go on without some of the files (optional packages) learns
    which ones failed from one round of transfers, each with its full retry
    budget, instead of downloading again to find out.

    Args:
        requests: The files to fetch.
        log: Rich bars on an interactive terminal, otherwise one line per file.
        jobs: Transfers at a time (at least 1).
        retry: Retry policy for each file.
        timeout: Seconds allowed for connecting and for each read.
        allow_unverified: Accept requests without `sha256` (not over plain HTTP).
        env: Where tokens are read from (default: `os.environ`).
        token_hosts: Host suffix → token variable.

    Returns:
        For each request, in order, its result or the InstallerError it failed with.

    Raises:
        UsageError: ``jobs`` below 1.
        ConfigError: Two requests write the same file, or a malformed request.
        IntegrityError: A request lacks a sha256 (checked before any transfer).
    """
    futures = _run_downloads(
        requests,
        log=log,
        jobs=jobs,
        retry=retry,
        timeout=timeout,
        allow_unverified=allow_unverified,
        env=env,
        token_hosts=token_hosts,
    )
    outcomes: list[DownloadResult | InstallerError] = []
    for future in futures:
        error = future.exception()
        if error is None:
            outcomes.append(future.result())
        elif isinstance(error, InstallerError):
            outcomes.append(error)
        else:
            raise error
    return outcomes


def _run_downloads(
    requests: Sequence[DownloadRequest],
    *,
    log: InstallerLogger,
    jobs: int,
    retry: RetryPolicy,
    timeout: float,
    allow_unverified: bool,
    env: Mapping[str, str] | None,
    token_hosts: Mapping[str, str],
) -> list[Future[DownloadResult]]:
    """Check the requests, run the transfers and wait for all of them; return the futures."""
    if jobs < 1:
        raise UsageError(f"--jobs must be at least 1, not {jobs}")
    for request in requests:
        check_request(request, allow_unverified=allow_unverified)
    _check_distinct(requests)
    if not requests:
        return []
    cancel = threading.Event()
    sink: contextlib.AbstractContextManager[ProgressSink] = (
        _RichProgress(log.console, requests)
        if log.interactive
        else contextlib.nullcontext(_NoProgress())
    )
    with make_client(jobs=jobs, timeout=timeout) as client, sink as progress:
        tasks = [
            functools.partial(
                download_file,
                request,
                log=log,
                client=client,
                retry=retry,
                allow_unverified=allow_unverified,
                progress=progress,
                env=env,
                token_hosts=token_hosts,
                cancel=cancel,
            )
            for request in requests
        ]
        futures = _start_workers(tasks, jobs)
        try:
            wait(futures)
        except BaseException:
            cancel.set()
            for future in futures:
                future.cancel()
            raise
    return futures


def _start_workers(
    tasks: Sequence[Callable[[], DownloadResult]], jobs: int
) -> list[Future[DownloadResult]]:
    """Run ``tasks`` on ``jobs`` daemon threads; return their futures, in order.

    Daemon threads rather than a `ThreadPoolExecutor`, whose threads are joined
    at exit: after Ctrl-C a transfer blocked in a read must not hold the
    process until its timeout. The `.part` files they leave are valid prefixes.
    """
    futures: list[Future[DownloadResult]] = [Future() for _ in tasks]
    pending: queue.SimpleQueue[int] = queue.SimpleQueue()
    for index in range(len(tasks)):
        pending.put(index)

    def work() -> None:
        while True:
            try:
                index = pending.get_nowait()
            except queue.Empty:
                return
            future = futures[index]
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(tasks[index]())
            except BaseException as exc:  # the future carries every failure to the caller
                future.set_exception(exc)

    for number in range(min(jobs, len(tasks))):
        threading.Thread(target=work, name=f"download-{number}", daemon=True).start()
    return futures


def _collect(
    requests: Sequence[DownloadRequest],
    futures: Sequence[Future[DownloadResult]],
    log: InstallerLogger,
) -> list[DownloadResult]:
    """Return the results in order, or raise the most important failure."""
    results: list[DownloadResult] = []
    failures: list[tuple[DownloadRequest, BaseException]] = []
    for request, future in zip(requests, futures, strict=True):
        error = future.exception()
        if error is None:
            results.append(future.result())
        else:
            failures.append((request, error))
    if not failures:
        return results

    def rank(item: tuple[DownloadRequest, BaseException]) -> int:
        error = item[1]
        return (
            0
            if isinstance(error, IntegrityError)
            else 1
            if isinstance(error, InstallerError)
            else 2
        )

    first = min(failures, key=rank)
    for request, error in failures:
        if error is not first[1]:
            message = error.message if isinstance(error, InstallerError) else repr(error)
            log.warn(f"also failed: {redact(request.url)}: {message}")
    raise first[1]
