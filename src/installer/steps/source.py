"""Steps 5 and 9: the ComfyUI clone and the custom nodes, pinned and verified."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from installer.core.generations import owning_install
from installer.edges.git import checkout_pinned
from installer.nodes.files import read_node_requirements, shared_node_decisions
from installer.nodes.install import install_nodes_requirements
from installer.plan.drafts import removed_node_line
from installer.plan.generations import shared_nodes_refusal
from installer.plan.records import PlannedStep
from installer.steps.context import StepContext
from installer.steps.packages import constraints_path, lock_path

COMFYUI_FOLDERS = ("custom_nodes", "models", "input", "output")


def run_comfyui(ctx: StepContext, step: PlannedStep) -> dict[str, Any]:
    """Clone ComfyUI at the pin (or move a clean clone to it) and create its folders.

    Args:
        ctx: The run's context.
        step: The planned `comfyui` step (not used: ``ctx.plan`` holds what to do).

    Returns:
        The `commit` checked out, and the `url` and `ref` it came from.

    Raises:
        StepFailedError: The clone has local changes, the commit does not exist, or HEAD does not
            match the pin.
    """
    plan = ctx.plan.comfyui
    target = plan.commit or plan.ref
    commit = checkout_pinned(
        ctx.comfyui_dir,
        plan.url,
        target,
        ctx.log,
        expected=plan.commit,
        unreachable_hint=(
            "Check the URL and the network, then run again; to install from a local clone or a "
            "git bundle (`git bundle create comfyui.bundle --all`), pass --comfyui-url PATH."
        ),
    )
    for folder in COMFYUI_FOLDERS:
        (ctx.comfyui_dir / folder).mkdir(exist_ok=True)
    ctx.log.info(f"ComfyUI at {commit} ({plan.ref})")
    return {"commit": commit, "url": plan.url, "ref": plan.ref}


def run_custom_nodes(ctx: StepContext, step: PlannedStep) -> dict[str, Any]:
    """Clone each configured custom node at its commit and install its requirements.

    The nodes live in `DIR/ComfyUI/custom_nodes`, where ComfyUI loads them in every
    generation. For a later generation that folder is shared and the user's: a node not there
    is cloned as a new folder, one at the pin is used as it is, and one at another commit (or
    with local changes, or not a git checkout) stops the step before any node is touched
    (with `keep_nodes`, `snapshot restore --keep-nodes`, it is used as it is: the restore
    has warned of each such folder already, before it built anything, so this step only
    names it with the others). Every node's requirements go into this root's venv, and so do
    the recorded requirements of the nodes of DIR's `nodes.json` that the plan keeps (an
    update's new generation: `ctx.plan.recorded_nodes`).

    Args:
        ctx: The run's context.
        step: The planned `custom_nodes` step (not used: ``ctx.plan`` holds what to do).

    Returns:
        `nodes`: the commit of each configured custom node, by name; `recorded` (only when
        there are any): the requirements installed for each node of DIR's `nodes.json`
        (an update's new generation keeps them).

    Raises:
        UsageError: A later generation meets a shared node folder it may not use.
        StepFailedError: A clone or checkout failed, or a node's requirements (its
            requirements.txt and pyproject.toml dependencies, as ComfyUI-Manager reads them)
            could not be installed.
        TorchConflictError: A node's requirements want another torch.
    """
    installed: dict[str, str] = {}
    pending: dict[str, Sequence[str]] = {}
    for name in ctx.plan.removed_custom_nodes:
        ctx.log.info(removed_node_line(name))
    folder = ctx.custom_nodes_dir
    if ctx.shares_custom_nodes:
        decisions = shared_node_decisions(ctx.plan.custom_nodes, folder, ctx.log)
        kept = {d.name: d for d in decisions if d.action == "refuse" and ctx.options.keep_nodes}
        refusal = shared_nodes_refusal(
            [d for d in decisions if d.name not in kept],
            "the configuration",
            _again(ctx),
            unchanged="No node folder was changed.",
        )
        if refusal is not None:
            raise refusal
    else:
        kept = {}
    for node in ctx.plan.custom_nodes:
        dest = folder / node.name
        if node.name in kept:
            as_it_is = kept[node.name].found
            head = as_it_is.head if as_it_is else None
            commit = head or "(not a git checkout)"
            shown = f"{head[:12] if head else commit}, as it is (--keep-nodes)"
        else:
            commit = checkout_pinned(dest, node.url, node.commit, ctx.log, expected=node.commit)
            shown = commit[:12]
        if node.requirements:
            found = read_node_requirements(dest)
            pending[node.name] = found.requirements
            if found.install_script:
                ctx.log.warn(
                    f"{node.name} has an install.py; it was not run (it is arbitrary code: "
                    f"`comfy-install nodes add DIR {node.url} --allow-install-script` runs it)"
                )
        installed[node.name] = commit
        ctx.log.info(f"{node.name} at {shown}")
    recorded: dict[str, list[str]] = {}
    for kept_node in ctx.plan.recorded_nodes:
        # Resolved before the update changed anything (with the new ComfyUI's requirements,
        # torch and the accelerators held); installed with the configured nodes' below.
        pending[kept_node.name] = kept_node.requirements
        recorded[kept_node.name] = list(kept_node.requirements)
    # Every node's requirements in one uv call (torch held, the lock kept): resolved together.
    install_nodes_requirements(
        ctx.uv,
        ctx.venv_python,
        ctx.paths["venv"],
        ctx.plan.platform,
        constraints_path(ctx),
        pending,
        extra_constraints=[lock] if (lock := lock_path(ctx)) else [],
    )
    for kept_node in ctx.plan.recorded_nodes:
        ctx.log.info(f"{kept_node.describe()}: in this venv")
    return {"nodes": installed, **({"recorded": recorded} if recorded else {})}


def _again(ctx: StepContext) -> str:
    """The command the user ran (an update's build runs these steps too), for a hint."""
    from installer.core.log import command_text

    words = list(ctx.options.command_line) or ["install", str(owning_install(ctx.install_dir))]
    return command_text(words)
