"""The fault suite's toolkit: runs of the real installer, and the checks that nothing was lost.

A fault test has three parts, and this module gives each one a helper:

1. **inject and run**: [`invoke`][] runs `comfy-install` in this process through
   typer's `CliRunner` (the real CLI, planner, executor, uv, git and httpx; only
   the process boundary is skipped, which saves Python's start-up of about 1.5 s
   a run on the CI machine); [`spawn`][] starts the console script as a real
   process for faults that need one (signals, two installs at once).
2. **check the message**: [`error_and_hint`][] returns the `error:` line and
   the `hint:` line the user sees.
3. **check that nothing was lost**: [`Snapshot`][] records torch's files and
   ComfyUI's HEAD before the fault; [`assert_nothing_lost`][] checks the state
   file, the clone, torch and the partial files afterwards.

The install every test starts from is made once per session by
`conftest.py` (`base_install`), in a path with spaces and non-ASCII
characters, and copied per test.
"""

from __future__ import annotations

import contextlib
import copy
import errno
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from typer.testing import CliRunner, Result

from support.cli import BASE_PYTHON, FIXTURE_TRIO, SHIPPED_DEPS, Fixtures, cli_path
from support.comfy_repo import git
from support.http_server import LocalHTTPServer, _Server
from support.wheels import WheelSpec, build_wheel, sha256_of

GPU_ARGS = ("--gpu", "12.0", "--cuda-driver", "12.8")
"""Every run plans for a Blackwell-class GPU so step 10 (optimizations) is active."""

TORCH_TRIO = ("torch", "torchvision", "torchaudio")

SA_WHEEL_NAME = "sageattention-2.2.0+cu128torch2.9.1sm120-cp39-abi3-linux_x86_64.whl"
"""A SageAttention stand-in wheel, named like the real ones, served at /releases/."""

FRESH_REQUIREMENT = "triton==3.5.1"
"""A package of the fixture index that the base install does not have."""


# --------------------------------------------------------------------------- configs


def base_deps(fixtures: Fixtures) -> dict[str, Any]:
    """The shipped dependencies.json pointed at the fixtures, with step 10 and models empty."""
    deps = json.loads(SHIPPED_DEPS.read_text())
    deps["comfyui"] = {
        "url": str(fixtures.comfy_repo),
        "ref": "v2",
        "commit": fixtures.commits["v2"],
    }
    deps["python"]["default"] = f"{sys.version_info.major}.{sys.version_info.minor}"
    deps["preflight"]["min_free_gb"] = 0.1
    deps["extra_requirements"] = []
    deps["torch"]["packages"] = list(FIXTURE_TRIO)
    deps["torch"]["default_index_builds"] = {"linux": "cu128", "windows": "cpu"}
    deps["optimizations"] = {"packages": []}
    deps["pip_packages"] = {"sageattention_wheels": [], "sageattention_fallback": None}
    deps["models"] = []
    return deps


def xformers_package(
    *, required: bool = True, attempts: int = 1, backoff_seconds: float = 0
) -> dict[str, Any]:
    """A step-10 package resolved by uv from the index, with a small retry budget."""
    return {
        "name": "xformers",
        "requires": ["nvidia"],
        "pypi_package": "xformers",
        "torch_constraints": [{"torch": ">=2.9,<2.10", "spec": "==0.0.33.post2"}],
        "import_name": "xformers",
        "required": required,
        "retry_options": {"attempts": attempts, "backoff_seconds": backoff_seconds},
    }


def sa_wheel_entry(url: str) -> dict[str, Any]:
    """A `sageattention_wheels` entry that fits the planned GPU (cc 12.0, cu128)."""
    return {
        "name": "sageattention2-sm120",
        "cc": ">=12.0,<13.0",
        "torch": ">=2.9.1,<2.9.2",
        "cuda": ["cu128"],
        "python": ">=3.9",
        "platform": "linux",
        "import_name": "sageattention",
        "url": url,
    }


