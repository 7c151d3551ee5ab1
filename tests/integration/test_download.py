"""The download engine against a real local HTTP server (no mocking of httpx)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from installer.core.downloads import DownloadRequest
from installer.core.errors import (
    DownloadError,
    ExitCode,
    IntegrityError,
    NetworkError,
)
from installer.core.log import InstallerLogger
from installer.edges.download.api import download_files
from installer.edges.download.retry import RetryPolicy
from support.http_server import (
    Corrupt,
    Drop,
    GeneratedBody,
    IgnoreIfRange,
    IgnoreRange,
    LocalHTTPServer,
    NoLength,
    Respond,
    Stall,
)

FAST = RetryPolicy(attempts=4, backoff_seconds=0.01, max_backoff_seconds=0.05)
ONCE = RetryPolicy(attempts=1)
MIB = 1024 * 1024


class _Terminal(io.StringIO):
    """A captured stream that claims to be a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
def output() -> io.StringIO:
    """What the logger prints on the (non-terminal) stderr."""
    return io.StringIO()


@pytest.fixture
def log(output) -> InstallerLogger:
    return InstallerLogger(stream=output, verbosity=1)


def _request(server: LocalHTTPServer, path: str, dest: Path, **kwargs: object) -> DownloadRequest:
    resource = server.resource(path)
    fields: dict[str, object] = {"filename": path.rsplit("/", 1)[-1], "sha256": resource.sha256}
    fields.update(kwargs)
    return DownloadRequest(server.url(path), dest, **fields)  # type: ignore[arg-type]


def _leftovers(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.iterdir() if ".part" in p.name)


def test_parallel_transfers_of_several_files(http_server, tmp_path, log, output):
    bodies = {f"/f{i}.bin": os.urandom(300_000 + i * 70_000) for i in range(5)}
    for path, body in bodies.items():
        http_server.add(path, body)
        # A short stall keeps the transfers overlapping, so concurrency shows.
        http_server.inject(path, Stall(0.3, after_bytes=1000))
    requests = [_request(http_server, path, tmp_path) for path in bodies]

    results = download_files(requests, log=log, jobs=3, retry=FAST)

    assert [r.path for r in results] == [tmp_path / p.lstrip("/") for p in bodies]
    for result, body in zip(results, bodies.values(), strict=True):
        assert result.path.read_bytes() == body
        assert result.sha256 == hashlib.sha256(body).hexdigest()
        assert (result.size, result.bytes_transferred, result.skipped) == (
            len(body),
            len(body),
            False,
        )
    assert 2 <= http_server.max_concurrent <= 3
    assert all(len(http_server.requests_for(p)) == 1 for p in bodies)
    assert _leftovers(tmp_path) == []
    assert output.getvalue().count("downloaded f") == 5


def test_dropped_connection_resumes_with_only_the_remaining_bytes(
    http_server, tmp_path, log, output
):
    resource = http_server.add("/model.bin", GeneratedBody(2 * MIB, seed=3))
    half = resource.size // 2
    http_server.inject("/model.bin", Drop(after_bytes=half))

    [result] = download_files([_request(http_server, "/model.bin", tmp_path)], log=log, retry=FAST)

    first, second = http_server.requests_for("/model.bin")
    assert (first.status, first.bytes_sent, first.range) == (200, half, None)
    assert second.range == f"bytes={half}-"
    assert second.headers["if-range"] == resource.etag
    assert (second.status, second.bytes_sent) == (206, resource.size - half)
    assert result.resumed_from == half
    assert result.bytes_transferred == resource.size
    assert result.sha256 == resource.sha256 == hashlib.sha256(result.path.read_bytes()).hexdigest()
    assert _leftovers(tmp_path) == []
    assert "resumed at 1.0 MiB" in output.getvalue()


def test_server_ignoring_range_restarts_from_zero(http_server, tmp_path, log):
    resource = http_server.add("/model.bin", GeneratedBody(MIB, seed=4))
    http_server.inject("/model.bin", Drop(after_bytes=400_000))
    http_server.inject("/model.bin", IgnoreRange())

    [result] = download_files([_request(http_server, "/model.bin", tmp_path)], log=log, retry=FAST)

    second = http_server.requests_for("/model.bin")[1]
    assert second.range == "bytes=400000-"
    assert (second.status, second.bytes_sent) == (200, resource.size)
    assert result.resumed_from == 0
    assert result.sha256 == resource.sha256
    assert result.path.read_bytes() == b"".join(resource.chunks(0, resource.size))


