#!/usr/bin/env python3
"""Add a device call's results to the committed ones and regenerate what is made from them.

A device call brings back its machine's ``results-gpu.json`` (every run made on that
machine while it stayed warm, `run_workflows.py --merge`). This adds its runs to
``bench/results-gpu.json`` with `result_runs.merge` (a variant measured again moves the
older entry to ``superseded``; an entry of a run already merged is replaced in place, so
merging the same file twice changes nothing), then writes, from the merged file:

- the table between the markers in ``bench/RESULTS.md`` and ``docs/gpu-benchmark.md``;
- ``bench/gpu-levers.json`` (each lever against ``tuned`` of its own run);
- the chart ``docs/assets/gpu-benchmark.svg``.

Output distances are kept as the device computed them (the arrays they come from stay on
the device). Results from another GPU than the committed file's are refused: give them
their own ``--into`` file. Standard library only::

    python3 bench/gpu/merge_results.py /path/to/device/results-gpu.json
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))
import chart  # noqa: E402 - bench/gpu/chart.py, beside this script
import result_runs  # noqa: E402 - bench/gpu/result_runs.py
import run_workflows  # noqa: E402 - bench/gpu/run_workflows.py


def combine(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """Return the committed results with a device file's runs added.

    Args:
        old: The committed results (None: there are none yet, ``new`` is the start).
        new: A device call's results file.

    Raises:
        SystemExit: ``new`` was measured on another GPU than ``old``.
    """
    if old is None:
        return copy.deepcopy(new)
    theirs, ours = result_runs.gpu_of(new), result_runs.gpu_of(old)
    if theirs != ours:
        raise SystemExit(
            f"these results are from {theirs}, the file's from {ours}: "
            "ratios compare only within one machine; give them their own --into file"
        )
    first = str(new.get("started") or "")
    for variants in new["workflows"].values():  # older device files: entries without a run
        for entry in variants.values():
            entry.setdefault("run", first)
    merged = result_runs.merge(old, new)
    # The device's own superseded entries (a variant measured again on that warm machine).
    for workflow, entries in (new.get("superseded") or {}).items():
        kept = merged.setdefault("superseded", {}).setdefault(workflow, [])
        seen = {(e.get("variant"), result_runs.run_of(e, first)) for e in kept}
        kept += [
            copy.deepcopy(e)
            for e in entries
            if (e.get("variant"), result_runs.run_of(e, first)) not in seen
        ]
    known = {run.get("started") for run in merged.get("runs") or []}
    for _, run, variants in result_runs.groups(new):
        if run not in known:
            known.add(run)
            merged.setdefault("runs", []).append({"started": run, "variants": ",".join(variants)})
    # A warm machine's file holds its earlier calls' runs too: its elapsed time replaces the
    # figure merged from it before (one per machine, by the machine's first run).
    machines = merged.setdefault("elapsed_by_machine", {})
    if not machines:
        machines[str(old.get("started") or "")] = old.get("elapsed_s") or 0
    machines[first] = new.get("elapsed_s") or 0
    merged["elapsed_s"] = round(sum(float(value) for value in machines.values()), 1)
    merged["compile_payoff"] = run_workflows.compile_payoff(merged)
    return merged


def main(argv: list[str] | None = None) -> int:
    """Merge a device results file and regenerate the table, the levers and the chart."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("device_results", type=Path, help="the results-gpu.json a call brought")
    parser.add_argument("--into", type=Path, default=REPO / "bench" / "results-gpu.json")
    parser.add_argument("--levers", type=Path, default=REPO / "bench" / "gpu-levers.json")
    chart_file = REPO / "docs" / "assets" / "gpu-benchmark.svg"
    parser.add_argument("--chart", type=Path, default=chart_file)
    parser.add_argument("--results-md", type=Path, default=REPO / "bench" / "RESULTS.md")
    parser.add_argument("--docs-md", type=Path, default=REPO / "docs" / "gpu-benchmark.md")
    parser.add_argument("--no-markdown", action="store_true", help="leave the Markdown files")
    args = parser.parse_args(argv)
    new = json.loads(args.device_results.read_text())
    old = json.loads(args.into.read_text()) if args.into.is_file() else None
    merged = combine(old, new)
    args.into.parent.mkdir(parents=True, exist_ok=True)
    args.into.write_text(json.dumps(merged, indent=2) + "\n")
    run_workflows.write_levers(args.levers, merged)
    args.chart.parent.mkdir(parents=True, exist_ok=True)
    args.chart.write_text(chart.svg(merged))
    if not args.no_markdown:
        section = run_workflows.markdown(merged)
        run_workflows.write_section(args.results_md, section)
        run_workflows.write_section(args.docs_md, section)
    runs = sorted({run for _, run, _ in result_runs.groups(merged)})
    print(f"{args.into}: {len(runs)} runs ({', '.join(map(result_runs.run_label, runs))})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
