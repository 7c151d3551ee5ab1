"""`comfy-install rollback`: parse, call the command, render."""

from __future__ import annotations

from installer.cli.common import (
    DEFAULT_DIR,
    DirArg,
    JsonOpt,
    VerboseOpt,
    guarded,
    make_logger,
    print_json,
)


def rollback(
    install_dir: DirArg = DEFAULT_DIR,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Make the previous generation of DIR current again (seconds, no network)."""
    log = make_logger(verbose)
    command = ["rollback", str(install_dir)]

    def body() -> None:
        from installer.commands.rollback import rollback as run_rollback

        result = run_rollback(install_dir.expanduser().absolute(), log)
        if as_json:
            print_json(command, result.as_data())
        else:
            generation = result.current
            log.info(
                f"generation {generation.id} is current again (was {result.previous}): ComfyUI "
                f"{(generation.comfyui_commit or '')[:12]}, torch {generation.torch}"
            )
        for name, lines in result.nodes_without_requirements.items():
            # Said in text and JSON alike: the folders are the user's and stay.
            log.warn(
                f"custom node {name} stays in DIR/ComfyUI/custom_nodes, but generation "
                f"{result.current.id}'s venv lacks its requirements ({', '.join(lines)}): "
                f"`comfy-install nodes remove {install_dir} {name}`, then `nodes add` it again"
            )

    guarded(command, as_json, log, verbose, body)
    log.close()