def build_sa_wheel(folder: Path) -> Path:
    """Build the SageAttention stand-in wheel (about 1 KiB) into ``folder``."""
    return build_wheel(
        WheelSpec(
            "sageattention",
            "2.2.0+cu128torch2.9.1sm120",
            tag="cp39-abi3-linux_x86_64",
            filename=SA_WHEEL_NAME,
            files={"sageattention/__init__.py": '__version__ = "2.2.0"\n'},
        ),
        folder,
    )


def manifest_file(path: Path, files: Mapping[str, Path | str]) -> Path:
    """Write a tools_manifest.json: name -> sha256 of a local file (or a given digest)."""
    entries: dict[str, Any] = {}
    for name, source in files.items():
        if isinstance(source, Path):
            entries[name] = {"sha256": sha256_of(source), "size": source.stat().st_size}
        else:
            entries[name] = {"sha256": source}
    path.write_text(json.dumps({"schema_version": 1, "files": entries}, indent=2))
    return path


def write_deps(path: Path, deps: Mapping[str, Any]) -> Path:
    """Write a dependencies.json and return its path."""
    path.write_text(json.dumps(deps, indent=2))
    return path


def install_cli_args(install_dir: Path, config: Path, index_url: str, *extra: str) -> list[str]:
    """The `install` arguments (no program name) of a run against the fixtures."""
    return [
        "install", str(install_dir), "--config", str(config), "--torch-index", "default",
        "--index-url", index_url, "--python", BASE_PYTHON, *GPU_ARGS, *extra,
    ]  # fmt: skip


# --------------------------------------------------------------------------- a test's install

BASE_DIRNAME = "Comfy Install ü ñ 日本"
"""The base install lives here: spaces and non-ASCII characters (a full install must work)."""


HTTP_TIMEOUT = 0.5
"""Seconds the downloader waits for a read in the stall tests (30 s shipped)."""


PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


def run_env(fixtures: Fixtures, tmp: Path) -> dict[str, str | None]:
    """Environment changes for one test's runs: its own caches, small uv retry budget.

    Proxy variables of the machine are unset (None), so that only the tests
    that inject a proxy have one.
    """
    env: dict[str, str | None] = {
        "UV_CACHE_DIR": str(tmp / "uv-cache"),
        "COMFY_INSTALL_CACHE_DIR": str(tmp / "cache"),
        "UV_PYTHON_DOWNLOADS": "never",
        "UV_HTTP_RETRIES": "0",
        "UV_HTTP_TIMEOUT": "15",
        "NO_COLOR": "1",
    }
    for name in PROXY_VARIABLES:
        env[name] = env[name.lower()] = None
    return env


def environment(*changes: Mapping[str, str | None]) -> dict[str, str]:
    """This process's environment with ``changes`` applied (None removes a variable)."""
    env = dict(os.environ)
    for change in changes:
        for key, value in change.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
    return env


@dataclass
class BaseInstall:
    """The finished install every test copies, and how it was made."""

    dir: Path
    deps: dict[str, Any]
    config: Path
    first: Any
    sa_wheel: Path