def test_changed_file_between_runs_restarts_from_zero(http_server, tmp_path, log):
    old = http_server.add("/model.bin", os.urandom(500_000))
    http_server.inject("/model.bin", Drop(after_bytes=200_000))
    with pytest.raises(NetworkError):
        download_files([_request(http_server, "/model.bin", tmp_path)], log=log, retry=ONCE)
    assert (tmp_path / "model.bin.part").stat().st_size == 200_000
    sidecar = json.loads((tmp_path / "model.bin.part.json").read_text())
    assert sidecar["etag"] == old.etag
    assert sidecar["size"] == 500_000

    new = http_server.add("/model.bin", os.urandom(500_000))  # a new upload, a new ETag
    [result] = download_files([_request(http_server, "/model.bin", tmp_path)], log=log, retry=ONCE)

    resumed = http_server.requests_for("/model.bin")[-1]
    assert resumed.headers["if-range"] == old.etag
    assert (resumed.status, resumed.bytes_sent) == (200, 500_000)
    assert result.resumed_from == 0
    assert result.sha256 == new.sha256
    assert _leftovers(tmp_path) == []


def test_changed_file_behind_a_server_ignoring_if_range_is_caught(http_server, tmp_path, log):
    old = http_server.add("/model.bin", os.urandom(500_000))
    http_server.inject("/model.bin", Drop(after_bytes=200_000))
    with pytest.raises(NetworkError):
        download_files([_request(http_server, "/model.bin", tmp_path)], log=log, retry=ONCE)
    new = http_server.add("/model.bin", os.urandom(500_000))
    http_server.inject("/model.bin", IgnoreIfRange())

    [result] = download_files([_request(http_server, "/model.bin", tmp_path)], log=log, retry=ONCE)

    _, ranged, fresh = http_server.requests_for("/model.bin")
    assert (ranged.status, ranged.headers["if-range"]) == (206, old.etag)
    assert (fresh.status, fresh.range, fresh.bytes_sent) == (200, None, 500_000)
    assert result.sha256 == new.sha256


def test_corrupt_partial_file_is_detected_and_downloaded_afresh(http_server, tmp_path, log, output):
    resource = http_server.add("/model.bin", os.urandom(400_000))
    http_server.inject("/model.bin", Drop(after_bytes=100_000))
    with pytest.raises(NetworkError):
        download_files([_request(http_server, "/model.bin", tmp_path)], log=log, retry=ONCE)
    part = tmp_path / "model.bin.part"
    part.write_bytes(b"\0" * part.stat().st_size)  # same length, wrong bytes

    [result] = download_files([_request(http_server, "/model.bin", tmp_path)], log=log, retry=ONCE)

    ranged, fresh = http_server.requests_for("/model.bin")[1:]
    assert (ranged.status, fresh.status, fresh.range) == (206, 200, None)
    assert result.sha256 == resource.sha256
    assert "after resuming; downloading it afresh" in output.getvalue()


def test_complete_part_left_before_rename_is_finished_without_a_request(http_server, tmp_path, log):
    resource = http_server.add("/model.bin", os.urandom(300_000))
    http_server.inject("/model.bin", Drop(after_bytes=100_000))
    with pytest.raises(NetworkError):
        download_files([_request(http_server, "/model.bin", tmp_path)], log=log, retry=ONCE)
    # Complete the part, as a run killed between the last byte and the rename leaves it.
    (tmp_path / "model.bin.part").write_bytes(resource.body)
    http_server.inject("/model.bin", Respond(500), times=None)

    [result] = download_files([_request(http_server, "/model.bin", tmp_path)], log=log, retry=ONCE)

    assert len(http_server.requests_for("/model.bin")) == 1
    assert (result.sha256, result.resumed_from) == (resource.sha256, 300_000)
    assert _leftovers(tmp_path) == []


def test_500_then_success(http_server, tmp_path, log, output):
    resource = http_server.add("/model.bin", os.urandom(100_000))
    http_server.inject("/model.bin", Respond(500))

    [result] = download_files([_request(http_server, "/model.bin", tmp_path)], log=log, retry=FAST)

    assert [r.status for r in http_server.requests_for("/model.bin")] == [500, 200]
    assert result.sha256 == resource.sha256
    assert "the server answered HTTP 500; retrying" in output.getvalue()


