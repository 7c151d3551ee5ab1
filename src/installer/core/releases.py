"""What a source offers now: the releases on a package index, the refs of a git repository.

Filled by [`installer.edges.pin_sources`][installer.edges.pin_sources] (the index's JSON
API, `git ls-remote`) and read by `comfy-install pins check`
([`installer.pins`][installer.pins]), which compares them with the pins.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Release:
    """One version of a project on an index, with the time its first file was uploaded."""

    version: str
    uploaded: datetime | None = None
    yanked: bool = False


@dataclass(frozen=True)
class IndexProject:
    """A project as a package index lists it (PEP 691 JSON)."""

    name: str
    url: str
    releases: tuple[Release, ...] = ()


@dataclass(frozen=True)
class GitRefs:
    """The refs `git ls-remote` reports for a repository: tag → commit, and HEAD."""

    url: str
    tags: dict[str, str]
    head: str | None = None
