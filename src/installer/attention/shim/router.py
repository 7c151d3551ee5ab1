# comfy-install attention router: written by `comfy-install launch`, rewritten when outdated.
"""Attention routing inside the ComfyUI process: each call to the backend measured fastest.

`comfy-install launch` copies this file into the venv's site-packages as
`comfy_install_attention.py`, beside the tuning shim
([`shim_module`][installer.launch.shim_module]), and names a routing table in
`COMFY_INSTALL_ATTENTION_ROUTES` (made from `comfy-install tune`'s calibration:
per head dim and dtype, the bands of sequence lengths that go to a backend
other than SDPA). The shim watches the import of `comfy.ldm.modules.attention`
and, right after that module has run (before any model module binds
`optimized_attention` with `from ... import`), calls
[`attach`][installer.attention.shim.router.attach], which replaces
`optimized_attention` and `optimized_attention_masked` with a router.

For each call the router reads the number of tokens N, the head dim D and the
dtype (q is B×N×(H·D), or B×H×N×D with ``skip_reshape``), finds the band, and
calls ComfyUI's own function for that backend (`attention_sage`,
`attention_xformers`, ...) with every argument passed through; SDPA
(`attention_pytorch`) where the table has no band: other head dims and
dtypes, cross-attention (key tokens ≠ query tokens, never measured), a
tensor not on a CUDA device. Calls with a mask stay on ComfyUI's own choice.
Every call is counted per backend; the counters go to a JSON file (the
table's ``counts_file``, or `COMFY_INSTALL_ATTENTION_COUNTS`) every
``flush_every`` calls (by a writer thread: no call waits on the disk) and at exit,
so tests and proofs can read what ran.

The router decides once per call shape (q's and k's shapes, dtype, device,
heads, layout) and caches the function and its counter: a later call of that
shape costs one dictionary lookup and one increment, and is passed on
positionally (bench/gpu/router_overhead.py measures what the router adds).

Beside ComfyUI's functions the table may name torch's own SDPA back ends,
``cudnn``, ``flash`` and ``efficient`` (and SageAttention's ``sage_per_warp``)
([`sdpa_backend_function`][installer.attention.shim.router.sdpa_backend_function]):
ComfyUI v0.33 forces SDPA's priority to flash first on every large call,
while on Hopper with torch 2.11 cuDNN's kernel is up to 1.9× as fast. The
``cudnn`` route puts cuDNN first in SDPA's priority once, when the router is
attached, and calls SDPA with ComfyUI's reshapes and no context manager; the
two others pin their back end per call. Calls these cannot take (a mask, GQA,
ComfyUI's tensor containers, a node's ``optimized_attention_override``) go to
ComfyUI's `attention_pytorch`. Where ComfyUI has an attention registry
(`register_attention_function`, v0.33), the router is registered there too, as
``comfy_install``, so nodes that pick an attention function by name find it;
a node's per-model ``optimized_attention_override`` still wins, inside
ComfyUI's own (wrapped) functions.

Where ComfyUI's internals are not what the router expects (a function
missing, another signature, a backend whose library ComfyUI did not load),
that backend is left out and the reason logged; with nothing left to route
(or no `attention_pytorch`) nothing is replaced and ComfyUI keeps its own
choice. `COMFY_INSTALL_ATTENTION_ROUTES=off` (or `0`, `false`, any case) turns the
router off: no table is read and nothing replaced.
[`attach`][installer.attention.shim.router.attach] never raises: it returns the one
line the shim logs at start-up.

Standard library only, Python 3.10 and newer, no torch import at module
level: shapes and dtypes are read from the tensors' attributes, and torch (which
ComfyUI has imported by then) is imported only to build an SDPA back end's
function.
"""

from __future__ import annotations

import atexit
import json
import os

# Not `typing.TYPE_CHECKING`: importing typing would cost every tuned start
# milliseconds before ComfyUI runs; mypy treats this name the same way.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import types
    from collections.abc import Callable, Mapping
    from typing import Any

    from installer.attention.shim.routes import RoutesData

