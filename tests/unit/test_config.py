"""Configuration files: loading, schema export, and errors people can act on.

Every bad file must end with exit code 2 and one message naming the file, the
JSON path of the fault and what was expected, never a traceback, both from
`comfy-install config validate FILE` and from `install --dry-run --config FILE`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from installer.core.config import Dependencies, ToolsManifest
from installer.core.config_files import (
    load_dependencies,
    load_tools_manifest,
    shipped_path,
    validate_file,
)
from installer.core.errors import ConfigError

Mutate = Callable[[dict[str, Any]], Any]


def set_at(path: tuple[Any, ...], value: Any) -> Mutate:
    def mutate(data: dict[str, Any]) -> None:
        target = data
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return mutate


def delete(key: str) -> Mutate:
    return lambda data: data.pop(key)


# (id, change to the shipped file, JSON path in the message, what was expected)
BAD_FILES = [
    pytest.param(
        set_at(("torch", "packages"), "torch==2.9.1"),
        "torch.packages",
        "valid list (got string)",
        id="packages-is-a-string",
    ),
    pytest.param(
        set_at(("optimizations", "packages", 0, "torch_constraints", 1, "torch"), 2.9),
        "optimizations.packages[0].torch_constraints[1].torch",
        "valid string (got number)",
        id="constraint-torch-is-a-number",
    ),
    pytest.param(
        set_at(("torch", "variants", 0, "min_cuda_driver"), 12.8),
        "torch.variants[0].min_cuda_driver",
        "valid string (got number)",
        id="min-cuda-driver-is-a-number",
    ),
    pytest.param(
        set_at(("torch", "packages", 1), 5),
        "torch.packages[1]",
        "valid string (got integer)",
        id="package-item-is-a-number",
    ),
    pytest.param(
        set_at(("preflight", "min_free_gb"), "lots"),
        "preflight.min_free_gb",
        "valid number",
        id="min-free-gb-is-a-string",
    ),
    pytest.param(set_at(("colour",), "red"), "colour", "unknown key", id="unknown-key-top-level"),
    pytest.param(
        set_at(("optimizations", "packages", 1, "colour"), "red"),
        "optimizations.packages[1].colour",
        "unknown key",
        id="unknown-key-nested",
    ),
    pytest.param(
        set_at(("torch", "variants"), []),
        "torch.variants",
        "at least 1 item",
        id="empty-variants",
    ),
    pytest.param(
        set_at(("optimizations", "packages", 0, "torch_constraints", 0, "torch"), "~2.9"),
        "optimizations.packages[0].torch_constraints[0].torch",
        "not a PEP 440 version specifier",
        id="spec-not-pep440",
    ),
    pytest.param(
        set_at(("optimizations", "packages", 0, "torch_constraints", 0, "torch"), ">=2.9,,<2.10"),
        "optimizations.packages[0].torch_constraints[0].torch",
        "not a PEP 440 version specifier",
        id="spec-with-empty-clause",
    ),
    pytest.param(
        set_at(("comfyui", "commit"), "59afc398"),
        "comfyui.commit",
        "40-character git commit hash",
        id="short-commit",
    ),
    pytest.param(
        set_at(("comfyui", "commit"), "G" * 40),
        "comfyui.commit",
        "40-character git commit hash",
        id="commit-not-hex",
    ),
    pytest.param(
        set_at(("torch", "packages"), ["torch>=2.9", "torchvision==0.24.1"]),
        "torch.packages",
        "torch must be pinned exactly",
        id="torch-not-pinned",
    ),
    pytest.param(
        set_at(("optimizations", "packages", 0, "requires"), ["nvidia", "gpu>=8"]),
        "optimizations.packages[0].requires[1]",
        "not a requires term",
        id="bad-requires-term",
    ),
    pytest.param(
        set_at(("pip_packages", "sageattention_wheels", 0, "cuda"), ["cuda12"]),
        "pip_packages.sageattention_wheels[0].cuda[0]",
        "^cu[0-9]+$",
        id="bad-cuda-name",
    ),
    pytest.param(
        set_at(("schema_version",), 2), "schema_version", "Input should be 1", id="schema-version"
    ),
    pytest.param(
        set_at(("optimizations", "packages", 1, "pypi_package", "windows"), 3),
        "optimizations.packages[1].pypi_package.windows",
        "valid string (got integer)",
        id="per-platform-name-is-a-number",
    ),
]


def assert_config_failure(result: Any, *needles: str) -> None:
    """Exit 2, one clean message on stderr with every needle, nothing on stdout."""
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert isinstance(result.exception, SystemExit), result.exception
    assert result.stdout == ""
    assert "Traceback" not in result.output
    assert result.stderr.startswith("error: ")
    assert "hint: " in result.stderr
    for needle in needles:
        assert needle in result.stderr, (needle, result.stderr)


@pytest.mark.parametrize(("mutate", "json_path", "expected"), BAD_FILES)
def test_bad_config_via_validate(
    cli: Any, write_config: Callable[[Mutate], Path], mutate: Mutate, json_path: str, expected: str
) -> None:
    path = write_config(mutate)
    result = cli("config", "validate", path)
    assert_config_failure(result, str(path), f"{json_path}: ", expected)
    assert "constrained-str" not in result.stderr
    assert "function-after" not in result.stderr


@pytest.mark.parametrize(("mutate", "json_path", "expected"), BAD_FILES)
def test_bad_config_via_install(
    cli: Any,
    tmp_path: Path,
    write_config: Callable[[Mutate], Path],
    mutate: Mutate,
    json_path: str,
    expected: str,
) -> None:
    path = write_config(mutate)
    target = tmp_path / "install"
    result = cli("install", target, "--dry-run", "--gpu", "none", "--config", path)
    assert_config_failure(result, str(path), f"{json_path}: ", expected)
    assert not target.exists()


def test_missing_top_level_key_is_named(cli: Any, write_config: Callable[[Mutate], Path]) -> None:
    path = write_config(delete("comfyui"))
    assert_config_failure(cli("config", "validate", path), str(path), "comfyui: required key")


def test_validate_names_a_missing_torch_section(
    cli: Any, write_config: Callable[[Mutate], Path]
) -> None:
    path = write_config(delete("torch"))
    result = cli("config", "validate", path)
    assert_config_failure(result, "torch: required key is missing")
    assert "python: unknown key" not in result.stderr


def test_missing_torch_section_via_install(
    cli: Any, tmp_path: Path, write_config: Callable[[Mutate], Path]
) -> None:
    path = write_config(delete("torch"))
    result = cli("install", tmp_path / "x", "--dry-run", "--gpu", "none", "--config", path)
    assert_config_failure(result, "torch: required key is missing")


INVALID_JSON = '{\n  "schema_version": 1,\n  "python": {"default": "3.12",}\n}\n'


@pytest.mark.parametrize("command", ["validate", "install"])
def test_invalid_json_names_line_and_column(cli: Any, tmp_path: Path, command: str) -> None:
    path = tmp_path / "broken.json"
    path.write_text(INVALID_JSON, encoding="utf-8")
    if command == "validate":
        result = cli("config", "validate", path)
    else:
        result = cli("install", tmp_path / "x", "--dry-run", "--gpu", "none", "--config", path)
    # The stray comma's closing brace is on line 3, column 32.
    assert_config_failure(result, str(path), "not valid JSON", "line 3 column 32")


@pytest.mark.parametrize("command", ["validate", "install"])
def test_missing_file(cli: Any, tmp_path: Path, command: str) -> None:
    path = tmp_path / "nope.json"
    if command == "validate":
        result = cli("config", "validate", path)
    else:
        result = cli("install", tmp_path / "x", "--dry-run", "--gpu", "none", "--config", path)
    assert_config_failure(result, str(path), "does not exist")


def test_every_fault_is_listed(write_config: Callable[[Mutate], Path]) -> None:
    def two_faults(data: dict[str, Any]) -> None:
        data["colour"] = "red"
        data["comfyui"]["commit"] = "abc"

    with pytest.raises(ConfigError) as caught:
        load_dependencies(write_config(two_faults))
    assert "colour: unknown key" in caught.value.message
    assert "comfyui.commit: " in caught.value.message
    assert caught.value.exit_code == 2


def test_a_config_error_is_not_a_pydantic_error(write_config: Callable[[Mutate], Path]) -> None:
    with pytest.raises(ConfigError) as caught:
        load_dependencies(write_config(set_at(("torch", "variants"), [])))
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


# --- the shipped files --------------------------------------------------------


def test_shipped_files_load(deps: Dependencies, manifest: ToolsManifest) -> None:
    assert deps.comfyui.commit == "59afc3984868289f808d02fa5cd180edfb2de240"
    assert [p.name for p in deps.optimizations.packages] == ["xformers", "triton"]
    # Every shipped wheel has its checksum in the shipped manifest.
    for wheel in deps.pip_packages.sageattention_wheels:
        assert wheel.filename in manifest.files, wheel.filename
        assert len(manifest.files[wheel.filename].sha256) == 64


@pytest.mark.parametrize(
    ("name", "kind"),
    [("dependencies.json", "dependencies"), ("tools_manifest.json", "tools-manifest")],
)
def test_validate_shipped_files(cli: Any, name: str, kind: str) -> None:
    path = shipped_path(name)
    assert validate_file(path) == kind
    result = cli("config", "validate", path)
    assert result.exit_code == 0, result.output
    assert f"is a valid {kind} file" in result.stderr
    assert result.stdout == ""
    as_json = cli("config", "validate", path, "--json")
    assert as_json.exit_code == 0
    assert json.loads(as_json.stdout)["data"] == {"file": str(path), "kind": kind, "valid": True}


def test_validate_with_an_unknown_kind_is_exit_2(cli: Any) -> None:
    result = cli("config", "validate", shipped_path("dependencies.json"), "--kind", "nonsense")
    assert result.exit_code == 2
    assert "nonsense" in result.stderr


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


def _types(node: Any) -> set[str]:
    if isinstance(node, dict):
        own = node.get("type")
        found = (
            set(own if isinstance(own, list) else [own]) if isinstance(own, str | list) else set()
        )
        for key, value in node.items():
            if key != "properties":
                found |= _types(value)
            else:
                for child in value.values():
                    found |= _types(child)
        return found
    if isinstance(node, list):
        return {t for value in node for t in _types(value)}
    return set()


def assert_json_schema(schema: dict[str, Any]) -> None:
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    assert _types(schema) <= {"object", "array", "string", "number", "integer", "boolean", "null"}
    for ref in _refs(schema):
        assert ref.startswith("#/$defs/"), ref
        assert ref.removeprefix("#/$defs/") in schema["$defs"], ref


def test_config_schema_prints_the_dependencies_schema(cli: Any) -> None:
    result = cli("config", "schema")
    assert result.exit_code == 0, result.output
    schema = json.loads(result.stdout)
    assert_json_schema(schema)
    assert {"torch", "optimizations", "pip_packages", "comfyui"} <= set(schema["properties"])
    assert set(schema["required"]) >= {"schema_version", "python", "comfyui", "torch"}
    torch = schema["$defs"]["TorchConfig"]
    assert torch["properties"]["variants"]["minItems"] == 1
    assert schema["$defs"]["TorchVariant"]["additionalProperties"] is False


def test_config_schema_tools_manifest(cli: Any) -> None:
    result = cli("config", "schema", "tools-manifest")
    assert result.exit_code == 0, result.output
    schema = json.loads(result.stdout)
    assert_json_schema(schema)
    assert set(schema["properties"]) == {"schema_version", "files"}


def test_config_schema_unknown_kind_is_exit_2(cli: Any) -> None:
    result = cli("config", "schema", "nonsense")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "nonsense" in result.stderr


def test_shipped_tools_manifest_loads_from_a_copy(tmp_path: Path) -> None:
    copy = tmp_path / "tools_manifest.json"
    copy.write_text(shipped_path("tools_manifest.json").read_text(encoding="utf-8"))
    assert load_tools_manifest(copy) == load_tools_manifest()


# --- a config that fits no GPU -----------------------------------------------


def test_no_variant_fits_the_gpu_is_exit_2(
    cli: Any, tmp_path: Path, write_config: Callable[[Mutate], Path]
) -> None:
    only_cu130 = [
        {
            "name": "cu130",
            "index_url": "https://download.pytorch.org/whl/cu130",
            "min_cuda_driver": "13.0",
            "cc": ">=7.5",
        }
    ]
    path = write_config(set_at(("torch", "variants"), only_cu130))
    target = tmp_path / "x"
    result = cli(
        "install", target, "--dry-run", "--gpu", "6.1", "--cuda-driver", "13.0", "--config", path
    )
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert "error: torch.variants" in result.stderr
    assert "compute capability 6.1" in result.stderr
    assert not target.exists()