def test_429_waits_as_long_as_retry_after_says(http_server, tmp_path, log):
    http_server.add("/model.bin", os.urandom(100_000))
    http_server.inject("/model.bin", Respond(429, {"Retry-After": "1"}))

    download_files([_request(http_server, "/model.bin", tmp_path)], log=log, retry=FAST)

    limited, ok = http_server.requests_for("/model.bin")
    assert (limited.status, ok.status) == (429, 200)
    assert ok.arrived - limited.arrived >= 0.95  # backoff alone would wait ~0.01 s


def test_503_past_the_retry_budget_is_a_network_error(http_server, tmp_path, log):
    http_server.add("/model.bin", os.urandom(1000))
    http_server.inject("/model.bin", Respond(503), times=None)
    retry = RetryPolicy(attempts=3, backoff_seconds=0.01)

    with pytest.raises(NetworkError) as caught:
        download_files([_request(http_server, "/model.bin", tmp_path)], log=log, retry=retry)

    assert len(http_server.requests_for("/model.bin")) == 3
    message = caught.value.message
    assert "127.0.0.1" in message
    assert "HTTP 503" in message
    assert "after 3 attempts" in message
    assert "run the same command again" in caught.value.hint
    assert caught.value.exit_code == ExitCode.STEP_FAILED
    assert not (tmp_path / "model.bin").exists()


def test_404_fails_at_once_without_retries(http_server, tmp_path, log):
    request = DownloadRequest(http_server.url("/missing.bin"), tmp_path, "missing.bin", "0" * 64)

    with pytest.raises(DownloadError) as caught:
        download_files([request], log=log, retry=FAST)

    assert len(http_server.requests_for("/missing.bin")) == 1
    assert "HTTP 404" in caught.value.message
    assert "/missing.bin" in caught.value.message
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("token", ["", "secret-token-123"])
def test_403_on_a_token_host_names_the_token_variable(http_server, tmp_path, log, token):
    http_server.inject("/gated.bin", Respond(403), times=None)
    request = DownloadRequest(http_server.url("/gated.bin"), tmp_path, "gated.bin", "0" * 64)

    with pytest.raises(DownloadError) as caught:
        download_files(
            [request],
            log=log,
            retry=FAST,
            env={"TEST_TOKEN": token},
            token_hosts={"127.0.0.1": "TEST_TOKEN"},
        )

    assert len(http_server.requests_for("/gated.bin")) == 1
    assert "HTTP 403" in caught.value.message
    assert "TEST_TOKEN" in caught.value.hint
    assert ("is set but was refused" in caught.value.hint) == bool(token)


def test_wrong_hash_is_an_integrity_error_and_leaves_nothing(http_server, tmp_path, log):
    resource = http_server.add("/model.bin", os.urandom(200_000))
    http_server.inject("/model.bin", Corrupt())
    request = _request(http_server, "/model.bin", tmp_path)

    with pytest.raises(IntegrityError) as caught:
        download_files([request], log=log, retry=FAST)

    assert caught.value.exit_code == ExitCode.INTEGRITY == 4
    flipped = bytes(b ^ 0xFF for b in http_server.resource("/model.bin").body)
    assert f"expected {resource.sha256}" in caught.value.message
    assert f"got {hashlib.sha256(flipped).hexdigest()}" in caught.value.message
    assert list(tmp_path.iterdir()) == []
    assert len(http_server.requests_for("/model.bin")) == 1


def test_size_announced_differently_fails_before_the_body(http_server, tmp_path, log):
    http_server.add("/model.bin", os.urandom(2000))
    request = _request(http_server, "/model.bin", tmp_path, size=1999)

    with pytest.raises(IntegrityError, match="offers 2000 bytes, expected 1999"):
        download_files([request], log=log, retry=FAST)
    assert list(tmp_path.iterdir()) == []


def test_body_without_length_is_verified_by_its_hash(http_server, tmp_path, log):
    resource = http_server.add("/model.bin", os.urandom(300_000))
    http_server.inject("/model.bin", NoLength())

    [result] = download_files([_request(http_server, "/model.bin", tmp_path)], log=log)

    assert (result.sha256, result.size) == (resource.sha256, 300_000)
    assert "content-length" not in http_server.requests[0].headers


def test_body_longer_than_the_expected_size_is_cut_off(http_server, tmp_path, log):
    http_server.add("/model.bin", os.urandom(300_000))
    http_server.inject("/model.bin", NoLength())
    request = _request(http_server, "/model.bin", tmp_path, size=100_000)

    with pytest.raises(IntegrityError, match="more than the expected 100000 bytes"):
        download_files([request], log=log)
    assert list(tmp_path.iterdir()) == []


