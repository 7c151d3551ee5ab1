"""Errors that reach the user, and the exit codes they end with.

Every failure a user can cause or meet is raised as a subclass of
[`InstallerError`][installer.core.errors.InstallerError]: it carries *what happened*
(`message`), *what to do* (`hint`) and the process exit code from the CLI
contract. The CLI prints it once, without a traceback unless `--verbose`.

Each subclass documents its typical causes and fixes in its docstring; the
troubleshooting page of the user guide is generated from this module with
[`error_catalogue`][installer.core.errors.error_catalogue], so the two cannot drift.
"""

from __future__ import annotations

import enum
import inspect
from dataclasses import dataclass


class ExitCode(enum.IntEnum):
    """Process exit codes, as promised in the CLI contract."""

    OK = 0
    STEP_FAILED = 1
    USAGE = 2
    ENVIRONMENT = 3
    INTEGRITY = 4
    REGRESSION = 5
    INTERRUPTED = 130


class InstallerError(Exception):
    """Base class of every error the user sees.

    Cause: any failure the installer can explain.
    Fix: read the hint printed under the message.
    """

    code: str = "error"
    exit_code: ExitCode = ExitCode.STEP_FAILED
    default_hint: str = "Run the same command again with --verbose for details."

    def __init__(self, message: str, hint: str | None = None) -> None:
        """Create the error.

        Args:
            message: What happened, in one sentence.
            hint: What the user should do next; the class default when omitted.
        """
        super().__init__(message)
        self.message = message
        self.hint = hint if hint is not None else self.default_hint

    def __str__(self) -> str:
        """Return the message and the hint on one line."""
        return f"{self.message} ({self.hint})" if self.hint else self.message


class UsageError(InstallerError):
    """The command line asks for something that cannot be done.

    Cause: conflicting or malformed options (`--cuda-driver` without `--gpu CC`,
    an unknown step name in `--only`, a `--platform` other than the current OS
    without `--dry-run`).
    Fix: correct the options; `comfy-install COMMAND --help` lists them.
    """

    code = "usage"
    exit_code = ExitCode.USAGE
    default_hint = "See `comfy-install install --help`."


class ConfigError(InstallerError):
    """A configuration file is missing, unreadable or does not match its schema.

    Cause: `dependencies.json`, `tools_manifest.json` or a model manifest with
    invalid JSON, a wrong type, an unknown key or a version spec that is not
    PEP 440. The message names the file and the JSON path of the fault.
    Fix: correct the file at that path; `comfy-install config schema` prints the
    schema and `comfy-install config validate FILE` checks a file.
    """

    code = "config"
    exit_code = ExitCode.USAGE
    default_hint = "Fix the file, then check it with `comfy-install config validate FILE`."


class PlanError(InstallerError):
    """No valid plan exists for this machine and configuration.

    Cause: no torch variant in the config fits the GPU and driver, or a
    requested step depends on one that is neither done nor selected.
    Fix: follow the hint (update the driver, choose `--torch-index cpu`, add a
    variant to the config, or widen `--only`).
    """

    code = "plan"
    exit_code = ExitCode.USAGE
    default_hint = "Run `comfy-install install DIR --dry-run` to see the plan."


class EnvironmentUnsupportedError(InstallerError):
    """The machine cannot support the request.

    Cause: git missing, an unsupported OS, too little free disk, DIR not
    writable or not a directory, uv unable to start, a Python that cannot be
    found or downloaded.
    Fix: install the missing tool, free disk space or choose another DIR, as the
    message says.
    """

    code = "environment"
    exit_code = ExitCode.ENVIRONMENT
    default_hint = "Run `comfy-install doctor` to see what this machine is missing."


class LockHeldError(InstallerError):
    """Another comfy-install process is working on the same directory.

    Cause: two installs into one DIR at the same time.
    Fix: wait for the other process (its pid is in the message) to finish; a
    lock left by a process that no longer runs is taken over automatically.
    """

    code = "locked"
    exit_code = ExitCode.ENVIRONMENT
    default_hint = "Wait for the other process to finish, then run the command again."


class StateTooNewError(InstallerError):
    """The install's record was written by a newer comfy-install.

    Cause: `DIR/.comfy-install/state.json` has a `schema_version` this comfy-install does
    not know: a newer release installed or updated DIR, then an older one was run on it.
    The older one cannot tell what the record means, so it changes nothing.
    Fix: upgrade comfy-install (`uv tool upgrade comfy-install` or `pip install -U
    comfy-install`) and run the command again.
    """

    code = "state-too-new"
    exit_code = ExitCode.ENVIRONMENT
    default_hint = "Upgrade comfy-install, then run the command again."


