"""The variables `comfy-install launch` reads, what values they accept, and the ComfyUI arguments.

Pure: everything here reads a mapping or a string and returns data (or raises
[`UsageError`][installer.core.errors.UsageError] with the allowed values), so
an invalid setting is refused before anything starts. The names and accepted
values are also what the docs' table of launch variables is generated from.
The shell quoting on both sides lives here too:
[`split_extra_args`][installer.plan.launch_settings.split_extra_args] reads
`COMFY_EXTRA_ARGS` the way the platform's shell would, and
[`join_command_line`][installer.plan.launch_settings.join_command_line] writes a
command back as one line to paste.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence

from installer.attention.shim.routes import COUNTS_ENV, ROUTES_ENV
from installer.core.errors import UsageError

MARKER_ENV = "COMFY_INSTALL_TUNING"
EXTRA_ARGS_ENV = "COMFY_EXTRA_ARGS"
WARMUP_ENV = "ENABLE_STARTUP_WARMUP"

BOOL_VALUES = ("1", "0", "true", "false", "yes", "no", "on", "off")
MATMUL_PRECISIONS = ("highest", "high", "medium")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
DYNAMIC_VALUES = (*BOOL_VALUES, "auto")
COMMON_BACKENDS = ("inductor", "cudagraphs", "eager", "aot_eager")
BOOL_VARIABLES = (
    "ENABLE_TF32",
    "ENABLE_CUDNN_BENCHMARK",
    "ENABLE_TORCH_COMPILE",
    "TORCH_COMPILE_FULLGRAPH",
    MARKER_ENV,
)
TUNING_VARIABLES = (
    "PYTORCH_ALLOC_CONF",
    "PYTORCH_CUDA_ALLOC_CONF",
    "ENABLE_TF32",
    "ENABLE_CUDNN_BENCHMARK",
    "MATMUL_PRECISION",
    "ENABLE_TORCH_COMPILE",
    "TORCH_COMPILE_BACKEND",
    "TORCH_COMPILE_MODE",
    "TORCH_COMPILE_FULLGRAPH",
    "TORCH_COMPILE_DYNAMIC",
    MARKER_ENV,
    ROUTES_ENV,
    COUNTS_ENV,
)
RELEVANT_VARIABLES = (
    *TUNING_VARIABLES,
    WARMUP_ENV,
    EXTRA_ARGS_ENV,
    "CUDA_VISIBLE_DEVICES",
    "PYTHONIOENCODING",
    "TORCHINDUCTOR_CACHE_DIR",
    "TRITON_CACHE_DIR",
)
_BACKEND_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]*$")


def parse_flag(name: str, value: str) -> bool:
    """Read a boolean environment value the way the shim reads it.

    Args:
        name: The variable's name (for the error message).
        value: Its value: 1/0, true/false, yes/no or on/off, any case.

    Returns:
        The boolean.

    Raises:
        UsageError: The value is none of those.
    """
    text = value.strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise _invalid([f"{name}={value} is not a boolean: use one of {', '.join(BOOL_VALUES)}"])


def _invalid(problems: list[str]) -> UsageError:
    return UsageError(
        "Invalid launch setting" + ("s" if len(problems) > 1 else "") + ": " + "; ".join(problems),
        "Fix or unset these environment variables, then launch again.",
    )


def user_settings(environ: Mapping[str, str]) -> dict[str, str]:
    """Return the launch-related variables the user set (empty values count as unset).

    Args:
        environ: The user's environment.

    Returns:
        ``{name: value}`` for every variable of ``RELEVANT_VARIABLES`` with a value.
    """
    return {name: environ[name] for name in RELEVANT_VARIABLES if environ.get(name, "").strip()}


def validate_settings(environ: Mapping[str, str], *, tune: bool = True) -> None:
    """Refuse invalid tuning values before anything starts, listing the allowed ones.

    Args:
        environ: The user's environment.
        tune: Whether tuning is on; with `--no-tune` only `ENABLE_STARTUP_WARMUP`
            is read (the tuning variables are ignored), so only it is checked.

    Raises:
        UsageError: One or more values are invalid (every problem is listed).
    """
    settings = user_settings(environ)
    problems: list[str] = []

    def check(name: str, allowed: Sequence[str]) -> None:
        value = settings.get(name)
        if value is not None and value.strip().lower() not in allowed:
            problems.append(f"{name}={value} is not valid: use one of {', '.join(allowed)}")

    check(WARMUP_ENV, BOOL_VALUES)
    if tune:
        for name in BOOL_VARIABLES:
            check(name, BOOL_VALUES)
        check("MATMUL_PRECISION", MATMUL_PRECISIONS)
        check("TORCH_COMPILE_MODE", COMPILE_MODES)
        check("TORCH_COMPILE_DYNAMIC", DYNAMIC_VALUES)
        backend = settings.get("TORCH_COMPILE_BACKEND")
        if backend is not None and not _BACKEND_NAME.match(backend.strip()):
            problems.append(
                f"TORCH_COMPILE_BACKEND={backend} is not a backend name "
                f"(for example {', '.join(COMMON_BACKENDS)})"
            )
    if problems:
        raise _invalid(problems)


def split_extra_args(text: str, platform: str) -> tuple[str, ...]:
    r"""Split `COMFY_EXTRA_ARGS` into arguments the way the platform's shell would.

    POSIX rules on Linux (quotes and backslash escapes); on Windows, quotes group
    words and backslashes are kept, so `C:\\models\\x` survives.

    Args:
        text: The variable's value.
        platform: `linux` or `windows`.

    Returns:
        The arguments.

    Raises:
        UsageError: A quote is not closed.
    """
    try:
        if platform == "windows":
            parts = shlex.split(text, posix=False)
            return tuple(
                p[1:-1] if len(p) >= 2 and p[0] == p[-1] and p[0] in "\"'" else p for p in parts
            )
        return tuple(shlex.split(text))
    except ValueError as exc:
        raise UsageError(
            f"{EXTRA_ARGS_ENV} cannot be split into arguments: {exc} ({text!r}).",
            "Close the quote, or quote arguments that hold spaces.",
        ) from exc


def find_option(args: Sequence[str], name: str) -> tuple[bool, str | None]:
    """Return whether option ``name`` is in ``args``, and its value (the last one wins).

    Args:
        args: ComfyUI's arguments.
        name: The option, e.g. `--port`; `--port 8189` and `--port=8189` both count.

    Returns:
        ``(found, value)``; the value is None when the option has none.
    """
    found, value = False, None
    for index, arg in enumerate(args):
        if arg == name:
            found = True
            following = args[index + 1] if index + 1 < len(args) else None
            value = following if following is not None and not following.startswith("-") else None
        elif arg.startswith(name + "="):
            found, value = True, arg.split("=", 1)[1]
    return found, value


def join_command_line(argv: Sequence[str], platform: str) -> str:
    """Return ``argv`` as one line to paste into the platform's shell.

    POSIX quoting (`shlex.quote`) on Linux; on Windows the MS C runtime's rules,
    as `subprocess.list2cmdline` writes them (an argument with a space or tab, or
    an empty one, is put in double quotes; a double quote is escaped with a
    backslash, and the backslashes before it are doubled).

    Args:
        argv: The command and its arguments.
        platform: `linux` or `windows`.

    Returns:
        The command line.
    """
    if platform != "windows":
        return " ".join(shlex.quote(arg) for arg in argv)
    return " ".join(_windows_quote(arg) for arg in argv)


def _windows_quote(arg: str) -> str:
    quote = " " in arg or "\t" in arg or not arg
    out: list[str] = []
    backslashes = 0
    for char in arg:
        if char == "\\":
            backslashes += 1
        elif char == '"':
            out.append("\\" * (backslashes * 2) + '\\"')
            backslashes = 0
        else:
            out.append("\\" * backslashes + char)
            backslashes = 0
    if quote:
        # Backslashes before the closing quote are doubled, so it stays a quote.
        return '"' + "".join(out) + "\\" * (backslashes * 2) + '"'
    return "".join(out) + "\\" * backslashes
