# comfy-install attention routes schema: written by `comfy-install launch`, rewritten when outdated.
"""The attention routing table's one schema: its names, its records, its reader and writer.

A launch with a usable calibration writes `DIR/.comfy-install/attention-routes.json`
and names it in `COMFY_INSTALL_ATTENTION_ROUTES`
([`ROUTES_ENV`][installer.attention.shim.routes.ROUTES_ENV]); the attention router in
ComfyUI's process ([`router`][installer.attention.shim.router]) reads it back. Both sides
go through this module: the planner builds the table with
[`routes_data`][installer.attention.shim.routes.routes_data] (typed as
[`RoutesData`][installer.attention.shim.routes.RoutesData]) and
[`dump_routes`][installer.attention.shim.routes.dump_routes] writes it; the router reads it
with [`load_routes`][installer.attention.shim.routes.load_routes] /
[`parse_routes`][installer.attention.shim.routes.parse_routes], which check every field and
say what is wrong.

`comfy-install launch` copies this file into the venv's site-packages as
`comfy_install_routes.py`, beside the router and the tuning shim, which import it by that
name. Standard library only, Python 3.10 and newer, and nothing imported at module level
(not even `typing`, `json` or `dataclasses`: every tuned start of ComfyUI imports this
module). The records are `TypedDict`s seen by the type checker only; at run time a table is
the plain JSON data.
"""

from __future__ import annotations

# Not `typing.TYPE_CHECKING`: importing typing would cost every tuned start
# milliseconds before ComfyUI runs; mypy treats this name the same way.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any, TypedDict

    class BandData(TypedDict):
        """One band of sequence lengths and the backend its calls go to."""

        min_tokens: int
        max_tokens: int | None
        """None: no end."""
        backend: str

    class RouteData(TypedDict):
        """The bands of one head dim and dtype (every other length goes to SDPA)."""

        head_dim: int
        dtype: str
        """``fp16`` or ``bf16``."""
        bands: list[BandData]

    class _RoutesRequired(TypedDict):
        routes: list[RouteData]

    class RoutesData(_RoutesRequired, total=False):
        """The routing table as written (JSON); one written by hand may have only ``routes``."""

        schema_version: int
        calibrated_at: str
        gpu: str
        counts_file: str
        """Where the router writes its call counters ("": nowhere)."""
        flush_every: int
        targets: dict[str, str]
        """Another ComfyUI function name for a backend (optional)."""


ROUTES_ENV = "COMFY_INSTALL_ATTENTION_ROUTES"
"""Names the attention routing table's file for the shim (yours is kept), or turns it off."""
ROUTES_OFF = ("off", "0", "false")
"""The values of `ROUTES_ENV` that turn the router off (any case, spaces around ignored): the
shim attaches nothing and reads no file, and launch writes no table. Any other value names a
file (``./off`` is a file called ``off``)."""
COMFYUI_CALLS = "comfyui"
"""The counters' name for calls the router left to ComfyUI's own function (masked calls,
unreadable shapes)."""
COUNTS_ENV = "COMFY_INSTALL_ATTENTION_COUNTS"
"""Names the file the shim writes its attention call counters to (yours is kept)."""
ROUTES_FILE = "attention-routes.json"
"""The routing table's file name, next to the calibration in `DIR/.comfy-install/`."""
COUNTS_FILE = "attention-calls.json"
"""The router's call counters, next to the routing table."""
ROUTES_SCHEMA_VERSION = 1
FLUSH_EVERY = 500
"""The router writes its call counters after this many calls (and at exit)."""
WRITE_INTERVAL = 1.0
"""Seconds at least between two writes of the router's writer thread."""
MAX_SHAPES = 256
"""The router decides and counts at most this many call shapes one by one."""
"""The shim writes its counters after this many calls (and at exit)."""


def shape_label(head_dim: int, dtype: str, tokens: int) -> str:
    """Return the counters' name of a call shape: ``fp16 D=64 N=4096``.

    Args:
        head_dim: D.
        dtype: ``fp16`` or ``bf16``.
        tokens: N, the query (and key) tokens.
    """
    return f"{dtype} D={head_dim} N={tokens}"


def parse_shape_label(text: str) -> tuple[int, str, int] | None:
    """Read a [`shape_label`][installer.attention.shim.routes.shape_label] back.

    Args:
        text: ``fp16 D=64 N=4096``.

    Returns:
        ``(64, "fp16", 4096)`` (head dim, dtype, tokens), or None for any other text.
    """
    parts = text.split()
    if len(parts) != 3 or not parts[1].startswith("D=") or not parts[2].startswith("N="):
        return None
    try:
        return int(parts[1][2:]), parts[0], int(parts[2][2:])
    except ValueError:
        return None


def in_band(tokens: int, low: int, high: int | None) -> bool:
    """Return whether a call falls in a band of the routing table.

    Args:
        tokens: N, the call's query (and key) tokens.
        low: The band's first length (``min_tokens``).
        high: The first length past it (``max_tokens``; None: no end).
    """
    return low <= tokens and (high is None or tokens < high)


