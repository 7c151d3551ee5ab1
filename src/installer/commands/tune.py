"""What `comfy-install tune` does: measure attention on this GPU into DIR's calibration.

The measuring itself is [`installer.attention.measure.tune`][installer.attention.measure.tune];
this module opens the run's log file in DIR and runs it. The CLI shows the progress bar and the
calibration table.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from installer.attention.measure.tune import TuneOutcome
    from installer.core.log import InstallerLogger


def tune(
    install_dir: Path,
    budget_s: float,
    log: InstallerLogger,
    on_progress: Callable[[str], None] | None = None,
) -> TuneOutcome:
    """Measure attention on this GPU and write DIR/.comfy-install/calibration.json.

    Args:
        install_dir: DIR (made absolute here).
        budget_s: Seconds of measuring, at most (the dearest shapes go first).
        log: Progress and warnings; once DIR has a venv, also a log file in DIR.
        on_progress: Called with each progress line of the measurement (a bar).

    Returns:
        The calibration and where it was written.

    Raises:
        UsageError: DIR has no venv, or the budget is not positive.
        EnvironmentUnsupportedError: No NVIDIA GPU, or the venv's torch sees none (nothing is
            written).
    """
    import datetime as dt

    from installer.attention.measure.tune import TuneOptions, run_tune
    from installer.edges.state import state_dir

    target = install_dir.expanduser().absolute()
    if (target / "venv").exists():
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        log.attach_file(state_dir(target) / "logs" / f"tune-{stamp}.log")
    options = TuneOptions(install_dir=target, budget_s=budget_s)
    return run_tune(options, log, on_progress=on_progress)
