"""The outputs of the benchmark's workflows: fetched, kept, and compared across variants.

Every run's decoded images (ComfyUI's ``PreviewImage`` outputs: one image for
SDXL, every frame for Wan) are fetched through ComfyUI's own HTTP API
(``/history/ID``, then ``/view``) and kept as one ``uint8`` array per run
(``.npy``, frames stacked). Variants run the same seeds (42 cold, 43, 44, ... warm),
so each variant's image at a seed can be compared with stock's at the same seed.

The distance: the mean absolute difference of the pixels (0-255 scale, reported
as a fraction of 255) and the PSNR, and, to judge it, the distance *relative*
to what a new seed changes: the same mean difference between stock's images of
two consecutive seeds. A variant whose output moves by less than
``THRESHOLD_RELATIVE`` (a tenth) of a new seed's change computes the same image;
one that moves by more is "faster but wrong" and never counts as a win.

Needs numpy and Pillow (the GPU machine's python3 has both); without them no
distance is computed and each entry says why. Standard library otherwise.
"""

from __future__ import annotations

import io
import itertools
import json
import math
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

THRESHOLD_RELATIVE = 0.10
"""The largest distance from stock (as a fraction of a new seed's change) that still passes."""


def fetch_images(port: int, prompt_id: str, timeout: float = 60) -> list[bytes]:
    """Return the PNG bytes of every image a finished prompt produced, in node order."""
    base = f"http://127.0.0.1:{port}"
    with urllib.request.urlopen(f"{base}/history/{prompt_id}", timeout=timeout) as answer:
        history = json.loads(answer.read())
    outputs = (history.get(prompt_id) or {}).get("outputs") or {}
    found: list[bytes] = []
    for node in sorted(outputs, key=lambda key: (len(key), key)):
        for image in outputs[node].get("images") or []:
            query = urllib.parse.urlencode(
                {
                    "filename": image["filename"],
                    "subfolder": image.get("subfolder", ""),
                    "type": image.get("type", "output"),
                }
            )
            with urllib.request.urlopen(f"{base}/view?{query}", timeout=timeout) as answer:
                found.append(answer.read())
    return found


def keep_images(pngs: list[bytes], path: Path) -> dict[str, Any]:
    """Decode the PNGs and save them stacked as one uint8 array; say what was kept."""
    try:
        import numpy as np
        from PIL import Image
    except ImportError as exc:
        return {"kept": None, "reason": f"numpy or Pillow missing ({exc})"}
    if not pngs:
        return {"kept": None, "reason": "the prompt produced no image"}
    arrays = [np.asarray(Image.open(io.BytesIO(png)).convert("RGB")) for png in pngs]
    stacked = np.stack(arrays)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, stacked)
    return {"kept": str(path), "images": len(arrays), "shape": list(stacked.shape)}


def _load(path: str | None) -> Any:
    import numpy as np

    return None if not path or not Path(path).is_file() else np.load(path).astype(np.float64)


def _seed_paths(entry: dict[str, Any]) -> dict[int, str]:
    return {
        int(run["seed"]): run["output"]["kept"]
        for run in entry.get("runs") or []
        if run.get("status") == "ok" and (run.get("output") or {}).get("kept")
    }


def distances(variants: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Compare each variant's outputs with stock's at the same seeds.

    Args:
        variants: One workflow's entries by variant (their runs name the kept arrays).

    Returns:
        ``{variant: {"mean_abs", "psnr_db", "relative", "seed_change", "seeds",
        "threshold_relative", "ok"}}`` for every variant with a seed in common with
        stock (stock itself: its distance to a rerun is not measured), or a
        ``reason`` where nothing could be compared.
    """
    try:
        import numpy as np
    except ImportError as exc:
        return {name: {"reason": f"numpy missing ({exc})"} for name in variants if name != "stock"}
    stock = _seed_paths(variants.get("stock") or {})
    seeds = sorted(stock)
    changes = []
    for first, second in itertools.pairwise(seeds):
        a, b = _load(stock[first]), _load(stock[second])
        if a is not None and b is not None and a.shape == b.shape:
            changes.append(float(np.abs(a - b).mean()))
    seed_change = sum(changes) / len(changes) if changes else None
    found: dict[str, dict[str, Any]] = {}
    for name, entry in variants.items():
        if name == "stock":
            continue
        mine = _seed_paths(entry)
        common = sorted(set(mine) & set(stock))
        if not common:
            found[name] = {"reason": "no output at a seed stock also ran"}
            continue
        diffs, squares = [], []
        for seed in common:
            a, b = _load(mine[seed]), _load(stock[seed])
            if a is None or b is None or a.shape != b.shape:
                continue
            diffs.append(float(np.abs(a - b).mean()))
            squares.append(float(((a - b) ** 2).mean()))
        if not diffs:
            found[name] = {"reason": "outputs of other shapes than stock's"}
            continue
        mean_abs = sum(diffs) / len(diffs)
        mse = sum(squares) / len(squares)
        relative = mean_abs / seed_change if seed_change else None
        found[name] = {
            "mean_abs": round(mean_abs / 255.0, 6),
            "psnr_db": round(10 * math.log10(255.0**2 / mse), 2) if mse > 0 else None,
            "relative": None if relative is None else round(relative, 4),
            "seed_change": None if seed_change is None else round(seed_change / 255.0, 6),
            "seeds": len(diffs),
            "threshold_relative": THRESHOLD_RELATIVE,
            "ok": relative is not None and relative <= THRESHOLD_RELATIVE,
        }
    return found


def attention_calls(
    counts_file: Path, compiled: bool = False
) -> tuple[str | None, dict[str, Any] | None]:
    """Read the router's counters after a tuned run: a short label and the calls.

    ``compiled``: the variant ran ComfyUI's compile node. Inside a compiled graph the router
    picks its backend at trace time and counts nothing (its Python does not run per call),
    so no calls there is said as such, not as "no calls".

    Returns:
        ``("routed: cudnn 3120, sageattention 600", calls)``; ``(None, None)`` when
        the router wrote nothing (not attached, or not a tuned variant).
    """
    try:
        document = json.loads(counts_file.read_text())
    except (OSError, ValueError):
        return None, None
    calls = {k: int(v) for k, v in (document.get("calls") or {}).items()}
    if not document.get("attached"):
        return "not routed: " + str(document.get("message", ""))[:80], calls
    label = ", ".join(
        f"{name} {count}" for name, count in sorted(calls.items(), key=lambda x: -x[1])
    )
    found = {"calls": calls, "shapes": document.get("shapes")}
    if not label and compiled:
        return "routed at trace time (compiled: calls not counted)", found
    return f"routed: {label or 'no calls'}", found
