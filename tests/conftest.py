"""Shared fixtures, built once per session: a local ComfyUI repo, tiny wheels, an index.

Everything the installer talks to in these tests is real (uv, git, httpx, a
local HTTP server); only the *contents* are stand-ins: a ComfyUI-shaped git
repository and small wheels named torch, xformers, ... with real metadata.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.cli import Fixtures
from support.comfy_repo import make_comfy_repo
from support.http_server import LocalHTTPServer
from support.package_index import serve_index
from support.wheels import WheelSpec, build_wheel, torch_wheel_specs


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """`-n auto` (the README's test command): one worker more than xdist would start.

    A worker spends about a fifth of its time waiting rather than computing: on the
    processes every test starts and ends (comfy-install, uv, git, a venv's Python), on
    local sockets and on the package registry. A worker more fills that time. On a 2-core
    machine like CI's, the local-fixture files (faults, integration, the e2e install) ran in
    143 s with 2 workers, the cores 1.61 busy on average, and in 132 s with 3 (1.86 busy);
    the real files with the fault suite in 245 s and 235 s. `PYTEST_XDIST_AUTO_NUM_WORKERS`
    still decides where it is set.
    """
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None
    from xdist.plugin import pytest_xdist_auto_num_workers as xdist_count

    return xdist_count(config) + 1


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Order the work for xdist (`--dist loadfile --no-loadscope-reorder`).

    With `--dist loadfile` a file is one unit of work, handed out in this order (without
    `--no-loadscope-reorder` xdist would sort the files by their number of tests, which
    puts the slow real files of one to three tests last). A worker takes its next file
    while two tests of its last one are still pending, so a slow file handed out at the
    end keeps one worker busy after the other has finished: the long files go early, the
    many short ones (the unit tests) fill the end.

    - first one file of tests on the shared real install (`real_install`): its install
      takes half a minute and fills the uv cache;
    - then the first third of the plain files, so that the other workers work meanwhile
      instead of waiting on the install's lock;
    - then the other files on the shared real install, which take minutes;
    - then the other `real` files, which install the torch trio again: by now they find
      it in the uv cache instead of downloading it a second time beside it;
    - then the rest.
    """

    def tier(item: pytest.Item) -> int:
        if "real_install" in getattr(item, "fixturenames", ()):
            return 0
        return 2 if item.get_closest_marker("real") is not None else 1

    tiers = {item.nodeid: tier(item) for item in items}
    files = {n: list(dict.fromkeys(i.path for i in items if tiers[i.nodeid] == n)) for n in (0, 1)}
    first = set(files[0][:1])
    early = set(files[1][: len(files[1]) // 3])

    def rank(item: pytest.Item) -> int:
        found = tiers[item.nodeid]
        if found == 0:
            return 0 if item.path in first else 2
        if found == 1:
            return 1 if item.path in early else 4
        return 3

    items.sort(key=rank)


@pytest.fixture(scope="session")
def fixtures(tmp_path_factory: pytest.TempPathFactory) -> Fixtures:
    """Build the fixture ComfyUI repository and the folder of tiny wheels once."""
    root = tmp_path_factory.mktemp("fixtures")
    links = root / "links"
    wheels: dict[str, Path] = {}
    specs = [
        *torch_wheel_specs("2.9.1", cuda="12.8", local="cu128"),
        *torch_wheel_specs("2.10.0", cuda="12.8", local="cu128"),
        WheelSpec("needs-torch", "1.0", requires=["torch"]),
        WheelSpec("wants-new-torch", "1.0", requires=["torch==2.10.0"]),
        WheelSpec("xformers", "0.0.33.post2", requires=["torch==2.9.1"]),
        WheelSpec("xformers", "0.0.34", requires=["torch==2.10.0"]),
        WheelSpec("triton", "3.5.1"),
        WheelSpec("sageattention", "1.0.6"),
    ]
    for spec in specs:
        path = build_wheel(spec, links)
        wheels[f"{spec.name}=={spec.version}"] = path
    repo = root / "comfy-src"
    commits = make_comfy_repo(repo, ["torch", "torchvision", "torchaudio", "needs-torch"])
    uv_cache = root / "uv-cache"
    return Fixtures(root, links, wheels, repo, commits, uv_cache)


@pytest.fixture
def index_server(fixtures: Fixtures) -> Iterator[tuple[LocalHTTPServer, str]]:
    """A local simple index with every fixture wheel: ``(server, index_url)``."""
    with LocalHTTPServer() as server:
        url = serve_index(server, sorted(fixtures.links.glob("*.whl")))
        yield server, url


@pytest.fixture
def fast_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Compress the downloader's backoff: no waiting between tries.

    Every try and every request still happens (the shipped retry count of 5,
    the resume logic and the messages); only the 1-8 s backoff between tries
    is skipped, which would make each persistent fault cost about 15 s. A wait
    a server asks for with `Retry-After` is still honoured, as shipped.
    """
    from installer.edges.download.retry import RetryPolicy

    shipped_delay = RetryPolicy.delay

    def delay(self: RetryPolicy, failures: int, retry_after: float | None = None) -> float:
        return 0.0 if retry_after is None else shipped_delay(self, failures, retry_after)

    monkeypatch.setattr(RetryPolicy, "delay", delay)
