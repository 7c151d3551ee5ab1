"""Tokens for the hosts that want one: which variable, which host, which scheme.

Tokens come from the environment (`HF_TOKEN` for Hugging Face, `CIVITAI_TOKEN` for Civitai) and go
only to their own hosts over HTTPS (or plain HTTP to a loopback host); the transfer drops them as
soon as a redirect leaves the original origin.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from types import MappingProxyType

from installer.edges.download.names import url_host, url_origin

DEFAULT_TOKEN_HOSTS: Mapping[str, str] = MappingProxyType(
    {"huggingface.co": "HF_TOKEN", "hf.co": "HF_TOKEN", "civitai.com": "CIVITAI_TOKEN"}
)
"""Host suffix → environment variable holding the bearer token for that host."""


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def token_env_var(url: str, token_hosts: Mapping[str, str] = DEFAULT_TOKEN_HOSTS) -> str | None:
    """Return the environment variable whose token belongs to the host of ``url``.

    Args:
        url: The URL about to be requested.
        token_hosts: Host suffix → variable name; a suffix matches the host
            itself and its subdomains (`hf.co` matches `cdn-lfs.hf.co`, not
            `nothf.co`). The longest matching suffix wins.

    Returns:
        The variable name, or `None` when the host gets no token.
    """
    host = url_host(url)
    if not host:
        return None
    for suffix in sorted(token_hosts, key=len, reverse=True):
        wanted = suffix.strip(".").lower()
        if wanted and (host == wanted or host.endswith("." + wanted)):
            return token_hosts[suffix]
    return None


def auth_headers_for(
    url: str, env: Mapping[str, str], token_hosts: Mapping[str, str] = DEFAULT_TOKEN_HOSTS
) -> dict[str, str]:
    """Return the `Authorization` header to send with a request to ``url``.

    A token goes only to its own host (see
    [`token_env_var`][installer.edges.download.auth.token_env_var]) and only over HTTPS,
    or plain HTTP to a loopback host, where nothing can overhear it.

    Args:
        url: The URL about to be requested (not one reached by a redirect to
            another host: callers drop the header then).
        env: Where to read tokens from, usually `os.environ`.
        token_hosts: Host suffix → variable name (default: Hugging Face and
            Civitai).

    Returns:
        `{"Authorization": "Bearer <token>"}`, or `{}` when no token applies.
    """
    variable = token_env_var(url, token_hosts)
    if variable is None:
        return {}
    scheme, host, _port = url_origin(url)
    if scheme != "https" and not (scheme == "http" and _is_loopback(host)):
        return {}
    token = env.get(variable, "").strip()
    return {"Authorization": f"Bearer {token}"} if token else {}
