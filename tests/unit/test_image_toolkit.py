"""The image's toolkit stage follows the install plan's rule (issue 33, part 7).

torch builds extensions only with an nvcc of its own CUDA major. The image is planned
with the toolkit image's CUDA as its nvcc (`--cuda-toolkit`), so the plan picks a torch
that toolkit can compile for, and the install inside the image is told that torch. For
every torch build the shipped configuration can pick, the generated Containerfile is
read back and checked against the plan: the toolkit's CUDA major, the accelerators
stage's torch index and the runtime install's `--torch-index` all agree.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from installer.image.containerfile import (
    PlanSummary,
    SourceBuild,
    toolkit_cuda,
    toolkit_problem,
)
from support.cli import REPO_ROOT
from unit.test_image import spec

CUDA13 = "docker.io/nvidia/cuda:13.0.1-devel-ubuntu24.04"

TARGETS = [
    # (options, torch build the plan must choose)
    (["--gpu", "9.0", "--cuda-driver", "13.0"], "cu128"),  # the case: traded for nvcc 12.8
    (["--gpu", "9.0", "--cuda-driver", "13.0", "--toolkit-image", CUDA13], "cu130"),
    (["--gpu", "9.0", "--cuda-driver", "12.8"], "cu128"),
    (["--gpu", "8.6", "--cuda-driver", "12.6"], "cu126"),
    (["--gpu", "12.0", "--cuda-driver", "13.0"], "cu128"),
    (["--gpu", "12.0", "--cuda-driver", "13.0", "--toolkit-image", CUDA13], "cu130"),
    (["--gpu", "9.0", "--cuda-driver", "13.0", "--torch-index", "cu130"], "cu130"),
    (["--gpu", "7.5", "--cuda-driver", "12.8"], "cu128"),
    (["--gpu", "none"], "cpu"),
]


def _major(build: str) -> int:
    return int(re.fullmatch(r"cu([0-9]+)[0-9]", build).group(1))  # type: ignore[union-attr]


@pytest.mark.parametrize(("options", "build"), TARGETS, ids=[" ".join(t[0]) for t in TARGETS])
def test_containerfile_agrees_with_the_plan(tmp_path: Path, options: list[str], build: str) -> None:
    wheel = tmp_path / "comfy_install-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"")
    out = tmp_path / "ctx"
    done = subprocess.run(
        [sys.executable, "-m", "installer", "image", "context", str(out), *options,
         "--wheel", str(wheel)],
        capture_output=True, text=True, env={**os.environ, "NO_COLOR": "1"}, cwd=REPO_ROOT,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    text = (out / "Containerfile").read_text()
    plan = json.loads((out / "image.json").read_text())["install_plan"]
    assert plan["torch"]["variant"] == build
    runtime = next(line for line in text.splitlines() if "comfy-install install" in line)
    if "AS accelerators" not in text:
        assert not plan["source_builds"]
        return
    toolkit = re.search(r"^ARG TOOLKIT_IMAGE=(\S+)$", text, re.M).group(1)  # type: ignore[union-attr]
    stage = text.split("AS accelerators", 1)[1].split("\nFROM ", 1)[0]
    index = re.search(r"--index-url \S*/whl/(cu[0-9]+) ", stage).group(1)  # type: ignore[union-attr]
    wanted = re.search(r"--torch-index (\S+)", runtime).group(1)  # type: ignore[union-attr]
    cuda = toolkit_cuda(toolkit)
    assert cuda is not None
    assert int(cuda.split(".")[0]) == _major(index) == _major(build), (toolkit, index, build)
    assert index == wanted == build, "the runtime install must take the torch the wheels need"


def test_toolkit_cuda_reads_nvidia_tags() -> None:
    assert toolkit_cuda("docker.io/nvidia/cuda:12.8.1-devel-ubuntu24.04") == "12.8"
    assert toolkit_cuda("nvidia/cuda:13.0.1-devel-ubuntu22.04") == "13.0"
    assert toolkit_cuda("registry.example/my-toolkit:latest") is None


def test_a_toolkit_of_another_cuda_major_is_refused() -> None:
    build = (SourceBuild("sageattention2", "sageattention==2.2.0"),)
    cu130 = replace(spec().plan, torch_variant="cu130", torch_cuda="cu130", source_builds=build)
    problem = toolkit_problem(spec(plan=cu130))
    assert problem is not None and "CUDA 12.8" in problem and "CUDA 13.x" in problem
    assert toolkit_problem(spec(plan=cu130, toolkit_image=CUDA13)) is None
    no_build: PlanSummary = replace(cu130, source_builds=())
    assert toolkit_problem(spec(plan=no_build)) is None
