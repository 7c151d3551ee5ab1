"""A real image: `comfy-install image build` with buildah, then the image's entrypoint answers.

Behind the `image` marker, deselected by default; run it with
`pytest -m image -n 0 -s tests/e2e/test_image_real.py`.
Needs root, buildah and debootstrap (`apt-get install -y buildah debootstrap`), the package
registry, and the ComfyUI v0.33.0 bundle. No image registry is needed: the base image is a
debootstrap'd Debian (see `support.image_base`). Buildah runs with the vfs storage driver and
chroot isolation, which work where overlay mounts and user namespaces do not.

The image is a CPU image (`--gpu none`), but its torch is the registry's: the PyTorch CPU index
is not reachable here, so the test passes `--torch-index default`, and the registry's Linux
torch is a CUDA build with its nvidia-* wheels. It runs on the CPU all the same (`--cpu`);
the image is gigabytes larger than one with a CPU-only torch would be.

Numbers (build time cold and with the layer cache, the image size against a plain
`pip install torch` + ComfyUI image from the same base, seconds from `run` to `/object_info`)
are printed and written to `$COMFY_IMAGE_RESULTS` (JSON) when that is set.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from support.cli import REPO_ROOT
from support.image_base import ensure_base_image

pytestmark = pytest.mark.image

BUNDLE = Path("/work/shared/fixtures/comfyui-v0.33.0.bundle")
TAG = "localhost/comfy-install-test:cpu"
PLAIN_TAG = "localhost/comfy-install-test:plain"
TORCH = ["torch==2.9.1", "torchvision==0.24.1", "torchaudio==2.9.1"]


def _env() -> dict[str, str]:
    return {**os.environ, "STORAGE_DRIVER": "vfs", "BUILDAH_ISOLATION": "chroot"}


def _buildah(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["buildah", *args], capture_output=True, text=True, env=_env())


def _size(tag: str) -> int:
    """The image's size in bytes; buildah 1.28 reports it in decimal units, like `8.88 GB`."""
    images = json.loads(_buildah("images", "--json", tag).stdout)
    number, unit = str(images[0]["size"]).split()
    scale = {"B": 1, "kB": 10**3, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
    return int(float(number) * scale[unit])


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _build(context: Path, base: str) -> tuple[float, dict[str, object]]:
    start = time.monotonic()
    done = subprocess.run(
        [
            str(REPO_ROOT / ".venv" / "bin" / "comfy-install"),
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
            TAG,
            "--comfyui-url",
            str(BUNDLE),
            "--comfyui-ref",
            "v0.33.0",
            "--torch-index",
            "default",
            "--engine",
            "buildah",
            "--json",
        ],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=3600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return time.monotonic() - start, json.loads(done.stdout)["data"]


def _plain_image(base: str, workdir: Path) -> float:
    """The image people write by hand, from the same base: pip install torch, clone, install."""
    context = workdir / "plain"
    context.mkdir()
    shutil.copyfile(BUNDLE, context / "comfyui.bundle")
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
    done = _buildah("bud", "--format", "docker", "-t", PLAIN_TAG, str(context))
    assert done.returncode == 0, done.stderr[-4000:]
    return time.monotonic() - start


def _run_to_object_info(tag: str, entrypoint: list[str]) -> float:
    port = _free_port()
    words = list(entrypoint)
    words[words.index("--port") + 1] = str(port)
    container = _buildah("from", tag).stdout.strip()
    start = time.monotonic()
    process = subprocess.Popen(
        [
            "buildah",
            "run",
            "--isolation",
            "chroot",
            "--user",
            "1000:1000",
            "--env",
            "COMFY_EXTRA_ARGS=--cpu",
            container,
            "--",
            *words,
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
                time.sleep(0.5)
        pytest.fail("/object_info did not answer within 600 s")
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        _buildah("rm", container)


@pytest.mark.skipif(os.geteuid() != 0, reason="buildah with vfs and chroot isolation needs root")
@pytest.mark.skipif(shutil.which("buildah") is None, reason="buildah is not installed")
@pytest.mark.skipif(not BUNDLE.is_file(), reason="the ComfyUI v0.33.0 bundle is not here")
def test_real_image_builds_caches_and_answers(tmp_path: Path) -> None:
    base = ensure_base_image(_env())
    _buildah("rmi", TAG)
    _buildah("rmi", "--prune")  # untagged layers of earlier builds: the first build is cold
    cold, data = _build(tmp_path / "ctx", base)
    warm, again = _build(tmp_path / "ctx", base)
    assert again["labels"] == data["labels"]

    inspected = json.loads(_buildah("inspect", "--type", "image", TAG).stdout)
    config = inspected["Docker"]["config"]
    labels = config["Labels"]
    assert labels["org.opencontainers.image.version"] == data["tool_version"]
    assert labels["io.github.comfy-install.plan-fingerprint"].startswith("sha256:")
    assert labels["io.github.comfy-install.target.gpu"] == "none"
    assert config["User"] == "1000:1000"
    assert "8188/tcp" in config["ExposedPorts"]
    assert "/object_info" in " ".join(config["Healthcheck"]["Test"])
    entrypoint = config["Entrypoint"]
    assert entrypoint[1] == "launch"

    to_object_info = _run_to_object_info(TAG, entrypoint)
    plain_seconds = _plain_image(base, tmp_path)
    numbers = {
        "build_cold_s": round(cold, 1),
        "build_cached_s": round(warm, 1),
        "image_bytes": _size(TAG),
        "plain_image_bytes": _size(PLAIN_TAG),
        "plain_build_s": round(plain_seconds, 1),
        "base_image_bytes": _size(base),
        "run_to_object_info_s": round(to_object_info, 1),
    }
    print(json.dumps(numbers, indent=2))
    if os.environ.get("COMFY_IMAGE_RESULTS"):
        Path(os.environ["COMFY_IMAGE_RESULTS"]).write_text(json.dumps(numbers, indent=2) + "\n")
    assert warm < cold / 3, "the second build should come from the layer cache"
