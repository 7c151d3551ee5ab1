"""`update`'s up-to-date judgement: the cheap comparison, then the plan of the current root."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

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


def test_an_update_reuses_the_recorded_inputs_but_not_a_shipped_config_or_the_ref(
    tmp_path: Path,
) -> None:
    from installer.commands.update import options_from_record
    from installer.core.records import RecordedInputs
    from installer.plan.records import InstallOptions

    mine = tmp_path / "mine.json"
    mine.write_text("{}")
    recorded = RecordedInputs(
        config_path=str(mine), gpu="none", index_url="http://index/simple",
        find_links=["/wheels"], comfyui_ref="v1", torch_index="cpu",
    )  # fmt: skip
    options, lines = options_from_record(InstallOptions(install_dir=tmp_path), recorded)
    assert options.config_path == mine and options.gpu == "none"
    assert options.index_url == "http://index/simple" and options.find_links == ("/wheels",)
    assert options.comfyui_ref is None, "update moves the ref: it is never reused"
    assert {"config_path", "gpu", "index_url", "find_links"} <= options.given
    assert f"config: {mine} (recorded by the install)" in lines
    assert "gpu: none (recorded by the install)" in lines

    # What the user gives wins.
    given = InstallOptions(install_dir=tmp_path, gpu="8.9", given=frozenset({"gpu"}))
    assert options_from_record(given, recorded)[0].gpu == "8.9"


@pytest.mark.parametrize(
    "shipped",
    [
        "this",
        "/old/venv/lib/python3.12/site-packages/installer/_data/dependencies.json",
        "checkout",
    ],
)
def test_a_recorded_shipped_config_is_this_comfy_installs_own(shipped: str, tmp_path: Path) -> None:
    """The shipped dependencies.json of the comfy-install that installed (this one's, an
    installed package's of any version, gone or not, or a source checkout's) means this
    comfy-install's pins."""
    from installer.commands.update import options_from_record
    from installer.core.config_files import shipped_path
    from installer.core.records import RecordedInputs
    from installer.plan.records import InstallOptions

    if shipped == "this":
        path = shipped_path("dependencies.json")
    elif shipped == "checkout":
        (tmp_path / "src" / "installer" / "core").mkdir(parents=True)
        (tmp_path / "src" / "installer" / "core" / "config_files.py").write_text("")
        path = tmp_path / "dependencies.json"
        path.write_text("{}")
    else:
        path = Path(shipped)
    recorded = RecordedInputs(config_path=str(path), gpu="none")
    options, lines = options_from_record(InstallOptions(install_dir=tmp_path), recorded)
    assert options.config_path is None
    assert "config_path" not in options.given, "the new generation would record it"
    assert options.gpu == "none"
    assert any(line.startswith("config: this comfy-install's shipped") for line in lines)


def test_a_recorded_config_that_is_gone_is_a_usage_error(tmp_path: Path) -> None:
    from installer.commands.update import options_from_record
    from installer.core.errors import UsageError
    from installer.core.records import RecordedInputs
    from installer.plan.records import InstallOptions

    gone = tmp_path / "mine.json"
    with pytest.raises(UsageError) as caught:
        options_from_record(
            InstallOptions(install_dir=tmp_path), RecordedInputs(config_path=str(gone))
        )
    assert caught.value.exit_code == 2
    assert f"--config {gone}" in caught.value.message and "--config FILE" in caught.value.hint


def test_a_config_a_snapshot_restore_staged_gives_way_to_the_shipped_pins(tmp_path: Path) -> None:
    """The staged snapshot config pins the snapshot (and lives in a generation a prune
    removes): an update plans from this comfy-install's pins, and carries over only the
    install's own parts of it (`carried_config`, below)."""
    from installer.commands.update import options_from_record
    from installer.core.records import RecordedInputs
    from installer.plan.records import InstallOptions

    staged = tmp_path / ".comfy-install" / "generations" / "2" / ".comfy-install" / "snapshot"
    (staged / "locks").mkdir(parents=True)
    (staged / "dependencies.json").write_text("{}")
    recorded = RecordedInputs(
        config_path=str(staged / "dependencies.json"), lock_dir=str(staged / "locks")
    )
    options, lines = options_from_record(InstallOptions(install_dir=tmp_path), recorded, tmp_path)
    assert options.config_path is None and options.lock_dir is None
    assert not {"config_path", "lock_dir"} & options.given
    assert any("staged by a snapshot restore" in line for line in lines)


