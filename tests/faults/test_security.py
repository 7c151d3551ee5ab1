"""Security faults: hostile names, secrets, shells, scripts, plain HTTP.

* a file name from the config or a server never leaves its folder;
* tokens (`HF_TOKEN`, `CIVITAI_TOKEN`) reach only their own hosts and never a
  log, the terminal or `--json` output; passwords in URLs are redacted;
* nothing runs through a shell, and nothing downloaded is ever executed;
* plain HTTP is refused for an artifact without a pinned sha256;
* a directory name is data, never shell code, in the generated launcher.

Hugging Face and Civitai are reached without leaving the machine: `HTTPS_PROXY`
points at a local TLS-terminating proxy (`MitmProxy`) whose test CA is
trusted through `SSL_CERT_FILE`, as behind a corporate proxy, and which
relays to the local test server.
"""

from __future__ import annotations

import ast
import json
import shlex
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from faults.faultkit import (
    Case,
    ChainTLSServer,
    MitmProxy,
    Snapshot,
    assert_clean_after_rerun,
    assert_nothing_lost,
    copy_install,
    error_and_hint,
    files_holding,
    invoke,
    manifest_file,
    sa_wheel_entry,
    started_processes,
    xformers_package,
)
from support.cli import REPO_ROOT, venv_dists
from support.http_server import GeneratedBody, Redirect, Respond

SRC = REPO_ROOT / "src" / "installer"


# --------------------------------------------------------------------------- path traversal

HOSTILE_NAMES = ["../../evil.bin", "/tmp/evil.bin", "..\\..\\evil.bin", "sub/../../../evil.bin"]


def test_model_file_names_cannot_leave_their_folder(case: Case, subtests: pytest.Subtests) -> None:
    resource = case.server.add("/m/good.bin", GeneratedBody(10_000, seed=3))
    entry = {
        "url": case.server.url("/m/good.bin"),
        "kind": "checkpoints",
        "sha256": resource.sha256,
    }
    before = Snapshot.take(case.dir)
    for name in HOSTILE_NAMES:
        with subtests.test(filename=name):
            case.config(models=[{**entry, "filename": name}])
            failed = case.run()
            assert failed.code == 2, failed.stderr
            error, _ = error_and_hint(failed.stderr)
            assert "models[0].filename" in error
            assert case.server.requests_for("/m/good.bin") == []
            assert not list(case.tmp.rglob("evil.bin"))
            assert not Path("/tmp/evil.bin").exists()
            assert_nothing_lost(before)
    case.config(models=[{**entry, "filename": "good.bin"}])
    again = case.run()
    assert again.code == 0, again.stderr
    assert (case.models / "checkpoints" / "good.bin").is_file()


def test_server_proposed_names_cannot_leave_the_folder(case: Case) -> None:
    first = case.server.add(
        "/m/a",
        GeneratedBody(10_000, seed=1),
        headers={"Content-Disposition": 'attachment; filename="../../../evil-a.bin"'},
    )
    second = case.server.add(
        "/m/b",
        GeneratedBody(10_000, seed=2),
        headers={"Content-Disposition": "attachment; filename*=UTF-8''..%2F..%2Fevil-b.bin"},
    )
    case.config(
        models=[
            {"url": case.server.url("/m/a"), "kind": "checkpoints", "sha256": first.sha256},
            {"url": case.server.url("/m/b"), "kind": "loras", "sha256": second.sha256},
        ]
    )
    done = case.run()
    assert done.code == 0, done.stderr
    assert (case.models / "checkpoints" / "evil-a.bin").is_file()
    assert (case.models / "loras" / "evil-b.bin").is_file()
    escaped = [p for p in case.tmp.rglob("evil-*.bin") if case.models not in p.parents]
    assert escaped == []


def traversing_wheel(case: Case) -> None:
    """Configure a SageAttention wheel whose URL names it `../../evil.whl` (`..%2F`)."""
    case.server.add("/releases/..%2F..%2Fevil.whl", case.sa_wheel.read_bytes())
    url = case.server.url("/releases/..%2F..%2Fevil.whl")
    manifest = manifest_file(case.tmp / "tools_manifest.json", {"../../evil.whl": case.sa_wheel})
    case.extra = ["--tools-manifest", str(manifest)]
    case.config(
        pip_packages={"sageattention_wheels": [sa_wheel_entry(url)], "sageattention_fallback": None}
    )


def test_wheel_url_with_an_encoded_traversal_writes_nothing_outside_the_cache(
    case: Case,
) -> None:
    traversing_wheel(case)
    case.run()
    assert not list(case.tmp.rglob("evil.whl")), "a file escaped the download cache"
    assert "sageattention" not in venv_dists(case.dir)


def test_wheel_url_with_an_encoded_traversal_is_a_config_error(case: Case) -> None:
    traversing_wheel(case)
    failed = case.run()
    assert failed.code == 2, failed.stderr
    assert "pip_packages.sageattention_wheels[0].url" in failed.stderr


# --------------------------------------------------------------------------- secrets

