"""The probe finds the nodes `nodes remove` took out, for DIR and for a generation's root.

`nodes.json` lives in DIR only; a generation build (update, restore into an install) plans
step 9 from its own root, so the probe must read DIR's record there too, or an update would
clone a removed configured node into the new generation again.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath, PureWindowsPath

from installer.core.generations import generation_root, owning_install
from installer.core.nodes import NodesState, RemovedNode
from installer.edges.probe import probe_install


def _record_removed(install_dir: Path, name: str) -> None:
    state = install_dir / ".comfy-install"
    state.mkdir(parents=True)
    record = NodesState(removed=[RemovedNode(name=name, commit="a" * 40, moved_to="x")])
    (state / "nodes.json").write_text(record.model_dump_json())


def test_a_generation_root_reads_the_removed_nodes_of_its_dir(tmp_path: Path) -> None:
    install_dir = tmp_path / "inst"
    _record_removed(install_dir, "cfg-node")
    second = Path(generation_root(install_dir, 2, "linux"))
    second.mkdir(parents=True)
    assert probe_install(install_dir, "linux").removed_nodes == {"cfg-node"}
    assert probe_install(second, "linux").removed_nodes == {"cfg-node"}


def test_owning_install_only_strips_a_real_generation_path() -> None:
    inst = PurePosixPath("/srv/inst")
    assert owning_install(inst) == inst
    assert owning_install(inst / ".comfy-install" / "generations" / "7") == inst
    assert owning_install(inst / ".comfy-install" / "generations" / "x") != inst
    assert owning_install(inst / "other" / "generations" / "7") != inst
    win = PureWindowsPath("C:/ComfyUI")
    assert owning_install(win / ".comfy-install" / "generations" / "3") == win
