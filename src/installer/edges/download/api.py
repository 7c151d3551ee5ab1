"""Parallel, resumable, verified downloads: the only place the installer fetches files.

[`download_files`][installer.edges.download.api.download_files] fetches a batch of
[`DownloadRequest`][installer.core.downloads.DownloadRequest]s over one shared
httpx client with a few transfers at a time, and returns one
[`DownloadResult`][installer.core.downloads.DownloadResult] per request. Each file
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
(see [`RetryPolicy`][installer.edges.download.retry.RetryPolicy]); other 4xx answers fail
at once with a [`DownloadError`][installer.core.errors.DownloadError].

Tokens come from the environment (`HF_TOKEN` for Hugging Face, `CIVITAI_TOKEN`
for Civitai, see [`auth_headers_for`][installer.edges.download.auth.auth_headers_for]),
go only to their own hosts over HTTPS, are dropped as soon as a redirect
leaves the original host, and never reach a log line: every URL shown is
passed through [`redact`][installer.core.log.redact]. File names given by a server
are cleaned with [`safe_filename`][installer.core.filenames.safe_filename] and kept
inside the destination folder with
[`ensure_within`][installer.edges.download.names.ensure_within].
"""

from __future__ import annotations

import contextlib
import functools
import os
import queue
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, wait
from pathlib import Path

import httpx

from installer import __version__
from installer.core.downloads import DownloadRequest, DownloadResult, ExistingFilePolicy
from installer.core.errors import ConfigError, InstallerError, IntegrityError, UsageError
from installer.core.log import InstallerLogger, redact
from installer.edges.download.auth import DEFAULT_TOKEN_HOSTS
from installer.edges.download.policy import check_request
from installer.edges.download.progress import NoProgress, ProgressSink
from installer.edges.download.retry import DEFAULT_RETRY, RetryPolicy
from installer.edges.download.transfer import FileDownload, replace_if_different


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
    existing: ExistingFilePolicy = replace_if_different,
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
            `.part` (used by [`download_files`][installer.edges.download.api.download_files]
            on Ctrl-C).
        existing: What to do with a file already at the final place (default: keep it
            when its hash is right, else download and replace it).

    Returns:
        The verified file and how it was obtained.

    Raises:
        NetworkError: The server stayed unreachable or kept failing, or TLS
            verification failed; the `.part` file is kept for a resume.
        DownloadError: The server refused the file (404, 401/403, ...), or the
            URL breaks the policy.
        IntegrityError: The file's hash or size is wrong (the `.part` file is
            deleted), or it has no sha256 and unverified files are not allowed.
        FileConflictError: ``existing`` keeps a different file at the final place.
        ConfigError: A malformed sha256, size or file name in the request.
        EnvironmentUnsupportedError: The file cannot be written (disk full,
            permissions).
    """
    check_request(request, allow_unverified=allow_unverified)
    download = FileDownload(
        request,
        log=log,
        client=client,
        retry=retry,
        progress=progress if progress is not None else NoProgress(),
        env=os.environ if env is None else env,
        token_hosts=token_hosts,
        cancel=cancel if cancel is not None else threading.Event(),
        existing=existing,
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
    existing: ExistingFilePolicy = replace_if_different,
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
        existing: What to do with a file already at a final place (default: keep it
            when its hash is right, else download and replace it).

    Returns:
        One result per request, in the order of ``requests``.

    Raises:
        UsageError: ``jobs`` below 1.
        ConfigError: Two requests write the same file, or a malformed request.
        IntegrityError: A file's hash or size is wrong, or one lacks a sha256.
        FileConflictError: ``existing`` keeps a different file at a final place.
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
        existing=existing,
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
    existing: ExistingFilePolicy = replace_if_different,
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
    display = log.transfer_display if log.interactive else None
    sink: contextlib.AbstractContextManager[ProgressSink] = (
        display(requests) if display is not None else contextlib.nullcontext(NoProgress())
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
                existing=existing,
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
