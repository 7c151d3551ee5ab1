"""A PEP 503 "simple" package index served by the local test HTTP server.

`serve_index(server, wheels)` publishes each wheel at `/files/NAME` and the
pages `/simple/` and `/simple/<project>/` with `#sha256=` links, so uv installs
from it exactly as from PyPI; faults (stalls, 500s, drops) can be injected per
file through the server.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from pathlib import Path

from support.http_server import LocalHTTPServer


def project_of(wheel: Path) -> str:
    """Return the normalised project name of a wheel file."""
    return re.sub(r"[-_.]+", "-", wheel.name.split("-", 1)[0]).lower()


def serve_index(server: LocalHTTPServer, wheels: list[Path]) -> str:
    """Publish ``wheels`` as a simple index on ``server``; return the index URL."""
    projects: dict[str, list[Path]] = defaultdict(list)
    for wheel in wheels:
        data = wheel.read_bytes()
        server.add(f"/files/{wheel.name}", data)
        projects[project_of(wheel)].append(wheel)
    for project, files in projects.items():
        links = "\n".join(
            f'<a href="/files/{w.name}#sha256={hashlib.sha256(w.read_bytes()).hexdigest()}">'
            f"{w.name}</a><br/>"
            for w in files
        )
        server.add(
            f"/simple/{project}/",
            f"<html><body>{links}</body></html>".encode(),
            headers={"Content-Type": "text/html"},
        )
    root = "\n".join(f'<a href="/simple/{p}/">{p}</a><br/>' for p in sorted(projects))
    server.add(
        "/simple/",
        f"<html><body>{root}</body></html>".encode(),
        headers={"Content-Type": "text/html"},
    )
    return server.url("/simple/")


def file_path(wheel: Path) -> str:
    """Return the server path a wheel is published at."""
    return f"/files/{wheel.name}"