class StepFailedError(InstallerError):
    """A step of the install failed.

    Cause: a command the step ran (uv, git, ComfyUI) exited with an error;
    the message names the step, the log file has the full output.
    Fix: read the last lines shown, fix the cause, and run the same command
    again: finished steps are not repeated.
    """

    code = "step-failed"
    exit_code = ExitCode.STEP_FAILED
    default_hint = "Fix the cause shown above and run the same command again to continue."


class CommandFailedError(StepFailedError):
    """A program the installer ran exited with an error.

    Cause: uv, git or the venv's Python failed; the message shows its last
    output lines and the log file has all of it.
    Fix: read those lines; they usually name the package, file or network
    problem. Run the same command again once it is fixed.
    """

    code = "command-failed"

    def __init__(self, what: str, returncode: int, output: str, hint: str | None = None) -> None:
        """Describe the failure of the program run for ``what``.

        Args:
            what: Human name of the action, e.g. "uv pip install".
            returncode: The program's exit code.
            output: Its combined output (the last lines go into the message).
            hint: What to do; the class default when omitted.
        """
        from installer.core.log import redact

        tail = [line for line in output.splitlines() if line.strip()][-12:]
        message = f"{what} failed (exit code {returncode})"
        if tail:
            message += ":\n  " + "\n  ".join(redact(line) for line in tail)
        super().__init__(message, hint)
        self.returncode = returncode
        self.output = output


class TorchConflictError(StepFailedError):
    """A package wanted a different torch than the one installed.

    Cause: a requirement (of ComfyUI, a custom node or an optimization)
    depends on another torch version or build. The installer never replaces
    a working torch to satisfy it.
    Fix: pin that package to a release built for the installed torch, or
    change the torch version in `dependencies.json` for everything at once.
    """

    code = "torch-conflict"
    default_hint = (
        "Pin that package to a version built for the installed torch, "
        "or change the torch pin in dependencies.json."
    )


class NodeConflictError(StepFailedError):
    """A custom node's requirements cannot live beside what the install holds.

    Cause: a requirement of the node asks for another torch (or accelerator) than the held
    one, or pins a package that ComfyUI or an installed node needs at another version. Nothing
    was changed: the node was not cloned into custom_nodes/ and the venv is as it was.
    Fix: the message names the node, the requirement and what it fights; leave that
    requirement out (`--skip-requirement NAME`), install none (`--no-deps`), or pick another
    release of the node (`--ref REF`).
    """

    code = "node-conflict"
    default_hint = "Pass --skip-requirement NAME, --no-deps, or --ref REF with another release."


class ResolutionError(StepFailedError):
    """uv's resolver found no set of versions that satisfies every requirement together.

    Cause: two requirements (of ComfyUI, custom nodes, or a held package such as torch)
    exclude each other. `conflict` holds the requirements uv's error named.
    Fix: read which requirements uv names; leave one out or pick other releases.
    """

    code = "resolution-failed"

    def __init__(self, message: str, conflict: object = None, hint: str | None = None) -> None:
        """Create the error.

        Args:
            message: What happened.
            conflict: What uv's error named (a `ResolutionConflict`; None: not a conflict).
            hint: What to do.
        """
        super().__init__(message, hint)
        self.conflict = conflict


class SnapshotRefusedError(EnvironmentUnsupportedError):
    """A snapshot cannot be restored on this machine or into this DIR.

    Cause: the snapshot was taken on another platform or Python, its accelerators need a GPU
    this machine does not have.
    Fix: restore on a machine like the one it was taken on; or install afresh
    with `comfy-install install` and add the nodes with `comfy-install nodes add`.
    """

    code = "snapshot-refused"
    default_hint = "Restore it on a machine of the same platform, into a new, empty DIR."


class BuildFailedError(StepFailedError):
    """Building a package from its pinned source failed.

    Cause: the compiler (nvcc, g++ or MSVC) or the package's setup script stopped with an
    error while step 10 built SageAttention from source; the message shows the first
    error and the log file has the whole build output. The install goes on: the next
    route (SageAttention 1 from PyPI) is installed instead when one is configured.
    Fix: read the first error (a missing header or library usually means an incomplete
    CUDA toolkit or a host compiler nvcc does not support), fix it and run the install
    again with `--force optimizations`; or turn source builds off with `--cuda-toolkit none`.
    """

    code = "build-failed"
    default_hint = (
        "Read the first error and the log; fix it, then run again with --force optimizations "
        "(or pass --cuda-toolkit none to skip the build)."
    )


