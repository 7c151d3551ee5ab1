"""Fixtures of the unit tests: the shipped config, a fake machine, NVML faked at `pynvml`.

Nothing here touches the network or a GPU. NVML is replaced only at the
`pynvml` function boundary (the functions `installer.edges.gpu` calls), with values
a real H100 returned (`data/nvml-h100.json`, copied from the shared reference
so CI, which clones only this repository, has it too).
"""

from __future__ import annotations

import copy
import json
import os
import stat
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from typer.testing import CliRunner

from installer.core.config import Dependencies, ToolsManifest
from installer.core.config_files import load_dependencies, load_tools_manifest, shipped_path
from installer.core.facts import Environment, Tool

DATA = Path(__file__).parent / "data"
NVML_H100: dict[str, Any] = json.loads((DATA / "nvml-h100.json").read_text(encoding="utf-8"))
H100 = NVML_H100["devices"][0]


def h100_facts_section(title: str) -> str:
    """Return the body of one `## title` section of data/h100-facts.txt."""
    text = (DATA / "h100-facts.txt").read_text(encoding="utf-8")
    body: list[str] = []
    inside = False
    for line in text.splitlines():
        if line.startswith("## "):
            inside = line[3:].strip() == title
            continue
        if inside:
            body.append(line)
    assert body, f"no section {title!r} in h100-facts.txt"
    return "\n".join(body).strip("\n") + "\n"


# --- configuration ---------------------------------------------------------


@pytest.fixture(scope="session")
def deps() -> Dependencies:
    """The shipped dependencies.json, loaded the way the installer loads it."""
    return load_dependencies()


@pytest.fixture(scope="session")
def manifest() -> ToolsManifest:
    """The shipped tools_manifest.json."""
    return load_tools_manifest()


@pytest.fixture(scope="session")
def shipped_raw() -> dict[str, Any]:
    """The shipped dependencies.json as plain JSON data (for mutating into bad files)."""
    return json.loads(shipped_path("dependencies.json").read_text(encoding="utf-8"))


@pytest.fixture
def write_config(
    tmp_path: Path, shipped_raw: dict[str, Any]
) -> Callable[[Callable[[dict[str, Any]], Any]], Path]:
    """Write a copy of the shipped config changed by ``mutate``; return its path."""
    count = iter(range(1000))

    def write(mutate: Callable[[dict[str, Any]], Any]) -> Path:
        data = copy.deepcopy(shipped_raw)
        mutate(data)
        path = tmp_path / f"deps-{next(count)}.json"
        path.write_text(json.dumps(data, indent=2), encoding="utf-8")
        return path

    return write


# --- the machine ------------------------------------------------------------


def make_env(platform: str = "linux", **changes: Any) -> Environment:
    """A machine like the reference H100 host, without asking the real one anything."""
    values: dict[str, Any] = {
        "platform": platform,
        "arch": "x86_64",
        "os_name": "Ubuntu 24.04.3 LTS" if platform == "linux" else "Windows 11",
        "python_version": "3.12.3",
        "python_executable": "/usr/bin/python3",
        "free_disk_bytes": 200 * 2**30,
        "disk_path": "/srv",
        "git": Tool("git", path="/usr/bin/git", version="2.43.0"),
        "uv": Tool("uv", path="/opt/uv/bin/uv", version="0.11.15"),
        "compiler": Tool("compiler"),
        "nvcc": Tool("nvcc"),
    }
    values.update(changes)
    return Environment(**values)


@pytest.fixture
def fake_env() -> Environment:
    """A Linux x86_64 machine with git and uv, 200 GiB free."""
    return make_env()


# --- NVML, faked at the pynvml function boundary ----------------------------


@dataclass
class FakeGpu:
    """What NVML reports for one device; ``fail`` makes reading it raise that NVML code."""

    name: str | bytes
    cc: tuple[int, int]
    total: int
    free: int
    uuid: str
    bus_id: str
    fail: int | None = None


