"""The attention backends the benchmark can time, and how each is imported and called.

Shipped with [`attention_module`][installer.attention.measure.attention_module] into the
install's venv (the two run there as one small package) and read by the
installer for the names. Standard library only at import: torch and the
attention packages are imported by the factories, when the module runs.

Each backend takes inputs laid out as (B, H, N, D), the layout of the
reference: torch SDPA, xformers (its own B, N, H, D layout), SageAttention 1
or 2 (`sageattention.sageattn`), SageAttention 3 (`sageattn3`) and
comfy-kitchen's int8 attention (`comfy_kitchen.int8_attention`, the kernel
ComfyUI v0.33 runs with `--use-ck-attention`), which only counts as usable
when `comfy_kitchen.int8_attention_is_available()` says so.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

BACKENDS = (
    "sdpa",
    "cudnn",
    "flash",
    "efficient",
    "xformers",
    "sageattention",
    "sage_per_warp",
    "sageattn3",
    "comfy_kitchen_int8",
)
"""Backends in the order they are measured; `sdpa` is the baseline.

``cudnn``, ``flash`` and ``efficient`` are torch's own SDPA back ends, each
pinned (`torch.nn.attention.sdpa_kernel`): ``sdpa`` is whatever SDPA picks
(through ComfyUI: ComfyUI's priority, flash first in v0.33). ``sage_per_warp`` is
SageAttention 2's sm90 kernel with per-warp Q·K scales (the router's
[`sage`][installer.attention.shim.sage] route), only on cc 9.0 GPUs and from
``SAGE_MIN_TOKENS`` up."""
SDPA_BACKENDS = {"cudnn": "CUDNN_ATTENTION", "flash": "FLASH_ATTENTION",
                 "efficient": "EFFICIENT_ATTENTION"}  # fmt: skip
"""The pinned SDPA back ends and their `SDPBackend` members."""
PACKAGES = (
    "torch",
    "xformers",
    "sageattention",
    "sageattn3",
    "comfy-kitchen",
    "triton",
    "triton-windows",
)
"""Distributions whose versions every run records."""
SAGE_MIN_TOKENS = 12288
"""``sage_per_warp`` is measured from this length up (the sweep's 12288 sits below Wan 2.1's
14040): below it cuDNN's SDPA beats SageAttention on Hopper, and the cells would cost `tune`
its budget for a route that cannot win there."""


@dataclass(frozen=True)
class Backend:
    """How to call one attention implementation on inputs laid out as (B, H, N, D)."""

    name: str
    prepare: Callable[[Any, Any, Any], tuple[Any, ...]]
    """Copy the reference inputs into the backend's layout (outside the timed calls)."""
    call: Callable[[tuple[Any, ...]], Any]
    """One attention call on prepared inputs."""
    to_bhnd: Callable[[Any], Any]
    """Bring an output back to (B, H, N, D) for comparison."""
    min_tokens: int = 0
    """Shapes shorter than this are not measured for this backend (no row at all)."""


def _same(tensor: Any) -> Any:
    return tensor


def _clone3(q: Any, k: Any, v: Any) -> tuple[Any, ...]:
    # SageAttention subtracts k's mean in place; private copies keep the
    # reference inputs (and the next backend's) untouched.
    return (q.clone(), k.clone(), v.clone())


def _sdpa_backend(torch: Any) -> Backend:
    sdpa = torch.nn.functional.scaled_dot_product_attention
    return Backend("sdpa", _clone3, lambda a: sdpa(*a), _same)


def _pinned_sdpa_backend(name: str) -> Callable[[Any], Backend]:
    def factory(torch: Any) -> Backend:
        attention = __import__("torch.nn.attention", fromlist=["sdpa_kernel"])
        SDPBackend, sdpa_kernel = attention.SDPBackend, attention.sdpa_kernel

        sdpa = torch.nn.functional.scaled_dot_product_attention
        chosen = [getattr(SDPBackend, SDPA_BACKENDS[name])]

        def call(a: tuple[Any, ...]) -> Any:
            with sdpa_kernel(chosen):
                return sdpa(*a)

        return Backend(name, _clone3, call, _same)

    return factory


def _xformers_backend(torch: Any) -> Backend:
    xops = importlib.import_module("xformers.ops")

    def prepare(q: Any, k: Any, v: Any) -> tuple[Any, ...]:
        return tuple(t.transpose(1, 2).contiguous() for t in (q, k, v))

    return Backend(
        "xformers",
        prepare,
        lambda a: xops.memory_efficient_attention(*a),
        lambda out: out.transpose(1, 2),
    )


