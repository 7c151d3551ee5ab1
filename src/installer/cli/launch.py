"""The `comfy-install launch` and `comfy-install stop` commands (typer).

`launch` starts ComfyUI from an install directory, tuned for the GPU (see
[`installer.launch`][installer.launch] and
[`installer.plan.launch`][installer.plan.launch]), waits until it answers and streams
its output; `--background` returns once it is ready and `stop` ends it;
`--print-env` shows what would run without starting anything. Arguments after
`--` (or any option `launch` does not know, as the generated launcher scripts
pass them) go to ComfyUI.

The commands are registered on the main app by [`installer.cli.app`][installer.cli.app];
the shared helpers come from [`installer.cli.common`][installer.cli.common], and the
heavy modules are imported inside the commands, so `comfy-install --help` stays fast.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from installer.cli.options import DEFAULT_DIR, DirArg, JsonOpt, PortOpt, VerboseOpt

if TYPE_CHECKING:
    from installer.core.log import InstallerLogger
    from installer.plan.launch import LaunchFacts, LaunchRequest


LAUNCH_CONTEXT_SETTINGS: dict[str, Any] = {
    "allow_extra_args": True,
    "ignore_unknown_options": True,
}
"""`context_settings` for registering `launch`: unknown options pass through to ComfyUI."""

ListenOpt = Annotated[
    str | None,
    typer.Option(
        "--listen",
        help="Address(es) ComfyUI listens on, comma separated (ComfyUI's default: 127.0.0.1).",
    ),
]
TuneOpt = Annotated[
    bool,
    typer.Option(
        "--tune/--no-tune",
        help="Runtime tuning for the GPU (allocator, TF32, cuDNN, attention measured by "
        "`comfy-install tune`).",
    ),
]
TimeoutOpt = Annotated[
    float,
    typer.Option("--timeout", min=1, help="Seconds to wait for ComfyUI to answer."),
]
BackgroundOpt = Annotated[
    bool,
    typer.Option(
        "--background",
        help="Return once ComfyUI is ready; stop it with `comfy-install stop DIR`.",
    ),
]
GpusOpt = Annotated[
    str | None,
    typer.Option(
        "--gpus",
        help="One ComfyUI per GPU: all, or GPU numbers like 0,2 (ports from --port up).",
    ),
]
PrintEnvOpt = Annotated[
    bool,
    typer.Option(
        "--print-env", help="Show the environment and command that would run; start nothing."
    ),
]


def launch(
    ctx: typer.Context,
    install_dir: DirArg = DEFAULT_DIR,
    listen: ListenOpt = None,
    port: PortOpt = 8188,
    tune: TuneOpt = True,
    timeout: TimeoutOpt = 600.0,
    background: BackgroundOpt = False,
    print_env: PrintEnvOpt = False,
    gpus: GpusOpt = None,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Start ComfyUI from DIR tuned for this GPU, wait until it answers, show its output.

    Arguments after `--` go to ComfyUI, after those in COMFY_EXTRA_ARGS.
    Tuning variables you set yourself (ENABLE_TF32, MATMUL_PRECISION,
    PYTORCH_ALLOC_CONF, ENABLE_TORCH_COMPILE, ...) are kept; ENABLE_STARTUP_WARMUP=0
    skips the wait. Ctrl-C stops ComfyUI. With --gpus, one ComfyUI per GPU,
    each on its own port (--port, then +1...) with --cuda-device N; `stop DIR`
    stops them all and `status DIR` lists them.
    """
    from installer.cli.common import guarded, make_logger
    from installer.plan.launch import LaunchRequest

    extra = list(ctx.args)
    if str(install_dir).startswith("-"):
        # `launch -- --cpu` (no DIR): the first ComfyUI argument landed in DIR.
        extra.insert(0, str(install_dir))
        install_dir = DEFAULT_DIR
    log = make_logger(verbose)
    command = ["launch", str(install_dir), *extra]
    request = LaunchRequest(
        install_dir=install_dir.expanduser().absolute(),
        listen=listen,
        port=port,
        tune=tune,
        timeout=timeout,
        background=background,
        extra_args=tuple(extra),
    )
    code = guarded(
        command,
        as_json,
        log,
        verbose,
        lambda: _launch(request, log, command, as_json=as_json, print_env=print_env, gpus=gpus),
    )
    log.close()
    if code:
        raise typer.Exit(code)


def _launch(
    request: LaunchRequest,
    log: InstallerLogger,
    command: list[str],
    *,
    as_json: bool,
    print_env: bool,
    gpus: str | None,
) -> int:
    """Launch as asked; return the exit code (130: a foreground ComfyUI stopped with Ctrl-C)."""
    from installer.cli.common import print_json
    from installer.core.errors import UsageError
    from installer.launch.facts import gather_facts
    from installer.launch.run import run_comfyui
    from installer.plan.launch import plan_launch, render_print_env

    if as_json and not (print_env or request.background):
        raise UsageError(
            "--json needs --print-env or --background: in the foreground the output is ComfyUI's.",
            "Add --background (JSON once ready) or --print-env (JSON of what would run).",
        )
    if gpus is not None:
        if print_env:
            raise UsageError(
                "--print-env shows one ComfyUI; it does not take --gpus.",
                "Leave out --gpus to see what one ComfyUI would run.",
            )
        from installer.commands.launch_fleet import launch_gpus

        data = launch_gpus(request, gpus, log)
        if request.background:
            log.info(f"stop them with: comfy-install stop {request.install_dir}")
            if as_json:
                print_json(command, data)
        return 0
    facts = gather_facts(request)
    plan = plan_launch(request, facts, dict(os.environ))
    if print_env:
        if as_json:
            print_json(command, {**plan.as_data(), "machine": _machine_data(facts)})
        else:
            sys.stdout.write(render_print_env(plan, facts))
        return 0
    outcome = run_comfyui(plan, facts, request, log)
    if request.background:
        log.info(f"stop it with: comfy-install stop {request.install_dir}")
        if as_json:
            print_json(command, outcome.as_data())
    return outcome.exit_code or 0


def _machine_data(facts: LaunchFacts) -> dict[str, Any]:
    torch = facts.torch
    return {
        "platform": facts.platform,
        "gpu": {
            "source": facts.gpu.source,
            "reason": facts.gpu.reason,
            "gpus": [
                {
                    "index": g.index,
                    "name": g.name,
                    "cc": g.cc,
                    "vram_total_bytes": g.vram_total_bytes,
                }
                for g in facts.gpu.gpus
            ],
        },
        "torch": None if torch is None else {"version": torch.version, "cuda": torch.cuda},
        "attention_packages": None if facts.attention is None else dict(facts.attention.versions),
        "calibration": None
        if facts.calibration is None
        else {
            "path": str(facts.calibration.path),
            "present": facts.calibration.calibration is not None,
            "problem": facts.calibration.problem,
        },
        "shim": {"status": facts.shim, "site_packages": str(facts.site_packages or "")},
        "venv_python": str(facts.venv_python),
    }


def stop(
    install_dir: DirArg = DEFAULT_DIR,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Stop the ComfyUI(s) `comfy-install launch` started from DIR (SIGINT, then terminate)."""
    from installer.cli.common import guarded, make_logger, print_json
    from installer.commands.launch_fleet import stop_install

    log = make_logger(verbose)
    command = ["stop", str(install_dir)]

    def body() -> None:
        data = stop_install(install_dir.expanduser().absolute(), log)
        if as_json:
            print_json(command, data)

    guarded(command, as_json, log, verbose, body)
    log.close()
