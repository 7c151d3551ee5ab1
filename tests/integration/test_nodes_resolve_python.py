"""The nodes' resolve for another Python than the venv's (an update moving to a new Python).

Real uv (`uv pip compile`) over a real find-links folder of tiny wheels, offline: a requirement
whose marker is true only for an old Python names a package no folder holds, so the resolve for
that Python fails and the one for the venv's own Python passes.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from installer.core.errors import ResolutionError
from installer.core.log import InstallerLogger
from installer.core.uv_options import IndexOptions
from installer.nodes.context import make_uv
from installer.nodes.kept import target_python_version
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
