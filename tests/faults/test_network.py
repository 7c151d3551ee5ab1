"""Network faults, for uv (the package index) and for httpx (wheel and model downloads).

uv faults hit step 10: the test config adds one package resolved from the
index (`xformers`, marked `required`, `retry_options` 1 attempt, backoff 0),
and uv runs with `UV_HTTP_RETRIES=0`. httpx faults hit step 12 with a model
entry on the local server, under `fast_clock` (no backoff waits between the
shipped 5 tries) and, for stalls, `short_read_timeout` (0.5 s instead of 30 s);
step 10's SageAttention wheel is downloaded by httpx too. Each test checks the exit code
and the message, that nothing the user had was lost, and that the same command
completes once the fault is gone.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from faults.faultkit import (
    HTTP_TIMEOUT,
    Case,
    ChainTLSServer,
    PortServer,
    Snapshot,
    assert_clean_after_rerun,
    assert_nothing_lost,
    error_and_hint,
    free_port,
    manifest_file,
    sa_wheel_entry,
    wait_until,
    xformers_package,
)
from support.cli import venv_dists
from support.http_server import Drop, GeneratedBody, LocalHTTPServer, Respond, Stall
from support.package_index import serve_index

XFORMERS_FILE = "/files/xformers-0.0.33.post2-py3-none-any.whl"
XFORMERS_PAGE = "/simple/xformers/"
INDEX_UNREACHABLE = (
    "Step 10 (optimizations) failed: install xformers could not reach the package index"
)
NETWORK_HINT = "Check the network"
MODEL_PATH = "/m/model.safetensors"
DEAD_PROXY = "http://127.0.0.1:9"


def with_xformers(case: Case, *, attempts: int = 1, backoff_seconds: float = 0) -> None:
    """Configure step 10 with one required package from the index."""
    package = xformers_package(attempts=attempts, backoff_seconds=backoff_seconds)
    case.config(optimizations={"packages": [package]})


def assert_xformers_arrived(case: Case) -> None:
    assert venv_dists(case.dir).get("xformers") == "0.0.33.post2"


# --------------------------------------------------------------------------- uv: the index

UV_FAULTS = {
    "stall past UV_HTTP_TIMEOUT": (XFORMERS_PAGE, Stall(seconds=6), {"UV_HTTP_TIMEOUT": "1"}),
    "500": (XFORMERS_PAGE, Respond(500), {}),
    "503 with Retry-After": (XFORMERS_PAGE, Respond(503, {"Retry-After": "1"}), {}),
    "429": (XFORMERS_PAGE, Respond(429, {"Retry-After": "1"}), {}),
}


def test_index_faults_fail_step_10_cleanly_and_rerun_completes(
    case: Case, subtests: pytest.Subtests
) -> None:
    with_xformers(case)
    before = Snapshot.take(case.dir)
    for name, (path, fault, env) in UV_FAULTS.items():
        with subtests.test(fault=name):
            case.server.inject(path, fault, times=None)
            failed = case.run(env=env)
            case.server.clear_faults()
            assert failed.code == 1, failed.stderr
            error, hint = error_and_hint(failed.stderr)
            assert error.startswith(INDEX_UNREACHABLE), error
            assert NETWORK_HINT in hint
            assert_nothing_lost(before)
    again = case.run()
    assert again.code == 0, again.stderr
    assert_xformers_arrived(case)
    assert_clean_after_rerun(before)


def test_index_reset_mid_transfer_is_reported_as_a_network_failure(case: Case) -> None:
    with_xformers(case)
    before = Snapshot.take(case.dir)
    case.server.inject(XFORMERS_FILE, Drop(after_bytes=64), times=None)
    failed = case.run()
    assert failed.code == 1, failed.stderr
    assert_nothing_lost(before)
    error, hint = error_and_hint(failed.stderr)
    assert error.startswith(INDEX_UNREACHABLE), error
    assert NETWORK_HINT in hint


def test_transient_reset_during_uv_download_is_retried(case: Case) -> None:
    # A second of backoff: the retry must come after the healer saw the first download
    # dropped and cleared the fault (on a loaded machine, 0 s raced it).
    with_xformers(case, attempts=2, backoff_seconds=1)
    case.server.inject(XFORMERS_FILE, Drop(after_bytes=64), times=None)

    def first_get_dropped() -> bool:
        return any(
            r.method == "GET" and r.finished for r in case.server.requests_for(XFORMERS_FILE)
        )

    def heal() -> None:
        wait_until(first_get_dropped, 60, "uv's first download of the wheel")
        case.server.clear_faults()

    healer = threading.Thread(target=heal, daemon=True)
    healer.start()
    done = case.run()
    healer.join(timeout=5)
    assert done.code == 0, done.stderr
    assert_xformers_arrived(case)


def test_index_404_is_a_clear_resolution_failure(case: Case) -> None:
    with_xformers(case)
    before = Snapshot.take(case.dir)
    case.server.inject(XFORMERS_PAGE, Respond(404), times=None)
    failed = case.run()
    assert failed.code == 1, failed.stderr
    error, hint = error_and_hint(failed.stderr)
    assert error.startswith("Step 10 (optimizations) failed: install xformers failed"), error
    assert "xformers was not found in the package registry" in failed.stderr
    assert "run the same command again" in hint
    assert_nothing_lost(before)
    case.server.clear_faults()
    again = case.run()
    assert again.code == 0, again.stderr
    assert_xformers_arrived(case)


def test_index_connection_refused_then_back(case: Case) -> None:
    with_xformers(case)
    before = Snapshot.take(case.dir)
    port = free_port()
    url = f"http://127.0.0.1:{port}/simple/"
    failed = case.run(index_url=url)
    assert failed.code == 1, failed.stderr
    error, hint = error_and_hint(failed.stderr)
    assert error.startswith(INDEX_UNREACHABLE), error
    assert "Connection refused" in failed.stderr
    assert NETWORK_HINT in hint
    assert_nothing_lost(before)
    with PortServer(port) as server:
        serve_index(server, sorted(case.fixtures.links.glob("*.whl")))
        again = case.run(index_url=url)
    assert again.code == 0, again.stderr
    assert_xformers_arrived(case)
    assert_clean_after_rerun(before)


def test_index_tls_failure_then_trusted(case: Case) -> None:
    with_xformers(case)
    before = Snapshot.take(case.dir)
    with ChainTLSServer() as server:
        url = serve_index(server, sorted(case.fixtures.links.glob("*.whl")))
        failed = case.run(index_url=url)
        assert failed.code == 1, failed.stderr
        error, _ = error_and_hint(failed.stderr)
        assert error.startswith(INDEX_UNREACHABLE), error
        assert "invalid peer certificate" in failed.stderr
        assert_nothing_lost(before)
        again = case.run(index_url=url, env={"SSL_CERT_FILE": str(server.ca_path)})
    assert again.code == 0, again.stderr
    assert_xformers_arrived(case)
    assert_clean_after_rerun(before)


def test_index_host_that_does_not_resolve(case: Case) -> None:
    # The reserved .invalid TLD never resolves (RFC 6761). A re-run "without the fault" needs
    # a name that resolves, which this machine cannot provide; connection refused covers it.
    with_xformers(case)
    before = Snapshot.take(case.dir)
    failed = case.run(index_url="http://pypi.example.invalid/simple/")
    assert failed.code == 1, failed.stderr
    error, hint = error_and_hint(failed.stderr)
    assert error.startswith(INDEX_UNREACHABLE), error
    assert "dns error" in failed.stderr
    assert NETWORK_HINT in hint
    assert_nothing_lost(before)


def test_index_tls_failure_hint_says_how_to_trust_the_ca(case: Case) -> None:
    with_xformers(case)
    with ChainTLSServer() as server:
        url = serve_index(server, sorted(case.fixtures.links.glob("*.whl")))
        failed = case.run(index_url=url)
    _, hint = error_and_hint(failed.stderr)
    assert "SSL_CERT_FILE" in hint


INJECTED_PROXIES = ("HTTP_PROXY", "ALL_PROXY", "HTTPS_PROXY")


def test_index_behind_a_dead_proxy_then_without(case: Case, subtests: pytest.Subtests) -> None:
    with_xformers(case)
    before = Snapshot.take(case.dir)
    with ChainTLSServer() as tls:
        tls_index = serve_index(tls, sorted(case.fixtures.links.glob("*.whl")))
        for variable in INJECTED_PROXIES:
            with subtests.test(variable=variable):
                env: dict[str, str | None] = {variable: DEAD_PROXY}
                url = case.index_url
                if variable == "HTTPS_PROXY":
                    url, env["SSL_CERT_FILE"] = tls_index, str(tls.ca_path)
                failed = case.run(index_url=url, env=env)
                assert failed.code == 1, failed.stderr
                error, hint = error_and_hint(failed.stderr)
                assert error.startswith(INDEX_UNREACHABLE), error
                assert NETWORK_HINT in hint
                assert_nothing_lost(before)
        again = case.run(index_url=tls_index, env={"SSL_CERT_FILE": str(tls.ca_path)})
    assert again.code == 0, again.stderr
    assert_xformers_arrived(case)
    assert_clean_after_rerun(before)


# --------------------------------------------------------------------------- httpx: downloads


def with_model(case: Case, server: LocalHTTPServer | None = None, size: int = 2_000_000) -> Any:
    """Serve a model file and configure step 12 to download it; return its resource."""
    target = server or case.server
    resource = target.add(MODEL_PATH, GeneratedBody(size, seed=7))
    case.config(
        models=[
            {
                "url": target.url(MODEL_PATH),
                "kind": "checkpoints",
                "sha256": resource.sha256,
                "size": resource.size,
            }
        ]
    )
    return resource


def final_model(case: Case) -> Any:
    return case.models / "checkpoints" / "model.safetensors"


DOWNLOAD_FAULTS = [
    pytest.param(Respond(500), "the server answered HTTP 500", 5, id="500"),
    pytest.param(Respond(503, {"Retry-After": "0"}), "the server answered HTTP 503", 5, id="503"),
    pytest.param(Respond(429, {"Retry-After": "0"}), "the server answered HTTP 429", 5, id="429"),
    pytest.param(
        Drop(after_bytes=300_000),
        "connection failed: peer closed connection without sending complete",
        5,
        id="reset",
    ),
    pytest.param(
        Stall(seconds=HTTP_TIMEOUT * 8, after_bytes=100_000),
        f"no data received for {HTTP_TIMEOUT} s (read timeout)",
        5,
        id="stall-past-timeout",
    ),
]


@pytest.mark.usefixtures("fast_clock", "short_read_timeout")
@pytest.mark.parametrize(("fault", "reason", "tries"), DOWNLOAD_FAULTS)
def test_model_download_fault_keeps_the_part_and_rerun_resumes(
    case: Case, fault: Any, reason: str, tries: int
) -> None:
    resource = with_model(case)
    before = Snapshot.take(case.dir)
    case.server.inject(MODEL_PATH, fault, times=None)
    failed = case.run()
    assert failed.code == 1, failed.stderr
    error, hint = error_and_hint(failed.stderr)
    assert error.startswith("Step 12 (models) failed: could not download model.safetensors"), error
    assert f"after {tries} attempts: {reason}" in error
    assert "partial download resumes" in hint
    assert len(case.server.requests_for(MODEL_PATH)) == tries
    assert_nothing_lost(before, verified={final_model(case): resource.sha256})
    assert not final_model(case).exists()
    received = sum(r.bytes_sent for r in case.server.requests_for(MODEL_PATH))
    case.server.clear_faults()
    again = case.run()
    assert again.code == 0, again.stderr
    last = case.server.requests_for(MODEL_PATH)[-1]
    if received:
        assert last.range == f"bytes={received}-", "the re-run did not resume the partial file"
    assert last.bytes_sent == resource.size - received
    assert_clean_after_rerun(before)
    assert final_model(case).stat().st_size == resource.size


def test_model_download_honours_retry_after(case: Case) -> None:
    resource = with_model(case, size=300_000)
    case.server.inject(MODEL_PATH, Respond(503, {"Retry-After": "1"}), times=1)
    done = case.run()
    assert done.code == 0, done.stderr
    first, second = (r.arrived for r in case.server.requests_for(MODEL_PATH))
    assert second - first >= 0.9, f"Retry-After: 1 not honoured: {second - first:.2f} s"
    assert final_model(case).stat().st_size == resource.size


@pytest.mark.usefixtures("fast_clock")
def test_model_download_404_fails_at_once(case: Case) -> None:
    resource = with_model(case)
    before = Snapshot.take(case.dir)
    case.server.inject(MODEL_PATH, Respond(404), times=None)
    failed = case.run()
    assert failed.code == 1, failed.stderr
    error, hint = error_and_hint(failed.stderr)
    assert "model.safetensors: the server has no file at" in error and "(HTTP 404)" in error
    assert "Check the URL in the manifest" in hint
    assert len(case.server.requests_for(MODEL_PATH)) == 1
    assert_nothing_lost(before, verified={final_model(case): resource.sha256})
    case.server.clear_faults()
    again = case.run()
    assert again.code == 0, again.stderr
    assert_clean_after_rerun(before)


@pytest.mark.usefixtures("fast_clock")
def test_model_download_connection_refused_then_back(case: Case) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}{MODEL_PATH}"
    body = GeneratedBody(500_000, seed=11)
    case.config(
        models=[{"url": url, "kind": "checkpoints", "sha256": body.sha256, "size": body.size}]
    )
    before = Snapshot.take(case.dir)
    failed = case.run()
    assert failed.code == 1, failed.stderr
    error, hint = error_and_hint(failed.stderr)
    assert "after 5 attempts: connection failed" in error and "Connection refused" in error
    assert "Check the network connection or proxy settings" in hint
    assert_nothing_lost(before, verified={final_model(case): body.sha256})
    with PortServer(port) as server:
        server.add(MODEL_PATH, body)
        again = case.run()
    assert again.code == 0, again.stderr
    assert_clean_after_rerun(before)


@pytest.mark.usefixtures("fast_clock")
def test_model_host_that_does_not_resolve(case: Case) -> None:
    body = GeneratedBody(1000, seed=1)
    url = "https://models.example.invalid/model.safetensors"
    case.config(models=[{"url": url, "kind": "checkpoints", "sha256": body.sha256}])
    before = Snapshot.take(case.dir)
    failed = case.run()
    assert failed.code == 1, failed.stderr
    error, hint = error_and_hint(failed.stderr)
    assert "could not download model.safetensors from models.example.invalid" in error
    assert "after 5 attempts: connection failed" in error
    assert "Check the network connection or proxy settings" in hint
    assert_nothing_lost(before, verified={final_model(case): body.sha256})


@pytest.mark.usefixtures("fast_clock")
def test_model_download_tls_failure_then_trusted(case: Case) -> None:
    with ChainTLSServer() as server:
        resource = with_model(case, server)
        before = Snapshot.take(case.dir)
        failed = case.run()
        assert failed.code == 1, failed.stderr
        error, hint = error_and_hint(failed.stderr)
        assert "TLS certificate verification failed for 127.0.0.1" in error
        assert "SSL_CERT_FILE" in hint
        assert_nothing_lost(before, verified={final_model(case): resource.sha256})
        again = case.run(env={"SSL_CERT_FILE": str(server.ca_path)})
    assert again.code == 0, again.stderr
    assert_clean_after_rerun(before)


@pytest.mark.usefixtures("fast_clock")
def test_model_download_behind_a_dead_proxy_then_without(
    case: Case, subtests: pytest.Subtests
) -> None:
    with ChainTLSServer() as tls:
        plain = with_model(case)
        secure = tls.add(MODEL_PATH, GeneratedBody(plain.size, seed=7))
        before = Snapshot.take(case.dir)
        for variable in INJECTED_PROXIES:
            with subtests.test(variable=variable):
                env: dict[str, str | None] = {variable: DEAD_PROXY}
                server: LocalHTTPServer = case.server
                if variable == "HTTPS_PROXY":
                    server, env["SSL_CERT_FILE"] = tls, str(tls.ca_path)
                with_model(case, server)
                failed = case.run(env=env)
                assert failed.code == 1, failed.stderr
                error, hint = error_and_hint(failed.stderr)
                assert "could not download model.safetensors" in error
                assert "proxy" in hint
                assert server.requests_for(MODEL_PATH) == []
                assert_nothing_lost(before, verified={final_model(case): secure.sha256})
        again = case.run(env={"SSL_CERT_FILE": str(tls.ca_path)})
    assert again.code == 0, again.stderr
    assert_clean_after_rerun(before)


@pytest.mark.usefixtures("fast_clock")
@pytest.mark.parametrize("client", ["uv", "httpx"])
def test_dead_proxy_is_named_in_the_message(case: Case, client: str) -> None:
    if client == "uv":
        with_xformers(case)
    else:
        with_model(case)
    failed = case.run(env={"HTTP_PROXY": DEAD_PROXY})
    error, _ = error_and_hint(failed.stderr)
    assert "HTTP_PROXY" in error or "127.0.0.1:9" in error


# --------------------------------------------------------------------------- httpx: step 10 wheel


def with_sa_wheel(case: Case) -> str:
    """Configure step 10 with the SageAttention stand-in wheel; return the manifest path."""
    url = case.serve_sa_wheel()
    manifest = manifest_file(case.tmp / "tools_manifest.json", {case.sa_wheel.name: case.sa_wheel})
    case.config(
        pip_packages={"sageattention_wheels": [sa_wheel_entry(url)], "sageattention_fallback": None}
    )
    return str(manifest)


@pytest.mark.usefixtures("fast_clock")
def test_failed_optional_wheel_is_retried_by_the_next_run(case: Case) -> None:
    manifest = with_sa_wheel(case)
    case.server.inject(f"/releases/{case.sa_wheel.name}", Respond(500), times=None)
    failed = case.run("--tools-manifest", manifest)
    assert failed.code == 0, failed.stderr
    assert "sageattention2-sm120: download failed" in failed.stderr
    case.server.clear_faults()
    again = case.run("--tools-manifest", manifest)
    assert again.code == 0, again.stderr
    assert "sageattention" in venv_dists(case.dir)


@pytest.mark.usefixtures("fast_clock")
def test_failing_wheel_is_tried_only_retry_attempts_times(case: Case) -> None:
    manifest = with_sa_wheel(case)
    path = f"/releases/{case.sa_wheel.name}"
    case.server.inject(path, Respond(500), times=None)
    case.run("--tools-manifest", manifest)
    assert len(case.server.requests_for(path)) == 5
