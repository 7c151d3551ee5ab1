"""A controllable HTTP server on 127.0.0.1 for tests of code that downloads.

[`LocalHTTPServer`][] serves files from memory (`bytes`) or generated on the
fly ([`GeneratedBody`][], deterministic bytes of any size that are never held
in memory), behaves like a real file server for `Range`, `If-Range`, `ETag`
and `Last-Modified`, and plays faults injected per path: answer a status
(`Respond`), drop the connection after N bytes (`Drop`), stall (`Stall`),
ignore `Range` (`IgnoreRange`) or `If-Range` (`IgnoreIfRange`), flip the bytes
it sends (`Corrupt`), send no length (`NoLength`) or redirect (`Redirect`).
Every request is recorded with its headers, status and the body bytes sent,
so tests assert on what went over the wire instead of mocking the client.

    with LocalHTTPServer() as server:
        server.add("/model.bin", b"...")
        server.inject("/model.bin", Drop(after_bytes=100))      # first request only
        server.inject("/model.bin", Respond(503), times=2)       # then two 503s
        url = server.url("/model.bin")                           # http://127.0.0.1:PORT/...
        other_host = server.url("/model.bin", host="localhost")  # same server, another name

`LocalHTTPServer(address="127.0.0.2")` listens on another loopback address: another
host that needs no name to resolve (a bare root may have no /etc/hosts for `localhost`).

Injections for a path are consumed in order, one per request; each applies to
`times` requests (`None`: forever, which also blocks the ones queued after it).
Several faults given to one `inject` call apply together to the same request.
With `tls=True` the server speaks HTTPS with a fresh self-signed certificate
(made with the `openssl` command), which clients reject unless they trust
`server.cert_path`.
"""

from __future__ import annotations

import functools
import hashlib
import random
import re
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

_BLOCK = 1024 * 1024
_FLIP = bytes(b ^ 0xFF for b in range(256))
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
POLL_INTERVAL = 0.005
"""Seconds between the serving thread's checks for `stop()`; requests are answered at once
whatever it is. `stop()` waits for the next check: at 0.05 s that was 30 ms a stop on average,
and the suite stops about 250 servers."""


