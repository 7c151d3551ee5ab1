"""The server side of one file's download: the GET, its redirects, and what its answers mean.

Redirects are followed here (at most
[`MAX_REDIRECTS`][installer.edges.download.remote.MAX_REDIRECTS]); tokens are dropped as soon
as a redirect leaves the original origin; HTTP 5xx, 408 and 429 become retries (honouring
`Retry-After`); other 4xx answers become a
[`DownloadError`][installer.core.errors.DownloadError] with a hint.
"""

from __future__ import annotations

import contextlib
import re
import ssl
import urllib.parse
from collections.abc import Iterator, Mapping

import httpx

from installer.core.downloads import DownloadRequest
from installer.core.errors import DownloadError, NetworkError
from installer.core.filenames import safe_filename
from installer.core.log import redact
from installer.edges.download.auth import auth_headers_for, token_env_var
from installer.edges.download.names import url_host, url_name, url_origin
from installer.edges.download.policy import normalized_sha256
from installer.edges.download.retry import Retryable, parse_retry_after

MAX_REDIRECTS = 10
"""Redirects followed for one request before giving up."""

_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})

_CONTENT_RANGE = re.compile(r"^bytes\s+(\d+)-(\d+)/(\d+|\*)$")


def tls_failure(exc: BaseException) -> ssl.SSLError | None:
    """Return the TLS error behind an httpx exception, if there is one.

    Args:
        exc: The exception httpx raised; its causes and contexts are followed.

    Returns:
        The `ssl.SSLError` found, or `None`.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def parse_content_range(value: str | None) -> tuple[int, int | None] | None:
    """Return (first byte, total size or None) of a `Content-Range` value.

    Args:
        value: The header value (`bytes 100-199/1000`), or `None`.

    Returns:
        The first byte and the total (`None` for `*`), or `None` when unreadable.
    """
    match = _CONTENT_RANGE.match((value or "").strip())
    if match is None:
        return None
    total = match.group(3)
    return int(match.group(1)), None if total == "*" else int(total)


class RemoteFile:
    """One file on its server: how to GET it and what the server's answers mean.

    The request side of a [`FileDownload`][installer.edges.download.transfer.FileDownload]:
    redirects (tokens dropped off the origin), status codes turned into retries or errors, and
    the TLS and timeout messages.
    """

    def __init__(
        self,
        request: DownloadRequest,
        *,
        client: httpx.Client,
        env: Mapping[str, str],
        token_hosts: Mapping[str, str],
    ) -> None:
        self.request = request
        self.client = client
        self.env = env
        self.token_hosts = token_hosts
        self.shown_url = redact(request.url)
        self.sha256 = normalized_sha256(request)
        self.name = request.filename or safe_filename(url_name(request.url))

    def _timeout_reason(self, exc: httpx.TimeoutException) -> str:
        limits = self.client.timeout
        if isinstance(exc, httpx.ConnectTimeout):
            return f"connecting timed out after {limits.connect} s"
        if isinstance(exc, httpx.ReadTimeout):
            return f"no data received for {limits.read} s (read timeout)"
        return f"timed out ({type(exc).__name__})"

    def _tls_error(self, exc: ssl.SSLError) -> NetworkError:
        host = url_host(self.request.url)
        if isinstance(exc, ssl.SSLCertVerificationError):
            what = f"TLS certificate verification failed for {host}"
            detail = exc.verify_message or exc.reason
        else:
            what = f"TLS handshake with {host} failed"
            detail = exc.reason or str(exc)
        return NetworkError(
            f"{what} while downloading {self.name} ({self.shown_url}): {detail}",
            hint="A proxy or firewall may be intercepting HTTPS: point SSL_CERT_FILE at its "
            "CA certificate, or fix the system clock and CA store, then run again.",
        )

    @contextlib.contextmanager
    def _open(self, headers: Mapping[str, str]) -> Iterator[httpx.Response]:
        """Send the GET, following redirects and dropping tokens off the origin."""
        url = self.request.url
        origin = url_origin(url)
        auth = auth_headers_for(url, self.env, self.token_hosts)
        for _ in range(MAX_REDIRECTS + 1):
            if url_origin(url) != origin:
                auth = {}
            request = self.client.build_request("GET", url, headers={**headers, **auth})
            response = self.client.send(request, stream=True)
            if response.status_code not in _REDIRECT_STATUSES:
                try:
                    self._raise_for_status(response)
                    yield response
                finally:
                    response.close()
                return
            location = response.headers.get("location")
            response.close()
            if not location:
                raise DownloadError(
                    f"{self.name}: the server answered HTTP {response.status_code} without "
                    f"a Location header ({self.shown_url})"
                )
            url = str(response.url.join(location))
            self._check_redirect(url)
        raise DownloadError(
            f"{self.name}: more than {MAX_REDIRECTS} redirects from {self.shown_url}",
            hint="The server is misconfigured or loops; check the URL in the manifest.",
        )

    def _check_redirect(self, url: str) -> None:
        scheme = urllib.parse.urlsplit(url).scheme.lower()
        if scheme == "https" or (scheme == "http" and self.sha256 is not None):
            return
        raise DownloadError(
            f"{self.name}: {self.shown_url} redirects to {redact(url)}, which is not allowed "
            "(only https://, or http:// for files with a pinned sha256)",
        )

    def _raise_for_status(self, response: httpx.Response) -> None:
        status = response.status_code
        if status in (200, 206, 416):
            return
        if status in (408, 429) or 500 <= status <= 599:
            wait_for = parse_retry_after(response.headers.get("retry-after"))
            raise Retryable(f"the server answered HTTP {status}", retry_after=wait_for)
        if status in (404, 410):
            raise DownloadError(
                f"{self.name}: the server has no file at {self.shown_url} (HTTP {status})",
                hint="Check the URL in the manifest; the file may have moved or been removed.",
            )
        if status in (401, 403):
            raise DownloadError(
                f"{self.name}: access denied by {url_host(self.request.url)} (HTTP {status}) "
                f"for {self.shown_url}",
                hint=self._auth_hint(),
            )
        raise DownloadError(
            f"{self.name}: the server refused {self.shown_url} (HTTP {status})",
            hint="Check the URL in the manifest.",
        )

    def _auth_hint(self) -> str:
        variable = token_env_var(self.request.url, self.token_hosts)
        if variable is None:
            return "The file needs credentials this installer cannot send; check the URL."
        if self.env.get(variable, "").strip():
            return (
                f"{variable} is set but was refused: check that the token is valid and that "
                "its account has accepted the model's terms (gated files)."
            )
        return f"Set {variable} to an access token that can read this file (gated or private)."
