"""Pure rules of the download engine: names, paths, tokens, retry timing."""

from __future__ import annotations

import email.utils
import io
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from installer.core.downloads import DownloadRequest
from installer.core.errors import ConfigError, DownloadError, IntegrityError, UsageError
from installer.core.filenames import safe_filename
from installer.core.log import InstallerLogger
from installer.edges.download.api import download_files
from installer.edges.download.auth import auth_headers_for, token_env_var
from installer.edges.download.files import human_size
from installer.edges.download.names import content_disposition_filename, ensure_within
from installer.edges.download.policy import check_request
from installer.edges.download.retry import RetryPolicy, parse_retry_after

RESERVED = {"CON", "PRN", "AUX", "NUL"} | {
    f"{p}{n}" for p in ("COM", "LPT") for n in "0123456789¹²³"
}
SHA = "ab" * 32


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("model.safetensors", "model.safetensors"),
        ("naïve model v2.safetensors", "naïve model v2.safetensors"),
        ("../../etc/passwd", "passwd"),
        ("/etc/passwd", "passwd"),
        ("..\\..\\Windows\\System32\\cmd.exe", "cmd.exe"),
        ("C:\\Users\\x\\evil.dll", "evil.dll"),
        ("C:evil.dll", "evil.dll"),
        ("dir/", "download"),
        ("..", "download"),
        (".", "download"),
        ("", "download"),
        ("  . ", "download"),
        ("name. . ", "name"),
        (".bashrc", "bashrc"),
        ("CON", "_CON"),
        ("con.txt", "_con.txt"),
        ("LPT9.tar.gz", "_LPT9.tar.gz"),
        ("COM1 .txt", "_COM1 .txt"),
        ("nul", "_nul"),
        ("CONSOLE.txt", "CONSOLE.txt"),
        ("a\x00b\x1fc\x7f.bin", "abc.bin"),
        ("invoice\u202efdp.exe", "invoicefdp.exe"),
        ('a<b>c:d"e|f?g*h.bin', "a_b_c_d_e_f_g_h.bin"),
    ],
)
def test_safe_filename_examples(name, expected):
    assert safe_filename(name) == expected


def test_safe_filename_shortens_long_names_and_keeps_the_extension():
    name = "é" * 300 + ".safetensors"
    result = safe_filename(name)
    assert len(result.encode()) <= 200
    assert result.endswith(".safetensors")
    assert result.startswith("éé")


@given(st.text())
def test_safe_filename_is_always_a_plain_safe_name(name):
    result = safe_filename(name)
    assert result
    assert "/" not in result
    assert "\\" not in result
    assert result not in (".", "..")
    assert result == result.strip(" .")
    assert result.split(".", 1)[0].rstrip(" ").upper() not in RESERVED
    assert not any(unicodedata.category(ch) in ("Cc", "Cf", "Cs") for ch in result)
    assert not any(ch in '<>:"|?*' for ch in result)
    assert len(result.encode("utf-8", "surrogatepass")) <= 200
    assert safe_filename(result) == result


@given(st.lists(st.sampled_from(["..", ".", "a", "CON", "", "x.bin", "C:"]), max_size=6))
def test_safe_filename_of_joined_traversals_stays_in_the_folder(parts):
    for separator in ("/", "\\"):
        result = safe_filename(separator.join(parts))
        assert result not in (".", "..")
        assert Path("/base", result).parent == Path("/base")


def test_ensure_within_accepts_paths_inside(tmp_path):
    assert ensure_within(tmp_path, tmp_path / "a" / "b.bin") == (tmp_path / "a" / "b.bin").resolve()
    assert ensure_within(tmp_path, Path("sub/../c.bin")) == (tmp_path / "c.bin").resolve()


@pytest.mark.parametrize("target", ["../outside.bin", "a/../../outside.bin", "/etc/passwd"])
def test_ensure_within_refuses_paths_outside(tmp_path, target):
    base = tmp_path / "base"
    base.mkdir()
    with pytest.raises(DownloadError, match="outside"):
        ensure_within(base, base / target)


def test_ensure_within_follows_symlinks(tmp_path):
    base = tmp_path / "base"
    base.mkdir()
    (base / "link").symlink_to(tmp_path)
    with pytest.raises(DownloadError):
        ensure_within(base, base / "link" / "escaped.bin")


@pytest.mark.parametrize(
    ("url", "header"),
    [
        ("https://huggingface.co/org/repo/resolve/main/model.safetensors", "Bearer hf"),
        ("https://HuggingFace.co./org/repo", "Bearer hf"),
        ("https://cdn-lfs.hf.co/repos/ab/cd", "Bearer hf"),
        ("https://hf.co/org/repo", "Bearer hf"),
        ("https://user@huggingface.co:443/x", "Bearer hf"),
        ("https://civitai.com/api/download/models/1", "Bearer cv"),
        ("https://www.civitai.com/api/download/models/1", "Bearer cv"),
        ("http://huggingface.co/org/repo", None),  # never a token over plain HTTP
        ("https://nothuggingface.co/x", None),
        ("https://huggingface.co.evil.example/x", None),
        ("https://example.com/huggingface.co/x", None),
        ("https://github.com/x", None),
    ],
)
def test_auth_headers_go_only_to_their_own_hosts(url, header):
    env = {"HF_TOKEN": "hf", "CIVITAI_TOKEN": "cv"}
    expected = {"Authorization": header} if header else {}
    assert auth_headers_for(url, env) == expected


