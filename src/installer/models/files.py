"""Helpers for model files on disk: partial downloads, hashes computed once, copies into place."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from installer.edges.download.files import sha256_file

PARTIAL_SUFFIXES = (".part", ".part.json", ".tmp")
"""Endings of files a download or a copy is still writing: never model files."""


class FileHashes:
    """sha256 of files, each computed once per run."""

    def __init__(self) -> None:
        self._known: dict[Path, str] = {}

    def sha256(self, path: Path) -> str:
        """Return the hex sha256 of ``path``, hashing it on first use only.

        Args:
            path: The file.

        Returns:
            The lower-case hex digest.
        """
        key = path.absolute()
        if key not in self._known:
            self._known[key] = sha256_file(path)
        return self._known[key]

    def same(self, first: Path, second: Path) -> bool:
        """Return whether two files have the same size and content.

        Args:
            first: One file.
            second: The other file.

        Returns:
            True when sizes and sha256 match.
        """
        if first.stat().st_size != second.stat().st_size:
            return False
        return self.sha256(first) == self.sha256(second)


def copy_into_place(source: Path, destination: Path) -> None:
    """Copy ``source`` to ``destination`` through a temporary file in the same folder.

    Args:
        source: The file to copy (kept).
        destination: Where the copy lands; replaced atomically at the end.
    """
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{destination.name}.", suffix=".tmp", dir=destination.parent
    )
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as writer, source.open("rb") as reader:
            shutil.copyfileobj(reader, writer, 1024 * 1024)
            writer.flush()
            os.fsync(writer.fileno())
        shutil.copystat(source, tmp)
        tmp.replace(destination)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
