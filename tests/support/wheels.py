"""Build tiny but real wheel files (METADATA, WHEEL, RECORD with sha256) for tests.

The wheels stand in for torch, torchvision, xformers, ... in a find-links folder
or a local index, so uv resolves and installs them for real.
"""

from __future__ import annotations

import base64
import hashlib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path


def _record_hash(data: bytes) -> str:
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class WheelSpec:
    """What goes into one test wheel."""

    name: str
    version: str
    requires: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)
    tag: str = "py3-none-any"
    filename: str | None = None

    @property
    def dist(self) -> str:
        return self.name.replace("-", "_")


def build_wheel(spec: WheelSpec, dest: Path) -> Path:
    """Write the wheel described by ``spec`` into ``dest`` and return its path."""
    dest.mkdir(parents=True, exist_ok=True)
    dist_info = f"{spec.dist}-{spec.version}.dist-info"
    files = dict(spec.files)
    if not any(name.endswith(".py") for name in files):
        module = spec.dist.lower()
        files[f"{module}/__init__.py"] = f'__version__ = "{spec.version}"\n'
    metadata = ["Metadata-Version: 2.1", f"Name: {spec.name}", f"Version: {spec.version}"]
    metadata += [f"Requires-Dist: {req}" for req in spec.requires]
    files[f"{dist_info}/METADATA"] = "\n".join(metadata) + "\n"
    files[f"{dist_info}/WHEEL"] = (
        "Wheel-Version: 1.0\nGenerator: comfy-install-tests\nRoot-Is-Purelib: true\n"
        f"Tag: {spec.tag}\n"
    )
    record_lines = [
        f"{name},{_record_hash(text.encode())},{len(text.encode())}" for name, text in files.items()
    ]
    record_lines.append(f"{dist_info}/RECORD,,")
    filename = spec.filename or f"{spec.dist}-{spec.version}-{spec.tag}.whl"
    path = dest / filename
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, text in files.items():
            archive.writestr(name, text)
        archive.writestr(f"{dist_info}/RECORD", "\n".join(record_lines) + "\n")
    return path


FAKE_TORCH_INIT = '''
"""A tiny stand-in for torch: enough for import checks, not for maths."""
from torch import version
from torch import cuda
__version__ = version.__version__
'''

FAKE_TORCH_CUDA = """
def is_available():
    return False

def device_count():
    return 0
"""


def torch_wheel_specs(
    torch_version: str = "2.9.1", cuda: str | None = None, local: str | None = None
) -> list[WheelSpec]:
    """Specs of a fake torch trio (torch, torchvision, torchaudio) pinned together."""
    full = f"{torch_version}+{local}" if local else torch_version
    version_py = f"__version__ = '{full}'\ncuda = {cuda!r}\n"
    vision = {"2.9.1": "0.24.1", "2.10.0": "0.25.0"}.get(torch_version, "0.0.1")
    return [
        WheelSpec(
            "torch",
            full,
            files={
                "torch/__init__.py": FAKE_TORCH_INIT,
                "torch/version.py": version_py,
                "torch/cuda.py": FAKE_TORCH_CUDA,
            },
        ),
        WheelSpec("torchvision", vision, requires=[f"torch=={torch_version}"]),
        WheelSpec("torchaudio", torch_version, requires=[f"torch=={torch_version}"]),
    ]
