"""Installing into the venv with torch held, proving torch unchanged, and taking packages out.

[`held_pip_install`][installer.nodes.install.held_pip_install] is the one held install of the
installer (steps 8 and 9 and `nodes add` go through it): the installed torch trio pinned by a
constraints file, and checked unchanged afterwards.
[`install_node_requirements`][installer.nodes.install.install_node_requirements] installs one
node's requirements (read as ComfyUI-Manager reads them) through it (`nodes add`), and
[`install_nodes_requirements`][installer.nodes.install.install_nodes_requirements] several
nodes' in one call (step 9).
[`distribution_digest`][installer.nodes.install.distribution_digest] fingerprints an installed
distribution (its dist-info files, and the size and time of every file its RECORD
lists), so `nodes add` can prove torch is byte for byte the same distribution afterwards.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from packaging.utils import canonicalize_name

from installer.core.errors import StepFailedError
from installer.core.log import InstallerLogger
from installer.core.uv_options import RetryOptions
from installer.edges.environment import site_packages_dirs
from installer.edges.probe import installed_distributions
from installer.edges.proc import CommandResult, run_command
from installer.edges.uv import TORCH_TRIO, Uv, write_constraints
from installer.plan.nodes import NodeRequirements, requirement_name


def torch_pins(venv_dir: Path, platform: str) -> dict[str, str]:
    """Return the exact versions of the torch trio installed in a venv.

    Args:
        venv_dir: The venv.
        platform: The target OS.
    """
    found = installed_distributions(venv_dir, platform)
    return {name: found[name] for name in TORCH_TRIO if name in found}


def held_pip_install(
    uv: Uv,
    venv_python: Path,
    venv_dir: Path,
    platform: str,
    constraints_file: Path,
    requirements: Sequence[str] = (),
    *,
    requirement_files: Sequence[Path] = (),
    options: Sequence[str] = (),
    extra_index_urls: Sequence[str] = (),
    what: str,
    retry: RetryOptions | None = None,
    extra_constraints: Sequence[Path] = (),
) -> CommandResult:
    """Install into the venv with the installed torch trio pinned, and prove it unchanged.

    Args:
        uv: uv, bound to the index options.
        venv_python: The venv's interpreter.
        venv_dir: The venv.
        platform: The target OS.
        constraints_file: Where the torch constraints file is (re)written.
        requirements: Requirement strings or wheel file paths.
        requirement_files: `-r` files.
        options: Further uv options (e.g. `--no-deps`).
        extra_index_urls: Indexes with priority for this call.
        what: Name of the action for messages.
        retry: Attempts and backoff for network failures (default: 2 attempts, 2 s backoff).
        extra_constraints: `-c` files besides the torch constraints file (a lock, a resolution).

    Raises:
        TorchConflictError: A package wanted another torch.
        StepFailedError: The install failed, or torch changed despite the pins.
    """
    before = torch_pins(venv_dir, platform)
    constraints = [write_constraints(constraints_file, before)] if before else []
    result = uv.pip_install(
        venv_python,
        requirements,
        requirement_files=requirement_files,
        constraints=[*constraints, *extra_constraints],
        options=options,
        extra_index_urls=extra_index_urls,
        what=what,
        retry=retry or RetryOptions(attempts=2, backoff_seconds=2),
    )
    after = torch_pins(venv_dir, platform)
    if after != before:
        raise StepFailedError(
            f"{what} changed torch ({before} → {after}) despite the constraints.",
            "Report this; reinstall torch with `comfy-install install DIR --force torch`.",
        )
    return result


def install_node_requirements(
    uv: Uv,
    venv_python: Path,
    venv_dir: Path,
    platform: str,
    constraints_file: Path,
    name: str,
    requirements: Sequence[str],
    *,
    extra_constraints: Sequence[Path] = (),
    extra_index_urls: Sequence[str] = (),
) -> CommandResult | None:
    """Install one custom node's requirements with torch held (`nodes add`).

    Args:
        uv: uv, bound to the index options.
        venv_python: The venv's interpreter.
        venv_dir: The venv.
        platform: The target OS.
        constraints_file: The torch constraints file.
        name: The node's name.
        requirements: Its requirement lines (from
            [`read_node_requirements`][installer.nodes.files.read_node_requirements], skips
            applied).
        extra_constraints: `-c` files: the lock, or the resolution `nodes add` made.
        extra_index_urls: Indexes with priority (the torch index).

    Returns:
        uv's result; None when there was nothing to install.
    """
    return install_nodes_requirements(
        uv, venv_python, venv_dir, platform, constraints_file, {name: requirements},
        extra_constraints=extra_constraints, extra_index_urls=extra_index_urls,
    )  # fmt: skip


def install_nodes_requirements(
    uv: Uv,
    venv_python: Path,
    venv_dir: Path,
    platform: str,
    constraints_file: Path,
    nodes: Mapping[str, Sequence[str]],
    *,
    extra_constraints: Sequence[Path] = (),
    extra_index_urls: Sequence[str] = (),
) -> CommandResult | None:
    """Install several custom nodes' requirements in one uv call, torch held (step 9).

    One `-r` file per node (`node-NAME-requirements.txt`, beside the constraints file), so uv
    resolves them together: a package two nodes need is installed once at a version both
    accept, and a later node cannot move one an earlier node's install chose (as separate
    calls could), and a conflict between them fails before anything is installed.

    Args:
        uv: uv, bound to the index options.
        venv_python: The venv's interpreter.
        venv_dir: The venv.
        platform: The target OS.
        constraints_file: The torch constraints file.
        nodes: Each node's requirement lines by node name (skips applied); a node without
            any is left out.
        extra_constraints: `-c` files: the lock, or the resolution `nodes add` made.
        extra_index_urls: Indexes with priority (the torch index).

    Returns:
        uv's result; None when no node has anything to install.
    """
    wanted = {name: lines for name, lines in nodes.items() if lines}
    if not wanted:
        return None
    files = []
    for name, lines in wanted.items():
        listed = constraints_file.parent / f"node-{name}-requirements.txt"
        listed.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
        files.append(listed)
    names = ", ".join(wanted)
    try:
        return held_pip_install(
            uv,
            venv_python,
            venv_dir,
            platform,
            constraints_file,
            requirement_files=files,
            extra_index_urls=extra_index_urls,
            what=f"requirements of custom node{'s' if len(wanted) > 1 else ''} {names}",
            extra_constraints=extra_constraints,
        )
    except StepFailedError as exc:
        clash = nodes_clash(exc, wanted)
        if clash is None:
            raise
        raise clash from exc


def nodes_clash(
    failure: StepFailedError, nodes: Mapping[str, Sequence[str]]
) -> StepFailedError | None:
    """Name the nodes whose requirements uv could not install together, and the ways out.

    Args:
        failure: The failed install of several nodes' requirements (uv's output in its
            cause).
        nodes: Each node's requirement lines, as installed.

    Returns:
        The error to show: each node and the requirement of its that uv's conflict names;
        None when the failure was not a conflict between two or more of these nodes.
    """
    from installer.core.errors import CommandFailedError
    from installer.edges.uv_output import resolution_conflict

    cause = failure.__cause__
    if not isinstance(cause, CommandFailedError):
        return None
    conflict = resolution_conflict(cause.output)
    if conflict is None:
        return None
    named = {requirement_name(text) for text in conflict.requirements}
    named |= {requirement_name(req) for _, req in conflict.depends}
    fighting = {
        node: [line for line in lines if requirement_name(line) in named]
        for node, lines in nodes.items()
    }
    fighting = {node: lines for node, lines in fighting.items() if lines}
    if len(fighting) < 2:
        return None
    who = "; ".join(f"{node} needs {', '.join(lines)}" for node, lines in fighting.items())
    return StepFailedError(
        f"The custom nodes {', '.join(fighting)} ask for requirements no one venv can hold "
        f"together: {who} (uv: {conflict.summary}). Nothing of theirs was installed.",
        "Pin another commit of one of them (its `commit` in dependencies.json's custom_nodes), "
        'set `"requirements": false` for one and install what it needs yourself, or take one '
        "out (`comfy-install nodes remove DIR NAME` for a node added with `nodes add`); then "
        "run the same command again.",
    )


def install_script_note(found: NodeRequirements, allowed: bool) -> str | None:
    """Say what happens to a node's `install.py` (None: it has none).

    Args:
        found: What the node asks for.
        allowed: `--allow-install-script` was given.
    """
    if not found.install_script:
        return None
    if allowed:
        return "install.py will run (--allow-install-script): it is arbitrary code"
    return "install.py will not run: it is arbitrary code (pass --allow-install-script to run it)"


def run_install_script(
    venv_python: Path, node_dir: Path, log: InstallerLogger, env: dict[str, str] | None = None
) -> None:
    """Run a node's `install.py` with the venv's Python, in the node's folder.

    Args:
        venv_python: The venv's interpreter.
        node_dir: The node's folder.
        log: Where its output goes.
        env: Its environment (default: this process's).

    Raises:
        CommandFailedError: It exited non-zero.
    """
    run_command(
        [venv_python, "install.py"],
        log=log,
        what=f"install.py of custom node {node_dir.name}",
        cwd=node_dir,
        env=env,
        timeout=1800,
        hint="Read its output above; the node's folder and the venv are as it left them.",
    )


def uninstall(uv: Uv, venv_python: Path, names: Sequence[str]) -> None:
    """Remove distributions from the venv (`uv pip uninstall`).

    Args:
        uv: uv.
        venv_python: The venv's interpreter.
        names: The distributions.

    Raises:
        CommandFailedError: uv failed.
    """
    if names:
        uv.run(["pip", "uninstall", "--python", venv_python, *names], "uv pip uninstall")


def dist_info_dir(venv_dir: Path, platform: str, name: str) -> Path | None:
    """Return the `.dist-info` folder of a distribution in the venv (None: not installed).

    Args:
        venv_dir: The venv.
        platform: The target OS.
        name: The distribution's name.
    """
    wanted = canonicalize_name(name)
    for site in site_packages_dirs(venv_dir, platform):
        try:
            entries = list(site.glob("*.dist-info"))
        except OSError:
            continue
        for entry in entries:
            if canonicalize_name(entry.name.removesuffix(".dist-info").rsplit("-", 1)[0]) == wanted:
                return entry
    return None


def distribution_digest(venv_dir: Path, platform: str, name: str) -> str | None:
    """Fingerprint an installed distribution: its dist-info files, and every file RECORD lists.

    The dist-info files (RECORD with each file's sha256, METADATA, WHEEL, ...) are hashed
    whole; each file RECORD lists adds its path, size, modification time and inode, so a file
    written, replaced (a new inode), removed or added under a listed path since changes the
    digest. Two equal digests prove the same distribution (RECORD's sha256 of every file) with
    none of its files touched in between, without reading the files themselves (torch's are
    gigabytes): one `stat` per file, on plain strings (pathlib costs more than the call).
    The change time is left out on purpose: linking the same uv cache file into another venv
    changes it, though not one byte of this venv's torch.

    Args:
        venv_dir: The venv.
        platform: The target OS.
        name: The distribution, e.g. `torch`.

    Returns:
        The sha256 hex digest; None when it is not installed.
    """
    info = dist_info_dir(venv_dir, platform, name)
    if info is None:
        return None
    digest = hashlib.sha256()
    record: bytes | None = None
    for file in sorted(info.rglob("*")):
        if file.is_file():
            data = file.read_bytes()
            digest.update(file.relative_to(info).as_posix().encode() + b"\0")
            digest.update(data)
            if file.parent == info and file.name == "RECORD":
                record = data
    if record is not None:
        site = str(info.parent) + os.sep
        stat = os.stat
        lines: list[str] = []
        for line in record.decode("utf-8").splitlines():
            path = line.rsplit(",", 2)[0]
            try:
                found = stat(site + path)
            except OSError:
                lines.append(f"{path}:missing\n")
                continue
            lines.append(f"{path}:{found.st_size}:{found.st_mtime_ns}:{found.st_ino}\n")
        digest.update("".join(lines).encode())
    return digest.hexdigest()