HF_PATH = "/org/repo/resolve/main/model.safetensors"
CIVITAI_PATH = "/api/download/models/123"
CDN_PATH = "/blob/lora.safetensors"


def assert_secret_nowhere(secret: str, case: Case, *outputs: str) -> None:
    for text in outputs:
        assert secret not in text
    assert files_holding(secret, case.dir, case.tmp / "cache") == []


def test_tokens_reach_only_their_hosts_and_never_any_output(case: Case) -> None:
    hf_token, civitai_token = f"hf_{uuid.uuid4().hex}", f"civ_{uuid.uuid4().hex}"
    model = case.server.add(HF_PATH, GeneratedBody(50_000, seed=1))
    lora = case.server.add(CDN_PATH, GeneratedBody(40_000, seed=2))
    case.server.inject(CIVITAI_PATH, Redirect("https://cdn.example.org" + CDN_PATH), times=None)
    case.config(
        models=[
            {
                "url": "https://huggingface.co" + HF_PATH,
                "kind": "checkpoints",
                "sha256": model.sha256,
            },
            {
                "url": "https://civitai.com" + CIVITAI_PATH,
                "kind": "loras",
                "filename": "lora.safetensors",
                "sha256": lora.sha256,
            },
        ]
    )
    names = ["huggingface.co", "civitai.com", "cdn.example.org"]
    with MitmProxy(case.server.port, names, case.tmp / "proxy-ca") as proxy:
        env: dict[str, str | None] = {
            "HF_TOKEN": hf_token,
            "CIVITAI_TOKEN": civitai_token,
            "HTTPS_PROXY": proxy.url,
            "SSL_CERT_FILE": str(proxy.ca_path),
        }
        case.server.inject(HF_PATH, Respond(403), times=None)
        refused = case.run("--json", "-v", env=env)
        assert refused.code == 1, refused.stderr
        error, hint = error_and_hint(refused.stderr)
        assert "access denied by huggingface.co (HTTP 403)" in error
        assert "HF_TOKEN is set but was refused" in hint
        assert json.loads(refused.stdout)["errors"][0]["code"] == "download"
        case.server.clear_faults(HF_PATH)
        done = case.run("--json", "-v", env=env)
        assert done.code == 0, done.stderr
        assert set(proxy.tunnels) >= {"huggingface.co:443", "civitai.com:443"}
    hf_requests = case.server.requests_for(HF_PATH)
    assert {r.authorization for r in hf_requests} == {f"Bearer {hf_token}"}
    assert {r.host for r in hf_requests} == {"huggingface.co"}
    assert {r.authorization for r in case.server.requests_for(CIVITAI_PATH)} == {
        f"Bearer {civitai_token}"
    }
    cdn = case.server.requests_for(CDN_PATH)
    assert cdn and all(r.authorization is None for r in cdn), "a token followed the redirect"
    for secret in (hf_token, civitai_token):
        assert_secret_nowhere(
            secret, case, refused.stdout, refused.stderr, done.stdout, done.stderr
        )


def test_password_in_an_index_url_is_never_shown(case: Case) -> None:
    password = f"pw-{uuid.uuid4().hex}"
    url = case.index_url.replace("http://", f"http://user:{password}@")
    case.config(optimizations={"packages": [xformers_package()]})
    case.server.inject("/simple/xformers/", Respond(500), times=None)
    failed = case.run("--json", "-v", index_url=url)
    assert failed.code == 1, failed.stderr
    assert "user:***@" in failed.stderr
    planned = case.run("--dry-run", "--json", index_url=url)
    assert planned.code == 0, planned.stderr
    case.server.clear_faults()
    done = case.run("--json", "-v", index_url=url)
    assert done.code == 0, done.stderr
    assert case.server.requests_for("/simple/xformers/")[-1].headers.get("authorization")
    status = invoke(["status", str(case.dir), "--json"])
    outputs = [r.stdout + r.stderr for r in (failed, planned, done, status)]
    for text in outputs:
        assert password not in text
    assert files_holding(password, case.dir / ".comfy-install" / "logs") == []


def test_password_in_a_torch_index_url_is_not_stored(case: Case) -> None:
    password = f"pw-{uuid.uuid4().hex}"
    url = case.index_url.replace("http://", f"http://user:{password}@")
    case.config()
    done = case.run("--torch-index", url)
    assert done.code == 0, done.stderr
    assert files_holding(password, case.dir) == []


# --------------------------------------------------------------------------- no shell, no scripts


def src_calls() -> list[tuple[Path, ast.Call]]:
    calls = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Call):
                calls.append((path, node))
    return calls


def call_name(node: ast.Call) -> str:
    func = node.func
    parts: list[str] = []
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if isinstance(func, ast.Name):
        parts.append(func.id)
    return ".".join(reversed(parts))


def test_no_shell_anywhere_in_src() -> None:
    shells = {"os.system", "os.popen", "subprocess.getoutput", "subprocess.getstatusoutput",
              "asyncio.create_subprocess_shell"}  # fmt: skip
    found = []
    for path, node in src_calls():
        where = f"{path.relative_to(REPO_ROOT)}:{node.lineno}"
        for keyword in node.keywords:
            if keyword.arg == "shell" and not (
                isinstance(keyword.value, ast.Constant) and keyword.value.value is False
            ):
                found.append(f"{where} shell={ast.unparse(keyword.value)}")
        if call_name(node) in shells:
            found.append(f"{where} {call_name(node)}()")
    assert found == []


