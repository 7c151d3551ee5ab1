"""Running uv: Python discovery, venvs and `uv pip install` with torch held.

Every package operation of the installer goes through
[`Uv`][installer.edges.uv.Uv]. It adds the mirror options of the plan
(`--index-url`, `--extra-index-url`, `--find-links`, `--offline`) to each
call, keeps uv's own environment variables (`UV_INDEX_URL`, `UV_CACHE_DIR`,
`UV_HTTP_TIMEOUT`, ...) working by passing the environment through, retries
network failures (never resolution failures), and turns uv's errors into
messages that name the cause: a package that wants another torch, a package
missing from the offline cache, an index that cannot be reached.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from installer.core.errors import (
    CommandFailedError,
    EnvironmentUnsupportedError,
    NetworkError,
    StepFailedError,
    TorchConflictError,
)
from installer.core.log import InstallerLogger
from installer.core.uv_options import IndexOptions, RetryOptions
from installer.edges.proc import CommandResult, run_command
from installer.edges.uv_output import integrity_error

TORCH_TRIO = ("torch", "torchvision", "torchaudio")

_NETWORK_PATTERNS = (
    "error decoding response body",
    "request or response body error",
    "end of file before message length reached",
    "connection closed before message completed",
    "error sending request",
    "failed to fetch",
    "dns error",
    "connection refused",
    "connection reset",
    "timed out",
    "tcp connect error",
    "network is unreachable",
    "request failed after",
    "http status server error",
    "429 too many requests",
    "failed to download",
    "io error",
    "unexpected eof",
    "broken pipe",
    "tls handshake",
)
_OFFLINE_PATTERNS = (
    "network connectivity is disabled",
    "because the network was disabled",
    "not in the cache",
    "not found in the cache",
)
_CONFLICT = re.compile(
    r"(?:all versions of\s+)?(?P<pkg>[A-Za-z0-9][A-Za-z0-9._-]*)(?:[=<>!~]=?[^\s,]+)?"
    r"\s+depends?\s+on\s+(?P<torch>torch(?:vision|audio)?)(?P<spec>[^\s,]*)",
)


_TRIO_MISSING = re.compile(
    r"\btorch(?:vision|audio)?(?:[=<>!~]=?\S+)? (?:was not found|is not available|"
    r"has no (?:usable )?versions)",
    re.IGNORECASE,
)


_TLS_FAILURE = re.compile(
    r"invalid peer certificate|certificate verify failed|UnknownIssuer|self[- ]signed certificate",
    re.IGNORECASE,
)


def _flatten(output: str) -> str:
    """Return uv's output with its whitespace folded (uv wraps long lines, splitting phrases)."""
    return " ".join(output.split())


def is_network_failure(output: str) -> bool:
    """Return True when uv's output says the failure was the network, not resolution.

    Args:
        output: The combined output of a failed uv command.
    """
    text = _flatten(output).lower()
    if "no solution found" in text:
        return False
    return any(pattern in text for pattern in _NETWORK_PATTERNS)


def torch_conflict(output: str) -> tuple[str, str] | None:
    """Find the package in uv's resolver error that wanted another torch.

    Args:
        output: The combined output of a failed `uv pip install`.

    Returns:
        ``(package, wanted)`` such as ``("xformers", "torch==2.10.0")``, or None.
    """
    text = output.lower()
    if "no solution found" not in text:
        return None
    # When the held torch itself cannot be found (offline, a mirror without it, a torch
    # that comes from the system site-packages), nothing can be said about a conflict.
    if _TRIO_MISSING.search(output):
        return None
    for match in _CONFLICT.finditer(output):
        package = match.group("pkg")
        if package.lower() in TORCH_TRIO:
            continue
        return package, match.group("torch") + match.group("spec")
    return None


