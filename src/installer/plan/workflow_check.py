"""The plan of `tune --workflow`: which ComfyUI variants run which workflows, with which seeds.

`comfy-install tune DIR --workflow FILE` checks the tuning end to end (issue 30): each
workflow runs, each time in a fresh ComfyUI, as ``stock`` (plain `main.py`, no tuning of
comfy-install's), ``tuned`` (exactly what `launch` starts, without levers) and
``tuned+LEVER`` for each candidate lever
([`KNOWN_LEVERS`][installer.plan.workflow_check.KNOWN_LEVERS]: ComfyUI's `--fast`
options and VRAM modes); then, as a second phase, ``launch`` (what `launch` starts once
these figures are in levers.json: the levers that went on, together) and ``launch-norouting``
where that launch is not ``tuned``
([`launch_variants`][installer.plan.workflow_check.launch_variants]). Per variant one
cold run and ``runs`` warm runs, the seed one higher each run (ComfyUI would answer a
repeated prompt from its cache), the same seeds for every variant so that outputs compare
at the same seed.
[`plan_check`][installer.plan.workflow_check.plan_check] makes that plan from data: the
workflows as parsed ([`parse_workflow`][installer.plan.workflow_check.parse_workflow]),
the levers asked for, the GPU, the torch in the venv, and the options DIR's ComfyUI
knows. `tune --dry-run` prints it; [`installer.workflows`][installer.workflows] runs it.
Pure.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from packaging.version import Version

from installer.core.errors import UsageError
from installer.core.facts import GpuReport, TorchInstalled
from installer.plan.launch_settings import find_option

DEFAULT_RUNS = 3
DEFAULT_BUDGET_S = 600.0
SEED_INPUTS = {"KSampler": "seed", "KSamplerAdvanced": "noise_seed"}
"""The samplers' seed inputs; any other node's integer ``seed`` or ``noise_seed`` input
(SamplerCustom, RandomNoise, ImageAddNoise, ...) counts too."""
OTHER_SEED_NAMES = ("seed", "noise_seed")
EXPORT_HINT = (
    "In ComfyUI, export the workflow in the API format: Workflow > Export (API) (older "
    "front ends: enable the dev mode options in the settings, then 'Save (API Format)'), "
    "and pass that file."
)


@dataclass(frozen=True)
class KnownLever:
    """A ComfyUI option measured as a lever, and what it needs to apply."""

    name: str
    args: tuple[str, ...]
    needs: tuple[str, ...]
    """ComfyUI options or `--fast` values DIR's ComfyUI must know (read from its cli_args)."""
    min_cc: str | None = None
    min_torch: tuple[int, int] | None = None
    package: str | None = None
    """A distribution the venv must have for the lever to do anything."""


KNOWN_LEVERS: dict[str, KnownLever] = {
    lever.name: lever
    for lever in (
        KnownLever("fp16acc", ("--fast", "fp16_accumulation"), ("fp16_accumulation",),
                   min_torch=(2, 7)),
        KnownLever("autotune", ("--fast", "autotune"), ("autotune",)),
        # fp8_matrix_mult acts only on fp8 weights, so the lever is the pair; fp8 matmuls
        # need Ada or newer (compute capability 8.9).
        KnownLever("fp8mm", ("--fast", "fp8_matrix_mult", "--fp8_e4m3fn-unet"),
                   ("fp8_matrix_mult", "--fp8_e4m3fn-unet"), min_cc="8.9"),
        KnownLever("cublas", ("--fast", "cublas_ops"), ("cublas_ops",), package="cublas-ops"),
        KnownLever("nodyn", ("--disable-dynamic-vram",), ("--disable-dynamic-vram",)),
        KnownLever("highvram", ("--highvram",), ("--highvram",)),
    )
}  # fmt: skip
"""The levers `tune --workflow` knows (the GPU benchmark's names and arguments)."""
VRAM_MODES = ("--highvram", "--lowvram", "--novram", "--normalvram", "--gpu-only", "--cpu")