def routes_off(value: str | None) -> bool:
    """Return whether a value of `COMFY_INSTALL_ATTENTION_ROUTES` turns the router off.

    Args:
        value: The variable's value (None: unset).

    Returns:
        True for one of [`ROUTES_OFF`][installer.attention.shim.routes.ROUTES_OFF], in any
        case; False for anything else, which names a routing table's file.
    """
    return (value or "").strip().lower() in ROUTES_OFF


def routes_data(
    routes: Sequence[RouteData],
    calibrated_at: str,
    gpu: str,
    counts_file: str,
    flush_every: int = FLUSH_EVERY,
) -> RoutesData:
    """Return the routing table a launch writes for the router (JSON-ready).

    Args:
        routes: Per head dim and dtype, the bands that go to a backend other than SDPA.
        calibrated_at: When the calibration it was made from was measured.
        gpu: The GPU it was measured on.
        counts_file: Where the router writes its call counters.
        flush_every: The router writes them after this many calls.
    """
    return {
        "schema_version": ROUTES_SCHEMA_VERSION,
        "calibrated_at": calibrated_at,
        "gpu": gpu,
        "counts_file": counts_file,
        "flush_every": flush_every,
        "routes": list(routes),
    }


def dump_routes(data: RoutesData) -> str:
    """Return the table as the text of its file (indented JSON and a final newline).

    Args:
        data: The table.
    """
    import json

    return json.dumps(data, indent=2) + "\n"


def parse_routes(data: Mapping[str, Any]) -> RoutesData:
    """Check a routing table read from JSON and return it with every field in its type.

    ``counts_file`` defaults to "" (no counters), ``flush_every`` to
    [`FLUSH_EVERY`][installer.attention.shim.routes.FLUSH_EVERY] (at least 1), ``targets``
    to none.

    Args:
        data: ``routes`` (``head_dim``, ``dtype``, ``bands`` of ``min_tokens``,
            ``max_tokens`` (None: no end) and ``backend``), ``counts_file``,
            ``flush_every`` and, optionally, ``targets``.

    Raises:
        ValueError: The data is not such a table.
    """
    try:
        routes: list[RouteData] = [
            {
                "head_dim": int(route["head_dim"]),
                "dtype": str(route["dtype"]),
                "bands": [
                    {
                        "min_tokens": int(band["min_tokens"]),
                        "max_tokens": (
                            None if band.get("max_tokens") is None else int(band["max_tokens"])
                        ),
                        "backend": str(band["backend"]),
                    }
                    for band in route["bands"]
                ],
            }
            for route in data["routes"]
        ]
        table: RoutesData = {
            "routes": routes,
            "counts_file": str(data.get("counts_file") or ""),
            "flush_every": max(int(data.get("flush_every") or FLUSH_EVERY), 1),
            "targets": {str(k): str(v) for k, v in dict(data.get("targets") or {}).items()},
        }
        if data.get("schema_version") is not None:
            table["schema_version"] = int(data["schema_version"])
        if data.get("calibrated_at") is not None:
            table["calibrated_at"] = str(data["calibrated_at"])
        if data.get("gpu") is not None:
            table["gpu"] = str(data["gpu"])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"not a routing table ({type(exc).__name__}: {exc})") from None
    return table


def load_routes(path: str) -> RoutesData:
    """Read the routing table from its file and check it.

    Args:
        path: The file `COMFY_INSTALL_ATTENTION_ROUTES` names.

    Raises:
        OSError: The file cannot be read.
        ValueError: It is not a routing table.
    """
    import json

    with open(path, encoding="utf-8") as handle:  # noqa: PTH123 - pathlib costs start-up time
        return parse_routes(json.load(handle))


