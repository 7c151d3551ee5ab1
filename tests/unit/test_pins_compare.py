"""The pure parts of `pins check`: index pages to releases, pins against releases and tags,
what a bump touches; and comfy-kitchen's report (what the venv's Python said, as text)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest

from installer.core.config import Dependencies
from installer.core.facts import KitchenBackend, KitchenReport
from installer.core.releases import GitRefs, IndexProject, Release
from installer.edges.kitchen import kitchen_report
from installer.edges.pin_sources import parse_project
from installer.pins.compare import findings, git_finding, index_finding, source_key
from installer.pins.specs import PinSpec, _source_pins, pin_specs

NOW = datetime(2026, 11, 30, tzinfo=timezone.utc)


def when(day: str) -> datetime:
    return datetime.fromisoformat(f"{day}T00:00:00+00:00")


def test_the_shipped_pins(deps: Dependencies) -> None:
    specs = {p.name: p for p in pin_specs(deps)}
    assert list(specs) == [
        "ComfyUI", "torch", "torchvision", "torchaudio", "xformers", "triton", "triton-windows",
        "sageattention", "sageattention2", "sageattention3",
    ]  # fmt: skip
    source = specs["sageattention2"]
    assert (source.kind, source.git_ref, source.commit) == (
        "git",
        "head",
        "d1a57a546c3d395b1ffcbeecc66d81db76f3b4b5",
    )
    assert source.source == "https://github.com/thu-ml/SageAttention.git"
    assert (specs["ComfyUI"].spec, specs["ComfyUI"].commit) == (
        "v0.33.0",
        "2f35f4a08176d993cded35dac3332be4f7287f41",
    )
    assert specs["torch"].spec == "==2.11.0"
    assert specs["xformers"].spec == "==0.0.35"
    assert specs["triton"].spec == specs["triton-windows"].spec == ">=3.6,<3.7"
    assert specs["sageattention"].where == "pip_packages.sageattention_fallback"


def test_an_index_page_becomes_releases() -> None:
    data: dict[str, Any] = {
        "versions": ["1.0", "1.1", "2.0"],
        "files": [
            {"filename": "p-1.0-py3-none-any.whl", "upload-time": "2026-01-02T10:00:00Z"},
            {"filename": "p-1.0.tar.gz", "upload-time": "2026-01-01T09:00:00.5Z"},
            {"filename": "p-1.1-py3-none-any.whl", "upload-time": "2026-02-01T00:00:00Z",
             "yanked": "broken"},
            {"filename": "p-1.1.tar.gz", "yanked": False},
            {"filename": "p-2.0-py3-none-any.whl", "yanked": True},
            {"filename": "not-a-distribution.txt"},
        ],
    }  # fmt: skip
    project = parse_project("p", "https://x/simple/p/", data)
    by_version = {r.version: r for r in project.releases}
    assert list(by_version) == ["1.0", "1.1", "2.0"]
    assert by_version["1.0"].uploaded == datetime(2026, 1, 1, 9, 0, 0, 500000, timezone.utc)
    assert by_version["1.1"].yanked is False  # one of its files is not yanked
    assert by_version["2.0"].yanked is True
    assert by_version["2.0"].uploaded is None


def index_pin(spec: str | None) -> PinSpec:
    return PinSpec("p", "index", "p", spec, "somewhere")


PROJECT = IndexProject(
    "p",
    "https://x/simple/p/",
    (
        Release("3.5.1", when("2025-11-12")),
        Release("3.6.0", when("2026-01-20")),
        Release("3.6.1", when("2026-02-20")),
        Release("3.7.0", when("2026-05-07")),
        Release("3.8.0rc1", when("2026-06-01")),
        Release("3.8.0", when("2026-08-01"), yanked=True),
    ),
)


def test_an_exact_pin_against_newer_releases() -> None:
    finding = index_finding(index_pin("==3.6.0"), PROJECT, NOW)
    assert finding.status == "newer"
    assert (finding.current, finding.newest) == ("3.6.0", "3.7.0")
    assert finding.newer == ("3.7.0", "3.6.1")
    assert finding.pinned_uploaded == "2026-01-20"
    assert finding.behind_days == 107
    assert finding.pinned_age_days == 314


def test_a_range_pin_resolves_to_its_newest_release() -> None:
    finding = index_finding(index_pin(">=3.6,<3.7"), PROJECT, NOW)
    assert (finding.current, finding.newer) == ("3.6.1", ("3.7.0",))


def test_a_pin_that_is_the_newest_is_current() -> None:
    finding = index_finding(index_pin(">=3.7"), PROJECT, NOW)
    assert (finding.status, finding.newer, finding.behind_days) == ("current", (), 0)


def test_a_pin_no_release_matches_is_an_error() -> None:
    finding = index_finding(index_pin("==9.9"), PROJECT, NOW)
    assert finding.status == "error"
    assert finding.error == "no release on the index matches ==9.9"


def test_no_pin_for_the_torch_is_said() -> None:
    finding = index_finding(index_pin(None), PROJECT, NOW)
    assert finding.status == "unknown"
    assert finding.notes == ("no release is pinned for the pinned torch",)


def tag_pin() -> PinSpec:
    return PinSpec("ComfyUI", "git", "u", "v0.33.0", "comfyui", commit="a" * 40, git_ref="tag")


def test_release_tags_only_and_a_moved_tag_is_noted() -> None:
    refs = GitRefs(
        "u",
        {"v0.33.0": "b" * 40, "v0.34.0": "c" * 40, "v0.9": "d" * 40, "latest": "e" * 40,
         "v0.35.0-rc1": "f" * 40},
    )  # fmt: skip
    finding = git_finding(tag_pin(), refs)
    assert finding.status == "newer"
    assert finding.newer == ("v0.34.0",)
    assert finding.newest == "v0.34.0 (cccccccccccc)"
    assert "tag v0.33.0 points at bbbbbbbbbbbb, not at the pinned commit" in finding.notes


def test_a_missing_tag_is_noted() -> None:
    finding = git_finding(tag_pin(), GitRefs("u", {"v0.32.0": "b" * 40}))
    assert "the remote has no tag v0.33.0" in finding.notes
    assert finding.status == "current"


def test_source_pins_read_either_shape() -> None:
    class Entry:
        name = "sageattention2"
        git = "https://example.invalid/SageAttention.git"
        commit = "d1a57a546c3d395b1ffcbeecc66d81db76f3b4b5"

    [one] = _source_pins(Entry())
    [two] = _source_pins([{"url": Entry.git, "commit": Entry.commit}])
    assert (one.name, one.git_ref, one.commit) == ("sageattention2", "head", Entry.commit)
    assert (two.source, two.where) == (Entry.git, "pip_packages.sageattention_sources")
    assert _source_pins(None) == []
    assert _source_pins([{"git": Entry.git}]) == []


def test_a_failed_source_and_what_a_bump_touches(deps: Dependencies) -> None:
    pins = pin_specs(deps)
    answers: dict[str, Any] = {source_key(p): "unreachable" for p in pins}
    answers["index:torch"] = IndexProject(
        "torch", "t", (Release("2.11.0", when("2026-03-23")), Release("2.12.0", when("2026-05-13")))
    )
    answers["index:torchaudio"] = IndexProject("torchaudio", "a", (Release("2.11.0"),))
    found = {f.name: f for f in findings(deps, pins, answers, NOW)}
    assert found["ComfyUI"].status == "error"
    assert found["ComfyUI"].error == "unreachable"
    torch = found["torch"].touches
    assert torch[0] == "torch.packages (torchvision and torchaudio move with torch)"
    assert any(t.startswith("torchaudio: its newest release (2.11.0) is behind") for t in torch)
    assert any("[xformers].torch_constraints (no entry for torch 2.12)" in t for t in torch)
    assert found["torchaudio"].touches == ()


@pytest.mark.parametrize(
    ("backends", "torch_cuda", "summary", "in_comfyui"),
    [
        (
            {"cuda": {"available": False, "reason": "CUDA not available on this system"},
             "eager": {"available": True}},
            None,
            "comfy-kitchen 0.2.31: cuda unavailable (CUDA not available on this system), "
            "eager available",
            False,
        ),
        (
            {"cuda": {"available": True}, "triton": {"available": True},
             "eager": {"available": True}},
            "13.0",
            "comfy-kitchen 0.2.31: cuda available, triton available, eager available; ComfyUI "
            "uses the triton back end only with --enable-triton-backend",
            True,
        ),
        (
            {"cuda": {"available": True}, "eager": {"available": True}},
            "12.8",
            "comfy-kitchen 0.2.31: cuda available, eager available; ComfyUI turns the cuda back "
            "end off with a torch below CUDA 13 (it asks for a cu130 torch)",
            False,
        ),
    ],
)  # fmt: skip
def test_the_kitchen_report(
    backends: dict[str, Any], torch_cuda: str | None, summary: str, in_comfyui: bool
) -> None:
    data = {"installed": True, "version": "0.2.31", "torch_cuda": torch_cuda, "backends": backends}
    report = kitchen_report(data)
    assert report is not None
    assert report.summary() == summary
    assert report.cuda_in_comfyui is in_comfyui
    assert report.as_dict()["summary"] == summary


def test_a_kitchen_that_is_absent_or_broken() -> None:
    assert kitchen_report(None) is None
    absent = kitchen_report({"installed": False})
    assert absent is not None
    assert absent.summary() == "comfy-kitchen is not installed (this ComfyUI does not require it)"
    broken = KitchenReport(True, "0.2.31", error="ImportError: libcudart.so.13")
    assert broken.summary() == "comfy-kitchen 0.2.31 does not import: ImportError: libcudart.so.13"
    assert KitchenBackend("cuda", True, disabled=True).describe() == "cuda available but disabled"