@dataclass
class Case:
    """One fault test: a copy of the base install, its own index server, caches and config."""

    dir: Path
    tmp: Path
    deps: dict[str, Any]
    server: LocalHTTPServer
    index_url: str
    env: dict[str, str | None]
    sa_wheel: Path
    fixtures: Fixtures
    configs: list[Path] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    """Options every run of this test adds (e.g. `--tools-manifest FILE`)."""

    @property
    def cache(self) -> Path:
        """Where step 10 keeps downloaded wheels."""
        return self.tmp / "cache" / "downloads"

    @property
    def models(self) -> Path:
        """ComfyUI's models folder."""
        return self.dir / "ComfyUI" / "models"

    def config(self, name: str = "deps.json", **sections: Any) -> Path:
        """Write this test's dependencies.json (base + ``sections`` replaced) and return it."""
        deps = copy.deepcopy(self.deps)
        deps.update(sections)
        path = write_deps(self.tmp / name, deps)
        self.configs.append(path)
        return path

    def args(
        self, *extra: str, config: Path | None = None, index_url: str | None = None
    ) -> list[str]:
        """The install arguments against this test's server and config."""
        chosen = config or (self.configs[-1] if self.configs else self.config())
        return install_cli_args(self.dir, chosen, index_url or self.index_url, *self.extra, *extra)

    def run(
        self,
        *extra: str,
        config: Path | None = None,
        index_url: str | None = None,
        env: dict[str, str | None] | None = None,
    ) -> Run:
        """Run the install in this process with this test's environment (plus ``env``)."""
        changes: dict[str, str | None] = dict(self.env)
        changes.update(env or {})
        return invoke(self.args(*extra, config=config, index_url=index_url), changes)

    def full_env(self, **extra: str) -> dict[str, str]:
        """The whole environment for a spawned installer."""
        return environment(self.env, extra)

    def serve_sa_wheel(self, server: LocalHTTPServer | None = None) -> str:
        """Serve the SageAttention wheel at /releases/NAME; return its URL."""
        target = server or self.server
        target.add(f"/releases/{self.sa_wheel.name}", self.sa_wheel.read_bytes())
        return target.url(f"/releases/{self.sa_wheel.name}")


# --------------------------------------------------------------------------- running


@dataclass
class Run:
    """How one run of the installer ended."""

    code: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def text(self) -> str:
        """Everything the run printed."""
        return self.stdout + self.stderr


_RUNNER = CliRunner()


def invoke(args: Sequence[str], env: Mapping[str, str | None] | None = None) -> Run:
    """Run `comfy-install ARGS` in this process (the real CLI app) and return how it ended.

    ``env`` changes the environment for the run only (None unsets a variable).
    Any exception other than the CLI's own exit is a bug (a traceback the user
    would see), and fails the test with that traceback.
    """
    from installer.cli.app import app

    started = time.monotonic()
    result: Result = _RUNNER.invoke(app, list(args), env=dict(env or {}), catch_exceptions=True)
    seconds = time.monotonic() - started
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        trace = "".join(traceback.format_exception(*result.exc_info)) if result.exc_info else ""
        raise AssertionError(
            f"comfy-install raised {result.exception!r} (a traceback, not a message):\n"
            f"{trace}\nstderr:\n{result.stderr}"
        )
    return Run(result.exit_code, result.stdout, result.stderr, seconds)


