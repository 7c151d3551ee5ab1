"""The attention router of the shim, against a fake `comfy.ldm.modules.attention` (no torch).

The fake module has ComfyUI's names and signatures (`attention_pytorch`,
`attention_sage`, ..., `optimized_attention`, `SAGE_ATTENTION_IS_AVAILABLE`);
each function records that it was called and with what. Tensors are stand-ins
with `.shape`, `.dtype` and `.device`.
"""

from __future__ import annotations

import functools
import json
import sys
import threading
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from installer.attention.shim import router as router
from installer.launch import shim_module as shim

ROUTES = {
    "schema_version": 1,
    "flush_every": 1000,
    "routes": [
        {"head_dim": 128, "dtype": "fp16",
         "bands": [{"min_tokens": 16384, "max_tokens": None, "backend": "sageattention"}]},
        {"head_dim": 64, "dtype": "bf16",
         "bands": [{"min_tokens": 1024, "max_tokens": 4096, "backend": "xformers"},
                   {"min_tokens": 32768, "max_tokens": None, "backend": "sageattention"}]},
    ],
}  # fmt: skip


class Device:
    def __init__(self, kind: str) -> None:
        self.type = kind


class Tensor:
    def __init__(self, *shape: int, dtype: str = "torch.float16", device: str = "cuda") -> None:
        self.shape = shape
        self.dtype = dtype
        self.device = Device(device)
        self.is_cuda = device == "cuda"  # torch's Tensor.is_cuda, read by the router's cache key


class Container:
    """Like ComfyUI v0.33's AttentionTensorContainer."""

    def __init__(self, tensor: Tensor) -> None:
        self.tensor = tensor

    def peek(self) -> Tensor:
        return self.tensor


