"""What a download is asked for and what it gives: plain records shared by the planner and the edge.

A [`DownloadRequest`][installer.core.downloads.DownloadRequest] is built by the planner (the model
manifest's entries) and by the features; the downloader of
[`installer.edges.download`][installer.edges.download] fetches it and answers with a
[`DownloadResult`][installer.core.downloads.DownloadResult].
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DownloadRequest:
    """One file to fetch.

    Attributes:
        url: Where to fetch it (`https://`; `http://` only with `sha256`).
        dest_dir: The folder the file lands in (created when missing).
        filename: The final file name; when `None` it comes from the server's
            `Content-Disposition`, else from the URL path (both cleaned with
            [`safe_filename`][installer.core.filenames.safe_filename]).
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
