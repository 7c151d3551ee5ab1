"""Compare each pin with what its source offers: newer releases, age, what a bump touches.

Pure: it takes the pins ([`pin_specs`][installer.pins.specs.pin_specs]), the sources'
answers (index releases, git refs, or the error that stopped them) and the time of the
check, and returns one [`Finding`][installer.pins.compare.Finding] per pin. Pre-releases,
dev releases and yanked releases never count as newer.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

from installer.core.config import Dependencies
from installer.core.releases import GitRefs, IndexProject, Release
from installer.pins.specs import PinSpec

Status = Literal["current", "newer", "unknown", "error"]
Answer = IndexProject | GitRefs | str
"""What a source said: its releases or refs, or the error that stopped it (a message)."""

SHOWN = 8
"""How many newer releases a finding lists (newest first); the count says the rest."""


@dataclass(frozen=True)
class Finding:
    """One pin against its source."""

    name: str
    where: str
    source: str
    pinned: str
    status: Status
    current: str | None = None
    """The release the pin resolves to today (the newest one inside a range)."""
    newest: str | None = None
    newer: tuple[str, ...] = ()
    newer_count: int = 0
    pinned_uploaded: str | None = None
    newest_uploaded: str | None = None
    pinned_age_days: int | None = None
    behind_days: int | None = None
    """Days between the upload of the pinned release and of the newest."""
    touches: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The finding as JSON-ready data."""
        data = asdict(self)
        data["newer"] = list(self.newer)
        data["touches"] = list(self.touches)
        data["notes"] = list(self.notes)
        return data


def source_key(pin: PinSpec) -> str:
    """The key of a pin's source in the answers (`index:NAME` or `git:URL`).

    Args:
        pin: The pin.
    """
    return f"{pin.kind}:{pin.source}"


def _stable(releases: tuple[Release, ...]) -> list[tuple[Version, Release]]:
    out = []
    for release in releases:
        try:
            version = Version(release.version)
        except InvalidVersion:
            continue
        if not (version.is_prerelease or version.is_devrelease or release.yanked):
            out.append((version, release))
    return sorted(out, key=lambda pair: pair[0])


def _day(when: datetime | None) -> str | None:
    return when.date().isoformat() if when else None


def _days(later: datetime | None, earlier: datetime | None) -> int | None:
    return (later - earlier).days if later and earlier else None


def index_finding(pin: PinSpec, project: IndexProject, now: datetime) -> Finding:
    """Compare an index pin with the project's releases.

    Args:
        pin: The pin (its specifier).
        project: The releases the index lists.
        now: When the check runs (for the pin's age).
    """
    base = Finding(pin.name, pin.where, project.url, pin.spec or "(none)", "unknown")
    stable = _stable(project.releases)
    if not stable:
        return _replace(base, notes=("the index lists no release of it",))
    newest = stable[-1][1]
    spec = pin.specifier
    if spec is None:
        return _replace(
            base,
            newest=newest.version,
            newest_uploaded=_day(newest.uploaded),
            notes=("no release is pinned for the pinned torch",),
        )
    inside = [pair for pair in stable if spec.contains(pair[0], prereleases=True)]
    if not inside:
        return _replace(
            base,
            status="error",
            newest=newest.version,
            newest_uploaded=_day(newest.uploaded),
            error=f"no release on the index matches {pin.spec}",
        )
    current_version, current = inside[-1]
    newer = [release.version for version, release in reversed(stable) if version > current_version]
    return _replace(
        base,
        status="newer" if newer else "current",
        current=current.version,
        newest=newest.version,
        newer=tuple(newer[:SHOWN]),
        newer_count=len(newer),
        pinned_uploaded=_day(current.uploaded),
        newest_uploaded=_day(newest.uploaded),
        pinned_age_days=_days(now, current.uploaded),
        behind_days=_days(newest.uploaded, current.uploaded) if newer else 0,
    )


_RELEASE_TAG = re.compile(r"^v?[0-9]+(\.[0-9]+)*$")


def git_finding(pin: PinSpec, refs: GitRefs) -> Finding:
    """Compare a git pin with the remote's release tags (or its HEAD).

    Args:
        pin: The pin: a tag and commit (`git_ref` tag) or a commit followed on HEAD.
        refs: What `git ls-remote` listed.
    """
    shown = f"{pin.spec} ({pin.commit[:12]})" if pin.commit and pin.git_ref == "tag" else pin.spec
    base = Finding(pin.name, pin.where, refs.url, shown or "(none)", "unknown")
    if pin.git_ref == "head":
        if refs.head is None:
            return _replace(base, notes=("the remote has no HEAD",))
        if refs.head == pin.commit:
            return _replace(base, status="current", current=pin.commit, newest=refs.head)
        return _replace(
            base,
            status="newer",
            current=pin.commit,
            newest=refs.head,
            newer=(f"HEAD {refs.head[:12]}",),
            newer_count=1,
            notes=("git ls-remote gives no dates: the commit's age is not known",),
        )
    releases = sorted(
        (Version(tag), tag) for tag in refs.tags if _RELEASE_TAG.match(tag) and _parses(tag)
    )
    notes = ["git ls-remote gives no dates: the tags' ages are not known"]
    pinned_commit = refs.tags.get(pin.spec or "")
    if pin.spec and pinned_commit is None:
        notes.append(f"the remote has no tag {pin.spec}")
    elif pinned_commit and pin.commit and pinned_commit != pin.commit:
        notes.append(f"tag {pin.spec} points at {pinned_commit[:12]}, not at the pinned commit")
    if not releases or not pin.spec or not _parses(pin.spec):
        return _replace(base, notes=tuple(notes))
    pinned_version = Version(pin.spec)
    newer = [tag for version, tag in reversed(releases) if version > pinned_version]
    newest_tag = releases[-1][1]
    return _replace(
        base,
        status="newer" if newer else "current",
        current=pin.spec,
        newest=f"{newest_tag} ({refs.tags[newest_tag][:12]})",
        newer=tuple(newer[:SHOWN]),
        newer_count=len(newer),
        notes=tuple(notes),
    )