def _sageattention_backend(torch: Any) -> Backend:
    sageattn = importlib.import_module("sageattention").sageattn
    return Backend(
        "sageattention",
        _clone3,
        lambda a: sageattn(*a, tensor_layout="HND", is_causal=False),
        _same,
    )


def sage_module() -> Any:
    """The router's SageAttention route module, shipped beside this one or the installer's."""
    try:  # shipped into the venv with the router's files
        from . import sage  # type: ignore[attr-defined,unused-ignore]
    except ImportError:  # run from the installer's package
        from installer.attention.shim import sage
    return sage


def _sage_per_warp_backend(torch: Any) -> Backend:
    sageattention = importlib.import_module("sageattention")
    sage = sage_module()
    problem = sage.sage_problem(sageattention, torch)
    if problem is not None:
        raise RuntimeError(problem)
    kernel = getattr(sageattention, sage.KERNEL)

    def call(a: tuple[Any, ...]) -> Any:
        return kernel(*a, tensor_layout="HND", is_causal=False, qk_quant_gran="per_warp",
                      smooth_k=True)  # fmt: skip

    return Backend("sage_per_warp", _clone3, call, _same, SAGE_MIN_TOKENS)


def _sageattn3_backend(torch: Any) -> Backend:
    blackwell = importlib.import_module("sageattn3").sageattn3_blackwell
    return Backend("sageattn3", _clone3, lambda a: blackwell(*a, is_causal=False), _same)


def _comfy_kitchen_backend(torch: Any) -> Backend:
    kitchen = importlib.import_module("comfy_kitchen")
    if not kitchen.int8_attention_is_available():
        raise RuntimeError(
            "comfy_kitchen.int8_attention_is_available() is False (it needs CUDA, compute "
            "capability 7.5 or newer and comfy-kitchen's compiled extension)"
        )
    return Backend("comfy_kitchen_int8", _clone3, lambda a: kitchen.int8_attention(*a), _same)


_FACTORIES: dict[str, Callable[[Any], Backend]] = {
    "sdpa": _sdpa_backend,
    **{name: _pinned_sdpa_backend(name) for name in SDPA_BACKENDS},
    "xformers": _xformers_backend,
    "sageattention": _sageattention_backend,
    "sage_per_warp": _sage_per_warp_backend,
    "sageattn3": _sageattn3_backend,
    "comfy_kitchen_int8": _comfy_kitchen_backend,
}
DISTRIBUTIONS = {
    "sdpa": "torch",
    "cudnn": "torch",
    "flash": "torch",
    "efficient": "torch",
    "xformers": "xformers",
    "sageattention": "sageattention",
    "sage_per_warp": "sageattention",
    "sageattn3": "sageattn3",
    "comfy_kitchen_int8": "comfy-kitchen",
}
"""The distribution whose version is each backend's version."""


def package_versions(names: Sequence[str] = PACKAGES) -> dict[str, str | None]:
    """Return the installed version of each distribution, None when absent.

    Args:
        names: Distribution names to look up (default: `PACKAGES`).
    """
    found: dict[str, str | None] = {}
    for name in names:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def load_backends(
    torch: Any, names: Sequence[str]
) -> tuple[dict[str, Backend], list[dict[str, Any]]]:
    """Import each backend; return the usable ones and a report line for every one.

    Args:
        torch: The imported torch module.
        names: Backend names from
            [`BACKENDS`][installer.attention.measure.attention_module.BACKENDS].

    Returns:
        ``(usable, report)``: the backends that imported, by name, and for each
        name asked for ``{"name", "available", "version", "reason"}``.
    """
    usable: dict[str, Backend] = {}
    report: list[dict[str, Any]] = []
    versions = package_versions([DISTRIBUTIONS.get(name, name) for name in names])
    for name in names:
        version = versions.get(DISTRIBUTIONS.get(name, name))
        try:
            usable[name] = _FACTORIES[name](torch)
        except Exception as exc:  # an optional package may fail to import in any way
            reason = "not installed" if isinstance(exc, ImportError) and version is None else None
            report.append(
                {
                    "name": name,
                    "available": False,
                    "version": version,
                    "reason": reason or describe_error(exc),
                }
            )
            continue
        report.append({"name": name, "available": True, "version": version, "reason": None})
    return usable, report


def describe_error(exc: BaseException) -> str:
    """One line about an exception: its type, the first line and the last line of its message.

    Libraries put the cause last in long messages (xformers: "No operator
    found ... `cutlassF` is not supported because: xFormers wasn't built
    with CUDA support"), so the last line is kept with the first.

    Args:
        exc: The exception a backend raised.
    """
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    text = type(exc).__name__
    if lines:
        text += f": {lines[0]}"
    if len(lines) > 1:
        text += f" … {lines[-1]}"
    return text[:300]