@dataclass(frozen=True)
class GeneratedBody:
    """Deterministic bytes of any size, produced block by block on demand.

    Each 1 MiB block is a fixed random block (from ``seed``) with its index
    written in its first 8 bytes, so every block differs and a byte served at
    the wrong offset changes the hash.
    """

    size: int
    seed: int = 0

    @functools.cached_property
    def _base(self) -> bytes:
        return random.Random(self.seed).randbytes(_BLOCK)

    def _block(self, index: int) -> bytes:
        return index.to_bytes(8, "little") + self._base[8:]

    def chunks(self, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Yield the bytes in ``[start, end)`` in pieces of at most 1 MiB."""
        end = self.size if end is None else min(end, self.size)
        position = start
        while position < end:
            index, offset = divmod(position, _BLOCK)
            piece = self._block(index)[offset : min(_BLOCK, offset + end - position)]
            yield piece
            position += len(piece)

    @functools.cached_property
    def sha256(self) -> str:
        """The hex sha256 of the whole body (computed once, by streaming)."""
        digest = hashlib.sha256()
        for chunk in self.chunks():
            digest.update(chunk)
        return digest.hexdigest()


@dataclass
class Resource:
    """A file the server serves at one path."""

    body: bytes | GeneratedBody
    etag: str | None = None
    last_modified: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def size(self) -> int:
        """Length of the body in bytes."""
        return len(self.body) if isinstance(self.body, bytes) else self.body.size

    @property
    def sha256(self) -> str:
        """Hex sha256 of the body."""
        if isinstance(self.body, bytes):
            return hashlib.sha256(self.body).hexdigest()
        return self.body.sha256

    def chunks(self, start: int, end: int) -> Iterator[bytes]:
        """Yield the body bytes in ``[start, end)``."""
        if isinstance(self.body, bytes):
            for offset in range(start, end, _BLOCK):
                yield self.body[offset : min(end, offset + _BLOCK)]
        else:
            yield from self.body.chunks(start, end)


@dataclass(frozen=True)
class Respond:
    """Answer with ``status`` (and ``headers``/``body``) instead of the file."""

    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""


@dataclass(frozen=True)
class Redirect:
    """Answer with a redirect to ``location`` (absolute URL or path)."""

    location: str
    status: int = 302


@dataclass(frozen=True)
class Drop:
    """Send the headers and ``after_bytes`` body bytes, then close the connection."""

    after_bytes: int


@dataclass(frozen=True)
class Stall:
    """Send ``after_bytes`` body bytes, then wait ``seconds`` before going on."""

    seconds: float
    after_bytes: int = 0


@dataclass(frozen=True)
class IgnoreRange:
    """Answer 200 with the whole file even when a `Range` was asked for."""


@dataclass(frozen=True)
class IgnoreIfRange:
    """Honour `Range` even when `If-Range` no longer matches (a broken cache)."""


@dataclass(frozen=True)
class Corrupt:
    """Flip every bit of the body bytes sent (a bad hash, same size)."""


@dataclass(frozen=True)
class NoLength:
    """Send no `Content-Length`: the body ends when the connection closes."""


Fault = Respond | Redirect | Drop | Stall | IgnoreRange | IgnoreIfRange | Corrupt | NoLength


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server saw it, and what it answered."""

    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    status: int
    bytes_sent: int
    faults: tuple[Fault, ...]
    arrived: float
    """`time.monotonic()` when the request line was read."""
    finished: bool
    """False while the server is still answering (a stall, a long body)."""

    @property
    def host(self) -> str | None:
        """The `Host` header (`127.0.0.1:PORT`, `localhost:PORT`)."""
        return self.headers.get("host")

    @property
    def range(self) -> str | None:
        """The `Range` header, if any."""
        return self.headers.get("range")

    @property
    def authorization(self) -> str | None:
        """The `Authorization` header, if any."""
        return self.headers.get("authorization")


@dataclass
class _Injection:
    faults: tuple[Fault, ...]
    remaining: int | None


@dataclass
class _Exchange:
    """A request being answered; counters move *before* bytes reach the socket,
    so a client that has read an answer always finds it in the log."""

    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    faults: tuple[Fault, ...]
    arrived: float
    status: int = 0
    bytes_sent: int = 0
    finished: bool = False

    def snapshot(self) -> RecordedRequest:
        return RecordedRequest(
            self.method, self.path, self.query, self.headers, self.status,
            self.bytes_sent, self.faults, self.arrived, self.finished,
        )  # fmt: skip


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: LocalHTTPServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet: clients that hang up are part of the tests."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            self.request.do_handshake()
        super().setup()

    def do_GET(self) -> None:
        self.server.owner._handle(self, head=False)

    def do_HEAD(self) -> None:
        self.server.owner._handle(self, head=True)

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output clean; the request log is the record."""


class LocalHTTPServer:
    """A threaded HTTP(S) server on 127.0.0.1 with files, faults and a request log."""

    def __init__(self, *, tls: bool = False, address: str = "127.0.0.1") -> None:
        """Create the server; it listens once started (or entered as a context).

        Args:
            tls: Serve HTTPS with a fresh self-signed certificate for
                127.0.0.1 and localhost.
            address: The loopback address to listen on (Linux answers all of 127.0.0.0/8).
        """
        self._tls = tls
        self.address = address
        """The address the server listens on, and the host of its URLs by default."""
        self._lock = threading.Lock()
        self._resources: dict[str, Resource] = {}
        self._injections: dict[str, list[_Injection]] = {}
        self._log: list[_Exchange] = []
        self._active = 0
        self.max_concurrent = 0
        """The most requests that were being answered at the same time."""
        self._stopping = threading.Event()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.cert_path: Path | None = None

    def __enter__(self) -> LocalHTTPServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Bind a free port on the server's address and serve in a background thread."""
        httpd = _Server((self.address, 0), _Handler)
        httpd.owner = self
        if self._tls:
            httpd.socket = self._tls_context().wrap_socket(
                httpd.socket, server_side=True, do_handshake_on_connect=False
            )
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": POLL_INTERVAL}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving; stalled answers give up at once."""
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def _tls_context(self) -> ssl.SSLContext:
        self._tmp = tempfile.TemporaryDirectory(prefix="http-server-tls-")
        cert, key = Path(self._tmp.name, "cert.pem"), Path(self._tmp.name, "key.pem")
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
             "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
             "-keyout", str(key), "-out", str(cert)],
            check=True, capture_output=True,
        )  # fmt: skip
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.cert_path = cert
        return context

    @property
    def port(self) -> int:
        """The port the server listens on."""
        if self._httpd is None:
            raise RuntimeError("the server is not started")
        return int(self._httpd.server_address[1])

    def url(self, path: str, *, host: str | None = None) -> str:
        """Return the URL of ``path`` on this server, reached through ``host`` (its address)."""
        scheme = "https" if self._tls else "http"
        return f"{scheme}://{host or self.address}:{self.port}{path}"

    def add(
        self,
        path: str,
        body: bytes | GeneratedBody,
        *,
        etag: str | None = "auto",
        last_modified: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Resource:
        """Serve ``body`` at ``path`` (replacing what was there: a changed file).

        Args:
            path: The URL path, starting with `/`.
            body: The bytes, or a generated body for large files.
            etag: The `ETag` to send; `"auto"` derives a strong one from the
                content, `None` sends none.
            last_modified: A `Last-Modified` value to send, if any.
            headers: Further response headers (e.g. `Content-Disposition`).

        Returns:
            The resource, whose `sha256` and `size` tests can use.
        """
        resource = Resource(body, None, last_modified, dict(headers or {}))
        if etag == "auto":
            if isinstance(body, GeneratedBody):
                etag = f'"gen-{body.seed}-{body.size}"'
            else:
                etag = f'"{hashlib.sha256(body).hexdigest()[:16]}"'
        resource.etag = etag
        with self._lock:
            self._resources[path] = resource
        return resource

    def resource(self, path: str) -> Resource:
        """Return what is served at ``path`` (KeyError when nothing is)."""
        with self._lock:
            return self._resources[path]

    def inject(self, path: str, *faults: Fault, times: int | None = 1) -> None:
        """Queue ``faults`` for the next ``times`` requests to ``path`` (None: forever)."""
        with self._lock:
            self._injections.setdefault(path, []).append(_Injection(tuple(faults), times))

    def redirect(self, path: str, location: str, *, status: int = 302) -> None:
        """Redirect every request for ``path`` to ``location``."""
        self.inject(path, Redirect(location, status), times=None)

    def clear_faults(self, path: str | None = None) -> None:
        """Forget the injections queued for ``path`` (or for every path)."""
        with self._lock:
            if path is None:
                self._injections.clear()
            else:
                self._injections.pop(path, None)

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request so far (answered or being answered), in order of arrival."""
        with self._lock:
            return [exchange.snapshot() for exchange in self._log]

    def requests_for(self, path: str) -> list[RecordedRequest]:
        """The requests for ``path``, in order of arrival."""
        return [record for record in self.requests if record.path == path]

    def _next_faults(self, path: str) -> tuple[Fault, ...]:
        with self._lock:
            queue = self._injections.get(path)
            if not queue:
                return ()
            head = queue[0]
            if head.remaining is not None:
                head.remaining -= 1
                if head.remaining <= 0:
                    queue.pop(0)
            return head.faults

    def _handle(self, handler: _Handler, *, head: bool) -> None:
        path, _, query = handler.path.partition("?")
        headers = {key.lower(): value for key, value in handler.headers.items()}
        exchange = _Exchange(
            handler.command, path, query, headers, self._next_faults(path), time.monotonic()
        )
        with self._lock:
            self._log.append(exchange)
            self._active += 1
            self.max_concurrent = max(self.max_concurrent, self._active)
        try:
            self._answer(handler, exchange, head=head)
        except (OSError, ssl.SSLError):
            handler.close_connection = True
        finally:
            with self._lock:
                self._active -= 1
                exchange.finished = True

    def _answer(self, handler: _Handler, exchange: _Exchange, *, head: bool) -> None:
        path, headers, faults = exchange.path, exchange.headers, exchange.faults
        kinds = {type(fault) for fault in faults}
        for fault in faults:
            if isinstance(fault, Respond):
                self._send_simple(handler, exchange, fault.status, fault.headers, fault.body)
                return
            if isinstance(fault, Redirect):
                self._send_simple(handler, exchange, fault.status, {"Location": fault.location})
                return
        with self._lock:
            resource = self._resources.get(path)
        if resource is None:
            self._send_simple(handler, exchange, 404, {}, b"not found\n")
            return
        size = resource.size
        start, end, status = 0, size, 200
        wanted = headers.get("range")
        if wanted and IgnoreRange not in kinds:
            validator = headers.get("if-range")
            fresh = validator in (None, resource.etag, resource.last_modified)
            if fresh or IgnoreIfRange in kinds:
                parsed = _parse_range(wanted, size)
                if parsed == "unsatisfiable":
                    self._send_simple(
                        handler, exchange, 416, {"Content-Range": f"bytes */{size}"}, b""
                    )
                    return
                if parsed is not None:
                    start, end = parsed
                    status = 206
        exchange.status = status
        handler.send_response(status)
        if not any(key.lower() == "content-type" for key in resource.headers):
            handler.send_header("Content-Type", "application/octet-stream")
        if NoLength in kinds:
            handler.close_connection = True
            handler.send_header("Connection", "close")
        else:
            handler.send_header("Content-Length", str(end - start))
        handler.send_header("Accept-Ranges", "bytes")
        if status == 206:
            handler.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
        if resource.etag:
            handler.send_header("ETag", resource.etag)
        if resource.last_modified:
            handler.send_header("Last-Modified", resource.last_modified)
        for key, value in resource.headers.items():
            handler.send_header(key, value)
        handler.end_headers()
        if not head:
            self._send_body(handler, resource.chunks(start, end), faults, exchange)

    def _send_body(
        self,
        handler: _Handler,
        chunks: Iterator[bytes],
        faults: tuple[Fault, ...],
        exchange: _Exchange,
    ) -> None:
        drop = next((f for f in faults if isinstance(f, Drop)), None)
        stall = next((f for f in faults if isinstance(f, Stall)), None)
        corrupt = any(isinstance(f, Corrupt) for f in faults)
        for chunk in chunks:
            view = memoryview(chunk.translate(_FLIP) if corrupt else chunk)
            while len(view):
                if stall is not None and exchange.bytes_sent >= stall.after_bytes:
                    handler.wfile.flush()
                    self._stopping.wait(stall.seconds)
                    stall = None
                limit = len(view)
                if stall is not None:
                    limit = min(limit, stall.after_bytes - exchange.bytes_sent)
                if drop is not None:
                    limit = min(limit, drop.after_bytes - exchange.bytes_sent)
                    if limit <= 0:
                        self._hang_up(handler)
                        return
                exchange.bytes_sent += limit
                try:
                    handler.wfile.write(view[:limit])
                except OSError:
                    exchange.bytes_sent -= limit
                    raise
                view = view[limit:]
        if stall is not None:
            self._stopping.wait(stall.seconds)
        if drop is not None:
            self._hang_up(handler)

    @staticmethod
    def _hang_up(handler: _Handler) -> None:
        handler.wfile.flush()
        handler.close_connection = True
        handler.connection.shutdown(socket.SHUT_RDWR)

    @staticmethod
    def _send_simple(
        handler: _Handler,
        exchange: _Exchange,
        status: int,
        headers: Mapping[str, str],
        body: bytes = b"",
    ) -> None:
        exchange.status = status
        handler.send_response(status)
        for key, value in headers.items():
            handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if handler.command != "HEAD":
            exchange.bytes_sent = len(body)
            handler.wfile.write(body)


def _parse_range(value: str, size: int) -> tuple[int, int] | str | None:
    """Return ``(start, end)`` for one byte range, "unsatisfiable", or None to ignore it."""
    match = _RANGE.fullmatch(value.strip())
    if match is None or not (match.group(1) or match.group(2)):
        return None
    if match.group(1):
        start = int(match.group(1))
        end = int(match.group(2)) + 1 if match.group(2) else size
        if start >= size:
            return "unsatisfiable"
        if end <= start:
            return None
        return start, min(end, size)
    suffix = int(match.group(2))
    if suffix == 0:
        return "unsatisfiable"
    return max(0, size - suffix), size
