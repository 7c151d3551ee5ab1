"""The output check: each variant's images against stock's at the same seeds, in DIR's venv.

The distance is `bench/gpu/outputs.py`'s: the mean absolute pixel difference (RGB, 0-255)
between a variant's image and stock's at the same seed, *relative* to what a new seed
changes (the same difference between stock's images of consecutive seeds). A variant
within ``THRESHOLD_RELATIVE`` (a tenth of a new seed's change) computes the same image.
Where a new seed changes nothing (a workflow whose output ignores its seed), the images
must be identical. The images are decoded by Pillow and numpy in DIR's venv (ComfyUI
needs both), so the installer itself needs neither: one small script, one process per
workflow, its answer JSON on stdout.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

THRESHOLD_RELATIVE = 0.10
"""The largest distance from stock (a fraction of a new seed's change) that still passes."""
TIMEOUT_S = 600.0

SCRIPT = r"""
import json, sys
config = json.load(open(sys.argv[1], encoding="utf-8"))
try:
    import numpy as np
    from PIL import Image
except ImportError as exc:
    print(json.dumps({name: {"reason": f"numpy or Pillow missing in the venv ({exc})"}
                      for name in config["variants"]}))
    sys.exit(0)

def load(path):
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.float64)

stock = {int(k): load(v) for k, v in config["stock"].items()}
seeds = sorted(stock)
changes = [float(np.abs(stock[a] - stock[b]).mean()) for a, b in zip(seeds, seeds[1:])
           if stock[a].shape == stock[b].shape]
change = sum(changes) / len(changes) if changes else None
threshold = config["threshold"]
found = {}
for name, images in config["variants"].items():
    diffs = []
    for seed, path in images.items():
        other = stock.get(int(seed))
        if other is None:
            continue
        mine = load(path)
        if mine.shape == other.shape:
            diffs.append(float(np.abs(mine - other).mean()))
    if not diffs:
        found[name] = {"reason": "no image of stock's shape at a seed stock also ran"}
        continue
    mean = sum(diffs) / len(diffs)
    if change:
        relative = mean / change
        ok = relative <= threshold
    else:
        relative, ok = None, mean == 0.0
    found[name] = {"mean_abs": round(mean / 255.0, 6),
                   "relative": None if relative is None else round(relative, 4),
                   "seed_change": None if change is None else round(change / 255.0, 6),
                   "seeds": len(diffs), "threshold_relative": threshold, "ok": ok}
print(json.dumps(found))
"""


def distances(
    python: Path,
    stock: Mapping[int, Path],
    variants: Mapping[str, Mapping[int, Path]],
    scratch: Path,
) -> dict[str, dict[str, Any]]:
    """Compare each variant's images with stock's at the same seeds (in DIR's venv).

    Args:
        python: The venv's interpreter (with ComfyUI's Pillow and numpy).
        stock: Stock's image per seed.
        variants: Every other variant's image per seed.
        scratch: A folder for the script's settings.

    Returns:
        ``{variant: {"mean_abs", "relative", "seed_change", "seeds",
        "threshold_relative", "ok"}}``, or ``{"reason"}`` where nothing could be compared.
    """
    if not stock:
        return {name: {"reason": "stock produced no image"} for name in variants}
    config = scratch / "distance.json"
    config.write_text(
        json.dumps(
            {
                "stock": {str(seed): str(path) for seed, path in stock.items()},
                "variants": {
                    name: {str(seed): str(path) for seed, path in images.items()}
                    for name, images in variants.items()
                },
                "threshold": THRESHOLD_RELATIVE,
            }
        ),
        encoding="utf-8",
    )
    try:
        done = subprocess.run(
            [str(python), "-c", SCRIPT, str(config)],
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            check=False,
        )
        found = json.loads(done.stdout) if done.returncode == 0 else None
        why = f"the comparison failed in the venv: {done.stderr.strip()[-300:]}"
    except (OSError, subprocess.TimeoutExpired, ValueError) as exc:
        found, why = None, f"the comparison could not run ({exc})"
    if not isinstance(found, dict):
        return {name: {"reason": why} for name in variants}
    return {name: dict(found.get(name) or {"reason": "not compared"}) for name in variants}