def test_redirect_loop_is_a_download_error(http_server, tmp_path, log):
    http_server.redirect("/loop", "/loop")
    request = DownloadRequest(http_server.url("/loop"), tmp_path, "loop.bin", "0" * 64)

    with pytest.raises(DownloadError, match="more than 10 redirects"):
        download_files([request], log=log, retry=FAST)
    assert len(http_server.requests_for("/loop")) == 11


def test_file_already_present_is_skipped_without_a_request(http_server, tmp_path, log, output):
    body = os.urandom(50_000)
    http_server.add("/model.bin", body)
    (tmp_path / "model.bin").write_bytes(body)

    [result] = download_files([_request(http_server, "/model.bin", tmp_path)], log=log)

    assert http_server.requests == []
    assert (result.skipped, result.bytes_transferred, result.size) == (True, 0, len(body))
    assert "model.bin already present, checksum ok" in output.getvalue()


def test_file_present_with_other_bytes_is_downloaded_again(http_server, tmp_path, log, output):
    resource = http_server.add("/model.bin", os.urandom(50_000))
    (tmp_path / "model.bin").write_bytes(os.urandom(50_000))

    [result] = download_files([_request(http_server, "/model.bin", tmp_path)], log=log)

    assert not result.skipped
    assert hashlib.sha256(result.path.read_bytes()).hexdigest() == resource.sha256
    assert "downloading it again" in output.getvalue()


def test_token_goes_to_its_host_but_not_across_a_redirect(http_server, tmp_path, output, request):
    token = "hf_secret_value_0123456789"
    # The redirect goes to another host: a second server on another loopback address (an IP,
    # so nothing depends on what this machine's /etc/hosts resolves).
    elsewhere = LocalHTTPServer(address="127.0.0.2")
    elsewhere.start()
    request.addfinalizer(elsewhere.stop)
    resource = elsewhere.add("/file.bin", os.urandom(300_000))
    http_server.redirect("/gated/file.bin", elsewhere.url("/file.bin"))
    http_server.add("/direct.bin", os.urandom(1000))
    http_server.inject("/direct.bin", Respond(500))  # a retry, so more gets logged
    log_file = tmp_path / "logs" / "install.log"
    log = InstallerLogger(stream=output, verbosity=1, log_file=log_file)
    dest = tmp_path / "models"
    requests = [
        DownloadRequest(http_server.url("/gated/file.bin"), dest, "file.bin", resource.sha256),
        _request(http_server, "/direct.bin", dest),
    ]

    download_files(
        requests,
        log=log,
        retry=FAST,
        env={"TEST_TOKEN": token},
        token_hosts={"127.0.0.1": "TEST_TOKEN"},
    )
    log.close()

    [redirect] = http_server.requests_for("/gated/file.bin")
    [target] = elsewhere.requests_for("/file.bin")
    assert (redirect.host, redirect.status) == (f"127.0.0.1:{http_server.port}", 302)
    assert redirect.authorization == f"Bearer {token}"
    assert target.host == f"127.0.0.2:{elsewhere.port}"
    assert target.authorization is None
    assert all(
        r.authorization == f"Bearer {token}" for r in http_server.requests_for("/direct.bin")
    )
    text = log_file.read_text()
    assert "downloaded file.bin" in text
    assert "retrying" in text
    assert token not in text
    assert token not in output.getvalue()


def test_content_disposition_cannot_escape_the_folder(http_server, tmp_path, log):
    body = os.urandom(1000)
    http_server.add(
        "/api/download/42",
        body,
        headers={"Content-Disposition": 'attachment; filename="../../etc/passwd"'},
    )
    dest = tmp_path / "a" / "b"
    request = DownloadRequest(
        http_server.url("/api/download/42"), dest, sha256=hashlib.sha256(body).hexdigest()
    )

    [result] = download_files([request], log=log)

    assert result.path == (dest / "passwd").resolve()
    assert result.path.read_bytes() == body
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "b", "passwd"]


def test_name_from_rfc5987_content_disposition_and_from_the_url(http_server, tmp_path, log):
    named = os.urandom(100)
    plain = os.urandom(100)
    http_server.add(
        "/dl",
        named,
        headers={
            "Content-Disposition": 'attachment; filename="fallback.bin"; '
            "filename*=UTF-8''na%C3%AFve%20model.safetensors"
        },
    )
    http_server.add("/files/vae%20v2.pt", plain)
    requests = [
        DownloadRequest(http_server.url("/dl"), tmp_path, sha256=hashlib.sha256(named).hexdigest()),
        DownloadRequest(
            http_server.url("/files/vae%20v2.pt"),
            tmp_path,
            sha256=hashlib.sha256(plain).hexdigest(),
        ),
    ]

    results = download_files(requests, log=log)

    assert [r.path.name for r in results] == ["naïve model.safetensors", "vae v2.pt"]
    assert _leftovers(tmp_path) == []


