"""`comfy-install tune`: measure attention on this GPU; `launch` routes each call by the result.

The command parses options, calls [`installer.commands.tune`][installer.commands.tune]
and renders the progress and the calibration;
like the rest of the CLI it holds no logic, imports the heavy modules only when
it runs, and reports failures with one message, one hint and the exit code of
the CLI contract (or the JSON envelope with `--json`). No GPU: exit code 3 and
nothing written.
"""

from __future__ import annotations

from typing import Annotated

import typer

from installer.cli.options import DEFAULT_DIR, DirArg, JsonOpt, QuietOpt, VerboseOpt


def tune(
    install_dir: DirArg = DEFAULT_DIR,
    budget: Annotated[
        float,
        typer.Option("--budget", help="Seconds of measuring, at most (the dearest shapes go)."),
    ] = 60.0,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Measure attention on this GPU; `launch` then routes each call to the fastest backend.

    Times every installed attention backend that works (SageAttention,
    xformers, comfy-kitchen int8) against torch SDPA over sequence lengths
    from 1K to 75.6K tokens, head dims 40, 64 and 128, fp16 and bf16, within
    the budget, and writes DIR/.comfy-install/calibration.json. A backend
    that fails or is wrong is recorded as broken and never used.
    """
    from installer.cli.common import guarded, make_logger, print_json

    log = make_logger(verbose, quiet)
    command = ["tune", str(install_dir)]

    def body() -> None:
        import contextlib

        from installer.cli.tune_render import TuneProgress, render_calibration
        from installer.commands.tune import tune as run_tune

        bar = TuneProgress(log.console, budget) if log.interactive and not verbose else None
        with bar if bar is not None else contextlib.nullcontext():
            outcome = run_tune(install_dir, budget, log, on_progress=bar)
        if as_json:
            print_json(command, outcome.as_data())
        else:
            render_calibration(outcome.calibration, log.console)
        log.info(f"calibration written to {outcome.path} in {outcome.took_s:.0f} s")

    guarded(command, as_json, log, verbose, body)
    log.close()
