"""The generations of an install on disk: the registry, the pointer, the switch, removal.

`DIR/.comfy-install/generations.json` records each generation
([`installer.core.generations`][installer.core.generations]); the pointer file
`DIR/.comfy-install/current-generation` says which one is current, and is replaced in one
rename (`installer.plan.generations.plan_switch` says how). An install made
before generations existed has neither file: it is generation 1, read from DIR as it is
([`adopted_generation`][installer.edges.generations.adopted_generation]) and never moved.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from pydantic import ValidationError

from installer.core.generations import (
    POINTER_NAME,
    REGISTRY_NAME,
    Generation,
    GenerationsFile,
    generation_root,
    parse_pointer,
)
from installer.core.records import now_iso
from installer.edges.git import read_head
from installer.edges.probe import installed_distributions, installed_torch, layout
from installer.edges.state import atomic_write_text, read_state, state_dir
from installer.edges.uv import TORCH_TRIO


def registry_path(install_dir: Path) -> Path:
    """Return `DIR/.comfy-install/generations.json`.

    Args:
        install_dir: DIR.
    """
    return state_dir(install_dir) / REGISTRY_NAME


def pointer_path(install_dir: Path) -> Path:
    """Return `DIR/.comfy-install/current-generation`.

    Args:
        install_dir: DIR.
    """
    return state_dir(install_dir) / POINTER_NAME


def read_pointer(install_dir: Path) -> str | None:
    """Return the pointer file's text (None when there is none: generation 1 is current).

    Args:
        install_dir: DIR.
    """
    try:
        return pointer_path(install_dir).read_text(encoding="utf-8")
    except OSError:
        return None


def current_generation(install_dir: Path) -> int:
    """Return the number of DIR's current generation (1 without a pointer file).

    Args:
        install_dir: DIR.
    """
    return parse_pointer(read_pointer(install_dir))


def current_root(install_dir: Path, platform: str) -> Path:
    """Return the install root of DIR's current generation (DIR itself for generation 1).

    A pointer to a generation whose folder is gone falls back to DIR, the one generation
    that cannot be pruned away.

    Args:
        install_dir: DIR.
        platform: The target OS.
    """
    number = current_generation(install_dir)
    root = Path(generation_root(install_dir, number, platform))
    return root if number == 1 or root.is_dir() else install_dir


def describe_root(root: Path, generation_id: int, platform: str) -> Generation:
    """Read what a generation's root holds now: its ComfyUI commit and torch.

    Args:
        root: The generation's install root.
        generation_id: Its number.
        platform: The target OS.
    """
    paths = layout(root, platform)
    torch = installed_torch(paths["venv"], platform)
    found = installed_distributions(paths["venv"], platform)
    state, _problem = read_state(root)
    verify = state.done("verify") if state else None
    comfyui = state.done("comfyui") if state else None
    return Generation(
        id=generation_id,
        root=str(root),
        comfyui_url=str(comfyui.outputs.get("url")) if comfyui else None,
        comfyui_ref=str(comfyui.outputs.get("ref")) if comfyui else None,
        comfyui_commit=read_head(paths["comfyui"]),
        torch=torch.version if torch else None,
        torch_cuda=torch.cuda if torch else None,
        packages={name: found[name] for name in TORCH_TRIO if name in found},
        created_at=state.created_at if state else now_iso(),
        status="ready" if verify is not None else "failed",
        verified_at=verify.finished_at if verify else None,
    )


def adopted_generation(install_dir: Path, platform: str) -> Generation:
    """Return the install as `install` made it, as generation 1 (nothing is moved).

    Args:
        install_dir: DIR.
        platform: The target OS.
    """
    generation = describe_root(install_dir, 1, platform)
    generation.adopted = True
    return generation


def read_generations(install_dir: Path, platform: str) -> GenerationsFile:
    """Return DIR's generations; without a registry, the adopted generation 1 alone.

    A damaged registry is moved aside (`generations.json.damaged`) and rebuilt from
    generation 1, so the generations on disk are never removed for it.

    Args:
        install_dir: DIR.
        platform: The target OS.
    """
    path = registry_path(install_dir)
    try:
        registry = GenerationsFile.model_validate_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        registry = GenerationsFile()
    except (OSError, ValidationError, ValueError):
        with contextlib.suppress(OSError):
            path.replace(path.with_name(path.name + ".damaged"))
        registry = GenerationsFile()
    if registry.get(1) is None and (install_dir / "venv").exists():
        registry.put(adopted_generation(install_dir, platform))
    return registry


def write_generations(install_dir: Path, registry: GenerationsFile) -> None:
    """Save the registry atomically.

    Args:
        install_dir: DIR.
        registry: What to save.

    Raises:
        EnvironmentUnsupportedError: The disk is full or the folder is not writable.
    """
    atomic_write_text(registry_path(install_dir), registry.model_dump_json(indent=2) + "\n")


def apply_switch(temporary: Path, pointer: Path, text: str) -> None:
    """Write ``text`` to ``temporary``, flush it, and rename it over ``pointer`` (one step).

    Args:
        temporary: The temporary file, in the pointer's folder.
        pointer: The pointer file.
        text: The generation number (and a newline).

    Raises:
        OSError: The write or the rename failed; the pointer is then unchanged.
    """
    with temporary.open("w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    temporary.replace(pointer)  # os.replace: rename(2), or MoveFileEx(REPLACE_EXISTING)
    if os.name != "nt":  # make the rename itself durable
        fd = os.open(pointer.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def remove_paths(paths: list[Path]) -> list[str]:
    """Remove folders (a pruned generation's); return what could not be removed, and why.

    Args:
        paths: Folders (or files) to remove.
    """
    problems: list[str] = []
    for path in paths:
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
        except OSError as exc:
            problems.append(f"{path}: {exc.strerror or exc}")
    return problems


def share_bytecode(old_venv: Path, new_venv: Path, platform: str) -> int:
    """Hard-link the old venv's compiled bytecode into the new one, file by identical file.

    A `__pycache__/*.pyc` of the old venv is linked beside the new venv's source only when
    that source is the very same file (one inode: both venvs hard-link it from uv's
    cache), so the bytecode is valid for it by construction (Python checks the source's
    size and mtime in the `.pyc` header anyway). The new generation's first start then
    reads torch's bytecode instead of compiling it again. Nothing of the old venv changes;
    Python replaces a `.pyc` by rename, never in place.

    Args:
        old_venv: The current generation's venv.
        new_venv: The new generation's venv.
        platform: The target OS (where the venvs keep site-packages).

    Returns:
        How many `.pyc` files were linked (0 across file systems, or without bytecode).
    """
    from installer.edges.environment import site_packages_dirs

    linked = 0
    old_sites = site_packages_dirs(old_venv, platform)
    pairs = zip(old_sites, site_packages_dirs(new_venv, platform), strict=False)
    for old_site, new_site in pairs:
        for cache in old_site.rglob("__pycache__"):
            relative = cache.parent.relative_to(old_site)
            for pyc in cache.glob("*.pyc"):
                source = pyc.name.split(".", 1)[0] + ".py"
                try:
                    if not (cache.parent / source).samefile(new_site / relative / source):
                        continue
                    target = new_site / relative / "__pycache__" / pyc.name
                    if target.exists():
                        continue
                    target.parent.mkdir(exist_ok=True)
                    os.link(pyc, target)
                    linked += 1
                except OSError:
                    continue
    return linked


def same_files(first: Path, second: Path) -> bool:
    """True when two files, or two folders file by file, hold the same bytes.

    Args:
        first: A file or a folder.
        second: Another one (missing or unreadable: not the same).
    """
    try:
        return _contents(first) == _contents(second)
    except OSError:
        return False


def _contents(path: Path) -> dict[str, bytes]:
    """A file's bytes, or a folder's files' bytes by relative path (OSError: unreadable)."""
    if not path.is_dir():
        return {"": path.read_bytes()}
    return {
        item.relative_to(path).as_posix(): item.read_bytes()
        for item in sorted(path.rglob("*"))
        if item.is_file()
    }
