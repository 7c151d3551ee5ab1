"""Fixtures for the integration suites."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support.http_server import LocalHTTPServer


@pytest.fixture
def http_server() -> Iterator[LocalHTTPServer]:
    """A fresh local HTTP server on 127.0.0.1 (see `support.http_server`)."""
    with LocalHTTPServer() as server:
        yield server
