"""The attention package's one routes schema: the planner writes it, the shim in the venv reads it.

The table `launch` plans goes through the schema's writer to disk and back through the router's
reader unchanged; the files `launch` copies into a venv import each other by their venv names,
with no `installer` to fall back on; and the routing variable is named in one place only.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from installer.attention.files import write_routes
from installer.attention.shim import router, routes
from installer.launch.shim import ensure_shim

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "installer"

TABLE = routes.routes_data(
    [
        {
            "head_dim": 128,
            "dtype": "bf16",
            "bands": [
                {"min_tokens": 4096, "max_tokens": 16384, "backend": "cudnn"},
                {"min_tokens": 16384, "max_tokens": None, "backend": "sageattention"},
            ],
        }
    ],
    calibrated_at="2026-12-01T10:00:00+00:00",
    gpu="NVIDIA H200",
    counts_file="/srv/i/.comfy-install/attention-calls.json",
)


def test_the_written_table_is_read_back_unchanged_by_the_router(tmp_path: Path) -> None:
    path = tmp_path / routes.ROUTES_FILE
    write_routes(path, TABLE)
    assert json.loads(path.read_text(encoding="utf-8")) == TABLE
    assert path.read_text(encoding="utf-8") == routes.dump_routes(TABLE)
    read = routes.load_routes(str(path))
    assert read == {**TABLE, "targets": {}}
    table = router.load_routes(str(path))
    assert table.backends() == ["cudnn", "sageattention"]
    assert table.backend(128, "bf16", 4096) == "cudnn"
    assert table.backend(128, "bf16", 16383) == "cudnn"
    assert table.backend(128, "bf16", 75600) == "sageattention"
    assert table.backend(128, "bf16", 4095) == "sdpa"
    assert table.backend(64, "bf16", 75600) == "sdpa"
    assert table.counts_file == TABLE["counts_file"] and table.flush_every == routes.FLUSH_EVERY


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({}, "KeyError"),
        ({"routes": [{"head_dim": "x", "dtype": "bf16", "bands": []}]}, "ValueError"),
        ({"routes": [{"head_dim": 64, "dtype": "fp16", "bands": [{"backend": "x"}]}]}, "KeyError"),
        ({"routes": 3}, "TypeError"),
    ],
)
def test_the_reader_says_what_is_not_a_routing_table(data: dict[str, object], problem: str) -> None:
    with pytest.raises(ValueError, match=f"not a routing table \\({problem}"):
        routes.parse_routes(data)
    with pytest.raises(ValueError, match=f"not a routing table \\({problem}"):
        router.Routes(data)


def test_a_hand_written_table_needs_only_its_routes() -> None:
    table = routes.parse_routes(
        {"routes": [{"head_dim": "64", "dtype": "fp16", "bands": [
            {"min_tokens": "1024", "backend": "xformers"}]}], "flush_every": -3}
    )  # fmt: skip
    assert table == {
        "routes": [{"head_dim": 64, "dtype": "fp16", "bands": [
            {"min_tokens": 1024, "max_tokens": None, "backend": "xformers"}]}],
        "counts_file": "",
        "flush_every": 1,
        "targets": {},
    }  # fmt: skip


def test_the_venv_copies_import_the_schema_by_its_venv_name_without_the_installer(
    tmp_path: Path,
) -> None:
    site = tmp_path / "site-packages"
    site.mkdir()
    assert ensure_shim(site) == "current"
    assert (
        (site / "comfy_install_routes.py")
        .read_text(encoding="utf-8")
        .startswith("# comfy-install attention routes schema")
    )
    table = tmp_path / "routes.json"
    write_routes(table, TABLE)
    script = (
        "import sys\n"
        "sys.modules['installer'] = None  # the venv has no installer package\n"
        f"sys.path.insert(0, {str(site)!r})\n"
        "import comfy_install_tuning as tuning, comfy_install_attention as router\n"
        "print(tuning.routes_env(), router.schema.__name__, router.ROUTES_ENV)\n"
        f"print(router.load_routes({str(table)!r}).backends())\n"
        "print(sorted(m for m in sys.modules if m.startswith(('typing', 'dataclasses'))))\n"
        "import comfy_install_sdpa as sdpa\n"
        "sage = sdpa._sage()  # the SageAttention route, found by its venv name\n"
        "print(sage.__name__, sage.KERNEL)\n"
        "print(sorted(m for m in sys.modules if m.startswith(('typing', 'dataclasses', 'torch',"
        " 'sageattention'))))\n"
    )
    done = subprocess.run(
        [sys.executable, "-S", "-c", script], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    names, backends, heavy, found, still = done.stdout.splitlines()
    env, schema, again = names.split()
    assert env == "COMFY_INSTALL_ATTENTION_ROUTES" and env == again
    assert schema == "comfy_install_routes"
    assert backends == "['cudnn', 'sageattention']"
    assert heavy == "[]"  # every tuned start imports these files: no typing, no dataclasses
    assert found == "comfy_install_sage sageattn_qk_int8_pv_fp8_cuda_sm90"
    assert still == "[]"  # nor torch nor sageattention until a route is built
    assert (
        (site / "comfy_install_sage.py")
        .read_text(encoding="utf-8")
        .startswith("# comfy-install SageAttention routes")
    )


def test_the_routing_variables_are_named_in_the_schema_only() -> None:
    named: dict[str, list[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Assign)
                and isinstance(node.value, ast.Constant)
                and node.value.value
                in ("COMFY_INSTALL_ATTENTION_ROUTES", "COMFY_INSTALL_ATTENTION_COUNTS")
            ):
                named.setdefault(str(node.value.value), []).append(str(path.relative_to(PACKAGE)))
    assert named == {
        "COMFY_INSTALL_ATTENTION_ROUTES": ["attention/shim/routes.py"],
        "COMFY_INSTALL_ATTENTION_COUNTS": ["attention/shim/routes.py"],
    }
