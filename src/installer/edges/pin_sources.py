"""Ask the sources of the pins what they offer now: a package index, a git remote.

* [`index_project`][installer.edges.pin_sources.index_project]: a project's versions and
  upload times from an index's JSON API (PEP 691 `application/vnd.pypi.simple.v1+json`,
  with PEP 700's `upload-time`), as PyPI serves it at `https://pypi.org/simple/NAME/`;
  `--index-url` points it at a mirror that speaks the same API.
* [`git_refs`][installer.edges.pin_sources.git_refs]: `git ls-remote --tags URL` (tags with
  the commits they point at, annotated tags peeled) and `HEAD`.

Nothing is downloaded but these listings, and nothing is written. A source that cannot
be reached raises [`NetworkError`][installer.core.errors.NetworkError] naming it.
"""

from __future__ import annotations

import shutil
import subprocess
from collections import defaultdict
from datetime import datetime

import httpx
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)

from installer.core.errors import NetworkError
from installer.core.log import redact
from installer.core.releases import GitRefs, IndexProject, Release
from installer.edges.git import git_env

PYPI_SIMPLE = "https://pypi.org/simple/"
ACCEPT = "application/vnd.pypi.simple.v1+json"


def _version_of(filename: str) -> str | None:
    try:
        if filename.endswith(".whl"):
            return str(parse_wheel_filename(filename)[1])
        return str(parse_sdist_filename(filename)[1])
    except (InvalidWheelFilename, InvalidSdistFilename):
        return None


def _when(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def parse_project(name: str, url: str, data: dict[str, object]) -> IndexProject:
    """Turn a PEP 691 project page into its releases.

    A release's upload time is its earliest file's `upload-time`; it is yanked when every
    file is. Versions listed (`versions`, PEP 700) without files are kept without a time.

    Args:
        name: The project's name.
        url: The page's URL (for messages).
        data: The page's JSON.
    """
    times: dict[str, list[datetime]] = defaultdict(list)
    yanked: dict[str, list[bool]] = defaultdict(list)
    files = data.get("files")
    for item in files if isinstance(files, list) else []:
        if not isinstance(item, dict):
            continue
        version = _version_of(str(item.get("filename", "")))
        if version is None:
            continue
        yanked[version].append(bool(item.get("yanked")))
        when = _when(item.get("upload-time"))
        if when is not None:
            times[version].append(when)
    listed = data.get("versions")
    versions = set(yanked) | {str(v) for v in listed} if isinstance(listed, list) else set(yanked)
    releases = tuple(
        Release(
            version=version,
            uploaded=min(times[version]) if times.get(version) else None,
            yanked=bool(yanked.get(version)) and all(yanked[version]),
        )
        for version in sorted(versions)
    )
    return IndexProject(name=name, url=url, releases=releases)


def index_project(
    name: str, index_url: str | None = None, *, timeout: float = 30.0
) -> IndexProject:
    """Return a project's releases from an index's JSON API.

    Args:
        name: The distribution, e.g. `torch`.
        index_url: The simple index (default PyPI's, `https://pypi.org/simple/`).
        timeout: Seconds for the request.

    Raises:
        NetworkError: The index cannot be reached, answers with an error, or does not serve
            PEP 691 JSON.
    """
    base = (index_url or PYPI_SIMPLE).rstrip("/")
    url = f"{base}/{canonicalize_name(name)}/"
    try:
        with httpx.Client(timeout=timeout, follow_redirects=True) as client:
            response = client.get(url, headers={"Accept": ACCEPT})
    except httpx.HTTPError as exc:
        raise NetworkError(
            f"{redact(url)} could not be reached: {type(exc).__name__}: {exc}",
            "Check the network (or --index-url) and run again.",
        ) from exc
    if response.status_code == 404:
        return IndexProject(name=name, url=url)
    if response.status_code != 200:
        raise NetworkError(
            f"{redact(url)} answered HTTP {response.status_code}.",
            "Check the index URL and run again.",
        )
    if "json" not in response.headers.get("content-type", ""):
        raise NetworkError(
            f"{redact(url)} does not serve the JSON API (PEP 691): it answered "
            f"{response.headers.get('content-type') or 'no content type'}.",
            "Point --index-url at an index that serves PEP 691 JSON (PyPI does).",
        )
    try:
        data = response.json()
    except ValueError as exc:
        raise NetworkError(f"{redact(url)} answered invalid JSON: {exc}.") from exc
    return parse_project(name, url, data if isinstance(data, dict) else {})


def git_refs(url: str, *, timeout: float = 60.0) -> GitRefs:
    """Return the tags (peeled to commits) and HEAD of a git remote, with `git ls-remote`.

    Args:
        url: The repository (a URL, a path or a bundle).
        timeout: Seconds for git.

    Raises:
        NetworkError: git is missing, or the remote cannot be listed.
    """
    git = shutil.which("git")
    if git is None:
        raise NetworkError("git was not found on PATH.", "Install git and run again.")
    try:
        done = subprocess.run(
            [git, "ls-remote", "--", url],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=git_env(),
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise NetworkError(f"git ls-remote {redact(url)} timed out after {timeout:g} s.") from exc
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise NetworkError(
            f"git ls-remote {redact(url)} failed: {last}",
            "Check the network and the URL, and run again.",
        )
    tags: dict[str, str] = {}
    peeled: dict[str, str] = {}
    head = None
    for line in done.stdout.splitlines():
        commit, _, ref = line.partition("\t")
        if ref == "HEAD":
            head = commit
        elif ref.startswith("refs/tags/"):
            tag = ref.removeprefix("refs/tags/")
            if tag.endswith("^{}"):
                peeled[tag[:-3]] = commit
            else:
                tags[tag] = commit
    tags.update(peeled)
    return GitRefs(url=url, tags=tags, head=head)
