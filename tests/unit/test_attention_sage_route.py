"""The ``sage_per_warp`` route: its reshapes, its fallbacks, the router and `tune` (no GPU).

A stand-in `sageattention` records every call of `sageattn_qk_int8_pv_fp8_cuda_sm90` (the
shapes and keywords it was given) and a stand-in torch has the dtypes and the
`torch.cuda` calls the route asks (whether there is a GPU, its compute capability).
Tensors are stand-ins with `.shape`, `.dtype`, `.device`, `.reshape` and `.transpose`.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from installer.attention.measure import attention_comfyui
from installer.attention.measure.attention_backends import SAGE_MIN_TOKENS
from installer.attention.measure.results import TOLERANCES
from installer.attention.rules.records import backend_label
from installer.attention.shim import router, sage
from support.shape_tensor import ShapeTensor as Tensor


class FakeTorch(types.ModuleType):
    """torch's dtypes (as the strings `str(tensor.dtype)` gives) and its `cuda` questions."""

    def __init__(self, cc: tuple[int, int] = (9, 0), cuda: bool = True) -> None:
        super().__init__("torch")
        self.float16, self.bfloat16 = "torch.float16", "torch.bfloat16"
        self.cuda = types.SimpleNamespace(
            is_available=lambda: cuda, get_device_capability=lambda: cc
        )


def fake_sageattention(
    calls: list[tuple[tuple[int, ...], dict[str, Any]]], refuse: bool = False
) -> types.ModuleType:
    module = types.ModuleType("sageattention")

    def kernel(q: Tensor, k: Tensor, v: Tensor, **kwargs: Any) -> Tensor:
        calls.append((q.shape, kwargs))
        if refuse:
            raise AssertionError("Last dim of qkv must be contiguous.")
        return Tensor(*q.shape, dtype=q.dtype)

    module.sageattn = kernel  # type: ignore[attr-defined]
    module.sageattn_qk_int8_pv_fp8_cuda_sm90 = kernel  # type: ignore[attr-defined]
    return module


def comfy_attention(calls: list[str], sage_loaded: bool = True) -> types.ModuleType:
    """A stand-in `comfy.ldm.modules.attention` whose functions record their name and return it."""
    module = types.ModuleType("comfy.ldm.modules.attention")

    def backend(name: str) -> Any:
        def attention(q, k, v, heads, mask=None, attn_precision=None, skip_reshape=False,
                      skip_output_reshape=False, **kwargs):  # type: ignore[no-untyped-def]  # fmt: skip
            calls.append(name)
            return name

        attention.__name__ = name
        return attention

    for name in ("attention_pytorch", "attention_sage"):
        setattr(module, name, backend(name))
    module.SAGE_ATTENTION_IS_AVAILABLE = sage_loaded  # type: ignore[attr-defined]
    module.optimized_attention = module.attention_pytorch  # type: ignore[attr-defined]
    return module


def test_the_route_calls_the_per_warp_kernel_with_comfyuis_reshapes() -> None:
    kernel: list[tuple[tuple[int, ...], dict[str, Any]]] = []
    own: list[str] = []
    route = sage.sage_per_warp_function(
        comfy_attention(own), fake_sageattention(kernel), FakeTorch()
    )
    wan = [Tensor(2, 14040, 12 * 128) for _ in range(3)]

    out = route(*wan, 12)
    assert out.shape == (2, 14040, 1536)  # back to ComfyUI's (B, N, H·D)
    shape, options = kernel[-1]
    assert shape == (2, 14040, 12, 128)  # (B, N, H, D): the kernel's NHD layout, no copy
    assert options == {"tensor_layout": "NHD", "is_causal": False, "qk_quant_gran": "per_warp",
                       "sm_scale": None, "smooth_k": True}  # fmt: skip
    assert route(*wan, 12, skip_output_reshape=True).shape == (2, 12, 14040, 128)

    heads = [Tensor(1, 40, 32760, 128, dtype="torch.bfloat16") for _ in range(3)]
    assert route(*heads, 40, skip_reshape=True).shape == (1, 32760, 5120)
    assert kernel[-1][0] == (1, 40, 32760, 128) and kernel[-1][1]["tensor_layout"] == "HND"
    out = route(*heads, 40, skip_reshape=True, skip_output_reshape=True, scale=0.1)
    assert out.shape == (1, 40, 32760, 128) and kernel[-1][1]["sm_scale"] == 0.1
    assert own == []  # ComfyUI's functions were never needed


