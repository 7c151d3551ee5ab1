"""Benchmarks of what users feel, each as a ratio to a floor measured in the same run.

    uv run python bench/run.py                 # the quick ones (about 2 minutes)
    uv run python bench/run.py --full --peer   # + real installs cold/warm, launch, comfy-cli

Every figure that depends on the machine is shown beside a floor measured in
the same run (plain uv, curl, `python -c pass`, `main.py` started by hand).
Results go to bench/results.json and bench/RESULTS.md. Nothing here asserts a
time; the targets are printed beside the measurements.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
WORK = ROOT / "bench" / ".work"
CLI = str(Path(sys.executable).parent / "comfy-install")
BUNDLE_REF = "v0.33.0"
TRIO = json.loads((ROOT / "dependencies.json").read_text())["torch"]["packages"]
# The local fixtures' tiny torch wheels (support.wheels) are 2.9.1 builds, whatever the pins say.
FIXTURE_TRIO = ["torch==2.9.1", "torchvision==0.24.1", "torchaudio==2.9.1"]


@dataclass
class Result:
    """One benchmark: our runs, the floor's runs, the ratio and the target."""

    name: str
    ours: list[float]
    floor: list[float] = field(default_factory=list)
    unit: str = "s"
    target: str = ""
    met: bool | None = None
    floor_name: str = ""
    notes: str = ""

    @property
    def ratio(self) -> float | None:
        if not self.floor:
            return None
        return statistics.median(self.ours) / statistics.median(self.floor)

    def row(self) -> dict[str, Any]:
        data = asdict(self)
        data["ratio"] = self.ratio
        data["ours_stats"] = stats(self.ours)
        data["floor_stats"] = stats(self.floor) if self.floor else None
        return data


