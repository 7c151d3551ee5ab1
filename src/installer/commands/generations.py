"""Building, verifying, switching and pruning generations: the API `update` is made of.

Other commands that must change the environment of a finished install (`nodes`, a
snapshot restore) go through the same three calls, with DIR's lock held:

```python
from installer.commands.generations import GenerationBuild, build_generation
from installer.commands.generations import switch_generation, prune_generations

with InstallLock(install_dir, command="nodes").held():
    request = GenerationBuild(install_dir=..., options=..., url=..., target=...)
    built = build_generation(request, log)
    switch_generation(install_dir, built.generation.id, log)   # one rename
    prune_generations(install_dir, keep=2, log=log)
```

[`build_generation`][installer.commands.generations.build_generation] makes the new
environment beside the running one: the ComfyUI commit is fetched into `DIR/ComfyUI`'s
repository (objects only) and checked out as a git worktree under
`DIR/.comfy-install/generations/<id>/ComfyUI`, and the install steps (the same plan and
executor as `install`, uv's cache and hard links) make its venv and verify it (imports,
`main.py --help` and ComfyUI's start-up test, step 10's proof on a GPU). The current
generation is not touched; a failure or an interruption leaves the new one `building` or
`failed` in the registry, and the next call for the same target continues it.

[`on_current_generation`][installer.commands.generations.on_current_generation] aims
`install` (a re-run: continue or repair) and `doctor` at the current generation: its root
instead of DIR, DIR's own steps (launchers, models) skipped, options that would move its
ComfyUI to another source refused (that is `update`'s job).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from installer.commands.executor import ExecutionResult, execute
from installer.commands.planning import PlanContext, make_plan, replan, with_recorded_inputs
from installer.core.errors import InstallerError, InterruptedByUserError, StepFailedError
from installer.core.generations import Generation, data_root, generation_root
from installer.core.log import InstallerLogger
from installer.core.records import now_iso
from installer.edges.environment import current_platform
from installer.edges.generations import (
    apply_switch,
    current_generation,
    current_root,
    describe_root,
    read_generations,
    remove_paths,
    same_files,
    share_bytecode,
    write_generations,
)
from installer.edges.git import add_worktree, fetch_commit, prune_worktrees
from installer.plan.generations import (
    PruneItem,
    SwitchPlan,
    next_generation_id,
    plan_prune,
    plan_switch,
    reuse_refusal,
)
from installer.plan.records import InstallOptions, Plan

GENERATION_SKIPS = ("launchers", "models")
"""Steps a new generation does not run: the launcher scripts and the models are DIR's."""


@dataclass(frozen=True)
class GenerationBuild:
    """What a new generation is made of.

    `options` are `install`'s options for the new environment: its `install_dir` is
    replaced by the generation's own root, its ComfyUI source by `url` at the commit
    `target` resolves to, and the launchers and models steps are skipped (they are DIR's).
    """

    install_dir: Path
    options: InstallOptions
    url: str
    target: str
    ref: str | None = None
    """The name the target goes by (a tag), for the records; None: ``target``."""
    planned: PlanContext | None = None
    """The plan the caller already made of the generation's own options
    ([`generation_options`][installer.commands.generations.generation_options]; `snapshot
    restore` checks it before building): run as it is, re-probed under the lock, when those
    options are still the ones built with."""


def generation_options(request: GenerationBuild, root: Path, commit: str) -> InstallOptions:
    """Return the install options a generation is built with (in ROOT, at COMMIT).

    Args:
        request: What the generation is made of.
        root: The generation's own root.
        commit: The ComfyUI commit it checks out.
    """
    return replace(
        request.options,
        install_dir=root,
        comfyui_url=request.url,
        comfyui_ref=commit,
        skip=tuple(dict.fromkeys((*request.options.skip, *GENERATION_SKIPS))),
        dry_run=False,
    )


@dataclass(frozen=True)
class BuiltGeneration:
    """A generation that was built and verified (not yet current)."""

    generation: Generation
    result: ExecutionResult
    reused: bool = False
    """True when a generation that was already built and verified for the target was found."""


