"""The inputs an install was made with, and how a re-run reuses them. Pure.

A re-run means continue or repair: `comfy-install install DIR` without options must plan
the install DIR holds (its ComfyUI source and ref, its torch index, its config...), not
the defaults. So the options a user gives are recorded in the state
([`RecordedInputs`][installer.core.records.RecordedInputs]), and a later run that does not
give an option takes the recorded value; the plan lists each such input and where it came
from ([`PlannedInput`][installer.plan.records.PlannedInput]), and every hint that names a
command repeats them ([`rerun_command`][installer.plan.inputs.rerun_command]).

[`recorded_inputs`][installer.plan.inputs.recorded_inputs] is the one reader of those
inputs: `install`, `doctor` and the day-two commands (update, rollback) all use it.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

from installer.core.records import InstallState, RecordedInputs
from installer.plan.records import InstallOptions, PlannedInput

RECORDED_OPTIONS: dict[str, str] = {
    "config_path": "--config",
    "tools_manifest_path": "--tools-manifest",
    "comfyui_url": "--comfyui-url",
    "comfyui_ref": "--comfyui-ref",
    "torch_index": "--torch-index",
    "python": "--python",
    "gpu": "--gpu",
    "cuda_driver": "--cuda-driver",
    "index_url": "--index-url",
    "extra_index_urls": "--extra-index-url",
    "find_links": "--find-links",
    "lock_dir": "--lock-dir",
    "no_lock": "--no-lock",
}
"""The options an install records (field of `InstallOptions` → its command-line option).

