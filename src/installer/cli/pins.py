"""`comfy-install pins check`: a maintainer's look at how old the pins are (changes nothing).

For each pin of `dependencies.json` it asks the pin's source what it offers now (ComfyUI's
release tags with `git ls-remote`, the package index's JSON API for torch, torchvision,
torchaudio, xformers, triton, triton-windows and the SageAttention fallback, `git
ls-remote` for a SageAttention source commit) and prints what is newer, how old the
pinned release is, and which constraints and files a bump would touch
([`installer.pins`][installer.pins]).

Exit codes: `0` every source answered (newer releases are reported, not an error); `1` a
source could not be asked, or a pin matches no release on its index (each is named; the
others are still reported); `2` bad usage or configuration.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from installer.cli.options import ConfigOpt, JsonOpt, VerboseOpt

if TYPE_CHECKING:
    from installer.pins.check import PinsReport
    from installer.pins.compare import Finding

pins_app = typer.Typer(
    help="Maintainer tools for the pins of dependencies.json.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


@pins_app.command("check")
def check(
    config: ConfigOpt = None,
    index_url: Annotated[
        str | None,
        typer.Option(
            "--index-url",
            help="The package index to ask (its PEP 691 JSON API). Default: PyPI's.",
        ),
    ] = None,
    comfyui_url: Annotated[
        str | None,
        typer.Option("--comfyui-url", help="Ask this git remote for ComfyUI's release tags."),
    ] = None,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Compare each pin with what its source offers now; say what a bump would touch."""
    from installer.cli.common import fail, guarded, make_logger, print_json

    log = make_logger(verbose)
    command = ["pins", "check"]

    def body() -> PinsReport:
        from installer.core.config_files import load_dependencies
        from installer.pins.check import check_pins

        deps = load_dependencies(config)
        log.info("asking each pin's source (the package index, git ls-remote)")
        return check_pins(deps, index_url=index_url, comfyui_url=comfyui_url)

    report = guarded(command, as_json, log, verbose, body)
    failed = report.failed
    if failed:
        from installer.core.errors import NetworkError

        names = ", ".join(f"{f.name} ({f.error})" for f in failed)
        error = NetworkError(
            f"{len(failed)} pin(s) could not be checked: {names}",
            "The other pins are reported; check the network (or --index-url) and run again.",
        )
        if not as_json:
            typer.echo(render_report(report))
        fail(error, log, command, as_json, verbose, data=report.as_dict())
    if as_json:
        print_json(command, report.as_dict())
    else:
        typer.echo(render_report(report))
    log.close()


def _age(days: int | None, what: str) -> str:
    return "" if days is None else f" ({days} days {what})"


def _finding_lines(finding: Finding) -> list[str]:
    label = {"current": "up to date", "newer": "NEWER RELEASES", "unknown": "?", "error": "ERROR"}
    lines = [f"{finding.name}  {finding.pinned}  [{label[finding.status]}]  ({finding.where})"]
    rows: list[tuple[str, str]] = []
    if finding.error:
        rows.append(("error", finding.error))
    if finding.current:
        uploaded = f", uploaded {finding.pinned_uploaded}" if finding.pinned_uploaded else ""
        rows.append(
            ("pinned", f"{finding.current}{uploaded}{_age(finding.pinned_age_days, 'ago')}")
        )
    if finding.newest:
        uploaded = f", uploaded {finding.newest_uploaded}" if finding.newest_uploaded else ""
        rows.append(("newest", f"{finding.newest}{uploaded}"
                     + (_age(finding.behind_days, "after the pinned one")
                        if finding.status == "newer" else "")))  # fmt: skip
    if finding.newer:
        more = finding.newer_count - len(finding.newer)
        rows.append(
            (
                f"{finding.newer_count} newer",
                ", ".join(finding.newer) + (f" and {more} more" if more > 0 else ""),
            )
        )
    rows += [("note", note) for note in finding.notes]
    for index, item in enumerate(finding.touches):
        rows.append(("a bump touches" if index == 0 else "", item))
    rows.append(("source", finding.source))
    lines += [f"    {key:<15} {value}" for key, value in rows]
    return lines


def render_report(report: PinsReport) -> str:
    """The report as text: one block per pin.

    Args:
        report: The check's findings.
    """
    newer = sum(f.status == "newer" for f in report.findings)
    head = (
        f"Pins checked {report.checked_at.isoformat(timespec='minutes')} against "
        f"{report.index_url} and git ls-remote: {newer} of {len(report.findings)} have newer "
        "releases."
    )
    blocks = ["\n".join(_finding_lines(f)) for f in report.findings]
    return head + "\n\n" + "\n\n".join(blocks) + "\n"
