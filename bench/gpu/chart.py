#!/usr/bin/env python3
"""Draw bench/results-gpu.json as an SVG chart: speed against stock and output distance.

One panel per workflow and run (bench/gpu/result_runs.py: a merged file holds several;
ratios never cross runs): a bar per variant of that run's stock warm s/step over the
variant's (1.0 = stock; longer is faster), labelled with the s/step and, where
measured, the output distance to stock (relative to a new seed's change) with
its verdict; a variant whose output fails the distance threshold is drawn
hatched red, never as a win. Standard library only (no matplotlib needed):

    python3 bench/gpu/chart.py bench/results-gpu.json docs/gpu-benchmark.svg
"""

from __future__ import annotations

import collections
import html
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import result_runs  # bench/gpu/result_runs.py, beside this script

WIDTH = 860
ROW = 26
LEFT = 170
BAR_MAX = 430


def rows(results: dict[str, Any]) -> list[tuple[str, list[dict[str, Any]]]]:
    """Per workflow and run, the variants with their speed over that run's stock."""
    panels = []
    found = result_runs.groups(results)
    runs = collections.Counter(workflow for workflow, _, _ in found)
    for workflow, run, variants in found:
        stock = result_runs.warm_step(variants.get("stock"))
        title = f"{workflow}, run {result_runs.run_label(run)}" if runs[workflow] > 1 else workflow
        items = []
        for name, entry in variants.items():
            step = result_runs.warm_step(entry)
            distance = entry.get("distance") or {}
            items.append(
                {
                    "variant": name,
                    "step": step,
                    "speedup": stock / step if stock and step else None,
                    "relative": distance.get("relative"),
                    "ok": distance.get("ok") if name != "stock" else True,
                    "note": entry.get("skipped") or entry.get("error"),
                }
            )
        panels.append((title, items))
    return panels


def svg(results: dict[str, Any]) -> str:
    """Return the chart as SVG text."""
    panels = rows(results)
    top = 58
    height = top + sum(40 + ROW * len(items) for _, items in panels) + 30
    gpu = html.escape(str((results.get("machine") or {}).get("gpu") or "GPU"))
    scale = max([2.0] + [i["speedup"] or 0 for _, items in panels for i in items])
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'font-family="sans-serif" font-size="13">',
        '<defs><pattern id="bad" width="6" height="6" patternUnits="userSpaceOnUse" '
        'patternTransform="rotate(45)"><rect width="3" height="6" fill="#d33"/></pattern></defs>',
        f'<rect width="{WIDTH}" height="{height}" fill="white"/>',
        f'<text x="10" y="22" font-size="16" font-weight="bold">Real ComfyUI workflows: '
        f"speed over stock (warm s/step) on {gpu}</text>",
        '<text x="10" y="42" fill="#555">bar: stock s/step ÷ variant s/step (1.0 = stock); '
        "label: s/step, output distance to stock at the same seeds (÷ a new seed's change)</text>",
    ]
    y = top
    for workflow, items in panels:
        out.append(f'<text x="10" y="{y + 18}" font-weight="bold">{html.escape(workflow)}</text>')
        y += 28
        one = LEFT + BAR_MAX / scale
        out.append(
            f'<line x1="{one:.1f}" y1="{y - 4}" x2="{one:.1f}" y2="{y + ROW * len(items)}" '
            'stroke="#888" stroke-dasharray="3,3"/>'
        )
        for item in items:
            out.append(
                f'<text x="{LEFT - 8}" y="{y + 15}" text-anchor="end">'
                f"{html.escape(item['variant'])}</text>"
            )
            if item["speedup"] is None:
                note = html.escape(str(item["note"] or "not measured")[:70])
                out.append(f'<text x="{LEFT}" y="{y + 15}" fill="#999">{note}</text>')
                y += ROW
                continue
            width = BAR_MAX * item["speedup"] / scale
            good = item["ok"] is not False
            fill = ("#4a8" if item["speedup"] >= 1 else "#e96") if good else "url(#bad)"
            if item["variant"] == "stock":
                fill = "#999"
            out.append(
                f'<rect x="{LEFT}" y="{y + 3}" width="{width:.1f}" height="{ROW - 8}" '
                f'fill="{fill}"/>'
            )
            label = f"{item['speedup']:.2f}×  {item['step']:.3f} s/step"
            if item["relative"] is not None:
                label += f"  distance {item['relative']:.3f} {'ok' if good else 'FAILS'}"
            out.append(f'<text x="{LEFT + width + 6:.1f}" y="{y + 15}">{html.escape(label)}</text>')
            y += ROW
        y += 12
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> int:
    """``chart.py RESULTS.json OUT.svg``."""
    results = json.loads(Path(argv[0]).read_text())
    Path(argv[1]).write_text(svg(results))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
