"""A re-run continues the install it finds (issue 33, part 3).

The base install was made with `--config`, `--torch-index default`, `--index-url`,
`--python` and `--gpu 12.0 --cuda-driver 12.8`. A bare `comfy-install install DIR` must
plan that same install (every step up to date, torch untouched), say in the plan which
inputs it reused, let a new option win over a recorded one, and every hint that names a
command (doctor's, the summary's `Next:` after a failure) must repeat the recorded inputs.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from faults.faultkit import (
    Case,
    Snapshot,
    assert_nothing_lost,
    error_and_hint,
    free_port,
    invoke,
)
from support.cli import read_state


def dry_run(case: Case, *args: str) -> dict:  # type: ignore[type-arg]
    """The plan of `install DIR ARGS --dry-run --json` (no other option)."""
    done = invoke(["install", str(case.dir), "--dry-run", "--json", *args], case.env)
    assert done.code == 0, done.stderr
    return json.loads(done.stdout)["data"]  # type: ignore[no-any-return]


def test_the_install_records_its_inputs(case: Case) -> None:
    recorded = read_state(case.dir)["inputs"]
    assert recorded["torch_index"] == "default"
    assert recorded["gpu"] == "12.0" and recorded["cuda_driver"] == "12.8"
    assert Path(recorded["config_path"]).is_absolute()
    assert recorded["comfyui_url"] is None, "not given: the configuration decides"


def test_a_bare_rerun_plans_the_install_it_finds(case: Case) -> None:
    before = Snapshot.take(case.dir)
    plan = dry_run(case)
    sources = {item["option"]: item["source"] for item in plan["inputs"]}
    assert sources["--torch-index"] == "recorded" and sources["--config"] == "recorded"
    assert plan["torch"]["index_url"] is None  # uv's default index, as installed
    assert plan["comfyui"]["url"] == str(case.fixtures.comfy_repo)
    assert [s["id"] for s in plan["steps"] if s["action"] == "run"] == []
    text = invoke(["install", str(case.dir), "--dry-run"], case.env)
    assert "--torch-index default (recorded)" in text.stdout
    done = invoke(["install", str(case.dir), "--json"], case.env)
    assert done.code == 0, done.stderr
    results = {step["id"]: step["result"] for step in json.loads(done.stdout)["data"]["steps"]}
    assert set(results.values()) <= {"up to date", "skipped"}, results
    assert_nothing_lost(before)


def test_a_given_option_wins_over_the_recorded_one(case: Case) -> None:
    plan = dry_run(case, "--torch-index", "cpu")
    chosen = {item["option"]: (item["value"], item["source"]) for item in plan["inputs"]}
    assert chosen["--torch-index"] == ("cpu", "given")
    assert plan["torch"]["variant"] == "cpu"
    torch = next(step for step in plan["steps"] if step["id"] == "torch")
    assert torch["action"] == "run" and "inputs changed" in torch["reason"]


def test_an_explicit_default_value_is_given_not_recorded(case: Case) -> None:
    plan = dry_run(case, "--torch-index", "auto")
    chosen = {item["option"]: (item["value"], item["source"]) for item in plan["inputs"]}
    assert chosen["--torch-index"] == ("auto", "given")


def test_doctor_hint_repeats_the_recorded_inputs(case: Case) -> None:
    (case.dir / "run_comfyui.sh").unlink()
    report = invoke(["doctor", str(case.dir), "--json"], case.env)
    checks = json.loads(report.stdout)["data"]["checks"]
    launcher = next(c for c in checks if c["section"] == "install" and c["name"] == "launchers")
    words = shlex.split(launcher["hint"])
    assert words[:3] == ["comfy-install", "install", str(case.dir)]
    assert words[words.index("--torch-index") + 1] == "default"
    assert words[words.index("--gpu") + 1] == "12.0"
    assert "--config" in words
    # The hint's command is the install that was made: it plans only the launcher.
    plan = invoke([*words[1:], "--dry-run", "--json"], case.env)
    runs = [s["id"] for s in json.loads(plan.stdout)["data"]["steps"] if s["action"] == "run"]
    assert runs == ["preflight", "launchers"]


def test_failure_hints_repeat_the_inputs_and_name_the_torch_option(
    case: Case, fast_uv_backoff: list[float]
) -> None:
    """A fresh install whose torch index is down: the hint names --torch-index, and the bare
    re-run (which reuses the recorded inputs) says the whole command to repeat."""
    target = case.tmp / "fresh"
    dead = f"http://127.0.0.1:{free_port()}/simple"
    args = case.args("--torch-index", dead)
    args[1] = str(target)
    failed = invoke(args, case.env)
    assert failed.code == 1, failed.stderr
    error, hint = error_and_hint(failed.stderr)
    assert "torch" in error
    assert "--torch-index" in hint and "do not change" in hint, hint
    assert fast_uv_backoff == [3, 6], "the torch step tries three times, with backoff"
    again = invoke(["install", str(target)], case.env)
    assert again.code == 1, again.stderr
    assert "--torch-index" in error_and_hint(again.stderr)[1]
    next_line = next(line for line in again.stderr.splitlines() if line.startswith("Next: "))
    words = shlex.split(next_line.removeprefix("Next: ").removesuffix(" (finished steps are kept)"))
    assert words[:3] == ["comfy-install", "install", str(target)]
    assert words[words.index("--torch-index") + 1] == dead
    assert words[words.index("--gpu") + 1] == "12.0"
    assert words[words.index("--index-url") + 1] == case.index_url
    assert "--config" in words
