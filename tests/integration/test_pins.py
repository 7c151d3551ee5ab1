"""`comfy-install pins check` for real: real git against a local repository with tags,
real httpx against a local PEP 691 JSON index on 127.0.0.1, the console script.

The repository is tagged v0.32.0, v0.33.0 (the pin), v0.34.0 (annotated), v1.0.0 and a
release candidate; the index lists torch up to 2.13.0 (and a 2.14.0 pre-release and a
yanked 2.13.1), torchaudio only up to 2.11.1, xformers 0.0.35 (and dev builds), triton
3.6.0 to 3.8.0, triton-windows, sageattention. Every expected value below follows from
those listings.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from support.cli import SHIPPED_DEPS, cli_path, run
from support.comfy_repo import git
from support.http_server import LocalHTTPServer, Respond

ENV = {"NO_COLOR": "1", "PATH": __import__("os").environ["PATH"]}

RELEASES: dict[str, list[tuple[str, str, bool]]] = {
    # name: [(version, upload date, yanked)]
    "torch": [
        ("2.10.0", "2026-01-21", False),
        ("2.11.0", "2026-03-23", False),
        ("2.12.0", "2026-05-13", False),
        ("2.13.0", "2026-07-15", False),
        ("2.13.1", "2026-07-30", True),
        ("2.14.0rc1", "2026-08-20", False),
    ],
    "torchvision": [("0.26.0", "2026-03-23", False), ("0.28.0", "2026-07-15", False)],
    "torchaudio": [("2.11.0", "2026-03-23", False), ("2.11.1", "2026-10-28", False)],
    "xformers": [
        ("0.0.34", "2026-01-23", False),
        ("0.0.35", "2026-02-20", False),
        ("0.0.36.dev1147", "2026-09-01", False),
    ],
    "triton": [
        ("3.5.1", "2025-11-12", False),
        ("3.6.0", "2026-01-20", False),
        ("3.7.0", "2026-05-07", False),
        ("3.8.0", "2026-08-01", False),
    ],
    "triton-windows": [
        ("3.6.0.post26", "2026-03-10", False),
        ("3.7.0.post26", "2026-05-14", False),
    ],
    "sageattention": [("1.0.6", "2024-11-20", False)],
}


def page(name: str, releases: list[tuple[str, str, bool]]) -> bytes:
    """A PEP 691 project page: two files per release (a wheel and an sdist)."""
    files: list[dict[str, Any]] = []
    for version, day, yanked in releases:
        dist = name.replace("-", "_")
        for filename, hour in (
            (f"{dist}-{version}-cp312-cp312-manylinux_2_28_x86_64.whl", "10"),
            (f"{dist}-{version}.tar.gz", "09"),
        ):
            files.append(
                {
                    "filename": filename,
                    "url": f"/files/{filename}",
                    "hashes": {"sha256": "0" * 64},
                    "upload-time": f"{day}T{hour}:00:00.000000Z",
                    "yanked": yanked,
                }
            )
    data = {
        "meta": {"api-version": "1.1"},
        "name": name,
        "versions": [v for v, _, _ in releases],
        "files": files,
    }
    return json.dumps(data).encode()


@pytest.fixture
def index(http_server: LocalHTTPServer) -> str:
    for name, releases in RELEASES.items():
        http_server.add(
            f"/simple/{name}/",
            page(name, releases),
            headers={"Content-Type": "application/vnd.pypi.simple.v1+json"},
        )
    return http_server.url("/simple/")


@pytest.fixture
def repo(tmp_path: Path) -> dict[str, str]:
    path = tmp_path / "ComfyUI"
    path.mkdir()
    git("init", "-q", "-b", "master", cwd=path)
    commits: dict[str, str] = {"url": str(path)}
    for tag in ("v0.32.0", "v0.33.0", "v0.34.0", "v1.0.0", "v1.1.0rc1"):
        (path / "VERSION").write_text(tag)
        git("add", "-A", cwd=path)
        git("commit", "-q", "-m", tag, cwd=path)
        if tag == "v0.34.0":
            git("tag", "-a", tag, "-m", "annotated", cwd=path)
        else:
            git("tag", tag, cwd=path)
        commits[tag] = git("rev-parse", "HEAD", cwd=path)
    return commits


def config(tmp_path: Path, repo: dict[str, str]) -> Path:
    """The shipped pins, with ComfyUI and the SageAttention sources in the local repository."""
    deps = json.loads(SHIPPED_DEPS.read_text())
    deps["comfyui"] = {"url": repo["url"], "ref": "v0.33.0", "commit": repo["v0.33.0"]}
    for source in deps["pip_packages"].get("sageattention_sources", []):
        source["url"] = repo["url"]
        source["commit"] = repo["v0.34.0"]
    path = tmp_path / "deps.json"
    path.write_text(json.dumps(deps))
    return path


def check(tmp_path: Path, repo: dict[str, str], index: str, *extra: str) -> Any:
    done = run(
        [cli_path(), "pins", "check", "--config", str(config(tmp_path, repo)),
         "--index-url", index, "--json", *extra],
        ENV,
        timeout=120,
    )  # fmt: skip
    return done, json.loads(done.stdout)


def pins(envelope: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in envelope["data"]["pins"]}


def test_every_pin_against_its_source(
    tmp_path: Path, repo: dict[str, str], index: str, http_server: LocalHTTPServer
) -> None:
    done, envelope = check(tmp_path, repo, index)
    assert done.returncode == 0, done.stderr
    assert envelope["status"] == "ok"
    found = pins(envelope)

    comfy = found["ComfyUI"]
    assert comfy["status"] == "newer"
    # Release tags only (no rc), newest first; the annotated tag is peeled to its commit.
    assert comfy["newer"] == ["v1.0.0", "v0.34.0"]
    assert comfy["newest"] == f"v1.0.0 ({repo['v1.0.0'][:12]})"
    assert comfy["pinned"] == f"v0.33.0 ({repo['v0.33.0'][:12]})"
    assert "comfyui.ref and comfyui.commit (newest: v1.0.0" in comfy["touches"][0]
    assert not [n for n in comfy["notes"] if "points at" in n]

    # A source commit is followed on HEAD (v1.1.0rc1 here); git gives no dates.
    for name in ("sageattention2", "sageattention3"):
        assert found[name]["status"] == "newer"
        assert found[name]["newer"] == [f"HEAD {repo['v1.1.0rc1'][:12]}"]
        assert found[name]["touches"] == ["pip_packages.sageattention_sources (the commit)"]

    torch = found["torch"]
    assert torch["status"] == "newer"
    assert torch["current"] == "2.11.0"
    # Neither the pre-release nor the yanked 2.13.1 counts.
    assert (torch["newest"], torch["newer"]) == ("2.13.0", ["2.13.0", "2.12.0"])
    assert (torch["pinned_uploaded"], torch["newest_uploaded"]) == ("2026-03-23", "2026-07-15")
    assert torch["behind_days"] == 114
    assert torch["pinned_age_days"] > 0
    touches = " | ".join(torch["touches"])
    assert "torchaudio: its newest release (2.11.1) is behind torch 2.13.0" in touches
    assert "optimizations.packages[xformers].torch_constraints (no entry for torch 2.13)" in touches
    assert "optimizations.packages[triton].torch_constraints (no entry for torch 2.13)" in touches
    assert "SageAttention wheel sageattention2-cu130-torch2.10+ (torch >=2.10 includes" in touches
    assert "locks/*.txt" in touches

    assert found["torchaudio"]["newer"] == ["2.11.1"]
    xformers = found["xformers"]
    assert (xformers["status"], xformers["current"], xformers["newer"]) == ("current", "0.0.35", [])
    assert xformers["touches"] == []
    triton = found["triton"]
    assert (triton["pinned"], triton["current"]) == (">=3.6,<3.7", "3.6.0")
    assert triton["newer"] == ["3.8.0", "3.7.0"]
    assert found["triton-windows"]["current"] == "3.6.0.post26"
    assert found["sageattention"]["status"] == "current"

    # Each project was asked once, for JSON, and nothing else was fetched.
    paths = [r.path for r in http_server.requests]
    assert sorted(paths) == sorted(f"/simple/{name}/" for name in RELEASES)
    assert all(
        "vnd.pypi.simple.v1+json" in (r.headers.get("accept") or "") for r in http_server.requests
    )


def test_the_text_report(tmp_path: Path, repo: dict[str, str], index: str) -> None:
    done = run(
        [
            cli_path(),
            "pins",
            "check",
            "--config",
            str(config(tmp_path, repo)),
            "--index-url",
            index,
        ],
        ENV,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "8 of 10 have newer releases" in out
    assert "torch  ==2.11.0  [NEWER RELEASES]  (torch.packages)" in out
    assert "2.11.0, uploaded 2026-03-23" in out
    assert "2.13.0, uploaded 2026-07-15 (114 days after the pinned one)" in out
    assert "xformers  ==0.0.35  [up to date]" in out


def test_a_source_that_cannot_be_asked_is_named_and_the_rest_reported(
    tmp_path: Path, repo: dict[str, str], index: str, http_server: LocalHTTPServer
) -> None:
    http_server.inject("/simple/torchaudio/", Respond(503), times=None)
    http_server.add("/simple/triton/", b"<html></html>", headers={"Content-Type": "text/html"})
    repo = {**repo, "url": str(tmp_path / "no-such-repo")}
    done, envelope = check(tmp_path, repo, index)
    assert done.returncode == 1
    assert envelope["status"] == "error"
    message = envelope["errors"][0]["message"]
    # ComfyUI and both SageAttention sources live in the missing repository.
    assert message.startswith("5 pin(s) could not be checked")
    found = pins(envelope)
    assert "answered HTTP 503" in found["torchaudio"]["error"]
    assert "does not serve the JSON API (PEP 691)" in found["triton"]["error"]
    assert "git ls-remote" in found["ComfyUI"]["error"]
    assert found["torch"]["status"] == "newer"  # the others are still compared
    # torchaudio's releases are unknown: nothing is said about them.
    assert "torchaudio: its newest release" not in " ".join(found["torch"]["touches"])


def test_a_sageattention_source_commit_is_followed_on_head(
    tmp_path: Path, repo: dict[str, str]
) -> None:
    from installer.edges.pin_sources import git_refs
    from installer.pins.compare import git_finding
    from installer.pins.specs import _source_pins

    [pin] = _source_pins([{"url": repo["url"], "commit": repo["v0.34.0"]}])
    finding = git_finding(pin, git_refs(repo["url"]))
    assert finding.status == "newer"
    assert finding.newer == (f"HEAD {repo['v1.1.0rc1'][:12]}",)
    [current] = _source_pins([{"git": repo["url"], "commit": repo["v1.1.0rc1"]}])
    assert git_finding(current, git_refs(repo["url"])).status == "current"
