"""What a download is asked for and what it gives: plain records shared by the planner and the edge.

A [`DownloadRequest`][installer.core.downloads.DownloadRequest] is built by the planner (the model
manifest's entries) and by the features; the downloader of
[`installer.edges.download`][installer.edges.download] fetches it and answers with a
[`DownloadResult`][installer.core.downloads.DownloadResult].

What the downloader does with a file already at a request's final place is asked of an
[`ExistingFilePolicy`][installer.core.downloads.ExistingFilePolicy]: the model downloads pass
[`ModelFilePolicy`][installer.plan.model_files.ModelFilePolicy], which never lets a download
replace a file it cannot prove to be the same one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

ASIDE_MARK = "replaced"
"""The word in the name of a file a download moved aside.

As in `model.replaced-20260101T120000.safetensors`."""


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
        moved_aside: Where a different file that was at `path` before was moved
            (renamed in its folder, never deleted); None when nothing was.
    """

    path: Path
    sha256: str
    size: int
    bytes_transferred: int
    resumed_from: int
    skipped: bool
    seconds: float
    moved_aside: Path | None = None


@dataclass(frozen=True)
class FoundFile:
    """A file already at a download's final place.

    Attributes:
        path: The file.
        sha256: Its hex digest (lower case).
        size: Its size in bytes.
    """

    path: Path
    sha256: str
    size: int


ExistingAction = Literal["keep", "fetch", "conflict", "move-aside", "overwrite"]
"""What to do with a [`FoundFile`][installer.core.downloads.FoundFile].

Asked before any transfer: `keep` (nothing to download), `fetch` (download into the `.part`
file and ask again before it takes the final name) or `conflict` (stop; the file stays).
Asked again with the verified download's sha256: `keep` (the download is dropped: the file
there is the same), `conflict` (the download is dropped, the file stays), `move-aside` (the
file is renamed in its folder, then the download takes its name) or `overwrite` (the
download replaces it: only for files the installer owns, like its wheel cache).
"""


@dataclass(frozen=True)
class ExistingDecision:
    """What to do with a file already at a download's place, and why.

    Attributes:
        action: See [`ExistingAction`][installer.core.downloads.ExistingAction].
        reason: Said to the user (the error's message for a `conflict`).
        hint: What the user can do about a `conflict`.
    """

    action: ExistingAction
    reason: str
    hint: str = ""


class ExistingFilePolicy(Protocol):
    """Decides what happens to a file already at a download's final place."""

    def __call__(
        self, request: DownloadRequest, found: FoundFile, downloaded: str | None
    ) -> ExistingDecision:
        """Return what to do with ``found``.

        Args:
            request: The download.
            found: The file at its final place.
            downloaded: None before any transfer; the verified download's sha256
                when it is about to take the final name.
        """
        ...
