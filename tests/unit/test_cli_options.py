"""The options module: every shared flag declared once, requests built by keyword from it."""

from __future__ import annotations

import dataclasses
import inspect
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from installer.cli import options
from installer.cli.options import build_request

CLI = Path(options.__file__).parent
# Flags of more than one command: declared in cli/options.py and nowhere else.
SHARED_FLAGS = (
    "--json", "--verbose", "--quiet", "--dry-run", "--config", "--tools-manifest",
    "--lock-dir", "--no-lock", "--gpu", "--cuda-driver", "--cuda-toolkit", "--platform",
    "--python", "--port", "--comfyui-ref", "--torch-index", "--extra-index-url",
    "--find-links", "--offline", "--allow-unverified", "--only", "--skip", "--force",
)  # fmt: skip


@pytest.mark.parametrize("flag", SHARED_FLAGS)
def test_a_shared_flag_is_declared_only_in_the_options_module(flag: str) -> None:
    declared = {
        path.name
        for path in CLI.glob("*.py")
        if re.search(rf'typer\.Option\(\s*"{re.escape(flag)}[/"]', path.read_text("utf-8"))
    }
    assert declared == {"options.py"}


@dataclasses.dataclass(frozen=True)
class _Request:
    install_dir: Path
    name: str | None = None
    links: tuple[str, ...] = ()
    flag: bool = False


def test_build_request_takes_fields_by_name_and_repeatables_as_tuples() -> None:
    values = {"name": "x", "links": ["a", "b"], "flag": True, "as_json": True, "verbose": False}
    request = build_request(_Request, values, install_dir=Path("/abs"))
    assert request == _Request(Path("/abs"), "x", ("a", "b"), True)
    assert build_request(_Request, {"links": None}, install_dir=Path("/d")).links == ()


def test_build_request_refuses_a_field_it_does_not_have() -> None:
    with pytest.raises(TypeError, match="_Request has no field nmae"):
        build_request(_Request, {}, install_dir=Path("/d"), nmae="typo")
    with pytest.raises(TypeError, match="not a dataclass"):
        build_request(dict, {})


def _commands() -> list[tuple[Callable[..., Any], type, set[str]]]:
    from installer.cli.image import build, context
    from installer.cli.install import CLI_ONLY, install
    from installer.cli.lock import lock
    from installer.cli.tune import tune
    from installer.commands.lock import LockRequest
    from installer.commands.tune import TuneRequest
    from installer.image.prepare import ImageRequest
    from installer.plan.records import InstallOptions

    output = {"as_json", "verbose", "quiet"}
    return [
        (install, InstallOptions, set(CLI_ONLY)),
        (lock, LockRequest, output),
        (context, ImageRequest, output),
        (build, ImageRequest, output | {"engine"}),
        (tune, TuneRequest, output | {"ctx"}),
    ]


@pytest.mark.parametrize("index", range(5))
def test_every_parameter_of_a_command_is_a_field_of_its_request(index: int) -> None:
    """A misspelt parameter would silently leave its field at the default."""
    command, request, cli_only = _commands()[index]
    fields = {field.name for field in dataclasses.fields(request)}
    parameters = set(inspect.signature(command).parameters)
    assert parameters - cli_only <= fields, sorted(parameters - cli_only - fields)
    assert not (cli_only & fields)
