"""What `comfy-install benchmark` was asked to do: options, their checks, the module's config."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from installer.attention.measure.attention_backends import BACKENDS
from installer.attention.measure.attention_module import CPU_SHAPES, DTYPES, GPU_SHAPES
from installer.benchmark.compare import REGRESSION_THRESHOLD
from installer.core.errors import UsageError

DEFAULT_WARMUP = 5
DEFAULT_ITERATIONS = 20
DEFAULT_BUDGET_S = 2.0


@dataclass(frozen=True)
class BenchmarkOptions:
    """What `comfy-install benchmark` was asked to do."""

    install_dir: Path
    warmup: int = DEFAULT_WARMUP
    iterations: int = DEFAULT_ITERATIONS
    budget_s: float = DEFAULT_BUDGET_S
    shapes: tuple[str, ...] = ()
    backends: tuple[str, ...] = ()
    dtypes: tuple[str, ...] = ()
    comfyui: bool = False
    workflow: Path | None = None
    compare: bool = False
    baseline: Path | None = None
    save: bool = True
    allow_cpu: bool = False
    threshold: float = REGRESSION_THRESHOLD


def _split(values: Sequence[str]) -> tuple[str, ...]:
    return tuple(part.strip() for value in values for part in value.split(",") if part.strip())


def validate_options(options: BenchmarkOptions) -> BenchmarkOptions:
    """Check the options, split comma lists; return them normalised.

    Args:
        options: The options as given on the command line.

    Raises:
        UsageError: A count is out of range or a name is unknown.
    """
    hint = "See `comfy-install benchmark --help`."
    if options.iterations < 1 or options.warmup < 0 or options.budget_s <= 0:
        raise UsageError("--iterations must be ≥ 1, --warmup ≥ 0 and --budget > 0.", hint)
    if not 0 < options.threshold < 10:
        raise UsageError("--threshold must be a fraction such as 0.10 (10%).", hint)
    shapes, backends, dtypes = (
        _split(options.shapes),
        _split(options.backends),
        _split(options.dtypes),
    )
    known_shapes = [shape.id for shape in (*GPU_SHAPES, *CPU_SHAPES)]
    for names, known, what in (
        (shapes, known_shapes, "shape"),
        (backends, list(BACKENDS), "backend"),
        (dtypes, list(DTYPES), "dtype"),
    ):
        unknown = [name for name in names if name not in known]
        if unknown:
            raise UsageError(
                f"Unknown {what} {', '.join(unknown)}.", f"Choose from: {', '.join(known)}."
            )
    return dataclasses.replace(
        options,
        shapes=shapes,
        backends=backends,
        dtypes=dtypes,
        comfyui=options.comfyui or options.workflow is not None,
        compare=options.compare or options.baseline is not None,
    )


def module_config(options: BenchmarkOptions) -> dict[str, Any]:
    """Return the settings the venv module runs with.

    Args:
        options: Validated options (shape names already checked).
    """
    by_id = {shape.id: shape for shape in (*GPU_SHAPES, *CPU_SHAPES)}
    return {
        "shapes": [dataclasses.asdict(by_id[name]) for name in options.shapes],
        "backends": list(options.backends),
        "dtypes": list(options.dtypes),
        "warmup": options.warmup,
        "iterations": options.iterations,
        "budget_s": options.budget_s,
        "seed": 0,
        "allow_cpu": options.allow_cpu,
    }


def module_timeout(options: BenchmarkOptions) -> float:
    """Seconds the venv module may run: start-up plus a generous allowance per cell.

    Args:
        options: Validated options: the shapes, dtypes and backends (all when empty) and budget.
    """
    shapes = len(options.shapes) or len(GPU_SHAPES)
    cells = shapes * (len(options.dtypes) or len(DTYPES)) * (len(options.backends) or len(BACKENDS))
    return 300.0 + cells * (2 * options.budget_s + 30.0)