@dataclass(frozen=True)
class Workflow:
    """One workflow to run: its name, its API-format nodes and the inputs that carry its seed."""

    name: str
    path: str
    nodes: Mapping[str, Any]
    seed_inputs: tuple[tuple[str, str], ...]
    """``(node id, input name)`` of every integer seed input (all moved together)."""
    seed: int
    """The first seed input's value: the cold run's seed (warm runs: +1, +2, ...)."""

    def with_seed(self, seed: int) -> dict[str, Any]:
        """Return the nodes for the run of ``seed``: every seed input moved by as much.

        The first seed input becomes ``seed``; the others keep their distance to it (two
        samplers with seeds 42 and 1000 run 43 and 1001 next), so the workflow stays the
        user's.

        Args:
            seed: The run's seed (the first seed input's value).
        """
        nodes = copy.deepcopy(dict(self.nodes))
        offset = seed - self.seed
        for node, name in self.seed_inputs:
            nodes[node]["inputs"][name] = int(self.nodes[node]["inputs"][name]) + offset
        return nodes


@dataclass(frozen=True)
class LeverChoice:
    """A known lever and whether this check runs it, with the reason."""

    name: str
    args: tuple[str, ...]
    runs: bool
    reason: str


VariantKind = Literal["stock", "tuned", "norouting", "lever", "launch", "launch_norouting"]
NOROUTING = "tuned-norouting"
"""The variant with the attention router off (`COMFY_INSTALL_ATTENTION_ROUTES=off`) and every
other tuning as ``tuned``'s, run when the tuned launch routes: the figure routing itself is
judged against (issue 30: on an H100 with dynamic VRAM off, routing SDXL's calls to cuDNN
made it 4% slower than the same launch without the router)."""


LAUNCH = "launch"
"""The second phase's variant: exactly what `launch` starts once the first phase's figures
are in levers.json (the levers that go on, the routing that the verdict leaves), run when
that differs from ``tuned``: the levers were each measured against ``tuned`` alone, and the
launch that combines them with the router is the one the user gets."""
LAUNCH_NOROUTING = "launch-norouting"
"""``launch`` with the attention router off, run when ``launch`` routes: routing judged as
the launch runs it (on the H100 of issue 30 the router's cost showed only with
`--disable-dynamic-vram` on)."""

SECOND_PHASE = (
    f"{LAUNCH}: the launch as decided from these figures (the levers that go on, the routing "
    f"the verdict leaves), and {LAUNCH_NOROUTING} with its router off, where that launch is "
    "not the tuned one already measured"
)
"""What the check runs after the variants it lists (`tune --dry-run` shows it)."""


@dataclass(frozen=True)
class Variant:
    """One way ComfyUI is started for the check."""

    name: str
    kind: VariantKind
    lever_args: tuple[str, ...] = ()
    lever: str | None = None

    @property
    def tune(self) -> bool:
        """Whether comfy-install's tuning is on (all but ``stock``)."""
        return self.kind != "stock"

    @property
    def router_off(self) -> bool:
        """Whether the attention router is turned off for it (the ``*-norouting`` variants)."""
        return self.kind in ("norouting", "launch_norouting")

    @property
    def as_launched(self) -> bool:
        """Whether it is planned from the first phase's figures (the second phase's)."""
        return self.kind in ("launch", "launch_norouting")


@dataclass(frozen=True)
class CheckPlan:
    """The whole check: workflows × variants, the runs, the budget, the levers' choice."""

    workflows: tuple[Workflow, ...]
    variants: tuple[Variant, ...]
    levers: tuple[LeverChoice, ...]
    runs: int
    budget_s: float

    def seeds(self, workflow: Workflow) -> list[int]:
        """The seeds of a variant's runs on ``workflow``: the cold run's, then each warm one's.

        Args:
            workflow: One of the plan's workflows.
        """
        return [workflow.seed + index for index in range(self.runs + 1)]

    def as_data(self) -> dict[str, Any]:
        """Return the plan as JSON-ready data (`tune --dry-run --json`)."""
        return {
            "runs": self.runs,
            "budget_s": self.budget_s,
            "workflows": [
                {
                    "name": w.name,
                    "path": w.path,
                    "seed_inputs": [f"{node}.{name}" for node, name in w.seed_inputs],
                    "seeds": self.seeds(w),
                }
                for w in self.workflows
            ],
            "variants": [asdict(v) | {"tune": v.tune} for v in self.variants],
            "then": SECOND_PHASE,
            "levers": [asdict(lever) for lever in self.levers],
        }