class CompilingTorch(FakeTorch):
    """A stand-in torch with `torch.compiler.is_compiling` and `torch.library.custom_op`."""

    def __init__(self) -> None:
        super().__init__()
        self.compiling = False
        self.registered: list[tuple[str, str]] = []
        self.op_calls: list[tuple[tuple[int, ...], str, Any]] = []
        self.compiler = types.SimpleNamespace(is_compiling=lambda: self.compiling)
        self.library = types.SimpleNamespace(custom_op=self.custom_op)

    def custom_op(self, name: str, function: Any, mutates_args: Any, schema: str) -> Any:
        self.registered.append((name, schema))

        def op(q: Tensor, k: Tensor, v: Tensor, layout: str, sm_scale: Any) -> Tensor:
            self.op_calls.append((q.shape, layout, sm_scale))
            return Tensor(*q.shape, dtype=q.dtype)

        op.register_fake = lambda fake: fake  # type: ignore[attr-defined]
        return op


def test_under_compile_the_route_calls_the_kernel_through_its_custom_op() -> None:
    kernel: list[tuple[tuple[int, ...], dict[str, Any]]] = []
    torch = CompilingTorch()
    sageattention = fake_sageattention(kernel)
    route = sage.sage_per_warp_function(comfy_attention([]), sageattention, torch)
    again = sage.sage_per_warp_function(comfy_attention([]), sageattention, torch)
    assert len(torch.registered) == 1  # one op per kernel, however often a route is built
    assert torch.registered[0][0].startswith("comfy_install::sage_per_warp_")
    assert torch.registered[0][1] == sage.OP_SCHEMA
    wan = [Tensor(2, 14040, 12 * 128) for _ in range(3)]

    assert route(*wan, 12).shape == (2, 14040, 1536)  # eager: the kernel itself
    assert len(kernel) == 1 and torch.op_calls == []

    torch.compiling = True
    assert route(*wan, 12, scale=0.1).shape == (2, 14040, 1536)
    assert again(*wan, 12, skip_output_reshape=True).shape == (2, 12, 14040, 128)
    assert torch.op_calls == [((2, 14040, 12, 128), "NHD", 0.1), ((2, 14040, 12, 128), "NHD", None)]
    assert len(kernel) == 1  # SageAttention's Python was not entered while compiling
    wide = [Tensor(1, 4096, 10 * 256) for _ in range(3)]
    own: list[str] = []
    assert sage.sage_per_warp_function(comfy_attention(own), sageattention, torch)(*wide, 10) == (
        "attention_sage"
    )  # over the kernel's head dims: ComfyUI's own, compiling or not


def test_a_torch_that_refuses_the_op_leaves_the_route_calling_the_kernel() -> None:
    kernel: list[tuple[tuple[int, ...], dict[str, Any]]] = []
    torch = CompilingTorch()

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise TypeError("custom_op() got an unexpected keyword argument 'schema'")

    torch.library = types.SimpleNamespace(custom_op=refuse)
    torch.compiling = True
    route = sage.sage_per_warp_function(comfy_attention([]), fake_sageattention(kernel), torch)
    assert route(*[Tensor(2, 14040, 1536) for _ in range(3)], 12).shape == (2, 14040, 1536)
    assert len(kernel) == 1  # the kernel itself, as before the op existed


