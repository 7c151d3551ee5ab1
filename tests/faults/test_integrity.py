"""Integrity faults: wrong checksums, truncated files, missing checksums, a tampered manifest.

A file is only ever under its final name when its sha256 (and size) match;
a mismatch deletes the partial file and ends with exit code 4; a file with no
checksum is refused unless `--allow-unverified`; a tampered
`tools_manifest.json` stops the run (exit 2) before anything is written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from faults.faultkit import (
    Case,
    Snapshot,
    assert_clean_after_rerun,
    assert_nothing_lost,
    assert_state_valid,
    error_and_hint,
    manifest_file,
    partial_files,
    sa_wheel_entry,
)
from support.cli import venv_dists
from support.http_server import Corrupt, Drop, GeneratedBody, IgnoreRange
from support.wheels import sha256_of

MODEL_PATH = "/m/model.safetensors"
WRONG = "0" * 64


def wheel_path(case: Case) -> str:
    return f"/releases/{case.sa_wheel.name}"


def setup_wheel(case: Case, sha256: str | None = None) -> tuple[Path, str]:
    """Configure step 10 with the SA wheel; return (its final cache path, the right sha256)."""
    url = case.serve_sa_wheel()
    right = sha256_of(case.sa_wheel)
    manifest = manifest_file(
        case.tmp / "tools_manifest.json", {case.sa_wheel.name: sha256 or right}
    )
    case.extra = ["--tools-manifest", str(manifest)]
    case.config(
        pip_packages={"sageattention_wheels": [sa_wheel_entry(url)], "sageattention_fallback": None}
    )
    return case.cache / case.sa_wheel.name, right


def setup_model(case: Case, sha256: str | None = None, size: int = 1_000_000) -> tuple[Path, Any]:
    """Configure step 12 with one model; return (its final path, the served resource)."""
    resource = case.server.add(MODEL_PATH, GeneratedBody(size, seed=9))
    case.config(
        models=[
            {
                "url": case.server.url(MODEL_PATH),
                "kind": "checkpoints",
                "sha256": sha256 or resource.sha256,
                "size": resource.size,
            }
        ]
    )
    return case.models / "checkpoints" / "model.safetensors", resource


# --------------------------------------------------------------------------- wrong sha256


@pytest.mark.parametrize("artifact", ["wheel", "model"])
def test_bytes_tampered_on_the_wire_exit_4_and_nothing_kept(case: Case, artifact: str) -> None:
    if artifact == "wheel":
        final, right = setup_wheel(case)
        path, step, roots = wheel_path(case), "Step 10 (optimizations)", [case.cache]
    else:
        final, resource = setup_model(case)
        right, path, step, roots = resource.sha256, MODEL_PATH, "Step 12 (models)", []
    before = Snapshot.take(case.dir)
    case.server.inject(path, Corrupt(), times=1)
    failed = case.run()
    assert failed.code == 4, failed.stderr
    error, hint = error_and_hint(failed.stderr)
    assert error.startswith(f"{step} failed: ") and "sha256 mismatch: expected" in error
    assert right in error
    assert "Run again to download it afresh" in hint
    assert not final.exists()
    assert partial_files(case.dir, *roots) == [], "the bad bytes were kept"
    assert_nothing_lost(before, verified={final: right}, download_roots=roots)
    if artifact == "wheel":
        assert "sageattention" not in venv_dists(case.dir)
    again = case.run()
    assert again.code == 0, again.stderr
    assert sha256_of(final) == right
    assert_clean_after_rerun(before, *roots)


@pytest.mark.parametrize("artifact", ["wheel", "model"])
def test_wrong_sha256_in_the_manifest_exit_4_then_corrected(case: Case, artifact: str) -> None:
    if artifact == "wheel":
        final, right = setup_wheel(case, sha256=WRONG)
        roots = [case.cache]
    else:
        final, resource = setup_model(case, sha256=WRONG)
        right, roots = resource.sha256, []
    before = Snapshot.take(case.dir)
    failed = case.run()
    assert failed.code == 4, failed.stderr
    error, _ = error_and_hint(failed.stderr)
    assert f"sha256 mismatch: expected {WRONG}, got {right}" in error
    assert not final.exists()
    assert_nothing_lost(before, verified={final: right}, download_roots=roots)
    if artifact == "wheel":
        setup_wheel(case)
    else:
        setup_model(case)
    again = case.run()
    assert again.code == 0, again.stderr
    assert_clean_after_rerun(before, *roots)


# --------------------------------------------------------------------------- truncated


@pytest.mark.usefixtures("fast_clock")
def test_truncated_on_every_request_never_becomes_a_final_file(case: Case) -> None:
    final, resource = setup_model(case)
    before = Snapshot.take(case.dir)
    case.server.inject(MODEL_PATH, Drop(after_bytes=resource.size // 2), IgnoreRange(), times=None)
    failed = case.run()
    assert failed.code == 1, failed.stderr
    error, hint = error_and_hint(failed.stderr)
    assert "could not download model.safetensors" in error and "after 5 attempts" in error
    assert "peer closed connection without sending complete message body" in error
    assert "resumes" in hint
    assert not final.exists()
    assert_nothing_lost(before, verified={final: resource.sha256})
    case.server.clear_faults()
    again = case.run()
    assert again.code == 0, again.stderr
    assert sha256_of(final) == resource.sha256
    assert_clean_after_rerun(before)


# --------------------------------------------------------------------------- no checksum


def test_model_without_sha256_is_refused_before_any_download(case: Case) -> None:
    resource = case.server.add(MODEL_PATH, GeneratedBody(100_000, seed=1))
    entry = {"url": case.server.url(MODEL_PATH), "kind": "checkpoints"}
    case.config(models=[entry])
    before = Snapshot.take(case.dir)
    failed = case.run()
    assert failed.code == 4, failed.stderr
    error, hint = error_and_hint(failed.stderr)
    assert "no sha256 is recorded" in error and "models[0]" in error
    assert "--allow-unverified" in hint
    assert case.server.requests_for(MODEL_PATH) == []
    assert_nothing_lost(before)
    case.config(models=[{**entry, "sha256": resource.sha256}])
    again = case.run()
    assert again.code == 0, again.stderr
    assert_clean_after_rerun(before)


def test_dry_run_says_an_unverified_model_will_be_refused(case: Case) -> None:
    case.config(models=[{"url": case.server.url(MODEL_PATH), "kind": "checkpoints"}])
    planned = case.run("--dry-run")
    assert planned.code == 4 or "--allow-unverified" in planned.text, planned.text


def test_wheel_without_manifest_entry_is_refused_by_the_plan(case: Case) -> None:
    url = case.serve_sa_wheel()
    empty = manifest_file(case.tmp / "tools_manifest.json", {})
    case.extra = ["--tools-manifest", str(empty)]
    case.config(
        pip_packages={"sageattention_wheels": [sa_wheel_entry(url)], "sageattention_fallback": None}
    )
    planned = case.run("--dry-run", "--json")
    assert planned.code == 0, planned.stderr
    (entry,) = json.loads(planned.stdout)["data"]["optimizations"]
    assert entry["action"] == "skip"
    assert "has no sha256 in tools_manifest.json (pass --allow-unverified" in entry["reason"]
    done = case.run()
    assert done.code == 0, done.stderr
    assert case.server.requests_for(wheel_path(case)) == []
    assert "sageattention" not in venv_dists(case.dir)
    outcome = assert_state_valid(case.dir)["steps"]["optimizations"]["outputs"]["packages"][0]
    assert outcome["status"] == "skipped" and "no sha256" in outcome["reason"]


# --------------------------------------------------------------------------- tampered manifest

TAMPERED: dict[str, tuple[str, str]] = {
    "invalid JSON": ('{"schema_version": 1, "files": {', "is not valid JSON"),
    "files is a list": ('{"schema_version": 1, "files": []}', "files: "),
    "sha256 is a number": (
        json.dumps({"schema_version": 1, "files": {"a.whl": {"sha256": 123}}}),
        "files.a.whl.sha256",
    ),
    "sha256 is not hex": (
        json.dumps({"schema_version": 1, "files": {"a.whl": {"sha256": "xyz"}}}),
        "files.a.whl.sha256",
    ),
    "size is a string": (
        json.dumps({"schema_version": 1, "files": {"a.whl": {"sha256": WRONG, "size": "big"}}}),
        "files.a.whl.size",
    ),
    "schema_version is 2": ('{"schema_version": 2, "files": {}}', "schema_version"),
    "unknown key": ('{"schema_version": 1, "files": {}, "extra": 1}', "extra: unknown key"),
}


def test_tampered_tools_manifest_stops_before_anything_is_written(
    case: Case, subtests: pytest.Subtests
) -> None:
    state = case.dir / ".comfy-install" / "state.json"
    logs = case.dir / ".comfy-install" / "logs"
    before_state, before_logs = state.read_bytes(), sorted(logs.iterdir())
    before = Snapshot.take(case.dir)
    manifest = case.tmp / "tools_manifest.json"
    case.config()
    for name, (text, where) in TAMPERED.items():
        with subtests.test(tampering=name):
            manifest.write_text(text)
            failed = case.run("--tools-manifest", str(manifest))
            assert failed.code == 2, failed.stderr
            error, hint = error_and_hint(failed.stderr)
            assert str(manifest) in error
            assert where in failed.stderr
            assert hint
            assert state.read_bytes() == before_state
            assert sorted(logs.iterdir()) == before_logs
            assert_nothing_lost(before)
    manifest_file(manifest, {})
    again = case.run("--tools-manifest", str(manifest))
    assert again.code == 0, again.stderr
