"""The nodes' resolve with markers: another Python than the venv's, a lock's marked entries.

Real uv (`uv pip compile`) over a real find-links folder of tiny wheels, offline. A requirement
whose marker is true only for an old Python names a package no folder holds, so the resolve for
that Python (an update moving to it) fails and the one for the venv's own Python passes. A lock
entry with a marker that holds here pins the package the resolve picks, as step 9's install
with the lock as a constraint would.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from installer.core.errors import ResolutionError
from installer.core.log import InstallerLogger
from installer.core.uv_options import IndexOptions
from installer.nodes.context import make_uv
from installer.nodes.kept import lock_constraints, target_python_version
from installer.nodes.resolve import ResolveRequest, resolve
from support.wheels import WheelSpec, build_wheel


def test_the_resolve_judges_markers_for_the_python_it_is_asked_for(tmp_path: Path) -> None:
    links = tmp_path / "links"
    build_wheel(WheelSpec("plain-new", "1.2"), links)
    uv = make_uv(
        IndexOptions(find_links=[str(links)], offline=True),
        InstallerLogger(verbosity=-1, log_file=tmp_path / "uv.log"),
    )
    lines = ["plain-new==1.2", 'only-for-old==1.0 ; python_version < "3.9"']

    def request(version: str | None) -> ResolveRequest:
        return ResolveRequest(files={"custom-node-a.txt": lines}, held={}, preferences={},
                              python=Path(sys.executable), python_version=version)  # fmt: skip

    here = resolve(uv, request(None), tmp_path / "here")
    assert [entry.name for entry in here.entries] == ["plain-new"]
    with pytest.raises(ResolutionError) as failed:
        resolve(uv, request("3.8"), tmp_path / "old")
    assert "only-for-old" in str(failed.value)


def test_a_locks_entries_with_markers_hold_the_kept_nodes_resolve(tmp_path: Path) -> None:
    links = tmp_path / "links"
    for version in ("1.2", "1.3"):
        build_wheel(WheelSpec("plain-new", version), links)
    lock = tmp_path / "pins.lock"
    lock.write_text(
        'plain-new==1.2 ; python_version >= "3.0" \\\n    --hash=sha256:' + "0" * 64 + "\n"
        "    # via -r requirements.txt\n"
        "torch==2.1.0 \\\n    --hash=sha256:" + "1" * 64 + "\n",
        encoding="utf-8",
    )
    pins, marked = lock_constraints(lock, {"torch": "2.11.0"})
    assert pins == {} and marked == ['plain-new==1.2 ; python_version >= "3.0"']
    uv = make_uv(
        IndexOptions(find_links=[str(links)], offline=True),
        InstallerLogger(verbosity=-1, log_file=tmp_path / "uv.log"),
    )
    files = {"custom-node-a.txt": ["plain-new"]}
    free = resolve(uv, ResolveRequest(files=files, held={}, preferences={},
                                      python=Path(sys.executable)), tmp_path / "free")  # fmt: skip
    assert [entry.requirement for entry in free.entries] == ["plain-new==1.3"]
    held = ResolveRequest(files=files, held={}, constraints=marked, preferences={},
                          python=Path(sys.executable))  # fmt: skip
    assert [entry.requirement for entry in resolve(uv, held, tmp_path / "held").entries] == [
        "plain-new==1.2"
    ]


@pytest.mark.parametrize(
    ("planned", "current", "expected"),
    [
        ("3.12", "3.12.3", None),
        ("3.12.8", "3.12.3", None),
        ("3.13", "3.12.3", "3.13"),
        ("3.13", None, "3.13"),
        ("/opt/python3.13/bin/python3", "3.12.3", None),
    ],
)
def test_an_update_resolves_for_another_python_only_when_its_minor_differs(
    planned: str, current: str | None, expected: str | None
) -> None:
    assert target_python_version(planned, current) == expected
