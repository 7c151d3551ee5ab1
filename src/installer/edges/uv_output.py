"""Reading uv's output: a failure in one line, and a hash mismatch as an IntegrityError.

[`uv_failure_summary`][installer.edges.uv_output.uv_failure_summary] shortens uv's error
text to the line a message can carry; [`integrity_error`][installer.edges.uv_output.integrity_error]
recognises a file that does not match its locked sha256 (exit code 4). Both are pure
functions of the output; [`installer.edges.uv`][installer.edges.uv] and the lock feature
call them.
"""

from __future__ import annotations

import re
from pathlib import Path

from installer.core.errors import CommandFailedError, IntegrityError
from installer.core.log import redact
from installer.core.nodes import ResolutionConflict

_HASH_MISMATCH = re.compile(r"hash mismatch for `(?P<what>[^`]+)`", re.IGNORECASE)


def integrity_error(error: BaseException, lock_path: Path | None = None) -> IntegrityError | None:
    """Turn a uv failure caused by a hash mismatch into an IntegrityError (exit code 4).

    Args:
        error: The error raised around a uv call (its cause chain is searched
            for uv's output).
        lock_path: The lock the hashes came from, for the message.

    Returns:
        The IntegrityError to raise, or None when the failure was not a hash mismatch.
    """
    current: BaseException | None = error
    while current is not None:
        if isinstance(current, CommandFailedError):
            output = current.output
            match = _HASH_MISMATCH.search(output)
            if match is None:
                return None
            digests = re.findall(r"sha256:([0-9a-f]{64})", output)
            detail = ""
            if len(digests) >= 2:
                detail = f" (expected sha256 {digests[0][:16]}…, got {digests[-1][:16]}…)"
            source = f" in {lock_path.name}" if lock_path else ""
            return IntegrityError(
                f"{match.group('what')} does not match its sha256{source}{detail}; "
                "nothing was installed.",
                "The index served a different file than the one locked. Do not use it; "
                "if the upstream file really changed, check why before refreshing the lock "
                "with `comfy-install lock`.",
            )
        current = current.__cause__
    return None


def uv_failure_summary(output: str) -> str:
    """Return uv's error in one line: the `error:` line and its first and last causes.

    Args:
        output: uv's combined output.

    Returns:
        The summary, secrets redacted. Without an `error:` line: uv's last line, or `uv failed
        without output` when it printed nothing.
    """
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    start = next((i for i, line in enumerate(lines) if line.startswith("error:")), None)
    if start is None:
        return lines[-1] if lines else "uv failed without output"
    head = lines[start].removeprefix("error:").strip()
    causes = [line.removeprefix("cause:").strip() for line in lines[start + 1 :]]
    causes = [cause for cause in causes if cause and not cause.startswith("hint:")]
    if not causes:
        return redact(head)
    shown = [causes[0]] if len(causes) == 1 else [causes[0], causes[-1]]
    if head.endswith(":"):
        return redact(head + " " + "; ".join(shown))
    return redact(f"{head}: {'; '.join(shown)}")


_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]*(?:\[[A-Za-z0-9._,-]+\])?"
_SPEC = r"(?:(?:[=<>!~]=?|===)[^\s,;]+(?:,(?:[=<>!~]=?)[^\s,;]+)*)?"
_YOU_REQUIRE = re.compile(rf"you require (?P<req>{_NAME}{_SPEC})")
_AND_REQUIRE = re.compile(rf"you require {_NAME}{_SPEC} and (?P<req>{_NAME}{_SPEC})")
_DEPENDS = re.compile(
    rf"(?:all versions of |all of: |only )?(?P<pkg>{_NAME}){_SPEC}\s+depends? on\s+"
    rf"(?P<req>{_NAME}{_SPEC})"
)


def resolution_conflict(output: str) -> ResolutionConflict | None:
    """Read uv's `No solution found` error: the requirements and dependencies it names.

    Args:
        output: The combined output of a failed `uv pip compile` (or install).

    Returns:
        The requirements after `you require`, the `X depends on Y` pairs and a one-line summary;
        None when the failure was not a resolution conflict.
    """
    flat = " ".join(output.split())
    if "no solution found" not in flat.lower():
        return None
    required = [m.group("req").rstrip(".") for m in _YOU_REQUIRE.finditer(flat)]
    required += [m.group("req").rstrip(".") for m in _AND_REQUIRE.finditer(flat)]
    depends = [
        (m.group("pkg"), m.group("req").rstrip("."))
        for m in _DEPENDS.finditer(flat)
        if m.group("pkg").lower() not in {"you", "your", "requirements"}
    ]
    cause = flat.split("cause:", 1)[1].strip() if "cause:" in flat else flat
    cause = cause.split(" hint:", 1)[0].strip()
    return ResolutionConflict(
        tuple(dict.fromkeys(required)),
        tuple(dict.fromkeys(depends)),
        redact(cause if len(cause) <= 400 else cause[:399] + "…"),
    )