_STAGED_INPUTS = ("config_path", "tools_manifest_path", "lock_dir")
"""The options naming input files that a build may stage in its own generation folder."""


def _own_copies(options: InstallOptions, build_root: Path, root: Path) -> InstallOptions | str:
    """Point the input files staged in the build's own folder at ROOT's copies of them.

    `snapshot restore` writes the snapshot's configuration and lock into the new generation's
    folder, so their paths (step 8 records its lock's) name that folder; a generation restored
    from the same snapshot holds the same files in its own folder, and is judged with those.

    Returns:
        The options, or why not: a copy in ROOT that is missing or holds other bytes.
    """
    changes: dict[str, Any] = {}
    for name in _STAGED_INPUTS:
        path = getattr(options, name)
        if path is None or not path.is_relative_to(build_root):
            continue
        relative = path.relative_to(build_root)
        theirs = root / relative
        if not same_files(path, theirs):
            return f"its {relative.as_posix()} is missing or not the same as this build's"
        changes[name] = theirs
    return replace(options, **changes)


def generation_lacks(
    request: GenerationBuild,
    generation: Generation,
    commit: str,
    build_root: Path,
    *,
    context: PlanContext | None = None,
) -> str | None:
    """Say why a generation does not hold what a build would make (None: it does).

    The build's own options are planned for that generation's root, none of them taken from
    what it recorded (a build of a new generation would not take them either), and every
    step of it must be done: see [`reuse_refusal`][installer.plan.generations.reuse_refusal].
    One question, two askers: a kept generation is switched back to only when it holds the
    build, and `update` says "nothing to do" only when the current one does. Generation 1's
    root is DIR itself; its launchers and models steps are skipped here as in any build.

    Args:
        request: What the build is made of (its options name the new generation's root).
        generation: The generation to judge (its `root` is planned).
        commit: The ComfyUI commit the build checks out.
        build_root: The new generation's root, where a build stages its input files
            (`snapshot restore`); the judged generation's own copies of them are used.
        context: A plan already made for this build on this machine: its configuration,
            machine and GPU report are used again and only the generation's root is probed
            (no second GPU detection). None: everything is detected again.

    Returns:
        None when no step of the generation would run; else which would and why, e.g.
        `requirements: inputs changed (extra)`, or why it cannot be judged.
    """
    from installer.plan.inputs import RECORDED_OPTIONS

    root = Path(generation.root)
    options = _own_copies(generation_options(request, root, commit), build_root, root)
    if isinstance(options, str):
        return options
    options = replace(options, given=options.given | frozenset(RECORDED_OPTIONS))
    try:
        if context is not None and _same_sources(context.options, options):
            planned = replan(replace(context, options=with_recorded_inputs(options)))
        else:
            planned = make_plan(options)
    except InstallerError as exc:
        return f"it cannot be planned ({exc.message})"
    return reuse_refusal(planned.plan.steps) or _lacks_recorded_nodes(planned.plan, root)


def _lacks_recorded_nodes(plan: Plan, root: Path) -> str | None:
    """Say which recorded nodes' requirements ROOT's venv lacks (None: it holds them all).

    They are not step 9's inputs (a node `nodes add` put into a venv is in it without a run of
    step 9); the venv itself is asked, as `rollback` asks it.
    """
    from installer.edges.probe import installed_distributions, layout
    from installer.plan.nodes import unmet_requirements

    wanted = {node.name: list(node.requirements) for node in plan.recorded_nodes}
    if not any(wanted.values()):
        return None
    venv = layout(root, plan.platform)["venv"]
    unmet = unmet_requirements(wanted, installed_distributions(venv, plan.platform))
    if not unmet:
        return None
    lines = "; ".join(f"{name}: {', '.join(lines)}" for name, lines in sorted(unmet.items()))
    return f"custom_nodes: its venv lacks the requirements of the recorded nodes ({lines})"


_SOURCE_OPTIONS = (
    "config_path", "tools_manifest_path", "gpu", "cuda_driver", "cuda_toolkit", "platform"
)  # fmt: skip
"""The options a plan's configuration, machine and GPU report are made from."""


