"""How a failed try is repeated: the retry policy, `Retry-After`, and the signals between tries.

[`RetryPolicy`][installer.edges.download.retry.RetryPolicy] says how many tries and how long
to wait; the exceptions here are the transfer's own control flow (retry later, start over
from byte 0, stop because the batch was cancelled) and never leave the download package.
"""

from __future__ import annotations

import email.utils
import random
import re
import time
from dataclasses import dataclass

_RETRY_AFTER_SECONDS = re.compile(r"^\d+(\.\d+)?$")


@dataclass(frozen=True)
class RetryPolicy:
    """How many times a transfer is tried, and how long to wait in between.

    Attributes:
        attempts: Tries per file, the first one included (at least 1).
        backoff_seconds: Base of the exponential backoff: after the n-th
            failure the wait is between half and all of
            `backoff_seconds * 2**(n-1)` (random jitter spreads retries).
        max_backoff_seconds: Cap on one backoff wait.
        retry_after_cap_seconds: Cap on a wait asked for by a server's
            `Retry-After` header.
    """

    attempts: int = 5
    backoff_seconds: float = 1.0
    max_backoff_seconds: float = 30.0
    retry_after_cap_seconds: float = 120.0

    def __post_init__(self) -> None:
        """Reject a policy that cannot work.

        Raises:
            ValueError: `attempts` below 1 or a negative duration.
        """
        if self.attempts < 1:
            raise ValueError("RetryPolicy.attempts must be at least 1")
        if min(self.backoff_seconds, self.max_backoff_seconds, self.retry_after_cap_seconds) < 0:
            raise ValueError("RetryPolicy durations must not be negative")

    def delay(self, failures: int, retry_after: float | None = None) -> float:
        """Return the seconds to wait before the next try.

        Args:
            failures: How many tries have failed so far (1 after the first).
            retry_after: The server's `Retry-After`, in seconds, if it sent one.

        Returns:
            The server's wish capped at `retry_after_cap_seconds` when given,
            else the jittered exponential backoff.
        """
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.retry_after_cap_seconds)
        ceiling = min(self.max_backoff_seconds, self.backoff_seconds * 2.0 ** min(failures - 1, 62))
        # Jitter is for spreading load, not for security.
        return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311


DEFAULT_RETRY = RetryPolicy()
"""The retry policy used when none is given."""


class Retryable(Exception):
    """A failed try that may succeed later."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class StartOver(Exception):
    """The partial file cannot be trusted: download again from byte 0."""


class Cancelled(Exception):
    """The batch was interrupted; stop this transfer and keep its `.part`."""


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Return the wait a `Retry-After` header asks for, in seconds.

    Args:
        value: The header value: delta-seconds (`"120"`) or an HTTP date.
        now: The current POSIX time (default: the clock), for dates.

    Returns:
        The seconds to wait (0 for a date in the past), or `None` when the
        header is missing or unreadable.
    """
    if value is None:
        return None
    value = value.strip()
    if _RETRY_AFTER_SECONDS.match(value):
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)