def test_stall_past_the_timeout_resumes_on_the_next_try(http_server, tmp_path, log, output):
    resource = http_server.add("/model.bin", os.urandom(400_000))
    http_server.inject("/model.bin", Stall(5, after_bytes=100_000))

    [result] = download_files(
        [_request(http_server, "/model.bin", tmp_path)], log=log, retry=FAST, timeout=0.3
    )

    assert http_server.requests_for("/model.bin")[-1].range == "bytes=100000-"
    assert result.resumed_from == 100_000
    assert result.sha256 == resource.sha256
    assert "no data received for 0.3 s" in output.getvalue()


def test_stall_on_every_try_is_a_network_error(http_server, tmp_path, log):
    http_server.add("/model.bin", os.urandom(400_000))
    http_server.inject("/model.bin", Stall(5, after_bytes=100_000), times=None)
    retry = RetryPolicy(attempts=2, backoff_seconds=0.01)

    with pytest.raises(NetworkError, match=r"after 2 attempts: no data received for 0\.3 s"):
        download_files(
            [_request(http_server, "/model.bin", tmp_path)], log=log, retry=retry, timeout=0.3
        )
    assert _leftovers(tmp_path) == ["model.bin.part", "model.bin.part.json"]


def test_connection_refused_is_a_network_error_after_retries(tmp_path, log):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    request = DownloadRequest(f"http://127.0.0.1:{port}/x.bin", tmp_path, "x.bin", "0" * 64)

    with pytest.raises(NetworkError) as caught:
        download_files([request], log=log, retry=RetryPolicy(attempts=2, backoff_seconds=0.01))

    message = caught.value.message
    assert f"from 127.0.0.1 (http://127.0.0.1:{port}/x.bin) after 2 attempts: " in message
    assert "connection failed" in message


def test_tls_verification_failure_is_a_network_error(tmp_path, log, output):
    with LocalHTTPServer(tls=True) as server:
        server.add("/model.bin", b"x" * 100)
        request = _request(server, "/model.bin", tmp_path)

        with pytest.raises(NetworkError) as caught:
            download_files([request], log=log, retry=FAST)

    assert "TLS certificate verification failed for 127.0.0.1" in caught.value.message
    assert "SSL_CERT_FILE" in caught.value.hint
    assert "retrying" not in output.getvalue()  # a bad certificate does not fix itself


def test_tls_works_once_ssl_cert_file_trusts_the_certificate(tmp_path, log, monkeypatch):
    with LocalHTTPServer(tls=True) as server:
        resource = server.add("/model.bin", os.urandom(10_000))
        monkeypatch.setenv("SSL_CERT_FILE", str(server.cert_path))  # what the hint advises
        [result] = download_files([_request(server, "/model.bin", tmp_path)], log=log)
    assert result.sha256 == resource.sha256


def test_redirect_from_https_to_plain_http_needs_a_pinned_sha256(
    http_server, tmp_path, log, monkeypatch
):
    http_server.add("/model.bin", b"data")
    with LocalHTTPServer(tls=True) as secure:
        secure.redirect("/model.bin", http_server.url("/model.bin"))
        monkeypatch.setenv("SSL_CERT_FILE", str(secure.cert_path))
        request = DownloadRequest(secure.url("/model.bin"), tmp_path, "model.bin")

        with pytest.raises(DownloadError, match="not allowed"):
            download_files([request], log=log, allow_unverified=True)
    assert http_server.requests == []


def test_plain_http_without_sha256_is_refused_even_when_unverified_is_allowed(
    http_server, tmp_path, log
):
    http_server.add("/model.bin", b"data")
    request = DownloadRequest(http_server.url("/model.bin"), tmp_path, "model.bin")

    with pytest.raises(DownloadError, match="plain-HTTP"):
        download_files([request], log=log, allow_unverified=True)
    assert http_server.requests == []


def test_missing_sha256_is_refused_unless_allowed(tmp_path, log):
    request = DownloadRequest("https://example.invalid/model.bin", tmp_path, "model.bin")

    with pytest.raises(IntegrityError, match="no sha256") as caught:
        download_files([request], log=log)
    assert "--allow-unverified" in caught.value.hint


