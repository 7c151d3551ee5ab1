"""A real image: `comfy-install image build`, its layer cache, and its entrypoint answering.

Behind the `image` marker (and `real`), deselected by default; run it with
`pytest -m image -n 0 -s tests/e2e/test_image_real.py` (about 6 minutes on 2 cores, 12 with
`COMFY_IMAGE_RESULTS`).
Needs root, buildah and debootstrap (`apt-get install -y buildah debootstrap`; podman and
runc for the Kubernetes part: `apt-get install -y podman runc`), the package
registry, and the real ComfyUI bundle (`support.real`). No image registry is needed: the base
image is a debootstrap'd Debian (see `support.image_base`). Buildah builds with chroot isolation
(`BUILDAH_ISOLATION=chroot`), which works where user namespaces do not; its storage driver is
whatever its storage holds (overlay here).

The image is a CPU image (`--gpu none`), but its torch is the registry's: the PyTorch CPU index
is not reachable here, so the test passes `--torch-index default`, and the registry's Linux
torch is a CUDA build with its nvidia-* wheels. It runs on the CPU all the same (`--cpu`);
the image is gigabytes larger than one with a CPU-only torch would be.

What it proves: the cold build's entrypoint (the start script: no GPU here, so no measuring,
then `launch`) answers `/object_info` under `buildah run`; a second build with
the same inputs comes whole from the layer cache (the same image ID); a build with another tag
through podman reuses every file-system layer (only metadata follows the install); the OCI
format carries the labels as annotations; the manifests `image kube` writes for the image run
under `podman kube play` (a Deployment with its claims and Service) until `/object_info`
answers through the pod's published port, then `podman kube down` ends them. The images it
builds are removed at the end (the base image stays, a few hundred MB). With
`COMFY_IMAGE_RESULTS=FILE` it also builds the plain image people write by hand (same base,
`pip install` torch and ComfyUI's requirements) and writes the numbers as JSON to FILE.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.cli import cli_path
from support.image_base import can_make_base_image, ensure_base_image
from support.real import BUNDLE_REF, bundle_path, free_port

# `real` too, so that `-m "not real"` (the fast suite) leaves it out as the addopts' -m does
pytestmark = [pytest.mark.image, pytest.mark.real]

TAG = "localhost/comfy-install-test:cpu"
PODMAN_TAG = "localhost/comfy-install-test:cpu-podman"
OCI_TAG = "localhost/comfy-install-test:oci-annotations"
PLAIN_TAG = "localhost/comfy-install-test:plain"
REF = BUNDLE_REF  # the pinned release
TORCH = ["torch==2.9.1", "torchvision==0.24.1", "torchaudio==2.9.1"]


def _env() -> dict[str, str]:
    return {**os.environ, "BUILDAH_ISOLATION": "chroot", "NO_COLOR": "1"}


def _buildah(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["buildah", *args], capture_output=True, text=True, env=_env())


def _inspect(tag: str) -> dict[str, Any]:
    done = _buildah("inspect", "--type", "image", tag)
    assert done.returncode == 0, done.stderr
    found: dict[str, Any] = json.loads(done.stdout)
    return found


def _size(tag: str) -> int:
    """The image's size in bytes; buildah 1.28 reports it in decimal units, like `8.88 GB`."""
    images = json.loads(_buildah("images", "--json", tag).stdout)
    number, unit = str(images[0]["size"]).split()
    scale = {"B": 1, "kB": 10**3, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
    return round(float(number) * scale[unit])


def _remove_images(*tags: str) -> None:
    for tag in tags:
        _buildah("rmi", "--force", tag)
    _buildah("rmi", "--prune")  # the untagged intermediate images of those builds


def _build(context: Path, base: str, tag: str, engine: str, *extra: str) -> dict[str, Any]:
    done = subprocess.run(
        [
            cli_path(),
            "image",
            "build",
            str(context),
            "--gpu",
            "none",
            "--python",
            "3.11",
            "--base",
            base,
            "--tag",
            tag,
            "--comfyui-url",
            str(bundle_path(REF)),
            "--comfyui-ref",
            REF,
            "--torch-index",
            "default",
            "--engine",
            engine,
            "--json",
            *extra,
        ],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=3600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    data: dict[str, Any] = json.loads(done.stdout)["data"]
    return data


def _plain_image(base: str, workdir: Path) -> float:
    """The image people write by hand, from the same base: pip install torch, clone, install."""
    context = workdir / "plain"
    context.mkdir()
    shutil.copyfile(bundle_path(REF), context / "comfyui.bundle")
    (context / "Containerfile").write_text(
        f"FROM {base}\n"
        "COPY comfyui.bundle /tmp/comfyui.bundle\n"
        "RUN python3 -m venv /opt/venv"
        f" && /opt/venv/bin/pip install --no-cache-dir {' '.join(TORCH)}"
        " && git clone -q /tmp/comfyui.bundle /opt/ComfyUI"
        " && /opt/venv/bin/pip install --no-cache-dir -r /opt/ComfyUI/requirements.txt"
        " && rm /tmp/comfyui.bundle\n"
        'CMD ["/opt/venv/bin/python", "/opt/ComfyUI/main.py", "--cpu", "--listen", "0.0.0.0"]\n'
    )
    start = time.monotonic()
    done = _buildah("bud", "--format", "docker", "--layers", "-t", PLAIN_TAG, str(context))
    assert done.returncode == 0, done.stderr[-4000:]
    return time.monotonic() - start


def _kill_serving(port: int) -> None:
    """Stop what still serves on ``port`` (a ComfyUI the entrypoint started in its own session)."""
    wanted = f"--port\0{port}\0".encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if wanted in (proc / "cmdline").read_bytes():
                os.kill(int(proc.name), signal.SIGKILL)
        except (OSError, ProcessLookupError):
            continue


def _run_to_object_info(tag: str, entrypoint: list[str]) -> float:
    port = free_port()
    words = list(entrypoint)
    words[words.index("--port") + 1] = str(port)
    container = _buildah("from", tag).stdout.strip()
    start = time.monotonic()
    process = subprocess.Popen(
        [
            *("buildah", "run", "--isolation", "chroot", "--user", "1000:1000"),
            *("--env", "COMFY_EXTRA_ARGS=--cpu", container, "--", *words),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=_env(),
        start_new_session=True,
    )
    try:
        while time.monotonic() - start < 600:
            assert process.poll() is None, f"the entrypoint exited with {process.returncode}"
            try:
                url = f"http://127.0.0.1:{port}/object_info"
                with urllib.request.urlopen(url, timeout=5) as answer:
                    if answer.status == 200 and "CheckpointLoaderSimple" in json.loads(
                        answer.read()
                    ):
                        return time.monotonic() - start
            except OSError:
                pass
            time.sleep(0.5)
        pytest.fail("/object_info did not answer within 600 s")
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
        _kill_serving(port)
        _buildah("rm", container)


def _annotations_of_an_oci_build(base: str, workdir: Path, labels: dict[str, str]) -> Any:
    """Build a one-line image with the engine's real command line for `--format oci`."""
    from installer.core.log import InstallerLogger
    from installer.image.engine import Engine, build_command, run_build

    context = workdir / "oci"
    context.mkdir()
    (context / "Containerfile").write_text(f'FROM {base}\nLABEL probe="oci"\n')
    engine = Engine("buildah", shutil.which("buildah") or "buildah")
    command = build_command(
        engine, context, context / "Containerfile", OCI_TAG, "oci", labels, context / "id"
    )
    result = run_build(
        engine, command, OCI_TAG, InstallerLogger(verbosity=-1), _env(), context / "id"
    )
    assert result.image_id
    return _inspect(OCI_TAG).get("ImageAnnotations") or {}


KUBE_NAME = "comfy-install-test"


def _podman_conf(workdir: Path) -> Path:
    """A containers.conf for `podman kube play` where the pod's runtime is boxed in.

    Here (a container itself) crun may not raise rlimits to podman's defaults and refuses
    a cgroup v1/v2 hybrid; lower limits, cgroupfs and runc (when installed) run the pod.
    """
    lines = ["[containers]", 'default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]']
    lines += ["[engine]", 'cgroup_manager = "cgroupfs"']
    if shutil.which("runc"):
        lines.append('runtime = "runc"')
    path = workdir / "containers.conf"
    path.write_text("\n".join(lines) + "\n")
    return path


def _kube_play_to_object_info(tag: str, context: Path, workdir: Path) -> dict[str, Any]:
    """`image kube` for the built image, `podman kube play` it, `/object_info`, `kube down`.

    Podman 4.3 publishes a pod's port only through `hostPort`, which the manifests leave
    to the cluster, so the test adds one to the written file. The claims become podman
    volumes, which `kube down` keeps; they are removed at the end.
    """
    import yaml

    written = subprocess.run(
        [cli_path(), "image", "kube", str(context), "--gpu", "none", "--image", tag,
         "--name", KUBE_NAME, "--json"],
        capture_output=True, text=True, env=_env(), timeout=120,
    )  # fmt: skip
    assert written.returncode == 0, written.stderr
    data: dict[str, Any] = json.loads(written.stdout)["data"]
    manifests = list(yaml.safe_load_all(Path(data["path"]).read_text()))
    port = free_port()
    [deployment] = [m for m in manifests if m["kind"] == "Deployment"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["--cpu"]
    container["ports"][0]["hostPort"] = port
    played = workdir / "played.yaml"
    played.write_text(yaml.safe_dump_all(manifests, sort_keys=False))
    env = {**_env(), "CONTAINERS_CONF": str(_podman_conf(workdir))}
    volumes = [f"{KUBE_NAME}-models", f"{KUBE_NAME}-tune"]
    start = time.monotonic()
    play = subprocess.run(["podman", "kube", "play", str(played)], capture_output=True,
                          text=True, env=env, timeout=300)  # fmt: skip
    try:
        assert play.returncode == 0, play.stdout + play.stderr
        url = f"http://127.0.0.1:{port}/object_info"
        while time.monotonic() - start < 600:
            try:
                with urllib.request.urlopen(url, timeout=5) as answer:
                    if answer.status == 200 and "KSampler" in json.loads(answer.read()):
                        break
            except OSError:
                time.sleep(1)
        else:
            logs = subprocess.run(["podman", "pod", "logs", f"{KUBE_NAME}-pod-0"],
                                  capture_output=True, text=True, env=env)  # fmt: skip
            pytest.fail(f"/object_info did not answer through the pod: {logs.stdout[-3000:]}")
        seconds = time.monotonic() - start
    finally:
        down = subprocess.run(["podman", "kube", "down", str(played)], capture_output=True,
                              text=True, env=env, timeout=300)  # fmt: skip
        subprocess.run(["podman", "volume", "rm", "--force", *volumes], capture_output=True,
                       env=env)  # fmt: skip
    assert down.returncode == 0, down.stderr
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/object_info", timeout=2)
    return {"kube_play_to_object_info_s": round(seconds, 1), "objects": data["objects"]}


@pytest.fixture
def images() -> Iterator[None]:
    """Start cold (no image or intermediate layer of an earlier run) and leave nothing behind."""
    _remove_images(TAG, PODMAN_TAG, OCI_TAG, PLAIN_TAG)
    yield
    _remove_images(TAG, PODMAN_TAG, OCI_TAG, PLAIN_TAG)


@pytest.mark.skipif(os.geteuid() != 0, reason="buildah with chroot isolation needs root")
@pytest.mark.skipif(shutil.which("buildah") is None, reason="buildah is not installed")
@pytest.mark.skipif(not can_make_base_image(), reason="no debootstrap and no cached base root")
def test_real_image_builds_caches_and_answers(tmp_path: Path, images: None) -> None:
    base = ensure_base_image(_env())
    context = tmp_path / "ctx"
    cold = _build(context, base, TAG, "buildah")
    cached = _build(context, base, TAG, "buildah")
    assert cached["labels"] == cold["labels"]
    # the same inputs: every step from the layer cache, so the very same image
    assert cold["build"]["image_id"] and cached["build"]["image_id"] == cold["build"]["image_id"]
    assert cached["build"]["cached_steps"] > cold["build"]["cached_steps"]

    inspected = _inspect(TAG)
    config = inspected["Docker"]["config"]
    labels = config["Labels"]
    assert labels["org.opencontainers.image.version"] == cold["tool_version"]
    assert labels["io.github.comfy-install.plan-fingerprint"].startswith("sha256:")
    assert labels["io.github.comfy-install.target.gpu"] == "none"
    assert labels["org.opencontainers.image.ref.name"] == TAG
    assert config["User"] == "1000:1000"
    assert "8188/tcp" in config["ExposedPorts"]
    assert "/object_info" in " ".join(config["Healthcheck"]["Test"])
    entrypoint = config["Entrypoint"]
    assert entrypoint[:2] == ["/bin/sh", "/etc/comfy-install/start.sh"]
    assert config["Env"] and "COMFY_TUNE_AT_START=1" in config["Env"]

    podman = None
    if shutil.which("podman"):
        # another tag (so other labels), another engine: the install's layer is reused
        podman = _build(tmp_path / "ctx-podman", base, PODMAN_TAG, "podman")
        assert podman["build"]["engine"] == "podman"
        assert podman["build"]["image_id"] != cold["build"]["image_id"]
        layers = inspected["Docker"]["rootfs"]["diff_ids"]
        assert _inspect(PODMAN_TAG)["Docker"]["rootfs"]["diff_ids"] == layers
        assert (
            _inspect(PODMAN_TAG)["Docker"]["config"]["Labels"]["org.opencontainers.image.ref.name"]
            == PODMAN_TAG
        )

    annotations = _annotations_of_an_oci_build(base, tmp_path, cold["labels"])
    for key, value in cold["labels"].items():
        assert annotations.get(key) == value, key

    to_object_info = _run_to_object_info(TAG, entrypoint)
    kube = _kube_play_to_object_info(TAG, context, tmp_path) if shutil.which("podman") else None
    numbers: dict[str, Any] = {
        "build_cold_s": cold["build"]["seconds"],
        "build_cached_s": cached["build"]["seconds"],
        "steps": cold["build"]["steps"],
        "cached_steps": cached["build"]["cached_steps"],
        "podman_other_tag_s": podman["build"]["seconds"] if podman else None,
        "podman_other_tag_cached_steps": podman["build"]["cached_steps"] if podman else None,
        "image_bytes": _size(TAG),
        "base_image_bytes": _size(base),
        "run_to_object_info_s": round(to_object_info, 1),
        "kube_play_to_object_info_s": kube["kube_play_to_object_info_s"] if kube else None,
    }
    results = os.environ.get("COMFY_IMAGE_RESULTS")
    if results:
        numbers["plain_build_s"] = round(_plain_image(base, tmp_path), 1)
        numbers["plain_image_bytes"] = _size(PLAIN_TAG)
        Path(results).write_text(json.dumps(numbers, indent=2) + "\n")
    print(json.dumps(numbers, indent=2))