def api_nodes(data: Any, path: str) -> dict[str, Any]:
    """Check that JSON data is an API-format workflow (``{node id: {"class_type", "inputs"}}``).

    Args:
        data: The file's decoded JSON.
        path: Where it came from (for messages).

    Returns:
        The nodes, as given.

    Raises:
        UsageError: The UI format (nodes and links), or not a workflow at all.
    """
    if isinstance(data, dict) and "nodes" in data and "links" in data:
        raise UsageError(
            f"{path} is a workflow in ComfyUI's UI format (nodes and links), not the API "
            "format that ComfyUI's /prompt runs.",
            EXPORT_HINT,
        )
    if not (
        isinstance(data, dict)
        and data
        and all(
            isinstance(node, dict)
            and isinstance(node.get("class_type"), str)
            and isinstance(node.get("inputs", {}), dict)
            for node in data.values()
        )
    ):
        raise UsageError(
            f"{path} is not an API-format ComfyUI workflow (an object of nodes, each with "
            "class_type and inputs).",
            EXPORT_HINT,
        )
    return data


def parse_workflow(text: str, path: str, name: str) -> Workflow:
    """Read an API-format workflow (``{node id: {"class_type", "inputs"}}``) and find its seed.

    Args:
        text: The file's content.
        path: Where it came from (for messages).
        name: The name its figures are kept under.

    Returns:
        The workflow.

    Raises:
        UsageError: Not JSON, the UI format, not a workflow, or no seed input to change.
    """
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{path} is not valid JSON ({exc}).", EXPORT_HINT) from None
    if isinstance(data, dict) and isinstance(data.get("prompt"), dict):
        data = data["prompt"]  # a saved /prompt request body
    data = api_nodes(data, path)
    found: list[tuple[str, str]] = []
    for node_id in sorted(data, key=lambda key: (len(key), key)):
        inputs = data[node_id].get("inputs") or {}
        names = [SEED_INPUTS[data[node_id]["class_type"]]] if (
            data[node_id]["class_type"] in SEED_INPUTS
        ) else list(OTHER_SEED_NAMES)  # fmt: skip
        for input_name in names:
            value = inputs.get(input_name)
            if isinstance(value, int) and not isinstance(value, bool):
                found.append((str(node_id), input_name))
    if not found:
        raise UsageError(
            f"{path} has no sampler with a seed of its own (KSampler `seed`, KSamplerAdvanced "
            "`noise_seed`, or another node's integer seed input): ComfyUI would answer each "
            "repeated run from its cache, so nothing could be timed.",
            "Use a workflow with a sampler whose seed is a number in the file (not linked from "
            "another node).",
        )
    first_node, first_input = found[0]
    return Workflow(
        name=name,
        path=path,
        nodes=data,
        seed_inputs=tuple(found),
        seed=int(data[first_node]["inputs"][first_input]),
    )


def workflow_names(paths: Sequence[str]) -> list[str]:
    """Name each workflow by its file's stem, made unique (``sdxl``, ``sdxl-2``).

    Args:
        paths: The workflow files, in order.
    """
    names: list[str] = []
    for path in paths:
        stem = path.replace("\\", "/").rsplit("/", 1)[-1]
        stem = stem[: -len(".json")] if stem.lower().endswith(".json") else stem
        name, index = stem or "workflow", 2
        while name in names:
            name, index = f"{stem}-{index}", index + 1
        names.append(name)
    return names


def comfyui_options(cli_args_text: str) -> frozenset[str]:
    """Return the options and `--fast` values of the levers that a ComfyUI's cli_args knows.

    Args:
        cli_args_text: The text of `ComfyUI/comfy/cli_args.py`.
    """
    wanted = {need for lever in KNOWN_LEVERS.values() for need in lever.needs}
    return frozenset(
        need for need in wanted if f'"{need}"' in cli_args_text or f"'{need}'" in cli_args_text
    )


def _applies(
    lever: KnownLever,
    gpu: GpuReport,
    torch: TorchInstalled | None,
    options: frozenset[str] | None,
    packages: frozenset[str],
    comfy_args: Sequence[str],
) -> str | None:
    """Why ``lever`` does not apply here, or None when it does."""
    if options is not None and not set(lever.needs) <= options:
        missing = ", ".join(sorted(set(lever.needs) - options))
        return f"DIR's ComfyUI has no {missing}"
    if "--fast" in lever.args and find_option(comfy_args, "--fast")[0]:
        return "you pass --fast yourself"
    mode = next((a for a in lever.args if a in VRAM_MODES), None)
    if mode is not None and any(find_option(comfy_args, m)[0] for m in VRAM_MODES):
        return "you choose a VRAM mode yourself"
    if not gpu.has_nvidia or find_option(comfy_args, "--cpu")[0]:
        return "ComfyUI runs on the CPU (the levers are GPU options)"
    cc = gpu.planning_cc
    if lever.min_cc is not None and cc is not None and cc < Version(lever.min_cc):
        return f"needs compute capability {lever.min_cc} or newer (this GPU: {cc})"
    if lever.min_torch is not None and torch is not None:
        parts = torch.version.split("+")[0].split(".")
        numbers = tuple(int(p) for p in parts[:2] if p.isdigit())
        if numbers < lever.min_torch:
            wanted = ".".join(str(n) for n in lever.min_torch)
            return f"needs torch {wanted} or newer (the venv: {torch.version})"
    if lever.package is not None and lever.package not in packages:
        return f"needs the {lever.package} package, which the venv lacks"
    return None


