"""A model download never loses a file that is already where it would go.

Every case runs `comfy-install models download` (or the API that install step 12 calls)
against real files on disk and the local HTTP server of `support.http_server` (HTTPS with
its own certificate where an entry has no sha256: plain HTTP needs a pinned one), and
checks, by content hash, that every file that was there before is still there afterwards
(maybe under a new name), besides the exit code and what the user is told.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from installer.cli.models import models_app
from installer.core.config import ModelEntry
from installer.core.errors import FileConflictError
from installer.core.log import InstallerLogger
from installer.edges.download.files import aside_name, move_aside
from installer.models.downloads import download_models
from support.http_server import LocalHTTPServer

runner = CliRunner()

MINE = b"my own fine-tune, not the one on the server" * 40
THEIRS = b"the manifest's file as the server has it" * 50


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def contents(root: Path) -> Counter[str]:
    """The content hash of every file under ``root`` (how many files hold each)."""
    return Counter(sha(p.read_bytes()) for p in root.rglob("*") if p.is_file())


def assert_nothing_lost(before: Counter[str], root: Path) -> None:
    after = contents(root)
    lost = before - after
    assert not lost, f"files lost: {lost}"


def install_dir(tmp_path: Path) -> Path:
    root = tmp_path / "inst"
    (root / "ComfyUI" / "models").mkdir(parents=True)
    return root


def write_manifest(path: Path, models: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps({"schema_version": 1, "models": models}), encoding="utf-8")
    return path


def invoke(*args: object) -> Any:
    return runner.invoke(models_app, [str(a) for a in args])


def files_of(result: Any) -> list[dict[str, Any]]:
    return list(json.loads(result.stdout)["data"]["files"])


@pytest.fixture
def tls_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalHTTPServer]:
    """An HTTPS server this process trusts (entries without sha256 need HTTPS)."""
    with LocalHTTPServer(tls=True) as server:
        assert server.cert_path is not None
        monkeypatch.setenv("SSL_CERT_FILE", str(server.cert_path))
        yield server


def setup_case(tmp_path: Path, existing: bytes) -> tuple[Path, Path, Path]:
    """An install whose `models/loras/style.safetensors` holds ``existing``."""
    root = install_dir(tmp_path)
    models = root / "ComfyUI" / "models"
    target = models / "loras" / "style.safetensors"
    target.parent.mkdir(parents=True)
    target.write_bytes(existing)
    return root, models, target


# --------------------------------------------------------------------------- with a sha256


def test_existing_file_with_the_manifest_sha256_is_kept_without_a_request(
    tmp_path: Path, http_server: LocalHTTPServer
) -> None:
    http_server.add("/style.safetensors", THEIRS)
    root, models, target = setup_case(tmp_path, THEIRS)
    manifest = write_manifest(
        tmp_path / "m.json",
        [{"url": http_server.url("/style.safetensors"), "kind": "loras",
          "filename": "style.safetensors", "sha256": sha(THEIRS), "size": len(THEIRS)}],
    )  # fmt: skip
    before = contents(models)

    result = invoke("download", root, "--manifest", manifest, "--json")

    assert result.exit_code == 0, result.output
    assert http_server.requests == []
    assert contents(models) == before
    assert target.read_bytes() == THEIRS
    [entry] = files_of(result)
    assert (entry["status"], entry["moved_aside"]) == ("present", None)
    assert "already present, checksum ok" in result.stderr


def test_existing_file_not_matching_the_sha256_is_moved_aside_then_replaced(
    tmp_path: Path, http_server: LocalHTTPServer
) -> None:
    http_server.add("/style.safetensors", THEIRS)
    root, models, target = setup_case(tmp_path, MINE)
    manifest = write_manifest(
        tmp_path / "m.json",
        [{"url": http_server.url("/style.safetensors"), "kind": "loras",
          "filename": "style.safetensors", "sha256": sha(THEIRS)}],
    )  # fmt: skip
    before = contents(models)

    result = invoke("download", root, "--manifest", manifest, "--json")

    assert result.exit_code == 0, result.output
    assert_nothing_lost(before, models)
    assert target.read_bytes() == THEIRS
    [entry] = files_of(result)
    assert entry["status"] == "replaced"
    aside = Path(entry["moved_aside"])
    assert aside.parent == target.parent
    assert aside.name.startswith("style.replaced-") and aside.name.endswith(".safetensors")
    assert aside.read_bytes() == MINE
    assert f"moved it aside to {aside} (kept)" in result.stderr
    assert "does not match the manifest's sha256" in result.stderr
    assert sorted(p.name for p in target.parent.iterdir()) == sorted([aside.name, target.name])


def test_a_failed_download_leaves_the_mismatching_file_where_it_was(
    tmp_path: Path, http_server: LocalHTTPServer
) -> None:
    http_server.add("/style.safetensors", THEIRS)
    root, models, target = setup_case(tmp_path, MINE)
    manifest = write_manifest(
        tmp_path / "m.json",
        [{"url": http_server.url("/style.safetensors"), "kind": "loras",
          "filename": "style.safetensors", "sha256": "0" * 64}],
    )  # fmt: skip
    before = contents(models)

    result = invoke("download", root, "--manifest", manifest)

    assert result.exit_code == 4, result.output
    assert contents(models) == before
    assert target.read_bytes() == MINE


# --------------------------------------------------------------------------- without a sha256


def test_different_file_without_sha256_is_a_conflict_and_kept(
    tmp_path: Path, tls_server: LocalHTTPServer
) -> None:
    tls_server.add("/style.safetensors", THEIRS)
    root, models, target = setup_case(tmp_path, MINE)
    manifest = write_manifest(
        tmp_path / "m.json",
        [{"url": tls_server.url("/style.safetensors"), "kind": "loras",
          "filename": "style.safetensors"}],
    )  # fmt: skip
    before = contents(models)

    result = invoke("download", root, "--manifest", manifest, "--allow-unverified", "--json")

    assert result.exit_code == 1, result.output
    assert contents(models) == before  # the download was dropped, nothing else written
    assert target.read_bytes() == MINE
    document = json.loads(result.stdout)
    assert document["status"] == "error" and document["exit_code"] == 1
    [error] = document["errors"]
    assert error["code"] == "file-conflict"
    assert str(target) in error["message"] and "nothing was downloaded over it" in error["message"]
    assert "sha256" in error["hint"] and '"filename"' in error["hint"]
    assert "pass --replace" in error["hint"] and "never deleted" in error["hint"]


def test_size_mismatch_without_sha256_is_a_conflict_before_any_request(
    tmp_path: Path, tls_server: LocalHTTPServer
) -> None:
    tls_server.add("/style.safetensors", THEIRS)
    root, models, target = setup_case(tmp_path, MINE)
    manifest = write_manifest(
        tmp_path / "m.json",
        [{"url": tls_server.url("/style.safetensors"), "kind": "loras",
          "filename": "style.safetensors", "size": len(THEIRS)}],
    )  # fmt: skip
    before = contents(models)

    result = invoke("download", root, "--manifest", manifest, "--allow-unverified")

    assert result.exit_code == 1, result.output
    assert tls_server.requests == []
    assert contents(models) == before
    assert target.read_bytes() == MINE
    assert f"with {len(MINE)} bytes" in result.stderr
    assert f"has {len(THEIRS)} bytes" in result.stderr


def test_same_file_without_sha256_is_kept(tmp_path: Path, tls_server: LocalHTTPServer) -> None:
    tls_server.add("/style.safetensors", THEIRS)
    root, models, target = setup_case(tmp_path, THEIRS)
    manifest = write_manifest(
        tmp_path / "m.json",
        [{"url": tls_server.url("/style.safetensors"), "kind": "loras",
          "filename": "style.safetensors"}],
    )  # fmt: skip
    before = contents(models)
    stat_before = target.stat()

    result = invoke("download", root, "--manifest", manifest, "--allow-unverified", "--json")

    assert result.exit_code == 0, result.output
    assert contents(models) == before
    assert target.stat().st_ino == stat_before.st_ino  # the same file, not a copy put in place
    [entry] = files_of(result)
    assert (entry["status"], entry["moved_aside"]) == ("present", None)
    assert "the same file as the download" in result.stderr


def test_replace_moves_the_different_file_aside(
    tmp_path: Path, tls_server: LocalHTTPServer
) -> None:
    tls_server.add("/style.safetensors", THEIRS)
    root, models, target = setup_case(tmp_path, MINE)
    manifest = write_manifest(
        tmp_path / "m.json",
        [{"url": tls_server.url("/style.safetensors"), "kind": "loras",
          "filename": "style.safetensors", "size": len(THEIRS)}],
    )  # fmt: skip
    before = contents(models)

    result = invoke(
        "download", root, "--manifest", manifest, "--allow-unverified", "--replace", "--json"
    )

    assert result.exit_code == 0, result.output
    assert_nothing_lost(before, models)
    assert target.read_bytes() == THEIRS
    [entry] = files_of(result)
    aside = Path(entry["moved_aside"])
    assert entry["status"] == "replaced" and aside.read_bytes() == MINE
    assert aside.name.startswith("style.replaced-")
    assert "1 file(s) that were in the way moved aside (kept)" in result.stderr

    again = invoke("download", root, "--manifest", manifest, "--allow-unverified", "--json")
    assert again.exit_code == 0, again.output
    assert files_of(again)[0]["status"] == "present"
    assert_nothing_lost(before, models)


def test_url_named_file_without_sha256_conflicts_too(
    tmp_path: Path, tls_server: LocalHTTPServer
) -> None:
    """The name comes from the URL only once the server answers; the rule is the same."""
    tls_server.add("/files/style.safetensors", THEIRS)
    root, models, target = setup_case(tmp_path, MINE)
    manifest = write_manifest(
        tmp_path / "m.json",
        [{"url": tls_server.url("/files/style.safetensors"), "kind": "loras"}],
    )
    before = contents(models)

    result = invoke("download", root, "--manifest", manifest, "--allow-unverified")

    assert result.exit_code == 1, result.output
    assert contents(models) == before
    assert target.read_bytes() == MINE
    assert f"{target} already exists" in result.stderr


def test_a_conflict_does_not_stop_the_other_files(
    tmp_path: Path, tls_server: LocalHTTPServer
) -> None:
    tls_server.add("/style.safetensors", THEIRS)
    tls_server.add("/vae.safetensors", b"vae" * 100)
    root, models, target = setup_case(tmp_path, MINE)
    manifest = write_manifest(
        tmp_path / "m.json",
        [{"url": tls_server.url("/style.safetensors"), "kind": "loras",
          "filename": "style.safetensors"},
         {"url": tls_server.url("/vae.safetensors"), "kind": "vae", "sha256": sha(b"vae" * 100)}],
    )  # fmt: skip
    before = contents(models)

    result = invoke("download", root, "--manifest", manifest, "--allow-unverified")

    assert result.exit_code == 1, result.output
    assert_nothing_lost(before, models)
    assert target.read_bytes() == MINE
    assert (models / "vae" / "vae.safetensors").read_bytes() == b"vae" * 100


def test_install_step_api_names_the_models_command_in_its_hint(
    tmp_path: Path, tls_server: LocalHTTPServer
) -> None:
    """Install step 12 calls `download_models`: the same rule, a hint fit for `install`."""
    tls_server.add("/style.safetensors", THEIRS)
    root, models, target = setup_case(tmp_path, MINE)
    entries = [
        ModelEntry(url=tls_server.url("/style.safetensors"), kind="loras",
                   filename="style.safetensors"),
    ]  # fmt: skip
    before = contents(models)
    how = f"run `comfy-install models download {root} --replace`"

    with pytest.raises(FileConflictError) as caught:
        download_models(
            entries, models, log=InstallerLogger(verbosity=-1), allow_unverified=True,
            replace_how=how,
        )  # fmt: skip

    assert caught.value.exit_code == 1
    assert how in caught.value.hint
    assert contents(models) == before
    assert target.read_bytes() == MINE


# --------------------------------------------------------------------------- names


def test_aside_names_keep_the_extension_and_never_collide(tmp_path: Path) -> None:
    when = dt.datetime(2026, 1, 2, 3, 4, 5)
    stamp = "20260102T030405"
    assert aside_name("a.safetensors", stamp) == "a.replaced-20260102T030405.safetensors"
    assert aside_name("noext", "20260102T030405", 2) == "noext.replaced-20260102T030405-2"
    first, second = tmp_path / "a.safetensors", tmp_path / "b"
    first.write_bytes(b"one")
    moved = move_aside(first, when)
    first.write_bytes(b"two")
    moved_again = move_aside(first, when)
    assert moved.name == "a.replaced-20260102T030405.safetensors"
    assert moved_again.name == "a.replaced-20260102T030405-2.safetensors"
    assert (moved.read_bytes(), moved_again.read_bytes()) == (b"one", b"two")
    assert not first.exists() and not second.exists()
