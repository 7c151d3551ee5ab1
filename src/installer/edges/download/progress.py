"""Transfer progress: the sink transfers report to, rich bars on a terminal, else nothing."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from installer.core.downloads import DownloadRequest

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID


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


class RichProgress:
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

    def __enter__(self) -> RichProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._progress.stop()

    def _sum_expected(self) -> int | None:
        return sum(self._expected.values()) or None

    def started(self, request: DownloadRequest, name: str, total: int | None, done: int) -> None:
        """Show (or reset) the bar of ``request``.

        Args:
            request: The file being fetched.
            name: The file name shown for it.
            total: The file's full size in bytes, None when unknown.
            done: Bytes already on disk from an earlier try.
        """
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
        """Move the bar of ``request`` and the total.

        Args:
            request: The file being fetched.
            amount: The bytes received since the last call.
        """
        with self._lock:
            self._done[request] = self._done.get(request, 0) + amount
            task = self._tasks.get(request)
            if task is not None:
                self._progress.advance(task, amount)
            self._progress.advance(self._total, amount)

    def finished(self, request: DownloadRequest) -> None:
        """Remove the bar of ``request``; a skipped file leaves the total.

        Args:
            request: The file whose transfer ended.
        """
        with self._lock:
            task = self._tasks.pop(request, None)
            if task is None:
                self._expected[request] = 0
            else:
                self._progress.remove_task(task)
            self._progress.update(
                self._total, total=self._sum_expected(), completed=sum(self._done.values())
            )