def h100_gpu() -> FakeGpu:
    """The H100 of the reference JSON, exactly as NVML returned it."""
    return FakeGpu(
        name=H100["nvmlDeviceGetName"],
        cc=tuple(H100["nvmlDeviceGetCudaComputeCapability"]),  # type: ignore[arg-type]
        total=H100["nvmlDeviceGetMemoryInfo.total"],
        free=H100["nvmlDeviceGetMemoryInfo.free"],
        uuid=H100["nvmlDeviceGetUUID"],
        bus_id=H100["nvmlDeviceGetPciInfo.busId"],
    )


def rtx4090_gpu() -> FakeGpu:
    """A second, different card for multi-GPU machines (Ada, cc 8.9, 24 GiB)."""
    return FakeGpu(
        name="NVIDIA GeForce RTX 4090",
        cc=(8, 9),
        total=25757220864,
        free=25100000000,
        uuid="GPU-0a1b2c3d-0000-1111-2222-333344445555",
        bus_id="00000000:01:00.0",
    )


@dataclass
class FakeNvml:
    """A stand-in for the NVML library behind `pynvml`'s functions."""

    gpus: list[FakeGpu] = field(default_factory=lambda: [h100_gpu()])
    driver: str = NVML_H100["nvmlSystemGetDriverVersion"]
    cuda: int = NVML_H100["nvmlSystemGetCudaDriverVersion"]
    init_error: int | None = None
    system_error: int | None = None
    calls: list[str] = field(default_factory=list)
    initialised: bool = False

    def install(self, monkeypatch: pytest.MonkeyPatch) -> FakeNvml:
        import pynvml

        def error(code: int) -> Exception:
            return pynvml.NVMLError(code)

        def need_init() -> None:
            if not self.initialised:
                raise error(pynvml.NVML_ERROR_UNINITIALIZED)

        def device(handle: Any) -> FakeGpu:
            need_init()
            kind, index = handle
            assert kind == "fake-handle"
            gpu = self.gpus[index]
            if gpu.fail is not None:
                raise error(gpu.fail)
            return gpu

        def nvmlInit() -> None:
            self.calls.append("nvmlInit")
            if self.init_error is not None:
                raise error(self.init_error)
            self.initialised = True

        def nvmlShutdown() -> None:
            self.calls.append("nvmlShutdown")
            need_init()
            self.initialised = False

        def nvmlSystemGetDriverVersion() -> str:
            need_init()
            return self.driver

        def nvmlSystemGetCudaDriverVersion() -> int:
            need_init()
            if self.system_error is not None:
                raise error(self.system_error)
            return self.cuda

        def nvmlDeviceGetCount() -> int:
            need_init()
            return len(self.gpus)

        def nvmlDeviceGetHandleByIndex(index: int) -> tuple[str, int]:
            need_init()
            if not 0 <= index < len(self.gpus):
                raise error(pynvml.NVML_ERROR_INVALID_ARGUMENT)
            return ("fake-handle", index)

        def nvmlDeviceGetName(handle: Any) -> str | bytes:
            return device(handle).name

        def nvmlDeviceGetCudaComputeCapability(handle: Any) -> tuple[int, int]:
            return device(handle).cc

        def nvmlDeviceGetMemoryInfo(handle: Any) -> Any:
            gpu = device(handle)
            return pynvml.c_nvmlMemory_t(total=gpu.total, free=gpu.free, used=gpu.total - gpu.free)

        def nvmlDeviceGetUUID(handle: Any) -> str:
            return device(handle).uuid

        def nvmlDeviceGetPciInfo(handle: Any) -> Any:
            info = pynvml.nvmlPciInfo_t()
            info.busId = device(handle).bus_id.encode()
            return info

        for function in (
            nvmlInit,
            nvmlShutdown,
            nvmlSystemGetDriverVersion,
            nvmlSystemGetCudaDriverVersion,
            nvmlDeviceGetCount,
            nvmlDeviceGetHandleByIndex,
            nvmlDeviceGetName,
            nvmlDeviceGetCudaComputeCapability,
            nvmlDeviceGetMemoryInfo,
            nvmlDeviceGetUUID,
            nvmlDeviceGetPciInfo,
        ):
            assert hasattr(pynvml, function.__name__), function.__name__
            monkeypatch.setattr(pynvml, function.__name__, function)
        return self


@pytest.fixture
def empty_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """PATH holds only an empty folder: no nvidia-smi can be found."""
    folder = tmp_path / "empty-bin"
    folder.mkdir()
    monkeypatch.setenv("PATH", str(folder))
    return folder


