"""Run one API-format workflow on a local ComfyUI over HTTP and fetch its first image.

`POST /prompt`, then `GET /history/{id}` until the prompt is there (no websocket), then
the first image of its output nodes through `GET /view`. Errors name the node and
ComfyUI's own message. httpx, with no proxy from the environment (the ComfyUI is local).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

POLL_S = 0.02
"""Seconds between two looks at `/history/{id}` (the figure's resolution)."""
PROMPT_TIMEOUT_S = 3600.0
IMAGE_KEYS = ("images", "gifs")


class WorkflowError(Exception):
    """ComfyUI refused the workflow or a node failed: ``node`` and ComfyUI's ``message``."""

    def __init__(self, node: str | None, message: str) -> None:
        """Create the error.

        Args:
            node: The failing node (``5 (KSampler)``), when ComfyUI named one.
            message: ComfyUI's message.
        """
        super().__init__(f"{'node ' + node + ': ' if node else ''}{message}")
        self.node = node
        self.message = message


@dataclass(frozen=True)
class PromptRun:
    """One run of a workflow: seconds from the POST to the prompt in the history, its image."""

    wall_s: float
    image: Path | None


def _node_errors(body: dict[str, Any], workflow: dict[str, Any]) -> WorkflowError:
    error = body.get("error") or {}
    message = error.get("message") if isinstance(error, dict) else str(error)
    for node, found in sorted((body.get("node_errors") or {}).items()):
        errors = found.get("errors") if isinstance(found, dict) else None
        detail: dict[str, Any] = next(iter(errors or []), {})
        kind = (workflow.get(node) or {}).get("class_type") or found.get("class_type", "?")
        text = str(detail.get("message") or message or "invalid input")
        extra = detail.get("details")
        return WorkflowError(f"{node} ({kind})", f"{text} ({extra})" if extra else text)
    return WorkflowError(None, message or "ComfyUI refused the prompt")


def _execution_error(status: dict[str, Any]) -> WorkflowError:
    for kind, detail in status.get("messages") or []:
        if kind == "execution_error" and isinstance(detail, dict):
            node = f"{detail.get('node_id')} ({detail.get('node_type')})"
            text = f"{detail.get('exception_type', '')}: {detail.get('exception_message', '')}"
            return WorkflowError(node, text.strip(": \n"))
    return WorkflowError(None, "the prompt failed; ComfyUI's log says why")


class ComfyClient:
    """A ComfyUI's HTTP API at ``url`` (a context manager)."""

    def __init__(self, url: str) -> None:
        """Open the connection pool.

        Args:
            url: ComfyUI's base URL, e.g. ``http://127.0.0.1:8190``.
        """
        self._http = httpx.Client(base_url=url, trust_env=False, timeout=60.0)

    def __enter__(self) -> ComfyClient:
        """Return the client."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close the connection pool."""
        self._http.close()

    def run(
        self, workflow: dict[str, Any], keep: Path, timeout: float = PROMPT_TIMEOUT_S
    ) -> PromptRun:
        """Queue ``workflow``, wait until it has run, keep its first image as ``keep``.EXT.

        Args:
            workflow: The API-format nodes.
            keep: Where to write the image, without its extension.
            timeout: Seconds to wait for the prompt at most.

        Raises:
            WorkflowError: ComfyUI refused the workflow or a node failed.
            httpx.HTTPError: ComfyUI stopped answering.
            TimeoutError: The prompt did not finish within ``timeout``.
        """
        start = time.monotonic()
        answer = self._http.post(
            "/prompt", json={"prompt": workflow, "client_id": uuid.uuid4().hex}
        )
        if answer.status_code >= 400:
            try:
                body = answer.json()
            except ValueError:
                body = {"error": {"message": f"HTTP {answer.status_code}"}}
            raise _node_errors(body if isinstance(body, dict) else {}, workflow)
        prompt_id = str(answer.json()["prompt_id"])
        while True:
            history = self._http.get(f"/history/{prompt_id}").json()
            entry = history.get(prompt_id) if isinstance(history, dict) else None
            if entry:
                wall = time.monotonic() - start
                break
            if time.monotonic() - start > timeout:
                raise TimeoutError(f"the prompt did not finish within {timeout:.0f} s")
            time.sleep(POLL_S)
        status = entry.get("status") or {}
        if status.get("status_str") == "error":
            raise _execution_error(status)
        return PromptRun(wall, self._first_image(entry.get("outputs") or {}, keep))

    def _first_image(self, outputs: dict[str, Any], keep: Path) -> Path | None:
        for node in sorted(outputs, key=lambda key: (len(key), key)):
            for key in IMAGE_KEYS:
                for image in outputs[node].get(key) or []:
                    if not isinstance(image, dict) or "filename" not in image:
                        continue
                    params = {
                        "filename": image["filename"],
                        "subfolder": image.get("subfolder", ""),
                        "type": image.get("type", "output"),
                    }
                    answer = self._http.get("/view", params=params)
                    answer.raise_for_status()
                    suffix = Path(str(image["filename"])).suffix or ".png"
                    path = keep.with_name(keep.name + suffix)
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(answer.content)
                    return path
        return None
