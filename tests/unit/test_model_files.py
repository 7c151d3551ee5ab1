"""The rule for a file already where a model download goes: every row of its table."""

from __future__ import annotations

from pathlib import Path

import pytest

from installer.core.downloads import DownloadRequest, FoundFile
from installer.plan.model_files import ModelFilePolicy, decide_existing_model

A, B, C = "a" * 64, "b" * 64, "c" * 64
FOUND = FoundFile(Path("/m/loras/x.safetensors"), A, 100)


def request(sha256: str | None = None, size: int | None = None) -> DownloadRequest:
    url = "https://h/x.safetensors"
    return DownloadRequest(url, Path("/m/loras"), "x.safetensors", sha256, size)


@pytest.mark.parametrize(
    ("sha256", "size", "replace", "downloaded", "action"),
    [
        (A, None, False, None, "keep"),  # the right file: nothing to do
        (A, 100, True, None, "keep"),
        (A.upper(), None, False, None, "keep"),  # hex case does not matter
        (B, None, False, None, "fetch"),  # wrong file: fetch the right one first
        (B, None, False, B, "move-aside"),  # ...then move the wrong one aside
        (B, None, True, B, "move-aside"),
        (None, 200, False, None, "conflict"),  # no sha256, other size: stop before a transfer
        (None, 200, True, None, "fetch"),
        (None, 100, False, None, "fetch"),  # same size proves nothing: compare
        (None, None, False, None, "fetch"),
        (None, None, False, A, "keep"),  # the download is the same bytes
        (None, None, True, A, "keep"),
        (None, None, False, C, "conflict"),  # different bytes, no sha256: never replace
        (None, None, True, C, "move-aside"),  # ...unless --replace
    ],
)
def test_decision_table(
    sha256: str | None, size: int | None, replace: bool, downloaded: str | None, action: str
) -> None:
    decision = decide_existing_model(request(sha256, size), FOUND, downloaded, replace=replace)
    assert decision.action == action
    assert decision.reason
    if action == "conflict":
        assert "nothing was downloaded over it" in decision.reason
        assert "sha256" in decision.hint and "--replace" in decision.hint


def test_never_overwrites() -> None:
    """No combination ends in `overwrite`: a file is kept, moved aside, or the download stops."""
    for sha256 in (A, B, None):
        for size in (None, 100, 200):
            for replace in (False, True):
                for downloaded in (None, A, B, C):
                    decision = decide_existing_model(
                        request(sha256, size), FOUND, downloaded, replace=replace
                    )
                    assert decision.action != "overwrite"


def test_policy_says_how_to_replace_in_its_command() -> None:
    policy = ModelFilePolicy(replace_how="run `comfy-install models download D --replace`")
    decision = policy(request(), FOUND, C)
    assert decision.action == "conflict"
    assert "run `comfy-install models download D --replace`" in decision.hint
