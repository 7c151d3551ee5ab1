"""The venv probe follows `.pth` files: a torch imported from another environment is found."""

from __future__ import annotations

from pathlib import Path

from installer.edges.probe import importable_sites, installed_distributions, installed_torch


def make_venv(tmp_path: Path) -> tuple[Path, Path, Path]:
    venv = tmp_path / "venv"
    site = venv / "lib" / "python3.12" / "site-packages"
    site.mkdir(parents=True)
    machine = tmp_path / "machine-site"
    (machine / "torch").mkdir(parents=True)
    (machine / "torch" / "version.py").write_text("__version__ = '2.11.0+cu130'\ncuda = '13.0'\n")
    (machine / "torch-2.11.0.dist-info").mkdir()
    return venv, site, machine


def test_a_torch_reached_through_a_pth_file_is_found(tmp_path: Path) -> None:
    venv, site, machine = make_venv(tmp_path)
    assert installed_torch(venv, "linux") is None  # no .pth yet: not importable, not found
    # As tests/gpu/run_attention.sh builds it: one folder per line, and a line of code.
    (site / "machine-torch.pth").write_text(f"# the machine's packages\n{machine}\n"
                                            f"{tmp_path / 'missing'}\nimport os\n")  # fmt: skip
    torch = installed_torch(venv, "linux")
    assert torch is not None and torch.version == "2.11.0+cu130" and torch.cuda == "13.0"
    assert installed_distributions(venv, "linux")["torch"] == "2.11.0"
    assert importable_sites(venv, "linux") == [site, machine]


def test_the_venvs_own_distribution_wins_over_one_a_pth_file_adds(tmp_path: Path) -> None:
    venv, site, machine = make_venv(tmp_path)
    (site / "machine.pth").write_text("../../../../machine-site\n")  # relative to the site
    (site / "torch-2.12.0.dist-info").mkdir()
    assert importable_sites(venv, "linux") == [site, machine.resolve()]
    assert installed_distributions(venv, "linux")["torch"] == "2.12.0"