def _same_sources(made: InstallOptions, wanted: InstallOptions) -> bool:
    """True when a plan made with MADE read the same configuration and machine as WANTED would."""
    return all(getattr(made, name) == getattr(wanted, name) for name in _SOURCE_OPTIONS)


def _reusable(
    request: GenerationBuild,
    generations: list[Generation],
    current: int,
    commit: str,
    build_root: Path,
    log: InstallerLogger,
) -> Generation | None:
    """The kept, verified generation that holds what the build in BUILD_ROOT would make."""
    for existing in generations:
        if not existing.verified or existing.id == current or existing.comfyui_commit != commit:
            continue
        # The build's own plan, where it came with one, spares a second GPU detection.
        why = generation_lacks(request, existing, commit, build_root, context=request.planned)
        if why is None:
            return existing
        log.info(
            f"generation {existing.id} is not reused: it was built for {commit[:12]}, but this "
            f"build would change it ({why})"
        )
    return None


def build_generation(request: GenerationBuild, log: InstallerLogger) -> BuiltGeneration:
    """Build (or continue building) a generation beside the current one, and verify it.

    The caller holds DIR's install lock. Nothing of the current generation is changed: the
    new checkout is a worktree of `DIR/ComfyUI`'s repository (its work tree stays as it is),
    the new venv and state live in the generation's own folder. A kept, verified generation
    (not the current one) that holds what this build would make is returned instead, unbuilt
    (`reused`): its root planned with the build's options finds every step of it done
    ([`reuse_refusal`][installer.plan.generations.reuse_refusal]); the log says why each
    other one at the target commit is not.

    Args:
        request: DIR, the install options, the ComfyUI source and the target commit or ref.
        log: Terminal and log-file output (the install steps attach their log file).

    Returns:
        The verified generation (status `ready`) and the steps' outcomes.

    Raises:
        StepFailedError: The target cannot be fetched, or a step failed (the message names
            the step, the hint the log); the generation is recorded `failed`.
        InstallerError: Any other failure of the install steps (its own exit code).
        InterruptedByUserError: Ctrl-C or SIGTERM; the generation stays `building`.
    """
    install_dir = request.install_dir
    platform = request.options.platform or current_platform()
    registry = read_generations(install_dir, platform)
    current = current_generation(install_dir)
    repo = Path(data_root(install_dir, platform))
    log.info(f"fetching {request.target} from {request.url} into {repo} (objects only)")
    commit = fetch_commit(repo, request.url, request.target, log)
    # After a rollback, a build for a commit a kept generation was built for is a switch
    # back to it when it holds what this build would make (a `--force` of its steps: never).
    number = next_generation_id(registry.generations, request.url, commit)
    root = Path(generation_root(install_dir, number, platform))
    reused = _reusable(request, registry.generations, current, commit, root, log)
    if reused is not None:
        log.info(f"generation {reused.id} is already built and verified at {commit[:12]}")
        return BuiltGeneration(reused, ExecutionResult(plan=None), reused=True)
    previous = registry.get(number)
    generation = Generation(
        id=number,
        root=str(root),
        comfyui_url=request.url,
        comfyui_ref=request.ref or request.target,
        comfyui_commit=commit,
        created_at=previous.created_at if previous else now_iso(),
        status="building",
    )
    registry.put(generation)
    write_generations(install_dir, registry)
    log.info(f"generation {number}: ComfyUI {commit[:12]} at {root}")
    try:
        add_worktree(repo, root / "ComfyUI", commit, log)
        options = generation_options(request, root, commit)
        planned = request.planned
        if planned is not None and planned.options != options:
            planned = None  # made of other options (a recorded input since): plan again
        old_venv = Path(generation_root(install_dir, current, platform)) / "venv"

        def before_step(step_id: str) -> None:
            if step_id == "verify":
                linked = share_bytecode(old_venv, root / "venv", platform)
                log.debug(f"linked {linked} bytecode files of generation {current}'s venv")

        result = execute(options, log, before_step=before_step, planned=planned)
    except InterruptedByUserError:
        raise
    except InstallerError as exc:
        _record_failure(install_dir, number, exc, log.log_path)
        exc.message = f"Generation {number} was not built: {exc.message}"
        exc.hint = _kept_hint(current, exc.hint)
        raise
    failure = result.error
    if failure is not None:
        _record_failure(install_dir, number, failure, result.log_path)
        where = f" (log: {result.log_path})" if result.log_path else ""
        failure.message = f"The new generation {number} failed its checks{where}: {failure.message}"
        failure.hint = _kept_hint(current, failure.hint)
        raise failure
    built = describe_root(root, number, platform)
    built.comfyui_url, built.comfyui_ref = request.url, request.ref or request.target
    built.created_at = generation.created_at
    built.log = str(result.log_path) if result.log_path else None
    if built.status != "ready":
        raise StepFailedError(
            f"Generation {number} finished without a verified `verify` step.",
            _kept_hint(current, "Run the same command again with --verbose."),
        )
    registry = read_generations(install_dir, platform)
    registry.put(built)
    write_generations(install_dir, registry)
    return BuiltGeneration(built, result)


