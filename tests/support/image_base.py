"""A local base image for the real image build: a debootstrap'd Debian, no registry needed.

`debootstrap --variant=minbase` makes a Debian bookworm root with the README's
prerequisites and nothing else (`python3 python3-venv git ca-certificates`, about 45 s);
it is cached as a tarball under `COMFY_IMAGE_BASE_CACHE` (default
`/work/cache/image-base`) and imported into buildah's storage with `buildah from scratch`
+ `buildah mount` + `buildah commit`. `bench/debian_readme.sh` (and so `.ci/run`, which
runs the README's test command in such a root) unpacks the same tarball: one debootstrap
for both. Stdlib only: the system Python of a fresh machine runs this module.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

BASE_IMAGE = "localhost/comfy-install-test-base:bookworm"
PACKAGES = "python3,python3-venv,git,ca-certificates"


def cache_dir() -> Path:
    """Where the debootstrap root and its tarball are kept between runs."""
    return Path(os.environ.get("COMFY_IMAGE_BASE_CACHE", "/work/cache/image-base"))


def _name() -> str:
    """The root's name: its packages are part of it, so a root with other packages is not reused."""
    return "bookworm-minbase-" + PACKAGES.replace(",", "+")


def tarball_path() -> Path:
    """Where the tarball of the debootstrap root is kept (it may not be made yet)."""
    return cache_dir() / f"{_name()}.tar"


def can_make_base_image() -> bool:
    """True when the base image is here or can be made: a cached tarball, or debootstrap."""
    return tarball_path().is_file() or shutil.which("debootstrap") is not None


def apt_mirror() -> str:
    """The Debian mirror apt on this machine uses (deb.debian.org when none is found)."""
    for source in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for line in source.read_text().splitlines():
            if line.startswith("URIs:") and "security" not in line:
                return line.split()[1]
    return "http://deb.debian.org/debian"


def buildah(*args: str, env: dict[str, str] | None = None) -> str:
    """Run buildah; return its stdout, stripped (a failure raises CalledProcessError)."""
    return subprocess.run(
        ["buildah", *args], check=True, capture_output=True, text=True, env=env
    ).stdout.strip()


def base_tarball() -> Path:
    """The cached tarball of the debootstrap root, made when missing."""
    tarball = tarball_path()
    if tarball.is_file():
        return tarball
    root = cache_dir() / _name()
    cache_dir().mkdir(parents=True, exist_ok=True)
    if not (root / "usr" / "bin" / "python3").exists():
        shutil.rmtree(root, ignore_errors=True)
        command = ["debootstrap", "--variant=minbase", f"--include={PACKAGES}", "bookworm"]
        done = subprocess.run(
            [*command, str(root), apt_mirror()], capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"debootstrap failed ({done.returncode}):\n{done.stderr[-3000:]}")
    for deb in (root / "var" / "cache" / "apt" / "archives").glob("*.deb"):
        deb.unlink()
    partial = tarball.with_suffix(".part")
    subprocess.run(["tar", "-C", str(root), "-cf", str(partial), "."], check=True)
    partial.rename(tarball)
    return tarball


def ensure_base_image(env: dict[str, str]) -> str:
    """Import the cached root as BASE_IMAGE into buildah's storage (once); return its name."""
    listed = subprocess.run(
        ["buildah", "images", "--format", "{{.Name}}:{{.Tag}}"],
        capture_output=True,
        text=True,
        env=env,
    ).stdout.split()
    if BASE_IMAGE in listed:
        return BASE_IMAGE
    tarball = base_tarball()
    container = buildah("from", "scratch", env=env)
    try:
        mount = buildah("mount", container, env=env)
        subprocess.run(["tar", "-C", mount, "-xf", str(tarball)], check=True)
        settings = ["--env", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
        # Where this machine reaches the package index through a TLS-inspecting proxy, the
        # image needs the proxy's CA like any other machine of this site would.
        host_ca = Path(os.environ.get("SSL_CERT_FILE", "/nonexistent"))
        if host_ca.is_file():
            bundle = "/etc/ssl/certs/ca-certificates.crt"
            shutil.copyfile(host_ca, Path(mount) / bundle.lstrip("/"))
            for name in ("SSL_CERT_FILE", "PIP_CERT", "REQUESTS_CA_BUNDLE", "GIT_SSL_CAINFO"):
                settings += ["--env", f"{name}={bundle}"]
        buildah("config", *settings, "--cmd", "/bin/bash", container, env=env)
        buildah("commit", "--format", "docker", container, BASE_IMAGE, env=env)
    finally:
        subprocess.run(["buildah", "rm", container], capture_output=True, env=env)
    return BASE_IMAGE