def choose_levers(
    asked: Sequence[str] | None,
    gpu: GpuReport,
    torch: TorchInstalled | None,
    options: frozenset[str] | None,
    packages: frozenset[str],
    comfy_args: Sequence[str],
) -> list[LeverChoice]:
    """Choose the levers to measure: those asked for, or every known one that applies.

    Args:
        asked: The names given with `--levers` (None: the default; an empty list: none).
        gpu: The GPUs detected.
        torch: The venv's torch.
        options: What DIR's ComfyUI knows (None: unknown, every option assumed).
        packages: The venv's distribution names (normalized: lower case, ``_``).
        comfy_args: The ComfyUI arguments every variant gets.

    Returns:
        One choice per known lever (an asked lever runs even where the rule says it does
        not apply, unless ComfyUI lacks its option).

    Raises:
        UsageError: An unknown lever name.
    """
    unknown = sorted(set(asked or ()) - set(KNOWN_LEVERS))
    if unknown:
        raise UsageError(
            f"Unknown lever {', '.join(unknown)}.",
            f"Choose among {', '.join(KNOWN_LEVERS)} (--levers nodyn,autotune).",
        )
    choices = []
    for lever in KNOWN_LEVERS.values():
        why = _applies(lever, gpu, torch, options, packages, comfy_args)
        if asked is None:
            runs, reason = why is None, why or "applies to this GPU and ComfyUI"
        elif lever.name not in asked:
            runs, reason = False, "not in --levers"
        elif why is not None and why.startswith("DIR's ComfyUI has no"):
            runs, reason = False, why
        else:
            runs, reason = True, "asked for" + (f" (though {why})" if why else "")
        choices.append(LeverChoice(lever.name, lever.args, runs, reason))
    return choices


def plan_check(
    workflows: Sequence[Workflow],
    levers: Sequence[LeverChoice],
    runs: int = DEFAULT_RUNS,
    budget_s: float = DEFAULT_BUDGET_S,
    routed: bool = False,
) -> CheckPlan:
    """Make the check's plan: stock, tuned, tuned with the router off, then each lever.

    Args:
        workflows: The parsed workflows.
        levers: The levers' choice ([`choose_levers`][installer.plan.workflow_check.choose_levers]).
        runs: Warm runs per variant (after one cold run).
        budget_s: Seconds for the whole check.
        routed: The tuned launch routes attention: ``tuned-norouting``
            ([`NOROUTING`][installer.plan.workflow_check.NOROUTING]) runs after ``tuned``.

    Raises:
        UsageError: No workflow, fewer than one warm run, or a budget that is not positive.
    """
    if not workflows:
        raise UsageError("No workflow to check.", "Give one with --workflow FILE.")
    if runs < 1:
        raise UsageError("--runs must be at least 1.", "For example --runs 3.")
    if budget_s <= 0:
        raise UsageError(
            "--workflow-budget must be more than 0 seconds.", "For example --workflow-budget 600."
        )
    variants = [Variant("stock", "stock"), Variant("tuned", "tuned")]
    if routed:
        variants.append(Variant(NOROUTING, "norouting"))
    variants += [
        Variant(f"tuned+{lever.name}", "lever", lever.args, lever.name)
        for lever in levers
        if lever.runs
    ]
    return CheckPlan(tuple(workflows), tuple(variants), tuple(levers), runs, budget_s)


def launch_variants(routed: bool) -> tuple[Variant, ...]:
    """The second phase's variants: ``launch``, and ``launch-norouting`` where it routes.

    They run only when the launch planned from the first phase's figures is not the
    ``tuned`` variant already measured
    ([`launch_differs`][installer.workflows.run.launch_differs]).

    Args:
        routed: The launch as decided routes attention.
    """
    launch = Variant(LAUNCH, "launch")
    return (launch, Variant(LAUNCH_NOROUTING, "launch_norouting")) if routed else (launch,)
