# comfy-install runtime tuning shim: written by `comfy-install launch`, rewritten when outdated.
"""Runtime tuning inside the ComfyUI process (the shim `comfy-install launch` installs).

Some tunings cannot be passed to ComfyUI as environment variables that torch
reads by itself: TF32, the cuDNN autotuner and the float32 matmul precision
are switches on the `torch` module, and torch.compile is a function nodes must
call. `comfy-install launch` therefore copies this file into the venv's
site-packages as `comfy_install_tuning.py`, next to `comfy_install_tuning.pth`
whose one line calls [`activate`][installer.launch.shim_module.activate]
when the interpreter starts. A `.pth` file is used rather than a
`sitecustomize.py` because only the first `sitecustomize` on `sys.path` runs,
and a Debian or Ubuntu base interpreter ships its own in the standard library,
ahead of the venv's site-packages; a `.pth` line also leaves any
`sitecustomize` the user has untouched.

The shim does nothing unless the launcher set `COMFY_INSTALL_TUNING=1` and the
process runs a script called `main.py` (ComfyUI itself, or ComfyUI restarting
itself), so every other use of the venv's Python is untouched. It never
imports torch: the switches are applied by an import hook right after ComfyUI
imports torch, so the order in which ComfyUI sets its own variables before
that import (its `cudaMallocAsync` allocator, `--cuda-device`) is kept, and a
process that never imports torch never pays for it. With
`ENABLE_TORCH_COMPILE=1` it puts `COMFY_TORCH_COMPILE(model, **overrides)` in
`builtins`, a `torch.compile` with the configured backend, mode, fullgraph and
dynamic settings, for nodes to use. With `COMFY_INSTALL_ATTENTION_ROUTES` set
(a routing table from `comfy-install tune`'s calibration) a second hook waits
for `comfy.ldm.modules.attention` and hands it to the attention router
(`comfy_install_attention`, [`router`][installer.attention.shim.router]),
which sends each attention call to the backend measured fastest for its shape.
Every failure is caught and reported on stderr as one line: the shim can never
stop ComfyUI from starting.

The file must run on every Python the venv may have (3.10 and newer) and may
import nothing but the standard library.
"""

from __future__ import annotations

import builtins
import importlib
import os
import sys

# Not `typing.TYPE_CHECKING`: importing typing would cost every tuned start
# milliseconds before ComfyUI runs; mypy treats this name the same way.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import types
    from collections.abc import Callable, Mapping, Sequence
    from typing import Any

SHIM_VERSION = 2
MARKER_ENV = "COMFY_INSTALL_TUNING"
COMPILE_BUILTIN = "COMFY_TORCH_COMPILE"
ROUTES_MODULE = "comfy_install_routes"
"""The routes schema's name in the venv (the shipped `installer.attention.shim.routes`)."""
ROUTER_MODULE = "comfy_install_attention"
"""The attention router's name in the venv (the shipped `installer.attention.shim.router`)."""
ATTENTION_MODULE = "comfy.ldm.modules.attention"
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def flag(value: str | None) -> bool | None:
    """Read a boolean environment value.

    Args:
        value: The variable's value, or None when it is not set.

    Returns:
        True or False, or None when the value is missing, empty or not a boolean.
    """
    if value is None:
        return None
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    return None


def compile_options(environ: Mapping[str, str]) -> dict[str, Any]:
    """Return the keyword arguments for `torch.compile` configured in the environment.

    Args:
        environ: The process environment (`TORCH_COMPILE_BACKEND`,
            `TORCH_COMPILE_MODE`, `TORCH_COMPILE_FULLGRAPH`, `TORCH_COMPILE_DYNAMIC`).

    Returns:
        ``backend`` (default ``inductor``), ``fullgraph`` (default False),
        ``dynamic`` (None lets torch decide, the default; also for ``auto``) and
        ``mode`` when one is set or, for inductor, ``reduce-overhead``.
    """
    backend = (environ.get("TORCH_COMPILE_BACKEND") or "").strip() or "inductor"
    options: dict[str, Any] = {
        "backend": backend,
        "fullgraph": bool(flag(environ.get("TORCH_COMPILE_FULLGRAPH"))),
        "dynamic": flag(environ.get("TORCH_COMPILE_DYNAMIC")),
    }
    mode = (environ.get("TORCH_COMPILE_MODE") or "").strip().lower()
    if mode:
        options["mode"] = mode
    elif backend == "inductor":
        options["mode"] = "reduce-overhead"
    return options


