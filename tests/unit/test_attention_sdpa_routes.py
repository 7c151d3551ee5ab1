"""The router's SDPA back-end routes and its per-shape cache, on a stand-in torch (no GPU).

The stand-in torch has what `sdpa_backend_function` touches: `SDPBackend`,
`sdpa_kernel` (a context manager that records what it was entered with and keeps
SDPA's current back ends and priority like torch's global context) and
`scaled_dot_product_attention`, which records the back-end order it ran under
and the shapes it was given. Tensors are stand-ins with `.shape`, `.reshape` and
`.transpose`.
"""

from __future__ import annotations

import contextlib
import enum
import json
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from installer.attention.shim import router as router
from installer.attention.shim import sdpa as shim_sdpa
from support.shape_tensor import ShapeTensor as Tensor


def comfy_attention(calls: list[tuple[str, dict[str, Any]]]) -> types.ModuleType:
    """A fake `comfy.ldm.modules.attention` (ComfyUI's names and signatures) recording calls."""
    module = types.ModuleType("comfy.ldm.modules.attention")

    def backend(name: str) -> Any:
        def attention(q, k, v, heads, mask=None, attn_precision=None, skip_reshape=False,
                      skip_output_reshape=False, **kwargs):  # type: ignore[no-untyped-def]  # fmt: skip
            calls.append((name, {"mask": mask, "skip_reshape": skip_reshape, **kwargs}))
            return name

        attention.__name__ = name
        return attention

    for name in ("attention_pytorch", "attention_sage", "attention_basic"):
        setattr(module, name, backend(name))
    module.SAGE_ATTENTION_IS_AVAILABLE = True  # type: ignore[attr-defined]
    module.optimized_attention = module.attention_pytorch  # type: ignore[attr-defined]
    module.optimized_attention_masked = module.attention_pytorch  # type: ignore[attr-defined]
    return module


class FakeTorch:
    """The parts of torch the SDPA routes use, with torch's global SDPA state."""

    def __init__(self) -> None:
        self.order: list[str] = [
            "FLASH_ATTENTION",
            "EFFICIENT_ATTENTION",
            "MATH",
            "CUDNN_ATTENTION",
        ]
        self.entered: list[tuple[list[str], bool]] = []
        self.ran: list[tuple[str, tuple[int, ...]]] = []
        self.refuse: set[str] = set()
        backend = enum.Enum("SDPBackend", ["FLASH_ATTENTION", "EFFICIENT_ATTENTION", "MATH",
                                           "CUDNN_ATTENTION"])  # fmt: skip
        fake = self

        @contextlib.contextmanager
        def sdpa_kernel(backends: list[Any], set_priority: bool = False) -> Iterator[None]:
            names = [b.name for b in backends]
            fake.entered.append((names, set_priority))
            previous = fake.order
            fake.order = names if set_priority else [n for n in previous if n in names]
            try:
                yield
            finally:
                fake.order = previous

        def sdpa(q: Tensor, k: Tensor, v: Tensor, **kwargs: Any) -> Tensor:
            usable = [n for n in fake.order if n not in fake.refuse]
            if not usable:
                raise RuntimeError("No available kernel")
            fake.ran.append((usable[0], q.shape))
            return Tensor(*q.shape, dtype=q.dtype)

        self.module = types.ModuleType("torch")
        nn = types.ModuleType("torch.nn")
        attention = types.ModuleType("torch.nn.attention")
        attention.SDPBackend = backend  # type: ignore[attr-defined]
        attention.sdpa_kernel = sdpa_kernel  # type: ignore[attr-defined]
        nn.functional = types.SimpleNamespace(scaled_dot_product_attention=sdpa)  # type: ignore[attr-defined]
        nn.attention = attention  # type: ignore[attr-defined]
        self.module.nn = nn  # type: ignore[attr-defined]
        self.modules = {"torch": self.module, "torch.nn": nn, "torch.nn.attention": attention}


@pytest.fixture
def torch(monkeypatch: pytest.MonkeyPatch) -> FakeTorch:
    fake = FakeTorch()
    for name, module in fake.modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(shim_sdpa, "_HELD", [])
    return fake


def test_the_cudnn_route_puts_cudnn_first_once_and_calls_sdpa_without_a_context(
    torch: FakeTorch,
) -> None:
    calls: list[tuple[str, dict[str, Any]]] = []
    module = comfy_attention(calls)
    first = router.sdpa_backend_function(module, "cudnn")
    router.sdpa_backend_function(module, "cudnn")
    assert torch.entered == [(list(shim_sdpa.CUDNN_FIRST), True)]  # held once, for the process

    out = first(Tensor(2, 4096, 640), Tensor(2, 4096, 640), Tensor(2, 4096, 640), 10)

    assert torch.ran == [("CUDNN_ATTENTION", (2, 10, 4096, 64))]  # ComfyUI's B×H×N×D reshape
    assert out.shape == (2, 4096, 640)
    assert len(torch.entered) == 1 and calls == []  # no context per call, ComfyUI's not called
    out = first(*(Tensor(1, 24, 4608, 128) for _ in range(3)), 24, skip_reshape=True,
                skip_output_reshape=True)  # fmt: skip
    assert out.shape == (1, 24, 4608, 128) and torch.ran[-1][1] == (1, 24, 4608, 128)


def test_calls_the_route_cannot_take_go_to_comfyuis_own_sdpa(torch: FakeTorch) -> None:
    calls: list[tuple[str, dict[str, Any]]] = []
    route = router.sdpa_backend_function(comfy_attention(calls), "cudnn")
    q = Tensor(2, 1024, 1280)
    override = {"optimized_attention_override": object()}
    route(q, q, q, 20, mask="mask")
    route(q, q, q, 20, enable_gqa=True)
    route(q, q, q, 20, transformer_options=override)
    assert [name for name, _ in calls] == ["attention_pytorch"] * 3
    assert calls[0][1]["mask"] == "mask" and torch.ran == []