try:  # shipped beside this module in the measuring package, or in the installer
    from . import routes as schema  # type: ignore[import-not-found,no-redef,unused-ignore]
except ImportError:
    try:  # in the venv, written by launch
        import comfy_install_routes as schema  # type: ignore[import-not-found,no-redef,unused-ignore]
    except ImportError:  # imported from the installer by its file
        from installer.attention.shim import routes as schema  # type: ignore[no-redef,unused-ignore]

ROUTES_ENV = schema.ROUTES_ENV
COUNTS_ENV = schema.COUNTS_ENV
TARGETS = {
    "sdpa": "attention_pytorch",
    "xformers": "attention_xformers",
    "sageattention": "attention_sage",
    "sageattn3": "attention3_sage",
    "comfy_kitchen_int8": "attention_comfy_kitchen_int8",
}
"""ComfyUI's function for each backend, in `comfy.ldm.modules.attention` (0.3.6x to 0.33)."""
BUILT = ("cudnn", "flash", "efficient", "sage_per_warp")  # routes built by comfy_install_sdpa
REGISTRY_NAME = "comfy_install"
"""The router's name in ComfyUI's attention registry (`register_attention_function`)."""
LOADED = {
    "xformers": "xformers",
    "sageattention": "SAGE_ATTENTION_IS_AVAILABLE",
    "sageattn3": "SAGE_ATTENTION3_IS_AVAILABLE",
    "comfy_kitchen_int8": "COMFY_KITCHEN_INT8_ATTENTION_IS_AVAILABLE",
}
"""The module attribute that is true when ComfyUI loaded the backend's library."""
PARAMETERS = ("q", "k", "v", "heads")
KEYWORDS = ("mask", "skip_reshape", "skip_output_reshape")
DTYPES = {"torch.float16": "fp16", "torch.bfloat16": "bf16"}
COMFYUI = schema.COMFYUI_CALLS
"""The counter of calls left to ComfyUI's own choice (masked, or unreadable shapes)."""
MAX_SHAPES = schema.MAX_SHAPES
Counter = schema.Counter


