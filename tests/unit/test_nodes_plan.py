"""The pure decisions of `comfy-install nodes`: requirements, held packages, conflicts, removal."""

from __future__ import annotations

import pytest

from installer.core.errors import UsageError
from installer.core.lockfile import parse_entries
from installer.edges.uv_output import resolution_conflict
from installer.plan.nodes import (
    apply_skips,
    explain_conflict,
    held_conflict,
    held_versions,
    missing_classes,
    node_requirements,
    plan_removal,
    requirements_txt_lines,
    to_install,
    workflow_classes,
)

UV_CONFLICT = """\
error: No solution found when resolving dependencies:
  ╰─▶ Because all versions of helper-lib depend on shared-lib>=2 and you require
      shared-lib==1.0, we can conclude that your requirements and all versions of helper-lib
      are incompatible.
      And because you require helper-lib, we can conclude that your requirements are
      unsatisfiable.
"""

UV_TORCH = """\
  × No solution found when resolving dependencies:
  ╰─▶ Because only old-thing==1.0 is available and old-thing==1.0 depends on torch<2.5, we
      can conclude that all versions of old-thing depend on torch<2.5.
      And because you require torch==2.11.0 and old-thing, we can conclude that your
      requirements are unsatisfiable.
"""

RESOLVED = """\
plain-new==1.3 \\
    --hash=sha256:aaaa
    # via -r custom-node-plain.txt
only-mine==1.0 \\
    --hash=sha256:bbbb
    # via -r custom-node-mine.txt
only-dep==1.0 \\
    --hash=sha256:cccc
    # via only-mine
shared-dep==1.0 \\
    --hash=sha256:dddd
    # via
    #   -r comfyui-requirements.txt
    #   only-mine
torch==2.9.1 \\
    --hash=sha256:eeee
    # via -r comfyui-requirements.txt
"""


def test_requirements_txt_is_read_as_manager_reads_it() -> None:
    text = "# c\nfoo>=1  # pinned\n\n--extra-index-url https://x\n-r other.txt\n"
    text += "bar[x]==2\nnot a req!\n"
    found, ignored = requirements_txt_lines(text)
    assert found == ["foo>=1", "bar[x]==2"]
    assert ignored == ["--extra-index-url https://x", "-r other.txt", "not a req!"]


def test_pyproject_dependencies_join_requirements_txt_without_duplicates() -> None:
    pyproject = {"project": {"dependencies": ["foo>=0.5", "baz"]}}
    found = node_requirements("foo>=1\n", pyproject, has_install_script=True)
    assert found.requirements == ("foo>=1", "baz")
    assert found.files == ("requirements.txt", "pyproject.toml", "install.py")
    assert found.install_script


@pytest.mark.parametrize(
    ("requirement", "conflicts"),
    [
        ("torch==2.1.0", True),
        ("torch>=2.0", False),
        ("torch", False),
        ("torchvision<0.20", True),
        ("xformers==0.0.33", False),
        ("torch==2.1.0; sys_platform == 'nonexistent'", False),
    ],
)
def test_a_held_requirement_is_fine_only_when_the_held_version_satisfies_it(
    requirement: str, conflicts: bool
) -> None:
    held = held_versions({"torch": "2.9.1+cu128", "torchvision": "0.24.1", "xformers": "0.0.33",
                          "numpy": "2.0"})  # fmt: skip
    assert "numpy" not in held
    found = held_conflict("n", [requirement], held, "comfy-install nodes add D n")
    assert (found is not None) == conflicts
    if found is not None:
        assert found.requirement == requirement
        assert "held" in found.fights
        assert "--skip-requirement" in found.hint and "--no-deps" in found.hint
        assert "--ref REF" in found.hint


def test_skips_must_name_a_requirement_of_the_node() -> None:
    assert apply_skips(["Foo_Bar>=1", "baz"], ["foo-bar"], "n") == (["baz"], ["Foo_Bar>=1"])
    with pytest.raises(UsageError, match="does not require it"):
        apply_skips(["baz"], ["nope"], "n")


