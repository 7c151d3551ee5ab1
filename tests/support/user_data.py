"""The user's side of an install, for tests and the benchmark: made, then hashed.

[`add_user_data`][] puts files where a user's would be (models, input, output, user
workflows and settings, a custom node with an edit, `extra_model_paths.yaml`);
[`user_hashes`][] returns the sha256 of every file under those folders, so a test can
prove an update or a rollback changed none of them.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

USER_FOLDERS = ("models", "input", "output", "user", "custom_nodes")
USER_FILES = ("extra_model_paths.yaml",)


def add_user_data(comfyui: Path) -> None:
    """Write a user's files into a ComfyUI folder (e.g. `DIR/ComfyUI`)."""
    files = {
        "models/checkpoints/my-model.safetensors": b"\x00weights" * 1000,
        "models/loras/style.safetensors": b"lora" * 100,
        "input/photo.png": b"\x89PNG fake",
        "output/ComfyUI_00001_.png": b"\x89PNG result",
        "user/default/workflows/my-workflow.json": b'{"nodes": []}',
        "user/default/comfy.settings.json": b'{"Comfy.Theme": "dark"}',
        "custom_nodes/my-node/__init__.py": b"NODE_CLASS_MAPPINGS = {}  # edited by hand\n",
        "extra_model_paths.yaml": b"mine:\n  base_path: /srv/models\n  checkpoints: ckpt\n",
    }
    for relative, content in files.items():
        path = comfyui / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)


def user_hashes(comfyui: Path) -> dict[str, str]:
    """Return ``{relative path: sha256}`` of every file of the user's under ``comfyui``."""
    found: dict[str, str] = {}
    roots = [comfyui / name for name in USER_FOLDERS] + [comfyui / name for name in USER_FILES]
    for root in roots:
        paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in paths:
            found[str(path.relative_to(comfyui))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found
