"""The comfy-install section of ComfyUI's `extra_model_paths.yaml`, pointing at a shared store.

The section lists every model kind with its folder in the store and sits between two marker
comments, so a later run replaces exactly it and keeps the rest of the file
([`write_shared_config`][installer.models.extra_paths.write_shared_config]).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from installer.core.errors import ConfigError, EnvironmentUnsupportedError, UsageError
from installer.edges.state import atomic_write_text
from installer.plan.model_kinds import MODEL_KINDS, kind_folders

SHARED_SECTION = "comfy_install_shared"
"""The section of `extra_model_paths.yaml` that comfy-install owns."""

EXTRA_MODEL_PATHS = "extra_model_paths.yaml"
"""The file ComfyUI reads extra model folders from, next to its `main.py`."""

_SECTION_BEGIN = "# >>> comfy-install shared models >>>"
_SECTION_END = "# <<< comfy-install shared models <<<"
_TOP_LEVEL_KEY = re.compile(
    r"""^(?:"(?:[^"\\]|\\.)*"|'(?:[^']|'')*'|[^\s#'"\-?:,\[\]{}&*!|>%@`][^#]*?)\s*:(?:\s|$)"""
)
_YAML_BREAKS = frozenset("\x85\u2028\u2029\ufeff")


def yaml_quote(text: str) -> str:
    r"""Return ``text`` as a YAML scalar that any YAML 1.1/1.2 parser reads back unchanged.

    Single-quoted when possible (backslashes in Windows paths stay as they
    are, `'` is doubled); double-quoted with escapes when the text holds line
    breaks or other control characters.

    Args:
        text: Any string.

    Returns:
        The quoted scalar.
    """
    if not any(ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F or ch in _YAML_BREAKS for ch in text):
        return "'" + text.replace("'", "''") + "'"
    out: list[str] = []
    for ch in text:
        code = ord(ch)
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif code < 0x20 or 0x7F <= code <= 0x9F:
            out.append(f"\\x{code:02x}")
        elif ch in _YAML_BREAKS:
            out.append(f"\\u{code:04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def shared_config_section(store: Path) -> str:
    """Return the `comfy_install_shared` section of `extra_model_paths.yaml` for ``store``.

    The section lists every model kind with its folder in the store (and the
    legacy folder: `text_encoders` also reads `clip/`), relative to a
    `base_path`. ComfyUI expands environment variables in `base_path`, so for
    a store whose path holds `$` or `%` every folder is written as an
    absolute path instead, which ComfyUI takes literally. The section sits
    between two marker comments so a later run can replace exactly it.

    Args:
        store: The shared store, absolute.

    Returns:
        The section's text, ending with a newline.

    Raises:
        UsageError: The path holds a line break, which ComfyUI cannot read.
    """
    text = str(store)
    if "\n" in text or "\r" in text:
        raise UsageError(
            f"the shared model store path {text!r} holds a line break.",
            "Rename the folder; ComfyUI splits folder lists on line breaks.",
        )
    literal = "$" in text or "%" in text
    lines = [
        _SECTION_BEGIN,
        "# Written by comfy-install: ComfyUI also reads models from the shared store below.",
        "# These lines are replaced whenever comfy-install shares models again; edit outside them.",
        f"{SHARED_SECTION}:",
    ]
    if not literal:
        lines.append(f"    base_path: {yaml_quote(text)}")
    for kind in MODEL_KINDS:
        folders = "\n".join(str(store / f) if literal else f for f in kind_folders(kind))
        lines.append(f"    {kind}: {yaml_quote(folders)}")
    lines.append(_SECTION_END)
    return "\n".join(lines) + "\n"


def merge_extra_model_paths(existing: str, section: str, *, path: Path) -> str:
    """Return ``existing`` with the comfy-install section added or replaced, the rest kept.

    The section is recognised by its marker comments. Without them it is
    appended, provided the file's top level is a plain block mapping (one
    `name:` line per section) that appending to keeps valid.

    Args:
        existing: The current text of `extra_model_paths.yaml` ('' for none).
        section: The section from
            [`shared_config_section`][installer.models.extra_paths.shared_config_section].
        path: The file, named in errors.

    Returns:
        The new text (line endings as in ``existing``).

    Raises:
        ConfigError: The file cannot be changed safely: damaged markers, a
            `comfy_install_shared` section without markers, several YAML
            documents, or a top level that is not a block mapping.
    """
    newline = "\r\n" if "\r\n" in existing else "\n"
    bom = "\ufeff" if existing.startswith("\ufeff") else ""
    lines = existing.removeprefix("\ufeff").splitlines()
    begins = [i for i, line in enumerate(lines) if line.strip() == _SECTION_BEGIN]
    ends = [i for i, line in enumerate(lines) if line.strip() == _SECTION_END]
    hint = (
        f"Edit {path} by hand: remove the {SHARED_SECTION} section and its marker lines, "
        "or use --link to link files instead."
    )
    new = section.splitlines()
    if begins or ends:
        if len(begins) != 1 or len(ends) != 1 or begins[0] > ends[0]:
            raise ConfigError(f"{path}: the comfy-install marker lines are damaged.", hint)
        kept = lines[: begins[0]] + lines[ends[0] + 1 :]
        _check_appendable(kept, path, hint)
        merged = lines[: begins[0]] + new + lines[ends[0] + 1 :]
    else:
        _check_appendable(lines, path, hint)
        body = lines
        while body and not body[-1].strip():
            body = body[:-1]
        merged = [*body, "", *new] if body else new
    return bom + newline.join(merged) + newline


def _check_appendable(lines: Sequence[str], path: Path, hint: str) -> None:
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.startswith((" ", "#")):
            continue
        if line.startswith(("---", "...", "\t")) or not _TOP_LEVEL_KEY.match(line):
            raise ConfigError(
                f"{path} line {number}: {line.strip()[:60]!r} is not a plain top-level "
                "section, so comfy-install cannot add its own safely.",
                hint,
            )
        if re.match(rf"""^['"]?{SHARED_SECTION}['"]?\s*:""", line):
            raise ConfigError(
                f"{path} line {number}: a {SHARED_SECTION} section exists without the "
                "comfy-install marker lines.",
                hint,
            )


def write_shared_config(comfyui_dir: Path, store: Path) -> Path:
    """Point ComfyUI at a shared store through `ComfyUI/extra_model_paths.yaml`.

    Adds or replaces the `comfy_install_shared` section and keeps everything
    else in the file; the file is replaced atomically.

    Args:
        comfyui_dir: The ComfyUI checkout (where `main.py` is).
        store: The shared store, absolute.

    Returns:
        The path of `extra_model_paths.yaml`.

    Raises:
        ConfigError: The existing file cannot be changed safely (see
            [`merge_extra_model_paths`][installer.models.extra_paths.merge_extra_model_paths]).
        UsageError: The store's path cannot be written for ComfyUI.
        EnvironmentUnsupportedError: The file cannot be read or written.
    """
    target = comfyui_dir / EXTRA_MODEL_PATHS
    if target.is_symlink():
        target = target.resolve()
    try:
        existing = target.read_text(encoding="utf-8") if target.exists() else ""
    except (OSError, UnicodeDecodeError) as exc:
        raise EnvironmentUnsupportedError(
            f"cannot read {target}: {exc}.", "Check the file, then run again."
        ) from exc
    merged = merge_extra_model_paths(existing, shared_config_section(store), path=target)
    if merged != existing:
        atomic_write_text(target, merged)
    return target