def test_a_pinned_route_pins_per_call_and_falls_back_when_refused(torch: FakeTorch) -> None:
    calls: list[tuple[str, dict[str, Any]]] = []
    route = router.sdpa_backend_function(comfy_attention(calls), "efficient")
    q = Tensor(2, 1024, 1280)
    route(q, q, q, 20)
    assert torch.entered == [(["EFFICIENT_ATTENTION"], False)]
    assert torch.ran == [("EFFICIENT_ATTENTION", (2, 20, 1024, 64))]
    torch.refuse.add("EFFICIENT_ATTENTION")
    route(q, q, q, 20)
    assert [name for name, _ in calls] == ["attention_pytorch"]


def test_a_torch_without_set_priority_leaves_the_cudnn_route_out(
    torch: FakeTorch, tmp_path: Path
) -> None:
    @contextlib.contextmanager
    def old_kernel(backends: list[Any]) -> Iterator[None]:  # torch < 2.6: no set_priority
        yield

    torch.modules["torch.nn.attention"].sdpa_kernel = old_kernel  # type: ignore[attr-defined]
    path = tmp_path / "routes.json"
    path.write_text(json.dumps({"routes": [{"head_dim": 64, "dtype": "fp16", "bands": [
        {"min_tokens": 0, "max_tokens": None, "backend": "cudnn"}]}]}))  # fmt: skip
    calls: list[tuple[str, dict[str, Any]]] = []
    module = comfy_attention(calls)
    message = router.attach(module, {router.ROUTES_ENV: str(path)})
    assert "not attached" in message and "cudnn" in message
    assert module.optimized_attention is module.attention_pytorch


def routed_module(
    tmp_path: Path, calls: list[tuple[str, dict[str, Any]]], registry: bool
) -> tuple[types.ModuleType, dict[str, str], str]:
    path = tmp_path / "routes.json"
    path.write_text(json.dumps({"flush_every": 10_000, "routes": [
        {"head_dim": 64, "dtype": "fp16", "bands": [
            {"min_tokens": 0, "max_tokens": 16384, "backend": "cudnn"},
            {"min_tokens": 16384, "max_tokens": None, "backend": "sageattention"}]}]}))  # fmt: skip
    module = comfy_attention(calls)
    if registry:
        module.REGISTERED_ATTENTION_FUNCTIONS = {}  # type: ignore[attr-defined]

        def register(name: str, func: Any) -> None:
            module.REGISTERED_ATTENTION_FUNCTIONS.setdefault(name, func)  # type: ignore[attr-defined]

        module.register_attention_function = register  # type: ignore[attr-defined]
    env = {router.ROUTES_ENV: str(path), router.COUNTS_ENV: str(tmp_path / "calls.json")}
    return module, env, router.attach(module, env)


def test_attach_routes_to_cudnn_and_registers_in_comfyuis_registry(
    torch: FakeTorch, tmp_path: Path
) -> None:
    calls: list[tuple[str, dict[str, Any]]] = []
    module, env, message = routed_module(tmp_path, calls, registry=True)
    assert "attention_sdpa_cudnn from 0 to 16384 tokens" in message
    assert "registered as 'comfy_install'" in message
    assert module.REGISTERED_ATTENTION_FUNCTIONS["comfy_install"] is module.optimized_attention  # type: ignore[attr-defined]
    short, long = Tensor(2, 4096, 640), Tensor(1, 32768, 640)
    module.optimized_attention(short, short, short, 10)
    module.optimized_attention(long, long, long, 10)
    assert torch.ran == [("CUDNN_ATTENTION", (2, 10, 4096, 64))]
    assert [name for name, _ in calls] == ["attention_sage"]
    module.optimized_attention.counter.flush()
    written = json.loads(Path(env[router.COUNTS_ENV]).read_text())
    assert written["calls"] == {"cudnn": 1, "sageattention": 1}


def test_without_a_registry_the_module_patch_alone_routes(torch: FakeTorch, tmp_path: Path) -> None:
    module, _, message = routed_module(tmp_path, [], registry=False)
    assert "registered" not in message
    assert module.optimized_attention.__name__ == "comfy_install_attention_router"


def test_the_router_decides_once_per_shape(
    torch: FakeTorch, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    decided: list[tuple[int, ...]] = []
    real = router.call_shape

    def counting(q: Any, k: Any, heads: Any, skip_reshape: bool) -> Any:
        decided.append(q.shape)
        return real(q, k, heads, skip_reshape)

    monkeypatch.setattr(router, "call_shape", counting)
    calls: list[tuple[str, dict[str, Any]]] = []
    module, _, _ = routed_module(tmp_path, calls, registry=False)
    short, long = Tensor(2, 4096, 640), Tensor(1, 32768, 640)
    for _ in range(50):
        module.optimized_attention(short, short, short, 10)
        module.optimized_attention(long, long, long, 10)
    assert decided == [(2, 4096, 640), (1, 32768, 640)]  # one decision per shape
    counter = module.optimized_attention.counter
    assert counter.calls == {"cudnn": 50, "sageattention": 50}
    assert counter.shapes == {"fp16 D=64 N=4096": {"cudnn": 50},
                              "fp16 D=64 N=32768": {"sageattention": 50}}  # fmt: skip
    module.optimized_attention(short, short, short, 10, mask="m")  # masked: ComfyUI's own
    assert counter.calls["comfyui"] == 1 and len(decided) == 2
    assert len(module.optimized_attention.decided) == 2
