"""`comfy-install tune`: measure attention on this GPU, check the tuning on your workflows.

The command parses options, calls [`installer.commands.tune`][installer.commands.tune]
and renders the progress, the calibration and the workflow check
([`installer.cli.tune_render`][installer.cli.tune_render]);
like the rest of the CLI it holds no logic, imports the heavy modules only when
it runs, and reports failures with one message, one hint and the exit code of
the CLI contract (or the JSON envelope with `--json`). No GPU: exit code 3 and
nothing written (`--workflow-only` checks workflows on the CPU too).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from installer.cli.options import (
    DEFAULT_DIR,
    DirArg,
    DryRunOpt,
    JsonOpt,
    QuietOpt,
    VerboseOpt,
    build_request,
)

TUNE_CONTEXT_SETTINGS: dict[str, Any] = {
    "allow_extra_args": True,
    "ignore_unknown_options": True,
}
"""`context_settings` for registering `tune`: arguments after `--` go to every ComfyUI."""


def tune(
    ctx: typer.Context,
    install_dir: DirArg = DEFAULT_DIR,
    budget: Annotated[
        float,
        typer.Option(
            "--budget", help="Seconds of attention measuring, at most (the dearest shapes go)."
        ),
    ] = 60.0,
    workflow: Annotated[
        list[Path] | None,
        typer.Option(
            "--workflow",
            metavar="<file>",
            help="An API-format workflow (ComfyUI's Export (API)) to "
            "check the tuning on, end to end: stock, tuned, tuned with the router off, "
            "tuned+each lever. "
            "Repeatable.",
        ),
    ] = None,
    workflow_only: Annotated[
        bool,
        typer.Option(
            "--workflow-only",
            help="Only the workflow check: keep the calibration as it is (no GPU needed).",
        ),
    ] = False,
    levers: Annotated[
        str | None,
        typer.Option(
            "--levers",
            help="Levers to measure, comma separated (fp16acc, autotune, "
            "fp8mm, cublas, nodyn, highvram); default: every one that applies here.",
        ),
    ] = None,
    runs: Annotated[
        int, typer.Option("--runs", min=1, help="Warm runs per variant, after one cold run.")
    ] = 3,
    workflow_budget: Annotated[
        float,
        typer.Option(
            "--workflow-budget",
            help="Seconds for the whole workflow check; variants that do not fit are skipped.",
        ),
    ] = 600.0,
    dry_run: DryRunOpt = False,
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

    With --workflow FILE it then runs each workflow in a fresh ComfyUI as stock
    (plain main.py), tuned (what launch starts), tuned with the attention router off
    (when it routes) and tuned plus each lever, one cold
    and --runs warm runs each; then the launch as decided from those figures (the
    levers that went on, together), with and without the router, where it is not
    the tuned one. It compares the outputs with stock's at the same seed and writes
    DIR/.comfy-install/levers.json: launch adds a lever only where it measured
    faster, and the levers together only where that launch was not slower than
    stock; it keeps ComfyUI's own attention where the tuned launch measured slower
    than stock, and stops routing the bands a workflow was slower through than
    with the router off. Arguments after `--` go to every ComfyUI.
    """
    values = dict(locals())
    from installer.cli.common import guarded, make_logger, print_json
    from installer.commands.tune import TuneRequest

    extra = list(ctx.args)
    if str(install_dir).startswith("-"):
        extra.insert(0, str(install_dir))
        install_dir = DEFAULT_DIR
    log = make_logger(verbose, quiet)
    command = ["tune", str(install_dir), *extra]
    request = build_request(
        TuneRequest,
        values,
        install_dir=install_dir,
        comfy_args=tuple(extra),
        workflow=tuple(workflow or ()),
    )

    def body() -> None:
        import contextlib

        from installer.cli.tune_render import (
            TuneProgress,
            render_calibration,
            render_check,
            render_check_plan,
        )
        from installer.commands.tune import tune as run_tune

        measuring = not (request.workflow_only or request.dry_run)
        bar = (
            TuneProgress(log.console, budget)
            if measuring and log.interactive and not verbose
            else None
        )
        with bar if bar is not None else contextlib.nullcontext():
            result = run_tune(request, log, on_progress=bar)
        if as_json:
            print_json(command, result.as_data())
            return
        if result.attention is not None:
            render_calibration(result.attention.calibration, log.console)
            log.info(
                f"calibration written to {result.attention.path} in {result.attention.took_s:.0f} s"
            )
        if request.dry_run and not request.workflow_only:
            log.console.print(
                f"would measure attention on this GPU (budget {budget:g} s) into "
                f"{request.install_dir}/.comfy-install/calibration.json"
            )
        if result.plan is not None and result.check is None:
            render_check_plan(result.plan, result.commands, log.console)
        if result.check is not None:
            render_check(result.check, result.decisions, log.console)

    guarded(command, as_json, log, verbose, body)
    log.close()