class Routes:
    """The routing table: per head dim and dtype, bands of tokens and their backends."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        """Read the table from its JSON data, checked by the schema's reader.

        Args:
            data: The table as JSON data (see
                [`parse_routes`][installer.attention.shim.routes.parse_routes]; ``targets``
                names another ComfyUI function for a backend).

        Raises:
            ValueError: The data is not such a table.
        """
        table: RoutesData = schema.parse_routes(data)
        self.bands: dict[tuple[int, str], list[tuple[int, int | None, str]]] = {
            (route["head_dim"], route["dtype"]): [
                (band["min_tokens"], band["max_tokens"], band["backend"]) for band in route["bands"]
            ]
            for route in table["routes"]
        }
        self.counts_file = table.get("counts_file", "")
        self.flush_every = table.get("flush_every", schema.FLUSH_EVERY)
        self.targets = table.get("targets", {})

    def backends(self) -> list[str]:
        """Return the backends the table routes to, sorted."""
        return sorted({band[2] for bands in self.bands.values() for band in bands})

    def keep(self, usable: Callable[[str], bool]) -> None:
        """Drop the bands of backends that are not usable (their calls go to SDPA).

        Args:
            usable: Says whether a backend can be called.
        """
        for key in list(self.bands):
            self.bands[key] = [band for band in self.bands[key] if usable(band[2])]
            if not self.bands[key]:
                del self.bands[key]

    def backend(self, head_dim: int, dtype: str, tokens: int) -> str:
        """Return the backend for a call of this head dim, dtype and length (``sdpa`` if none).

        Args:
            head_dim: D.
            dtype: ``fp16`` or ``bf16``.
            tokens: N, the query (and key) tokens.
        """
        for low, high, name in self.bands.get((head_dim, dtype), ()):
            if schema.in_band(tokens, low, high):
                return name
        return "sdpa"

    def describe(self, targets: Mapping[str, str]) -> str:
        """Say where calls go, e.g. ``D=128 fp16: attention_sage from 16384 tokens``.

        Args:
            targets: ComfyUI's function name for each backend.
        """
        parts = []
        for (head_dim, dtype), bands in sorted(self.bands.items()):
            spans = []
            for low, high, name in bands:
                span = f"from {low}" + (f" to {high}" if high is not None else "")
                spans.append(f"{targets.get(name, name)} {span} tokens")
            parts.append(f"D={head_dim} {dtype}: " + ", ".join(spans))
        return "; ".join(parts)


def load_routes(path: str) -> Routes:
    """Read the routing table from its file.

    Args:
        path: The file `COMFY_INSTALL_ATTENTION_ROUTES` names.

    Raises:
        OSError: The file cannot be read.
        ValueError: It is not a routing table.
    """
    with open(path, encoding="utf-8") as handle:  # noqa: PTH123 - pathlib costs start-up time
        return Routes(json.load(handle))


def call_shape(q: Any, k: Any, heads: Any, skip_reshape: bool) -> tuple[int, str, int] | None:
    """Return ``(head_dim, dtype, tokens)`` of a routable call, None for one to leave on SDPA.

    Args:
        q: The queries: B×N×(H·D), or B×H×N×D with ``skip_reshape`` (or a
            container of ComfyUI's with `peek()`).
        k: The keys, laid out the same way.
        heads: H.
        skip_reshape: The layout flag ComfyUI passes.

    Returns:
        The shape of a self-attention call on a CUDA device in fp16 or bf16;
        None for anything else (cross-attention, CPU, other dtypes).
    """
    q = q.peek() if hasattr(q, "peek") else q
    k = k.peek() if hasattr(k, "peek") else k
    if getattr(getattr(q, "device", None), "type", None) != "cuda":
        return None
    dtype = DTYPES.get(str(q.dtype))
    query, key = tuple(q.shape), tuple(k.shape)
    if dtype is None or len(query) != (4 if skip_reshape else 3) or len(key) != len(query):
        return None
    if skip_reshape:
        tokens, head_dim, key_tokens = query[2], query[3], key[2]
    else:
        if not heads or query[2] % heads:
            return None
        tokens, head_dim, key_tokens = query[1], query[2] // heads, key[1]
    if key_tokens != tokens:
        return None
    return int(head_dim), dtype, int(tokens)


def compiler_hooks(torch: Any = None) -> Callable[[], bool] | None:
    """Return torch's `torch.compiler.is_compiling`, or None where torch has none.

    Args:
        torch: The torch module (default: the one ComfyUI imported, if any).
    """
    import sys

    torch = sys.modules.get("torch") if torch is None else torch
    compiler = getattr(torch, "compiler", None)
    is_compiling = getattr(compiler, "is_compiling", None)
    return is_compiling if callable(is_compiling) else None


ORDER = (*PARAMETERS, "mask", "attn_precision", "skip_reshape", "skip_output_reshape")
"""The parameter order of ComfyUI's attention functions, which the router passes positionally."""


def positional(function: Callable[..., Any]) -> Callable[..., Any]:
    """Return ``function`` where it takes ComfyUI's parameters in ComfyUI's order, else an adapter.

    The router forwards every call positionally (`ORDER`): a function whose signature
    cannot be read or orders them otherwise is called through an adapter that passes
    them by keyword, as ComfyUI does.

    Args:
        function: An attention function (ComfyUI's, a route's, or ComfyUI's own choice).
    """
    import inspect

    try:
        names = tuple(inspect.signature(function).parameters)[: len(ORDER)]
    except (TypeError, ValueError):
        names = ()
    if names == ORDER:
        return function

    def by_keyword(q: Any, k: Any, v: Any, heads: Any, mask: Any = None,
                   attn_precision: Any = None, skip_reshape: bool = False,
                   skip_output_reshape: bool = False, **kwargs: Any) -> Any:  # fmt: skip
        """``function``, called with ComfyUI's keywords."""
        return function(q, k, v, heads, mask=mask, attn_precision=attn_precision,
                        skip_reshape=skip_reshape, skip_output_reshape=skip_output_reshape,
                        **kwargs)  # fmt: skip

    by_keyword.__name__ = getattr(function, "__name__", "by_keyword")
    return by_keyword


def make_router(
    routes: Routes,
    functions: Mapping[str, Callable[..., Any]],
    original: Callable[..., Any],
    counter: Counter,
    is_compiling: Callable[[], bool] | None = None,
) -> Callable[..., Any]:
    """Return the function that replaces ComfyUI's `optimized_attention`.

    The decision is made once per call shape and cached (at most
    `MAX_SHAPES` shapes; past that, each new shape is decided per call).

    Inside a model that torch.compile traces (ComfyUI's `TorchCompileModel`),
    the call is traced, not counted: the backend is chosen from the shapes, which
    are constants of the graph, by the same table, and the chosen function is traced
    into the graph (SDPA and SageAttention 2's kernels are ops torch can compile
    around). No counter or cache is touched there, so nothing fails dynamo's guards
    and the diffusion model stays one graph instead of breaking at every attention
    call (SDXL has 140 a step). A shape dynamo cannot read falls back to its own
    graph break.

    Args:
        routes: The routing table (only backends in ``functions`` left in it).
        functions: ComfyUI's function for each backend, ``sdpa`` included.
        original: ComfyUI's own choice, for calls with a mask.
        counter: Counts each call.
        is_compiling: torch's `torch.compiler.is_compiling` (see
            [`compiler_hooks`][installer.attention.shim.router.compiler_hooks]);
            None: calls are routed and counted the same way under compile too.

    Returns:
        ``router(q, k, v, heads, mask=None, attn_precision=None,
        skip_reshape=False, skip_output_reshape=False, **kwargs)``.
    """
    functions = {name: positional(function) for name, function in functions.items()}
    original = positional(original)
    sdpa = functions["sdpa"]
    decided: dict[Any, tuple[Callable[..., Any], list[int]]] = {}
    masked = (original, counter.slot(COMFYUI, None))
    left = [counter.flush_every]  # calls until the counters are written

    def decide(
        q: Any, k: Any, heads: Any, skip_reshape: bool
    ) -> tuple[Callable[..., Any], list[int]]:
        try:
            found = call_shape(q, k, heads, skip_reshape)
        except Exception:  # an object the router cannot read: ComfyUI's own choice
            return original, counter.slot(COMFYUI, None)
        name = "sdpa" if found is None else routes.backend(*found)
        shape = None if found is None else schema.shape_label(*found)
        return functions.get(name, sdpa), counter.slot(name, shape)

    def remember(
        key: Any, q: Any, k: Any, heads: Any, skip_reshape: bool
    ) -> tuple[Callable[..., Any], list[int]]:
        """Decide a shape not seen yet and cache it under ``key`` (up to `MAX_SHAPES`)."""
        chosen = decide(q, k, heads, skip_reshape)
        if len(decided) < MAX_SHAPES:
            decided[key] = chosen
        return chosen

    def comfy_install_attention_router(
        q: Any,
        k: Any,
        v: Any,
        heads: Any,
        mask: Any = None,
        attn_precision: Any = None,
        skip_reshape: bool = False,
        skip_output_reshape: bool = False,
        **kwargs: Any,
    ) -> Any:
        """Call the backend measured fastest for this call's shape (ComfyUI's own with a mask).

        Under torch.compile the choice is made at trace time and not counted.
        """
        if is_compiling is not None and is_compiling():
            # Traced by torch.compile: chosen from the graph's constant shapes, not counted.
            function = original
            if mask is None:
                found = call_shape(q, k, heads, skip_reshape)
                function = sdpa if found is None else functions.get(routes.backend(*found), sdpa)
            return function(q, k, v, heads, mask, attn_precision, skip_reshape,
                            skip_output_reshape, **kwargs)  # fmt: skip
        if mask is not None:
            function, slot = masked
        else:
            # The hot path: one tuple, one lookup, one increment; every µs of it is paid
            # 140 times an SDXL step, and in full at small shapes, where the host's time
            # per call is the call's time.
            try:
                key = (q.shape, k.shape, q.dtype, q.is_cuda, heads, skip_reshape)
                function, slot = decided[key]
            except KeyError:  # a shape not seen yet
                function, slot = remember(key, q, k, heads, skip_reshape)
            except Exception:  # a container, an unhashable stand-in: decided per call
                function, slot = decide(q, k, heads, skip_reshape)
        slot[0] += 1
        left[0] -= 1
        if left[0] <= 0:  # the writer thread writes them: no call waits on the disk
            left[0] = counter.flush_every
            counter.request()
        # Positional: every function here takes ComfyUI's order (`positional` adapted any
        # other at attach), and keywords would cost a dictionary per call.
        return function(q, k, v, heads, mask, attn_precision, skip_reshape,
                        skip_output_reshape, **kwargs)  # fmt: skip

    router: Any = comfy_install_attention_router
    router.container_function = None  # what ComfyUI's wrap_attn functions carry
    router.counter = counter
    router.decided = decided
    result: Callable[..., Any] = router
    return result


def sdpa_backend_function(module: Any, backend: str, torch: Any = None) -> Callable[..., Any]:
    """Return ComfyUI's SDPA attention on one of torch's SDPA back ends.

    The function lives in `comfy_install_sdpa` ([`sdpa`][installer.attention.shim.sdpa]).

    Args:
        module: `comfy.ldm.modules.attention`.
        backend: ``cudnn``, ``flash``, ``efficient`` or ``sage_per_warp``.
        torch: The torch module (default: imported).
    """
    try:  # shipped beside this module in the benchmark's package
        from . import sdpa  # type: ignore[import-not-found,no-redef,unused-ignore]
    except ImportError:
        try:  # in the venv, written by launch
            import comfy_install_sdpa as sdpa  # type: ignore[import-not-found,no-redef,unused-ignore]
        except ImportError:  # in the installer
            from installer.attention.shim import sdpa  # type: ignore[no-redef,unused-ignore]
    function: Callable[..., Any] = sdpa.sdpa_backend_function(module, backend, torch)
    return function


def _signature_problem(function: Callable[..., Any]) -> str | None:
    import inspect

    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError) as exc:
        return f"its signature cannot be read ({exc})"
    names = list(parameters)
    keywords = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    if tuple(names[:4]) != PARAMETERS or not keywords or any(n not in names for n in KEYWORDS):
        return f"it takes ({', '.join(names)})"
    return None


