"""What an install directory already holds, read cheaply and without the network.

[`probe_install`][installer.edges.probe.probe_install] reads the state file, checks
the venv's interpreter exists, reads the ComfyUI clone's HEAD from `.git`
files, and lists the distributions installed in the venv from their
`*.dist-info` folders (and torch's own `version.py` for its CUDA build). No
subprocess is started, so a re-run of a finished install can decide that
every step is done in milliseconds. The planner takes the result as plain data.
"""

from __future__ import annotations

import re
from pathlib import Path

from packaging.utils import canonicalize_name

from installer.core.facts import InstallProbe, TorchInstalled, venv_python
from installer.edges.environment import site_packages_dirs
from installer.edges.git import read_head
from installer.edges.state import read_state


def layout(install_dir: Path, platform: str) -> dict[str, Path]:
    """Return the paths of an install: venv, its Python, ComfyUI, state folder, launcher.

    Args:
        install_dir: DIR, the install directory (it need not exist).
        platform: The target OS; it names the venv's interpreter and the launcher.

    Returns:
        The paths by key: `install_dir`, `venv`, `venv_python`, `comfyui`, `state_dir` and
        `launcher`.
    """
    from installer.core.facts import launcher_name
    from installer.edges.state import state_dir

    venv = install_dir / "venv"
    return {
        "install_dir": install_dir,
        "venv": venv,
        "venv_python": Path(str(venv_python(venv, platform))),
        "comfyui": install_dir / "ComfyUI",
        "state_dir": state_dir(install_dir),
        "launcher": install_dir / launcher_name(platform),
    }


_DIST_INFO = re.compile(r"^(?P<name>.+?)-(?P<version>[^-]+)\.dist-info$")


def importable_sites(venv_dir: Path, platform: str) -> list[Path]:
    """Return a venv's site-packages folders and the folders its `.pth` files add.

    Python's `site` module puts each line of a `.pth` file that names an existing
    folder on `sys.path` (lines starting with ``import`` run code instead, and
    are skipped here); a venv whose torch comes from another environment through
    such a file imports it from there.

    Args:
        venv_dir: The venv folder.
        platform: The target OS (where the venv keeps site-packages).

    Returns:
        The venv's own folders first, then the added ones, each once, in order.
    """
    sites = list(site_packages_dirs(venv_dir, platform))
    for site in list(sites):
        try:
            pth_files = sorted(site.glob("*.pth"))
        except OSError:
            continue
        for pth in pth_files:
            try:
                lines = pth.read_text(encoding="utf-8", errors="replace").splitlines()
            except OSError:
                continue
            for line in lines:
                line = line.strip()
                if not line or line.startswith(("#", "import ", "import\t")):
                    continue
                folder = (site / line).resolve() if not Path(line).is_absolute() else Path(line)
                if folder.is_dir() and folder not in sites:
                    sites.append(folder)
    return sites


def installed_distributions(venv_dir: Path, platform: str) -> dict[str, str]:
    """Return ``{canonical name: version}`` of the distributions installed in a venv.

    Args:
        venv_dir: The venv folder.
        platform: The target OS (where the venv keeps site-packages).

    Returns:
        Read from the `.dist-info` folder names of the venv's site-packages and of the
        folders its `.pth` files add; ``{}`` when there are none.
    """
    found: dict[str, str] = {}
    for site in reversed(importable_sites(venv_dir, platform)):  # the venv's own win
        try:
            entries = list(site.iterdir())
        except OSError:
            continue
        for entry in entries:
            match = _DIST_INFO.match(entry.name)
            if match:
                found[canonicalize_name(match.group("name"))] = match.group("version")
    return found