def test_a_staged_config_carries_its_nodes_extras_and_source_onto_the_shipped_pins() -> None:
    from installer.plan.update import carried_config, carried_lines

    shipped = {
        "python": {"default": "3.12"},
        "comfyui": {"url": "https://github.com/x/ComfyUI.git", "ref": "v2", "commit": "b" * 40},
        "torch": {"packages": ["torch==2.11.0"]},
        "custom_nodes": [],
        "extra_requirements": ["requests"],
    }
    node = {"name": "snap-node", "url": "/srv/snap-node", "commit": "c" * 40}
    staged = {
        "python": {"default": "3.11"},
        "comfyui": {"url": "/srv/comfy-mirror", "ref": "v1", "commit": "a" * 40},
        "torch": {"packages": ["torch==2.9.1"]},
        "custom_nodes": [dict(node, requirements=False)],
        "extra_requirements": ["plain-new==1.2"],
    }
    merged = carried_config(shipped, staged)
    assert merged["comfyui"] == {"url": "/srv/comfy-mirror", "ref": "v2", "commit": "b" * 40}
    assert merged["python"] == {"default": "3.12"} and merged["torch"] == shipped["torch"]
    assert merged["custom_nodes"] == [dict(node, requirements=False)]
    assert merged["extra_requirements"] == ["plain-new==1.2"]
    assert shipped["custom_nodes"] == [], "the shipped configuration itself was changed"
    (line,) = carried_lines(merged, "/d/.comfy-install/snapshot/dependencies.json")
    assert "custom_nodes: snap-node; extra_requirements: plain-new==1.2" in line
    assert line.endswith("comfyui.url: /srv/comfy-mirror")


def _example_plan() -> Any:
    """The documented dry-run plan of a cc 9.0 GPU (torch 2.11.0 trio, xformers, triton)."""
    import json

    from installer.plan.records import Plan

    docs = Path(__file__).resolve().parents[2] / "docs" / "examples" / "dry-run-gpu-9.0.json"
    return Plan.model_validate(json.loads(docs.read_text(encoding="utf-8"))["data"])


def test_an_update_holds_the_new_torch_set_and_accelerators_at_their_planned_versions() -> None:
    from installer.plan.update import planned_held

    plan = _example_plan()
    # The venv's torch meets the plan (its local tag is kept); its torchvision is older
    # (the new generation's pin counts); triton is planned as a range: the venv's 3.6.1 counts.
    installed = {"torch": "2.11.0+cu130", "torchvision": "0.25.0", "triton": "3.6.1"}
    held = planned_held(plan, installed)
    assert held == {
        "torch": "2.11.0+cu130",
        "torchvision": "0.26.0",
        "torchaudio": "2.11.0",
        "xformers": "0.0.35",
        "triton": "3.6.1",
        "sageattention": "1.0.6",
    }
    # Without triton in the venv its range names no version: left out, not guessed.
    assert "triton" not in planned_held(plan, {})


def test_a_kept_node_asking_for_another_torch_than_the_update_plans_is_a_conflict() -> None:
    from installer.plan.nodes import held_conflict
    from installer.plan.update import planned_held

    held = planned_held(_example_plan(), {"torch": "2.10.0"})  # the update moves torch on
    found = held_conflict("old-torch", ["torch==2.10.0"], held, "comfy-install")
    assert found is not None and found.node == "old-torch"
    assert found.requirement == "torch==2.10.0" and "torch" in found.fights
    assert held_conflict("fits", ["torch>=2.11"], held, "comfy-install") is None


def test_an_update_adds_the_nodes_index_options_only_for_kept_nodes_and_only_once() -> None:
    from installer.core.uv_options import IndexOptions
    from installer.plan.records import InstallOptions
    from installer.plan.update import node_index_inputs

    options = InstallOptions(install_dir=Path("/srv/comfy"), find_links=("/w/mine",),
                             given=frozenset({"find_links"}))  # fmt: skip
    index = IndexOptions(index_url="https://mirror.invalid/simple", offline=True,
                         find_links=["/w/mine", "/w/node"],
                         extra_index_urls=["https://extra.invalid/simple"])  # fmt: skip

    assert node_index_inputs(options, index, []) == (options, [])
    changed, lines = node_index_inputs(options, index, ["a-node", "b-node"])
    assert changed.find_links == ("/w/mine", "/w/node")
    assert changed.extra_index_urls == ("https://extra.invalid/simple",)
    assert changed.index_url is None and not changed.offline, "the update's own options changed"
    assert {"find_links", "extra_index_urls"} <= changed.given
    assert lines == [
        "find-links: /w/node (recorded by nodes add in nodes.json, for a-node, b-node)",
        "extra-index-url: https://extra.invalid/simple (recorded by nodes add in nodes.json, "
        "for a-node, b-node)",
    ]
    assert node_index_inputs(changed, index, ["a-node"]) == (changed, [])
