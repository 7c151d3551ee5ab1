"""Reading the configuration files into their models, with errors people can act on.

[`load_dependencies`][installer.core.config_files.load_dependencies] and its siblings
read a file (the shipped one by default, from inside the package or the source
checkout), parse it into the models of [`installer.core.config`][installer.core.config]
and turn every fault into a [`ConfigError`][installer.core.errors.ConfigError] that
names the file, the JSON path (`optimizations.packages[2].torch_constraints`) and what
was expected — never a pydantic traceback. `config schema` and `config validate` are
answered here too.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from installer.core.config import Dependencies, ModelManifest, ToolsManifest
from installer.core.errors import ConfigError

SCHEMAS: dict[str, type[BaseModel]] = {
    "dependencies": Dependencies,
    "tools-manifest": ToolsManifest,
    "model-manifest": ModelManifest,
}


M = TypeVar("M", bound=BaseModel)


def shipped_path(name: str) -> Path:
    """Return the path of a configuration file shipped with the package.

    Installed wheels carry the files under `installer/_data/`; a source
    checkout (editable install) reads them from the repository root.

    Args:
        name: `dependencies.json` or `tools_manifest.json`.
    """
    packaged = resources.files("installer") / "_data" / name
    if packaged.is_file():
        return Path(str(packaged))
    return Path(__file__).resolve().parents[3] / name


def is_shipped_copy(path: Path, shipped: Path) -> bool:
    """Say whether PATH is a comfy-install's own shipped file (or folder), of any version.

    An install made without `--config` records nothing, but one given the shipped file by
    its path (or a state written by a version that recorded it) names the copy inside that
    comfy-install: `.../installer/_data/NAME` in an installed package (perhaps of an older
    version, perhaps gone), or `NAME` at the root of a source checkout. An update takes this
    comfy-install's own copy instead: that is how it picks up new pins.

    Args:
        path: The recorded path (`--config`, `--tools-manifest` or `--lock-dir`).
        shipped: This comfy-install's copy (its name is the one compared), e.g.
            ``shipped_path("dependencies.json")``.
    """
    if path.name != shipped.name:
        return False
    if path.parent.name == "_data" and path.parent.parent.name == "installer":
        return True
    try:
        if path.resolve() == shipped.resolve():
            return True
    except OSError:
        return False
    return (path.parent / "src" / "installer" / "core" / "config_files.py").is_file()


def json_path(loc: tuple[int | str, ...], data: Any) -> str:
    """Turn a pydantic error location into a JSON path like ``a.b[2].c``.

    Location parts that do not exist in ``data`` (pydantic's union member
    labels such as ``str`` or ``function-after[...]``) are dropped, unless the
    part is a key the file is missing, which is kept as the last element.

    Args:
        loc: The `loc` of one pydantic validation error.
        data: The parsed document that was validated.

    Returns:
        The path, or `(top level)` when no part of ``loc`` is in ``data``.
    """
    parts: list[str] = []
    current: Any = data
    for element in loc:
        if isinstance(current, list) and isinstance(element, int) and element < len(current):
            parts.append(f"[{element}]")
            current = current[element]
        elif isinstance(current, dict) and isinstance(element, str):
            if element not in current:
                # A key the file lacks (named like a field), or a pydantic union member
                # label such as `constrained-str` (not in the file: skip it, stay here).
                if element.isidentifier():
                    parts.append(f".{element}" if parts else element)
                    break
                continue
            parts.append(f".{element}" if parts else element)
            current = current[element]
        elif isinstance(element, str) and not element.isidentifier():
            continue
        else:
            break
    return "".join(parts) or "(top level)"


def parse_model(model: type[M], data: Any, source: str) -> M:
    """Validate ``data`` as ``model``; raise a ConfigError listing every fault.

    Args:
        model: The pydantic model to validate against.
        data: Parsed JSON.
        source: The file name shown in the message.
    """
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        faults: list[str] = []
        seen: set[str] = set()
        for error in exc.errors(include_url=False):
            path = json_path(error["loc"], data)
            line = f"{path}: {_describe(error)}"
            if line not in seen:
                seen.add(line)
                faults.append(line)
        shown = faults[:8]
        more = f"\n  ... and {len(faults) - 8} more" if len(faults) > 8 else ""
        raise ConfigError(
            f"{source} is not valid:\n  " + "\n  ".join(shown) + more,
        ) from None


def _describe(error: Any) -> str:
    kind = error["type"]
    message = str(error["msg"]).removeprefix("Value error, ")
    if kind == "extra_forbidden":
        return "unknown key (not in the schema; check its spelling)"
    if kind == "missing":
        return "required key is missing"
    got = type(error.get("input")).__name__ if "input" in error else None
    names = {
        "str": "string",
        "int": "integer",
        "dict": "object",
        "list": "array",
        "bool": "boolean",
        "float": "number",
        "NoneType": "null",
    }
    if got and kind.endswith("_type"):
        return f"{message} (got {names.get(got, got)})"
    return message


def read_json(path: Path) -> Any:
    """Read a JSON file, raising ConfigError with the line and column of a syntax error.

    Args:
        path: The file to read (UTF-8).

    Returns:
        The parsed document.

    Raises:
        ConfigError: The file is missing, unreadable, or not valid JSON.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist.", "Check the path given.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} cannot be read: {exc}.", "Check the file.") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{path} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}.",
            "Fix the JSON syntax at that position.",
        ) from None


