"""Transfer progress: the sink transfers report to, and the sink that shows nothing.

The bars people see are the CLI's ([`TransferBars`][installer.cli.render.TransferBars]),
handed to the downloads through the logger's `transfer_display`.
"""

from __future__ import annotations

from typing import Protocol

from installer.core.downloads import DownloadRequest


class ProgressSink(Protocol):
    """Receives transfer progress; the CLI's bars implement it, tests may too.

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


class NoProgress:
    """A progress sink that shows nothing (quiet or non-terminal output)."""

    def started(self, request: DownloadRequest, name: str, total: int | None, done: int) -> None:
        """Ignore the start.

        Args:
            request: The file being fetched.
            name: The file name shown for it.
            total: The file's full size in bytes, None when unknown.
            done: Bytes already on disk from an earlier try.
        """

    def advanced(self, request: DownloadRequest, amount: int) -> None:
        """Ignore the bytes.

        Args:
            request: The file being fetched.
            amount: The bytes received since the last call.
        """

    def finished(self, request: DownloadRequest) -> None:
        """Ignore the end.

        Args:
            request: The file whose transfer ended.
        """