def test_uv_conflict_names_the_new_nodes_requirement_and_the_installed_node() -> None:
    conflict = resolution_conflict(UV_CONFLICT)
    assert conflict is not None
    assert "shared-lib==1.0" in conflict.requirements
    assert ("helper-lib", "shared-lib>=2") in conflict.depends
    sources = {"ComfyUI": ["requests"], "pins-old": ["shared-lib==1.0"], "new": ["helper-lib"]}
    why = explain_conflict("new", ["helper-lib"], conflict, sources, {}, "cmd")
    assert why.requirement == "helper-lib"
    assert why.fights == "shared-lib==1.0 (required by custom node pins-old)"
    assert why.message.startswith("custom node new cannot be installed")


def test_a_pin_of_the_same_project_by_comfyui_is_named_as_the_other_side() -> None:
    from installer.core.nodes import ResolutionConflict

    conflict = ResolutionConflict(("shared-lib==2.0", "shared-lib==1.0"))
    sources = {"ComfyUI": ["shared-lib==2.0"], "pins-old": ["shared-lib==1.0"]}
    why = explain_conflict("pins-old", ["shared-lib==1.0"], conflict, sources, {}, "cmd")
    assert why.requirement == "shared-lib==1.0"
    assert why.fights == "shared-lib==2.0 (required by ComfyUI)"


def test_uv_conflict_through_a_dependency_on_torch_names_the_held_torch() -> None:
    conflict = resolution_conflict(UV_TORCH)
    assert conflict is not None
    why = explain_conflict(
        "n", ["old-thing", "other"], conflict, {"n": ["old-thing"]}, {"torch": "2.11.0"}, "c"
    )
    assert why.requirement == "old-thing"
    assert "the held torch 2.11.0" in why.fights


def test_not_a_conflict_is_none() -> None:
    assert resolution_conflict("error: Failed to fetch https://x") is None


def test_to_install_skips_what_the_venv_has_and_the_held_packages() -> None:
    entries = parse_entries(RESOLVED.splitlines())
    wanted = to_install(entries, {"shared-dep": "1.0", "plain-new": "1.2"})
    assert [e.name for e in wanted] == ["plain-new", "only-mine", "only-dep"]


def test_removal_takes_only_what_nobody_else_needs() -> None:
    installed = {"only-mine": "1.0", "only-dep": "1.0", "shared-dep": "1.0"}
    candidates = ["only-mine", "only-dep", "shared-dep", "gone", "torch"]
    removal = plan_removal({"shared-dep", "torch", "requests"}, candidates, installed)
    assert removal.remove == ["only-dep", "only-mine"]
    assert removal.kept == {
        "shared-dep": "another node or ComfyUI needs it", "gone": "not in the venv",
        "torch": "held",
    }  # fmt: skip


def test_workflow_classes_from_the_api_and_the_ui_format() -> None:
    api = {"1": {"class_type": "KSampler", "inputs": {}}, "2": {"class_type": "Foo"}}
    assert workflow_classes(api) == ["Foo", "KSampler"]
    ui = {
        "nodes": [{"type": "KSampler"}, {"type": "Reroute"}, {"type": "sub-1"}, {"type": "Bar"}],
        "links": [],
        "definitions": {"subgraphs": [{"id": "sub-1", "nodes": [{"type": "Inner"}]}]},
    }
    assert workflow_classes(ui) == ["Bar", "Inner", "KSampler"]
    assert missing_classes(["Bar", "KSampler"], ["KSampler"]) == ["Bar"]
    with pytest.raises(UsageError):
        workflow_classes({"1": {"inputs": {}}})


@pytest.mark.parametrize(
    ("source", "name"),
    [
        ("https://github.com/owner/ComfyUI-Foo.git", "ComfyUI-Foo"),
        ("git@github.com:owner/ComfyUI-Bar.git", "ComfyUI-Bar"),
        ("/srv/nodes/baz/", "baz"),
        ("C:\\nodes\\qux.bundle", "qux"),
    ],
)
def test_a_node_folder_is_named_after_its_source(source: str, name: str) -> None:
    from installer.nodes.context import node_name

    assert node_name(source) == name


def test_a_source_without_a_usable_name_asks_for_one() -> None:
    from installer.nodes.context import node_name

    with pytest.raises(UsageError, match="cannot name a node folder"):
        node_name("https://")