def test_auth_headers_need_a_non_empty_token():
    assert auth_headers_for("https://huggingface.co/x", {}) == {}
    assert auth_headers_for("https://huggingface.co/x", {"HF_TOKEN": "  "}) == {}


def test_auth_headers_with_custom_hosts_allow_plain_http_only_on_loopback():
    hosts = {"127.0.0.1": "T", "localhost": "T", "mirror.example": "T"}
    env = {"T": "tok"}
    assert auth_headers_for("http://127.0.0.1:8080/x", env, hosts) == {
        "Authorization": "Bearer tok"
    }
    assert auth_headers_for("http://localhost/x", env, hosts) == {"Authorization": "Bearer tok"}
    assert auth_headers_for("http://mirror.example/x", env, hosts) == {}
    assert auth_headers_for("https://mirror.example/x", env, hosts) == {
        "Authorization": "Bearer tok"
    }


def test_token_env_var_prefers_the_longest_suffix():
    hosts = {"example.com": "GENERAL", "models.example.com": "SPECIFIC"}
    assert token_env_var("https://a.models.example.com/x", hosts) == "SPECIFIC"
    assert token_env_var("https://www.example.com/x", hosts) == "GENERAL"
    assert token_env_var("https://example.org/x", hosts) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 5 ", 5.0),
        ("1.5", 1.5),
        ("0", 0.0),
        (None, None),
        ("soon", None),
        ("-1", None),
    ],
)
def test_parse_retry_after_seconds(value, expected):
    assert parse_retry_after(value) == expected


def test_parse_retry_after_http_dates():
    now = 1_700_000_000.0
    future = email.utils.formatdate(now + 30, usegmt=True)
    past = email.utils.formatdate(now - 30, usegmt=True)
    assert parse_retry_after(future, now=now) == pytest.approx(30)
    assert parse_retry_after(past, now=now) == 0.0


def test_retry_delay_honours_retry_after_up_to_the_cap():
    policy = RetryPolicy(retry_after_cap_seconds=60)
    assert policy.delay(1, retry_after=7) == 7
    assert policy.delay(1, retry_after=3600) == 60


@given(st.integers(min_value=1, max_value=10_000))
def test_retry_delay_is_jittered_exponential_backoff_within_the_cap(failures):
    policy = RetryPolicy(backoff_seconds=0.5, max_backoff_seconds=8)
    ceiling = min(8, 0.5 * 2 ** min(failures - 1, 62))
    assert ceiling / 2 <= policy.delay(failures) <= ceiling


def test_retry_policy_rejects_nonsense():
    with pytest.raises(ValueError, match="attempts"):
        RetryPolicy(attempts=0)
    with pytest.raises(ValueError, match="negative"):
        RetryPolicy(backoff_seconds=-1)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ('attachment; filename="model.safetensors"', "model.safetensors"),
        ("attachment; filename=plain.bin", "plain.bin"),
        ('attachment; filename="a\\"b.bin"', 'a"b.bin'),
        ("attachment; filename*=UTF-8''na%C3%AFve.bin", "naïve.bin"),
        ("attachment; filename=\"x.bin\"; filename*=utf-8'en'%E2%82%AC.bin", "€.bin"),
        ('attachment; FILENAME="upper.bin"', "upper.bin"),
        ('attachment; filename="../../etc/passwd"', "../../etc/passwd"),
        ("inline", None),
        ("", None),
        (None, None),
    ],
)
def test_content_disposition_filename(header, expected):
    assert content_disposition_filename(header) == expected


def test_check_request_policy(tmp_path):
    def request(url: str, **kwargs: object) -> DownloadRequest:
        return DownloadRequest(url, tmp_path, **kwargs)  # type: ignore[arg-type]

    check_request(request("https://h.example/x", sha256=SHA.upper()))
    check_request(request("http://h.example/x", sha256=SHA))
    check_request(request("https://h.example/x"), allow_unverified=True)
    with pytest.raises(DownloadError, match="plain-HTTP"):
        check_request(request("http://h.example/x"), allow_unverified=True)
    with pytest.raises(IntegrityError, match="no sha256"):
        check_request(request("https://h.example/x"))
    with pytest.raises(DownloadError, match="only http"):
        check_request(request("ftp://h.example/x", sha256=SHA))
    with pytest.raises(ConfigError, match="64 hex"):
        check_request(request("https://h.example/x", sha256="abc"))
    with pytest.raises(ConfigError, match="unsafe file name"):
        check_request(request("https://h.example/x", sha256=SHA, filename="../x.bin"))


def test_download_files_refuses_bad_batches_before_any_request(tmp_path):
    log = InstallerLogger(stream=io.StringIO())
    request = DownloadRequest("https://h.example/x.bin", tmp_path, "x.bin", SHA)
    assert download_files([], log=log) == []
    with pytest.raises(UsageError, match="--jobs"):
        download_files([request], log=log, jobs=0)
    with pytest.raises(ConfigError, match="same file"):
        download_files([request, request], log=log)
    with pytest.raises(IntegrityError):
        download_files([request, DownloadRequest("https://h.example/y", tmp_path)], log=log)


@pytest.mark.parametrize(
    ("count", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (12.3 * 1024**2, "12.3 MiB"),
        (5 * 1024**4, "5120.0 GiB"),
    ],
)
def test_human_size(count, text):
    assert human_size(count) == text
