"""The files of a download on disk: hashing, write-behind, sizes for people, and `.part` files.

A transfer streams into `NAME.part` next to its final place; a small sidecar, `NAME.part.json`,
remembers the URL and the server's validators
([`PartInfo`][installer.edges.download.files.PartInfo]) so that the next try can resume.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from installer.core.downloads import ASIDE_MARK

HASH_CHUNK_SIZE = 1024 * 1024
"""Bytes read at a time when hashing a file on disk."""

WRITE_BEHIND_BYTES = 16 * 2**20
"""After this many bytes, the kernel is asked to start writing a download to disk.

Without it every dirty page waits for the `fsync` at the end of the file, so the
disk sits idle during the transfer and then holds the finished download up."""

PART_SUFFIX = ".part"
SIDECAR_SUFFIX = ".part.json"


@dataclass(frozen=True)
class PartInfo:
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


def sha256_file(path: Path) -> str:
    """Return the hex sha256 of the file at ``path``, read in chunks.

    Args:
        path: The file to hash.

    Returns:
        The lower-case hex digest.
    """
    digest = hashlib.sha256()
    hash_into(digest, path)
    return digest.hexdigest()


class _Digest(Protocol):
    def update(self, data: bytes, /) -> None: ...


def start_writeback(fh: BinaryIO) -> None:
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


def hash_into(digest: _Digest, path: Path) -> None:
    """Feed the bytes of the file at ``path`` to ``digest``, read in chunks.

    Args:
        digest: A running hash (`hashlib.sha256()`), updated in place.
        path: The file to read.
    """
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


def aside_name(name: str, stamp: str, number: int = 1) -> str:
    """Return the name a file moved aside gets: the mark and the time before its extension.

    Args:
        name: The file's name, e.g. `model.safetensors`.
        stamp: The time as `YYYYmmddTHHMMSS`.
        number: 2, 3, ... when an earlier name is taken (added after the stamp).

    Returns:
        E.g. `model.replaced-20260101T120000.safetensors`; the extension is kept so
        ComfyUI still lists the file.
    """
    path = Path(name)
    tag = f"{ASIDE_MARK}-{stamp}" + (f"-{number}" if number > 1 else "")
    return f"{path.stem}.{tag}{path.suffix}"


def move_aside(path: Path, now: dt.datetime | None = None) -> Path:
    """Rename ``path`` in its folder to a free name made by `aside_name`; never delete it.

    Args:
        path: The file to keep out of the way (never deleted).
        now: The time in its new name (default: now, local time).

    Returns:
        Its new path.

    Raises:
        OSError: The rename failed (the file is then where it was).
    """
    stamp = (now or dt.datetime.now()).strftime("%Y%m%dT%H%M%S")
    number = 1
    target = path.with_name(aside_name(path.name, stamp))
    while target.exists() or target.is_symlink():
        number += 1
        target = path.with_name(aside_name(path.name, stamp, number))
    path.rename(target)
    return target
