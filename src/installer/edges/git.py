"""Git operations on the ComfyUI clone and custom nodes: clone, pin, verify.

The installer clones into a temporary sibling folder and renames it into place
only when the checkout of the pinned commit is verified, so an interrupted
clone never leaves a half-made `ComfyUI/`. An existing clone is moved to the
pin only when it has no local changes to tracked files; otherwise the step
stops and says how to keep or drop them. Git never prompts (credential
prompts are turned off) and its output goes to the log. A URL, path or ref from the
user or the configuration is always placed after `--` (or `--end-of-options`), so git
can never read one as an option (`--upload-pack=...`).
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from pathlib import Path

from installer.core.errors import CommandFailedError, EnvironmentUnsupportedError, StepFailedError
from installer.core.log import InstallerLogger
from installer.core.nodes import NodeFolder
from installer.edges.proc import run_command

_SHA = re.compile(r"^[0-9a-f]{40}$")


def git_env() -> dict[str, str]:
    """Return the environment for git: no prompts, C locale, no pager."""
    env = dict(os.environ)
    env.update(
        {"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C", "GIT_PAGER": "cat", "GCM_INTERACTIVE": "never"}
    )
    return env


def read_head(repo: Path) -> str | None:
    """Return the commit HEAD points at, read from `.git` files (no subprocess).

    Returns None when ``repo`` is not a plain git clone or HEAD cannot be read.

    Args:
        repo: The clone's work tree (the folder holding `.git`).
    """
    git_dir = repo / ".git"
    if git_dir.is_file():  # a worktree: `.git` names its own folder in the main repository
        try:
            pointer = git_dir.read_text(encoding="utf-8").strip()
        except OSError:
            return None
        if not pointer.startswith("gitdir: "):
            return None
        git_dir = (repo / pointer[8:].strip()).resolve()
    try:
        head = (git_dir / "HEAD").read_text(encoding="utf-8").strip()
    except OSError:
        return None
    if _SHA.match(head):
        return head
    if not head.startswith("ref: "):
        return None
    ref = head[5:].strip()
    try:
        value = (git_dir / ref).read_text(encoding="utf-8").strip()
        return value if _SHA.match(value) else None
    except OSError:
        pass
    try:
        for line in (git_dir / "packed-refs").read_text(encoding="utf-8").splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1] == ref and _SHA.match(parts[0]):
                return parts[0]
    except OSError:
        return None
    return None


def _git(
    repo: Path | None, args: list[str], log: InstallerLogger, what: str, check: bool = True
) -> str:
    git = shutil.which("git")
    if git is None:
        raise EnvironmentUnsupportedError(
            "git was not found on PATH.", "Install git (https://git-scm.com) and run again."
        )
    argv = [git, *(["-C", str(repo)] if repo is not None else []), *args]
    return run_command(argv, log=log, what=what, env=git_env(), check=check).output


def resolve(repo: Path, ref: str, log: InstallerLogger) -> str | None:
    """Return the commit ``ref`` names in ``repo``, or None if it does not exist there.

    Args:
        repo: A git clone.
        ref: A commit hash, tag, branch or other revision, e.g. `origin/master`.
        log: Logger for git's output.

    Raises:
        EnvironmentUnsupportedError: git cannot be started.
    """
    result = run_command(
        [
            shutil.which("git") or "git",
            "-C",
            str(repo),
            "rev-parse",
            "--verify",
            "--quiet",
            "--end-of-options",
            f"{ref}^{{commit}}",
        ],
        log=log,
        what="git rev-parse",
        env=git_env(),
        check=False,
    )
    value = result.output.strip()
    return value if result.returncode == 0 and _SHA.match(value) else None


def changed_files(repo: Path, log: InstallerLogger) -> list[str]:
    """Return tracked files with local changes (untracked files do not count).

    Args:
        repo: A git clone.
        log: Logger for git's output.

    Returns:
        Their paths relative to ``repo``, as `git status --porcelain` prints them.

    Raises:
        EnvironmentUnsupportedError: git is not on PATH.
        CommandFailedError: `git status` failed (e.g. ``repo`` is not a clone).
    """
    output = _git(repo, ["status", "--porcelain", "--untracked-files=no"], log, "git status")
    return [line[3:] for line in output.splitlines() if line.strip()]


def inspect_node_folder(folder: Path, log: InstallerLogger) -> NodeFolder | None:
    """Return what a custom node folder holds: its HEAD and its local changes (nothing is written).

    Args:
        folder: `DIR/ComfyUI/custom_nodes/NAME`.
        log: Logger for git's output.

    Returns:
        None when there is no such folder (or it is empty: a clone may go there); else its
        HEAD (None: not a git checkout) and its tracked files with local changes.

    Raises:
        EnvironmentUnsupportedError: git is not on PATH.
    """
    if not os.path.lexists(folder) or (folder.is_dir() and not any(folder.iterdir())):
        return None
    head = read_head(folder) if (folder / ".git").exists() else None
    if head is None:
        return NodeFolder(head=None)
    try:
        changes = changed_files(folder, log)
    except CommandFailedError:
        return NodeFolder(head=None)
    return NodeFolder(head=head, changes=tuple(changes))


_UNREACHABLE_HINT = "Check the URL and the network, then run again."


def _ensure_commit(
    repo: Path, url: str, target: str, log: InstallerLogger, hint: str = _UNREACHABLE_HINT
) -> str:
    """Make ``target`` (a commit or ref) available in ``repo`` and return its commit."""
    # HEAD (a node added without --ref) is read from the clone's files: one git process
    # fewer (about 10 ms of `nodes add`); rev-parse still answers where they don't say.
    commit = (read_head(repo) if target == "HEAD" else None) or resolve(repo, target, log)
    if commit is None:
        try:
            _git(
                repo,
                ["fetch", "--tags", "--force", "--", url, "+refs/heads/*:refs/remotes/origin/*"],
                log,
                "git fetch",
            )
        except CommandFailedError as exc:
            raise StepFailedError(
                f"Could not fetch {target} from {url}: {exc.message}", hint
            ) from exc
        commit = resolve(repo, target, log) or resolve(repo, f"origin/{target}", log)
    if commit is None:
        raise StepFailedError(
            f"{target} does not exist in {url}.",
            "Check comfyui.commit / --comfyui-ref against the repository.",
        )
    return commit


def fetch_commit(repo: Path, url: str, target: str, log: InstallerLogger) -> str:
    """Make ``target`` (a commit, tag or branch of ``url``) available in ``repo``.

    Only objects and remote refs are fetched; the work tree of ``repo`` is not touched.

    Args:
        repo: A git clone (e.g. `DIR/ComfyUI`).
        url: Repository URL, local path or git bundle.
        target: Commit hash, tag or branch.
        log: Logger for git's output.

    Returns:
        The commit ``target`` names.

    Raises:
        StepFailedError: The fetch failed or ``target`` does not exist in ``url``.
    """
    return _ensure_commit(repo, url, target, log)


def add_worktree(repo: Path, dest: Path, commit: str, log: InstallerLogger) -> str:
    """Check ``commit`` out at ``dest`` as a detached worktree of ``repo`` (or reuse it).

    A worktree shares ``repo``'s objects, so a second checkout costs only its files.
    A ``dest`` left half-made by an interrupted run is removed and made again.

    Args:
        repo: The main clone (its work tree is not touched).
        dest: Where the new checkout goes (it must be free, or a worktree of ``repo``).
        commit: The commit to check out.
        log: Logger for git's output.

    Returns:
        The commit HEAD of ``dest`` is at.

    Raises:
        StepFailedError: git could not make the worktree, or HEAD is not ``commit``.
    """
    if read_head(dest) == commit:
        return commit
    if dest.exists():
        shutil.rmtree(dest)
    _git(repo, ["worktree", "prune"], log, "git worktree prune")
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        _git(
            repo,
            ["-c", "advice.detachedHead=false", "worktree", "add", "--force", "--detach",
             str(dest), commit],
            log,
            "git worktree add",
        )  # fmt: skip
    except CommandFailedError as exc:
        if "No space left on device" in exc.message:
            raise EnvironmentUnsupportedError(
                f"Could not check out {commit[:12]} at {dest}: No space left on device",
                "Free disk space, then run the same command again to continue.",
            ) from exc
        raise StepFailedError(
            f"Could not check out {commit[:12]} at {dest}: {exc.message}",
            "Free disk space or fix the folder's permissions, then run again.",
        ) from exc
    head = read_head(dest)
    if head != commit:
        raise StepFailedError(f"{dest} is at {head}, not {commit} after `git worktree add`.")
    return head


def prune_worktrees(repo: Path, log: InstallerLogger) -> None:
    """Forget worktrees of ``repo`` whose folders are gone (`git worktree prune`).

    Args:
        repo: The main clone.
        log: Logger for git's output.
    """
    _git(repo, ["worktree", "prune"], log, "git worktree prune", check=False)


def show_file(repo: Path, commit: str, path: str, log: InstallerLogger) -> str | None:
    """Return the text of ``path`` at ``commit`` in ``repo`` (None when it is not there).

    Args:
        repo: A git clone holding ``commit``.
        commit: The commit.
        path: The file's path in the repository, e.g. `requirements.txt`.
        log: Logger for git's output.
    """
    git = shutil.which("git") or "git"
    result = run_command(
        [git, "-C", str(repo), "show", f"{commit}:{path}"],
        log=log,
        what="git show",
        env=git_env(),
        check=False,
    )
    return result.output if result.returncode == 0 else None


def checkout_pinned(
    dest: Path,
    url: str,
    target: str,
    log: InstallerLogger,
    expected: str | None = None,
    unreachable_hint: str = _UNREACHABLE_HINT,
) -> str:
    """Clone ``url`` into ``dest`` (or update an existing clone) at ``target`` and verify it.

    Args:
        dest: Where the clone lives (e.g. `DIR/ComfyUI`).
        url: Repository URL, local path or git bundle.
        target: Commit hash, tag or branch to check out.
        log: Logger for git's output.
        expected: The commit HEAD must end at (a pin); None accepts what
            ``target`` resolves to.
        unreachable_hint: The hint when ``url`` cannot be cloned or fetched from (the
            caller knows the option that names another source).

    Returns:
        The commit HEAD is at.

    Raises:
        StepFailedError: The clone has local changes, the commit does not exist,
            or HEAD does not match the pin after checkout.
    """
    if (dest / ".git").exists():
        head = read_head(dest)
        if expected is not None and head == expected:
            return head
        changes = changed_files(dest, log)
        if changes:
            listed = ", ".join(changes[:5]) + (" ..." if len(changes) > 5 else "")
            raise StepFailedError(
                f"{dest} has local changes ({listed}); it was not moved to {target}.",
                f"Keep them with `git -C {dest} stash`, or drop them with "
                f"`git -C {dest} checkout -- .`, then run again.",
            )
        commit = _ensure_commit(dest, url, target, log, unreachable_hint)
        _git(
            dest,
            ["-c", "advice.detachedHead=false", "checkout", "--detach", commit],
            log,
            "git checkout",
        )
    else:
        if dest.exists() and any(dest.iterdir()):
            raise StepFailedError(
                f"{dest} exists and is not a git clone.",
                f"Move {dest} away (or choose another DIR), then run again.",
            )
        staging = dest.with_name(f".{dest.name}.partial-{uuid.uuid4().hex[:8]}")
        for old in dest.parent.glob(f".{dest.name}.partial-*"):
            shutil.rmtree(old, ignore_errors=True)
        try:
            try:
                _git(None, ["clone", "--no-checkout", "--", url, str(staging)], log, "git clone")
            except CommandFailedError as exc:
                raise StepFailedError(
                    f"Could not clone {url}: {exc.message}", unreachable_hint
                ) from exc
            commit = _ensure_commit(staging, url, target, log, unreachable_hint)
            _git(
                staging,
                ["-c", "advice.detachedHead=false", "checkout", "--detach", commit],
                log,
                "git checkout",
            )
            if dest.exists():
                dest.rmdir()
            staging.replace(dest)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    head = read_head(dest) or resolve(dest, "HEAD", log)
    if head is None or (expected is not None and head != expected):
        raise StepFailedError(
            f"{dest} is at {head or 'an unknown commit'} after checkout, not the pinned "
            f"{expected}.",
            "The repository's history may have been rewritten; check the pin.",
        )
    return head
