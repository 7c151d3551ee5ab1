"""The one JSON shape every `--json` output has.

```json
{"schema_version": 1, "command": ["install", "DIR"], "status": "ok",
 "exit_code": 0, "data": {...}, "errors": [{"code": "...", "message": "...", "hint": "..."}]}
```

`data` is the command's own result (a plan, a doctor report, a status); on
failure `status` is `error`, `exit_code` is the process exit code and `errors`
says what happened and what to do. Secrets are redacted before printing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from installer.core.errors import InstallerError
from installer.core.log import redact

ENVELOPE_SCHEMA_VERSION = 1
ENVELOPE_KEYS = ("schema_version", "command", "status", "exit_code", "data", "errors")


def envelope(
    command: Sequence[str],
    data: Any = None,
    error: InstallerError | None = None,
    exit_code: int | None = None,
) -> dict[str, Any]:
    """Build the envelope for a command's result or its error.

    Args:
        command: The command words and arguments, e.g. ``["install", "/srv/x"]``.
        data: The command's result (JSON-serialisable); ``{}`` when None.
        error: The error the command ended with, if any.
        exit_code: Overrides the exit code (defaults to the error's, else 0).
    """
    code = exit_code if exit_code is not None else (int(error.exit_code) if error else 0)
    errors = (
        []
        if error is None
        else [{"code": error.code, "message": error.message, "hint": error.hint}]
    )
    return {
        "schema_version": ENVELOPE_SCHEMA_VERSION,
        "command": list(command),
        "status": "ok" if code == 0 else "error",
        "exit_code": code,
        "data": data if data is not None else {},
        "errors": errors,
    }


def dumps(document: dict[str, Any]) -> str:
    """Serialise an envelope as indented JSON with secrets redacted.

    Args:
        document: An envelope from [`envelope`][installer.core.envelope.envelope]; values JSON
            cannot hold are written with `str()`.
    """
    return redact(json.dumps(document, indent=2, default=str))
