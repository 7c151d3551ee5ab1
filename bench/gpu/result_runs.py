"""The runs of a merged results file, kept apart so that ratios compare within one run.

`run_workflows.py --merge` adds each call's variants to the results of earlier calls on
the same machine. A variant measured again replaces its entry in ``workflows``; the
entry it replaces moves to ``superseded`` (per workflow, a list, each with its
``variant`` name), and every entry names the ``run`` (its start time) it came from.
Warm machines drift between runs (stock SDXL took 0.097 s/step in one run and 0.108 in
the next, on one H100), so "vs stock", a lever's speedup against ``tuned`` and
torch.compile's payoff are computed only between entries of the same run:
`groups` is every (workflow, run) with the variants measured in it. Entries written
before runs were named count as the file's first run (``started``). Standard library only
(the chart reads it too).
"""

from __future__ import annotations

import copy
from typing import Any


def run_of(entry: dict[str, Any], first: str) -> str:
    """The run an entry came from: its ``run``, or the file's first (``first``) for older ones."""
    return str(entry.get("run") or first)


def run_label(run: str) -> str:
    """A run's start as ``HH:MM`` (its ISO time's clock), ``-`` where there is none."""
    return run[11:16] or "-"


def gpu_of(results: dict[str, Any]) -> str:
    """The GPU a results file was measured on: the name part of its ``machine.gpu``."""
    return str((results.get("machine") or {}).get("gpu") or "unknown").split(",")[0].strip()


def merge(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Return ``old`` with ``new``'s variants added; replaced entries move to ``superseded``.

    Args:
        old: The results of earlier runs (not changed).
        new: This run's results (every entry with its ``run``).
    """
    merged = copy.deepcopy(old)
    first = str(merged.get("started") or "")
    for workflow, variants in new["workflows"].items():
        kept = merged.setdefault("workflows", {}).setdefault(workflow, {})
        for variant, entry in variants.items():
            previous = kept.get(variant)
            if previous is not None and run_of(previous, first) != entry.get("run"):
                replaced = {"variant": variant, **previous, "run": run_of(previous, first)}
                merged.setdefault("superseded", {}).setdefault(workflow, []).append(replaced)
            kept[variant] = copy.deepcopy(entry)
    return merged


def groups(results: dict[str, Any]) -> list[tuple[str, str, dict[str, dict[str, Any]]]]:
    """Every (workflow, run) with its variants, workflows in file order, runs by start time.

    Args:
        results: A results file's data (merged or not).
    """
    first = str(results.get("started") or "")
    found: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    order = list(results.get("workflows") or {})
    for workflow, entries in (results.get("superseded") or {}).items():
        if workflow not in order:
            order.append(workflow)
        for entry in entries:
            found.setdefault((workflow, run_of(entry, first)), {})[entry["variant"]] = entry
    for workflow, variants in (results.get("workflows") or {}).items():
        for variant, entry in variants.items():
            found.setdefault((workflow, run_of(entry, first)), {})[variant] = entry
    keys = sorted(found, key=lambda key: (order.index(key[0]), key[1]))
    return [(workflow, run, found[(workflow, run)]) for workflow, run in keys]


def warm_step(entry: dict[str, Any] | None) -> float | None:
    """The entry's median warm seconds per step, or None where none was measured."""
    step = ((entry or {}).get("summary") or {}).get("warm_step_s") or {}
    value = step.get("median")
    return float(value) if value else None


def short_error(error: Any) -> Any:
    """ComfyUI's ``execution_error`` message without its inputs and outputs.

    The message carries the failed node's ``current_inputs`` (whole tensors printed: a
    Wan latent is tens of kilobytes of zeros) and ``current_outputs``; what a reader
    needs is the node, the exception and the traceback's end.
    """
    if not isinstance(error, dict):
        return error
    kept = {k: error[k] for k in ("node_id", "node_type", "exception_type") if k in error}
    kept["exception_message"] = str(error.get("exception_message", ""))[:2000]
    traceback = error.get("traceback") or []
    kept["traceback"] = [str(line)[:400] for line in traceback[-8:]]
    return kept