def _parses(tag: str) -> bool:
    try:
        Version(tag)
    except InvalidVersion:
        return False
    return True


def _replace(finding: Finding, **changes: Any) -> Finding:
    from dataclasses import replace

    return replace(finding, **changes)


def findings(
    deps: Dependencies, pins: list[PinSpec], answers: Mapping[str, Answer], now: datetime
) -> list[Finding]:
    """Compare every pin with its source's answer, then add what a bump would touch.

    Args:
        deps: The configuration (for the constraints a bump touches).
        pins: The pins, from [`pin_specs`][installer.pins.specs.pin_specs].
        answers: Each source's answer by [`source_key`][installer.pins.compare.source_key].
        now: When the check runs.
    """
    out: list[Finding] = []
    for pin in pins:
        answer = answers.get(source_key(pin), "not asked")
        if isinstance(answer, str):
            out.append(
                Finding(
                    pin.name, pin.where, pin.source, pin.spec or "(none)", "error", error=answer
                )
            )
        elif isinstance(answer, IndexProject):
            out.append(index_finding(pin, answer, now))
        else:
            out.append(git_finding(pin, answer))
    by_name = {f.name: f for f in out}
    return [_replace(f, touches=tuple(touched(deps, f, by_name))) for f in out]


def _minor(version: str | None) -> Version | None:
    if version is None:
        return None
    try:
        parsed = Version(version)
    except InvalidVersion:
        return None
    return Version(f"{parsed.major}.{parsed.minor}")


def touched(deps: Dependencies, finding: Finding, by_name: Mapping[str, Finding]) -> list[str]:
    """Say which pins and files a bump of ``finding`` to its newest release would touch.

    Args:
        deps: The configuration.
        finding: A pin with newer releases (nothing is said for the others).
        by_name: Every finding by name (the torch trio is judged together).
    """
    if finding.status != "newer":
        return []
    locks = "locks/*.txt (refresh with `comfy-install lock`)"
    name = finding.name
    if name == "ComfyUI":
        return [
            f"comfyui.ref and comfyui.commit (newest: {finding.newest})",
            "extra_requirements (check what the new ComfyUI imports without declaring)",
            locks,
        ]
    if name == "torch":
        return [*_torch_bump(deps, finding, by_name), locks]
    if name in ("torchvision", "torchaudio"):
        return [
            f"torch.packages ({name} moves with torch: the trio must import together)",
            locks,
        ]
    for package in deps.optimizations.packages:
        names = (
            {package.pypi_package}
            if isinstance(package.pypi_package, str)
            else set(package.pypi_package.values())
        )
        if name in names:
            torch = deps.torch.torch_version
            items = [
                f"optimizations.packages[{package.name}].torch_constraints (the entry for torch "
                f"{torch.major}.{torch.minor}: a newer {name} may need a newer torch)"
            ]
            if package.pypi_build is not None:
                items.append(
                    f"optimizations.packages[{package.name}].pypi_build (the new build's CUDA "
                    "version and kernels)"
                )
            return [*items, locks]
    if finding.where == "pip_packages.sageattention_fallback":
        return ["pip_packages.sageattention_fallback.spec", locks]
    return [f"{finding.where} (the commit)"]


def _torch_bump(deps: Dependencies, torch: Finding, by_name: Mapping[str, Finding]) -> list[str]:
    newest = Version(str(torch.newest))
    minor = _minor(torch.newest)
    items = ["torch.packages (torchvision and torchaudio move with torch)"]
    audio = by_name.get("torchaudio")
    audio_minor = _minor(audio.newest) if audio else None
    if audio is not None and audio_minor is not None and minor is not None and audio_minor < minor:
        items.append(
            f"torchaudio: its newest release ({audio.newest}) is behind torch {torch.newest} and "
            "declares no torch pin; beside a newer torch its import may fail"
        )
    for package in deps.optimizations.packages:
        covered = any(
            SpecifierSet(entry.torch).contains(newest, prereleases=True)
            for entry in package.torch_constraints
        )
        if not covered:
            items.append(
                f"optimizations.packages[{package.name}].torch_constraints (no entry for torch "
                f"{minor})"
            )
    for wheel in deps.pip_packages.sageattention_wheels:
        if SpecifierSet(wheel.torch).contains(newest, prereleases=True):
            items.append(
                f"SageAttention wheel {wheel.name} (torch {wheel.torch} includes {newest}: "
                "check that the wheel really loads with it)"
            )
        else:
            items.append(f"SageAttention wheel {wheel.name} (built for torch {wheel.torch})")
    items.append(
        "torch.variants (the CUDA builds and compute capabilities of the new release) and "
        "default_index_builds"
    )
    return items