def spawn(args: Sequence[str], env: Mapping[str, str]) -> subprocess.Popen[str]:
    """Start the `comfy-install` console script as its own process group (like a shell job)."""
    return subprocess.Popen(
        [cli_path(), *args],
        env=dict(env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` every 20 ms until it holds; fail the test after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.02)


def signal_group(process: subprocess.Popen[str], sig: int) -> None:
    """Send ``sig`` to the installer's whole process group (Ctrl-C, or `kill -9 -PGID`)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)


def finish(process: subprocess.Popen[str], timeout: float = 60) -> tuple[int, str]:
    """Wait for a spawned installer; return (exit code, stderr)."""
    _, stderr = process.communicate(timeout=timeout)
    return process.returncode, stderr


def error_and_hint(stderr: str) -> tuple[str, str]:
    """Return the first line of the `error:` message and the `hint:` line of a run."""
    lines = stderr.splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    hints = [line for line in lines if line.startswith("hint: ")]
    assert errors, f"no 'error:' line in:\n{stderr}"
    assert hints, f"no 'hint:' line in:\n{stderr}"
    assert "Traceback" not in stderr, stderr
    return errors[-1].removeprefix("error: "), hints[-1].removeprefix("hint: ")


# --------------------------------------------------------------------------- servers


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PortServer(LocalHTTPServer):
    """The test server, bound to a chosen port (to bring a refused address back to life)."""

    def __init__(self, port: int) -> None:
        """Prepare a server that will listen on 127.0.0.1:``port``."""
        super().__init__()
        self._wanted_port = port

    def start(self) -> None:
        """Bind the chosen port and serve in a background thread."""
        import threading

        from support.http_server import POLL_INTERVAL, _Handler

        httpd = _Server(("127.0.0.1", self._wanted_port), _Handler)
        httpd.owner = self
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": POLL_INTERVAL}, daemon=True
        )
        self._thread.start()


class ChainTLSServer(LocalHTTPServer):
    """The test server over HTTPS with a real chain: a test CA and a leaf certificate.

    `LocalHTTPServer(tls=True)` presents a self-signed CA certificate, which
    rustls (uv) refuses as an end-entity certificate even when trusted; this
    one presents a leaf signed by a CA, so trusting `ca_path` (`SSL_CERT_FILE`)
    is enough for both uv and httpx, as with a corporate proxy's CA.
    """

    def __init__(self, names: Sequence[str] = ()) -> None:
        """Prepare the server; ``names`` are extra DNS names the leaf is valid for."""
        super().__init__(tls=True)
        self._names = tuple(names)
        self.ca_path: Path | None = None

    def _tls_context(self) -> ssl.SSLContext:
        import tempfile

        self._tmp = tempfile.TemporaryDirectory(prefix="faults-tls-")
        folder = Path(self._tmp.name)
        self.ca_path, cert, key = make_chain(folder, self._names)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.cert_path = cert
        return context


def make_chain(folder: Path, names: Sequence[str] = ()) -> tuple[Path, Path, Path]:
    """Make a test CA and a leaf for 127.0.0.1, localhost and ``names``: (ca, leaf, key)."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, ca = folder / "ca.key", folder / "ca.pem"
    key, csr, cert = folder / "leaf.key", folder / "leaf.csr", folder / "leaf.pem"
    ext = folder / "leaf.ext"
    sans = ",".join(["IP:127.0.0.1", "DNS:localhost", *(f"DNS:{n}" for n in names)])
    ext.write_text(f"basicConstraints=CA:FALSE\nsubjectAltName={sans}\n")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    subprocess.run(
        ["openssl", "req", "-x509", *ec, "-days", "2", "-subj", "/CN=comfy-install test CA",
         "-keyout", str(ca_key), "-out", str(ca)],
        check=True, capture_output=True,
    )  # fmt: skip
    subprocess.run(
        ["openssl", "req", *ec, "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(csr)],
        check=True, capture_output=True,
    )  # fmt: skip
    subprocess.run(
        ["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
         "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return ca, cert, key


class MitmProxy:
    """An HTTPS proxy that terminates TLS itself, like a corporate proxy with its own CA.

    Clients send `CONNECT host:443` (with `HTTPS_PROXY` pointing here and
    `SSL_CERT_FILE` trusting the test CA); the proxy answers the TLS handshake
    with a leaf valid for ``names`` and relays the plain HTTP to ``upstream``,
    the local test server, which then sees (and records) the request with its
    real `Host` and headers. So a run can download from `https://huggingface.co/...`
    without leaving this machine.
    """

    def __init__(self, upstream_port: int, names: Sequence[str], folder: Path) -> None:
        """Prepare a proxy relaying to 127.0.0.1:``upstream_port``, certificates in ``folder``."""
        self.ca_path, cert, key = make_chain(folder, names)
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(cert, key)
        self._upstream = upstream_port
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self.port = int(self._listener.getsockname()[1])
        self.tunnels: list[str] = []
        self._closing = False

    def __enter__(self) -> MitmProxy:
        import threading

        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._closing = True
        with contextlib.suppress(OSError):
            self._listener.close()

    @property
    def url(self) -> str:
        """The proxy's URL, for `HTTPS_PROXY`."""
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        import threading

        while not self._closing:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._tunnel, args=(client,), daemon=True).start()

    def _tunnel(self, client: socket.socket) -> None:
        import threading

        with contextlib.suppress(OSError, ssl.SSLError):
            head = b""
            while b"\r\n\r\n" not in head:
                piece = client.recv(4096)
                if not piece:
                    return
                head += piece
            self.tunnels.append(head.split(b" ")[1].decode())
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            secure = self._context.wrap_socket(client, server_side=True)
            upstream = socket.create_connection(("127.0.0.1", self._upstream))

            def pump(source: socket.socket, sink: socket.socket) -> None:
                with contextlib.suppress(OSError, ssl.SSLError):
                    while data := source.recv(65536):
                        sink.sendall(data)
                with contextlib.suppress(OSError):
                    sink.shutdown(socket.SHUT_WR)

            back = threading.Thread(target=pump, args=(upstream, secure), daemon=True)
            back.start()
            pump(secure, upstream)
            back.join(timeout=30)
            secure.close()
            upstream.close()


def serve_git_repo(
    server: LocalHTTPServer, repo: Path, folder: Path, prefix: str = "/repo.git"
) -> dict[str, str]:
    """Serve ``repo`` over git's "dumb" HTTP protocol from the test server.

    A bare copy is packed (`git repack -ad`) and described (`git
    update-server-info`), then every file of it is published under
    ``prefix``. Returns the clone URL and the path of the pack file (where a
    stall makes the clone slow).
    """
    bare = folder / "served.git"
    if bare.exists():
        shutil.rmtree(bare)
    git("clone", "-q", "--bare", str(repo), str(bare), cwd=folder)
    git("repack", "-adq", cwd=bare)
    git("update-server-info", cwd=bare)
    pack = ""
    for path in sorted(bare.rglob("*")):
        if path.is_file():
            relative = path.relative_to(bare).as_posix()
            server.add(f"{prefix}/{relative}", path.read_bytes())
            if relative.endswith(".pack"):
                pack = f"{prefix}/{relative}"
    return {"url": server.url(prefix), "pack": pack, "bare": str(bare)}


# --------------------------------------------------------------------------- nothing lost


def _site_packages(install_dir: Path) -> Path:
    return next((install_dir / "venv").glob("lib/python*/site-packages"))


def torch_files(install_dir: Path) -> dict[str, tuple[str, int]]:
    """Every file of the torch trio in the venv: relative path -> (sha256, inode).

    The inode tells a file left alone from the same bytes written again (a
    reinstall), which must not happen either.
    """
    site = _site_packages(install_dir)
    found: dict[str, tuple[str, int]] = {}
    for name in TORCH_TRIO:
        infos = sorted(site.glob(f"{name}-*.dist-info"))
        assert len(infos) == 1, f"{name}: dist-info folders {infos}"
        for line in (infos[0] / "RECORD").read_text().splitlines():
            relative = line.split(",")[0]
            if not relative:
                continue
            path = site / relative
            if path.is_file():
                found[relative] = (sha256_of(path), path.stat().st_ino)
            else:
                found[relative] = ("MISSING", 0)
    return found


def clone_head(install_dir: Path) -> str:
    """ComfyUI's HEAD commit, asked of git."""
    return git("rev-parse", "HEAD", cwd=install_dir / "ComfyUI")


def clone_changes(install_dir: Path) -> str:
    """Tracked files of the ComfyUI clone with local changes (git status)."""
    # No optional locks: git status must not need to write (the disk may be full).
    return git(
        "--no-optional-locks",
        "status",
        "--porcelain",
        "--untracked-files=no",
        cwd=install_dir / "ComfyUI",
    )


@dataclass(frozen=True)
class Snapshot:
    """What the user had before the fault."""

    install_dir: Path
    torch: dict[str, tuple[str, int]]
    head: str | None
    extra_files: dict[Path, str] = field(default_factory=dict)

    @classmethod
    def take(cls, install_dir: Path, *extra: Path) -> Snapshot:
        """Record torch's files, ComfyUI's HEAD and the sha256 of ``extra`` files."""
        head = clone_head(install_dir) if (install_dir / "ComfyUI" / ".git").exists() else None
        return cls(
            install_dir,
            torch_files(install_dir),
            head,
            {path: sha256_of(path) for path in extra},
        )


def assert_state_valid(install_dir: Path) -> dict[str, Any]:
    """state.json is whole, valid JSON that the installer can read; no temp file is left."""
    from installer.core.records import InstallState

    folder = install_dir / ".comfy-install"
    text = (folder / "state.json").read_text(encoding="utf-8")
    data = json.loads(text)
    InstallState.model_validate(data)
    leftovers = sorted(p.name for p in folder.glob(".state.json.*"))
    assert not leftovers, f"temporary state files left behind: {leftovers}"
    return data  # type: ignore[no-any-return]


def partial_files(*roots: Path) -> list[Path]:
    """Every `.part` download (and its sidecar) under ``roots``."""
    found: list[Path] = []
    for root in roots:
        if root.exists():
            found += [p for p in root.rglob("*.part*") if p.name.endswith((".part", ".part.json"))]
    return sorted(found)


def assert_nothing_lost(
    before: Snapshot,
    *,
    verified: Mapping[Path, str] | None = None,
    download_roots: Sequence[Path] = (),
    lock_left: bool = False,
    head: str | None = None,
) -> None:
    """Check the four promises after a fault.

    * state.json is valid JSON the installer can read (never half-written);
    * ComfyUI's clone is at its commit (``head``, default: as before) with no
      stray changes and no half-made clone beside it;
    * torch's files in the venv are the very same files as before;
    * no file is under its final name unless it is whole: each path of
      ``verified`` either does not exist or has that sha256, and a `.part`
      never sits beside a final file.

    Args:
        before: The snapshot taken before the fault.
        verified: Final paths of downloads and the sha256 they must have if present.
        download_roots: Folders (besides DIR) holding downloads, e.g. the wheel cache.
        lock_left: True when the fault killed the process, which leaves its lock.
        head: The commit the clone must be at, when it is not the one before.
    """
    install_dir = before.install_dir
    assert_state_valid(install_dir)
    expected_head = head or before.head
    if expected_head is not None:
        assert clone_head(install_dir) == expected_head
        assert clone_changes(install_dir) == ""
    assert not list(install_dir.glob(".ComfyUI.partial-*")), "a half-made clone is left"
    assert torch_files(install_dir) == before.torch, "torch's files in the venv changed"
    for path, digest in before.extra_files.items():
        assert path.is_file() and sha256_of(path) == digest, f"{path} was changed or lost"
    verified = dict(verified or {})
    for path, digest in verified.items():
        if path.exists():
            assert sha256_of(path) == digest, f"{path} exists under its final name but is not whole"
    for part in partial_files(install_dir, *download_roots):
        if part.name.endswith(".part"):
            final = part.with_name(part.name.removesuffix(".part"))
            assert not final.exists() or final in verified, f"{part} beside {final}"
    lock = install_dir / ".comfy-install" / "lock"
    assert lock.exists() == lock_left, f"lock file present: {lock.exists()}"


def assert_clean_after_rerun(
    before: Snapshot, *download_roots: Path, head: str | None = None
) -> None:
    """After the successful re-run: everything of `assert_nothing_lost`, and no `.part` left."""
    assert_nothing_lost(before, download_roots=download_roots, head=head)
    leftovers = partial_files(before.install_dir, *download_roots)
    assert not leftovers, f"partial downloads left after a successful run: {leftovers}"


def copy_install(source: Path, dest: Path) -> Path:
    """Copy a finished install (symlinks kept, so the venv's python link still works)."""
    shutil.copytree(source, dest, symlinks=True)
    return dest


# --------------------------------------------------------------------------- mounts


def can_mount() -> str | None:
    """Return None when this process may mount a tmpfs, else why not (for a skip reason)."""
    if sys.platform != "linux":
        return "mounting a small filesystem needs Linux"
    if os.geteuid() != 0:
        return "mounting a small filesystem needs root (CAP_SYS_ADMIN); CI runs unprivileged"
    probe = Path(f"/tmp/comfy-faults-mount-probe-{os.getpid()}")
    probe.mkdir(exist_ok=True)
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(probe)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            return f"mount -t tmpfs is not permitted here: {done.stderr.strip()}"
        subprocess.run(["umount", str(probe)], check=True)
        return None
    finally:
        with contextlib.suppress(OSError):
            probe.rmdir()


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """Mount a tmpfs of ``size`` at ``path`` for the duration of the block."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[Path]:
    """Make ``path`` a read-only bind mount of itself (root ignores file modes, not this)."""
    subprocess.run(["mount", "--bind", str(path), str(path)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(path)], check=True)
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill_disk(folder: Path, leave_bytes: int) -> Path:
    """Fill the filesystem of ``folder`` until about ``leave_bytes`` are free."""
    filler = folder / "filler.bin"
    free = shutil.disk_usage(folder).free
    with filler.open("wb") as handle:
        remaining = max(0, free - leave_bytes)
        block = b"\0" * (1 << 20)
        try:
            while remaining > 0:
                handle.write(block[: min(len(block), remaining)])
                remaining -= min(len(block), remaining)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
    return filler


def pid_is_dead() -> int:
    """Return the pid of a process that has exited (and been reaped)."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


# --------------------------------------------------------------------------- process audit

_AUDIT_EVENTS = frozenset(
    {"subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.startfile"}
)
_audit_log: list[tuple[str, tuple[Any, ...]]] | None = None
_audit_installed = False


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _audit_log is not None and event in _AUDIT_EVENTS:
        _audit_log.append((event, args))


@contextlib.contextmanager
def started_processes() -> Iterator[list[tuple[str, tuple[Any, ...]]]]:
    """Record every program this process starts inside the block (Python audit events).

    An audit hook cannot be removed, so one is installed once per session and
    only records while a block like this is open.
    """
    global _audit_log, _audit_installed
    if not _audit_installed:
        sys.addaudithook(_audit)
        _audit_installed = True
    records: list[tuple[str, tuple[Any, ...]]] = []
    _audit_log = records
    try:
        yield records
    finally:
        _audit_log = None


def files_holding(secret: str, *roots: Path, skip: Sequence[str] = ("venv",)) -> list[Path]:
    """Every file under ``roots`` (not under a folder named in ``skip``) containing ``secret``."""
    needle = secret.encode()
    found: list[Path] = []
    for root in roots:
        for path in root.rglob("*"):
            if any(part in skip for part in path.relative_to(root).parts):
                continue
            if path.is_file() and not path.is_symlink() and needle in path.read_bytes():
                found.append(path)
    return found


# --------------------------------------------------------------------------- lock contention


def contend_for_locks(directories: Sequence[str], start: Any, attempted: Any, winners: Any) -> None:
    """One contender (run in its own process): try to take each directory's install lock.

    All contenders start each round together (``start``), each reports a lock it
    got to ``winners``, and nobody lets go before everyone has tried
    (``attempted``): a correct lock has exactly one winner per round.
    """
    from installer.core.errors import LockHeldError
    from installer.edges.state import InstallLock

    for directory in directories:
        lock = InstallLock(Path(directory))
        start.wait()
        try:
            lock.acquire()
        except LockHeldError:
            pass
        else:
            winners.put((directory, os.getpid()))
        attempted.wait()
        lock.release()
