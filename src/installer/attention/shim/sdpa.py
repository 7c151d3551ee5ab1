# comfy-install SDPA back ends: written by `comfy-install launch`, rewritten when outdated.
"""torch's SDPA back ends with ComfyUI's attention signature, for the attention router.

`comfy-install launch` copies this file into the venv's site-packages as
`comfy_install_sdpa.py`, beside the router
([`router`][installer.attention.shim.router]), which calls
[`sdpa_backend_function`][installer.attention.shim.sdpa.sdpa_backend_function] for a
``cudnn``, ``flash`` or ``efficient`` route. ComfyUI v0.33 forces SDPA's priority
to flash first on every large call, while on Hopper with torch 2.11 cuDNN's kernel
is up to 2× as fast: the ``cudnn`` route puts cuDNN first in SDPA's priority once
([`hold_cudnn_first`][installer.attention.shim.sdpa.hold_cudnn_first]) and calls SDPA
with ComfyUI's reshapes and no context manager; the two others pin their back end
per call. Standard library only at import; torch (which ComfyUI has imported by
then) is imported when a function is built.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

SDPA_BACKENDS = {
    "cudnn": "CUDNN_ATTENTION",
    "flash": "FLASH_ATTENTION",
    "efficient": "EFFICIENT_ATTENTION",
}
"""torch's SDPA back ends routed by name (`torch.nn.attention.SDPBackend` members)."""
CUDNN_FIRST = ("CUDNN_ATTENTION", "FLASH_ATTENTION", "EFFICIENT_ATTENTION", "MATH")
"""SDPA's priority while a ``cudnn`` route is attached (ComfyUI's own calls set theirs)."""

_HELD: list[Any] = []
"""The entered `sdpa_kernel` context that keeps cuDNN first in SDPA's priority."""


def _sage() -> Any:
    """The SageAttention routes' module, wherever these files run from."""
    try:  # shipped beside this module in the benchmark's package
        from . import sage  # type: ignore[import-not-found,no-redef,unused-ignore]
    except ImportError:
        try:  # in the venv, written by launch
            import comfy_install_sage as sage  # type: ignore[import-not-found,no-redef,unused-ignore]
        except ImportError:  # in the installer
            from installer.attention.shim import sage  # type: ignore[no-redef,unused-ignore]
    return sage


def hold_cudnn_first(torch: Any) -> None:
    """Put cuDNN first in SDPA's priority for the rest of the process (once).

    ComfyUI's own large SDPA calls set flash first around themselves and restore this
    after; calls made without a context take cuDNN where it can run, else the next.

    Args:
        torch: The imported torch module.

    Raises:
        Exception: This torch cannot set SDPA's priority (no ``set_priority``).
    """
    if _HELD:
        return
    attention = __import__("torch.nn.attention", fromlist=["sdpa_kernel"])
    SDPBackend, sdpa_kernel = attention.SDPBackend, attention.sdpa_kernel

    order = [getattr(SDPBackend, name) for name in CUDNN_FIRST]
    context = sdpa_kernel(order, set_priority=True)
    context.__enter__()
    _HELD.append(context)


def refused(kwargs: dict[str, Any]) -> bool:
    """Whether a call's keywords ask for what the SDPA routes leave to ComfyUI's own function.

    GQA (``enable_gqa``) and a node's ``optimized_attention_override`` in
    ``transformer_options``.

    Args:
        kwargs: The call's other keywords.
    """
    if kwargs.get("enable_gqa"):
        return True
    options = kwargs.get("transformer_options")
    return options is not None and "optimized_attention_override" in options


def sdpa_backend_function(module: Any, backend: str, torch: Any = None) -> Callable[..., Any]:
    """Return ComfyUI's SDPA attention on one SDPA back end, `attention_pytorch`'s signature.

    A ``sage_per_warp`` route is built by
    [`sage_per_warp_function`][installer.attention.shim.sage.sage_per_warp_function] instead
    (the router and `tune` build every route they make themselves through this function).

    Calls it cannot take so (a mask, ``enable_gqa``, tensor containers, a node's
    ``optimized_attention_override``, a batch over ``SDP_BATCH_LIMIT``, a call the pinned
    back end refuses) go to ``module.attention_pytorch``.

    Args:
        module: `comfy.ldm.modules.attention`.
        backend: ``cudnn``, ``flash``, ``efficient`` or ``sage_per_warp``.
        torch: The torch module (default: imported; ComfyUI has imported it already).

    Raises:
        Exception: This torch cannot set the back end up (the route is left out).
    """
    if backend == "sage_per_warp":
        built: Callable[..., Any] = _sage().sage_per_warp_function(module, torch=torch)
        return built
    if torch is None:
        torch = __import__("torch")
    attention = __import__("torch.nn.attention", fromlist=["sdpa_kernel"])
    SDPBackend, sdpa_kernel = attention.SDPBackend, attention.sdpa_kernel

    sdpa = torch.nn.functional.scaled_dot_product_attention
    fallback = module.attention_pytorch
    limit = int(getattr(module, "SDP_BATCH_LIMIT", 2**31))
    chosen = getattr(SDPBackend, SDPA_BACKENDS[backend])
    pinned = None
    if backend == "cudnn":
        hold_cudnn_first(torch)
    else:
        pinned = [chosen]

    def attention_sdpa_backend(q: Any, k: Any, v: Any, heads: Any, mask: Any = None,
                               attn_precision: Any = None, skip_reshape: bool = False,
                               skip_output_reshape: bool = False,
                               **kwargs: Any) -> Any:  # fmt: skip
        """ComfyUI's SDPA attention on one SDPA back end (ComfyUI's own where it cannot)."""
        if (
            mask is not None
            or (kwargs and refused(kwargs))
            or hasattr(q, "peek")
            or q.shape[0] > limit
        ):
            return fallback(q, k, v, heads, mask=mask, attn_precision=attn_precision,
                            skip_reshape=skip_reshape, skip_output_reshape=skip_output_reshape,
                            **kwargs)  # fmt: skip
        # Spelled out, no generator or keyword dictionary: at small shapes the host's time
        # per call is the call's time.
        batch, dim = q.shape[0], q.shape[-1]
        if skip_reshape:
            qh, kh, vh = q, k, v
        else:
            dim //= heads
            qh = q.reshape(batch, -1, heads, dim).transpose(1, 2)
            kh = k.reshape(batch, -1, heads, dim).transpose(1, 2)
            vh = v.reshape(batch, -1, heads, dim).transpose(1, 2)
        scale = kwargs.get("scale") if kwargs else None
        if pinned is None:
            out = sdpa(qh, kh, vh) if scale is None else sdpa(qh, kh, vh, scale=scale)
        else:
            try:
                with sdpa_kernel(pinned):
                    out = sdpa(qh, kh, vh) if scale is None else sdpa(qh, kh, vh, scale=scale)
            except RuntimeError:  # this back end cannot take the call
                return fallback(q, k, v, heads, attn_precision=attn_precision,
                                skip_reshape=skip_reshape,
                                skip_output_reshape=skip_output_reshape, **kwargs)  # fmt: skip
        if not skip_output_reshape:
            out = out.transpose(1, 2).reshape(batch, -1, heads * dim)
        return out

    attention_sdpa_backend.__name__ = attention_sdpa_backend.__qualname__ = (
        f"attention_sdpa_{backend}"
    )
    return attention_sdpa_backend
