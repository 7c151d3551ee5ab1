"""Ask every pin's source (one thread each) and compare: the body of `pins check`."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone

from installer.core.config import Dependencies
from installer.core.errors import InstallerError
from installer.edges.pin_sources import PYPI_SIMPLE, git_refs, index_project
from installer.pins.compare import Answer, Finding, findings, source_key
from installer.pins.specs import PinSpec, pin_specs


@dataclass(frozen=True)
class PinsReport:
    """The findings of one check, and where it looked."""

    checked_at: datetime
    index_url: str
    findings: tuple[Finding, ...]

    @property
    def failed(self) -> list[Finding]:
        """The pins whose source could not be asked."""
        return [f for f in self.findings if f.status == "error" and f.current is None]

    def as_dict(self) -> dict[str, object]:
        """The report as JSON-ready data (the `data` of `pins check --json`)."""
        return {
            "checked_at": self.checked_at.isoformat(timespec="seconds"),
            "index_url": self.index_url,
            "pins": [f.as_dict() for f in self.findings],
            "newer": sum(f.status == "newer" for f in self.findings),
            "errors": len(self.failed),
        }


def _ask(pin: PinSpec, index_url: str) -> Answer:
    try:
        if pin.kind == "index":
            return index_project(pin.source, index_url)
        return git_refs(pin.source)
    except InstallerError as exc:
        return exc.message


def check_pins(
    deps: Dependencies,
    *,
    index_url: str | None = None,
    comfyui_url: str | None = None,
    now: datetime | None = None,
    jobs: int = 8,
) -> PinsReport:
    """Compare every pin of ``deps`` with what its source offers now. Changes nothing.

    Args:
        deps: The configuration.
        index_url: The simple index to ask (PEP 691 JSON; default PyPI's).
        comfyui_url: Ask this git remote for ComfyUI's tags instead of `comfyui.url`.
        now: The time of the check (default: now, UTC).
        jobs: Sources asked at the same time.

    Returns:
        One finding per pin; a source that could not be asked gives findings with `error`
        set (the others are still compared).
    """
    pins = pin_specs(deps)
    if comfyui_url is not None:
        pins = [
            PinSpec(p.name, p.kind, comfyui_url, p.spec, p.where, p.commit, p.git_ref)
            if p.where == "comfyui"
            else p
            for p in pins
        ]
    index = index_url or PYPI_SIMPLE
    unique = {source_key(pin): pin for pin in pins}
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = {key: pool.submit(_ask, pin, index) for key, pin in unique.items()}
        answers = {key: future.result() for key, future in futures.items()}
    when = now or datetime.now(timezone.utc)
    return PinsReport(when, index, tuple(findings(deps, pins, answers, when)))
