"""`comfy-install update`: move a finished install to new pins in a new generation.

The whole job: read what the install recorded (ComfyUI source, torch index, Python),
fetch the target commit, plan the new generation with the same planner as `install`
(its torch set following the new ComfyUI's own `requirements.txt`), show the change
(`--dry-run`), or build and verify the generation beside the running one
([`build_generation`][installer.commands.generations.build_generation]), switch to it in
one rename, and prune the generations beyond `--keep`. The user's folders are never
touched: the new generation reads them from `DIR/ComfyUI` at launch.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from installer.commands.generations import (
    GenerationBuild,
    build_generation,
    generation_lacks,
    prune_generations,
    switch_generation,
)
from installer.core.errors import UsageError
from installer.core.generations import Generation, data_root, generation_root
from installer.core.log import InstallerLogger
from installer.core.records import InstallState, RecordedInputs
from installer.edges.environment import current_platform
from installer.edges.generations import current_generation, current_root, read_generations
from installer.edges.git import fetch_commit, show_file
from installer.edges.probe import installed_distributions, layout, parse_requirement_names
from installer.edges.state import InstallLock, atomic_write_text, read_state
from installer.nodes.files import shared_node_decisions
from installer.nodes.kept import check_recorded_nodes, recorded_nodes, with_nodes_index
from installer.nodes.record import read_nodes
from installer.plan.generations import (
    DEFAULT_KEEP,
    next_generation_id,
    plan_prune,
    plan_switch,
    shared_nodes_dir,
    shared_nodes_refusal,
)
from installer.plan.inputs import recorded_inputs
from installer.plan.records import InstallOptions
from installer.plan.update import UpdateDiff, judge_current, update_diff


@dataclass(frozen=True)
class UpdateRequest:
    """What `update` was asked for (None: what the install recorded, else the pins)."""

    install_dir: Path
    comfyui_ref: str | None = None
    comfyui_url: str | None = None
    torch_index: str | None = None
    python: str | None = None
    keep: int = DEFAULT_KEEP
    dry_run: bool = False
    options: InstallOptions | None = None
    """The rest of `install`'s options (config, GPU, indexes); install_dir is replaced."""
    command_line: tuple[str, ...] = ()


@dataclass
class UpdatePreview:
    """The planned update: the diff, and what `build_generation` is given."""

    diff: UpdateDiff
    build: GenerationBuild
    builds: bool = True
    """False when the current generation is up to date and nothing is forced: no build."""


@dataclass
class UpdateResult:
    """How an update ended."""

    diff: UpdateDiff
    switched: bool
    generation: Generation | None = None
    pruned: list[int] = field(default_factory=list)
    steps: dict[str, Any] = field(default_factory=dict)
    reused: bool = False

    def as_data(self) -> dict[str, Any]:
        """The `data` of the JSON envelope."""
        return {
            "diff": self.diff.model_dump(mode="json"),
            "switched": self.switched,
            "reused": self.reused,
            "generation": self.generation.model_dump(mode="json") if self.generation else None,
            "pruned": self.pruned,
            **({"steps": self.steps.get("steps"), "log": self.steps.get("log")}),
        }


