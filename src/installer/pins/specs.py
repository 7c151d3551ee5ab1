"""The pins of a configuration, as data: what is pinned, where its source is."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from installer.core.config import Dependencies, OptimizationPackage

Kind = Literal["index", "git"]


@dataclass(frozen=True)
class PinSpec:
    """One pin: the name shown, where to ask, and what is pinned."""

    name: str
    kind: Kind
    source: str
    """The distribution (kind `index`) or the git URL (kind `git`)."""
    spec: str | None
    """A PEP 440 specifier (`==2.11.0`, `>=3.6,<3.7`) or, for git, the tag or commit."""
    where: str
    """Where the pin lives in the configuration, e.g. `torch.packages`."""
    commit: str | None = None
    git_ref: Literal["tag", "head"] | None = None

    @property
    def specifier(self) -> SpecifierSet | None:
        """The index pin as a specifier set (None for git pins or no pin)."""
        return SpecifierSet(self.spec) if self.kind == "index" and self.spec else None


def _constraint_for(package: OptimizationPackage, torch: Version) -> str | None:
    for entry in package.torch_constraints:
        if SpecifierSet(entry.torch).contains(torch, prereleases=True):
            spec = entry.spec
            return spec if spec[0] in "<>=!~" else str(Requirement(spec).specifier)
    return None


def pin_specs(deps: Dependencies) -> list[PinSpec]:
    """List every pin of ``deps`` that has a source to compare with.

    Args:
        deps: The configuration.

    Returns:
        ComfyUI (its release tags), the torch trio, each step-10 package per distinct
        distribution (its release for the pinned torch), the SageAttention fallback, and
        each SageAttention source commit (`pip_packages.sageattention_sources`, when the
        configuration has it).
    """
    torch = deps.torch.torch_version
    specs = [
        PinSpec(
            "ComfyUI",
            "git",
            deps.comfyui.url,
            deps.comfyui.ref,
            "comfyui",
            commit=deps.comfyui.commit,
            git_ref="tag",
        )
    ]
    for text in deps.torch.packages:
        requirement = Requirement(text)
        specs.append(
            PinSpec(
                requirement.name, "index", requirement.name, str(requirement.specifier),
                "torch.packages",
            )
        )  # fmt: skip
    seen: set[str] = set()
    for package in deps.optimizations.packages:
        names = (
            [package.pypi_package]
            if isinstance(package.pypi_package, str)
            else list(package.pypi_package.values())
        )
        for name in names:
            if name in seen:
                continue
            seen.add(name)
            specs.append(
                PinSpec(
                    name,
                    "index",
                    name,
                    _constraint_for(package, torch),
                    f"optimizations.packages[{package.name}].torch_constraints",
                )
            )
    fallback = deps.pip_packages.sageattention_fallback
    if fallback is not None:
        requirement = Requirement(fallback.spec)
        specs.append(
            PinSpec(
                requirement.name, "index", requirement.name, str(requirement.specifier),
                "pip_packages.sageattention_fallback",
            )
        )  # fmt: skip
    specs.extend(_source_pins(getattr(deps.pip_packages, "sageattention_sources", None)))
    return specs


def _source_pins(sources: Any) -> list[PinSpec]:
    """The configured SageAttention source commits: each entry's `url` (or `git`), `commit`."""
    if sources is None:
        return []
    items = sources if isinstance(sources, list | tuple) else [sources]
    pins = []
    for item in items:
        url = _field(item, "url") or _field(item, "git")
        commit = _field(item, "commit")
        name = _field(item, "name") or "SageAttention source"
        if url and commit:
            pins.append(
                PinSpec(
                    str(name),
                    "git",
                    str(url),
                    str(commit),
                    "pip_packages.sageattention_sources",
                    commit=str(commit),
                    git_ref="head",
                )
            )
    return pins


def _field(item: Any, name: str) -> Any:
    return item.get(name) if isinstance(item, dict) else getattr(item, name, None)
