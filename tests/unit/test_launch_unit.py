"""The pure part of `launch`: tunings, variables, arguments and the shim's files, from data."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from installer.attention.rules.routing import AttentionProbe
from installer.core.errors import ExitCode, UsageError
from installer.core.facts import GpuInfo, GpuReport, TorchInstalled
from installer.launch import shim_module as shim
from installer.launch.ports import port_holder, port_in_use
from installer.launch.shim import ensure_shim, shim_paths, shim_status
from installer.plan.launch import (
    LaunchFacts,
    LaunchPlan,
    LaunchRequest,
    plan_launch,
    render_print_env,
)
from installer.plan.launch_settings import join_command_line, split_extra_args, validate_settings
from installer.plan.launch_tunings import allocator_variable

TORCH_29 = TorchInstalled("2.9.1+cu128", "12.8")
TORCH_28 = TorchInstalled("2.8.0+cu128", "12.8")
PACKAGES = AttentionProbe({"torch": "2.9.1+cu128", "sageattention": "1.0.6", "triton": "3.5.1"})


def gpu(cc: str | None) -> GpuReport:
    if cc is None:
        return GpuReport("none", "no NVIDIA GPU: test")
    card = GpuInfo(index=0, name=f"GPU cc {cc}", cc=cc, vram_total_bytes=24 * 2**30)
    return GpuReport("override", "test", (card,), "580.65.06", "13.0")


def facts(
    cc: str | None = "9.0",
    torch: TorchInstalled | None = TORCH_29,
    attention: AttentionProbe | None = PACKAGES,
    platform: str = "linux",
    shim_state: str = "current",
) -> LaunchFacts:
    return LaunchFacts(
        platform=platform,
        venv_python=Path("/srv/i/venv/bin/python"),
        comfyui_dir=Path("/srv/i/ComfyUI"),
        gpu=gpu(cc),
        torch=torch,
        attention=attention,
        shim=shim_state,  # type: ignore[arg-type]
        site_packages=Path("/srv/i/venv/lib/python3.12/site-packages"),
    )


def plan(
    env: dict[str, str] | None = None,
    *,
    tune: bool = True,
    extra: tuple[str, ...] = (),
    port: int = 8188,
    listen: str | None = None,
    **fact_args: object,
) -> LaunchPlan:
    request = LaunchRequest(Path("/srv/i"), listen=listen, port=port, tune=tune, extra_args=extra)
    return plan_launch(request, facts(**fact_args), env or {})  # type: ignore[arg-type]


def statuses(p: LaunchPlan) -> dict[str, str]:
    return {t.name: t.status for t in p.tunings}


# --- which tunings for which GPU ---------------------------------------------------


@pytest.mark.parametrize(
    ("cc", "expected"),
    [
        ("7.5", {"allocator": "on", "tf32": "off", "cudnn-benchmark": "on",
                 "matmul-precision": "off", "attention": "off"}),
        ("8.0", {"allocator": "on", "tf32": "on", "cudnn-benchmark": "on",
                 "matmul-precision": "on", "attention": "off"}),
        ("9.0", {"allocator": "on", "tf32": "on", "cudnn-benchmark": "on",
                 "matmul-precision": "on", "attention": "off"}),
        (None, {"allocator": "off", "tf32": "off", "cudnn-benchmark": "off",
                "matmul-precision": "off", "attention": "off"}),
    ],
)  # fmt: skip
def test_tunings_follow_the_compute_capability(cc: str | None, expected: dict[str, str]) -> None:
    p = plan(cc=cc)
    assert {k: v for k, v in statuses(p).items() if k in expected} == expected
    assert statuses(p)["torch-compile"] == "off"  # opt-in
    # No calibration: no attention flag, whatever is installed (ComfyUI's default, SDPA).
    assert not any(arg.startswith("--use-") for arg in p.argv)
    if cc == "7.5":
        assert "ENABLE_TF32" not in p.env_set
        assert "7.5" in p.tuning("tf32").reason  # type: ignore[union-attr]
        assert p.env_set["ENABLE_CUDNN_BENCHMARK"] == "1"
    if cc in ("8.0", "9.0"):
        assert p.env_set["ENABLE_TF32"] == "1"
        assert p.env_set["MATMUL_PRECISION"] == "high"
        assert p.env_set["COMFY_INSTALL_TUNING"] == "1"
        assert p.needs_shim
    if cc is None:
        assert p.env_set == {}
        assert not p.needs_shim


def test_lowest_compute_capability_of_several_gpus_counts() -> None:
    cards = (GpuInfo(0, "H100", "9.0"), GpuInfo(1, "T4", "7.5"))
    f = facts()
    mixed = LaunchFacts(**{**f.__dict__, "gpu": GpuReport("nvml", "test", cards)})
    p = plan_launch(LaunchRequest(Path("/srv/i")), mixed, {})
    assert statuses(p)["tf32"] == "off"


@pytest.mark.parametrize(
    ("version", "variable"),
    [
        ("2.8.0+cu128", "PYTORCH_CUDA_ALLOC_CONF"),
        ("2.9.1+cu128", "PYTORCH_ALLOC_CONF"),
        ("2.10.0+cu130", "PYTORCH_ALLOC_CONF"),
        ("2.9.0.dev20250801+cu128", "PYTORCH_ALLOC_CONF"),
        ("2.7.1", "PYTORCH_CUDA_ALLOC_CONF"),
    ],
)
def test_allocator_variable_is_the_one_the_installed_torch_reads(
    version: str, variable: str
) -> None:
    assert allocator_variable(TorchInstalled(version, "12.8")) == variable
    p = plan(torch=TorchInstalled(version, "12.8"))
    assert p.env_set[variable] == "expandable_segments:True"
    other = {"PYTORCH_ALLOC_CONF", "PYTORCH_CUDA_ALLOC_CONF"} - {variable}
    assert not other & set(p.env_set)


@pytest.mark.parametrize(
    ("fact_args", "reason"),
    [
        ({"torch": TorchInstalled("2.9.1+cpu", None)}, "CPU build"),
        ({"torch": None}, "not found"),
        ({"platform": "windows"}, "only on Linux"),
    ],
)
def test_allocator_is_left_off_where_it_cannot_help(
    fact_args: dict[str, object], reason: str
) -> None:
    p = plan(**fact_args)
    allocator = p.tuning("allocator")
    assert allocator is not None and allocator.status == "off"
    assert reason in allocator.reason
    assert not {"PYTORCH_ALLOC_CONF", "PYTORCH_CUDA_ALLOC_CONF"} & set(p.env_set)


def test_windows_pipes_utf8_output() -> None:
    assert plan(platform="windows").env_set["PYTHONIOENCODING"] == "utf-8"
    assert "PYTHONIOENCODING" not in plan().env_set


# --- the user's own environment wins -------------------------------------------


def test_user_values_are_never_overwritten() -> None:
    env = {
        "ENABLE_TF32": "0",
        "ENABLE_CUDNN_BENCHMARK": "false",
        "PYTORCH_CUDA_ALLOC_CONF": "max_split_size_mb:512",
        "CUDA_VISIBLE_DEVICES": "1",
    }
    p = plan(env)
    assert statuses(p)["tf32"] == "user"
    assert statuses(p)["cudnn-benchmark"] == "user"
    assert statuses(p)["allocator"] == "user"
    assert "deprecated" in p.tuning("allocator").reason  # type: ignore[union-attr]
    # TF32 off by the user: matmul precision is not turned up behind their back.
    assert statuses(p)["matmul-precision"] == "off"
    assert not set(env) & set(p.env_set)
    assert "PYTORCH_ALLOC_CONF" not in p.env_set
    assert p.user_env == env
    merged = p.environment({**env, "HOME": "/root"})
    assert {k: merged[k] for k in env} == env
    assert merged["COMFY_INSTALL_TUNING"] == "1"  # the shim still applies the user's values


def test_user_matmul_precision_and_alloc_conf_are_kept() -> None:
    p = plan({"MATMUL_PRECISION": "medium", "PYTORCH_ALLOC_CONF": "expandable_segments:False"})
    assert p.tuning("matmul-precision").status == "user"  # type: ignore[union-attr]
    assert "MATMUL_PRECISION" not in p.env_set
    assert "PYTORCH_ALLOC_CONF" not in p.env_set
    assert p.env_set["ENABLE_TF32"] == "1"


def test_empty_values_count_as_unset() -> None:
    p = plan({"ENABLE_TF32": "", "MATMUL_PRECISION": "  "})
    assert p.env_set["ENABLE_TF32"] == "1"
    assert p.user_env == {}


def test_user_can_turn_the_shim_off() -> None:
    p = plan({"COMFY_INSTALL_TUNING": "0"})
    assert statuses(p)["tf32"] == "off"
    assert "COMFY_INSTALL_TUNING=0" in p.tuning("tf32").reason  # type: ignore[union-attr]
    assert "COMFY_INSTALL_TUNING" not in p.env_set
    assert statuses(p)["allocator"] == "on"  # torch reads that one itself


def test_no_tune_sets_nothing_and_adds_nothing() -> None:
    p = plan({"ENABLE_TF32": "maybe", "MATMUL_PRECISION": "fast"}, tune=False)
    assert p.env_set == {}
    assert p.argv == ("/srv/i/venv/bin/python", "-u", "/srv/i/ComfyUI/main.py", "--port", "8188")
    assert set(statuses(p).values()) == {"off"}
    assert not p.needs_shim


# --- invalid values are refused with the allowed ones ------------------------------


@pytest.mark.parametrize(
    ("env", "allowed"),
    [
        ({"MATMUL_PRECISION": "fast"}, "highest, high, medium"),
        ({"TORCH_COMPILE_MODE": "bogus"}, "default, reduce-overhead, max-autotune"),
        ({"ENABLE_TF32": "maybe"}, "1, 0, true, false, yes, no, on, off"),
        ({"ENABLE_STARTUP_WARMUP": "later"}, "1, 0, true, false"),
        ({"TORCH_COMPILE_DYNAMIC": "sometimes"}, "auto"),
        ({"TORCH_COMPILE_BACKEND": "not a name"}, "inductor"),
    ],
)
def test_invalid_values_are_refused_with_the_allowed_ones(
    env: dict[str, str], allowed: str
) -> None:
    with pytest.raises(UsageError) as caught:
        plan(env)
    assert caught.value.exit_code == ExitCode.USAGE
    name, value = next(iter(env.items()))
    assert f"{name}={value}" in caught.value.message
    assert allowed in caught.value.message


def test_every_invalid_value_is_listed_at_once() -> None:
    with pytest.raises(UsageError) as caught:
        validate_settings({"MATMUL_PRECISION": "fast", "ENABLE_CUDNN_BENCHMARK": "2"})
    assert "MATMUL_PRECISION=fast" in caught.value.message
    assert "ENABLE_CUDNN_BENCHMARK=2" in caught.value.message


def test_values_are_read_case_insensitively() -> None:
    p = plan({"ENABLE_TF32": "TRUE", "MATMUL_PRECISION": "High"})
    assert statuses(p)["tf32"] == "user"


def test_no_tune_still_checks_the_warmup_switch() -> None:
    with pytest.raises(UsageError):
        plan({"ENABLE_STARTUP_WARMUP": "later"}, tune=False)
    assert plan({"ENABLE_STARTUP_WARMUP": "0"}, tune=False).warmup is False
    assert plan().warmup is True


# --- ComfyUI's arguments -----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "platform", "expected"),
    [
        ('--foo "a b" --bar', "linux", ("--foo", "a b", "--bar")),
        ("--output-directory '/srv/my out'", "linux", ("--output-directory", "/srv/my out")),
        ("--x a\\ b", "linux", ("--x", "a b")),
        ('--output-directory "C:\\my out\\x" --y', "windows",
         ("--output-directory", "C:\\my out\\x", "--y")),
        ("--base-directory C:\\comfy", "windows", ("--base-directory", "C:\\comfy")),
        ("", "linux", ()),
    ],
)  # fmt: skip
def test_comfy_extra_args_split_like_a_shell(
    text: str, platform: str, expected: tuple[str, ...]
) -> None:
    assert split_extra_args(text, platform) == expected


@pytest.mark.parametrize(
    "argv",
    [
        (),
        ("",),
        (r"C:\Program Files\py.exe", "-u", "main.py"),
        ("a b\\", 'say "hi"', "x\\\\y", "tab\there", 'end\\"', "\\"),
        ('"', '\\"', "  ", "a\\ b\\\\"),
    ],
)
def test_windows_command_line_quotes_like_list2cmdline(argv: tuple[str, ...]) -> None:
    assert join_command_line(argv, "windows") == subprocess.list2cmdline(argv)


def test_unbalanced_quote_in_extra_args_is_refused() -> None:
    with pytest.raises(UsageError) as caught:
        plan({"COMFY_EXTRA_ARGS": '--foo "a b'})
    assert "COMFY_EXTRA_ARGS" in caught.value.message


def test_env_args_come_before_command_line_args() -> None:
    p = plan({"COMFY_EXTRA_ARGS": "--preview-method auto"}, extra=("--lowvram",), cc=None)
    assert p.argv[-3:] == ("--preview-method", "auto", "--lowvram")


def test_port_and_listen_from_comfyui_args_replace_ours() -> None:
    p = plan(extra=("--port", "9001", "--listen"), port=8188, listen="10.0.0.5")
    assert p.argv.count("--port") == 1 and p.argv.count("--listen") == 1
    assert p.port == 9001
    assert p.host == "127.0.0.1"
    assert p.listen_hosts == ("0.0.0.0", "::")
    assert p.url == "http://127.0.0.1:9001"
    with pytest.raises(UsageError):
        plan(extra=("--port", "x"))


def test_listen_option_is_passed_and_polled() -> None:
    p = plan(listen="::1", port=8190)
    assert p.argv[3:5] == ("--listen", "::1")
    assert p.url == "http://[::1]:8190"


def test_cpu_argument_turns_gpu_tunings_off() -> None:
    p = plan(extra=("--cpu",))
    assert statuses(p)["tf32"] == "off" and statuses(p)["allocator"] == "off"
    assert "--cpu" in p.tuning("tf32").reason  # type: ignore[union-attr]


def test_deterministic_turns_the_cudnn_autotuner_off() -> None:
    p = plan(extra=("--deterministic",))
    assert statuses(p)["cudnn-benchmark"] == "off"
    assert "ENABLE_CUDNN_BENCHMARK" not in p.env_set


# --- torch.compile ------------------------------------------------------------------


def test_torch_compile_is_opt_in_with_inductor_defaults() -> None:
    p = plan({"ENABLE_TORCH_COMPILE": "1"}, cc=None)
    assert p.env_set["TORCH_COMPILE_BACKEND"] == "inductor"
    assert p.env_set["TORCH_COMPILE_MODE"] == "reduce-overhead"
    assert p.env_set["COMFY_INSTALL_TUNING"] == "1"
    assert p.needs_shim


def test_torch_compile_mode_only_for_inductor_and_user_values_kept() -> None:
    p = plan({"ENABLE_TORCH_COMPILE": "yes", "TORCH_COMPILE_BACKEND": "cudagraphs"})
    assert "TORCH_COMPILE_BACKEND" not in p.env_set
    assert "TORCH_COMPILE_MODE" not in p.env_set
    assert p.tuning("compile-mode").status == "off"  # type: ignore[union-attr]
    p = plan({"ENABLE_TORCH_COMPILE": "1", "TORCH_COMPILE_MODE": "max-autotune"})
    assert "TORCH_COMPILE_MODE" not in p.env_set
    assert p.tuning("compile-mode").value == "max-autotune"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("env", "extra", "status"),
    [
        ({"ENABLE_TORCH_COMPILE": "1"}, (), "on"),
        ({"ENABLE_TORCH_COMPILE": "1", "TORCH_COMPILE_MODE": "max-autotune"}, (), "on"),
        ({"ENABLE_TORCH_COMPILE": "1", "TORCH_COMPILE_BACKEND": "cudagraphs"}, (), "on"),
        ({"ENABLE_TORCH_COMPILE": "1", "TORCH_COMPILE_MODE": "default"}, (), None),
        ({"ENABLE_TORCH_COMPILE": "1", "TORCH_COMPILE_MODE": "max-autotune-no-cudagraphs"},
         (), None),
        ({"ENABLE_TORCH_COMPILE": "1", "TORCH_COMPILE_BACKEND": "eager"}, (), None),
        ({"ENABLE_TORCH_COMPILE": "1"}, ("--disable-cuda-malloc",), "user"),
        ({"ENABLE_TORCH_COMPILE": "1"}, ("--cuda-malloc",), "off"),
        ({"ENABLE_TORCH_COMPILE": "0"}, (), None),
        ({}, (), None),
    ],
)  # fmt: skip
def test_cuda_graphs_get_the_native_allocator(
    env: dict[str, str], extra: tuple[str, ...], status: str | None
) -> None:
    p = plan(env, extra=extra)
    native = p.tuning("native-allocator")
    assert (native.status if native else None) == status
    expected = 1 if status in ("on", "user") else 0
    assert p.argv.count("--disable-cuda-malloc") == expected
    allocator_reason = p.tuning("allocator").reason  # type: ignore[union-attr]
    assert ("ComfyUI chooses cudaMallocAsync" in allocator_reason) is (expected == 0)
    if status == "off":
        assert "fail under cudaMallocAsync" in native.reason  # type: ignore[union-attr]


def test_no_native_allocator_when_the_shim_cannot_compile() -> None:
    p = plan({"ENABLE_TORCH_COMPILE": "1"}, shim_state="foreign")
    assert p.tuning("native-allocator") is None
    assert "--disable-cuda-malloc" not in p.argv


def test_torch_compile_turned_off_by_user() -> None:
    p = plan({"ENABLE_TORCH_COMPILE": "0"}, cc=None)
    assert not p.needs_shim
    assert p.tuning("compile-backend") is None


# --- the shim --------------------------------------------------------------------------


def test_foreign_shim_turns_in_process_tuning_off() -> None:
    p = plan(shim_state="foreign")
    for name in ("tf32", "cudnn-benchmark", "matmul-precision"):
        tuning = p.tuning(name)
        assert tuning is not None and tuning.status == "off"
        assert "not written by comfy-install" in tuning.reason
    assert not p.needs_shim
    assert "COMFY_INSTALL_TUNING" not in p.env_set
    assert p.env_set["PYTORCH_ALLOC_CONF"] == "expandable_segments:True"


def test_shim_files_are_written_updated_and_foreign_ones_left_alone(tmp_path: Path) -> None:
    site = tmp_path / "site-packages"
    site.mkdir()
    module, pth, router = shim_paths(site)
    assert shim_status(site) == "missing"
    assert ensure_shim(site) == "current"
    assert shim_status(site) == "current"
    assert module.read_text(encoding="utf-8").startswith("# comfy-install runtime tuning shim")
    assert "activate()" in pth.read_text(encoding="utf-8")
    assert router.read_text(encoding="utf-8").startswith("# comfy-install attention router")
    module.write_text(module.read_text(encoding="utf-8") + "\n# older\n", encoding="utf-8")
    assert shim_status(site) == "outdated"
    assert ensure_shim(site) == "current"
    module.write_text("print('mine')\n", encoding="utf-8")
    assert ensure_shim(site) == "foreign"
    assert module.read_text(encoding="utf-8") == "print('mine')\n"
    assert shim_status(tmp_path / "absent") == "unavailable"


def test_shim_activates_only_for_a_tuned_comfyui(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shim, "_ACTIVE", False)
    assert not shim.activate({"ENABLE_TF32": "1"}, ["main.py"])
    assert not shim.activate({"COMFY_INSTALL_TUNING": "1"}, ["-c"])
    assert not shim.activate({"COMFY_INSTALL_TUNING": "0"}, ["/x/ComfyUI/main.py"])
    assert shim.activate({"COMFY_INSTALL_TUNING": "1"}, ["/x/ComfyUI/main.py"])
    assert shim.activate({"COMFY_INSTALL_TUNING": "1"}, ["/x/ComfyUI/main.py"])  # idempotent


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({},
         {"backend": "inductor", "mode": "reduce-overhead", "fullgraph": False, "dynamic": None}),
        ({"TORCH_COMPILE_BACKEND": "eager"},
         {"backend": "eager", "fullgraph": False, "dynamic": None}),
        ({"TORCH_COMPILE_MODE": "max-autotune", "TORCH_COMPILE_FULLGRAPH": "1",
          "TORCH_COMPILE_DYNAMIC": "false"},
         {"backend": "inductor", "mode": "max-autotune", "fullgraph": True, "dynamic": False}),
        ({"TORCH_COMPILE_DYNAMIC": "auto"},
         {"backend": "inductor", "mode": "reduce-overhead", "fullgraph": False, "dynamic": None}),
    ],
)  # fmt: skip
def test_shim_compile_options(env: dict[str, str], expected: dict[str, object]) -> None:
    assert shim.compile_options(env) == expected


# --- output ----------------------------------------------------------------------------


def test_print_env_text_lists_ours_yours_and_the_command() -> None:
    p = plan({"MATMUL_PRECISION": "medium"})
    text = render_print_env(p, facts())
    assert "export ENABLE_TF32=1" in text
    assert "export MATMUL_PRECISION=medium" in text.split("variables you set")[1]
    assert "matmul-precision: yours MATMUL_PRECISION=medium (set by you" in text
    assert text.rstrip().endswith(p.command_line())
    assert "GPU 0: GPU cc 9.0, 24.0 GiB VRAM, compute capability 9.0" in text
    assert p.as_data()["env"] == p.env_set


def test_windows_print_env_uses_set() -> None:
    p = plan(platform="windows")
    assert "set ENABLE_TF32=1" in render_print_env(p, facts(platform="windows"))


# --- ports ------------------------------------------------------------------------------


def test_busy_port_is_detected_and_its_holder_found() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        assert port_in_use("127.0.0.1", port)
        if sys.platform.startswith("linux"):
            found = port_holder(port)
            assert found is not None and found.pid == os.getpid()
            assert found.command and "python" in found.command
    assert not port_in_use("127.0.0.1", port)


def test_output_pump_passes_progress_bars_through_and_keeps_whole_lines() -> None:
    from installer.launch.output import Output, pump

    read_end, write_end = os.pipe()
    os.write(write_end, "step 1/3\rstep 2/3\rstep 3/3\nready ✓\npartial".encode())
    os.close(write_end)
    terminal, log_file, output = io.StringIO(), io.StringIO(), Output()
    with os.fdopen(read_end, "rb") as stream:
        pump(stream, log_file, terminal, output)
    text = "step 1/3\rstep 2/3\rstep 3/3\nready ✓\npartial"
    assert terminal.getvalue() == log_file.getvalue() == text
    assert list(output.tail) == ["step 1/3", "step 2/3", "step 3/3", "ready ✓", "partial"]


def test_compile_caches_are_kept_in_dir_unless_the_user_set_them() -> None:
    # Inductor's default cache lives under /tmp (gone at a reboot): in DIR, a second launch
    # compiles from the first one's (measured on an H100: first run 69.2 s cold, 24.0 s cached).
    p = plan()
    assert p.env_set["TORCHINDUCTOR_CACHE_DIR"] == "/srv/i/.comfy-install/torch-compile/inductor"
    assert p.env_set["TRITON_CACHE_DIR"] == "/srv/i/.comfy-install/torch-compile/triton"
    mine = plan({"TRITON_CACHE_DIR": "/cache/triton"})
    assert statuses(mine)["triton-cache"] == "user"
    assert "TRITON_CACHE_DIR" not in mine.env_set
    assert statuses(plan(cc=None))["inductor-cache"] == "off"
    assert statuses(plan(tune=False))["inductor-cache"] == "off"
