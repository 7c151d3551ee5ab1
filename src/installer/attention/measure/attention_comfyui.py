"""Attention backends measured through an install's own ComfyUI: its functions, its layout.

Shipped with [`attention_module`][installer.attention.measure.attention_module] into the
install's venv. The launch router does not call the attention kernels: it calls
ComfyUI's functions in `comfy.ldm.modules.attention` (`attention_pytorch`,
`attention_sage`, ...), with q, k and v laid out as (B, N, H·D) and ``heads``,
and those add their own reshapes and, for SDPA, ComfyUI's choice of SDPA
kernels (v0.33: flash, cuDNN, memory-efficient, math, in that order). So when
the install's ComfyUI imports, `tune` measures each backend through the
function the router maps it to; ComfyUI's SDPA path is the reference.

[`import_attention`][installer.attention.measure.attention_comfyui.import_attention]
imports ComfyUI the way its own tests do (its folder first on `sys.path`, the
working directory there during the import; ComfyUI parses no command line when
imported as a library), and
[`comfyui_backends`][installer.attention.measure.attention_comfyui.comfyui_backends] makes
a [`Backend`][installer.attention.measure.attention_backends.Backend] of each function.
Standard library only at import, like the rest of the package.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .attention_backends import (
    DISTRIBUTIONS,
    SAGE_MIN_TOKENS,
    SDPA_BACKENDS,
    Backend,
    describe_error,
    package_versions,
)

MODULE = "comfy.ldm.modules.attention"
"""The ComfyUI module whose functions the router calls."""


def import_attention(comfyui: str, cpu: bool = False) -> tuple[Any | None, str | None]:
    """Import ComfyUI's attention module from the folder ``comfyui``.

    Args:
        comfyui: The install's ComfyUI checkout (``DIR/ComfyUI``).
        cpu: No GPU: set ComfyUI's ``--cpu`` first (it parses no command line as a
            library, and without a GPU its device probe fails unless told).

    Returns:
        ``(module, None)``, or ``(None, reason)`` when there is no ComfyUI
        there or its import fails (in any way, an ``exit()`` of ComfyUI's included).
    """
    root = Path(comfyui).absolute()
    folder = str(root)
    if not root.joinpath(*MODULE.split(".")).with_suffix(".py").is_file():
        return None, f"{folder} holds no ComfyUI ({MODULE} not found)"
    previous = Path.cwd()
    sys.path.insert(0, folder)
    try:
        os.chdir(folder)
        if cpu:
            importlib.import_module("comfy.cli_args").args.cpu = True
        return importlib.import_module(MODULE), None
    except (Exception, SystemExit) as exc:  # ComfyUI exits on some missing packages
        if folder in sys.path:
            sys.path.remove(folder)
        return None, f"ComfyUI's {MODULE} cannot be imported ({describe_error(exc)})"
    finally:
        os.chdir(previous)


def _to_comfyui(q: Any, k: Any, v: Any) -> tuple[Any, ...]:
    """Copy (B, H, N, D) inputs into ComfyUI's layout: (B, N, H·D), and the heads."""
    batch, heads, tokens = q.shape[0], q.shape[1], q.shape[2]
    moved = tuple(t.transpose(1, 2).reshape(batch, tokens, -1).contiguous() for t in (q, k, v))
    return (*moved, int(heads))


def _same(tensor: Any) -> Any:
    return tensor


def _backend(name: str, function: Callable[..., Any]) -> Backend:
    # Outputs stay (B, N, H·D): every backend, and the reference, is compared in that layout.
    least = SAGE_MIN_TOKENS if name == "sage_per_warp" else 0
    return Backend(name, _to_comfyui, lambda a: function(a[0], a[1], a[2], a[3]), _same, least)


def _sdpa_function(module: Any, name: str) -> Callable[..., Any]:
    """The router's own function for one of torch's SDPA back ends (the same code)."""
    try:  # shipped into the venv beside this module
        from .router import sdpa_backend_function  # type: ignore[import-not-found,import-untyped,unused-ignore]
    except ImportError:  # run from the installer's package
        from installer.attention.shim.router import sdpa_backend_function
    function: Callable[..., Any] = sdpa_backend_function(module, name)
    return function


def comfyui_backends(
    module: Any,
    names: Sequence[str],
    functions: Mapping[str, str],
    loaded: Mapping[str, str],
) -> tuple[dict[str, Backend], list[dict[str, Any]]]:
    """Make a backend of ComfyUI's function for each name; report every one.

    Args:
        module: ComfyUI's `comfy.ldm.modules.attention`.
        names: Backend names (``sdpa`` first).
        functions: ComfyUI's function for each backend (the router's mapping).
        loaded: The module attribute that is true when ComfyUI loaded the
            backend's library (the router's check).

    Returns:
        ``(usable, report)`` as
        [`load_backends`][installer.attention.measure.attention_backends.load_backends]
        returns them; each report line also names the ``function``.
    """
    usable: dict[str, Backend] = {}
    report: list[dict[str, Any]] = []
    versions = package_versions([DISTRIBUTIONS.get(name, name) for name in names])
    for name in names:
        version = versions.get(DISTRIBUTIONS.get(name, name))
        attribute = functions.get(name)
        function = getattr(module, attribute, None) if attribute else None
        flag = loaded.get(name)
        reason: str | None = None
        if name in SDPA_BACKENDS and attribute is None:
            attribute = f"attention_sdpa_{name}"
            try:
                function = _sdpa_function(module, name)
            except Exception as exc:  # an older torch without the back end or its priority
                reason = f"torch's {name} back end cannot be set ({describe_error(exc)})"
        elif name == "sage_per_warp" and attribute is None:
            attribute = "attention_sage_per_warp"
            try:  # only on a cc 9.0 GPU, with a SageAttention that has the kernel
                function = _sdpa_function(module, name)
            except Exception as exc:
                reason = "not installed" if version is None else describe_error(exc)
        elif attribute is None:
            reason = f"no ComfyUI function is known for {name}"
        elif not callable(function):
            reason = f"ComfyUI's {MODULE} has no {attribute}"
        elif flag is not None and not getattr(module, flag, False):
            reason = (
                "not installed" if version is None else f"ComfyUI did not load it ({flag} is false)"
            )
        if reason is None and function is not None:
            usable[name] = _backend(name, function)
        report.append(
            {
                "name": name,
                "available": reason is None,
                "version": version,
                "reason": reason,
                "function": attribute,
            }
        )
    return usable, report
