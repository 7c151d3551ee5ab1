"""Reading uv's failure output: the phrases are found even where uv wraps a line."""

from __future__ import annotations

from installer.edges.uv import is_network_failure, torch_conflict

WRAPPED_REFUSED = (
    "error: Request failed after 3 retries\n"
    "  Caused by: tcp\n"
    "      connect error: Connection\n"
    "      refused (os error 111)\n"
)
"""Only phrases that uv's line wrapping split: unfolded, none of them matches."""


def test_a_phrase_split_over_two_lines_is_a_network_failure() -> None:
    assert is_network_failure(WRAPPED_REFUSED)
    assert is_network_failure("  Caused by: dns\n   error: failed to lookup address")
    assert "connection refused" not in WRAPPED_REFUSED.lower()


def test_a_resolver_failure_is_not_a_network_failure() -> None:
    output = (
        "  × No solution found when resolving dependencies:\n"
        "  ╰─▶ Because xformers==9.9 was not found (connection refused earlier), ...\n"
    )
    assert not is_network_failure(output)
    assert not is_network_failure("all fine")


def test_no_conflict_without_a_resolver_failure() -> None:
    assert torch_conflict(WRAPPED_REFUSED) is None
