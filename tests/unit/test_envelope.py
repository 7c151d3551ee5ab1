"""The JSON envelope every `--json` output has, pinned as a contract.

Scripts parse these keys; changing them is a breaking change and must change
this test on purpose.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from installer.core.envelope import ENVELOPE_KEYS, dumps, envelope
from installer.core.errors import ConfigError, PlanError

ENVELOPE = ["schema_version", "command", "status", "exit_code", "data", "errors"]
PLAN_KEYS = {
    "schema_version", "tool_version", "platform", "install_dir", "paths", "python",
    "python_supported", "min_free_gb", "comfyui", "gpu", "torch", "index", "lock", "inputs",
    "custom_nodes", "removed_custom_nodes", "recorded_nodes",
    "optimizations", "models", "steps", "tune", "warnings", "blocking",
}  # fmt: skip
STEP_KEYS = {
    "number", "id", "title", "action", "reason", "cascade", "details", "inputs", "fingerprint",
    "depends_on",
}  # fmt: skip
TORCH_KEYS = {
    "variant",
    "index_url",
    "cuda",
    "packages",
    "version",
    "reason",
    "installed",
    "minor_version_compat",
    "advice",
}
GPU_KEYS = {"source", "reason", "driver_version", "cuda_driver_version", "planning_cc", "gpus"}
OPTIMIZATION_KEYS = {
    "name", "kind", "action", "reason", "distribution", "requirement", "import_name",
    "install_options", "extra_index_urls", "retry", "required", "wheel", "builds_from_source",
    "source", "fallback_for",
}  # fmt: skip
PATHS_KEYS = {"install_dir", "venv", "venv_python", "comfyui", "state_dir", "launcher"}
ERROR_KEYS = {"code", "message", "hint"}


def test_envelope_keys_are_pinned() -> None:
    assert list(ENVELOPE_KEYS) == ENVELOPE
    ok = envelope(["status", "/x"], {"a": 1})
    assert list(ok) == ENVELOPE
    assert ok == {
        "schema_version": 1,
        "command": ["status", "/x"],
        "status": "ok",
        "exit_code": 0,
        "data": {"a": 1},
        "errors": [],
    }


def test_error_envelope() -> None:
    error = ConfigError("bad.json is not valid", "Fix it.")
    document = envelope(["config", "validate", "bad.json"], error=error)
    assert list(document) == ENVELOPE
    assert document["status"] == "error"
    assert document["exit_code"] == 2
    assert document["data"] == {}
    assert document["errors"] == [
        {"code": "config", "message": "bad.json is not valid", "hint": "Fix it."}
    ]


def test_exit_code_overrides_and_drives_status() -> None:
    assert envelope(["x"], {}, exit_code=1)["status"] == "error"
    assert envelope(["x"], error=PlanError("no"), exit_code=0)["status"] == "ok"


def test_dumps_redacts_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_abcdefSECRET")
    text = dumps(
        envelope(
            ["install"],
            {"url": "https://alice:hunter2@mirror.example/simple", "t": "hf_abcdefSECRET"},
        )
    )
    assert "hunter2" not in text
    assert "hf_abcdefSECRET" not in text
    assert json.loads(text)["data"]["url"] == "https://alice:***@mirror.example/simple"


# --- through the command line -------------------------------------------------------


def test_install_dry_run_json_contract(cli: Callable[..., Any], tmp_path: Path) -> None:
    target = tmp_path / "x"
    result = cli("install", target, "--dry-run", "--json", "--gpu", "9.0", "--cuda-driver", "13.0")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)  # stdout is the JSON and nothing else
    assert list(document) == ENVELOPE
    assert document["schema_version"] == 1
    assert document["command"] == ["install", str(target), "--dry-run"]
    assert (document["status"], document["exit_code"], document["errors"]) == ("ok", 0, [])
    data = document["data"]
    assert set(data) == PLAN_KEYS
    assert set(data["paths"]) == PATHS_KEYS
    assert set(data["torch"]) == TORCH_KEYS
    assert set(data["gpu"]) == GPU_KEYS
    assert data["tune"] == {"action": "skip", "reason": "--gpu 9.0: not this machine's GPU"}
    assert [s["id"] for s in data["steps"]] == [
        "preflight", "uv", "python", "venv", "comfyui", "gpu", "torch", "requirements",
        "custom_nodes", "optimizations", "launchers", "models", "verify",
    ]  # fmt: skip
    for step in data["steps"]:
        assert set(step) == STEP_KEYS
        assert step["action"] in {"run", "skip", "done"}
        assert step["reason"]
    for entry in data["optimizations"]:
        assert set(entry) == OPTIMIZATION_KEYS
        assert entry["action"] in {"install", "skip"}
        assert entry["reason"]
    assert data["schema_version"] == 1
    assert data["install_dir"] == str(target)
    assert not target.exists()


def test_json_redacts_credentials_in_the_plan(cli: Callable[..., Any], tmp_path: Path) -> None:
    result = cli(
        "install", tmp_path / "x", "--dry-run", "--json", "--gpu", "none",
        "--index-url", "https://alice:hunter2@mirror.example/simple",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "hunter2" not in result.stdout
    assert json.loads(result.stdout)["data"]["index"]["index_url"] == (
        "https://alice:***@mirror.example/simple"
    )


def assert_error_envelope(
    result: Any, command: list[str], code: str, exit_code: int
) -> dict[str, Any]:
    assert result.exit_code == exit_code, result.output
    document = json.loads(result.stdout)  # only the JSON on stdout
    assert list(document) == ENVELOPE
    assert document["command"] == command
    assert document["status"] == "error"
    assert document["exit_code"] == exit_code
    assert len(document["errors"]) == 1
    error = document["errors"][0]
    assert set(error) == ERROR_KEYS
    assert error["code"] == code
    assert error["message"]
    assert error["hint"]
    assert "Traceback" not in result.output
    return error


def test_bad_config_json_envelope(
    cli: Callable[..., Any], tmp_path: Path, write_config: Callable[..., Path]
) -> None:
    path = write_config(lambda data: data["torch"].__setitem__("variants", []))
    target = tmp_path / "x"
    result = cli("install", target, "--dry-run", "--json", "--config", path)
    error = assert_error_envelope(result, ["install", str(target), "--dry-run"], "config", 2)
    assert str(path) in error["message"]
    assert "torch.variants" in error["message"]
    validate = cli("config", "validate", path, "--json")
    assert_error_envelope(validate, ["config", "validate", str(path)], "config", 2)


def test_usage_error_json_envelope(cli: Callable[..., Any], tmp_path: Path) -> None:
    target = tmp_path / "x"
    result = cli("install", target, "--dry-run", "--json", "--cuda-driver", "12.8")
    error = assert_error_envelope(result, ["install", str(target), "--dry-run"], "usage", 2)
    assert "--gpu" in error["message"]


def test_plan_error_json_envelope(cli: Callable[..., Any], tmp_path: Path) -> None:
    target = tmp_path / "x"
    result = cli(
        "install", target, "--dry-run", "--json", "--only", "requirements", "--gpu", "none"
    )
    error = assert_error_envelope(result, ["install", str(target), "--dry-run"], "plan", 2)
    assert "requirements needs" in error["message"]


def test_status_json_without_an_install(cli: Callable[..., Any], tmp_path: Path) -> None:
    result = cli("status", tmp_path, "--json")
    assert_error_envelope(result, ["status", str(tmp_path)], "usage", 2)