def installed_torch(venv_dir: Path, platform: str) -> TorchInstalled | None:
    """Read torch's version and CUDA build from its `version.py` in the venv.

    Args:
        venv_dir: The venv folder.
        platform: The target OS (where the venv keeps site-packages).

    Returns:
        torch's version (e.g. `2.9.1+cu128`) and CUDA version (e.g. `12.8`; None for a CPU build),
        or None when torch is not installed.
    """
    for site in importable_sites(venv_dir, platform):
        try:
            text = (site / "torch" / "version.py").read_text(encoding="utf-8")
        except OSError:
            continue
        version = re.search(r"^__version__\s*(?::\s*\w+\s*)?=\s*'([^']+)'", text, re.M)
        cuda = re.search(r"^cuda\s*(?::\s*[\w\[\]]+\s*)?=\s*'([^']+)'", text, re.M)
        if version:
            return TorchInstalled(version.group(1), cuda.group(1) if cuda else None)
    return None


def venv_version(venv_dir: Path) -> str | None:
    """Return the Python version a venv was made with, from its `pyvenv.cfg`.

    Args:
        venv_dir: The venv folder.

    Returns:
        The version, e.g. `3.12.8`; None without a readable `pyvenv.cfg` version.
    """
    try:
        text = (venv_dir / "pyvenv.cfg").read_text(encoding="utf-8")
    except OSError:
        return None
    match = re.search(r"^version(?:_info)?\s*=\s*([0-9][0-9.]*)", text, re.M)
    return match.group(1) if match else None


_REQUIREMENT_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def requirement_names(path: Path) -> frozenset[str] | None:
    """Return the canonical names a `requirements.txt` lists (None when it cannot be read).

    Args:
        path: The requirements file; options (`-r`, `--index-url`) and comments are ignored.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    return parse_requirement_names(text)


def parse_requirement_names(text: str) -> frozenset[str]:
    """Return the canonical names of the requirements in a `requirements.txt`'s text.

    Args:
        text: The file's content.
    """
    names: set[str] = set()
    for line in text.splitlines():
        line = line.split("#", 1)[0]
        match = _REQUIREMENT_NAME.match(line)
        if match and not line.lstrip().startswith("-"):
            names.add(canonicalize_name(match.group(1)))
    return frozenset(names)


def removed_node_names(nodes_json: Path) -> frozenset[str]:
    """Return the nodes `nodes remove` took out that are not back (`nodes add` again).

    Args:
        nodes_json: `DIR/.comfy-install/nodes.json` (absent or damaged: none; `nodes` itself
            moves a damaged record aside when it next runs).
    """
    from pydantic import ValidationError

    from installer.core.nodes import NodesState

    try:
        record = NodesState.model_validate_json(nodes_json.read_bytes())
    except (OSError, ValidationError):
        return frozenset()
    back = {node.name for node in record.nodes}
    return frozenset(item.name for item in record.removed if item.name not in back)


def probe_install(install_dir: Path, platform: str) -> InstallProbe:
    """Read what ``install_dir`` already holds (nothing is written).

    Args:
        install_dir: DIR, the install directory (it need not exist).
        platform: The target OS; it says where the venv's files are.
    """
    if not install_dir.is_dir():
        return InstallProbe(install_dir=install_dir)
    paths = layout(install_dir, platform)
    state, problem = read_state(install_dir)
    venv_ok = paths["venv_python"].is_file()
    python_record = state.done("python") if state else None
    interpreter = python_record.outputs.get("interpreter") if python_record else None
    return InstallProbe(
        install_dir=install_dir,
        state=state,
        state_problem=problem,
        venv_python_exists=venv_ok,
        venv_python_version=venv_version(paths["venv"]) if venv_ok else None,
        recorded_python_exists=bool(interpreter) and Path(str(interpreter)).is_file(),
        comfyui_head=read_head(paths["comfyui"]),
        installed=installed_distributions(paths["venv"], platform) if venv_ok else {},
        torch=installed_torch(paths["venv"], platform) if venv_ok else None,
        comfyui_requirements=requirement_names(paths["comfyui"] / "requirements.txt"),
        removed_nodes=removed_node_names(paths["state_dir"] / "nodes.json"),
        existing_files=frozenset(
            name for name, path in paths.items() if name == "launcher" and path.is_file()
        ),
    )