def _kept_hint(current: int, hint: str) -> str:
    return f"Generation {current} is still current and was not changed. {hint}".strip()


def _record_failure(
    install_dir: Path, number: int, error: InstallerError, log_path: Path | None
) -> None:
    """Mark a generation `failed` (best effort: a full disk may refuse even that)."""
    platform = current_platform()
    try:
        registry = read_generations(install_dir, platform)
        record = registry.get(number)
        if record is not None:
            record.status = "failed"
            record.message = error.message.splitlines()[0] if error.message else ""
            record.log = str(log_path) if log_path else None
            write_generations(install_dir, registry)
    except InstallerError:
        pass


def switch_generation(install_dir: Path, number: int, log: InstallerLogger) -> SwitchPlan:
    """Make generation ``number`` the current one of DIR: one atomic rename, no network.

    The caller holds DIR's install lock and has checked the generation is verified.

    Args:
        install_dir: DIR.
        number: The generation to make current.
        log: Where to say what happened.

    Returns:
        The switch as planned (and done).

    Raises:
        EnvironmentUnsupportedError: The pointer could not be written (disk full,
            permissions); the current generation is then unchanged.
    """
    from installer.core.errors import EnvironmentUnsupportedError

    plan = plan_switch(install_dir, number, current_platform())
    try:
        apply_switch(Path(plan.temporary), Path(plan.pointer), plan.text)
    except OSError as exc:
        Path(plan.temporary).unlink(missing_ok=True)
        raise EnvironmentUnsupportedError(
            f"Could not switch to generation {number}: {exc.strerror or exc}.",
            "Free disk space or fix the permissions of DIR/.comfy-install, then run again.",
        ) from exc
    log.info(f"switched to generation {number} ({plan.method})")
    return plan


def prune_generations(install_dir: Path, keep: int, log: InstallerLogger) -> list[PruneItem]:
    """Remove the generations beyond the newest ``keep`` (the current one is always kept).

    Only the tool's folders go: a generation's venv and checkout. Generation 1 keeps
    `DIR/ComfyUI`, which holds the user's folders.

    Args:
        install_dir: DIR (its lock held by the caller).
        keep: How many generations stay, the current one included.
        log: Where to say what was removed.

    Returns:
        What was pruned.

    Raises:
        UsageError: ``keep`` is below 1.
    """
    platform = current_platform()
    registry = read_generations(install_dir, platform)
    current = current_generation(install_dir)
    items = plan_prune(registry.generations, current, keep, install_dir, platform)
    # The registry forgets them first: a prune killed halfway leaves folders that no
    # record points to (removed by the next prune), never a record of a half-removed one.
    pruned = {item.generation for item in items}
    registry.generations = [g for g in registry.generations if g.id not in pruned]
    if items:
        write_generations(install_dir, registry)
    known = {Path(g.root) for g in registry.generations}
    folder = Path(generation_root(install_dir, 2, platform)).parent
    orphans = [p for p in folder.glob("*") if p.is_dir() and p.name.isdigit() and p not in known]
    removal = [Path(p) for item in items for p in item.remove]
    for problem in remove_paths([*removal, *(p for p in orphans if p not in removal)]):
        log.warn(f"could not remove {problem}")
    for item in items:
        log.info(f"pruned generation {item.generation} ({item.reason})")
    if items or orphans:
        prune_worktrees(Path(data_root(install_dir, platform)), log)
    return items