@dataclass
class Uv:
    """A uv executable bound to the plan's index options and a logger."""

    binary: str
    index: IndexOptions
    log: InstallerLogger
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))

    def _env(self) -> dict[str, str]:
        env = dict(self.env)
        env.setdefault("UV_NO_PROGRESS", "1")
        return env

    def _proxy_note(self) -> str:
        from installer.edges.environment import proxy_note

        index = self.index.index_url or self.env.get("UV_INDEX_URL") or "https://pypi.org/simple"
        return proxy_note(index, self.env)

    def index_args(self, extra_index_urls: Sequence[str] = ()) -> list[str]:
        """Return the index, find-links and offline options for a uv call.

        Args:
            extra_index_urls: Indexes that take priority for this call (e.g.
                the torch variant's index).
        """
        args: list[str] = []
        if self.index.index_url:
            args += ["--index-url", self.index.index_url]
        for url in [*extra_index_urls, *self.index.extra_index_urls]:
            args += ["--extra-index-url", url]
        for link in self.index.find_links:
            args += ["--find-links", link]
        if self.index.offline:
            args.append("--offline")
        return args

    def run(self, args: Sequence[str | Path], what: str, check: bool = True) -> CommandResult:
        """Run ``uv ARGS`` with output logged.

        Args:
            args: uv's arguments, without the binary.
            what: Name of the action for messages, e.g. `uv venv`.
            check: Raise when uv exits non-zero.

        Raises:
            CommandFailedError: uv exited non-zero and ``check`` is set.
            EnvironmentUnsupportedError: uv could not be started.
        """
        return run_command(
            [self.binary, *args], log=self.log, what=what, env=self._env(), check=check
        )

    def version(self) -> str:
        """Return uv's version string.

        Raises:
            EnvironmentUnsupportedError: uv cannot be started or fails.
        """
        try:
            output = self.run(["--version"], "uv --version").output
        except CommandFailedError as exc:
            raise EnvironmentUnsupportedError(
                f"uv does not run: {exc.message}", "Reinstall comfy-install (it ships uv)."
            ) from exc
        return output.split()[1] if len(output.split()) > 1 else output.strip()

    def python_find(self, request: str) -> str | None:
        """Return the path of an installed Python matching ``request``, or None.

        Args:
            request: A version (`3.12`), a range (``>=3.10,<3.14``) or an interpreter's path.
        """
        result = self.run(["python", "find", "--system", request], "uv python find", check=False)
        lines = [line for line in result.output.splitlines() if line.strip()]
        if result.returncode != 0 or not lines:
            return None
        path = lines[-1].strip()
        return path if Path(path).exists() else None

    def python_install(self, request: str) -> None:
        """Download a managed Python matching ``request`` (uv python install).

        Args:
            request: A Python version, e.g. `3.12`.

        Raises:
            CommandFailedError: uv could not install it (e.g. no network).
        """
        self.run(["python", "install", request], f"uv python install {request}")

    def venv(self, path: Path, python: str, clear: bool) -> None:
        """Create the venv at ``path`` with interpreter ``python``.

        Args:
            path: Where the venv goes.
            python: The interpreter's path (or a version uv can find).
            clear: Replace a venv already at ``path`` (`--clear`).

        Raises:
            CommandFailedError: `uv venv` failed.
        """
        args: list[str | Path] = ["venv", path, "--python", python, "--no-project"]
        if clear:
            args.append("--clear")
        self.run(args, "uv venv")

    def pip_install(
        self,
        python_exe: Path,
        requirements: Sequence[str] = (),
        *,
        requirement_files: Sequence[Path] = (),
        constraints: Sequence[Path] = (),
        options: Sequence[str] = (),
        extra_index_urls: Sequence[str] = (),
        what: str = "uv pip install",
        retry: RetryOptions | None = None,
    ) -> CommandResult:
        """Install packages into the venv of ``python_exe``.

        Args:
            python_exe: The venv's interpreter.
            requirements: Requirement strings or wheel file paths.
            requirement_files: `-r` files.
            constraints: `-c` files (the torch constraints file goes here).
            options: Further uv options (e.g. `--no-deps`).
            extra_index_urls: Indexes with priority for this call.
            what: Name of the action for messages.
            retry: Attempts and backoff for network failures (default: once).

        Raises:
            TorchConflictError: A package wanted another torch than the one held.
            NetworkError: The index stayed unreachable after the retries.
            StepFailedError: Any other failure, with uv's last lines.
        """
        args: list[str | Path] = ["pip", "install", "--python", python_exe]
        for file in requirement_files:
            args += ["-r", file]
        for file in constraints:
            args += ["-c", file]
        args += [*options, *self.index_args(extra_index_urls), *requirements]
        attempts = retry.attempts if retry else 1
        backoff = retry.backoff_seconds if retry else 0.0
        for attempt in range(1, attempts + 1):
            try:
                return self.run(args, what)
            except CommandFailedError as exc:
                output = exc.output
                flat = _flatten(output)
                lowered = flat.lower()
                if "hash mismatch" in lowered:
                    mismatch = integrity_error(exc)
                    if mismatch is not None:
                        raise mismatch from exc
                conflict = torch_conflict(flat)
                if conflict is not None:
                    package, wanted = conflict
                    raise TorchConflictError(
                        f"{what}: {package} needs {wanted}, but the installed torch is held "
                        "(it is never replaced).",
                    ) from exc
                if self.index.offline and any(p in lowered for p in _OFFLINE_PATTERNS):
                    raise NetworkError(
                        f"{what} --offline: a package is not in uv's cache or the find-links "
                        f"folders:\n  {_last_lines(output)}",
                        "Run once with the network (or add --find-links with the missing "
                        "wheels), then again with --offline.",
                    ) from exc
                if "no space left on device" in lowered:
                    raise EnvironmentUnsupportedError(
                        f"{what}: the disk is full (no space left on device):\n  "
                        f"{_last_lines(output)}",
                        "Free disk space (uv's cache and the venv need room), then run the same "
                        "command again.",
                    ) from exc
                if _TLS_FAILURE.search(flat):
                    raise NetworkError(
                        f"{what} could not reach the package index{self._proxy_note()}: its "
                        f"TLS certificate was not trusted:\n  {_last_lines(output)}",
                        "If the index (or a proxy) uses a private CA, point SSL_CERT_FILE at "
                        "its certificate, or set UV_SYSTEM_CERTS=1 to use the system's "
                        "certificate store; then run again.",
                    ) from exc
                if is_network_failure(flat):
                    if attempt < attempts:
                        wait = backoff * 2 ** (attempt - 1)
                        self.log.warn(
                            f"{what}: network failure (attempt {attempt}/{attempts});"
                            f" retrying in {wait:.0f}s"
                        )
                        time.sleep(wait)
                        continue
                    raise NetworkError(
                        f"{what} could not reach the package index{self._proxy_note()} after "
                        f"{attempts} attempt(s):\n  {_last_lines(output)}",
                    ) from exc
                raise StepFailedError(exc.message, exc.hint) from exc
        raise AssertionError("unreachable: the loop returns or raises")


def _last_lines(output: str, count: int = 6) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return "\n  ".join(lines[-count:])


def write_constraints(path: Path, pins: dict[str, str]) -> Path:
    """Write a constraints file pinning each package to its exact installed version.

    Args:
        path: The constraints file; it is written atomically.
        pins: ``{name: version}``, e.g. the installed torch trio.

    Returns:
        ``path``.

    Raises:
        EnvironmentUnsupportedError: The file cannot be written.
    """
    from installer.edges.state import atomic_write_text

    lines = [f"{name}=={version}" for name, version in sorted(pins.items())]
    atomic_write_text(
        path, "# Written by comfy-install: the installed torch is held.\n" + "\n".join(lines) + "\n"
    )
    return path