def test_no_eval_or_exec_of_anything_in_src() -> None:
    found = [
        f"{path.relative_to(REPO_ROOT)}:{node.lineno} {call_name(node)}()"
        for path, node in src_calls()
        if call_name(node) in ("eval", "exec", "compile", "execfile", "runpy.run_path")
    ]
    assert found == []


SCRIPT = b'#!/bin/sh\ntouch "$(dirname "$0")/PWNED"\n'


def test_nothing_downloaded_is_ever_executed(case: Case) -> None:
    """A run that downloads a wheel and a model that is really a shell script.

    Every program the run starts is recorded (Python audit events): none may
    be a downloaded file, the only use of a downloaded file in a command line
    is `uv pip install <wheel>`, the script never runs and is not executable.
    """
    url = case.serve_sa_wheel()
    manifest = manifest_file(case.tmp / "tools_manifest.json", {case.sa_wheel.name: case.sa_wheel})
    script = case.server.add("/m/install.sh", SCRIPT)
    wheels = {"sageattention_wheels": [sa_wheel_entry(url)], "sageattention_fallback": None}
    model = {
        "url": case.server.url("/m/install.sh"),
        "kind": "checkpoints",
        "sha256": script.sha256,
    }
    case.config(pip_packages=wheels, models=[model])
    with started_processes() as started:
        done = case.run("--tools-manifest", str(manifest))
    assert done.code == 0, done.stderr
    downloaded = {case.cache / case.sa_wheel.name, case.models / "checkpoints" / "install.sh"}
    assert all(path.is_file() for path in downloaded)
    argvs = [[str(a) for a in args[1]] for event, args in started if event == "subprocess.Popen"]
    assert argvs, "no process was recorded"
    for argv in argvs:
        for position, arg in enumerate(argv):
            if any(arg == str(path) for path in downloaded):
                assert position > 0 and argv[1:3] == ["pip", "install"], shlex.join(argv)
                assert arg.endswith(".whl"), shlex.join(argv)
    assert not list(case.dir.rglob("PWNED"))
    assert (case.models / "checkpoints" / "install.sh").stat().st_mode & 0o111 == 0


# --------------------------------------------------------------------------- plain HTTP


@pytest.mark.usefixtures("fast_clock")
def test_plain_http_is_refused_without_a_pinned_sha256(case: Case) -> None:
    body = case.server.add("/m/plain.bin", GeneratedBody(20_000, seed=6))
    entry: dict[str, Any] = {"url": case.server.url("/m/plain.bin"), "kind": "checkpoints"}
    case.config(models=[entry])
    before = Snapshot.take(case.dir)
    failed = case.run("--allow-unverified")
    assert failed.code == 1, failed.stderr
    error, hint = error_and_hint(failed.stderr)
    assert "refusing plain-HTTP download of" in error and "without a pinned sha256" in error
    assert "https://" in hint
    assert case.server.requests_for("/m/plain.bin") == []
    assert_nothing_lost(before)
    with ChainTLSServer() as tls:
        tls.add("/m/secure.bin", GeneratedBody(20_000, seed=6))
        tls.inject("/m/secure.bin", Redirect(case.server.url("/m/plain.bin")), times=None)
        case.config(models=[{"url": tls.url("/m/secure.bin"), "kind": "checkpoints"}])
        downgraded = case.run("--allow-unverified", env={"SSL_CERT_FILE": str(tls.ca_path)})
    assert downgraded.code == 1, downgraded.stderr
    error, _ = error_and_hint(downgraded.stderr)
    assert "which is not allowed (only https://, or http:// for files with a pinned sha256)" in (
        error
    )
    assert case.server.requests_for("/m/plain.bin") == []
    case.config(models=[{**entry, "sha256": body.sha256}])
    again = case.run()
    assert again.code == 0, again.stderr
    assert_clean_after_rerun(before)


# --------------------------------------------------------------------------- the launcher


def test_launcher_treats_the_directory_name_as_data(case: Case, base_install: Any) -> None:
    hostile = case.tmp / 'odd $(touch PWNED) `touch PWNED2` "q" ü'
    case.dir = copy_install(case.dir, hostile)
    case.config()
    done = case.run("--force", "launchers")
    assert done.code == 0, done.stderr
    launched = subprocess.run(
        [str(hostile / "run_comfyui.sh"), "--print-env", "--json"],
        capture_output=True,
        text=True,
        cwd=case.tmp,
        timeout=120,
        check=False,
    )
    assert not list(case.tmp.glob("PWNED*")), "the directory name ran as shell code"
    assert launched.returncode == 0, launched.stderr
    data = json.loads(launched.stdout)["data"]
    assert str(hostile) in json.dumps(data, ensure_ascii=False).replace('\\"', '"')
