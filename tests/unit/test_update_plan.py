"""`update`'s up-to-date judgement: the cheap comparison, then the plan of the current root."""

from __future__ import annotations

from installer.plan.update import Change, UpdateDiff, judge_current


def diff(up_to_date: bool) -> UpdateDiff:
    return UpdateDiff(
        install_dir="/srv/comfy",
        current_generation=1,
        new_generation=2,
        new_root="/srv/comfy/.comfy-install/generations/2",
        comfyui=Change(name="ComfyUI", old="a" * 40, new="a" * 40),
        torch_build=Change(name="torch build", old="CPU", new="cpu (CPU)"),
        switch="rename(2)",
        up_to_date=up_to_date,
    )


def test_a_changed_commit_torch_set_or_node_is_not_up_to_date_without_planning() -> None:
    asked: list[bool] = []

    def lacks() -> str | None:
        asked.append(True)
        return None

    judged = judge_current(diff(False), lacks)
    assert not judged.up_to_date and judged.outdated is None
    assert not asked, "the current root was planned though a new generation is built anyway"


def test_the_same_pins_are_up_to_date_only_when_every_step_is_done() -> None:
    assert judge_current(diff(True), lambda: None).up_to_date
    why = "requirements: inputs changed (extra)"
    judged = judge_current(diff(True), lambda: why)
    assert not judged.up_to_date
    assert judged.outdated == why
    assert judged.model_dump(mode="json")["outdated"] == why