def preview_update(request: UpdateRequest, log: InstallerLogger) -> UpdatePreview:
    """Plan the update of DIR: fetch the target commit and diff the new generation's plan.

    Fetching writes git objects into `DIR/ComfyUI`'s repository (never its work tree);
    nothing else is written (a real run writes, last, the configuration it carried over from
    a snapshot restore into the new generation's folder). The nodes of DIR's `nodes.json`
    (`nodes add`, a restore) are kept: their recorded requirements are resolved with the new
    ComfyUI's, torch and the accelerators held, before anything changes
    ([`check_recorded_nodes`][installer.nodes.kept.check_recorded_nodes]). The configured
    custom nodes' folders in
    `DIR/ComfyUI/custom_nodes` (shared by every generation) are read: the new generation
    clones a node that is not there and uses one at its pin as it is. When the current
    generation is at the target commit with the planned torch set and nodes, the build's
    options are also planned for its root (its venv is probed): it is up to date only when
    every step of it is done ([`judge_current`][installer.plan.update.judge_current]).

    Args:
        request: The update's options.
        log: Where git's output goes.

    Raises:
        UsageError: DIR is not a finished install, `--keep` is below 1, or an update that
            would build finds a configured node's shared folder at another commit than the
            pin, with local changes, or not a git checkout (exit code 2; nothing changed).
        NodeConflictError: A node of `nodes.json` has a requirement the new ComfyUI, the
            held torch or accelerators (or another node) exclude; nothing was changed.
        StepFailedError: The target cannot be fetched.
        ConfigError: The configuration is invalid.
    """
    install_dir = request.install_dir
    platform = (request.options.platform if request.options else None) or current_platform()
    root = current_root(install_dir, platform)
    paths = layout(root, platform)
    state, problem = read_state(root)
    if state is None or not paths["venv_python"].is_file() or not (paths["comfyui"]).is_dir():
        raise UsageError(
            problem or f"{install_dir} holds no finished comfy-install install.",
            f"Run `comfy-install install {install_dir}` first.",
        )
    if request.keep < 1:
        raise UsageError(f"--keep {request.keep}: keep at least 1 generation.")
    recorded = recorded_inputs(state)
    given = request.options or InstallOptions(install_dir=install_dir)
    base, reused = options_from_record(given, recorded, install_dir)
    with tempfile.TemporaryDirectory(prefix="comfy-install-update-") as scratch:
        carried = _carry_staged_config(given, recorded, install_dir, Path(scratch))
        if carried is not None:
            base = replace(base, config_path=carried.planned, given=base.given | {"config_path"})
            reused += carried.lines
        preview = _preview(request, log, state, paths, platform, base, reused, recorded)
        if carried is not None and preview.builds and not request.dry_run:
            # Only now, with nothing refused: the new generation's own copy, which it records
            # (the next update finds the install's nodes in it again).
            build = preview.build
            atomic_write_text(carried.final(build.options.install_dir), carried.text)
            options = replace(build.options, config_path=carried.final(build.options.install_dir))
            preview.build = replace(build, options=options)
        return preview


def _preview(
    request: UpdateRequest,
    log: InstallerLogger,
    state: InstallState,
    paths: dict[str, Path],
    platform: str,
    base: InstallOptions,
    reused: list[str],
    recorded: RecordedInputs,
) -> UpdatePreview:
    """Plan the update from the options filled from the record (`preview_update`'s body)."""
    from installer.commands.planning import make_plan
    from installer.core.config_files import load_dependencies
    from installer.plan.build import build_plan

    install_dir = request.install_dir
    record = read_nodes(install_dir, log)
    kept = recorded_nodes(record, install_dir, platform, log)
    base, node_inputs = with_nodes_index(base, record.index, kept, log)
    reused = [*reused, *node_inputs]
    root = current_root(install_dir, platform)
    deps = load_dependencies(base.config_path)
    url = request.comfyui_url or recorded.comfyui_url or deps.comfyui.url
    target = request.comfyui_ref or deps.comfyui.commit
    ref = request.comfyui_ref or deps.comfyui.ref
    commit = fetch_commit(Path(data_root(install_dir, platform)), url, target, log)
    registry = read_generations(install_dir, platform)
    current_id = current_generation(install_dir)
    current = registry.get(current_id) or _described(root, current_id, platform)
    number = next_generation_id(registry.generations, url, commit)
    new_root = Path(generation_root(install_dir, number, platform))
    options = replace(
        base,
        install_dir=new_root,
        comfyui_url=url,
        comfyui_ref=commit,
        torch_index=request.torch_index or recorded.torch_index or base.torch_index,
        python=request.python or recorded.python or base.python,
        # Recorded in the new generation's state, so the next update finds them there too,
        # with the options it was built from (a re-run of `install` repairs it with them).
        given=base.given | {"comfyui_url", "comfyui_ref", "torch_index", "python"},
        command_line=request.command_line,
        next_command=f"comfy-install launch {install_dir}",
        recorded_nodes=kept,
    )
    repo = Path(data_root(install_dir, platform))
    new_requirements = show_file(repo, commit, "requirements.txt", log)
    context = make_plan(replace(options, dry_run=True))
    names = parse_requirement_names(new_requirements) if new_requirements is not None else None
    probe = replace(context.probe, comfyui_requirements=names)
    plan = build_plan(context.deps, context.manifest, context.env, context.gpu, options, probe)
    old_installed = installed_distributions(paths["venv"], platform)
    old_requirements = _read(paths["comfyui"] / "requirements.txt")
    nodes = state.done("custom_nodes")
    prune = plan_prune(
        [*registry.generations, Generation(id=number, root=str(new_root), created_at="")],
        number,
        request.keep,
        install_dir,
        platform,
    )
    folder = Path(shared_nodes_dir(new_root, platform))
    shared = shared_node_decisions(plan.custom_nodes, folder, log)
    diff = update_diff(
        install_dir=str(install_dir),
        current=current,
        new_generation=number,
        new_root=str(new_root),
        new_commit=commit,
        plan=plan,
        old_requirements=old_requirements,
        new_requirements=new_requirements,
        old_installed=old_installed,
        old_nodes=dict(nodes.outputs.get("nodes") or {}) if nodes else {},
        switch=plan_switch(install_dir, number, platform).describe(),
        prune=[item.generation for item in prune],
        shared_nodes=shared,
        inputs=reused,
    )
    build = GenerationBuild(
        install_dir=install_dir, options=options, url=url, target=commit, ref=ref
    )
    # The same commit, torch set and nodes: up to date only when the build's options planned
    # for the current root find every step done (as a kept generation is judged for reuse).
    diff = judge_current(
        diff, lambda: generation_lacks(build, current, commit, new_root, context=context)
    )
    forced = bool(request.options and request.options.force)
    refusal = shared_nodes_refusal(shared, "this update", _again(request))
    if refusal is not None and (forced or not diff.up_to_date):
        raise refusal
    if forced or not diff.up_to_date:
        check_recorded_nodes(
            plan,
            context.deps,
            new_requirements,
            old_installed,
            paths["venv_python"],
            install_dir,
            _again(request),
            log,
        )
    return UpdatePreview(diff=diff, build=build, builds=forced or not diff.up_to_date)


