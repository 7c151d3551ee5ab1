"""The options every uv call takes: the package indexes, offline, and the network retries.

They live apart from the configuration models of [`installer.core.config`][installer.core.config]
(which re-exports them) so a command that only runs uv (`nodes add`) does not build the
whole `dependencies.json` schema at start-up. May import: pydantic only.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field


class RetryOptions(BaseModel):
    """How often to retry an install that failed on the network."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    attempts: Annotated[int, Field(ge=1, le=20)] = 3
    backoff_seconds: Annotated[float, Field(ge=0, le=600)] = 2.0


class IndexOptions(BaseModel):
    """Mirror and offline options passed to every uv call (from the command line)."""

    index_url: str | None = None
    extra_index_urls: list[str] = Field(default_factory=list)
    find_links: list[str] = Field(default_factory=list)
    offline: bool = False