def _target(
    module: types.ModuleType, routes: Routes, backend: str, problems: list[str]
) -> Callable[..., Any] | None:
    """Return ComfyUI's function for ``backend``, or None with the reason in ``problems``."""
    if backend in BUILT and backend not in routes.targets:
        if not callable(getattr(module, "attention_pytorch", None)):
            problems.append(f"{backend}: {module.__name__} has no attention_pytorch")
            return None
        try:
            return sdpa_backend_function(module, backend)
        except Exception as exc:
            problems.append(f"{backend}: its function cannot be built here ({exc})")
            return None
    attribute = routes.targets.get(backend) or TARGETS.get(backend)
    if attribute is None:
        problems.append(f"{backend}: no ComfyUI function is known for it")
        return None
    function: Callable[..., Any] | None = getattr(module, attribute, None)
    if function is None or not callable(function):
        problems.append(f"{module.__name__} has no {attribute}")
        return None
    loaded = LOADED.get(backend)
    if loaded is not None and not getattr(module, loaded, False):
        problems.append(f"{backend}: ComfyUI did not load it ({loaded} is false)")
        return None
    problem = _signature_problem(function)
    if problem is not None:
        problems.append(f"{attribute} is not what the router expects: {problem}")
        return None
    return function


def attach(module: types.ModuleType, environ: Mapping[str, str] | None = None) -> str:
    """Replace ComfyUI's `optimized_attention` by the router, when everything it needs is there.

    Args:
        module: `comfy.ldm.modules.attention`, just executed.
        environ: The environment (default: `os.environ`): `COMFY_INSTALL_ATTENTION_ROUTES`
            and, optionally, `COMFY_INSTALL_ATTENTION_COUNTS`. `off`, `0` or `false`
            (any case, [`ROUTES_OFF`][installer.attention.shim.routes.ROUTES_OFF]) in
            `COMFY_INSTALL_ATTENTION_ROUTES` turns routing off: nothing is read or
            replaced, and the counters (where `COMFY_INSTALL_ATTENTION_COUNTS` names a
            file) say so.

    Returns:
        The start-up line: what was attached, or why nothing was and ComfyUI
        keeps its own choice. Never raises.
    """
    try:
        return _attach(module, os.environ if environ is None else environ)
    except Exception as exc:
        return f"attention routing failed ({type(exc).__name__}: {exc}); ComfyUI's own stays"