def load_dependencies(path: Path | None = None) -> Dependencies:
    """Load and validate `dependencies.json` (the shipped one when ``path`` is None).

    Args:
        path: A `dependencies.json` to use instead (`--config`).

    Raises:
        ConfigError: The file is missing, not JSON, or not valid (each fault listed).
    """
    path = path or shipped_path("dependencies.json")
    return parse_model(Dependencies, read_json(path), str(path))


def load_tools_manifest(path: Path | None = None) -> ToolsManifest:
    """Load and validate `tools_manifest.json` (the shipped one when ``path`` is None).

    Args:
        path: A `tools_manifest.json` to use instead (`--tools-manifest`).

    Raises:
        ConfigError: The file is missing, not JSON, or not valid (each fault listed).
    """
    path = path or shipped_path("tools_manifest.json")
    return parse_model(ToolsManifest, read_json(path), str(path))


def load_model_manifest(path: Path) -> ModelManifest:
    """Load and validate a model manifest file.

    Args:
        path: The manifest, e.g. given with `comfy-install models --manifest`.

    Raises:
        ConfigError: The file is missing, not JSON, or not valid (each fault listed).
    """
    return parse_model(ModelManifest, read_json(path), str(path))


def detect_kind(data: Any) -> str:
    """Guess which schema a parsed JSON document follows, by its keys.

    Args:
        data: The parsed JSON document.

    Returns:
        `tools-manifest` (only `files`, `schema_version`), `model-manifest` (only `models`,
        `schema_version`), else `dependencies`.
    """
    if isinstance(data, dict):
        keys = set(data)
        if "files" in keys and keys <= {"schema_version", "files"}:
            return "tools-manifest"
        if "models" in keys and keys <= {"schema_version", "models"}:
            return "model-manifest"
    return "dependencies"


def validate_file(path: Path, kind: str | None = None) -> str:
    """Validate a configuration file and return the schema kind it was checked as.

    Args:
        path: The file to check.
        kind: `dependencies`, `tools-manifest` or `model-manifest`; guessed
            from the keys when None.

    Raises:
        ConfigError: The file is invalid (the message lists each fault).
    """
    data = read_json(path)
    kind = kind or detect_kind(data)
    parse_model(SCHEMAS[kind], data, str(path))
    return kind


def json_schema(kind: str = "dependencies") -> dict[str, Any]:
    """Return the JSON Schema of a configuration file kind.

    Args:
        kind: `dependencies`, `tools-manifest` or `model-manifest`.

    Raises:
        KeyError: ``kind`` is not one of those.
    """
    return SCHEMAS[kind].model_json_schema()
