#!/usr/bin/env python3
"""Stage the wheels the GPU machine lacks for ComfyUI v0.33.0 and comfy-install.

Run here (the package registry is reachable); the GPU machine has no network. It:

1. resolves ComfyUI's ``requirements.txt`` + comfy-install's runtime dependencies +
   ``sageattention==1.0.6`` for CPython 3.12 on manylinux x86_64 with uv, holding
   the versions the GPU machine is known to have (``DEVICE_VERSIONS``) and the
   torch trio it has;
2. drops every package the machine already has (``DEVICE_PACKAGES``: the list in
   the device tool's KINDS.md, "Python packages already there"), keeping one only
   where a pin asks for a version the machine may lack (rules below);
3. downloads the rest with ``pip download --no-deps --only-binary=:all:`` and
   packs them into ``.whl/b1``, ``.whl/b2``, ... of at most ``--batch-mib`` each (one
   device call carries 64 MiB, the repository included); a wheel larger than that
   (comfy-kitchen 0.2.31 is 55.8 MiB) is cut into pieces that may travel in several
   batches, reassembled and checked against its SHA-256 on the device;
4. writes ``.whl/manifest.json`` (what was carried, what was skipped and why) and
   prints the device calls that install each batch (``bench/gpu/install_staged.sh``).

Keep rules, for a package the machine has: carry it when its version there is known
and fails the resolved pin's requirement; when the version there is unknown, carry
it only if ComfyUI's requirements pin it exactly (``==``). Lower bounds (``>=``) on
a package the machine has with an unknown version are assumed met and listed as
assumptions in the manifest; ``install_staged.sh`` prints what the machine has.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

INSTALLER_DEPS = [
    "typer>=0.12",
    "rich>=13.7",
    "uv>=0.5.0",
    "packaging>=24.0",
    "pydantic>=2.7",
    "platformdirs>=4.2",
    "httpx>=0.27",
    "nvidia-ml-py>=12.535.77",
]
EXTRA = ["sageattention==1.0.6"]

# Left behind on purpose: the template gallery's media (about 430 MB in five wheels)
# is served to the browser's template picker only; ComfyUI starts without it (its
# frontend_management guards the import) and the benchmark uses the HTTP API.
LEAVE_OUT = re.compile(r"^comfyui-workflow-templates-media-")

# KINDS.md, "Python packages already there" (image 'cuda', read 2026-11-17).
DEVICE_PACKAGES = [
    "absl-py",
    "accelerate",
    "aiofiles",
    "aiohappyeyeballs",
    "aiohttp",
    "aiosignal",
    "annotated-doc",
    "anyio",
    "attrs",
    "botorch",
    "build",
    "certifi",
    "charset-normalizer",
    "chex",
    "click",
    "cloudpickle",
    "cmake",
    "colorama",
    "contourpy",
    "coverage",
    "cuda-bindings",
    "cuda-core",
    "cuda-pathfinder",
    "cuda-toolkit",
    "cupy-cuda13x",
    "cycler",
    "cython",
    "diffrax",
    "e3nn",
    "einops",
    "equinox",
    "etils",
    "execnet",
    "filelock",
    "flatbuffers",
    "flax",
    "fonttools",
    "formulaic",
    "frozenlist",
    "fsspec",
    "gpytorch",
    "grpcio",
    "h11",
    "h5py",
    "hf-xet",
    "httpcore",
    "httpx",
    "huggingface-hub",
    "humanize",
    "hypothesis",
    "idna",
    "imageio",
    "iniconfig",
    "interface-meta",
    "jax",
    "jax-cuda13-pjrt",
    "jax-cuda13-plugin",
    "jaxlib",
    "jaxtyping",
    "jinja2",
    "joblib",
    "kiwisolver",
    "lazy-loader",
    "lightning",
    "lightning-utilities",
    "linear-operator",
    "lineax",
    "llvmlite",
    "lxml",
    "markdown",
    "markdown-it-py",
    "markupsafe",
    "matplotlib",
    "mdurl",
    "meson",
    "ml-dtypes",
    "mpi4py",
    "mpmath",
    "msgpack",
    "multidict",
    "multipledispatch",
    "mypy-extensions",
    "nanobind",
    "narwhals",
    "networkx",
    "ninja",
    "numba",
    "numba-cuda",
    "numpy",
    "numpyro",
    "nvidia-cublas",
    "nvidia-cuda-cupti",
    "nvidia-cuda-nvrtc",
    "nvidia-cuda-runtime",
    "nvidia-cudnn-cu13",
    "nvidia-cufft",
    "nvidia-cufile",
    "nvidia-curand",
    "nvidia-cusolver",
    "nvidia-cusparse",
    "nvidia-cusparselt-cu13",
    "nvidia-ml-py",
    "nvidia-nccl-cu13",
    "nvidia-nvjitlink",
    "nvidia-nvshmem-cu13",
    "nvidia-nvtx",
    "onnx",
    "onnx-ir",
    "onnxruntime",
    "onnxscript",
    "opencv-python-headless",
    "optax",
    "opt-einsum",
    "opt-einsum-fx",
    "optimistix",
    "orbax-checkpoint",
    "packaging",
    "pandas",
    "pathspec",
    "patsy",
    "peft",
    "pillow",
    "pip",
    "pluggy",
    "portalocker",
    "prometheus-client",
    "propcache",
    "protobuf",
    "psutil",
    "pyarrow",
    "pybind11",
    "py-cpuinfo",
    "pygments",
    "pyparsing",
    "pyproject-hooks",
    "pyre-extensions",
    "pytest",
    "pytest-benchmark",
    "pytest-cov",
    "pytest-mock",
    "pytest-timeout",
    "pytest-xdist",
    "python-dateutil",
    "pytorch-lightning",
    "pyyaml",
    "regex",
    "requests",
    "rich",
    "sacrebleu",
    "safetensors",
    "scikit-build-core",
    "scikit-image",
    "scikit-learn",
    "scipy",
    "seaborn",
    "sentencepiece",
    "sentence-transformers",
    "setuptools",
    "shellingham",
    "simplejson",
    "six",
    "sortedcontainers",
    "statsmodels",
    "sympy",
    "tabulate",
    "tensorboard",
    "tensorboard-data-server",
    "tensorstore",
    "threadpoolctl",
    "tifffile",
    "tiktoken",
    "timm",
    "tokenizers",
    "toolz",
    "torch",
    "torchaudio",
    "torchdiffeq",
    "torch-geometric",
    "torchmetrics",
    "torchvision",
    "tqdm",
    "transformers",
    "treescope",
    "triton",
    "typer",
    "typing-extensions",
    "typing-inspect",
    "urllib3",
    "uvloop",
    "wadler-lindig",
    "werkzeug",
    "wheel",
    "wrapt",
    "xarray",
    "xxhash",
    "yarl",
    "zipp",
]

# KINDS.md, the 'pip list' row a session saw (2026-11): the versions known there.
DEVICE_VERSIONS = {
    "accelerate": "1.15.0",
    "huggingface-hub": "1.33.0",
    "numpy": "2.5.2",
    "safetensors": "0.8.0",
    "sentencepiece": "0.2.2",
    "tokenizers": "0.23.2",
    "torch": "2.11.0",
    "torchaudio": "2.11.0",
    "torchvision": "0.26.0",
    "transformers": "5.17.0",
    "triton": "3.6.0",
}

PLATFORMS = [
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_24_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux1_x86_64",
    "manylinux_2_31_x86_64",
    "manylinux_2_34_x86_64",
    "manylinux_2_35_x86_64",
]


def canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_requirements(path: Path) -> list[str]:
    lines = []
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            lines.append(line)
    return lines


def comfy_exact_pins(requirements: list[str]) -> dict[str, str]:
    """Packages ComfyUI pins with ``==``."""
    out = {}
    for line in requirements:
        found = re.match(r"^([A-Za-z0-9_.-]+)\s*==\s*([^\s;]+)", line)
        if found:
            out[canon(found.group(1))] = found.group(2)
    return out


def resolve(requirements: list[str], work: Path) -> dict[str, str]:
    """uv's resolution for CPython 3.12 on manylinux_2_28 x86_64: {name: version}."""
    req = work / "requirements.in"
    req.write_text("\n".join(requirements) + "\n")
    cons = work / "constraints.txt"
    cons.write_text("".join(f"{k}=={v}\n" for k, v in DEVICE_VERSIONS.items()))
    uv = shutil.which("uv") or "uv"
    base = [
        uv,
        "pip",
        "compile",
        str(req),
        "--python-version",
        "3.12",
        "--python-platform",
        "x86_64-manylinux_2_28",
        "--no-header",
        "--no-annotate",
        "-q",
    ]
    done = subprocess.run([*base, "-c", str(cons)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        print(
            "resolution with the machine's known versions held failed; resolving without:\n"
            + done.stderr[-1500:],
            file=sys.stderr,
        )
        done = subprocess.run(base, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(done.stderr)
    pins = {}
    for line in done.stdout.splitlines():
        found = re.match(r"^([A-Za-z0-9_.-]+)==([^\s;]+)", line.strip())
        if found:
            pins[canon(found.group(1))] = found.group(2)
    return pins


def choose(pins: dict[str, str], exact: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(to carry {name: version}, skipped {name: reason})."""
    have = {canon(n) for n in DEVICE_PACKAGES}
    carry, skipped = {}, {}
    for name, version in sorted(pins.items()):
        if LEAVE_OUT.match(name):
            skipped[name] = (
                "left out: template-gallery media, not needed to run workflows (~430 MB)"
            )
            continue
        if name not in have:
            carry[name] = version
            continue
        known = DEVICE_VERSIONS.get(name)
        if known is not None:
            if known == version:
                skipped[name] = f"the machine has {known}"
            else:
                carry[name] = version
            continue
        if name in exact:
            carry[name] = version
        else:
            skipped[name] = (
                "the machine has it (version not recorded); "
                f"assumed to satisfy the requirement behind {version}"
            )
    return carry, skipped


def download(carry: dict[str, str], dest: Path) -> dict[str, Path]:
    dest.mkdir(parents=True, exist_ok=True)
    base = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "-q",
        "--no-deps",
        "--only-binary=:all:",
        "--python-version",
        "3.12",
        "--implementation",
        "cp",
        "--abi",
        "cp312",
        "--abi",
        "abi3",
        "--abi",
        "none",
    ]
    for platform in PLATFORMS:
        base += ["--platform", platform]
    base.append("--platform")
    base.append("any")
    done = subprocess.run(
        [*base, "-d", str(dest), *(f"{k}=={v}" for k, v in carry.items())],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        # One at a time, to name the one that has no wheel.
        for name, version in carry.items():
            one = subprocess.run(
                [*base, "-d", str(dest), f"{name}=={version}"],
                capture_output=True,
                text=True,
                check=False,
            )
            if one.returncode != 0:
                raise SystemExit(
                    f"no cp312 manylinux x86_64 wheel for {name}=={version}:\n{one.stderr[-800:]}"
                )
    files = {}
    for wheel in dest.glob("*.whl"):
        files[canon(wheel.name.split("-")[0])] = wheel
    missing = set(carry) - set(files)
    if missing:
        raise SystemExit(f"downloaded no wheel for {sorted(missing)}")
    return files


def split_large(files: dict[str, Path], limit: int) -> dict[str, dict[str, object]]:
    """Cut every wheel over ``limit`` bytes into pieces ``NAME.partNNN`` beside it.

    Each piece is at most ``limit`` bytes; the wheel itself is removed, and a
    ``NAME.parts`` file (``COUNT SHA256``) goes with every piece, so that
    ``install_staged.sh`` reassembles the wheel once all its pieces have arrived
    (over one or several calls) and checks its digest before installing it.
    Returns ``{wheel name: {"sha256", "pieces", "mib"}}``; ``files`` then names
    the pieces instead of the wheel.
    """
    import hashlib

    split: dict[str, dict[str, object]] = {}
    for key, path in list(files.items()):
        size = path.stat().st_size
        if size <= limit:
            continue
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        count = -(-size // limit)
        del files[key]
        for index in range(count):
            piece = path.with_name(f"{path.name}.part{index + 1:03d}")
            piece.write_bytes(data[index * limit : (index + 1) * limit])
            files[f"{key}#{index + 1}"] = piece
        path.unlink()
        split[path.name] = {"sha256": digest, "pieces": count, "mib": round(size / 2**20, 1)}
    return split


def batches(files: dict[str, Path], limit: int) -> list[list[Path]]:
    """First-fit decreasing into bins of at most ``limit`` bytes (cut wheels first)."""
    bins: list[tuple[int, list[Path]]] = []
    for path in sorted(files.values(), key=lambda p: p.stat().st_size, reverse=True):
        size = path.stat().st_size
        if size > limit:
            raise SystemExit(
                f"{path.name} alone is {size / 2**20:.1f} MiB, over {limit / 2**20:.0f}"
            )
        for index, (used, items) in enumerate(bins):
            if used + size <= limit:
                bins[index] = (used + size, [*items, path])
                break
        else:
            bins.append((size, [path]))
    return [items for _, items in bins]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--comfyui-requirements",
        type=Path,
        help="ComfyUI's requirements.txt (default: from the v0.33.0 bundle)",
    )
    parser.add_argument(
        "--bundle", type=Path, default=Path("/work/shared/fixtures/comfyui-v0.33.0.bundle")
    )
    parser.add_argument("--out", type=Path, default=REPO / ".whl")
    parser.add_argument(
        "--batch-mib",
        type=float,
        default=58,
        help="a batch plus the ~3 MiB repository must stay under the 64 MiB a call carries",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="resolve and choose; download nothing"
    )
    parser.add_argument(
        "--add-wheel",
        type=Path,
        action="append",
        default=[],
        help="a local wheel to carry too (e.g. the SageAttention 2 wheel built for the GPU)",
    )
    parser.add_argument(
        "--leave-out",
        default="",
        help="a regex of wheel file names not to carry (e.g. '^(uv|comfyui_embedded_docs)-': "
        "tune, launch and the benchmark start without them)",
    )
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.comfyui_requirements:
            requirements = read_requirements(args.comfyui_requirements)
        else:
            subprocess.run(
                ["git", "clone", "-q", "--no-checkout", str(args.bundle), str(work / "c")],
                check=True,
            )
            text = subprocess.run(
                ["git", "-C", str(work / "c"), "show", "HEAD:requirements.txt"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            (work / "requirements.txt").write_text(text)
            requirements = read_requirements(work / "requirements.txt")
        wanted = [*requirements, *INSTALLER_DEPS, *EXTRA]
        pins = resolve(wanted, work)
    exact = comfy_exact_pins(requirements)
    carry, skipped = choose(pins, exact)
    print(f"resolved {len(pins)} packages; carry {len(carry)}, the machine has {len(skipped)}")
    for name, version in carry.items():
        print(f"  carry {name}=={version}")
    manifest = {
        "requirements": wanted,
        "resolved": pins,
        "carry": carry,
        "skipped": skipped,
        "assumptions": [
            "the GPU machine's packages are those of KINDS.md (image 'cuda', 2026-11-17)",
            "a package there whose version is not recorded satisfies the resolved requirement "
            "unless ComfyUI pins it with ==",
            "python3 there is CPython 3.12 on glibc >= 2.28, x86_64",
        ],
    }
    if args.dry_run:
        print(json.dumps(manifest, indent=2))
        return 0
    for folder in args.out.glob("b[0-9]*"):
        shutil.rmtree(folder)  # old batches; the download folder below is reused as a cache
    files = download(carry, args.out / "all")
    files = {k: v for k, v in files.items() if k in carry}
    for extra in args.add_wheel:
        shutil.copy2(extra, args.out / "all" / extra.name)
        files[canon(extra.name.split("-")[0]) + "@local"] = args.out / "all" / extra.name
    if args.leave_out:
        dropped = re.compile(args.leave_out)
        for key, path in list(files.items()):
            if dropped.search(path.name):
                manifest["skipped"][key] = f"left out by --leave-out {args.leave_out!r}"
                del files[key]
    for stale in (args.out / "all").glob("*.whl"):
        if stale not in files.values():
            stale.unlink()
    limit = int(args.batch_mib * 2**20)
    manifest["split"] = split_large(files, limit)
    groups = batches(files, limit)
    manifest["batches"] = {}
    for index, items in enumerate(groups, 1):
        folder = args.out / f"b{index}"
        folder.mkdir()
        for path in items:
            shutil.move(str(path), folder / path.name)
            if ".whl.part" in path.name:
                wheel = path.name.rsplit(".part", 1)[0]
                info = manifest["split"][wheel]
                (folder / f"{wheel}.parts").write_text(f"{info['pieces']} {info['sha256']}\n")
        manifest["batches"][f"b{index}"] = {
            "mib": round(sum((folder / p.name).stat().st_size for p in items) / 2**20, 1),
            "wheels": sorted(p.name for p in items),
        }
    shutil.rmtree(args.out / "all")
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print("\nbatches:")
    for name, batch in manifest["batches"].items():
        print(f"  {name}: {batch['mib']} MiB, {len(batch['wheels'])} wheels")
    print("\ndevice calls, one per batch (carry names the batch):")
    for name in manifest["batches"]:
        print(f"  run(command='bash bench/gpu/install_staged.sh', carry=['.whl/{name}'])")
    print("(a batch left on the warm machine by an earlier call is skipped, not reinstalled)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