def test_one_failure_lets_the_others_finish_and_integrity_wins(http_server, tmp_path, log, output):
    good = http_server.add("/good.bin", os.urandom(100_000))
    http_server.add("/bad.bin", os.urandom(100_000))
    http_server.inject("/bad.bin", Corrupt())
    requests = [
        DownloadRequest(http_server.url("/missing.bin"), tmp_path, "missing.bin", "0" * 64),
        _request(http_server, "/bad.bin", tmp_path),
        _request(http_server, "/good.bin", tmp_path),
    ]

    with pytest.raises(IntegrityError):
        download_files(requests, log=log, jobs=2, retry=FAST)

    assert hashlib.sha256((tmp_path / "good.bin").read_bytes()).hexdigest() == good.sha256
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.bin"]
    assert "also failed" in output.getvalue()
    assert "HTTP 404" in output.getvalue()


def test_interactive_terminal_shows_progress_and_finished_lines(http_server, tmp_path):
    stream = _Terminal()
    log = InstallerLogger(stream=stream, color=False)
    assert log.interactive
    resources = [http_server.add(f"/p{i}.bin", os.urandom(200_000)) for i in range(2)]
    requests = [_request(http_server, f"/p{i}.bin", tmp_path) for i in range(2)]

    results = download_files(requests, log=log)

    assert [r.sha256 for r in results] == [r.sha256 for r in resources]
    assert "downloaded p0.bin (195.3 KiB" in stream.getvalue()
    assert "downloaded p1.bin" in stream.getvalue()


def test_ctrl_c_stops_promptly_and_keeps_the_part_for_a_resume(http_server, tmp_path, log):
    resource = http_server.add("/model.bin", os.urandom(MIB))
    http_server.inject("/model.bin", Stall(30, after_bytes=MIB // 2))
    script = textwrap.dedent(
        f"""
        import io
        from pathlib import Path
        from installer.core.downloads import DownloadRequest
        from installer.edges.download.api import download_files
        from installer.core.log import InstallerLogger
        request = DownloadRequest(
            {http_server.url("/model.bin")!r}, Path({str(tmp_path)!r}), "model.bin",
            {resource.sha256!r},
        )
        download_files([request], log=InstallerLogger(stream=io.StringIO()), timeout=60)
        """
    )
    child = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True)
    part = tmp_path / "model.bin.part"
    deadline = time.monotonic() + 20
    while not (part.exists() and part.stat().st_size == MIB // 2):
        assert time.monotonic() < deadline, "the child never reached the stall"
        time.sleep(0.05)

    interrupted = time.monotonic()
    child.send_signal(signal.SIGINT)
    _, stderr = child.communicate(timeout=10)
    assert time.monotonic() - interrupted < 3
    assert "KeyboardInterrupt" in stderr
    assert part.stat().st_size == MIB // 2
    assert (tmp_path / "model.bin.part.json").exists()
    assert not (tmp_path / "model.bin").exists()

    http_server.clear_faults()
    [result] = download_files([_request(http_server, "/model.bin", tmp_path)], log=log)
    assert http_server.requests_for("/model.bin")[-1].range == f"bytes={MIB // 2}-"
    assert result.resumed_from == MIB // 2


def test_peak_memory_stays_flat_for_a_1_gib_download(http_server, tmp_path):
    body = GeneratedBody(1024 * MIB, seed=11)
    http_server.add("/big.bin", body)
    script = textwrap.dedent(
        f"""
        import io
        from pathlib import Path
        from installer.core.downloads import DownloadRequest
        from installer.edges.download.api import download_files
        from installer.core.log import InstallerLogger
        request = DownloadRequest(
            {http_server.url("/big.bin")!r}, Path({str(tmp_path)!r}), "big.bin",
            {body.sha256!r}, {body.size},
        )
        [result] = download_files([request], log=InstallerLogger(stream=io.StringIO()))
        assert result.size == {body.size}
        status = open("/proc/self/status").read()
        print([line.split()[1] for line in status.splitlines() if line.startswith("VmHWM")][0])
        """
    )
    child = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert child.returncode == 0, child.stderr
    peak_kib = int(child.stdout.strip())
    assert peak_kib < 100 * 1024, f"peak RSS {peak_kib / 1024:.0f} MiB"
    assert (tmp_path / "big.bin").stat().st_size == body.size
    (tmp_path / "big.bin").unlink()
