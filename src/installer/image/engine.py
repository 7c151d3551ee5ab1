"""Find a container engine and run an image build with it, streaming its output.

The first engine found wins, in this order: `docker buildx` (the docker CLI
with its buildx plugin: a `docker` without buildx is passed over), `podman`,
`buildah`. Every engine keeps its layer cache (`--layers` for podman and
buildah). The image format is a choice with a cost either way:

- `docker` (the default): the image keeps its `HEALTHCHECK` (Docker and Podman
  run it); the Docker format has no annotations, so the image's metadata is in
  its labels only.
- `oci`: the labels are also written as OCI annotations of the manifest
  (`--annotation`), which registries and OCI tools read without pulling the
  config; the OCI format has no `HEALTHCHECK`, so the engine drops it (a
  Kubernetes or RunPod probe on `/object_info` does its job there).

The engines' own settings (`BUILDAH_ISOLATION`, `storage.conf`,
`containers.conf`, the buildx builder) apply unchanged.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from installer.core.log import InstallerLogger

ENGINES = ("docker", "podman", "buildah")
"""The engines, in the order they are looked for."""
FORMATS = ("docker", "oci")
"""The image formats a build can write."""

_BUILDAH_STEP = re.compile(r"^(?:\[(\d+)/(\d+)\] )?STEP (\d+)/(\d+): (.*)$")
_DOCKER_STEP = re.compile(r"^#\d+ \[(?:([\w.-]+) )?(\d+)/(\d+)\] (.*)$")
_CACHED = re.compile(r"^(?:--> Using cache [0-9a-f]+|#\d+ CACHED)\s*$")


@dataclass(frozen=True)
class Engine:
    """A container engine that can build images."""

    name: str
    """`docker`, `podman` or `buildah`."""
    binary: str
    """Its program, as found on PATH."""


@dataclass(frozen=True)
class BuildResult:
    """What a finished build reports."""

    engine: str
    tag: str
    seconds: float
    steps: int
    """How many build steps the engine announced."""
    cached_steps: int = 0
    """How many of them the engine took from its layer cache."""
    image_id: str | None = None
    """The built image's ID (`sha256:...`), from the engine's `--iidfile`."""


def _has_buildx(binary: str, env: Mapping[str, str] | None) -> bool:
    try:
        done = subprocess.run(
            [binary, "buildx", "version"],
            capture_output=True,
            timeout=30,
            env=dict(env) if env is not None else None,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def find_engine(
    prefer: str | None = None, path: str | None = None, env: Mapping[str, str] | None = None
) -> Engine:
    """Return the first container engine on PATH that can build, or the one asked for.

    Args:
        prefer: `docker`, `podman` or `buildah` to use only that one; None: the first found.
        path: The search path (`PATH`'s form); None: this process's PATH.
        env: The environment `docker buildx version` runs in; None: this process's.

    Raises:
        UsageError: ``prefer`` names no known engine.
        EnvironmentUnsupportedError: No engine (or not the one asked for) is installed.
    """
    from installer.core.errors import EnvironmentUnsupportedError, UsageError

    if prefer is not None and prefer not in ENGINES:
        raise UsageError(f"--engine {prefer}: expected one of {', '.join(ENGINES)}.")
    for name in [prefer] if prefer else ENGINES:
        binary = shutil.which(name, path=path)
        if binary is None:
            continue
        if name == "docker" and not _has_buildx(binary, env):
            continue
        return Engine(name, binary)
    wanted = f"{prefer}" + (" buildx" if prefer == "docker" else "") if prefer else None
    raise EnvironmentUnsupportedError(
        f"No container engine found ({wanted or 'docker buildx, podman or buildah'}).",
        "Install Docker with buildx, Podman or Buildah, or build the context yourself: "
        "`comfy-install image context DIR ...` then any engine on DIR.",
    )


def build_command(
    engine: Engine,
    context_dir: Path,
    containerfile: Path,
    tag: str,
    image_format: str = "docker",
    annotations: Mapping[str, str] | None = None,
    iidfile: Path | None = None,
) -> list[str]:
    """Return the command that builds ``context_dir`` into ``tag`` with ``engine``.

    Args:
        engine: The engine.
        context_dir: The build context folder.
        containerfile: Its Containerfile.
        tag: The tag of the result.
        image_format: `docker` or `oci` (see the module's notes on what each keeps).
        annotations: OCI annotations (key → value), passed only with the `oci` format: the
            Docker format has none. Docker's buildx needs version 0.12 or newer for them, and
            keeps them where its image store keeps manifests (the containerd store, a push).
        iidfile: Where the engine writes the built image's ID; None: nowhere.

    Raises:
        UsageError: ``image_format`` is not `docker` or `oci`.
    """
    from installer.core.errors import UsageError

    if image_format not in FORMATS:
        raise UsageError(f"--format {image_format}: expected one of {', '.join(FORMATS)}.")
    words = ["--file", str(containerfile), "--tag", tag]
    if iidfile is not None:
        words += ["--iidfile", str(iidfile)]
    if image_format == "oci":
        for key, value in sorted((annotations or {}).items()):
            words += ["--annotation", f"{key}={value}"]
    words.append(str(context_dir))
    if engine.name == "docker":
        return [engine.binary, "buildx", "build", "--load", "--progress", "plain", *words]
    verb = "build" if engine.name == "podman" else "bud"
    return [engine.binary, verb, "--format", image_format, "--layers", *words]


def progress_line(line: str) -> str | None:
    """Return the step a line of engine output announces (`[runtime 3/9] RUN ...`), or None.

    Args:
        line: One line of `docker buildx --progress plain`, `podman build` or `buildah bud` output.
    """
    found = _BUILDAH_STEP.match(line)
    if found:
        stage = f"stage {found[1]}/{found[2]} " if found[1] else ""
        return f"[{stage}step {found[3]}/{found[4]}] {found[5]}"
    found = _DOCKER_STEP.match(line)
    if found:
        stage = f"{found[1]} " if found[1] else ""
        return f"[{stage}{found[2]}/{found[3]}] {found[4]}"
    return None


def run_build(
    engine: Engine,
    command: Sequence[str],
    tag: str,
    log: InstallerLogger,
    env: Mapping[str, str] | None = None,
    iidfile: Path | None = None,
) -> BuildResult:
    """Run a build command, showing each step as it starts and all output with `--verbose`.

    Args:
        engine: The engine the command runs.
        command: From [`build_command`][installer.image.engine.build_command].
        tag: The tag the build produces (reported).
        log: The logger: steps as info lines, every line of output as subprocess output.
        env: The environment of the build; None: this process's.
        iidfile: The `--iidfile` the command names: the image ID is read from it.

    Raises:
        CommandFailedError: The engine exited with an error (its last lines are in the message).
        KeyboardInterrupt: Interrupted; the engine is stopped first.
    """
    from installer.core.errors import CommandFailedError

    start = time.monotonic()
    tail: deque[str] = deque(maxlen=40)
    steps = cached = 0
    log.debug("running: " + " ".join(command))
    process = subprocess.Popen(
        list(command),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        env=dict(env) if env is not None else None,
    )
    try:
        assert process.stdout is not None
        for line in process.stdout:
            line = line.rstrip("\n")
            tail.append(line)
            log.output(line)
            shown = progress_line(line)
            if shown is not None:
                steps += 1
                log.info(shown[:200])
            elif _CACHED.match(line.strip()):
                cached += 1
        code = process.wait()
    except BaseException:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        raise
    if code != 0:
        raise CommandFailedError(
            f"{engine.name} build",
            code,
            "\n".join(tail),
            "Read the engine's last lines above; with --verbose every line is shown.",
        )
    image_id = None
    if iidfile is not None and iidfile.is_file():
        image_id = iidfile.read_text(encoding="utf-8").strip() or None
    return BuildResult(engine.name, tag, time.monotonic() - start, steps, cached, image_id)
