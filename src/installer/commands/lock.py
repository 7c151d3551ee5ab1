"""What `comfy-install lock` does: resolve the lock files, or check that they are current.

[`refresh`][installer.commands.lock.refresh] resolves ComfyUI's requirements at the pinned
commit, the custom nodes' requirements, `extra_requirements` and step 10's index
packages with `uv pip compile --generate-hashes`, torch held at the configured trio, for
each target platform, torch variant and Python, in a pool of threads, and writes
`locks/<platform>-<variant>-py<XY>.txt` (see [`installer.lock`][installer.lock]); a target
that cannot be resolved from this machine is reported and the others are still written.
[`check`][installer.commands.lock.check] recomputes each lock's inputs hash and fails
naming every stale lock with the command that refreshes it.
"""

from __future__ import annotations

import shlex
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from installer.core.config import Dependencies
    from installer.core.errors import InstallerError
    from installer.core.lockfile import LockSources, LockTarget
    from installer.core.log import InstallerLogger
    from installer.edges.uv import Uv
    from installer.lock.files import LockWrite


@dataclass(frozen=True)
class LockRequest:
    """The options of one `comfy-install lock` run."""

    platform: str | None = None
    torch_variant: str | None = None
    python: str | None = None
    config: Path | None = None
    comfyui_url: str | None = None
    comfyui_ref: str | None = None
    index_url: str | None = None
    find_links: tuple[str, ...] = ()
    lock_dir: Path | None = None
    check: bool = False
    jobs: int = 4

    def refresh_options(self) -> list[str]:
        """The options a refresh command must repeat (config, ComfyUI source, lock folder)."""
        words: list[str] = []
        if self.config is not None:
            words += ["--config", shlex.quote(str(self.config))]
        if self.comfyui_url is not None:
            words += ["--comfyui-url", shlex.quote(self.comfyui_url)]
        if self.comfyui_ref is not None:
            words += ["--comfyui-ref", shlex.quote(self.comfyui_ref)]
        if self.lock_dir is not None:
            words += ["--lock-dir", shlex.quote(str(self.lock_dir))]
        return words


def refresh(request: LockRequest, log: InstallerLogger) -> dict[str, Any]:
    """Resolve and write the lock files the request selects; say which could not be resolved.

    The targets are resolved ``request.jobs`` at a time, each in its own scratch folder; a
    target that fails is reported and the others are still written.

    Args:
        request: The options of the run.
        log: Progress and the lines that say what was written.

    Returns:
        The `data` of `lock --json`: the lock folder and one row per target.

    Raises:
        InstallerError: No target could be resolved (the one error, or a summary of all).
    """
    import tempfile

    from installer.core.config import IndexOptions
    from installer.core.config_files import load_dependencies
    from installer.core.errors import InstallerError, StepFailedError
    from installer.core.lockfile import shipped_lock_dir
    from installer.edges.environment import find_uv_binary
    from installer.edges.uv import Uv
    from installer.lock.sources import read_sources
    from installer.plan.lock import lock_targets

    deps = load_dependencies(request.config)
    lock_dir = request.lock_dir or shipped_lock_dir()
    pythons = [request.python] if request.python else _pythons(deps, lock_dir)
    targets = lock_targets(
        deps,
        platforms=[request.platform] if request.platform else [],
        variants=[request.torch_variant] if request.torch_variant else [],
        pythons=pythons,
    )
    uv = Uv(
        binary=find_uv_binary() or "uv",
        index=IndexOptions(index_url=request.index_url, find_links=list(request.find_links)),
        log=log,
    )
    resolver = f"uv {uv.version()}"
    lock_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="comfy-install-lock-") as scratch:
        workdir = Path(scratch)
        log.info(f"reading the requirement files at their pins ({deps.comfyui.ref})")
        sources = read_sources(
            deps,
            workdir / "sources",
            log,
            comfyui_url=request.comfyui_url,
            comfyui_ref=request.comfyui_ref,
        )
        names = ", ".join(target.name for target in targets)
        log.info(f"resolving {len(targets)} target(s): {names}")
        with ThreadPoolExecutor(max_workers=request.jobs) as pool:
            futures = [
                pool.submit(
                    _one_target, uv, deps, target, sources, workdir, lock_dir, resolver, log
                )
                for target in targets
            ]
            results = [future.result() for future in futures]
    rows: list[dict[str, Any]] = []
    failures: list[InstallerError] = []
    for target, outcome in zip(targets, results, strict=True):
        if isinstance(outcome, InstallerError):
            failures.append(outcome)
            log.warn(outcome.message)
            rows.append({"target": target.name, "status": "failed", "reason": outcome.message})
            continue
        _report_write(outcome, log)
        rows.append(
            {
                "target": target.name,
                "status": "written" if outcome.changed else "unchanged",
                "path": str(outcome.path),
                "packages": outcome.packages,
                "bytes": outcome.size,
                "inputs_sha256": outcome.inputs_sha256,
            }
        )
    if failures and len(failures) == len(targets):
        if len(failures) == 1:
            raise failures[0]
        raise StepFailedError(
            f"No lock could be resolved ({len(failures)} targets failed; see above).",
            "Check the network and the indexes (--index-url, --find-links), then run again.",
        )
    if failures:
        log.warn(
            f"{len(targets) - len(failures)} of {len(targets)} locks written; "
            f"{len(failures)} could not be resolved from here"
        )
    return {"lock_dir": str(lock_dir), "locks": rows}


