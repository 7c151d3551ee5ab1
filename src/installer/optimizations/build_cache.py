"""Wheels built from source, kept on this machine so the next install does not compile again.

A build is keyed by what makes its binary: the source (name, commit, subdirectory),
the torch it was compiled against (version and CUDA build), the Python tag, the
architectures and the platform. Each key has a folder under
[`build_cache_dir`][installer.optimizations.build_cache.build_cache_dir] holding the
wheel and `build.json`, which records the wheel's sha256. A cached wheel is used only
when its bytes still hash to that record; a changed file is removed and built again.
Both files are written atomically (temporary name, then rename), the record last, so
an interrupted store leaves no record, and nothing is ever used half-written.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from installer.core.log import InstallerLogger
from installer.core.records import now_iso
from installer.edges.download.files import sha256_file
from installer.edges.state import atomic_write_text

RECORD = "build.json"


def build_cache_dir() -> Path:
    """Return the folder built wheels are kept in (`COMFY_INSTALL_CACHE_DIR` overrides)."""
    override = os.environ.get("COMFY_INSTALL_CACHE_DIR")
    if override:
        return Path(override) / "builds"
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("comfy-install", appauthor=False)) / "builds"


@dataclass(frozen=True)
class BuildKey:
    """What makes a built wheel: the source, the torch, the Python and the architectures."""

    name: str
    commit: str
    subdirectory: str | None
    torch: str
    cuda: str
    python_tag: str
    arch_list: str
    platform: str

    def folder(self) -> str:
        """The cache folder's name, readable, e.g. `sageattention2-d1a57a546c3d-torch2.11.0-…`."""
        archs = "_".join("sm" + arch.replace(".", "") for arch in self.arch_list.split(";"))
        sub = f"-{self.subdirectory}" if self.subdirectory else ""
        text = (
            f"{self.name}{sub}-{self.commit[:12]}-torch{self.torch}-{self.cuda}-"
            f"{self.python_tag}-{archs}-{self.platform}"
        )
        return re.sub(r"[^A-Za-z0-9._+-]", "_", text)


@dataclass(frozen=True)
class CachedBuild:
    """A wheel in the build cache, verified against its recorded sha256."""

    wheel: Path
    sha256: str
    size: int
    seconds: float | None
    built_at: str


def find_cached(key: BuildKey, log: InstallerLogger) -> CachedBuild | None:
    """Return the cached wheel for ``key`` when its bytes match the recorded sha256.

    A wheel whose hash changed since it was stored is removed (with a warning), so the
    caller builds it again.

    Args:
        key: What the wheel must have been built from and for.
        log: Where a changed or damaged cache entry is reported.
    """
    folder = build_cache_dir() / key.folder()
    try:
        record = json.loads((folder / RECORD).read_text(encoding="utf-8"))
        wheel = folder / Path(record["wheel"]).name
        recorded = str(record["sha256"])
        stored_key = record["key"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if stored_key != asdict(key):
        return None
    if not wheel.is_file():
        log.warn(f"the cached build record {folder / RECORD} names a missing wheel; building again")
        return None
    actual = sha256_file(wheel)
    if actual != recorded:
        log.warn(
            f"the cached wheel {wheel} changed since it was built (sha256 {actual[:16]}…, "
            f"recorded {recorded[:16]}…); it is removed and built again"
        )
        shutil.rmtree(folder, ignore_errors=True)
        return None
    return CachedBuild(
        wheel=wheel,
        sha256=actual,
        size=wheel.stat().st_size,
        seconds=record.get("seconds"),
        built_at=str(record.get("built_at", "")),
    )


def store_build(key: BuildKey, wheel: Path, seconds: float) -> CachedBuild:
    """Copy a freshly built wheel into the cache and record its sha256.

    Args:
        key: What it was built from and for.
        wheel: The wheel the build wrote (in its temporary folder).
        seconds: How long the build took.

    Returns:
        The cached copy.

    Raises:
        EnvironmentUnsupportedError: The cache folder cannot be written (e.g. the disk is full).
    """
    folder = build_cache_dir() / key.folder()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / RECORD).unlink(missing_ok=True)
    target = folder / wheel.name
    partial = folder / f".{wheel.name}.{os.getpid()}.partial"
    try:
        shutil.copyfile(wheel, partial)
        digest = sha256_file(partial)
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    size = target.stat().st_size
    built_at = now_iso()
    record = {
        "key": asdict(key),
        "wheel": target.name,
        "sha256": digest,
        "size": size,
        "seconds": round(seconds, 1),
        "built_at": built_at,
    }
    atomic_write_text(folder / RECORD, json.dumps(record, indent=2) + "\n")
    return CachedBuild(target, digest, size, round(seconds, 1), built_at)