@pytest.mark.parametrize(
    ("call", "kwargs"),
    [
        ((Tensor(2, 4096, 640),), {"mask": "mask"}),
        ((Tensor(2, 4096, 640),), {"enable_gqa": True}),
        ((Tensor(2, 4096, 640),), {"low_precision_attention": False}),
        ((Tensor(2, 4096, 640),), {"transformer_options": {"optimized_attention_override": 1}}),
        ((Tensor(2, 4096, 640, dtype="torch.float32"),), {}),
        ((Tensor(2, 4096, 640, device="cpu"),), {}),
        ((Tensor(1, 4096, 10 * 256),), {}),  # head dim 256: the kernel refuses over 128
        ((Tensor(2, 4096, 640),), {"refuse": True}),  # the kernel raises
    ],
    ids=["mask", "gqa", "full-precision", "override", "fp32", "cpu", "head-dim-256", "refused"],
)
def test_calls_the_route_cannot_take_go_to_comfyuis_own_sage(
    call: tuple[Tensor], kwargs: dict[str, Any]
) -> None:
    own: list[str] = []
    kernel = fake_sageattention([], refuse=bool(kwargs.pop("refuse", False)))
    route = sage.sage_per_warp_function(comfy_attention(own), kernel, FakeTorch())
    q = call[0]
    assert route(q, q, q, 10, **kwargs) == "attention_sage"
    assert own == ["attention_sage"]


def test_a_container_goes_to_comfyuis_own_and_without_its_sage_to_pytorch() -> None:
    class Container:
        shape = (2, 4096, 640)

        def peek(self) -> Tensor:
            return Tensor(2, 4096, 640)

    own: list[str] = []
    kernel: list[tuple[tuple[int, ...], dict[str, Any]]] = []
    route = sage.sage_per_warp_function(
        comfy_attention(own, sage_loaded=False), fake_sageattention(kernel), FakeTorch()
    )
    box = Container()
    assert route(box, box, box, 10) == "attention_pytorch"  # ComfyUI did not load SageAttention
    assert route(Tensor(2, 4096, 640), Tensor(2, 4096, 640), Tensor(2, 4096, 640), 10,
                 mask="m") == "attention_pytorch"  # fmt: skip
    assert kernel == []


def no_kernel() -> types.ModuleType:
    module = fake_sageattention([])
    del module.sageattn_qk_int8_pv_fp8_cuda_sm90
    return module


@pytest.mark.parametrize(
    ("sageattention", "torch", "problem"),
    [
        (lambda: fake_sageattention([]), lambda: FakeTorch((9, 0)), None),
        (lambda: fake_sageattention([]), lambda: FakeTorch((8, 9)), "cc 8.9"),
        (lambda: fake_sageattention([]), lambda: FakeTorch((10, 0)), "cc 10.0"),
        (lambda: fake_sageattention([]), lambda: FakeTorch(cuda=False), "no CUDA GPU"),
        (no_kernel, lambda: FakeTorch((9, 0)), "has no sageattn_qk_int8_pv_fp8_cuda_sm90"),
        (lambda: None, lambda: FakeTorch((9, 0)), "cannot be imported"),
    ],
    ids=["h100", "ada", "blackwell", "no-gpu", "older-sageattention", "no-sageattention"],
)
def test_the_route_exists_only_on_cc_9_0_with_the_kernel(
    sageattention: Any, torch: Any, problem: str | None
) -> None:
    found = sage.sage_problem(sageattention(), torch())
    if problem is None:
        assert found is None
        assert callable(sage.sage_per_warp_function(comfy_attention([]), sageattention(), torch()))
    else:
        assert found is not None and problem in found
        with pytest.raises(RuntimeError, match=problem):
            sage.sage_per_warp_function(comfy_attention([]), sageattention(), torch())


@pytest.fixture
def installed(monkeypatch: pytest.MonkeyPatch) -> list[tuple[tuple[int, ...], dict[str, Any]]]:
    """torch (an H100) and SageAttention 2.2 as ComfyUI's process would have them imported."""
    kernel: list[tuple[tuple[int, ...], dict[str, Any]]] = []
    monkeypatch.setitem(sys.modules, "torch", FakeTorch((9, 0)))
    monkeypatch.setitem(sys.modules, "sageattention", fake_sageattention(kernel))
    return kernel


