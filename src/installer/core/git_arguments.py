"""Values that reach git's command line: a URL, path or ref must never be read as an option.

Pure checks shared by the configuration models (`dependencies.json`) and the planner
(`--comfyui-url`, `--comfyui-ref`); the git edge also puts every such value after `--`.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field


def git_argument_problem(value: str, what: str = "a git URL") -> str | None:
    """Why ``value`` cannot be given to git as a URL, path or ref, or None when it can.

    A value that begins with `-` would be read by git as an option (`--upload-pack=...` runs
    a program), and a line break or NUL ends the argument early; both are refused wherever a
    URL or ref reaches git: in the configuration files and on the command line.

    Args:
        value: The URL, path or ref.
        what: What it is, for the message (e.g. `--comfyui-url`).
    """
    if value.lstrip().startswith("-"):
        return (
            f"{what} {value!r} begins with '-': git would read it as an option, not as a "
            "repository or ref"
        )
    if any(char in value for char in "\n\r\0"):
        return f"{what} {value!r} holds a line break or NUL character"
    return None


def _git_argument(value: str) -> str:
    problem = git_argument_problem(value, "the value")
    if problem is not None:
        raise ValueError(problem)
    return value


GitArgument = Annotated[str, Field(min_length=1), AfterValidator(_git_argument)]
"""A URL, path or ref that is passed to git: non-empty, never read as an option."""
