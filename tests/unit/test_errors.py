"""Errors the user sees: exit codes of the CLI contract and the documented catalogue."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import installer
from installer.core import errors
from installer.core.errors import (
    ConfigError,
    EnvironmentUnsupportedError,
    ExitCode,
    InstallerError,
    IntegrityError,
    InterruptedByUserError,
    LockHeldError,
    NetworkError,
    PlanError,
    StepFailedError,
    UsageError,
    error_catalogue,
)


def subclasses(cls: type) -> set[type]:
    found = set(cls.__subclasses__())
    for sub in list(found):
        found |= subclasses(sub)
    return found


def installer_error_classes() -> set[type]:
    """Every InstallerError subclass defined anywhere in the installer package."""
    for module in pkgutil.walk_packages(installer.__path__, "installer."):
        if module.name != "installer.__main__":
            importlib.import_module(module.name)
    return {c for c in subclasses(InstallerError) if c.__module__.startswith("installer.")}


def test_exit_codes_of_the_cli_contract() -> None:
    assert (ExitCode.OK, ExitCode.STEP_FAILED, ExitCode.USAGE) == (0, 1, 2)
    assert (ExitCode.ENVIRONMENT, ExitCode.INTEGRITY, ExitCode.INTERRUPTED) == (3, 4, 130)


@pytest.mark.parametrize(
    ("cls", "code"),
    [
        (UsageError, 2),
        (ConfigError, 2),
        (PlanError, 2),
        (EnvironmentUnsupportedError, 3),
        (LockHeldError, 3),
        (StepFailedError, 1),
        (NetworkError, 1),
        (IntegrityError, 4),
        (InterruptedByUserError, 130),
    ],
)
def test_error_exit_codes(cls: type[InstallerError], code: int) -> None:
    error = cls("something happened")
    assert error.exit_code == code
    assert error.hint == cls.default_hint
    assert error.hint


def test_message_and_hint() -> None:
    error = UsageError("--gpu ampere: expected 8.9.", "Pass a number.")
    assert (error.message, error.hint) == ("--gpu ampere: expected 8.9.", "Pass a number.")
    assert str(error) == "--gpu ampere: expected 8.9. (Pass a number.)"


def test_catalogue_covers_the_errors_module() -> None:
    catalogue = {entry.name: entry for entry in error_catalogue()}
    defined = {
        name
        for name, obj in vars(errors).items()
        if inspect.isclass(obj) and issubclass(obj, InstallerError)
    }
    assert defined <= set(catalogue)
    classes = {c.__name__: c for c in installer_error_classes() | {InstallerError}}
    for entry in catalogue.values():
        cls = classes[entry.name]
        assert entry.summary, entry.name
        assert entry.cause, entry.name
        assert entry.fix, entry.name
        assert "Cause:" not in entry.fix and "Fix:" not in entry.cause
        assert entry.exit_code == int(cls.exit_code)
        assert entry.code == cls.code


def test_error_codes_are_distinct() -> None:
    codes = [entry.code for entry in error_catalogue()]
    assert len(codes) == len(set(codes)), codes


def test_catalogue_lists_every_installer_error_subclass() -> None:
    names = {entry.name for entry in error_catalogue()}
    missing = {c.__name__ for c in installer_error_classes()} - names
    assert not missing


def test_every_installer_error_subclass_documents_cause_and_fix() -> None:
    for cls in installer_error_classes() | {InstallerError}:
        doc = inspect.getdoc(cls) or ""
        assert "Cause:" in doc, cls
        assert "Fix:" in doc, cls