What a re-run reuses: where things come from (config, ComfyUI source, indexes, locks) and
what they are planned for (Python, GPU). Not recorded: what a run does (`--only`,
`--force`, `--offline`, `--dry-run`) and what it allows (`--allow-unverified`, which must
be said each time).
"""

REDACTED = "***"
"""What a secret in a URL was replaced with before the state was written."""

_PATHS = ("config_path", "tools_manifest_path", "lock_dir")
_LISTS = ("extra_index_urls", "find_links")


def recorded_inputs(state: InstallState | None) -> RecordedInputs:
    """Return the inputs the install in DIR was made with.

    Args:
        state: The install's state (None: no usable state, so nothing is recorded).

    Returns:
        What the last install run recorded. A state written before inputs were kept has
        none; its step records still say where ComfyUI came from (and the `--comfyui-ref`,
        when one was given) and which torch index was used, and those are returned
        (nothing else is guessed).
    """
    if state is None:
        return RecordedInputs()
    if state.inputs is not None:
        return state.inputs
    found: dict[str, Any] = {}
    comfyui = state.done("comfyui")
    if comfyui is not None:
        url, target = comfyui.inputs.get("url"), comfyui.inputs.get("target")
        found["comfyui_url"] = url if isinstance(url, str) and url else None
        # The configuration's pin is always a full commit: any other target was a --comfyui-ref.
        if isinstance(target, str) and target and not _is_commit(target):
            found["comfyui_ref"] = target
    torch = state.done("torch")
    if torch is not None:
        index, variant = torch.inputs.get("index_url"), torch.inputs.get("variant")
        if index is None:
            found["torch_index"] = "default"
        elif isinstance(variant, str) and variant not in ("custom", ""):
            found["torch_index"] = variant
        elif isinstance(index, str):
            found["torch_index"] = index
    return RecordedInputs(**found)


def _is_commit(value: str) -> bool:
    return len(value) == 40 and all(char in "0123456789abcdef" for char in value)


def apply_recorded(
    options: InstallOptions, recorded: RecordedInputs
) -> tuple[InstallOptions, RecordedInputs]:
    """Fill the options the user did not give from the inputs the install recorded.

    Args:
        options: The options of this run; its `given` names the fields typed on the
            command line, which always win.
        recorded: What the install recorded (from
            [`recorded_inputs`][installer.plan.inputs.recorded_inputs]).

    Returns:
        The options to plan with (their `recorded` names the fields taken from the record),
        and the inputs to record after this run (given and reused ones).
    """
    changes: dict[str, Any] = {}
    reused: set[str] = set()
    withheld: set[str] = set()
    for name in RECORDED_OPTIONS:
        value = getattr(recorded, name)
        if name in options.given or value is None:
            continue
        if REDACTED in str(value):
            # A URL's password or token was replaced before the state was written.
            withheld.add(name)
            continue
        if name in _PATHS:
            value = Path(value)
        elif name in _LISTS:
            value = tuple(value)
        changes[name] = value
        reused.add(name)
    effective = replace(
        options, **changes, recorded=frozenset(reused), withheld=frozenset(withheld)
    )
    return effective, inputs_of(effective)


def inputs_of(options: InstallOptions) -> RecordedInputs:
    """Return the inputs a run records: each option given now or reused from the record.

    Args:
        options: The options of the run (after
            [`apply_recorded`][installer.plan.inputs.apply_recorded]).
    """
    values: dict[str, Any] = {}
    for name in RECORDED_OPTIONS:
        if name not in options.given and name not in options.recorded:
            continue
        value = getattr(options, name)
        if name in _PATHS:
            value = str(value) if value is not None else None
        elif name in _LISTS:
            value = list(value)
        values[name] = value
    return RecordedInputs(**values)


def planned_inputs(options: InstallOptions) -> list[PlannedInput]:
    """The inputs a plan shows: each option given now or reused, with where it came from.

    Args:
        options: The options the plan is made from.
    """
    shown: list[PlannedInput] = []
    for name, flag in RECORDED_OPTIONS.items():
        source: Literal["given", "recorded"]
        if name in options.given:
            source = "given"
        elif name in options.recorded:
            source = "recorded"
        else:
            continue
        value = getattr(options, name)
        if isinstance(value, (tuple, list)):
            text = " ".join(str(item) for item in value)
        else:
            text = "" if value is True else str(value)
        shown.append(PlannedInput(option=flag, value=text, source=source))
    return shown


def withheld_warnings(options: InstallOptions) -> list[str]:
    """The plan's warnings for recorded inputs that were not reused (they held a secret).

    Args:
        options: The options the plan is made from.
    """
    return [
        f"the install was made with {RECORDED_OPTIONS[name]} holding a password or token, "
        f"which is never stored: pass {RECORDED_OPTIONS[name]} again to use it"
        for name in sorted(options.withheld)
    ]


def input_arguments(inputs: RecordedInputs, only: Sequence[str] | None = None) -> list[str]:
    """Return recorded inputs as command-line words, in a fixed order.

    Args:
        inputs: The inputs to repeat.
        only: Field names to include (default: all that are recorded).

    Returns:
        E.g. ``["--comfyui-url", "/srv/ComfyUI.bundle", "--torch-index", "default"]``.
    """
    words: list[str] = []
    for name, flag in RECORDED_OPTIONS.items():
        value = getattr(inputs, name)
        if value is None or (only is not None and name not in only):
            continue
        if isinstance(value, bool):
            words += [flag] if value else []
        elif isinstance(value, list):
            for item in value:
                words += [flag, str(item)]
        else:
            words += [flag, str(value)]
    return words


def rerun_command(install_dir: Path | str, inputs: RecordedInputs, *extra: str) -> str:
    """Return the `comfy-install install` command that repeats an install, quoted for a shell.

    Args:
        install_dir: DIR.
        inputs: The inputs the install recorded.
        extra: Further words, e.g. ``"--force", "requirements"``.

    Returns:
        E.g. `comfy-install install /srv/comfy --torch-index default --force requirements`;
        secrets in URLs are the caller's to redact.
    """
    words = ["comfy-install", "install", str(install_dir), *input_arguments(inputs), *extra]
    return shlex.join(words)
