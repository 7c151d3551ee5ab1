# comfy-install SageAttention routes: written by `comfy-install launch`, rewritten when outdated.
"""SageAttention 2's sm90 kernel with per-warp quantization, ComfyUI's attention signature.

`comfy-install launch` copies this file into the venv's site-packages as
`comfy_install_sage.py`, beside the router
([`router`][installer.attention.shim.router]) and its SDPA back ends
([`sdpa`][installer.attention.shim.sdpa]), whose ``sdpa_backend_function`` builds a
``sage_per_warp`` route with
[`sage_per_warp_function`][installer.attention.shim.sage.sage_per_warp_function].
ComfyUI's `attention_sage` calls the `sageattn` dispatcher, which on a cc 9.0 GPU runs
`sageattn_qk_int8_pv_fp8_cuda_sm90` with per-thread Q·K scales; on an H100 the same
kernel with ``qk_quant_gran="per_warp"`` was 8–11% faster at Wan 2.1's shapes with
the same error (`bench/h100-sage-variants.json`, measured there without K smoothing;
the route keeps ``smooth_k=True``, as `sageattn` runs for ComfyUI, since tune's random
inputs cannot show the error that smoothing prevents on real activations with a large
K mean). The route exists only where the GPU
is cc 9.0 and the installed SageAttention has that function, and `tune` picks it only
where it measured faster. Standard library only at import; torch and sageattention
(which ComfyUI has imported by then) are imported when the function is built.

Under torch.compile (ComfyUI's `TorchCompileModel`) the kernel is called through a
custom op of torch's (`torch.library.custom_op`, see
[`compile_safe_kernel`][installer.attention.shim.sage.compile_safe_kernel]): dynamo cannot
trace SageAttention's Python wrapper (its `torch.cuda.set_device` breaks the graph, at every
attention call of the model: 20 graph breaks a Wan 2.1 prompt on the H100), while an
opaque op with a shape-only fake keeps the diffusion model one graph. Eager calls go
to the kernel directly: a custom op's dispatch costs microseconds a call.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

SAGE_PER_WARP = "sage_per_warp"
"""The route's backend name."""
KERNEL = "sageattn_qk_int8_pv_fp8_cuda_sm90"
"""SageAttention 2's function for cc 9.0 GPUs (Hopper)."""
CAPABILITY = (9, 0)
"""The only compute capability the kernel is built for."""
LARGEST_HEAD_DIM = 128
"""The kernel pads smaller head dims to 64 or 128 and refuses larger ones."""
OP_NAMESPACE = "comfy_install"
"""The namespace of the custom op the route calls under torch.compile."""
OP_SCHEMA = "(Tensor q, Tensor k, Tensor v, str layout, float? sm_scale) -> Tensor"
"""The op's schema: the kernel's inputs in ``layout`` (``NHD`` or ``HND``), out like ``q``."""

_OPS: dict[int, Any] = {}
"""The custom op registered for each kernel (by id), once per process."""


def sage_problem(sageattention: Any, torch: Any) -> str | None:
    """Say why the per-warp route cannot run here, or None when it can.

    Args:
        sageattention: The imported `sageattention` module (None: not importable).
        torch: The imported torch module.
    """
    if sageattention is None:
        return "sageattention cannot be imported"
    if not callable(getattr(sageattention, KERNEL, None)):
        return f"this sageattention has no {KERNEL}"
    if not torch.cuda.is_available():
        return "no CUDA GPU"
    found = tuple(torch.cuda.get_device_capability())
    if found != CAPABILITY:
        return f"the GPU is cc {found[0]}.{found[1]}, the kernel needs cc 9.0"
    return None


def _import_sageattention() -> Any:
    try:
        return __import__("sageattention")
    except Exception:  # a broken build raises more than ImportError
        return None


def compile_safe_kernel(kernel: Callable[..., Any], torch: Any) -> Callable[..., Any] | None:
    """Return the per-warp kernel as a custom op torch.compile keeps whole (None: no such API).

    The op is ``comfy_install::sage_per_warp_N`` (one per kernel in the process, registered
    once): ``op(q, k, v, layout, sm_scale)`` runs the kernel with per-warp Q·K scales and
    ``smooth_k`` on, and returns its output made contiguous; its fake gives an empty tensor
    like ``q`` (the kernel's output has q's shape, dtype and layout), so dynamo traces the
    call as one node instead of entering SageAttention's Python. Where the kernel refuses
    a call inside a compiled graph, the op computes the same attention with torch's SDPA.

    Args:
        kernel: SageAttention 2's `sageattn_qk_int8_pv_fp8_cuda_sm90`.
        torch: The imported torch module.

    Returns:
        The op, or None where this torch has no `torch.library.custom_op` (torch < 2.4) or
        refuses the registration (the route then calls the kernel itself, compiling or not).
    """
    library = getattr(torch, "library", None)
    custom_op = getattr(library, "custom_op", None)
    if not callable(custom_op):
        return None
    found = _OPS.get(id(kernel))
    if found is not None:
        known: Callable[..., Any] = found[1]
        return known

    def sage_per_warp(q: Any, k: Any, v: Any, layout: str, sm_scale: Any) -> Any:
        try:
            out = kernel(q, k, v, tensor_layout=layout, is_causal=False,
                         qk_quant_gran="per_warp", sm_scale=sm_scale, smooth_k=True)  # fmt: skip
        except Exception:  # a stride or shape the kernel refuses: the same attention by SDPA
            heads_first = layout == "NHD"
            qh, kh, vh = (t.transpose(1, 2) if heads_first else t for t in (q, k, v))
            out = torch.nn.functional.scaled_dot_product_attention(qh, kh, vh, scale=sm_scale)
            out = out.transpose(1, 2) if heads_first else out
        return out.contiguous()

    def fake(q: Any, k: Any, v: Any, layout: str, sm_scale: Any) -> Any:
        return q.new_empty(q.shape)

    name = f"{OP_NAMESPACE}::sage_per_warp_{len(_OPS)}"
    try:
        op = custom_op(name, sage_per_warp, mutates_args=(), schema=OP_SCHEMA)
        op.register_fake(fake)
    except Exception:  # a torch whose custom ops take other arguments: eager calls only
        return None
    # The kernel is kept beside its op: an id is only unique while its object lives.
    _OPS[id(kernel)] = (kernel, op)
    result: Callable[..., Any] = op
    return result


