"""A tiny source package in a local git repository, shaped like SageAttention, built by tests.

Each commit is one way a source build can go (the commit is what the config pins):

* `good`: a pure-Python setuptools package `sageattention` (a `pyproject.toml` whose
  build requires setuptools, like the real one), built for real with
  `--no-build-isolation`;
* `broken_c`: adds a C extension whose source does not compile (a compiler error);
* `raises`: a `setup.py` that stops like SageAttention's does on an old nvcc;
* `slow`: a `setup.py` that starts a child process, writes its pid, and waits (for
  the Ctrl-C test).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

PYPROJECT = """[build-system]
requires = ["setuptools>=62"]
build-backend = "setuptools.build_meta"
"""

SETUP_GOOD = """from setuptools import setup

setup(name="sageattention", version="2.2.0+tiny", packages=["sageattention"])
"""

SETUP_BROKEN_C = """from setuptools import Extension, setup

setup(
    name="sageattention",
    version="2.2.0+tiny",
    packages=["sageattention"],
    ext_modules=[Extension("sageattention._kernels", ["csrc/kernels.c"])],
)
"""

BROKEN_C = """int kernel(void) {
    return undeclared_symbol_in_kernels + 1;
}
"""

SETUP_RAISES = """import sys

print("Target compute capabilities: {'8.9'}", flush=True)
raise RuntimeError("CUDA 12.4 or higher is required for compute capability 8.9.")
"""

SETUP_SLOW = """import os, subprocess, sys, time

child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
with open(os.environ["TINY_PID_FILE"], "w") as handle:
    handle.write(str(child.pid))
print("[1/3] compiling a unit that never ends", flush=True)
time.sleep(600)
"""


def _git(repo: Path, *args: str) -> str:
    env = dict(
        os.environ,
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@example.com",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@example.com",
    )
    done = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, env=env, check=True
    )
    return done.stdout.strip()


def make_source_repo(repo: Path) -> dict[str, str]:
    """Create the repository; return the commit of each variant by name."""
    repo.mkdir(parents=True)
    _git(repo, "init", "-q", "-b", "main")
    commits: dict[str, str] = {}

    def commit(name: str, files: dict[str, str]) -> None:
        for relative, text in files.items():
            path = repo / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        _git(repo, "add", "-A")
        _git(repo, "commit", "-q", "-m", name)
        commits[name] = _git(repo, "rev-parse", "HEAD")

    commit(
        "good",
        {
            "pyproject.toml": PYPROJECT,
            "setup.py": SETUP_GOOD,
            "sageattention/__init__.py": 'BUILD = "tiny source build"\n',
        },
    )
    commit("broken_c", {"setup.py": SETUP_BROKEN_C, "csrc/kernels.c": BROKEN_C})
    commit("raises", {"setup.py": SETUP_RAISES})
    commit("slow", {"setup.py": SETUP_SLOW})
    return commits


def source_entry(url: str, commit: str) -> dict[str, object]:
    """A `sageattention_sources` entry for the tiny repository at ``commit``."""
    return {
        "name": "sageattention2",
        "url": url,
        "ref": "main",
        "commit": commit,
        "distribution": "sageattention",
        "import_name": "sageattention",
        "cc": ">=8.0,<13.0",
        "min_nvcc": {"default": "12.0"},
        "python": ">=3.9",
        "torch": ">=2.3",
        "build_requires": ["setuptools>=62", "wheel"],
        "extensions_in_parallel": 2,
        "build_time": {"seconds": 10, "cores": 2},
    }