def make_compiler(options: Mapping[str, Any]) -> Callable[..., Any]:
    """Return the `COMFY_TORCH_COMPILE` callable for ``options``.

    Args:
        options: Keyword arguments for `torch.compile` (see
            [`compile_options`][installer.launch.shim_module.compile_options]).

    Returns:
        ``compile(model, **overrides)``: calls `torch.compile(model, **options)`,
        with ``overrides`` replacing single options; torch is imported on the
        first call.
    """
    fixed = dict(options)

    def comfy_torch_compile(model: Any, **overrides: Any) -> Any:
        """Compile ``model`` with torch.compile and the options comfy-install was given."""
        torch = importlib.import_module("torch")
        return torch.compile(model, **{**fixed, **overrides})

    return comfy_torch_compile


def apply_torch_settings(torch: types.ModuleType, environ: Mapping[str, str]) -> list[str]:
    """Apply the TF32, cuDNN benchmark and matmul precision switches to ``torch``.

    Each switch is applied on its own, so one that fails does not stop the others.

    Args:
        torch: The imported torch module.
        environ: The process environment (`ENABLE_TF32`, `ENABLE_CUDNN_BENCHMARK`,
            `MATMUL_PRECISION`).

    Returns:
        One short phrase per switch: what was applied, or why it failed.
    """
    import warnings

    done: list[str] = []
    tf32 = flag(environ.get("ENABLE_TF32"))
    benchmark = flag(environ.get("ENABLE_CUDNN_BENCHMARK"))
    precision = (environ.get("MATMUL_PRECISION") or "").strip().lower()
    with warnings.catch_warnings():
        # torch 2.9 warns that the allow_tf32 flags will be replaced; they still
        # work, and unlike the new fp32_precision API they cannot be mixed up
        # with what ComfyUI or a node sets through the legacy API.
        warnings.simplefilter("ignore")
        if tf32 is not None:
            done.append(
                _attempt(
                    f"TF32 {'on' if tf32 else 'off'}",
                    lambda: _set_tf32(torch, tf32),
                )
            )
        if benchmark is not None:
            done.append(
                _attempt(
                    f"cuDNN benchmark {'on' if benchmark else 'off'}",
                    lambda: _set_cudnn_benchmark(torch, benchmark),
                )
            )
        if precision:
            done.append(
                _attempt(
                    f"float32 matmul precision {precision}",
                    lambda: torch.set_float32_matmul_precision(precision),
                )
            )
    return done


def _set_tf32(torch: types.ModuleType, enabled: bool) -> None:
    importlib.import_module("torch.backends.cuda")
    importlib.import_module("torch.backends.cudnn")
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled


def _set_cudnn_benchmark(torch: types.ModuleType, enabled: bool) -> None:
    importlib.import_module("torch.backends.cudnn")
    torch.backends.cudnn.benchmark = enabled


def _attempt(label: str, action: Callable[[], object]) -> str:
    try:
        action()
    except Exception as exc:
        return f"{label} FAILED ({type(exc).__name__}: {exc})"
    return label


def _say(message: str) -> None:
    try:
        sys.stderr.write(f"comfy-install tuning: {message}\n")
        sys.stderr.flush()
    except Exception:  # noqa: S110 - a closed stderr must not stop ComfyUI
        pass


class ImportHook:
    """A one-shot `sys.meta_path` finder that runs a callback right after a module is imported."""

    def __init__(self, fullname: str, callback: Callable[[types.ModuleType], None]) -> None:
        """Create the hook.

        Args:
            fullname: The module to watch, e.g. ``torch``.
            callback: Called with the module once it has executed, before the
                import statement that loaded it returns.
        """
        self._fullname = fullname
        self._callback = callback

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: types.ModuleType | None = None,
    ) -> Any:
        """Find the watched module with the other finders and wrap its loader; ignore the rest.

        Args:
            fullname: The module being imported.
            path: The parent package's path (None for a top-level module).
            target: The module being reloaded, if any.

        Returns:
            The watched module's spec with a loader that calls the callback
            after executing the module, or None (let the other finders answer).
        """
        if fullname != self._fullname:
            return None
        self.remove()
        try:
            spec = _find_with_others(fullname, path, target)
            loader = getattr(spec, "loader", None) if spec is not None else None
            if loader is None or not hasattr(loader, "exec_module"):
                return spec
            _wrap_exec_module(loader, self._callback, fullname)
        except Exception as exc:
            _say(f"could not watch the import of {fullname} ({type(exc).__name__}: {exc})")
            return None
        return spec

    def remove(self) -> None:
        """Take the hook off `sys.meta_path` (it only ever fires once)."""
        try:  # noqa: SIM105 - contextlib is not worth importing at every start
            sys.meta_path.remove(self)
        except ValueError:
            pass


