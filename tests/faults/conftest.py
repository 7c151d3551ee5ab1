"""Fixtures of the fault suite: one finished install per session, copied for each test.

`base_install` runs the real console script once, into a folder whose path has
spaces and non-ASCII characters, against the session's fixtures (local git
repository, local package index), planning for a GPU of compute capability 12.0
so step 10 is active, with step 10 and the models empty. Each test gets a copy
of it (`case`), its own index server (faults are injected there), its own uv
and download caches, and a dependencies.json it can change.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from faults.faultkit import (
    BASE_DIRNAME,
    HTTP_TIMEOUT,
    BaseInstall,
    Case,
    base_deps,
    build_sa_wheel,
    can_mount,
    copy_install,
    environment,
    install_cli_args,
    run_env,
    write_deps,
)
from support.cli import Fixtures, cli_path, run
from support.http_server import LocalHTTPServer
from support.package_index import serve_index


@pytest.fixture(scope="session")
def sa_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The SageAttention stand-in wheel."""
    return build_sa_wheel(tmp_path_factory.mktemp("sa-wheel"))


@pytest.fixture(scope="session")
def base_install(
    fixtures: Fixtures, tmp_path_factory: pytest.TempPathFactory, sa_wheel: Path
) -> BaseInstall:
    """A finished install made by the real console script, in a path with spaces and non-ASCII."""
    root = tmp_path_factory.mktemp("faults-base")
    deps = base_deps(fixtures)
    config = write_deps(root / "deps.json", deps)
    target = root / BASE_DIRNAME
    env = environment(run_env(fixtures, root), {"UV_CACHE_DIR": str(fixtures.uv_cache)})
    with LocalHTTPServer() as server:
        url = serve_index(server, sorted(fixtures.links.glob("*.whl")))
        first = run([cli_path(), *install_cli_args(target, config, url)], env, timeout=300)
    assert first.returncode == 0, first.stderr
    return BaseInstall(target, deps, config, first, sa_wheel)


@pytest.fixture
def case(base_install: BaseInstall, fixtures: Fixtures, tmp_path: Path) -> Iterator[Case]:
    """A copy of the base install with its own index server, caches and config."""
    target = copy_install(base_install.dir, tmp_path / "inst ü")
    with LocalHTTPServer() as server:
        url = serve_index(server, sorted(fixtures.links.glob("*.whl")))
        yield Case(
            dir=target,
            tmp=tmp_path,
            deps=json.loads(json.dumps(base_install.deps)),
            server=server,
            index_url=url,
            env=run_env(fixtures, tmp_path),
            sa_wheel=base_install.sa_wheel,
            fixtures=fixtures,
        )


@pytest.fixture(scope="session")
def mountable() -> None:
    """Skip, with the reason, where this process may not mount filesystems (unprivileged CI)."""
    problem = can_mount()
    if problem is not None:
        pytest.skip(problem)


@pytest.fixture
def fast_uv_backoff(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Skip the waits between uv's install attempts; return the waits that were asked for.

    Every attempt still runs uv against the index (the retry count and the messages are as
    shipped); only the 3 s + 6 s backoff of the torch step, which made a test of a dead index
    cost about 20 s, is not slept.
    """
    import types

    import installer.edges.uv as uv_edge

    asked: list[float] = []
    monkeypatch.setattr(uv_edge, "time", types.SimpleNamespace(sleep=asked.append))
    return asked


@pytest.fixture
def short_read_timeout(monkeypatch: pytest.MonkeyPatch) -> float:
    """Give the downloader a read timeout of HTTP_TIMEOUT seconds instead of the shipped 30 s."""
    import installer.edges.download.api as download

    shipped_client = download.make_client

    def make_client(*, jobs: int = 4, timeout: float = 30.0) -> Any:
        return shipped_client(jobs=jobs, timeout=HTTP_TIMEOUT)

    monkeypatch.setattr(download, "make_client", make_client)
    return HTTP_TIMEOUT