def stats(values: Sequence[float]) -> dict[str, float]:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def bench_env(**extra: str) -> dict[str, str]:
    """The environment benchmarks run in: bytecode caching on, no colours."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # users' Pythons cache bytecode
    env.update({"NO_COLOR": "1", "UV_PYTHON_DOWNLOADS": "never"})
    env.update(extra)
    return env


def timed(
    args: Sequence[str],
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    check: bool = True,
) -> float:
    start = time.perf_counter()
    done = subprocess.run(
        args,
        env=env or bench_env(),
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - start
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, args))} failed:\n{done.stderr[-3000:]}")
    return elapsed


def repeat(n: int, action: Callable[[], float]) -> list[float]:
    return [action() for _ in range(n)]


def uv_bin() -> str:
    from installer.edges.environment import find_uv_binary

    path = find_uv_binary()
    assert path
    return path


def base_python() -> str:
    return os.path.realpath(sys.executable)


def bundle() -> Path | None:
    from support.real import find_bundle

    return find_bundle()


# --- CLI start-up ---------------------------------------------------------------------


def bench_cli(n: int) -> list[Result]:
    env = bench_env()
    timed([CLI, "--help"], env)  # compile bytecode once
    floor = repeat(n, lambda: timed([sys.executable, "-c", "pass"], env))
    version = repeat(n, lambda: timed([CLI, "--version"], env))
    helps = repeat(n, lambda: timed([CLI, "--help"], env))
    return [
        Result(
            "--version",
            version,
            floor,
            target="<= 4x python -c pass",
            met=statistics.median(version) <= 4 * statistics.median(floor),
            floor_name="python -c pass",
        ),
        Result(
            "--help",
            helps,
            floor,
            target="<= 4x python -c pass",
            met=statistics.median(helps) <= 4 * statistics.median(floor),
            floor_name="python -c pass",
        ),
    ]


def bench_dry_run(n: int) -> Result:
    target = WORK / "dry-run-target"
    args = [
        CLI,
        "install",
        str(target),
        "--dry-run",
        "--json",
        "--gpu",
        "9.0",
        "--cuda-driver",
        "13.0",
    ]
    timed(args)
    runs = repeat(n, lambda: timed(args))
    assert not target.exists()
    return Result(
        "install --dry-run --json",
        runs,
        target="<= 0.5 s absolute",
        met=statistics.median(runs) <= 0.5,
    )


# --- Local fixtures: a finished install, step 10 -----------------------------------------


def local_fixtures() -> dict[str, Any]:
    """Build the fixture wheels, index and ComfyUI repo the tests use (in bench/.work)."""
    from support.comfy_repo import make_comfy_repo
    from support.wheels import WheelSpec, build_wheel, torch_wheel_specs

    root = WORK / "fixtures"
    shutil.rmtree(root, ignore_errors=True)
    links = root / "links"
    for spec in torch_wheel_specs("2.9.1", cuda="12.8", local="cu128"):
        build_wheel(spec, links)
    for spec in (
        WheelSpec("needs-torch", "1.0", requires=["torch"]),
        WheelSpec("xformers", "0.0.33.post2", requires=["torch==2.9.1"]),
        WheelSpec("triton", "3.5.1"),
    ):
        build_wheel(spec, links)
    sa = {}
    for name, filename, module in (
        ("sa2", "sageattention-2.2.0+cu128torch2.9.1-cp39-abi3-linux_x86_64.whl", "sageattention"),
        ("sa3", "sageattn3-1.0.0+cu128torch2.9.1-cp39-abi3-linux_x86_64.whl", "sageattn3"),
    ):
        dist, version = filename.split("-")[:2]
        # Wheels of realistic size (the real SA2 wheel is about 16 MiB).
        payload = os.urandom(8 * 2**20).hex()
        sa[name] = build_wheel(
            WheelSpec(
                dist,
                version,
                tag="cp39-abi3-linux_x86_64",
                filename=filename,
                files={f"{module}/__init__.py": "", f"{module}/_blob.py": f"B = '{payload}'\n"},
            ),
            root / "sa",
        )
    commits = make_comfy_repo(
        root / "comfy-src", ["torch", "torchvision", "torchaudio", "needs-torch"]
    )
    return {
        "root": root,
        "links": links,
        "sa": sa,
        "repo": root / "comfy-src",
        "commit": commits["v2"],
    }


def local_config(fx: dict[str, Any], server_url: Callable[[str], str]) -> tuple[Path, Path]:
    from support.wheels import sha256_of

    deps = json.loads((ROOT / "dependencies.json").read_text())
    deps["comfyui"] = {"url": str(fx["repo"]), "ref": "v2", "commit": fx["commit"]}
    deps["torch"]["packages"] = FIXTURE_TRIO
    deps["extra_requirements"] = []
    deps["pip_packages"]["sageattention_sources"] = []
    deps["preflight"]["min_free_gb"] = 0.1
    deps["pip_packages"]["sageattention_wheels"] = [
        {
            "name": "sageattention2",
            "cc": ">=8.0,<13.0",
            "torch": ">=2.9.1,<2.9.2",
            "cuda": "cu128",
            "python": ">=3.9",
            "platform": "linux",
            "url": server_url(f"/releases/{fx['sa']['sa2'].name}"),
        },
        {
            "name": "sageattention3",
            "cc": ">=10.0,<13.0",
            "torch": ">=2.9.1,<2.9.2",
            "cuda": "cu128",
            "python": ">=3.9",
            "platform": "linux",
            "import_name": "sageattn3",
            "url": server_url(f"/releases/{fx['sa']['sa3'].name}"),
        },
    ]
    config = fx["root"] / "deps.json"
    config.write_text(json.dumps(deps))
    manifest = fx["root"] / "tools_manifest.json"
    manifest.write_text(
        json.dumps(
            {
                "schema_version": 1,
                "files": {
                    p.name: {"sha256": sha256_of(p), "size": p.stat().st_size}
                    for p in fx["sa"].values()
                },
            }
        )
    )
    return config, manifest


def bench_local(n: int) -> list[Result]:
    """Re-run of a finished (fixture) install, and step 10 cold and warm."""
    from support.http_server import LocalHTTPServer
    from support.package_index import serve_index

    fx = local_fixtures()
    results: list[Result] = []
    with LocalHTTPServer() as server:
        index = serve_index(server, sorted(fx["links"].glob("*.whl")))
        for path in fx["sa"].values():
            server.add(f"/releases/{path.name}", path.read_bytes())
        config, manifest = local_config(fx, server.url)
        target = WORK / "local-install"

        def install_args(*extra: str) -> list[str]:
            return [
                CLI,
                "install",
                str(target),
                "--config",
                str(config),
                "--tools-manifest",
                str(manifest),
                "--gpu",
                "12.0",
                "--cuda-driver",
                "12.8",
                "--torch-index",
                "default",
                "--index-url",
                index,
                "--python",
                base_python(),
                "-q",
                *extra,
            ]

        def fresh_caches() -> dict[str, str]:
            cache = Path(tempfile.mkdtemp(prefix="cache-", dir=WORK))
            return bench_env(
                UV_CACHE_DIR=str(cache / "uv"), COMFY_INSTALL_CACHE_DIR=str(cache / "ci")
            )

        shutil.rmtree(target, ignore_errors=True)
        env = fresh_caches()
        timed(install_args(), env)
        step10_cold: list[float] = []
        step10_warm: list[float] = []
        floor_cold: list[float] = []
        floor_warm: list[float] = []
        state = target / ".comfy-install" / "state.json"
        for _ in range(n):
            env_cold = fresh_caches()
            timed(install_args("--only", "optimizations", "--force", "optimizations"), env_cold)
            step10_cold.append(json.loads(state.read_text())["steps"]["optimizations"]["seconds"])
            timed(install_args("--only", "optimizations", "--force", "optimizations"), env_cold)
            step10_warm.append(json.loads(state.read_text())["steps"]["optimizations"]["seconds"])
            floor_cold.append(_step10_floor(fx, index, server.url, fresh_caches()))
            floor_warm.append(_step10_floor(fx, index, server.url, env_cold))
        results.append(
            Result(
                "step 10 on local fixtures, cold caches",
                step10_cold,
                floor_cold,
                target="<= 1.10x",
                met=statistics.median(step10_cold) <= 1.1 * statistics.median(floor_cold),
                floor_name="plain uv pip install of the same packages and wheel URLs",
                notes="ours: the step's own time from state.json (xformers, triton, SA2 + SA3 "
                "wheels downloaded and verified, torch held and checked)",
            )
        )
        results.append(
            Result(
                "step 10 on local fixtures, warm caches",
                step10_warm,
                floor_warm,
                target="<= 1.10x",
                met=statistics.median(step10_warm) <= 1.1 * statistics.median(floor_warm),
                floor_name="plain uv pip install of the same packages and wheel URLs",
            )
        )
        results.append(bench_rerun(install_args(), target, n, "fixture install"))
    return results


def _step10_floor(
    fx: dict[str, Any], index: str, url: Callable[[str], str], env: dict[str, str]
) -> float:
    venv = Path(tempfile.mkdtemp(prefix="floor-", dir=WORK)) / "venv"
    subprocess.run(
        [uv_bin(), "venv", "-q", str(venv), "--python", base_python()], env=env, check=True
    )
    python = str(venv / "bin" / "python")
    subprocess.run(
        [uv_bin(), "pip", "install", "-q", "--python", python, "--index-url", index, *FIXTURE_TRIO],
        env=env,
        check=True,
    )
    pins = venv.parent / "pins.txt"
    pins.write_text("torch==2.9.1+cu128\ntorchvision==0.24.1\ntorchaudio==2.9.1\n")
    return timed(
        [
            uv_bin(),
            "pip",
            "install",
            "-q",
            "--python",
            python,
            "--index-url",
            index,
            "-c",
            str(pins),
            "xformers==0.0.33.post2",
            "triton>=3.5,<3.6",
            url(f"/releases/{fx['sa']['sa2'].name}"),
            url(f"/releases/{fx['sa']['sa3'].name}"),
        ],
        env,
    )


def bench_rerun(args: list[str], target: Path, n: int, what: str) -> Result:
    env = bench_env()
    timed(args, env)
    python = target / "venv" / "bin" / "python"
    floor = repeat(n, lambda: timed([str(python), "-c", "pass"], env))
    runs = repeat(n, lambda: timed(args, env))
    med = statistics.median(runs)
    return Result(
        f"re-run of a finished {what}",
        runs,
        floor,
        target="<= 1.5 s absolute and <= 20x",
        met=med <= 1.5 and med <= 20 * statistics.median(floor),
        floor_name="python -c pass in the venv",
    )


# --- Downloads ------------------------------------------------------------------------


DOWNLOAD_SCRIPT = (
    "import sys; from pathlib import Path\n"
    "from installer.core.downloads import DownloadRequest\n"
    "from installer.edges.download.api import download_files\n"
    "from installer.core.log import InstallerLogger\n"
    "reqs=[DownloadRequest(url=u, dest_dir=Path(sys.argv[1]),"
    " filename=u.rsplit('/',1)[1], sha256=h)"
    " for u,h in zip(sys.argv[2::2], sys.argv[3::2])]\n"
    "download_files(reqs, log=InstallerLogger(verbosity=-1), jobs=4)\n"
)
"""`download_files` of the (URL, sha256) pairs after the destination folder in argv."""


def curl_parallel(files: Sequence[str], urls: Sequence[str]) -> list[str]:
    """The curl command that fetches ``urls`` into ``files``, four at a time."""
    curl = ["curl", "-s", "--fail", "--parallel", "--parallel-max", "4"]
    for f, u in zip(files, urls, strict=True):
        curl += ["-o", f, u]
    return curl


def bench_downloads(n: int) -> list[Result]:
    from support.http_server import GeneratedBody, LocalHTTPServer

    size = 256 * 2**20
    results = []
    with LocalHTTPServer() as server:
        bodies = [server.add(f"/f{i}.bin", GeneratedBody(size, seed=i)) for i in range(4)]
        urls = [server.url(f"/f{i}.bin") for i in range(4)]
        pairs = [x for u, b in zip(urls, bodies, strict=True) for x in (u, b.sha256)]
        ours: list[float] = []
        floor: list[float] = []
        verified: list[float] = []
        for _ in range(n):
            dest = Path(tempfile.mkdtemp(prefix="dl-", dir=WORK))
            ours.append(timed([sys.executable, "-c", DOWNLOAD_SCRIPT, str(dest), *pairs]))
            shutil.rmtree(dest)
            dest = Path(tempfile.mkdtemp(prefix="curl-", dir=WORK))
            files = [str(dest / f"f{i}.bin") for i in range(4)]
            floor.append(timed(curl_parallel(files, urls)))
            for f in files:
                Path(f).unlink()
            # What ours guarantees on top: every byte hashed and on disk before the
            # file is final. curl, then sha256sum of the four files in parallel, then sync.
            quoted = " ".join(shlex.quote(f) for f in files)
            script = (
                f'"$@" && for f in {quoted}; do sha256sum "$f" > /dev/null & done; '
                f"wait && sync {quoted}"
            )
            verified.append(timed(["bash", "-c", script, "bash", *curl_parallel(files, urls)]))
            shutil.rmtree(dest)
        total = 4 * size / 2**20
        ours_rate = [total / t for t in ours]
        for rates, name, target, floor_name, notes in (
            (
                [total / t for t in floor],
                "4 x 256 MiB parallel downloads (throughput)",
                ">= 0.90x curl",
                "curl --parallel (same files)",
                "ours includes sha256 of every byte and an fsync before the rename",
            ),
            (
                [total / t for t in verified],
                "4 x 256 MiB parallel downloads, like for like (throughput)",
                ">= 0.90x (informative: not the issue's floor)",
                "curl --parallel, then sha256sum of each file and sync",
                "the same guarantees as ours: every byte hashed and on disk",
            ),
        ):
            result = Result(
                name,
                ours_rate,
                rates,
                unit="MiB/s",
                target=target,
                floor_name=floor_name,
                notes=notes,
            )
            result.met = result.ratio is not None and result.ratio >= 0.9
            results.append(result)
        results.append(bench_peak_rss(server))
    return results


def bench_peak_rss(server: Any) -> Result:
    from support.http_server import GeneratedBody

    body = server.add("/big.bin", GeneratedBody(2**30, seed=42))
    dest = Path(tempfile.mkdtemp(prefix="rss-", dir=WORK))
    process = subprocess.Popen(
        [sys.executable, "-c", DOWNLOAD_SCRIPT, str(dest), server.url("/big.bin"), body.sha256],
        env=bench_env(),
    )
    _, status, usage = os.wait4(process.pid, 0)
    assert status == 0
    shutil.rmtree(dest)
    peak = usage.ru_maxrss / 1024
    return Result(
        "peak RSS of a 1 GiB download", [peak], unit="MiB", target="<= 100 MiB", met=peak <= 100
    )


# --- Real installs, launch, peer ---------------------------------------------------------


def real_install_args(target: Path, *extra: str) -> list[str]:
    from support.real import real_install_args as install_args

    assert bundle(), "the ComfyUI bundle is needed for --full (or set COMFYUI_BUNDLE)"
    return [*install_args(target), "-q", *extra]


def floor_install(target: Path, env: dict[str, str]) -> float:
    """The same packages with plain commands: uv venv, git clone, two uv pip installs."""
    src = bundle()
    assert src
    start = time.perf_counter()
    subprocess.run(
        [uv_bin(), "venv", "-q", str(target / "venv"), "--python", base_python()],
        env=env,
        check=True,
    )
    subprocess.run(["git", "clone", "-q", str(src), str(target / "ComfyUI")], env=env, check=True)
    subprocess.run(
        ["git", "-C", str(target / "ComfyUI"), "checkout", "-q", BUNDLE_REF], env=env, check=True
    )
    python = str(target / "venv" / "bin" / "python")
    subprocess.run(
        [uv_bin(), "pip", "install", "-q", "--python", python, *TRIO], env=env, check=True
    )
    pins = target / "pins.txt"
    pins.write_text("\n".join(TRIO) + "\n")
    subprocess.run(
        [
            uv_bin(),
            "pip",
            "install",
            "-q",
            "--python",
            python,
            "-r",
            str(target / "ComfyUI" / "requirements.txt"),
            "requests",
            "-c",
            str(pins),
        ],
        env=env,
        check=True,
    )
    return time.perf_counter() - start


def bench_full(cold_runs: int, warm_runs: int) -> list[Result]:
    results = []
    for label, runs, cold in (
        ("cold uv cache", cold_runs, True),
        ("warm uv cache", warm_runs, False),
    ):
        ours: list[float] = []
        ours_noverify: list[float] = []
        floor: list[float] = []
        warm_cache = WORK / "uv-cache-warm"
        for _ in range(runs):
            for kind in ("ours", "noverify", "floor"):
                cache = Path(tempfile.mkdtemp(prefix="uvc-", dir=WORK)) if cold else warm_cache
                env = bench_env(UV_CACHE_DIR=str(cache))
                target = Path(tempfile.mkdtemp(prefix=f"full-{kind}-", dir=WORK))
                if kind == "ours":
                    ours.append(timed(real_install_args(target / "inst"), env))
                elif kind == "noverify":
                    ours_noverify.append(
                        timed(real_install_args(target / "inst", "--skip", "verify"), env)
                    )
                else:
                    floor.append(floor_install(target, env))
                shutil.rmtree(target, ignore_errors=True)
                if cold:
                    shutil.rmtree(cache, ignore_errors=True)
        floor_name = "uv venv + git clone + uv pip install (trio) + uv pip install -r"
        results.append(
            Result(
                f"full install, real ComfyUI + registry torch, {label}",
                ours,
                floor,
                target="<= 1.10x",
                met=statistics.median(ours) <= 1.1 * statistics.median(floor),
                floor_name=floor_name,
                notes="ours includes step 13 (imports + ComfyUI --quick-test-for-ci), which the "
                "floor does not do",
            )
        )
        results.append(
            Result(
                f"full install without step 13 (verify), {label}",
                ours_noverify,
                floor,
                target="<= 1.10x",
                met=statistics.median(ours_noverify) <= 1.1 * statistics.median(floor),
                floor_name=floor_name,
            )
        )
    return results


BUNDLE_COMMIT = "3a0306dc24532f5a05a4440abcfe2b6b26cd2882"  # the fixture bundle's v0.33.0


def bench_lock(runs: int) -> list[Result]:
    """Step 8 from a hash-pinned lock against live resolution, real bundle, warm cache."""
    src = bundle()
    assert src
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    deps = json.loads((ROOT / "dependencies.json").read_text())
    deps["comfyui"] = {"url": str(src), "ref": BUNDLE_REF, "commit": BUNDLE_COMMIT}
    deps["python"]["default"] = python
    config = WORK / "bench-lock-deps.json"
    config.write_text(json.dumps(deps))
    locks = WORK / "locks"
    shutil.rmtree(locks, ignore_errors=True)
    timed(
        [
            CLI,
            "lock",
            "--config",
            str(config),
            "--platform",
            "linux",
            "--torch-variant",
            "default",
            "--python",
            python,
            "--lock-dir",
            str(locks),
            "-q",
        ]
    )
    warm = bench_env(UV_CACHE_DIR=str(WORK / "uv-cache-warm"))
    step8: dict[str, list[float]] = {"locked": [], "live": []}
    total: dict[str, list[float]] = {"locked": [], "live": []}
    for _ in range(runs):
        for kind in ("locked", "live"):
            target = Path(tempfile.mkdtemp(prefix=f"lock-{kind}-", dir=WORK)) / "inst"
            args = [
                CLI,
                "install",
                str(target),
                "--config",
                str(config),
                "--gpu",
                "none",
                "--torch-index",
                "default",
                "--python",
                python,
                "--lock-dir",
                str(locks),
                "-q",
                *(["--no-lock"] if kind == "live" else []),
            ]
            total[kind].append(timed(args, warm))
            state = json.loads((target / ".comfy-install" / "state.json").read_text())
            step = state["steps"]["requirements"]
            assert bool(step["outputs"].get("lock")) == (kind == "locked"), step["outputs"]
            step8[kind].append(step["seconds"])
            shutil.rmtree(target.parent, ignore_errors=True)
    size = sum(p.stat().st_size for p in (ROOT / "locks").glob("*.txt"))
    return [
        Result(
            "step 8 from the lock vs resolved live, real bundle, warm cache",
            step8["locked"],
            step8["live"],
            target="lock not slower (<= 1.00x)",
            met=statistics.median(step8["locked"]) <= statistics.median(step8["live"]),
            floor_name="the same step resolving live (--no-lock)",
        ),
        Result(
            "whole install with the lock vs live, warm cache",
            total["locked"],
            total["live"],
            floor_name="the same install with --no-lock",
            notes=f"shipped locks: {size} bytes in all "
            f"({len(list((ROOT / 'locks').glob('*.txt')))} files)",
        ),
    ]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def time_to_object_info(args: list[str], cwd: Path, port: int) -> float:
    start = time.perf_counter()
    process = subprocess.Popen(
        args,
        cwd=cwd,
        env=bench_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{args} exited with {process.returncode}")
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/object_info", timeout=5
                ) as answer:
                    if answer.status == 200:
                        return time.perf_counter() - start
            except OSError:
                time.sleep(0.05)
    finally:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def bench_launch(n: int) -> Result:
    target = WORK / "real-install"
    timed(real_install_args(target), bench_env())
    python = str(target / "venv" / "bin" / "python")
    ours: list[float] = []
    floor: list[float] = []
    for _ in range(n):
        port = free_port()
        floor.append(
            time_to_object_info(
                [python, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port)],
                target / "ComfyUI",
                port,
            )
        )
        port = free_port()
        ours.append(
            time_to_object_info(
                [
                    CLI,
                    "launch",
                    str(target),
                    "--listen",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--",
                    "--cpu",
                ],
                ROOT,
                port,
            )
        )
    return Result(
        "launch to /object_info 200, real ComfyUI --cpu",
        ours,
        floor,
        target="<= 1.05x",
        met=statistics.median(ours) <= 1.05 * statistics.median(floor),
        floor_name="main.py --cpu started by hand",
        notes="both polled the same way every 50 ms",
    )


def bench_rerun_real(n: int) -> Result:
    target = WORK / "real-install"
    return bench_rerun(real_install_args(target), target, n, "real install")


def bench_peer(runs: int) -> Result:
    """comfy-cli (from the registry) installing the same tree and dependencies."""
    src = bundle()
    assert src
    tools = WORK / "comfy-cli-venv"
    if not (tools / "bin" / "comfy").exists():
        subprocess.run([uv_bin(), "venv", "-q", str(tools), "--python", base_python()], check=True)
        subprocess.run(
            [
                uv_bin(),
                "pip",
                "install",
                "-q",
                "--python",
                str(tools / "bin" / "python"),
                "comfy-cli",
            ],
            check=True,
        )
    clone = WORK / "comfy-src"
    if not clone.exists():
        subprocess.run(["git", "clone", "-q", str(src), str(clone)], check=True)
    pins = WORK / "torch-pins.txt"
    pins.write_text("\n".join(TRIO) + "\n")
    peer: list[float] = []
    ours: list[float] = []
    warm = WORK / "uv-cache-warm"
    for _ in range(runs):
        workspace = Path(tempfile.mkdtemp(prefix="peer-", dir=WORK))
        env = bench_env(
            DO_NOT_TRACK="1",
            COMFY_NO_UPDATE_CHECK="1",
            GIT_TERMINAL_PROMPT="0",
            UV_CONSTRAINT=str(pins),
            UV_CACHE_DIR=str(warm),
            HOME=str(workspace / "home"),
            VIRTUAL_ENV="",
        )
        peer.append(
            timed(
                [
                    str(tools / "bin" / "comfy"),
                    "--workspace",
                    str(workspace / "ComfyUI"),
                    "--skip-prompt",
                    "--no-json",
                    "install",
                    "--url",
                    str(clone),
                    "--version",
                    BUNDLE_REF.removeprefix("v"),
                    "--nvidia",
                    "--cuda-version",
                    "12.8",
                    "--fast-deps",
                    "--skip-manager",
                ],
                env,
                # comfy-cli writes override.txt into its working directory.
                cwd=workspace,
                check=False,
            )
        )
        shutil.rmtree(workspace, ignore_errors=True)
        target = Path(tempfile.mkdtemp(prefix="ours-", dir=WORK))
        ours.append(timed(real_install_args(target / "inst"), bench_env(UV_CACHE_DIR=str(warm))))
        shutil.rmtree(target, ignore_errors=True)
    return Result(
        "peer: comfy-cli 'install --fast-deps' vs ours, warm uv cache",
        ours,
        peer,
        floor_name="comfy-cli (registry) with UV_CONSTRAINT pinning the torch trio",
        notes=f"comfy-cli: clone from the local bundle clone, checkout tag {BUNDLE_REF}, venv, "
        "pip+uv into it from PyPI, uv pip compile (PyPI + download.pytorch.org, unreachable here: "
        "its extra index fails over to PyPI or errors), uv pip install; no torch held, no "
        "verification. ours: the full 13 steps with --gpu none --torch-index default.",
    )


# --- Report -------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    uv_version = subprocess.run(
        [uv_bin(), "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    from installer import __version__

    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "uv": uv_version,
        "comfy_install": __version__,
    }


def fmt(values: Sequence[float], unit: str) -> str:
    s = stats(values)
    return f"{s['min']:.3g} / {s['median']:.3g} / {s['max']:.3g} {unit}"


# --- Custom nodes and snapshots --------------------------------------------------------


def _node_world(root: Path, target: Path, env: dict[str, str], install: list[str]) -> dict:
    """Install into ``target`` (timed) and build the node repo and wheels the benches add."""
    from support.node_repos import build_node_wheels, make_node_repo

    wheels = root / "node-wheels"
    build_node_wheels(wheels)
    repo = root / "plain-node"
    shutil.rmtree(repo, ignore_errors=True)
    make_node_repo(repo, requirements=["plain-new"])
    seconds = timed(install, env)
    return {"wheels": wheels, "repo": repo, "install_s": seconds}


def _nodes_add_vs_uv(
    target: Path, world: dict, env: dict[str, str], mirror: list[str], runs: int
) -> tuple[list[float], list[float]]:
    """`nodes add` of a node with one new pure-Python requirement, and plain `uv pip install`."""
    python = str(target / "venv" / "bin" / "python")
    ours: list[float] = []
    floor: list[float] = []
    for _ in range(runs):
        ours.append(timed([CLI, "nodes", "add", str(target), str(world["repo"]), "-q", *mirror],
                          env))  # fmt: skip
        timed([CLI, "nodes", "remove", str(target), "plain-node"], env)
        floor.append(timed([uv_bin(), "pip", "install", "-q", "--python", python, "plain-new",
                            *mirror], env))  # fmt: skip
        timed([uv_bin(), "pip", "uninstall", "-q", "--python", python, "plain-new"], env)
    return ours, floor


def _restore_vs_install(
    target: Path,
    world: dict,
    env: dict[str, str],
    mirror: list[str],
    runs: int,
    extra: Sequence[str] = (),
    comfyui: Sequence[str] = (),
) -> list[float]:
    """Add plain-node to ``target``, save a snapshot of it and restore it into new DIRs.

    Returns the restores' times, and last the time of the `nodes add` (part of the original).
    """
    added = timed([CLI, "nodes", "add", str(target), str(world["repo"]), "-q", *mirror], env)
    snap = target.parent / "snap.json"
    timed([CLI, "snapshot", "save", str(target), str(snap), *extra, *mirror], env)
    restores: list[float] = []
    for index in range(runs):
        copy = target.parent / f"restored-{index}"
        shutil.rmtree(copy, ignore_errors=True)
        restores.append(timed([CLI, "snapshot", "restore", str(snap), str(copy), "--gpu", "none",
                               f"--source=plain-node={world['repo']}", "-q", *mirror,
                               *comfyui], env))  # fmt: skip
        shutil.rmtree(copy, ignore_errors=True)
    return [*restores, added]


def bench_nodes(runs: int, real: bool) -> list[Result]:
    """`nodes add` against plain uv, and snapshot restore against the install it was taken of.

    Local fixtures always (offline, find-links); with ``real`` also the real ComfyUI v0.33.0
    and the registry's torch trio (warm uv cache), where ComfyUI's requirements are resolved.
    """
    results: list[Result] = []
    fx = local_fixtures()
    root = WORK / "nodes-local"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    config, _ = local_config(fx, lambda path: "http://127.0.0.1:9" + path)
    env = bench_env(UV_CACHE_DIR=str(WORK / "uv-cache-nodes"))
    mirror = ["--find-links", str(fx["links"]), "--find-links", str(root / "node-wheels"),
              "--offline"]  # fmt: skip
    target = root / "inst"
    install = [CLI, "install", str(target), "--config", str(config), "--gpu", "none",
               "--torch-index", "default", "--python", base_python(), "-q",
               "--find-links", str(fx["links"]), "--offline"]  # fmt: skip
    world = _node_world(root, target, env, install)
    installs = [world["install_s"]]
    for index in range(1, max(runs // 2, 2)):
        other = root / f"inst-{index}"
        installs.append(timed([*install[:2], str(other), *install[3:]], env))
        shutil.rmtree(other, ignore_errors=True)
    ours, floor = _nodes_add_vs_uv(target, world, env, mirror, runs)
    results.append(
        Result(
            "nodes add (one new pure-Python requirement), local fixtures, offline",
            ours,
            floor,
            target="<= 1.50x",
            met=statistics.median(ours) <= 1.5 * statistics.median(floor),
            floor_name="uv pip install of the requirement into the same venv",
            notes="ours: CLI start (Python, typer, pydantic), git clone, the install with "
            "the venv pinned, torch's fingerprint; the floor is one tiny local wheel",
        )
    )
    *restores, added = _restore_vs_install(target, world, env, mirror, max(runs // 2, 2),
                                           ["--config", str(config)])  # fmt: skip
    originals = [seconds + added for seconds in installs]
    results.append(
        Result(
            "snapshot restore into a new DIR, local fixtures, offline",
            restores,
            originals,
            target="<= 1.00x",
            met=statistics.median(restores) <= statistics.median(originals),
            floor_name="the original: install (same options, warm cache) + its nodes add",
        )
    )
    if real:
        results += _bench_nodes_real(runs)
    return results


def _bench_nodes_real(runs: int) -> list[Result]:
    from support.node_repos import build_node_wheels

    root = WORK / "nodes-real"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    env = bench_env(UV_CACHE_DIR=str(WORK / "uv-cache-warm"))
    build_node_wheels(root / "node-wheels")
    mirror = ["--find-links", str(root / "node-wheels")]
    target = root / "inst"
    world = _node_world(root, target, env, real_install_args(target))
    installs = [world["install_s"]]
    ours, floor = _nodes_add_vs_uv(target, world, env, mirror, runs)
    results = [
        Result(
            "nodes add (one new pure-Python requirement), real ComfyUI v0.33.0, warm cache",
            ours,
            floor,
            target="<= 1.50x",
            met=statistics.median(ours) <= 1.5 * statistics.median(floor),
            floor_name="uv pip install of the requirement into the same venv",
        )
    ]
    other = root / "inst-2"
    installs.append(timed(real_install_args(other), env))
    shutil.rmtree(other, ignore_errors=True)
    *restores, added = _restore_vs_install(
        target, world, env, mirror, 2, comfyui=["--source", f"ComfyUI={bundle()}"]
    )
    originals = [seconds + added for seconds in installs]
    results.append(
        Result(
            "snapshot restore into a new DIR, real ComfyUI v0.33.0, warm cache",
            restores,
            originals,
            target="<= 1.00x",
            met=statistics.median(restores) <= statistics.median(originals),
            floor_name="the original: real install (warm cache) + its nodes add",
            notes="both run the 13 steps, step 13's ComfyUI start included; restore installs the "
            "snapshot's hashed lock instead of resolving",
        )
    )
    return results


def report(results: list[Result], info: dict[str, Any]) -> str:
    lines = [
        f"# Benchmark results ({info['date']})",
        "",
        f"Machine: {info['platform']}, {info['cpus']} CPUs, Python {info['python']}, "
        f"{info['uv']}, comfy-install {info['comfy_install']}.",
        "",
        "Each figure is min / median / max over the runs; the ratio is median ours / "
        "median floor, both measured in the same run.",
        "",
        "| benchmark | ours | floor | ratio | target | met |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        ratio = f"{r.ratio:.2f}x" if r.ratio is not None else "-"
        floor = f"{fmt(r.floor, r.unit)} ({r.floor_name})" if r.floor else "-"
        met = {True: "yes", False: "**no**", None: "-"}[r.met]
        lines.append(
            f"| {r.name} | {fmt(r.ours, r.unit)} | {floor} | {ratio} | {r.target} | {met} |"
        )
    notes = [f"- {r.name}: {r.notes}" for r in results if r.notes]
    if notes:
        lines += ["", "Notes:", *notes]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs of each quick benchmark")
    parser.add_argument(
        "--full",
        action="store_true",
        help="also real installs (cold/warm), re-run and launch of the real "
        "ComfyUI (several minutes, downloads the torch trio)",
    )
    parser.add_argument("--peer", action="store_true", help="also time comfy-cli (with --full)")
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated: cli,dry,local,nodes,downloads,full,lock,launch,update,peer",
    )
    args = parser.parse_args(argv)
    WORK.mkdir(parents=True, exist_ok=True)
    only = set(filter(None, args.only.split(",")))

    def wanted(name: str, default: bool = True) -> bool:
        return name in only if only else default

    results: list[Result] = []
    if wanted("cli"):
        results += bench_cli(max(args.runs, 10))
    if wanted("dry"):
        results.append(bench_dry_run(args.runs))
    if wanted("local"):
        results += bench_local(max(args.runs // 2, 3))
    if wanted("nodes"):
        results += bench_nodes(args.runs, real=args.full and bundle() is not None)
    if wanted("downloads"):
        results += bench_downloads(3)
    if wanted("full", args.full):
        results += bench_full(cold_runs=2, warm_runs=3)
    if wanted("lock", args.full):
        results += bench_lock(2)
    if wanted("launch", args.full):
        results.append(bench_rerun_real(args.runs))
        results.append(bench_launch(3))
    if wanted("update", args.full):
        from update_bench import bench_update

        results += bench_update(WORK, bench_env(), timed, Result, runs=2)
    if wanted("peer", args.full and args.peer):
        results.append(bench_peer(2))
    info = machine()
    for r in results:
        ratio = f"{r.ratio:.2f}x" if r.ratio is not None else ""
        print(
            f"{r.name:60s} {fmt(r.ours, r.unit):32s} {ratio:8s} {r.target} "
            f"{'' if r.met is None else ('met' if r.met else 'MISSED')}"
        )
    (ROOT / "bench" / "results.json").write_text(
        json.dumps({"machine": info, "results": [r.row() for r in results]}, indent=2) + "\n"
    )
    results_md = ROOT / "bench" / "RESULTS.md"
    # Keep the sections measured elsewhere, between their markers: the container image
    # (tests/e2e/test_image_real.py) and the GPU workflows (bench/gpu/run_workflows.py).
    kept = ""
    if results_md.exists():
        old = results_md.read_text()
        for section in ("image-results", "gpu-workflows"):
            start, end = f"<!-- {section}:start -->", f"<!-- {section}:end -->"
            if start in old and end in old:
                kept += "\n" + start + old.split(start, 1)[1].split(end, 1)[0] + end + "\n"
    results_md.write_text(report(results, info) + kept)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