class Counter:
    """Counts routed calls per backend and per shape; writes them to a JSON file.

    Each (backend, shape) has one slot, a one-element list the router keeps
    with its cached decision and increments itself: counting a call costs no
    lock and no dictionary work (CPython's increment of a list item under the GIL
    may lose a count between threads, never a call).

    The router asks for a write every ``flush_every`` calls
    ([`request`][installer.attention.shim.routes.Counter.request]); a writer thread
    does it, at most once every `WRITE_INTERVAL` seconds, so no call waits on the
    disk (a synchronous write every 500 calls cost 2 ms each on an overlay /tmp:
    4 µs a call, more than the router itself).
    [`flush`][installer.attention.shim.routes.Counter.flush] writes at once (at attach
    and at exit); [`wait`][installer.attention.shim.routes.Counter.wait] waits for the
    writes asked for.
    """

    def __init__(self, path: str, flush_every: int) -> None:
        """Create the counter.

        Args:
            path: The file to write (nothing is written when empty).
            flush_every: Write after this many calls.
        """
        self.path = path
        self.flush_every = flush_every
        self.slots: dict[tuple[str, str | None], list[int]] = {}
        self.status: dict[str, Any] = {"attached": False, "message": ""}
        self.pending = 0
        self._failed = False
        self._writer: Any = None  # the writer thread's condition, once it runs
        self._writes = [0, 0]  # writes asked for, writes done
        self._writing: Any = None  # held while the file is written (writer and exit)

    def slot(self, backend: str, shape: str | None) -> list[int]:
        """Return the slot that counts calls of ``shape`` sent to ``backend``.

        Args:
            backend: Where the calls go (a backend, or ``comfyui``).
            shape: ``fp16 D=64 N=4096`` (past `MAX_SHAPES` shapes: counted as None).
        """
        shapes = {key[1] for key in self.slots if key[1] is not None}
        if shape is not None and shape not in shapes and len(shapes) >= MAX_SHAPES:
            shape = None
        return self.slots.setdefault((backend, shape), [0])

    def add(self, backend: str, shape: str | None) -> None:
        """Count one call (the router counts through its cached slot instead).

        Args:
            backend: Where it went (a backend, or ``comfyui``).
            shape: ``fp16 D=64 N=4096``, when the shape was read.
        """
        self.slot(backend, shape)[0] += 1
        self.tick()

    def tick(self) -> None:
        """Note one call; ask for a write every ``flush_every`` calls."""
        self.pending += 1
        if self.pending >= self.flush_every:
            self.pending = 0
            self.request()

    def request(self) -> None:
        """Ask the writer thread to write the counters (started on the first request).

        Where no thread can be started, the counters are written now.
        """
        if not self.path:
            return
        if self._writer is None:
            import threading

            self._writing = threading.Lock()
            self._writer = threading.Condition()
            try:
                threading.Thread(
                    target=self._write_loop, name="comfy-install-attention-counts", daemon=True
                ).start()
            except RuntimeError:  # no thread here (interpreter shutting down): write now
                self._writer = None
                self.flush()
                return
        with self._writer:
            self._writes[0] += 1
            self._writer.notify_all()

    def _write_loop(self) -> None:
        """The writer thread: write when asked, at most once every `WRITE_INTERVAL` seconds.

        Requests that come faster (500 calls take 20 ms at small shapes) wait for the
        next write, one for all: a write a request kept the thread (and the GIL) busy.
        """
        import time

        writer, writes = self._writer, self._writes
        while True:
            with writer:
                writer.wait_for(lambda: writes[0] > writes[1])
                target = writes[0]
            self.flush()
            with writer:
                writes[1] = target
                writer.notify_all()
            time.sleep(WRITE_INTERVAL)

    def wait(self, timeout: float = 10.0) -> bool:
        """Wait until every write asked for is done; False if ``timeout`` seconds pass first.

        Args:
            timeout: Seconds to wait at most.
        """
        writer, writes = self._writer, self._writes
        if writer is None:
            return True
        with writer:
            done: bool = writer.wait_for(lambda: writes[1] >= writes[0], timeout)
            return done

    @property
    def calls(self) -> dict[str, int]:
        """Calls per backend."""
        totals: dict[str, int] = {}
        for (backend, _), slot in list(self.slots.items()):
            if slot[0]:
                totals[backend] = totals.get(backend, 0) + slot[0]
        return totals

    @property
    def shapes(self) -> dict[str, dict[str, int]]:
        """Calls per shape, then per backend."""
        found: dict[str, dict[str, int]] = {}
        for (backend, shape), slot in list(self.slots.items()):
            if shape is not None and slot[0]:
                found.setdefault(shape, {})[backend] = slot[0]
        return found

    def flush(self) -> None:
        """Write the counters now (atomically); a failure is reported once, never raised."""
        self.pending = 0
        if not self.path:
            return
        if self._writing is not None:
            with self._writing:  # the writer thread and the exit's flush share the file
                self._write()
        else:
            self._write()

    def _write(self) -> None:
        """Write the counters to ``path`` atomically."""
        import json
        import os

        document = {**self.status, "pid": os.getpid(), "calls": self.calls}
        document["shapes"] = self.shapes
        temporary = f"{self.path}.{os.getpid()}.tmp"
        try:
            with open(temporary, "w", encoding="utf-8") as handle:  # noqa: PTH123
                json.dump(document, handle, indent=1, sort_keys=True)
            os.replace(temporary, self.path)  # noqa: PTH105
        except OSError as exc:
            if not self._failed:
                self._failed = True
                say(f"attention counters cannot be written to {self.path} ({exc})")


def say(message: str) -> None:
    """Write one line of the tuning's to ComfyUI's stderr (never raises).

    Args:
        message: The line, without the ``comfy-install tuning:`` prefix.
    """
    import sys

    try:
        sys.stderr.write(f"comfy-install tuning: {message}\n")
        sys.stderr.flush()
    except Exception:  # noqa: S110 - a closed stderr must not stop ComfyUI
        pass