def on_current_generation(options: InstallOptions) -> InstallOptions:
    """Return `install`'s options aimed at DIR's current generation (as they are for 1).

    A later generation's install root is its folder under `DIR/.comfy-install/generations/`:
    a re-run repairs its venv and its checkout (a worktree of `DIR/ComfyUI`'s repository)
    with the inputs it recorded; the launchers and models steps are DIR's and stay skipped,
    as they were when it was built. Nothing of the user's in `DIR/ComfyUI` is touched.

    Args:
        options: `install`'s (or `doctor`'s) options for DIR.

    Raises:
        UsageError: The options ask what a later generation cannot do in place: another
            ComfyUI source or ref (`update` builds a new generation for that), or the
            launchers or models step (`--only`/`--force`), which are DIR's (exit code 2).
    """
    from installer.core.errors import UsageError
    from installer.plan.records import parse_steps

    install_dir = options.install_dir
    platform = options.platform or current_platform()
    number = current_generation(install_dir)
    root = current_root(install_dir, platform)
    if number == 1 or root == install_dir:
        return options
    generation = read_generations(install_dir, platform).get(number)
    asked = {*parse_steps(options.only, "--only"), *parse_steps(options.force, "--force")}
    for step in GENERATION_SKIPS:
        if step in asked:
            raise UsageError(
                f"The {step} step belongs to DIR, not to generation {number} (the current one, "
                f"in {root}); it cannot be run there.",
                f"Leave `{step}` out of --only/--force, or `comfy-install rollback "
                f"{install_dir}` to generation 1 first.",
            )
    moved = []
    if generation is not None:
        url, ref = options.comfyui_url, options.comfyui_ref
        if "comfyui_url" in options.given and url and url != generation.comfyui_url:
            moved.append(f"--comfyui-url {url}")
        known = (generation.comfyui_commit, generation.comfyui_ref)
        if "comfyui_ref" in options.given and ref and ref not in known:
            moved.append(f"--comfyui-ref {ref}")
    if moved:
        held = (generation.comfyui_commit or "")[:12] if generation else ""
        raise UsageError(
            f"{install_dir}'s current generation {number} holds ComfyUI {held}; "
            f"{' '.join(moved)} would move it in place, which only a new generation may do.",
            f"Run `comfy-install update {install_dir} {' '.join(moved)}` (rollback undoes it).",
        )
    return replace(
        options,
        install_dir=root,
        skip=tuple(dict.fromkeys((*options.skip, *GENERATION_SKIPS))),
        next_command=options.next_command or f"comfy-install launch {install_dir}",
    )


def worktree_repair(install_dir: Path, root: Path, log: InstallerLogger) -> None:
    """Make a later generation's ComfyUI checkout again when it is gone (before planning).

    Step 5 moves a checkout that is there to its pin (and refuses local changes); one that
    is gone would be cloned afresh, so it is first made again as a worktree of
    `DIR/ComfyUI`'s repository at the generation's commit (the tool's folder, never the
    user's).

    Args:
        install_dir: DIR.
        root: The generation's install root.
        log: Logger for git's output.
    """
    platform = current_platform()
    checkout = root / "ComfyUI"
    if (checkout / ".git").exists():
        return
    registry = read_generations(install_dir, platform)
    generation = next((g for g in registry.generations if Path(g.root) == root), None)
    if generation is None or not generation.comfyui_commit:
        return
    log.warn(f"{checkout} is gone: checking out {generation.comfyui_commit[:12]} there again")
    add_worktree(Path(data_root(install_dir, platform)), checkout, generation.comfyui_commit, log)
