"""Custom node repositories the tests build: real git repos with a node's files.

Each node registers one ComfyUI class (``NODE_CLASS_MAPPINGS``) named after the node, so a real
ComfyUI lists it in `/object_info`; its requirements go in `requirements.txt`, `pyproject.toml`
or come with an `install.py`.
"""

from __future__ import annotations

from pathlib import Path

from support.comfy_repo import git
from support.wheels import WheelSpec, build_wheel

NODE_PY = """
class {cls}:
    @classmethod
    def INPUT_TYPES(cls):
        return {{"required": {{"text": ("STRING", {{"default": "x"}})}}}}

    RETURN_TYPES = ("STRING",)
    FUNCTION = "run"
    CATEGORY = "tests"

    def run(self, text):
        return (text,)


NODE_CLASS_MAPPINGS = {{"{cls}": {cls}}}
"""

INSTALL_PY = """
from pathlib import Path
Path("install-ran.txt").write_text("yes")
"""

NODE_WHEELS = [
    WheelSpec("plain-new", "1.2"),
    WheelSpec("plain-new", "1.3"),
    WheelSpec("shared-lib", "1.0"),
    WheelSpec("shared-lib", "2.0"),
    WheelSpec("helper-lib", "1.0", requires=["shared-lib>=2"]),
    WheelSpec("only-mine", "1.0", requires=["only-dep"]),
    WheelSpec("only-dep", "1.0"),
    WheelSpec("dry-lib", "1.0"),
    WheelSpec("loose-lib", "1.0"),
    WheelSpec("loose-lib", "2.0"),
]
"""The tiny pure-Python wheels the test nodes require."""


def node_class(name: str) -> str:
    """The ComfyUI class a test node registers (its name, made an identifier)."""
    return "TestNode" + "".join(part.capitalize() for part in name.replace("_", "-").split("-"))


def make_node_repo(
    path: Path,
    *,
    requirements: list[str] | None = None,
    pyproject_deps: list[str] | None = None,
    install_py: bool = False,
) -> str:
    """Create a node repository at ``path`` (one commit, tag v1); return the commit."""
    path.mkdir(parents=True, exist_ok=True)
    git("init", "-q", "-b", "main", cwd=path)
    (path / "__init__.py").write_text(NODE_PY.format(cls=node_class(path.name)))
    if requirements is not None:
        (path / "requirements.txt").write_text("\n".join(["# test node", *requirements]) + "\n")
    if pyproject_deps is not None:
        deps = ", ".join(f'"{d}"' for d in pyproject_deps)
        (path / "pyproject.toml").write_text(
            f'[project]\nname = "{path.name}"\nversion = "1.0"\ndependencies = [{deps}]\n'
        )
    if install_py:
        (path / "install.py").write_text(INSTALL_PY)
    git("add", "-A", cwd=path)
    git("commit", "-q", "-m", "node", cwd=path)
    git("tag", "v1", cwd=path)
    return git("rev-parse", "HEAD", cwd=path)


def build_node_wheels(dest: Path) -> list[Path]:
    """Build the wheels the test nodes require into ``dest``."""
    return [build_wheel(spec, dest) for spec in NODE_WHEELS]