class NetworkError(InstallerError):
    """A server could not be reached or kept failing.

    Cause: no network, a proxy or firewall in the way, a TLS failure, a server
    answering 5xx/429 past the retry budget, or `--offline` with something
    missing from the cache.
    Fix: check the connection or proxy settings, use a mirror
    (`--index-url`, `--find-links`), then run the command again; partial
    downloads resume.
    """

    code = "network"
    exit_code = ExitCode.STEP_FAILED
    default_hint = "Check the network (or use --index-url/--find-links), then run again."


class DownloadError(InstallerError):
    """A download was refused by the server.

    Cause: 404 (the file moved), 401/403 (a token missing or wrong), or a
    URL not allowed by policy (plain HTTP without a pinned checksum).
    Fix: check the URL in the manifest; set `HF_TOKEN` / `CIVITAI_TOKEN` for
    gated files.
    """

    code = "download"
    exit_code = ExitCode.STEP_FAILED
    default_hint = "Check the URL in the manifest, and the token for gated files."


class FileConflictError(InstallerError):
    """A download would replace a different file of the same name, so it stopped.

    Cause: a model manifest names a file that already exists in `models/<kind>/`
    with other content (your own file, or another model of that name), and the
    manifest gives no sha256 to tell which one is right. Your file is kept as it
    is; nothing was downloaded over it.
    Fix: add the entry's sha256 to the manifest (a file that does not match it is
    then moved aside, never deleted), give the entry another `filename`, or pass
    `--replace` to `comfy-install models download` to move your file aside under
    a name that says so.
    """

    code = "file-conflict"
    exit_code = ExitCode.STEP_FAILED
    default_hint = (
        "Add the file's sha256 to the manifest, give the entry another filename, or "
        "pass --replace to move the existing file aside (it is renamed, never deleted)."
    )


class IntegrityError(InstallerError):
    """A downloaded or local file does not match its recorded checksum.

    Cause: a corrupted or tampered download, a changed upstream file, or a
    manifest entry with no checksum used without `--allow-unverified`.
    Fix: run again to download the file afresh; if it fails again, the
    upstream file changed: do not use it until its checksum is confirmed.
    """

    code = "integrity"
    exit_code = ExitCode.INTEGRITY
    default_hint = "Run again to download afresh; if it fails again, do not trust the file."


class InterruptedByUserError(InstallerError):
    """The run was interrupted (Ctrl-C or SIGTERM).

    Cause: the user or the system stopped the process.
    Fix: run the same command again; it continues from the interrupted step.
    """

    code = "interrupted"
    exit_code = ExitCode.INTERRUPTED
    default_hint = "Run the same command to continue."


class RegressionError(InstallerError):
    """A benchmark found a regression and `--fail-on-regression` was given.

    Cause: an attention backend got more than 10% slower than in the previous
    saved run at some shape and dtype, or stopped giving right answers (or any
    answer) there; typically after an update of torch, the driver or an
    optimization package.
    Fix: read the table of changes and roll back the update that caused it.
    The regressed run is saved too, so the next `--compare` compares with it;
    scripts that must keep a fixed reference use `--baseline FILE`.
    """

    code = "regression"
    exit_code = ExitCode.REGRESSION
    default_hint = "Read the table of changes above; roll back the update that caused it."


@dataclass(frozen=True)
class CatalogueEntry:
    """One error class as documented for users."""

    name: str
    code: str
    exit_code: int
    summary: str
    cause: str
    fix: str


def error_catalogue() -> list[CatalogueEntry]:
    """Return every error class of this module with its documented cause and fix.

    The user guide's troubleshooting page is generated from this list.
    """
    entries: list[CatalogueEntry] = []
    for obj in globals().values():
        if not (inspect.isclass(obj) and issubclass(obj, InstallerError)):
            continue
        doc = inspect.getdoc(obj) or ""
        summary, _, rest = doc.partition("\n")
        cause, fix = _section(rest, "Cause:"), _section(rest, "Fix:")
        entries.append(
            CatalogueEntry(obj.__name__, obj.code, int(obj.exit_code), summary, cause, fix)
        )
    return entries


def _section(text: str, label: str) -> str:
    """Return the paragraph of ``text`` that starts with ``label``, unwrapped."""
    start = text.find(label)
    if start < 0:
        return ""
    body = text[start + len(label) :]
    for other in ("Cause:", "Fix:"):
        cut = body.find(other)
        if cut >= 0:
            body = body[:cut]
    return " ".join(body.split())
