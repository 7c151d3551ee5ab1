"""The recorded inputs of an install and how a re-run applies them (plan/inputs.py)."""

from __future__ import annotations

import shlex
from pathlib import Path

from installer.core.records import InstallState, RecordedInputs, StepRecord
from installer.plan.inputs import (
    RECORDED_OPTIONS,
    apply_recorded,
    input_arguments,
    inputs_of,
    planned_inputs,
    recorded_inputs,
    rerun_command,
    withheld_warnings,
)
from installer.plan.records import InstallOptions

DIR = Path("/srv/comfy")
RECORDED = RecordedInputs(
    config_path="/etc/deps.json",
    comfyui_url="/srv/ComfyUI.bundle",
    comfyui_ref="v0.33.0",
    torch_index="default",
    extra_index_urls=["https://a.example/simple", "https://b.example/simple"],
    no_lock=True,
)


def test_every_recorded_option_is_a_field_of_both_records() -> None:
    fields = set(InstallOptions.__dataclass_fields__)
    assert set(RECORDED_OPTIONS) <= fields
    assert set(RECORDED_OPTIONS) == set(RecordedInputs.model_fields)


def test_the_install_command_marks_every_recorded_option_given() -> None:
    from installer.cli.install import _RECORDABLE

    assert set(_RECORDABLE.values()) == set(RECORDED_OPTIONS)


def test_options_not_given_come_from_the_record() -> None:
    options, record = apply_recorded(InstallOptions(install_dir=DIR), RECORDED)
    assert options.config_path == Path("/etc/deps.json")
    assert options.comfyui_url == "/srv/ComfyUI.bundle" and options.comfyui_ref == "v0.33.0"
    assert options.torch_index == "default" and options.no_lock is True
    assert options.extra_index_urls == ("https://a.example/simple", "https://b.example/simple")
    assert options.recorded == {
        "config_path", "comfyui_url", "comfyui_ref", "torch_index", "extra_index_urls", "no_lock"
    }  # fmt: skip
    assert record == RECORDED
    assert {item.source for item in planned_inputs(options)} == {"recorded"}


def test_a_given_option_wins_and_is_recorded() -> None:
    given = InstallOptions(install_dir=DIR, torch_index="cpu", given=frozenset({"torch_index"}))
    options, record = apply_recorded(given, RECORDED)
    assert options.torch_index == "cpu" and "torch_index" not in options.recorded
    assert record.torch_index == "cpu" and record.comfyui_ref == "v0.33.0"
    shown = {item.option: (item.value, item.source) for item in planned_inputs(options)}
    assert shown["--torch-index"] == ("cpu", "given")
    assert shown["--comfyui-ref"] == ("v0.33.0", "recorded")


def test_a_bare_first_install_records_nothing() -> None:
    options, record = apply_recorded(InstallOptions(install_dir=DIR), RecordedInputs())
    assert options.recorded == frozenset() and record == RecordedInputs()
    assert inputs_of(options) == RecordedInputs()


def test_a_value_that_held_a_secret_is_not_reused() -> None:
    redacted = RecordedInputs(index_url="https://user:***@mirror.example/simple")
    options, record = apply_recorded(InstallOptions(install_dir=DIR), redacted)
    assert options.index_url is None and options.withheld == {"index_url"}
    assert record.index_url is None
    assert "pass --index-url again" in withheld_warnings(options)[0]


def test_the_rerun_command_repeats_every_input() -> None:
    words = shlex.split(rerun_command(DIR, RECORDED, "--force", "requirements"))
    assert words[:3] == ["comfy-install", "install", str(DIR)]
    assert words[-2:] == ["--force", "requirements"]
    assert words.count("--extra-index-url") == 2 and "--no-lock" in words
    assert words[words.index("--comfyui-url") + 1] == "/srv/ComfyUI.bundle"
    assert input_arguments(RECORDED, only=["torch_index"]) == ["--torch-index", "default"]


def test_a_state_from_before_inputs_were_recorded() -> None:
    state = InstallState(
        steps={
            "comfyui": StepRecord(
                status="done", inputs={"url": "/srv/c.bundle", "target": "v0.33.0"}
            ),
            "torch": StepRecord(status="done", inputs={"variant": "cu128", "index_url": "x"}),
        }
    )
    derived = recorded_inputs(state)
    assert derived.comfyui_url == "/srv/c.bundle" and derived.comfyui_ref == "v0.33.0"
    assert derived.torch_index == "cu128"
    pinned = state.model_copy(deep=True)
    pinned.steps["comfyui"].inputs["target"] = "a" * 40
    pinned.steps["torch"].inputs["index_url"] = None
    derived = recorded_inputs(pinned)
    assert derived.comfyui_ref is None, "the configuration's pin is not a --comfyui-ref"
    assert derived.torch_index == "default"
    assert recorded_inputs(None) == RecordedInputs()
    assert recorded_inputs(InstallState(inputs=RecordedInputs())) == RecordedInputs()