@pytest.fixture
def nvml(monkeypatch: pytest.MonkeyPatch, empty_path: Path) -> Callable[..., FakeNvml]:
    """Install a FakeNvml (H100 by default) with no nvidia-smi on PATH."""

    def make(**kwargs: Any) -> FakeNvml:
        return FakeNvml(**kwargs).install(monkeypatch)

    return make


# Fields the real `nvidia-smi --query-gpu` accepts (a subset: the ones that matter here).
SMI_FIELDS = {
    "index", "name", "compute_cap", "memory.total", "memory.free", "memory.used",
    "driver_version", "pci.bus_id", "uuid", "serial", "vbios_version",
}  # fmt: skip

SMI_SCRIPT = """\
#!{python}
import sys

FIELDS = {fields!r}
HEADER = {header!r}
MEMORY = ("memory.total", "memory.free", "memory.used")

args = sys.argv[1:]
if not args:
    sys.stdout.write(HEADER)
    sys.exit(0)
query = [a.split("=", 1)[1] for a in args if a.startswith("--query-gpu=")]
fmt = [a.split("=", 1)[1] for a in args if a.startswith("--format=")]
if len(query) != 1 or len(fmt) != 1:
    sys.stderr.write("fake nvidia-smi: unsupported arguments %r\\n" % (args,))
    sys.exit(2)
names = query[0].split(",")
for name in names:
    if name not in FIELDS:
        sys.stdout.write('Field "%s" is not a valid field to query.\\n' % name)
        sys.exit(2)
options = fmt[0].split(",")
if "noheader" not in options:
    print(", ".join(names))
for row in {rows!r}:
    cells = []
    for name in names:
        value = row[name]
        if name in MEMORY and "nounits" not in options:
            value += " MiB"
        cells.append(value)
    print(", ".join(cells))
"""


def write_fake_smi(folder: Path, rows: list[dict[str, str]], header: str) -> Path:
    """Write an executable `nvidia-smi` into ``folder`` that answers like the real one."""
    fields = sorted(SMI_FIELDS | {name for row in rows for name in row})
    script = folder / "nvidia-smi"
    script.write_text(
        SMI_SCRIPT.format(python=sys.executable, fields=fields, header=header, rows=rows),
        encoding="utf-8",
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return script


def h100_smi_row() -> dict[str, str]:
    """The reference `nvidia-smi --query-gpu` row of the H100, keyed by query field."""
    line = h100_facts_section("nvidia-smi query").strip()
    index, name, cc, total, free, driver, bus_id = (cell.strip() for cell in line.split(","))
    return {
        "index": index,
        "name": name,
        "compute_cap": cc,
        "memory.total": total,
        "memory.free": free,
        "driver_version": driver,
        "pci.bus_id": bus_id,
        "uuid": H100["nvmlDeviceGetUUID"],
    }


@pytest.fixture
def smi_on_path(empty_path: Path) -> Callable[..., Path]:
    """Put a fake `nvidia-smi` first on PATH (PATH holds nothing else)."""

    def make(rows: list[dict[str, str]] | None = None, header: str | None = None) -> Path:
        return write_fake_smi(
            empty_path,
            [h100_smi_row()] if rows is None else rows,
            h100_facts_section("nvidia-smi header") if header is None else header,
        )

    return make


# --- the command line -------------------------------------------------------


@pytest.fixture
def cli() -> Iterator[Callable[..., Any]]:
    """Invoke `comfy-install` in-process (typer's CliRunner, stdout and stderr apart)."""
    from installer.cli.app import app

    runner = CliRunner()

    def invoke(*args: str | os.PathLike[str]) -> Any:
        return runner.invoke(app, [str(a) for a in args])

    yield invoke


@pytest.fixture(scope="session")
def ref() -> SimpleNamespace:
    """The reference data and builders (conftest is not importable from test modules)."""
    return SimpleNamespace(
        nvml=NVML_H100,
        device=H100,
        facts=h100_facts_section,
        h100=h100_gpu,
        rtx4090=rtx4090_gpu,
        smi_row=h100_smi_row,
        make_env=make_env,
    )
