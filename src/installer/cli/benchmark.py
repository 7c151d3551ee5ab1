"""`comfy-install benchmark`: time attention (and ComfyUI) on this GPU, in DIR's venv.

The command parses options and calls [`installer.benchmark.run`][installer.benchmark.run];
like the rest of the CLI it holds no logic, imports the heavy modules only
when it runs, and reports failures with one message, one hint and the exit
code of the CLI contract (or the JSON envelope with `--json`). A regression
found with `--fail-on-regression` ends with exit code 5.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from installer.cli.options import DEFAULT_DIR, DirArg, JsonOpt, QuietOpt, VerboseOpt

ListOpt = list[str] | None


def benchmark(
    install_dir: DirArg = DEFAULT_DIR,
    as_json: JsonOpt = False,
    iterations: Annotated[
        int, typer.Option("--iterations", "-n", help="Timed calls per measurement (at most).")
    ] = 20,
    warmup: Annotated[
        int, typer.Option("--warmup", help="Untimed calls before timing each measurement.")
    ] = 5,
    budget: Annotated[
        float,
        typer.Option(
            "--budget", help="Seconds of timed calls per measurement, at most (caps --iterations)."
        ),
    ] = 2.0,
    shapes: Annotated[
        ListOpt,
        typer.Option(
            "--shapes",
            help="Only these shapes (comma separated): sd15-512, sdxl-1024, sdxl-1024-low, "
            "flux-1024, video-long.",
        ),
    ] = None,
    backends: Annotated[
        ListOpt,
        typer.Option(
            "--backends",
            help="Only these backends (comma separated): sdpa, xformers, sageattention, "
            "sageattn3, comfy_kitchen_int8. SDPA always runs: it is the baseline.",
        ),
    ] = None,
    dtypes: Annotated[
        ListOpt, typer.Option("--dtypes", help="Only these dtypes: fp16, bf16.")
    ] = None,
    comfyui: Annotated[
        bool,
        typer.Option(
            "--comfyui",
            help="Also time a real ComfyUI start-up (with and without --use-sage-attention).",
        ),
    ] = False,
    workflow: Annotated[
        Path | None,
        typer.Option(
            "--workflow",
            help="Also run this API-format workflow through ComfyUI (implies --comfyui).",
        ),
    ] = None,
    compare: Annotated[
        bool,
        typer.Option("--compare", help="Compare with the previous saved run; show what changed."),
    ] = False,
    baseline: Annotated[
        Path | None,
        typer.Option("--baseline", help="Compare with this saved run file (implies --compare)."),
    ] = None,
    fail_on_regression: Annotated[
        bool,
        typer.Option(
            "--fail-on-regression",
            help="Exit with code 5 when a measurement got more than 10% slower or broke "
            "(implies --compare).",
        ),
    ] = False,
    threshold: Annotated[
        float,
        typer.Option("--threshold", help="Slowdown that counts as a regression (0.10 = 10%)."),
    ] = 0.10,
    save: Annotated[
        bool,
        typer.Option("--save/--no-save", help="Save the run under DIR/.comfy-install/benchmarks/."),
    ] = True,
    allow_cpu: Annotated[
        bool,
        typer.Option(
            "--allow-cpu",
            hidden=True,
            help="For tests: measure on the CPU with tiny shapes when no GPU is usable.",
        ),
    ] = False,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Time attention on this GPU in DIR's venv: SDPA, xformers, SageAttention; catch regressions.

    Runs torch SDPA and every installed optimized backend on the attention
    shapes of SD1.5, SDXL, Flux and a video model, in fp16 and bf16, and
    shows time per call, speedup over SDPA, extra memory and the error
    against SDPA (a fast but wrong kernel is flagged WRONG). With no usable
    GPU it says so and measures nothing.
    """
    from installer.cli.common import fail, guarded, make_logger, print_json

    log = make_logger(verbose, quiet)
    command = ["benchmark", str(install_dir)]

    def body() -> None:
        import datetime as dt

        from installer.benchmark.options import BenchmarkOptions
        from installer.benchmark.render import render_report
        from installer.benchmark.run import regression_error, run_benchmark
        from installer.edges.state import state_dir

        target = install_dir.expanduser().absolute()
        options = BenchmarkOptions(
            install_dir=target,
            warmup=warmup,
            iterations=iterations,
            budget_s=budget,
            shapes=tuple(shapes or ()),
            backends=tuple(backends or ()),
            dtypes=tuple(dtypes or ()),
            comfyui=comfyui,
            workflow=workflow.expanduser().absolute() if workflow else None,
            compare=compare or fail_on_regression,
            baseline=baseline,
            save=save,
            allow_cpu=allow_cpu,
            threshold=threshold,
        )
        if (target / "venv").exists():
            stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
            log.attach_file(state_dir(target) / "logs" / f"benchmark-{stamp}.log")
        outcome = run_benchmark(options, log)
        if outcome.run is None:
            log.warn(
                f"No GPU to benchmark: {outcome.reason}. Nothing was measured "
                "(attention timed on a CPU would mislead)."
            )
        elif not as_json:
            render_report(outcome, log.console)
        if fail_on_regression and outcome.regressions:
            fail(regression_error(outcome), log, command, as_json, verbose, data=outcome.as_data())
        if as_json:
            print_json(command, outcome.as_data())

    guarded(command, as_json, log, verbose, body)
    log.close()
