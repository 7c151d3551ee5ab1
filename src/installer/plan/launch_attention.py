"""The attention decision of a launch: which attention ComfyUI runs with, and why.

Today one rule: add `--use-sage-attention` when SageAttention and Triton can be
found in the venv ([`SageProbe`][installer.plan.launch_attention.SageProbe], what
[`probe_sage`][installer.launch.facts.probe_sage] found) and the lowest compute
capability is 8.0 or newer, unless the user chose an attention flag. Pure, like
the other decisions: the probe's result comes in as data. A measured choice
(a calibration read by the launch) belongs here too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from packaging.version import Version

from installer.core.facts import GpuReport
from installer.plan.launch_settings import find_option
from installer.plan.launch_tunings import Tuning, no_gpu_reason

SAGE_MIN_CC = Version("8.0")
# ComfyUI's attention choices are one argparse group: we add ours only when
# the user chose none of them.
ATTENTION_FLAGS = (
    "--use-sage-attention",
    "--use-pytorch-cross-attention",
    "--use-split-cross-attention",
    "--use-quad-cross-attention",
    "--use-flash-attention",
)


@dataclass(frozen=True)
class SageProbe:
    """Whether SageAttention and Triton can be found in the venv (not imported)."""

    sageattention: bool
    triton: bool


def decide_sage(
    tune: bool, gpu: GpuReport, sage: SageProbe | None, comfy_args: Sequence[str]
) -> Tuning:
    """Decide whether to add `--use-sage-attention`.

    Args:
        tune: Tuning on.
        gpu: The GPU report (the lowest compute capability counts).
        sage: What the venv has (None when it was not checked).
        comfy_args: The arguments ComfyUI will get from the user.

    Returns:
        The SageAttention tuning; ``argument`` is set when the flag is added.
    """
    name = "sage-attention"
    if not tune:
        return Tuning(name, "off", "--no-tune")
    chosen = [flag for flag in ATTENTION_FLAGS if find_option(comfy_args, flag)[0]]
    if chosen:
        return Tuning(name, "user", f"you chose {chosen[-1]}", argument=chosen[-1])
    cc = gpu.planning_cc
    if cc is None:
        return Tuning(name, "off", no_gpu_reason(gpu))
    if cc < SAGE_MIN_CC:
        return Tuning(name, "off", f"compute capability {cc} is below 8.0")
    if sage is None:
        return Tuning(name, "off", "the venv could not be checked for sageattention")
    if not sage.sageattention:
        return Tuning(name, "off", "sageattention is not installed in the venv")
    if not sage.triton:
        return Tuning(
            name, "off", "sageattention is installed but triton is not (ComfyUI would fail)"
        )
    return Tuning(
        name,
        "on",
        f"sageattention and triton are installed; compute capability {cc} supports it",
        argument="--use-sage-attention",
    )