def _find_with_others(
    fullname: str, path: Sequence[str] | None, target: types.ModuleType | None
) -> Any:
    for finder in list(sys.meta_path):
        find_spec = getattr(finder, "find_spec", None)
        if find_spec is None:
            continue
        spec = find_spec(fullname, path, target)
        if spec is not None:
            return spec
    return None


def _wrap_exec_module(
    loader: Any, callback: Callable[[types.ModuleType], None], fullname: str
) -> None:
    original = loader.exec_module

    def exec_module(module: types.ModuleType) -> None:
        try:
            original(module)
        finally:
            # The loader instance belongs to the module's spec: give it its own method back.
            vars(loader).pop("exec_module", None)
        try:
            callback(module)
        except Exception as exc:
            _say(f"tuning failed after importing {fullname} ({type(exc).__name__}: {exc})")

    loader.exec_module = exec_module


def watch_import(fullname: str, callback: Callable[[types.ModuleType], None]) -> None:
    """Run ``callback`` right after ``fullname`` is imported (now, if it already was).

    Args:
        fullname: The module to watch.
        callback: Called with the module.
    """
    if fullname in sys.modules:
        callback(sys.modules[fullname])
    else:
        sys.meta_path.insert(0, ImportHook(fullname, callback))


def routes_env() -> str:
    """Return the variable that names the routing table, as the routes schema defines it.

    The schema is the shipped `comfy_install_routes` beside this file in the venv (or, when
    this module is imported from the installer, `installer.attention.shim.routes`).
    """
    try:
        schema = importlib.import_module(ROUTES_MODULE)
    except ImportError:
        schema = importlib.import_module("installer.attention.shim.routes")
    name: str = schema.ROUTES_ENV
    return name


def _route_attention(module: types.ModuleType, environ: Mapping[str, str]) -> None:
    try:
        router = importlib.import_module(ROUTER_MODULE)
    except Exception as exc:
        _say(f"attention routing skipped: {ROUTER_MODULE} cannot be imported ({exc})")
        return
    _say(router.attach(module, environ))


def _is_comfyui(argv: Sequence[str]) -> bool:
    return bool(argv) and os.path.basename(argv[0]) == "main.py"  # noqa: PTH119


_ACTIVE = False


def activate(environ: Mapping[str, str] | None = None, argv: Sequence[str] | None = None) -> bool:
    """Set up the runtime tuning for this process, if it is a tuned ComfyUI.

    Called by the `.pth` line at interpreter start. Never raises.

    Args:
        environ: The environment to read (default: `os.environ`).
        argv: The command line (default: `sys.argv`).

    Returns:
        True when this process is a ComfyUI started by `comfy-install launch`
        with tuning and the hooks were installed; False otherwise.
    """
    global _ACTIVE
    try:
        env = os.environ if environ is None else environ
        args = sys.argv if argv is None else argv
        if flag(env.get(MARKER_ENV)) is not True or not _is_comfyui(args):
            return False
        if _ACTIVE:
            # A venv's lib64 -> lib link makes site read the .pth file twice.
            return True
        _ACTIVE = True
        if flag(env.get("ENABLE_TORCH_COMPILE")):
            options = compile_options(env)
            setattr(builtins, COMPILE_BUILTIN, make_compiler(options))
            shown = ", ".join(f"{key}={value}" for key, value in options.items())
            _say(f"{COMPILE_BUILTIN} is available to nodes ({shown})")
        wanted = ("ENABLE_TF32", "ENABLE_CUDNN_BENCHMARK", "MATMUL_PRECISION")
        if any((env.get(name) or "").strip() for name in wanted):
            watch_import("torch", lambda torch: _report(apply_torch_settings(torch, env)))
        if (env.get(routes_env()) or "").strip():
            watch_import(ATTENTION_MODULE, lambda module: _route_attention(module, env))
        return True
    except Exception as exc:
        _say(f"runtime tuning skipped ({type(exc).__name__}: {exc})")
        return False


def _report(done: list[str]) -> None:
    if done:
        _say(", ".join(done))
