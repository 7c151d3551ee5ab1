"""One file's transfer across tries: resume or start, stream, verify, rename.

Each file streams into `NAME.part` next to its final place, in chunks, so memory stays flat
whatever its size, while its sha256 is computed; only a file whose hash (and size, when known)
match the request is renamed to its final name, so a final file is always a verified one. What
happens to a file already at the final place is asked of the caller's
[`ExistingFilePolicy`][installer.core.downloads.ExistingFilePolicy], before any request and again
before the download takes its name; the default,
[`replace_if_different`][installer.edges.download.transfer.replace_if_different], keeps a file with
the right hash and replaces any other (for files the installer owns). An interrupted transfer
resumes with `Range` and `If-Range`; a server that ignores the range or whose file changed is
detected and the download restarts from zero.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

from installer.core.downloads import (
    DownloadRequest,
    DownloadResult,
    ExistingDecision,
    ExistingFilePolicy,
    FoundFile,
)
from installer.core.errors import (
    DownloadError,
    EnvironmentUnsupportedError,
    FileConflictError,
    IntegrityError,
    NetworkError,
)
from installer.core.filenames import safe_filename
from installer.core.log import InstallerLogger, redact
from installer.edges.download.files import (
    PART_SUFFIX,
    SIDECAR_SUFFIX,
    WRITE_BEHIND_BYTES,
    PartInfo,
    hash_into,
    human_size,
    move_aside,
    sha256_file,
    start_writeback,
)
from installer.edges.download.names import (
    content_disposition_filename,
    ensure_within,
    url_host,
    url_name,
)
from installer.edges.download.policy import normalized_sha256
from installer.edges.download.progress import ProgressSink
from installer.edges.download.remote import RemoteFile, parse_content_range, tls_failure
from installer.edges.download.retry import Cancelled, Retryable, RetryPolicy, StartOver
from installer.edges.environment import proxy_note


def replace_if_different(
    request: DownloadRequest, found: FoundFile, downloaded: str | None
) -> ExistingDecision:
    """Keep a file with the request's hash (or size, without one); download and replace others.

    The policy for files the installer owns, such as its wheel cache; model files get
    [`ModelFilePolicy`][installer.plan.model_files.ModelFilePolicy], which never replaces one.

    Args:
        request: The download.
        found: The file already at its final place.
        downloaded: None before a transfer, else the verified download's sha256.

    Returns:
        `keep` or `fetch` before a transfer, `overwrite` after it.
    """
    name = found.path.name
    if downloaded is not None:
        return ExistingDecision("overwrite", f"{name} is replaced by the download")
    if request.size is not None and found.size != request.size:
        return ExistingDecision(
            "fetch",
            f"{name} exists with {found.size} bytes instead of {request.size}; "
            "downloading it again",
        )
    expected = normalized_sha256(request)
    if expected is None:
        return ExistingDecision("keep", f"{name} already present (not verified: no sha256 given)")
    if found.sha256 != expected:
        return ExistingDecision(
            "fetch",
            f"{name} exists but its sha256 is {found.sha256}, expected {expected}; "
            "downloading it again",
        )
    return ExistingDecision("keep", f"{name} already present, checksum ok")


class FileDownload(RemoteFile):
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
        existing: ExistingFilePolicy = replace_if_different,
    ) -> None:
        super().__init__(request, client=client, env=env, token_hosts=token_hosts)
        self.existing = existing
        self.log = log
        self.retry = retry
        self.progress = progress
        self.cancel = cancel
        self.dest_dir = request.dest_dir
        self.final: Path | None = None
        if request.filename is not None:
            self.final = ensure_within(self.dest_dir, self.dest_dir / request.filename)
            self.part = self.final.with_name(self.final.name + PART_SUFFIX)
        else:
            key = hashlib.sha256(request.url.encode()).hexdigest()[:16]
            self.part = ensure_within(self.dest_dir, self.dest_dir / f".download-{key}.part")
        self.sidecar = self.part.with_name(self.part.name[: -len(PART_SUFFIX)] + SIDECAR_SUFFIX)
        self.transferred = 0
        self.resumed_from = 0
        self.fresh_start_used = False
        self.moved_aside: Path | None = None
        self.began = time.monotonic()

    def run(self) -> DownloadResult:
        """Download the file, retrying per the policy.

        Raises:
            NetworkError: Still failing after the last try.
            DownloadError: The server refused the file.
            IntegrityError: The bytes do not match the expected hash or size.
            FileConflictError: The policy keeps a different file at the final place.
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
            except StartOver:
                continue
            except Retryable as exc:
                failures += 1
                if failures >= self.retry.attempts:
                    raise self._gave_up(exc.reason, failures) from exc
                delay = self.retry.delay(failures, exc.retry_after)
                self.log.info(
                    f"{self.name}: {exc.reason}; retrying in {delay:.1f} s "
                    f"(attempt {failures + 1} of {self.retry.attempts})"
                )
                if self.cancel.wait(delay):
                    raise Cancelled from None

    def _check_cancel(self) -> None:
        if self.cancel.is_set():
            raise Cancelled

    def _gave_up(self, reason: str, tries: int) -> NetworkError:
        host = url_host(self.request.url)
        attempts = "attempt" if tries == 1 else "attempts"
        return NetworkError(
            f"could not download {self.name} from {host} ({self.shown_url})"
            f"{proxy_note(self.request.url, self.env)} after {tries} {attempts}: "
            f"{reason.rstrip('.')}",
            hint="Check the network connection or proxy settings (or the server's status), "
            "then run the same command again; the partial download resumes.",
        )

    def _result(
        self, path: Path, sha256: str, size: int, *, skipped: bool, moved_aside: Path | None = None
    ) -> DownloadResult:
        return DownloadResult(
            path=path,
            sha256=sha256,
            size=size,
            bytes_transferred=self.transferred,
            resumed_from=self.resumed_from,
            skipped=skipped,
            seconds=time.monotonic() - self.began,
            moved_aside=moved_aside,
        )

    @staticmethod
    def _found(final: Path) -> FoundFile | None:
        if not final.is_file():
            return None
        return FoundFile(final, sha256_file(final), final.stat().st_size)

    def _already_present(self, final: Path) -> DownloadResult | None:
        """Return a skipped result when the policy keeps the file at ``final`` (before a transfer).

        Raises:
            FileConflictError: The policy keeps a different file there.
        """
        found = self._found(final)
        if found is None:
            return None
        decision = self.existing(self.request, found, None)
        if decision.action == "conflict":
            raise FileConflictError(decision.reason, decision.hint or None)
        self.log.info(decision.reason)
        if decision.action != "keep":
            return None
        self._remove_part()
        return self._result(final, found.sha256, found.size, skipped=True)

    def _place(self, final: Path, actual: str, size: int) -> DownloadResult | None:
        """Settle a file already at ``final`` before the verified `.part` takes its name.

        Returns:
            A skipped result when the file there stays (the same bytes); None once
            ``final`` is free (nothing was there, or it was moved aside or may be replaced).

        Raises:
            FileConflictError: The policy keeps a different file there (the `.part` is dropped).
        """
        found = self._found(final)
        if found is None:
            return None
        decision = self.existing(self.request, found, actual)
        if decision.action in ("keep", "conflict"):
            self._remove_part()
            if decision.action == "conflict":
                raise FileConflictError(decision.reason, decision.hint or None)
            self.log.info(decision.reason)
            return self._result(final, found.sha256, found.size, skipped=True)
        if decision.action == "move-aside":
            self.moved_aside = move_aside(final)
            self.log.warn(f"{decision.reason}: moved it aside to {self.moved_aside} (kept)")
        return None

    def _remove_part(self) -> None:
        self.part.unlink(missing_ok=True)
        self.sidecar.unlink(missing_ok=True)

    def _load_part_info(self) -> PartInfo | None:
        """Return the sidecar of a `.part` that may be resumed; discard any other."""
        info: PartInfo | None = None
        with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
            data = json.loads(self.sidecar.read_text(encoding="utf-8"))
            info = PartInfo(
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

    def _save_part_info(self, info: PartInfo) -> None:
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
            raise Retryable(self._timeout_reason(exc)) from exc
        except httpx.TransportError as exc:
            tls = tls_failure(exc)
            if tls is not None:
                raise self._tls_error(tls) from exc
            detail = redact(str(exc)) or type(exc).__name__
            raise Retryable(f"connection failed: {detail}") from exc

    def _check_resume(self, response: httpx.Response, info: PartInfo | None, offset: int) -> int:
        """Return the offset the body of ``response`` starts at.

        Raises:
            StartOver: The partial file does not belong to what the server
                sends now.
            DownloadError: The server sent a range that was not asked for.
        """
        status = response.status_code
        if status == 200:
            if offset:
                self.log.debug(f"{self.name}: the server sent the whole file; restarting at 0")
            return 0
        content_range = parse_content_range(response.headers.get("content-range"))
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
        raise StartOver

    def _receive(
        self, response: httpx.Response, info: PartInfo | None, offset: int
    ) -> DownloadResult:
        """Stream the body into the `.part` file, then verify and rename it."""
        encoded = response.headers.get("content-encoding", "identity").lower()
        total: int | None = None
        if encoded in ("", "identity"):
            if offset:
                content_range = parse_content_range(response.headers.get("content-range"))
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
                or url_name(self.request.url)
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
                self._save_part_info(PartInfo(self.request.url, name, etag, modified, total))
            else:
                # Byte ranges of an encoded body do not map to the file: never resume it.
                self.sidecar.unlink(missing_ok=True)

        digest = hashlib.sha256()
        if offset:
            hash_into(digest, self.part)
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
                    start_writeback(fh)
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
            raise Retryable(f"the transfer ended early ({size} of {total} bytes)")
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
                raise StartOver
            raise IntegrityError(
                f"{name}: {problem} (downloaded from {self.shown_url})",
                hint="Run again to download it afresh; if it fails again, the upstream file "
                "changed: do not use it until its checksum is confirmed.",
            )
        final = ensure_within(self.dest_dir, self.dest_dir / name)
        kept = self._place(final, actual, size)
        if kept is not None:
            return kept
        self.part.replace(final)
        self.sidecar.unlink(missing_ok=True)
        elapsed = max(time.monotonic() - self.began, 1e-6)
        resumed = f", resumed at {human_size(self.resumed_from)}" if self.resumed_from else ""
        self.log.info(
            f"downloaded {name} ({human_size(size)}, "
            f"{human_size(self.transferred / elapsed)}/s{resumed})"
        )
        return self._result(final, actual, size, skipped=False, moved_aside=self.moved_aside)