@dataclass(frozen=True)
class _Carried:
    """The configuration an update carries over from the one a snapshot restore staged."""

    text: str
    """The merged `dependencies.json`."""
    planned: Path
    """Where it was written for planning (a temporary folder, outside DIR)."""
    lines: list[str]
    """What was carried, for the preview."""

    @staticmethod
    def final(root: Path) -> Path:
        """Where the new generation (in ROOT) keeps it, and records it as its `--config`."""
        from installer.edges.state import state_dir

        return state_dir(root) / "update" / "dependencies.json"


def _carry_staged_config(
    options: InstallOptions, recorded: RecordedInputs, install_dir: Path, scratch: Path
) -> _Carried | None:
    """Merge the shipped configuration with the install's own parts of a staged one.

    None when the install's configuration was not staged by a snapshot restore (or `--config`
    was given): then `options_from_record` alone decides. Else the shipped file (whose pins an
    update moves to) with the staged file's `custom_nodes`, `extra_requirements` and
    `comfyui.url` ([`carried_config`][installer.plan.update.carried_config]), written to
    SCRATCH for planning.
    """
    import json

    from installer.core.config_files import read_json, shipped_path
    from installer.edges.state import state_dir
    from installer.plan.update import carried_config, carried_lines

    if "config_path" in options.given or not recorded.config_path:
        return None
    staged = Path(recorded.config_path)
    if not staged.is_relative_to(state_dir(install_dir)) or not staged.is_file():
        return None
    merged = carried_config(read_json(shipped_path("dependencies.json")), read_json(staged))
    text = json.dumps(merged, indent=2) + "\n"
    planned = scratch / "dependencies.json"
    planned.write_text(text, encoding="utf-8")
    return _Carried(text=text, planned=planned, lines=carried_lines(merged, str(staged)))


_MOVED = ("comfyui_url", "comfyui_ref", "torch_index", "python")
"""Recorded inputs `options_from_record` leaves alone: the ComfyUI commit is what an update
moves (to the configuration's pin or `--comfyui-ref`); its source, the torch index and Python
are the request's own fields, taken from the record by `preview_update` itself."""


