"""Run step 10's real code path on one venv: SageAttention 2 from a pinned source (the bundle).

Used by `tests/gpu/build_sage.sh` on the GPU machine (twice: a build, then a second
install that must reuse the cached wheel), and on a machine without a GPU to watch the
pipeline reach nvcc (`--gpu 9.0`). The configuration is the shipped `dependencies.json`
with the SageAttention 2 source pointed at a local git bundle (GitHub is not reachable
there: the bundle's commit stands in for the upstream one) and without the index
packages (xformers, triton), which are not the subject. Writes `LABEL.json` into
`--out`: every outcome, the wall time, and the cache's record of the wheel.

    python tests/gpu/build_sage.py --venv VENV --bundle FILE --commit SHA --out DIR \
        --label first [--gpu auto|CC] [--find-links DIR --offline]
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path

from installer.core.config import Dependencies, IndexOptions, ToolsManifest
from installer.core.facts import gpu_override
from installer.core.log import InstallerLogger
from installer.edges.environment import detect_environment, find_uv_binary
from installer.edges.gpu import detect_gpus
from installer.edges.uv import Uv
from installer.optimizations.build_cache import build_cache_dir
from installer.optimizations.install import install_optimizations
from installer.optimizations.target import StepTarget

REPO = Path(__file__).resolve().parents[2]


def config(bundle: Path, commit: str) -> Dependencies:
    """The shipped configuration, its SageAttention 2 source pointed at the bundle."""
    deps = json.loads((REPO / "dependencies.json").read_text())
    deps["optimizations"]["packages"] = []
    for source in deps["pip_packages"]["sageattention_sources"]:
        if source["name"] == "sageattention2":
            source["url"] = str(bundle)
            source["commit"] = commit
            source["ref"] = f"{source['ref']} (local bundle of the upstream commit)"
    return Dependencies.model_validate(deps)


def main() -> int:
    """Run step 10 once and write what happened."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--venv", type=Path, required=True)
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--commit", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--label", required=True)
    parser.add_argument("--gpu", default="auto")
    parser.add_argument("--find-links", action="append", default=[])
    parser.add_argument("--offline", action="store_true")
    args = parser.parse_args()
    # Like the installer: SIGTERM stops the run the way Ctrl-C does (the build's compilers too).
    signal.signal(signal.SIGTERM, signal.default_int_handler)

    args.out.mkdir(parents=True, exist_ok=True)
    install = args.venv.parent / f"install-{args.label}"
    (install / ".comfy-install").mkdir(parents=True, exist_ok=True)
    log = InstallerLogger(verbosity=0, log_file=args.out / f"{args.label}-install.log")
    gpu = detect_gpus() if args.gpu == "auto" else gpu_override(args.gpu, "13.0")
    env = detect_environment(install)
    log.info(f"GPUs: {[(g.name, g.cc) for g in gpu.gpus]}; nvcc {env.nvcc.version} at "
             f"{env.nvcc.path}; {env.cpu_count} cores, "
             f"{(env.memory_total_bytes or 0) / 2**30:.0f} GiB")  # fmt: skip
    index = IndexOptions(find_links=list(args.find_links), offline=args.offline)
    uv = Uv(binary=find_uv_binary() or "uv", index=index, log=log)
    target = StepTarget(
        python_exe=args.venv / "bin" / "python",
        install_path=install,
        platform="linux",
        gpu=gpu,
        uv=uv,
        manifest=ToolsManifest(schema_version=1),
        build_host=env.build_host(offline=args.offline),
    )
    start = time.monotonic()
    outcomes = install_optimizations(
        target.python_exe, install / "ComfyUI", install, config(args.bundle, args.commit), log,
        target=target,
    )  # fmt: skip
    seconds = time.monotonic() - start
    records = [json.loads(p.read_text()) for p in build_cache_dir().glob("*/build.json")]
    result = {
        "label": args.label,
        "seconds": round(seconds, 1),
        "outcomes": [o.as_dict() for o in outcomes],
        "cache": records,
        "nvcc": env.nvcc.version,
        "cores": env.cpu_count,
    }
    (args.out / f"{args.label}.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    log.close()
    sa2 = next(o for o in outcomes if o.name == "sageattention2 (source)")
    return 0 if sa2.status == "installed" else 1


if __name__ == "__main__":
    sys.exit(main())
