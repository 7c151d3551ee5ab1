"""The `comfy-install lock` command (typer): write, refresh and check the lock files.

`comfy-install lock` resolves ComfyUI's requirements at the pinned commit,
the custom nodes' requirements, `extra_requirements` and step 10's index
packages with `uv pip compile --generate-hashes`, torch held at the configured
trio, for each target platform, torch variant and Python, and writes
`locks/<platform>-<variant>-py<XY>.txt` (see [`installer.lock`][installer.lock]).
With no options it refreshes every target the configuration supports (and the
Pythons of the locks already there) and says which ones could not be resolved
from this machine and why. `--check` recomputes each lock's inputs hash and
exits 1 naming every stale lock with the command that refreshes it.

The command is registered on the main app by [`installer.cli.app`][installer.cli.app]
(`app.command()(lock)`); it imports the heavy modules inside the command so `--help`
stays fast.
"""

from __future__ import annotations

import shlex
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

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


def lock(
    platform: Annotated[
        str | None, typer.Option("--platform", help="linux or windows (default: both).")
    ] = None,
    torch_variant: Annotated[
        str | None,
        typer.Option(
            "--torch-variant",
            help="A configured torch variant (cu128, cpu, ...) or default (uv's default "
            "index). Default: every variant.",
        ),
    ] = None,
    python: Annotated[
        str | None,
        typer.Option(
            "--python",
            help="Python X.Y to lock for (default: python.default, and the Pythons of the "
            "locks already there).",
        ),
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="Another dependencies.json.")
    ] = None,
    comfyui_url: Annotated[
        str | None,
        typer.Option(
            "--comfyui-url", help="Read ComfyUI's requirements.txt from here (URL, path, bundle)."
        ),
    ] = None,
    comfyui_ref: Annotated[
        str | None,
        typer.Option(
            "--comfyui-ref",
            help="Read requirements.txt at this ref instead of the pinned commit (a source "
            "without the commit but with the same tree); the lock still records the pin.",
        ),
    ] = None,
    index_url: Annotated[
        str | None, typer.Option("--index-url", help="Resolve against this index (a mirror).")
    ] = None,
    find_links: Annotated[
        list[str] | None, typer.Option("--find-links", help="Folder or URL of wheels (repeatable).")
    ] = None,
    lock_dir: Annotated[
        Path | None,
        typer.Option("--lock-dir", help="Folder of the lock files (default: the shipped locks/)."),
    ] = None,
    check: Annotated[
        bool,
        typer.Option("--check", help="Resolve nothing; exit 1 if a lock no longer matches."),
    ] = False,
    jobs: Annotated[
        int, typer.Option("--jobs", min=1, max=16, help="Targets resolved at the same time.")
    ] = 4,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the result as JSON on stdout.")
    ] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show uv's and git's output.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only warnings and errors.")] = False,
) -> None:
    """Resolve the dependencies into hash-pinned lock files, or check that they are current."""
    from installer.cli.common import guarded, make_logger, print_json

    log = make_logger(verbose, quiet)
    request = LockRequest(
        platform=platform,
        torch_variant=torch_variant,
        python=python,
        config=config,
        comfyui_url=comfyui_url,
        comfyui_ref=comfyui_ref,
        index_url=index_url,
        find_links=tuple(find_links or ()),
        lock_dir=lock_dir,
        check=check,
        jobs=jobs,
    )
    command = ["lock", *(["--check"] if check else [])]
    body = _check if check else _refresh
    data = guarded(command, as_json, log, verbose, lambda: body(request, log))
    if as_json:
        print_json(command, data)
    log.close()


def _refresh(request: LockRequest, log: InstallerLogger) -> dict[str, Any]:
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


def _check(request: LockRequest, log: InstallerLogger) -> dict[str, Any]:
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


def main() -> None:
    """Run `lock` as a program of its own (`python -m installer.cli.lock`)."""
    typer.run(lock)


if __name__ == "__main__":
    main()