def _one_target(
    uv: Uv,
    deps: Dependencies,
    target: LockTarget,
    sources: LockSources,
    workdir: Path,
    lock_dir: Path,
    resolver: str,
    log: InstallerLogger,
) -> LockWrite | InstallerError:
    from installer.core.errors import InstallerError
    from installer.lock.compile import compile_lock
    from installer.lock.files import write_lock
    from installer.plan.lock import lock_inputs

    try:
        inputs = lock_inputs(deps, target)
        text = compile_lock(uv, inputs, sources, workdir / target.name, resolver=resolver)
        return write_lock(lock_dir, target, text)
    except InstallerError as error:
        log.debug(f"{target.name}: {error.message}")
        return error


def _report_write(outcome: LockWrite, log: InstallerLogger) -> None:
    from installer.core.lockfile import display_path

    counts = ", ".join(f"{name} {count}" for name, count in outcome.packages.items())
    what = "wrote" if outcome.changed else "unchanged"
    log.success(
        f"{what} {display_path(outcome.path)}: {sum(outcome.packages.values())} packages "
        f"({counts}), {outcome.size / 1024:.0f} KiB"
    )


def _pythons(deps: Dependencies, lock_dir: Path) -> list[str]:
    """python.default, then the still supported Pythons of the locks already in ``lock_dir``."""
    from installer.lock.files import read_lock_headers

    found = [deps.python.default]
    for header in read_lock_headers(lock_dir).values():
        minor = header.target.python
        if minor not in found and deps.python.supported_contains(minor):
            found.append(minor)
    return found


def check(request: LockRequest, log: InstallerLogger) -> dict[str, Any]:
    """Check that every selected lock still matches its inputs (`lock --check`); resolve nothing.

    Args:
        request: The options of the run (platform, variant and Python select the locks).
        log: One line per lock.

    Returns:
        The `data` of `lock --check --json`: the lock folder and one row per lock.

    Raises:
        StepFailedError: No lock matches the options, or a lock is stale (with the commands
            that refresh it).
    """
    import tempfile

    from installer.core.config_files import load_dependencies
    from installer.core.errors import StepFailedError
    from installer.core.lockfile import display_path, shipped_lock_dir
    from installer.lock.check import check_lock
    from installer.lock.files import read_lock_headers
    from installer.lock.sources import read_sources
    from installer.plan.lock import python_minor

    deps = load_dependencies(request.config)
    lock_dir = request.lock_dir or shipped_lock_dir()
    minor = python_minor(request.python) if request.python else None
    headers = [
        header
        for header in read_lock_headers(lock_dir).values()
        if (request.platform is None or header.target.platform == request.platform)
        and (request.torch_variant is None or header.target.variant == request.torch_variant)
        and (minor is None or header.target.python == minor)
    ]
    extra = request.refresh_options()
    if not headers:
        raise StepFailedError(
            f"No lock file in {lock_dir} matches the options.",
            "Write one with `" + " ".join(["comfy-install lock", *extra]) + "`.",
        )
    with tempfile.TemporaryDirectory(prefix="comfy-install-lock-") as scratch:
        sources = read_sources(
            deps,
            Path(scratch),
            log,
            comfyui_url=request.comfyui_url,
            comfyui_ref=request.comfyui_ref,
        )
    results = [check_lock(header, deps, sources) for header in headers]
    stale = [result for result in results if not result.ok]
    for result in results:
        shown = display_path(result.path)
        if result.ok:
            log.success(f"{shown}: up to date")
        else:
            log.warn(f"{shown} is stale: {result.reason}")
    rows = [
        {
            "target": r.target.name,
            "path": str(r.path),
            "status": "ok" if r.ok else "stale",
            "reason": r.reason,
            "refresh": None if r.ok else r.target.refresh_command(extra),
        }
        for r in results
    ]
    if stale:
        listed = "; ".join(f"{display_path(r.path)} ({r.reason})" for r in stale)
        commands = "\n  ".join(r.target.refresh_command(extra) for r in stale)
        raise StepFailedError(
            f"{len(stale)} stale lock file(s): {listed}.",
            f"Refresh with:\n  {commands}",
        )
    return {"lock_dir": str(lock_dir), "locks": rows}
