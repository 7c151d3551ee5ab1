"""Odd and hostile input ends in one message, a hint and an exit code (issue 33, parts 4-6, 8).

* git argument injection: a URL or ref beginning with `-` is refused (exit 2) in the
  configuration and on the command line, and git itself gets every URL after `--`;
* hints that send the user the right way: `--platform` that is not an OS we support,
  step 5 that cannot clone (`--comfyui-url` for a local clone or bundle);
* locks: garbage, the wrong shape, cut short, another target's: an error naming the file
  and the way out (exit 4), never "no lock" or a silent lock; a Python that fell back
  makes the plan say the lock no longer applies;
* output where users look: `status` and `doctor` write their tables to stdout;
* paths of the wrong kind: DIR that is a file, a config or `--lock-dir` that is not.
Nothing the user has is touched by any of them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from faults.faultkit import (
    Case,
    Snapshot,
    assert_nothing_lost,
    error_and_hint,
    invoke,
    started_processes,
)
from installer.edges.environment import current_platform
from support.cli import REPO_ROOT, cli_path, read_state

SHIPPED_LOCK = REPO_ROOT / "locks" / "linux-default-py312.txt"

# --------------------------------------------------------------------------- git injection


def test_urls_that_git_would_read_as_options_are_refused(case: Case) -> None:
    before = Snapshot.take(case.dir)
    marker = case.tmp / "PWNED"
    hostile = f"--upload-pack=touch {marker}"
    node = {"name": "evil", "url": hostile, "commit": "0" * 40}
    configs = {
        "comfyui.url": case.config("a.json", comfyui={**case.deps["comfyui"], "url": hostile}),
        "comfyui.ref": case.config("b.json", comfyui={**case.deps["comfyui"], "ref": "-x"}),
        "custom_nodes": case.config("c.json", custom_nodes=[node]),
    }
    for where, config in configs.items():
        for extra in ((), ("--dry-run",)):
            refused = case.run(*extra, config=config)
            assert refused.code == 2, refused.stderr
            assert where in refused.stderr and "begins with '-'" in refused.stderr
    config = case.config()
    for flag, value in (
        ("--comfyui-url", hostile),
        ("--comfyui-ref", "-x"),
        ("--comfyui-url", " -x"),
    ):
        refused = case.run(f"{flag}={value}", config=config)
        assert refused.code == 2, refused.stderr
        error, hint = error_and_hint(refused.stderr)
        assert flag in error and "git would read it as an option" in error
        assert flag in hint
    assert not marker.exists()
    assert_nothing_lost(before)


def _git_argvs(records: list[tuple[str, tuple[object, ...]]]) -> list[list[str]]:
    argvs = [
        [str(word) for word in args[1]] for event, args in records if event == "subprocess.Popen"
    ]  # type: ignore[attr-defined]
    return [argv for argv in argvs if Path(argv[0]).name == "git"]


def test_git_gets_urls_after_a_double_dash(case: Case, tmp_path: Path) -> None:
    """Below the validation, the git edge itself: every URL and path follows `--`."""
    from installer.core.errors import StepFailedError
    from installer.core.log import InstallerLogger
    from installer.edges.git import checkout_pinned

    url = str(case.fixtures.comfy_repo)
    with started_processes() as records:
        checkout_pinned(tmp_path / "clone", url, "v2", InstallerLogger())
    argvs = _git_argvs(records)
    using_url = [argv for argv in argvs if url in argv]
    assert {argv[1] for argv in using_url} >= {"clone"}, argvs
    for argv in using_url:
        assert "--" in argv and argv.index("--") < argv.index(url), argv
    for argv in argvs:
        if "rev-parse" in argv:
            assert argv.index("--end-of-options") < len(argv) - 1, argv

    from installer.edges.pin_sources import git_refs

    with started_processes() as records:
        assert git_refs(url).tags
    (listing,) = _git_argvs(records)
    assert listing[1:] == ["ls-remote", "--", url]

    marker = tmp_path / "PWNED"
    with pytest.raises(StepFailedError) as failed:
        checkout_pinned(tmp_path / "evil", f"--upload-pack=touch {marker}", "v2", InstallerLogger())
    assert "Could not clone" in failed.value.message
    assert not marker.exists()
    assert not (tmp_path / "evil").exists()


# --------------------------------------------------------------------------- hints


@pytest.mark.parametrize("value", ["macos", "darwin", "freebsd", "", "Windows95"])
def test_unsupported_platform_says_so(case: Case, value: str) -> None:
    refused = case.run("--dry-run", "--platform", value)
    assert refused.code == 2, refused.stderr
    error, hint = error_and_hint(refused.stderr)
    assert "not a supported platform" in error
    assert "--platform linux" in hint and "--platform windows" in hint


def test_another_platform_without_dry_run_names_dry_run_once(tmp_path: Path) -> None:
    here = current_platform()
    other = "windows" if here == "linux" else "linux"
    target = tmp_path / "inst"
    refused = invoke(["install", str(target), "--gpu", "none", "--platform", other])
    assert refused.code == 2, refused.stderr
    error, hint = error_and_hint(refused.stderr)
    assert error == (
        f"--platform {other} plans for another OS (this machine runs {here}): nothing can be "
        "installed for it here."
    )
    assert hint == f"Add --dry-run to see that plan, or run the install on {other}."
    assert refused.stderr.count("--dry-run") == 1, refused.stderr
    assert not target.exists()


@pytest.mark.parametrize(("value", "platform"), [("Windows", "windows"), ("LINUX", "linux")])
def test_platform_is_case_insensitive(case: Case, value: str, platform: str) -> None:
    done = case.run("--dry-run", "--json", "--platform", value)
    assert done.code == 0, done.stderr
    assert json.loads(done.stdout)["data"]["platform"] == platform


def test_step_5_hint_names_comfyui_url(case: Case) -> None:
    target = case.tmp / "fresh"
    args = case.args("--comfyui-url", str(case.tmp / "no-such-clone"))
    args[1] = str(target)
    failed = invoke(args, case.env)
    assert failed.code == 1, failed.stderr
    error, hint = error_and_hint(failed.stderr)
    assert "comfyui" in error and "Could not clone" in error
    assert "--comfyui-url" in hint and "bundle" in hint
    assert not (target / "ComfyUI").exists()


# --------------------------------------------------------------------------- locks


def lock_dir(case: Case, text: bytes | None = None, name: str = "linux-default-py312.txt") -> Path:
    """A --lock-dir holding one file ``name`` with ``text`` (default: the shipped lock)."""
    folder = case.tmp / "locks"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir()
    (folder / name).write_bytes(SHIPPED_LOCK.read_bytes() if text is None else text)
    return folder


def _shipped(cut: int | None = None) -> bytes:
    data = SHIPPED_LOCK.read_bytes()
    return data if cut is None else data[:cut]


def _edited_counts() -> bytes:
    return _shipped().replace(b"# counts: requirements ", b"# counts: requirements 1", 1)


BROKEN_LOCKS = {
    "garbage": (bytes(range(256)) * 8, "not a comfy-install lock"),
    "JSON of another shape": (b'{"lock": [1, 2, 3]}', "not a comfy-install lock"),
    "empty": (b"", "not a comfy-install lock"),
    "cut short": (_shipped(cut=len(_shipped()) // 2), "incomplete"),
    "counts edited": (_edited_counts(), "incomplete"),
    "another target's": (
        (REPO_ROOT / "locks" / "windows-default-py312.txt").read_bytes(),
        "header is for the target 'windows-default-py312'",
    ),
}


@pytest.mark.parametrize("kind", sorted(BROKEN_LOCKS))
def test_a_broken_lock_is_an_error_naming_it(case: Case, kind: str) -> None:
    text, why = BROKEN_LOCKS[kind]
    folder = lock_dir(case, text)
    before = Snapshot.take(case.dir)
    state_before = (case.dir / ".comfy-install" / "state.json").read_bytes()
    for extra in (("--dry-run",), ("--dry-run", "--json"), ()):
        refused = case.run(*extra, "--python", "3.12", "--lock-dir", str(folder))
        assert refused.code == 4, refused.stderr
        error, hint = error_and_hint(refused.stderr)
        assert str(folder / "linux-default-py312.txt") in error and why in error
        assert "comfy-install lock --platform linux" in hint and "--no-lock" in hint
        if "--json" in extra:
            assert json.loads(refused.stdout)["errors"][0]["code"] == "integrity"
    assert (case.dir / ".comfy-install" / "state.json").read_bytes() == state_before
    assert_nothing_lost(before)
    live = case.run(
        "--dry-run", "--json", "--python", "3.12", "--lock-dir", str(folder), "--no-lock"
    )
    assert live.code == 0, live.stderr
    assert json.loads(live.stdout)["data"]["lock"]["reason"] == "resolved live (--no-lock)"


def test_a_whole_lock_for_other_inputs_is_stale_not_broken(case: Case) -> None:
    folder = lock_dir(case)
    done = case.run("--dry-run", "--json", "--python", "3.12", "--lock-dir", str(folder))
    assert done.code == 0, done.stderr
    assert "is stale" in json.loads(done.stdout)["data"]["lock"]["reason"]


def test_a_python_that_fell_back_says_the_lock_no_longer_applies(case: Case) -> None:
    state_path = case.dir / ".comfy-install" / "state.json"
    state = read_state(case.dir)
    state["steps"]["python"]["inputs"]["request"] = "3.12"
    state["steps"]["python"]["outputs"]["version"] = "3.11.9"
    state_path.write_text(json.dumps(state))
    folder = lock_dir(case)
    done = case.run("--dry-run", "--json", "--python", "3.12", "--lock-dir", str(folder))
    assert done.code == 0, done.stderr
    reason = json.loads(done.stdout)["data"]["lock"]["reason"]
    assert "Python 3.11.9" in reason and "py312 lock no longer applies" in reason, reason


def test_lock_dir_that_is_not_a_folder(case: Case) -> None:
    afile = case.tmp / "afile"
    afile.write_text("x")
    for value, why in ((afile, "not a folder"), (case.tmp / "missing", "no such folder")):
        refused = case.run("--dry-run", "--lock-dir", str(value))
        assert refused.code == 2, refused.stderr
        assert why in error_and_hint(refused.stderr)[0]


# --------------------------------------------------------------------------- output


@pytest.mark.parametrize("command", ["status", "doctor"])
def test_results_go_to_stdout_so_they_can_be_saved(case: Case, command: str) -> None:
    saved = case.tmp / f"{command}.txt"
    with saved.open("w") as handle:
        done = subprocess.run(
            [cli_path(), command, str(case.dir)],
            stdout=handle,
            stderr=subprocess.PIPE,
            text=True,
            env=case.full_env(),
            check=False,
        )
    assert done.returncode == 0, done.stderr
    text = saved.read_text()
    assert ("preflight" in text) if command == "status" else ("comfy-install doctor" in text)
    assert "Traceback" not in done.stderr


# --------------------------------------------------------------------------- odd paths


def test_dir_that_is_a_file(case: Case) -> None:
    afile = case.tmp / "not-a-dir"
    afile.write_text("mine\n")
    for args, code in (
        (["install", str(afile)], 3),
        (["install", str(afile), "--dry-run", "--json"], 3),
        (["status", str(afile)], 2),
        (["launch", str(afile)], 3),
    ):
        refused = invoke(args, case.env)
        assert refused.code == code, (args, refused.stderr)
        error, _ = error_and_hint(refused.stderr)
        assert str(afile) in error
    looked = invoke(["doctor", str(afile)], case.env)
    assert "Traceback" not in looked.text
    assert afile.read_text() == "mine\n"


def test_config_paths_of_the_wrong_kind(case: Case) -> None:
    before = Snapshot.take(case.dir)
    folder = case.tmp / "a-folder"
    folder.mkdir()
    binary = case.tmp / "binary.json"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    listed = case.tmp / "list.json"
    listed.write_text("[1, 2]")
    for flag in ("--config", "--tools-manifest"):
        for path in (folder, binary, listed, case.tmp / "missing.json"):
            refused = case.run("--dry-run", flag, str(path))
            assert refused.code == 2, (flag, path, refused.stderr)
            error, _ = error_and_hint(refused.stderr)
            assert path.name in error
    assert_nothing_lost(before)