def routes_file(tmp_path: Path) -> Path:
    path = tmp_path / "routes.json"
    path.write_text(json.dumps({"flush_every": 10_000, "routes": [
        {"head_dim": 128, "dtype": "fp16", "bands": [
            {"min_tokens": 12288, "max_tokens": None, "backend": "sage_per_warp"}]}]}))  # fmt: skip
    return path


def test_the_router_sends_a_routed_shape_to_the_per_warp_kernel(
    installed: list[tuple[tuple[int, ...], dict[str, Any]]], tmp_path: Path
) -> None:
    own: list[str] = []
    module = comfy_attention(own)
    message = router.attach(module, {router.ROUTES_ENV: str(routes_file(tmp_path))})
    assert "attached" in message and "attention_sage_per_warp" in message, message

    wan = [Tensor(2, 14040, 1536) for _ in range(3)]
    assert module.optimized_attention(*wan, 12).shape == (2, 14040, 1536)
    assert installed[-1][0] == (2, 14040, 12, 128)
    assert installed[-1][1]["qk_quant_gran"] == "per_warp"
    short = [Tensor(2, 4096, 1536) for _ in range(3)]
    assert module.optimized_attention(*short, 12) == "attention_pytorch"  # below the band
    assert len(installed) == 1 and own == ["attention_pytorch"]


def test_on_another_gpu_the_router_leaves_the_route_out_and_says_why(
    installed: list[tuple[tuple[int, ...], dict[str, Any]]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "torch", FakeTorch((8, 9)))
    module = comfy_attention([])
    message = router.attach(module, {router.ROUTES_ENV: str(routes_file(tmp_path))})
    assert "not attached" in message
    assert "sage_per_warp: its function cannot be built here (the GPU is cc 8.9" in message
    assert module.optimized_attention is module.attention_pytorch


@pytest.fixture
def versions(monkeypatch: pytest.MonkeyPatch) -> None:
    """The venv's distributions as tune's measuring module reads them (2.2.0 installed)."""
    found = {"torch": "2.11.0", "sageattention": "2.2.0"}
    monkeypatch.setattr(
        attention_comfyui, "package_versions", lambda names: {n: found.get(n) for n in names}
    )


@pytest.mark.usefixtures("versions")
@pytest.mark.parametrize(
    ("cc", "kernel", "reason"),
    [
        ((9, 0), True, None),
        ((8, 9), True, "RuntimeError: the GPU is cc 8.9, the kernel needs cc 9.0"),
        (
            (9, 0),
            False,
            "RuntimeError: this sageattention has no sageattn_qk_int8_pv_fp8_cuda_sm90",
        ),
    ],
    ids=["h100", "ada", "older-sageattention"],
)
def test_tune_offers_the_candidate_only_on_cc_9_0_with_the_kernel(
    monkeypatch: pytest.MonkeyPatch, cc: tuple[int, int], kernel: bool, reason: str | None
) -> None:
    monkeypatch.setitem(sys.modules, "torch", FakeTorch(cc))
    monkeypatch.setitem(
        sys.modules, "sageattention", fake_sageattention([]) if kernel else no_kernel()
    )
    usable, report = attention_comfyui.comfyui_backends(
        comfy_attention([]), ["sdpa", "sage_per_warp"], router.TARGETS, router.LOADED
    )
    line = report[1]
    assert line["name"] == "sage_per_warp" and line["version"] == "2.2.0"
    assert line["function"] == "attention_sage_per_warp"
    assert line["reason"] == reason and line["available"] is (reason is None)
    if reason is None:
        assert usable["sage_per_warp"].min_tokens == SAGE_MIN_TOKENS == 12288
        assert usable["sdpa"].min_tokens == 0  # every other backend at every shape
        wan = usable["sage_per_warp"].prepare(*(Tensor(2, 12, 14040, 128) for _ in range(3)))
        assert usable["sage_per_warp"].call(wan).shape == (2, 14040, 1536)
    else:
        assert "sage_per_warp" not in usable


def test_without_sageattention_tune_reports_the_candidate_not_installed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "torch", FakeTorch((9, 0)))
    monkeypatch.setitem(sys.modules, "sageattention", None)  # import fails
    monkeypatch.setattr(attention_comfyui, "package_versions", lambda names: dict.fromkeys(names))
    usable, report = attention_comfyui.comfyui_backends(
        comfy_attention([]), ["sage_per_warp"], router.TARGETS, router.LOADED
    )
    assert usable == {} and report[0]["reason"] == "not installed"


