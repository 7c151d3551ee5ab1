"""What `state.json` holds: the step records and the install's state, as pydantic models.

Reading and writing the file (atomically, under the install lock) is the edges
layer's job ([`installer.edges.state`][installer.edges.state]); the models and the
fingerprint of a step's inputs are plain data that the planner compares.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

STATE_SCHEMA_VERSION = 1


StepStatus = Literal["running", "done", "failed", "interrupted", "skipped"]


def now_iso() -> str:
    """Return the current UTC time as an ISO-8601 string (milliseconds)."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def fingerprint(inputs: Any) -> str:
    """Return a short stable hash of JSON-serialisable step inputs.

    Args:
        inputs: The step's inputs; keys are sorted, and values JSON cannot hold are hashed as their
            `str()`.

    Returns:
        The first 16 hex digits of their sha256.
    """
    text = json.dumps(inputs, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class StepRecord(BaseModel):
    """What is known about one step of an install."""

    model_config = ConfigDict(extra="ignore")

    status: StepStatus
    fingerprint: str = ""
    inputs: dict[str, Any] = Field(default_factory=dict)
    outputs: dict[str, Any] = Field(default_factory=dict)
    started_at: str | None = None
    finished_at: str | None = None
    seconds: float | None = None
    seq: int = 0
    """The state's sequence number when the step's outputs last changed."""
    ran_seq: int = 0
    """The state's sequence number when the step last finished, changed outputs or not."""
    message: str = ""
    last_done_outputs: dict[str, Any] | None = None
    """The outputs of the last time the step finished, kept while it is redone."""

    @property
    def current_as_of(self) -> int:
        """The sequence number up to which the step has seen its dependencies' outputs.

        A dependency whose `seq` is higher changed after this step last ran.
        """
        return max(self.seq, self.ran_seq)

    @property
    def known_outputs(self) -> dict[str, Any] | None:
        """The outputs of the last finished run of the step (None if it never finished)."""
        return self.outputs if self.status == "done" else self.last_done_outputs


class RecordedInputs(BaseModel):
    """The inputs an install was made with: the options its user gave, kept for re-runs.

    A field is None when the user did not give that option (the configuration's default,
    or detection, decides then). A re-run without the option uses the recorded value, so
    `comfy-install install DIR` continues or repairs the install it was, not another one;
    [`installer.plan.inputs`][installer.plan.inputs] reads and applies these.
    """

    model_config = ConfigDict(extra="ignore")

    config_path: str | None = None
    tools_manifest_path: str | None = None
    comfyui_url: str | None = None
    comfyui_ref: str | None = None
    torch_index: str | None = None
    python: str | None = None
    gpu: str | None = None
    cuda_driver: str | None = None
    index_url: str | None = None
    extra_index_urls: list[str] | None = None
    find_links: list[str] | None = None
    lock_dir: str | None = None
    no_lock: bool | None = None


class InstallState(BaseModel):
    """The whole `state.json`."""

    model_config = ConfigDict(extra="ignore")

    schema_version: int = Field(default=STATE_SCHEMA_VERSION, ge=1)
    tool_version: str = ""
    created_at: str = Field(default_factory=now_iso)
    updated_at: str = Field(default_factory=now_iso)
    seq: int = 0
    steps: dict[str, StepRecord] = Field(default_factory=dict)
    inputs: RecordedInputs | None = None
    """The options the install was made with (None: a state written before they were kept)."""

    def done(self, step_id: str) -> StepRecord | None:
        """Return the record of ``step_id`` if that step finished, else None.

        Args:
            step_id: A step id, e.g. `python`.
        """
        record = self.steps.get(step_id)
        return record if record is not None and record.status == "done" else None

    def next_seq(self) -> int:
        """Advance and return the sequence counter (orders step completions)."""
        self.seq += 1
        return self.seq