def sage_per_warp_function(
    module: Any, sageattention: Any = None, torch: Any = None
) -> Callable[..., Any]:
    """Return ComfyUI's SageAttention call on the per-warp sm90 kernel (ComfyUI's signature).

    The reshapes are `attention_sage`'s of ComfyUI v0.33: (B, N, H·D) inputs become
    (B, N, H, D) for the kernel's ``NHD`` layout, ``skip_reshape`` inputs stay (B, H, N, D)
    as ``HND``, and the output is brought back as ``skip_output_reshape`` asks. Calls it
    cannot take (a mask, ``enable_gqa``, ``low_precision_attention=False``, tensor
    containers, a node's ``optimized_attention_override``, a dtype other than fp16/bf16, a
    CPU tensor, a head dim over 128, a call the kernel refuses) go to ComfyUI's
    `attention_sage` where ComfyUI loaded SageAttention, else to `attention_pytorch`.

    Args:
        module: `comfy.ldm.modules.attention`.
        sageattention: The `sageattention` module (default: imported).
        torch: The torch module (default: imported; ComfyUI has imported it already).

    Raises:
        RuntimeError: The route cannot run here (the message says why; it is left out).
    """
    if torch is None:
        torch = __import__("torch")
    if sageattention is None:
        sageattention = _import_sageattention()
    problem = sage_problem(sageattention, torch)
    if problem is not None:
        raise RuntimeError(problem)
    kernel = getattr(sageattention, KERNEL)
    own = getattr(module, "attention_sage", None)
    loaded = getattr(module, "SAGE_ATTENTION_IS_AVAILABLE", False)
    fallback = own if callable(own) and loaded else module.attention_pytorch
    dtypes = (torch.float16, torch.bfloat16)
    compiler = getattr(torch, "compiler", None)
    is_compiling: Callable[[], bool] = getattr(compiler, "is_compiling", None) or (lambda: False)
    compiled = compile_safe_kernel(kernel, torch) if hasattr(compiler, "is_compiling") else None

    def attention_sage_per_warp(q: Any, k: Any, v: Any, heads: Any, mask: Any = None,
                                attn_precision: Any = None, skip_reshape: bool = False,
                                skip_output_reshape: bool = False,
                                **kwargs: Any) -> Any:  # fmt: skip
        """ComfyUI's SageAttention call with per-warp Q·K scales (ComfyUI's own where it cannot)."""
        options = kwargs.get("transformer_options")
        if (
            mask is not None
            or kwargs.get("enable_gqa")
            or kwargs.get("low_precision_attention", True) is False
            or hasattr(q, "peek")
            or (options is not None and "optimized_attention_override" in options)
            or q.dtype not in dtypes
            or q.device.type != "cuda"
        ):
            return fallback(q, k, v, heads, mask=mask, attn_precision=attn_precision,
                            skip_reshape=skip_reshape, skip_output_reshape=skip_output_reshape,
                            **kwargs)  # fmt: skip
        batch = q.shape[0]
        if skip_reshape:
            dim, layout = q.shape[-1], "HND"
            qh, kh, vh = q, k, v
        else:
            dim, layout = q.shape[-1] // heads, "NHD"
            qh, kh, vh = (t.reshape(batch, -1, heads, dim) for t in (q, k, v))
        out = None
        if compiled is not None and dim <= LARGEST_HEAD_DIM and is_compiling():
            out = compiled(qh, kh, vh, layout, kwargs.get("scale"))
        elif dim <= LARGEST_HEAD_DIM:
            try:
                out = kernel(qh, kh, vh, tensor_layout=layout, is_causal=False,
                             qk_quant_gran="per_warp", sm_scale=kwargs.get("scale"),
                             smooth_k=True)  # fmt: skip
            except Exception:  # the kernel refused the call (a stride, a shape)
                out = None
        if out is None:
            return fallback(q, k, v, heads, attn_precision=attn_precision,
                            skip_reshape=skip_reshape, skip_output_reshape=skip_output_reshape,
                            **kwargs)  # fmt: skip
        if layout == "HND":
            if not skip_output_reshape:
                out = out.transpose(1, 2).reshape(batch, -1, heads * dim)
        elif skip_output_reshape:
            out = out.transpose(1, 2)
        else:
            out = out.reshape(batch, -1, heads * dim)
        return out

    return attention_sage_per_warp