def options_from_record(
    options: InstallOptions, recorded: RecordedInputs, install_dir: Path | None = None
) -> tuple[InstallOptions, list[str]]:
    """Fill the options not given to `update` from what the current generation recorded.

    As a re-run of `install` does ([`apply_recorded`][installer.plan.inputs.apply_recorded]):
    the configuration, tools manifest, indexes, find-links, GPU, lock folder... the install
    was made with. A recorded file that is a comfy-install's own shipped one (of the version
    that installed, see [`is_shipped_copy`][installer.core.config_files.is_shipped_copy]) is
    replaced by this comfy-install's: that is how an update moves to its pins. A file of the
    user's is used as it is on disk now (they may have edited it). A file that `snapshot
    restore` staged in DIR's own `.comfy-install/` (the snapshot's configuration and lock, in
    the folder of the generation it built, which a later prune removes) pins that snapshot:
    it is replaced by this comfy-install's too, and `preview_update` then carries the
    install's own parts of the staged configuration over (its custom nodes, extra
    requirements and ComfyUI source; see [`carried_config`][installer.plan.update.carried_config]).

    Args:
        options: The update's options; `given` names those on its command line.
        recorded: What the current generation recorded.
        install_dir: DIR, whose `.comfy-install/` holds the staged files (None: none are).

    Returns:
        The options to plan the new generation with (the reused inputs count as given, so the
        new generation records them too), and a line for each reused input, for the preview
        (`config: /srv/mine.json (recorded by the install)`).

    Raises:
        UsageError: A recorded file or folder (not a shipped one) no longer exists (exit
            code 2).
    """
    from installer.core.config_files import is_shipped_copy, shipped_path
    from installer.core.lockfile import shipped_lock_dir
    from installer.edges.state import state_dir
    from installer.plan.inputs import RECORDED_OPTIONS, apply_recorded, planned_inputs

    kept = recorded.model_copy(update=dict.fromkeys(_MOVED))
    effective, _ = apply_recorded(options, kept)
    shipped = {
        "config_path": shipped_path("dependencies.json"),
        "tools_manifest_path": shipped_path("tools_manifest.json"),
        "lock_dir": shipped_lock_dir(),
    }
    staged = state_dir(install_dir) if install_dir is not None else None
    notes: list[str] = []
    changes: dict[str, Any] = {}
    for name, own in shipped.items():
        path = getattr(effective, name)
        if name not in effective.recorded or path is None:
            continue
        flag = RECORDED_OPTIONS[name]
        if is_shipped_copy(path, own):
            changes[name] = None
            notes.append(
                f"{flag.removeprefix('--')}: this comfy-install's shipped {own.name} (the "
                f"install used the shipped one, {path})"
            )
        elif staged is not None and path.is_relative_to(staged):
            changes[name] = None
            notes.append(
                f"{flag.removeprefix('--')}: this comfy-install's shipped {own.name} (the "
                f"install's was staged by a snapshot restore, {path})"
            )
        elif not path.exists():
            raise UsageError(
                f"The install was made with {flag} {path}, which no longer exists.",
                f"Put it back, or pass {flag} FILE to update with another one "
                f"(`comfy-install update DIR {flag} FILE`).",
            )
    reused = effective.recorded - changes.keys()
    effective = replace(
        effective, **changes, given=effective.given | reused, recorded=frozenset(reused)
    )
    lines = [
        f"{item.option.removeprefix('--')}: {item.value or 'yes'} (recorded by the install)"
        for item in planned_inputs(replace(effective, given=effective.given - reused))
        if item.source == "recorded"
    ]
    return effective, lines + notes


def _again(request: UpdateRequest) -> str:
    from installer.core.log import command_text

    return command_text(list(request.command_line) or ["update", str(request.install_dir)])


def _described(root: Path, number: int, platform: str) -> Generation:
    from installer.edges.generations import describe_root

    return describe_root(root, number, platform)


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def update(request: UpdateRequest, log: InstallerLogger) -> UpdateResult:
    """Update DIR under its lock: build and verify a new generation, switch, prune.

    Args:
        request: The update's options (not a dry run).
        log: Terminal and log-file output.

    Returns:
        The diff, the new generation and what was pruned; `switched` is False when the
        install was already at the target (nothing was built).

    Raises:
        InstallerError: Planning or building failed; the current generation is unchanged
            and still current (the message names the failed step and the log).
        InterruptedByUserError: Ctrl-C or SIGTERM: the next `update` continues the build.
    """
    from installer.commands.executor import prepare_install_dir

    prepare_install_dir(request.install_dir)
    lock = InstallLock(request.install_dir, command="update")
    with lock.held(log):
        preview = preview_update(request, log)
        diff = preview.diff
        if diff.up_to_date and not (request.options and request.options.force):
            log.info(
                f"generation {diff.current_generation} is already at "
                f"{(diff.comfyui.new or '')[:12]} and holds what this update builds (every "
                "step done); nothing to do"
            )
            pruned = prune_generations(request.install_dir, request.keep, log)
            return UpdateResult(
                diff=diff, switched=False, pruned=[item.generation for item in pruned]
            )
        if diff.outdated is not None:
            log.info(
                f"generation {diff.current_generation} is at {(diff.comfyui.new or '')[:12]}, "
                f"but this update would change it ({diff.outdated}): a new generation is built"
            )
        built = build_generation(preview.build, log)
        switch_generation(request.install_dir, built.generation.id, log)
        pruned = prune_generations(request.install_dir, request.keep, log)
        diff.new_generation = built.generation.id
        return UpdateResult(
            diff=diff,
            switched=True,
            generation=built.generation,
            pruned=[item.generation for item in pruned],
            steps=built.result.as_data(),
            reused=built.reused,
        )