def wrap_attn(func: Callable[..., Any]) -> Callable[..., Any]:
    """ComfyUI's decorator, reduced to what matters here: functools.wraps."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return func(*args, **kwargs)

    wrapper.container_function = None  # type: ignore[attr-defined]
    return wrapper


def comfy_attention(calls: list[tuple[str, dict[str, Any]]]) -> types.ModuleType:
    """A fake `comfy.ldm.modules.attention` whose functions record their calls."""
    module = types.ModuleType("comfy.ldm.modules.attention")

    def backend(name: str) -> Callable[..., Any]:
        def attention(q, k, v, heads, mask=None, attn_precision=None, skip_reshape=False,
                      skip_output_reshape=False, **kwargs):  # type: ignore[no-untyped-def]  # fmt: skip
            seen = {"mask": mask, "skip_reshape": skip_reshape}
            calls.append((name, {**seen, "skip_output_reshape": skip_output_reshape, **kwargs}))
            return name

        attention.__name__ = name
        return wrap_attn(attention)

    for name in ("attention_pytorch", "attention_sage", "attention_xformers", "attention3_sage",
                 "attention_comfy_kitchen_int8", "attention_basic"):  # fmt: skip
        setattr(module, name, backend(name))
    module.SAGE_ATTENTION_IS_AVAILABLE = True  # type: ignore[attr-defined]
    module.SAGE_ATTENTION3_IS_AVAILABLE = False  # type: ignore[attr-defined]
    module.xformers = types.ModuleType("xformers")  # type: ignore[attr-defined]
    module.optimized_attention = module.attention_pytorch  # type: ignore[attr-defined]
    module.optimized_attention_masked = module.attention_pytorch  # type: ignore[attr-defined]
    return module


@pytest.fixture
def calls() -> list[tuple[str, dict[str, Any]]]:
    return []


@pytest.fixture
def routes_env(tmp_path: Path) -> Callable[..., dict[str, str]]:
    def make(**changes: Any) -> dict[str, str]:
        path = tmp_path / "routes.json"
        path.write_text(json.dumps({**ROUTES, **changes}))
        return {router.ROUTES_ENV: str(path), router.COUNTS_ENV: str(tmp_path / "calls.json")}

    return make


def counts(env: dict[str, str]) -> dict[str, Any]:
    return json.loads(Path(env[router.COUNTS_ENV]).read_text())


def test_each_call_goes_to_the_backend_of_its_band(
    calls: list[tuple[str, dict[str, Any]]], routes_env: Callable[..., dict[str, str]]
) -> None:
    module = comfy_attention(calls)
    env = routes_env()
    message = router.attach(module, env)
    assert message.startswith("attention routing attached to comfy.ldm.modules.attention: ")
    assert "D=128 fp16: attention_sage from 16384 tokens" in message
    assert "calls with a mask: attention_pytorch" in message
    route = module.optimized_attention
    sdxl = Tensor(2, 4096, 640)  # B×N×(H·D): heads 10, D=64
    video = Tensor(1, 32760, 5120)  # heads 40, D=128
    assert route(sdxl, sdxl, sdxl, 10) == "attention_pytorch"
    assert route(video, video, video, 40, transformer_options={"x": 1}) == "attention_sage"
    assert calls[-1][1]["transformer_options"] == {"x": 1}  # everything passes through
    # skip_reshape: B×H×N×D.
    layout = Tensor(1, 40, 32760, 128)
    assert route(layout, layout, layout, 40, skip_reshape=True) == "attention_sage"
    assert calls[-1][1]["skip_reshape"] is True
    # Below the crossover, other dtypes and head dims: SDPA.
    short = Tensor(1, 8192, 5120)
    assert route(short, short, short, 40) == "attention_pytorch"
    bf16 = Tensor(1, 32760, 5120, dtype="torch.bfloat16")
    assert route(bf16, bf16, bf16, 40) == "attention_pytorch"
    fp32 = Tensor(1, 32760, 5120, dtype="torch.float32")
    assert route(fp32, fp32, fp32, 40) == "attention_pytorch"
    # A second band table: bf16 D=64 has two bands.
    small = Tensor(2, 2048, 640, dtype="torch.bfloat16")
    assert route(small, small, small, 10) == "attention_xformers"
    big = Tensor(2, 40000, 640, dtype="torch.bfloat16")
    assert route(big, big, big, 10) == "attention_sage"
    mid = Tensor(2, 8192, 640, dtype="torch.bfloat16")
    assert route(mid, mid, mid, 10) == "attention_pytorch"


def test_masks_cross_attention_and_cpu_tensors(
    calls: list[tuple[str, dict[str, Any]]], routes_env: Callable[..., dict[str, str]]
) -> None:
    module = comfy_attention(calls)
    module.optimized_attention = module.attention_basic  # ComfyUI's own choice
    env = routes_env()
    router.attach(module, env)
    video = Tensor(1, 32760, 5120)
    text = Tensor(1, 512, 5120)
    route = module.optimized_attention
    assert route(video, video, video, 40, "mask") == "attention_basic"  # mask: ComfyUI's choice
    assert route(video, text, text, 40) == "attention_pytorch"  # cross-attention: never measured
    cpu = Tensor(1, 32760, 5120, device="cpu")
    assert route(cpu, cpu, cpu, 40) == "attention_pytorch"
    odd = Tensor(1, 32760, 5120)
    odd.shape = None  # type: ignore[assignment]
    assert route(odd, odd, odd, 40) == "attention_basic"  # unreadable: ComfyUI's own choice
    # The masked entry point routes the same way, and keeps its own choice for masks.
    masked = module.optimized_attention_masked
    assert masked(video, video, video, 40) == "attention_sage"
    assert masked(video, video, video, 40, mask="m") == "attention_pytorch"


def test_containers_are_peeked_and_passed_on(
    calls: list[tuple[str, dict[str, Any]]], routes_env: Callable[..., dict[str, str]]
) -> None:
    module = comfy_attention(calls)
    router.attach(module, routes_env())
    boxed = Container(Tensor(1, 40, 32760, 128))
    assert module.optimized_attention(boxed, boxed, boxed, 40, skip_reshape=True) == (
        "attention_sage"
    )
    assert module.optimized_attention.container_function is None


def test_calls_are_counted_per_backend_and_shape(
    calls: list[tuple[str, dict[str, Any]]], routes_env: Callable[..., dict[str, str]]
) -> None:
    module = comfy_attention(calls)
    env = routes_env(flush_every=3)
    router.attach(module, env)
    first = counts(env)
    assert first["attached"] is True and first["calls"] == {}
    assert first["functions"]["sageattention"] == "attention_sage"
    video, sdxl = Tensor(1, 32760, 5120), Tensor(2, 4096, 640)
    route = module.optimized_attention
    route(video, video, video, 40)
    route(sdxl, sdxl, sdxl, 10)
    assert route.counter.wait()
    assert counts(env)["calls"] == {}  # not yet: every 3 calls
    route(sdxl, sdxl, sdxl, 10, mask="m")
    assert route.counter.wait()  # the writer thread has written them
    seen = counts(env)
    assert seen["calls"] == {"sageattention": 1, "sdpa": 1, "comfyui": 1}
    assert seen["shapes"]["fp16 D=128 N=32760"] == {"sageattention": 1}
    assert seen["shapes"]["fp16 D=64 N=4096"] == {"sdpa": 1}
    route.counter.flush()
    assert counts(env)["pid"] > 0


# --- falling back to ComfyUI's own choice ------------------------------------------------


def test_a_missing_function_leaves_comfyuis_choice(
    calls: list[tuple[str, dict[str, Any]]], routes_env: Callable[..., dict[str, str]]
) -> None:
    module = comfy_attention(calls)
    del module.attention_sage
    del module.xformers  # ComfyUI did not load xformers either
    own = module.optimized_attention
    env = routes_env()
    message = router.attach(module, env)
    assert message.startswith("attention routing not attached (")
    assert "comfy.ldm.modules.attention has no attention_sage" in message
    assert "xformers: ComfyUI did not load it" in message
    assert message.endswith("ComfyUI keeps attention_pytorch")
    assert module.optimized_attention is own
    assert counts(env)["attached"] is False


def test_a_backend_comfyui_did_not_load_is_left_out(
    calls: list[tuple[str, dict[str, Any]]], routes_env: Callable[..., dict[str, str]]
) -> None:
    module = comfy_attention(calls)
    module.SAGE_ATTENTION_IS_AVAILABLE = False
    message = router.attach(module, routes_env())
    # xformers still routes its band; sage's calls stay on SDPA.
    assert "attention routing attached" in message
    assert "left out: sageattention: ComfyUI did not load it" in message
    video = Tensor(1, 32760, 5120)
    assert module.optimized_attention(video, video, video, 40) == "attention_pytorch"


def test_another_signature_is_not_called(
    calls: list[tuple[str, dict[str, Any]]], routes_env: Callable[..., dict[str, str]]
) -> None:
    module = comfy_attention(calls)
    module.attention_pytorch = lambda query, key, value, n: None
    own = module.optimized_attention
    message = router.attach(module, routes_env())
    assert "attention_pytorch is not what the router expects: it takes (query, key, value, n)" in (
        message
    )
    assert module.optimized_attention is own


def test_a_function_with_comfyuis_keywords_in_another_order_gets_each_by_name(
    calls: list[tuple[str, dict[str, Any]]], routes_env: Callable[..., dict[str, str]]
) -> None:
    # The router passes ComfyUI's arguments positionally (no dictionary per call); a
    # function that orders them otherwise must still get mask, skip_reshape, ... by name.
    module = comfy_attention(calls)

    def attention_sage(q, k, v, heads, skip_reshape=False, skip_output_reshape=False,
                       mask=None, attn_precision=None, **kwargs):  # type: ignore[no-untyped-def]  # fmt: skip
        calls.append(("reordered", {"skip_reshape": skip_reshape, "mask": mask,
                                    "skip_output_reshape": skip_output_reshape,
                                    "attn_precision": attn_precision, **kwargs}))  # fmt: skip
        return "reordered"

    module.attention_sage = attention_sage
    router.attach(module, routes_env())
    layout = Tensor(1, 40, 32760, 128)
    route = module.optimized_attention
    assert route(layout, layout, layout, 40, skip_reshape=True, extra=1) == "reordered"
    assert calls[-1] == ("reordered", {"skip_reshape": True, "mask": None,
                                       "skip_output_reshape": False, "attn_precision": None,
                                       "extra": 1})  # fmt: skip
    assert route(layout, layout, layout, 40, None, "fp32", True, True) == "reordered"
    assert calls[-1][1] == {"skip_reshape": True, "mask": None, "skip_output_reshape": True,
                            "attn_precision": "fp32"}  # fmt: skip
    # ComfyUI's own functions, in ComfyUI's order, are called as they are (no adapter).
    assert router.positional(module.attention_pytorch) is module.attention_pytorch


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        ("no optimized_attention", "has no optimized_attention"),
        ("missing table", "the table '/nowhere/routes.json' cannot be read"),
        ("bad table", "not a routing table"),
        ("target override", "has no attention_renamed"),
    ],
)
def test_broken_setups_never_raise(
    calls: list[tuple[str, dict[str, Any]]],
    routes_env: Callable[..., dict[str, str]],
    tmp_path: Path,
    breakage: str,
    expected: str,
) -> None:
    module = comfy_attention(calls)
    env = routes_env()
    if breakage == "no optimized_attention":
        del module.optimized_attention
    elif breakage == "missing table":
        env[router.ROUTES_ENV] = "/nowhere/routes.json"
    elif breakage == "bad table":
        Path(env[router.ROUTES_ENV]).write_text('{"routes": [{"head_dim": "x"}]}')
    else:
        env = routes_env(targets={"sdpa": "attention_renamed"})
    message = router.attach(module, env)
    assert expected in message
    assert "attached to" not in message


@pytest.mark.parametrize("value", ["off", "OFF", " Off ", "0", "false", "False"])
def test_off_attaches_nothing_and_reads_no_file(
    calls: list[tuple[str, dict[str, Any]]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    value: str,
) -> None:
    module = comfy_attention(calls)
    module.optimized_attention = module.attention_basic  # ComfyUI's own choice
    own, masked = module.optimized_attention, module.optimized_attention_masked
    monkeypatch.chdir(tmp_path)
    (tmp_path / value.strip()).write_text(json.dumps(ROUTES))  # a table by that name: not read
    env = {router.ROUTES_ENV: value, router.COUNTS_ENV: str(tmp_path / "calls.json")}
    message = router.attach(module, env)
    assert message == (
        f"attention routing off (COMFY_INSTALL_ATTENTION_ROUTES={value.strip()}); "
        "ComfyUI keeps attention_basic"
    )
    assert module.optimized_attention is own and module.optimized_attention_masked is masked
    video = Tensor(1, 32760, 5120)
    assert module.optimized_attention(video, video, video, 40) == "attention_basic"
    assert counts(env) == {
        "attached": False, "off": True, "message": message, "problems": [],
        "pid": counts(env)["pid"], "calls": {}, "shapes": {},
    }  # fmt: skip


def test_a_table_whose_path_only_looks_like_off_is_read(
    calls: list[tuple[str, dict[str, Any]]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = comfy_attention(calls)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "off").write_text(json.dumps(ROUTES))
    message = router.attach(module, {router.ROUTES_ENV: "./off"})
    assert message.startswith("attention routing attached to comfy.ldm.modules.attention: ")
    assert router.attach(comfy_attention(calls), {router.ROUTES_ENV: "offline.json"}).startswith(
        "attention routing skipped: the table 'offline.json' cannot be read"
    )


# --- the import hook in the shim ----------------------------------------------------------

FAKE_ATTENTION_PY = """
import functools
def wrap_attn(func):
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        return func(*args, **kwargs)
    return wrapper