def test_the_candidate_is_judged_like_sageattention_and_named_for_people() -> None:
    for dtype in ("fp16", "bf16"):
        assert TOLERANCES[("sage_per_warp", dtype)] == TOLERANCES[("sageattention", dtype)]
    assert backend_label("sage_per_warp", "2.2.0") == "SageAttention 2 per-warp (sm90) 2.2.0"


class Measured:
    """A stand-in tensor for the measuring loop: it only has to be finite and comparable."""

    def float(self) -> Measured:
        return self

    def all(self) -> Measured:
        return self

    def item(self) -> bool:
        return True


class MeasuringTorch(types.ModuleType):
    """The torch calls `run_shape` makes on the CPU: dtypes, a generator, random inputs."""

    def __init__(self) -> None:
        super().__init__("torch")
        self.float16, self.bfloat16 = "torch.float16", "torch.bfloat16"
        self.Generator = lambda device: types.SimpleNamespace(manual_seed=lambda seed: None)
        self.randn = lambda size, **kwargs: Measured()
        self.isfinite = lambda tensor: tensor


def test_the_measuring_loop_times_the_candidate_only_from_its_length() -> None:
    from installer.attention.measure.attention_backends import Backend
    from installer.attention.measure.attention_module import Shape, Timer, run_shape

    torch = MeasuringTorch()
    called: list[str] = []

    def backend(name: str, least: int) -> Backend:
        return Backend(name, lambda q, k, v: (q,), lambda a: called.append(name) or Measured(),
                       lambda out: out, least)  # fmt: skip

    backends = {"sageattention": backend("sageattention", 0),
                "sage_per_warp": backend("sage_per_warp", SAGE_MIN_TOKENS)}  # fmt: skip
    settings = {"seed": 0, "warmup": 1, "iterations": 3, "budget_s": 1.0}
    seen = {}
    for tokens in (8192, 12288, 14040):
        shape = Shape(f"n{tokens}-d128", "tune", "", 1, tokens, 24, 128)
        rows = run_shape(torch, shape, "fp16", backends, Timer(torch, False), settings)
        seen[tokens] = [(row["backend"], row["status"]) for row in rows]
    assert seen[8192] == [("sageattention", "ok")]  # no row at all below its length
    assert seen[12288] == seen[14040] == [("sageattention", "ok"), ("sage_per_warp", "ok")]


def test_a_sageattention_the_proof_found_broken_takes_the_per_warp_route_with_it() -> None:
    from installer.attention.rules.routing import route_table
    from support.attention import h200_calibration

    calibration = h200_calibration()
    tables = [
        table.model_copy(
            update={"bands": [b.model_copy(update={"backend": "sage_per_warp"})
                              if b.backend == "sageattention" else b for b in table.bands]}
        )
        for table in calibration.tables
    ]  # fmt: skip
    per_warp = calibration.model_copy(update={"tables": tables})
    path = Path("/srv/i/.comfy-install/calibration.json")
    kept = route_table(path, per_warp, set()).data
    assert kept is not None and {b["backend"] for r in kept["routes"] for b in r["bands"]} == {
        "sage_per_warp"
    }
    assert route_table(path, per_warp, {"sageattention"}).data is None
    assert route_table(path, per_warp, {"xformers"}).data == kept
