"""The records of step 10's plan: one entry per package, wheel, source build and fallback.

[`PlannedOptimization`][installer.plan.optimization_records.PlannedOptimization] is what
[`plan_optimizations`][installer.plan.optimizations.plan_optimizations] returns, what
`install --dry-run --json` shows under `optimizations` and what step 10 installs. Both
records are re-exported by [`installer.plan.optimizations`][installer.plan.optimizations],
where callers import them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from installer.core.config import RetryOptions
from installer.plan.sage_sources import PlannedSource


class PlannedWheel(BaseModel):
    """A wheel file to download, verify and install."""

    filename: str
    url: str
    sha256: str | None = Field(description="From tools_manifest.json; None only if unverified.")
    size: int | None = None


class PlannedOptimization(BaseModel):
    """One package of step 10 as the plan decided it."""

    name: str
    kind: Literal["package", "wheel", "source", "fallback"]
    action: Literal["install", "skip"]
    reason: str
    distribution: str | None = None
    requirement: str | None = Field(default=None, description="What uv is asked to install.")
    import_name: str | None = None
    install_options: list[str] = Field(default_factory=list)
    extra_index_urls: list[str] = Field(default_factory=list)
    retry: RetryOptions = Field(default_factory=RetryOptions)
    required: bool = False
    wheel: PlannedWheel | None = None
    builds_from_source: bool = False
    source: PlannedSource | None = Field(
        default=None, description="The pinned source build (kind 'source')."
    )
    fallback_for: str | None = Field(
        default=None,
        description="The source build this entry replaces if that build fails (it stands by).",
    )