@wrap_attn
def attention_pytorch(q, k, v, heads, mask=None, attn_precision=None, skip_reshape=False,
                      skip_output_reshape=False, **kwargs):
    return "attention_pytorch"
@wrap_attn
def attention_sage(q, k, v, heads, mask=None, attn_precision=None, skip_reshape=False,
                   skip_output_reshape=False, **kwargs):
    return "attention_sage"
SAGE_ATTENTION_IS_AVAILABLE = True
optimized_attention = attention_pytorch
optimized_attention_masked = optimized_attention
"""

FAKE_MODEL_PY = """
from comfy.ldm.modules.attention import optimized_attention
"""


@pytest.fixture
def fake_comfyui(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    root = tmp_path / "ComfyUI"
    for package in ("comfy", "comfy/ldm", "comfy/ldm/modules", "comfy/ldm/flux"):
        (root / package).mkdir(parents=True)
        (root / package / "__init__.py").write_text("")
    (root / "comfy/ldm/modules/attention.py").write_text(FAKE_ATTENTION_PY)
    (root / "comfy/ldm/flux/math.py").write_text(FAKE_MODEL_PY)
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setitem(sys.modules, shim.ROUTER_MODULE, router)
    monkeypatch.setattr(shim, "_ACTIVE", False)
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))
    yield root
    for name in [n for n in sys.modules if n == "comfy" or n.startswith("comfy.")]:
        del sys.modules[name]


def test_the_shim_attaches_before_model_modules_bind_optimized_attention(
    fake_comfyui: Path,
    routes_env: Callable[..., dict[str, str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    env = {**routes_env(), "COMFY_INSTALL_TUNING": "1"}
    assert shim.activate(env, ["/x/ComfyUI/main.py"])
    from comfy.ldm.flux import math  # type: ignore[import-not-found]

    assert math.optimized_attention.__name__ == "comfy_install_attention_router"
    video = Tensor(1, 32760, 5120)
    assert math.optimized_attention(video, video, video, 40) == "attention_sage"
    assert "comfy-install tuning: attention routing attached" in capsys.readouterr().err


def test_without_a_routing_table_the_shim_leaves_attention_alone(fake_comfyui: Path) -> None:
    assert shim.activate({"COMFY_INSTALL_TUNING": "1"}, ["/x/ComfyUI/main.py"])
    from comfy.ldm.flux import math

    assert math.optimized_attention.__name__ == "attention_pytorch"


def test_under_torch_compile_the_router_is_traced_uncounted_and_routes_the_same(
    calls: list[tuple[str, dict[str, Any]]],
    routes_env: Callable[..., dict[str, str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Traced by dynamo, the router's counters and cache would be guarded Python state: every
    # counted call would recompile the model; run outside the graph (compiler.disable) each
    # attention call would break it (140 breaks a step on SDXL). Under compile it must pick
    # the same backend from the shapes alone, touch no counter, and never call disable.
    state = {"compiling": False, "disabled": 0}

    def disable(function: Callable[..., Any]) -> Callable[..., Any]:
        state["disabled"] += 1
        return function

    fake_torch = types.ModuleType("torch")
    fake_torch.compiler = types.SimpleNamespace(  # type: ignore[attr-defined]
        is_compiling=lambda: state["compiling"], disable=disable
    )
    monkeypatch.setitem(sys.modules, "torch", fake_torch)
    module = comfy_attention(calls)
    env = routes_env(flush_every=1)
    router.attach(module, env)
    route = module.optimized_attention
    assert route.__name__ == "comfy_install_attention_router"
    video, image = Tensor(1, 32760, 5120), Tensor(2, 4096, 640)
    assert route(video, video, video, 40) == "attention_sage"
    state["compiling"] = True
    assert route(video, video, video, 40, transformer_options={"x": 1}) == "attention_sage"
    assert calls[-1][1]["transformer_options"] == {"x": 1}
    assert route(image, image, image, 10) == "attention_pytorch"  # no band: SDPA
    assert route(video, video, video, 40, "mask") == "attention_pytorch"  # masked: ComfyUI's
    assert state["disabled"] == 0  # no graph break
    assert route.counter.wait()
    assert counts(env)["calls"] == {"sageattention": 1}  # the eager call only
    state["compiling"] = False
    assert route(video, video, video, 40) == "attention_sage"
    assert route.counter.wait()
    assert counts(env)["calls"] == {"sageattention": 2}
    # Without torch.compiler (old torch) the router is the plain one.
    assert router.compiler_hooks(types.ModuleType("torch")) is None


def test_the_counters_are_written_by_a_thread_never_by_the_call(tmp_path: Path) -> None:
    # A write every flush_every calls on the caller's thread stalled that call on the disk
    # (2 ms on an overlay /tmp: 4 µs a call at 500 calls a write, more than the router).
    writers: list[str] = []

    class Watched(router.Counter):
        def _write(self) -> None:
            writers.append(threading.current_thread().name)
            super()._write()

    path = tmp_path / "calls.json"
    counter = Watched(str(path), flush_every=2)
    slot = counter.slot("sdpa", "fp16 D=64 N=1024")
    for _ in range(6):  # three requests in a row: one or two writes, none on this thread
        slot[0] += 1
        counter.tick()
    assert counter.wait()
    assert json.loads(path.read_text())["calls"] == {"sdpa": 6}
    assert writers and set(writers) == {"comfy-install-attention-counts"}
    assert len(writers) <= 2  # requests faster than WRITE_INTERVAL share a write
    counter.flush()  # at exit: written at once, by the caller
    assert writers[-1] == threading.current_thread().name