def _attach(module: types.ModuleType, env: Mapping[str, str]) -> str:
    path = env.get(ROUTES_ENV) or ""
    if schema.routes_off(path):
        return _off(module, env, path.strip())
    try:
        routes = load_routes(path)
    except (OSError, ValueError) as exc:
        return f"attention routing skipped: the table {path!r} cannot be read ({exc})"
    counter = Counter(env.get(COUNTS_ENV) or routes.counts_file, routes.flush_every)
    problems: list[str] = []
    original = getattr(module, "optimized_attention", None)
    functions = {"sdpa": _target(module, routes, "sdpa", problems)}
    if not callable(original):
        problems.insert(0, f"{module.__name__} has no optimized_attention")
    for backend in routes.backends():
        if backend != "sdpa":
            functions[backend] = _target(module, routes, backend, problems)
    usable = {name: function for name, function in functions.items() if function is not None}
    routes.keep(lambda name: name in usable and name != "sdpa")
    own = getattr(original, "__name__", "its own")
    if not callable(original) or "sdpa" not in usable or not routes.bands:
        reason = "; ".join(problems) or "nothing to route"
        message = f"attention routing not attached ({reason}); ComfyUI keeps {own}"
        counter.status = {"attached": False, "message": message, "problems": problems}
        counter.flush()
        return message
    names = {name: getattr(function, "__name__", name) for name, function in usable.items()}
    hooks = compiler_hooks()
    router = make_router(routes, usable, original, counter, hooks)
    setattr(module, "optimized_attention", router)  # noqa: B010
    masked = getattr(module, "optimized_attention_masked", None)
    if callable(masked):
        router = make_router(routes, usable, masked, counter, hooks)
        setattr(module, "optimized_attention_masked", router)  # noqa: B010
    registered = _register(module, module.optimized_attention)
    message = (
        f"attention routing attached to {module.__name__}: {routes.describe(names)}; "
        f"{names['sdpa']} elsewhere; calls with a mask: {own}"
        + (f"; registered as {REGISTRY_NAME!r}" if registered else "")
        + (f" (left out: {'; '.join(problems)})" if problems else "")
    )
    counter.status = {
        "attached": True,
        "message": message,
        "problems": problems,
        "functions": names,
        "masked": getattr(masked, "__name__", None) if callable(masked) else None,
    }
    counter.flush()
    atexit.register(counter.flush)
    return message


def _off(module: types.ModuleType, env: Mapping[str, str], value: str) -> str:
    """Attach nothing: the user turned the router off (no file is read)."""
    own = getattr(getattr(module, "optimized_attention", None), "__name__", "its own")
    message = f"attention routing off ({ROUTES_ENV}={value}); ComfyUI keeps {own}"
    counter = Counter(env.get(COUNTS_ENV) or "", schema.FLUSH_EVERY)
    counter.status = {"attached": False, "off": True, "message": message, "problems": []}
    counter.flush()
    return message


def _register(module: types.ModuleType, router: Callable[..., Any]) -> bool:
    """Register the router in ComfyUI's attention registry, where there is one."""
    register = getattr(module, "register_attention_function", None)
    registry = getattr(module, "REGISTERED_ATTENTION_FUNCTIONS", None)
    if not callable(register) or not isinstance(registry, dict):
        return False
    try:
        if REGISTRY_NAME not in registry:
            register(REGISTRY_NAME, router)
    except Exception:
        return False
    return registry.get(REGISTRY_NAME) is router


_say = schema.say
