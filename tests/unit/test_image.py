"""`comfy-install image`: Containerfile generation, reproducible contexts, engine detection."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from installer.image.containerfile import (
    CONTAINERFILE,
    IMAGE_PLAN_FILE,
    ContextFile,
    ImageSpec,
    ImageTarget,
    InstallArgs,
    PlanSummary,
    SourceBuild,
    context_files,
    default_base,
    default_tag,
    install_command,
    labels,
    pinned_version,
    plan_fingerprint,
    render_containerfile,
)
from installer.image.context import write_context
from installer.image.engine import ENGINES, build_command, find_engine, progress_line
from support.cli import REPO_ROOT

SUMMARY = PlanSummary(
    fingerprint=plan_fingerprint({"torch": "a" * 64, "uv": "b" * 64}, "0.1.0"),
    torch_variant="cu128",
    torch_index_url="https://download.pytorch.org/whl/cu128",
    torch_packages=("torch==2.9.1", "torchvision==0.24.1", "torchaudio==2.9.1"),
    comfyui_ref="v0.3.77",
    lock_name="linux-cu128-py312.txt",
    lock_sha256="c" * 64,
    steps=(("torch", "run", "not done yet"),),
)


REQUIREMENTS = (
    "typer==0.29.2 \\\n    --hash=sha256:" + "d" * 64 + "\n"
    "uv==0.13.9 \\\n    --hash=sha256:" + "e" * 64 + "\n"
)


def spec(**changes: object) -> ImageSpec:
    target = ImageTarget(gpu="8.9", cuda_driver="12.8", python="3.12")
    base = ImageSpec(
        target=target,
        base=default_base("3.12"),
        tag=default_tag("0.1.0", target),
        tool_version="0.1.0",
        uv_version="0.13.9",
        plan=SUMMARY,
        tool_requirements=REQUIREMENTS,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


# -- target → content --------------------------------------------------------------------------


def test_target_gpu_and_driver_reach_the_install_command() -> None:
    text = render_containerfile(spec())
    assert "comfy-install install /opt/comfyui --no-tune --gpu 8.9 --cuda-driver 12.8" in text
    assert "--python 3.12" in text
    assert "ARG BASE_IMAGE=docker.io/library/python:3.12-slim-bookworm" in text
    assert "FROM ${BASE_IMAGE} AS base" in text


def test_cpu_target_has_no_driver_and_a_cpu_tag() -> None:
    target = ImageTarget(gpu="none", python="3.11")
    image = spec(target=target, tag=default_tag("0.1.0", target))
    words = install_command(image)
    assert words[words.index("--gpu") + 1] == "none"
    assert "--cuda-driver" not in words
    assert image.tag == "comfy-install:0.1.0-cpu"
    assert default_tag("0.1.0", ImageTarget("8.9", "12.8")) == "comfy-install:0.1.0-cc8.9-cuda12.8"


def test_passthrough_options_reach_the_install_inside() -> None:
    image = spec(
        install=InstallArgs(
            comfyui_url="/build/sources/comfyui.bundle",
            comfyui_ref="v0.33.0",
            torch_index="default",
            index_url="https://mirror.example/simple",
            extra_index_urls=("https://extra.example/simple",),
            find_links=("/build/wheels",),
            config="/build/config/dependencies.json",
            no_lock=True,
        )
    )
    words = install_command(image)
    for flag, value in [
        ("--comfyui-url", "/build/sources/comfyui.bundle"),
        ("--comfyui-ref", "v0.33.0"),
        ("--torch-index", "default"),
        ("--index-url", "https://mirror.example/simple"),
        ("--extra-index-url", "https://extra.example/simple"),
        ("--find-links", "/build/wheels"),
        ("--config", "/build/config/dependencies.json"),
    ]:
        assert words[words.index(flag) + 1] == value
    assert "--no-lock" in words
    # the index reaches the tool stage too (uv and this tool come from it)
    tool_stage = render_containerfile(image).split("FROM base AS tool")[1].split("FROM base AS")[0]
    assert "--index-url https://mirror.example/simple" in tool_stage


def test_tool_stage_installs_the_pinned_requirements_then_the_wheel_without_dependencies() -> None:
    image = spec()
    text = render_containerfile(image)
    tool = text.split("FROM base AS tool")[1].split("FROM base AS")[0]
    pins_at = tool.index("COPY dist/requirements.txt /build/dist/requirements.txt")
    install_pins_at = tool.index(
        "pip install --no-cache-dir --no-deps --requirement /build/dist/requirements.txt"
    )
    wheel_at = tool.index("COPY dist/comfy_install-0.1.0-py3-none-any.whl /build/dist/")
    # the pins' layer comes first, so a new wheel with the same pins reuses it
    assert pins_at < install_pins_at < wheel_at
    assert tool.rstrip().endswith(
        "pip install --no-cache-dir --no-deps /build/dist/comfy_install-0.1.0-py3-none-any.whl"
    )
    assert "python3 -m venv /opt/comfy-install" in tool
    assert "COPY --from=tool /opt/comfy-install /opt/comfy-install" in text
    files = {f.path: f for f in context_files(image, Path("wheel.whl"))}
    assert files["dist/requirements.txt"].text == REQUIREMENTS


def test_pinned_version_reads_a_requirements_file() -> None:
    assert pinned_version(REQUIREMENTS, "uv") == "0.13.9"
    assert pinned_version(REQUIREMENTS, "Typer") == "0.29.2"
    text = "pydantic-core==2.50.4 ; python_full_version >= '3.11' \\\n"
    assert pinned_version(text, "pydantic_core") == "2.50.4"
    assert pinned_version(REQUIREMENTS, "rich") is None


def test_the_tools_requirements_come_hashed_from_uv_lock() -> None:
    """Real `uv export` of this checkout: runtime dependencies only, hashed, no host path."""
    from installer.image.context import exported_requirements, tool_requirements

    text = exported_requirements(REPO_ROOT)
    lock = (REPO_ROOT / "uv.lock").read_text()
    uv_pin = pinned_version(text, "uv")
    assert f'name = "uv"\nversion = "{uv_pin}"' in lock
    for name in ("typer", "pydantic", "httpx", "nvidia-ml-py"):
        assert pinned_version(text, name), name
    for dev_only in ("pytest", "mypy", "ruff", "mkdocs"):
        assert pinned_version(text, dev_only) is None, dev_only
    requirement_lines = [line for line in text.splitlines() if "==" in line]
    assert all(line.rstrip().endswith("\\") for line in requirement_lines)  # each has hashes
    assert "--hash=sha256:" in text and "-e " not in text and str(REPO_ROOT) not in text
    assert tool_requirements() == (text, "uv.lock (hashed)")


def test_without_a_lock_the_requirements_are_the_installed_versions() -> None:
    from importlib.metadata import version

    from installer.image.context import installed_requirements

    text = installed_requirements()
    assert f"uv=={version('uv')}\n" in text
    assert f"typer=={version('typer')}\n" in text
    assert f"pydantic-core=={version('pydantic-core')}\n" in text  # a dependency's dependency
    assert "comfy-install" not in text and "pytest" not in text


def test_runs_as_a_non_root_user_and_the_install_runs_as_it() -> None:
    text = render_containerfile(spec())
    runtime = text.split("FROM base AS runtime")[1]
    assert "useradd --uid 1000 --gid 1000" in text
    user_at = runtime.index("USER 1000:1000")
    assert user_at < runtime.index("comfy-install install")
    assert "USER root" not in runtime and "USER 0" not in runtime


def test_port_healthcheck_entrypoint_and_runtime_variables() -> None:
    text = render_containerfile(spec(port=8190))
    assert "EXPOSE 8190" in text
    health = next(line for line in text.splitlines() if line.strip().startswith("CMD ["))
    assert "http://127.0.0.1:8190/object_info" in health
    assert "HEALTHCHECK --interval=30s" in text
    entry = next(line for line in text.splitlines() if line.startswith("ENTRYPOINT "))
    words = json.loads(entry.removeprefix("ENTRYPOINT "))
    assert words[:2] == ["/bin/sh", "/etc/comfy-install/start.sh"]
    assert words[-1] == "--" and "8190" in words
    assert "COPY etc/start.sh /etc/comfy-install/start.sh" in text
    assert 'COMFY_EXTRA_ARGS=""' in text and "ENABLE_STARTUP_WARMUP=1" in text


def test_models_and_calibration_volumes_and_extra_model_paths() -> None:
    image = spec()
    text = render_containerfile(image)
    assert 'VOLUME ["/models", "/var/lib/comfy-install/tune"]' in text
    assert "ComfyUI/extra_model_paths.yaml" in text
    files = {f.path: f for f in context_files(image, Path("wheel.whl"))}
    yaml = files["etc/extra_model_paths.yaml"].text or ""
    assert "base_path: /models" in yaml and "    checkpoints: checkpoints" in yaml


def _up_to_the_install(text: str) -> str:
    """The Containerfile from its first instruction to the end of the install's RUN."""
    return text[text.index("ARG BASE_IMAGE") : text.index("rm -rf /tmp/uv-cache")]


def test_metadata_comes_after_the_install_so_changing_it_reuses_the_install_layer() -> None:
    """A layer cache reuses a step only when every instruction before it is the same."""
    first = render_containerfile(spec())
    runtime = first.split("FROM base AS runtime")[1]
    assert runtime.count("\nRUN ") == 1
    after = runtime[runtime.index("rm -rf /tmp/uv-cache") :]
    instructions = [line.split()[0] for line in after.splitlines() if line[:1].isupper()]
    assert instructions == [
        *("COPY", "LABEL", "ENV", "EXPOSE", "VOLUME", "HEALTHCHECK", "ENTRYPOINT", "CMD")
    ]
    assert "VOLUME" not in _up_to_the_install(first)  # a volume would drop what the install writes
    # another tag and port: the same instructions up to and including the install
    other = render_containerfile(spec(tag="registry.example/comfy:other", port=8190))
    assert other != first
    assert _up_to_the_install(other) == _up_to_the_install(first)


# -- multi-stage ---------------------------------------------------------------------------------


def test_no_toolkit_stage_without_a_source_build() -> None:
    text = render_containerfile(spec())
    assert "AS accelerators" not in text and "TOOLKIT_IMAGE" not in text
    assert [line for line in text.splitlines() if line.startswith("FROM ")] == [
        "FROM ${BASE_IMAGE} AS base",
        "FROM base AS tool",
        "FROM base AS runtime",
    ]


def test_a_source_build_compiles_in_a_toolkit_stage_and_only_the_wheel_is_copied() -> None:
    plan = replace(SUMMARY, source_builds=(SourceBuild("sageattention", "sageattention==2.2.0"),))
    text = render_containerfile(spec(plan=plan))
    assert "ARG TOOLKIT_IMAGE=docker.io/nvidia/cuda:12.8.1-devel-ubuntu24.04" in text
    stage = text.split("FROM ${TOOLKIT_IMAGE} AS accelerators")[1].split("FROM base AS")[0]
    assert "ENV TORCH_CUDA_ARCH_LIST=8.9" in stage
    assert "--index-url https://download.pytorch.org/whl/cu128 torch==2.9.1" in stage
    assert "pip wheel --no-cache-dir --no-build-isolation --no-deps" in stage
    assert "--wheel-dir /wheels sageattention==2.2.0" in stage
    assert "COPY --from=accelerators --chown=1000:1000 /wheels/ /build/accelerators/" in text
    assert "--find-links /build/accelerators" in text
    # the toolkit image itself is never the base of the runtime
    assert "FROM ${TOOLKIT_IMAGE} AS runtime" not in text


def test_a_real_plan_with_a_source_fallback_gets_the_toolkit_stage(tmp_path: Path) -> None:
    """dependencies.json whose SageAttention fallback builds from source, planned for an Ada GPU."""
    from installer.commands.planning import make_plan
    from installer.image.containerfile import summarize_plan
    from installer.plan.records import InstallOptions

    config = json.loads((REPO_ROOT / "dependencies.json").read_text())
    config["pip_packages"]["sageattention_wheels"] = []
    config["pip_packages"]["sageattention_fallback"]["build"] = "source"
    path = tmp_path / "dependencies.json"
    path.write_text(json.dumps(config))
    options = InstallOptions(
        install_dir=Path("/opt/comfyui"),
        config_path=path,
        gpu="8.9",
        cuda_driver="12.8",
        cuda_toolkit="12.8",  # the image's toolkit stage, not whatever this machine has
        platform="linux",
        dry_run=True,
    )
    summary = summarize_plan(make_plan(options).plan)
    assert summary.source_builds, "the plan should compile the SageAttention fallback"
    text = render_containerfile(spec(plan=summary))
    assert "AS accelerators" in text
    assert summary.source_builds[0].requirement in text


# -- reproducibility and labels -----------------------------------------------------------------


def test_same_inputs_same_containerfile_bytes() -> None:
    assert render_containerfile(spec()).encode() == render_containerfile(spec()).encode()
    assert render_containerfile(spec()) != render_containerfile(
        spec(target=ImageTarget("9.0", "12.8"))
    )


def test_fingerprint_ignores_the_planning_machine_but_not_the_plan() -> None:
    one = plan_fingerprint({"torch": "a", "uv": "/usr/bin/uv"}, "0.1.0")
    assert one == plan_fingerprint({"uv": "/elsewhere/uv", "torch": "a"}, "0.1.0")
    assert one != plan_fingerprint({"torch": "b", "uv": "x"}, "0.1.0")
    assert one != plan_fingerprint({"torch": "a"}, "0.2.0")
    assert one.startswith("sha256:") and len(one) == 7 + 64


def test_labels_record_version_plan_lock_and_target() -> None:
    found = labels(spec())
    assert list(found) == sorted(found)
    assert found["org.opencontainers.image.version"] == "0.1.0"
    assert found["io.github.comfy-install.plan-fingerprint"] == SUMMARY.fingerprint
    assert found["io.github.comfy-install.lock"] == "linux-cu128-py312.txt"
    assert found["io.github.comfy-install.lock-sha256"] == "c" * 64
    assert found["io.github.comfy-install.target.gpu"] == "8.9"
    assert found["io.github.comfy-install.target.cuda-driver"] == "12.8"
    assert "org.opencontainers.image.created" not in found  # no time stamps
    text = render_containerfile(spec())
    for key, value in found.items():
        assert f"{key}={json.dumps(value)}" in text


def test_labels_without_a_lock() -> None:
    found = labels(spec(plan=replace(SUMMARY, lock_name=None, lock_sha256=None)))
    assert found["io.github.comfy-install.lock"] == "none"


def _tree(root: Path) -> dict[str, tuple[bytes, int, int]]:
    return {
        str(path.relative_to(root)): (
            path.read_bytes() if path.is_file() else b"",
            stat.S_IMODE(path.stat().st_mode),
            int(path.stat().st_mtime),
        )
        for path in sorted(root.rglob("*"))
    }


def test_context_is_byte_identical_for_the_same_inputs(tmp_path: Path) -> None:
    wheel = tmp_path / "comfy_install-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"PK fake wheel")
    bundle = tmp_path / "comfyui.bundle"
    bundle.write_bytes(b"bundle bytes")
    image = spec(extra_files=(ContextFile("sources/comfyui.bundle", source=bundle),))
    first, second = tmp_path / "one", tmp_path / "two"
    written = write_context(first, context_files(image, wheel))
    os.utime(bundle, (1_700_000_000, 1_700_000_000))  # a newer source time changes nothing
    write_context(second, context_files(image, wheel))
    assert _tree(first) == _tree(second)
    assert [path for path, _ in written] == sorted(path for path, _ in written)
    assert {path for path, _ in written} >= {
        CONTAINERFILE,
        IMAGE_PLAN_FILE,
        "dist/comfy_install-0.1.0-py3-none-any.whl",
        "sources/comfyui.bundle",
    }
    assert "COPY --chown=1000:1000 sources/ /build/sources/" in (first / CONTAINERFILE).read_text()
    described = json.loads((first / IMAGE_PLAN_FILE).read_text())
    assert described["context_files"] == [path for path, _ in written]


def test_context_replaces_its_own_folder_but_not_a_foreign_one(tmp_path: Path) -> None:
    from installer.core.errors import UsageError

    wheel = tmp_path / "w.whl"
    wheel.write_bytes(b"x")
    target = tmp_path / "ctx"
    write_context(target, context_files(spec(), wheel))
    (target / "stale.txt").write_text("old")
    write_context(target, context_files(spec(tag="other:tag"), wheel))
    assert not (target / "stale.txt").exists()
    assert "other:tag" in (target / CONTAINERFILE).read_text()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".ctx")]
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep")
    with pytest.raises(UsageError):
        write_context(foreign, context_files(spec(), wheel))
    assert (foreign / "notes.txt").read_text() == "keep"


# -- the command: dry-run and the JSON envelope -----------------------------------------------


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "installer", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=REPO_ROOT,
    )


def test_dry_run_json_envelope(tmp_path: Path) -> None:
    out = tmp_path / "ctx"
    done = run_cli(
        "image", "build", str(out), "--gpu", "8.9", "--cuda-driver", "12.8", "--dry-run", "--json"
    )
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert list(document) == [
        "schema_version",
        "command",
        "status",
        "exit_code",
        "data",
        "errors",
    ]
    assert document["command"] == ["image", "build", str(out), "--dry-run"]
    assert document["status"] == "ok" and document["errors"] == []
    data = document["data"]
    assert data["target"] == {
        "gpu": "8.9",
        "cuda_driver": "12.8",
        "platform": "linux",
        "python": "3.12",
    }
    assert data["base"] == "docker.io/library/python:3.12-slim-bookworm"
    # Planned with the toolkit image's nvcc (12.8), not this machine's: SageAttention 2 for
    # Ada is compiled in the accelerators stage, against the cu128 torch the install takes.
    assert data["stages"] == ["base", "tool", "accelerators", "runtime"]
    assert data["install_plan"]["torch"]["variant"] == "cu128"
    assert data["install_command"][data["install_command"].index("--torch-index") + 1] == "cu128"
    assert {step["id"] for step in data["install_plan"]["steps"]} >= {"torch", "verify"}
    assert data["labels"]["org.opencontainers.image.version"] == data["tool_version"]
    assert not out.exists()  # a dry run writes nothing


def test_dry_run_text_goes_to_stdout(tmp_path: Path) -> None:
    done = run_cli("image", "context", str(tmp_path / "c"), "--gpu", "none", "--dry-run")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("image comfy-install:")
    assert "torch: cpu" in done.stdout


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["--gpu", "auto"], 2),
        (["--gpu", "8.9", "--platform", "windows"], 2),
        (["--gpu", "8.9", "--comfyui-url", "/nonexistent/comfyui.bundle"], 2),
    ],
)
def test_bad_usage_is_exit_code_2_in_the_envelope(
    tmp_path: Path, args: list[str], code: int
) -> None:
    done = run_cli("image", "context", str(tmp_path / "c"), *args, "--dry-run", "--json")
    assert done.returncode == code
    document = json.loads(done.stdout)
    assert document["status"] == "error" and document["exit_code"] == code
    assert document["errors"][0]["hint"]


# -- engines: real programs on a fake PATH --------------------------------------------------------


def fake_tool(folder: Path, name: str, script: str = "exit 0") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(0o755)
    return path


def test_engine_order_docker_buildx_then_podman_then_buildah(tmp_path: Path) -> None:
    assert ENGINES == ("docker", "podman", "buildah")
    bin_dir = tmp_path / "bin"
    fake_tool(bin_dir, "buildah")
    assert find_engine(path=str(bin_dir)).name == "buildah"
    fake_tool(bin_dir, "podman")
    assert find_engine(path=str(bin_dir)).name == "podman"
    fake_tool(bin_dir, "docker", '[ "$1" = buildx ] && exit 0; exit 1')
    found = find_engine(path=str(bin_dir))
    assert (found.name, found.binary) == ("docker", str(bin_dir / "docker"))


def test_docker_without_buildx_is_passed_over(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    fake_tool(bin_dir, "docker", 'echo "docker: unknown command: docker buildx" >&2; exit 1')
    fake_tool(bin_dir, "buildah")
    assert find_engine(path=str(bin_dir)).name == "buildah"


def test_no_engine_is_exit_code_3(tmp_path: Path) -> None:
    from installer.core.errors import EnvironmentUnsupportedError

    (tmp_path / "empty").mkdir()
    with pytest.raises(EnvironmentUnsupportedError) as caught:
        find_engine(path=str(tmp_path / "empty"))
    assert int(caught.value.exit_code) == 3
    fake_tool(tmp_path / "bin", "podman")
    with pytest.raises(EnvironmentUnsupportedError):
        find_engine("buildah", path=str(tmp_path / "bin"))


def test_build_commands_and_progress_lines(tmp_path: Path) -> None:
    from installer.core.errors import UsageError
    from installer.image.engine import Engine

    ctx = tmp_path / "ctx"
    cf = ctx / CONTAINERFILE
    docker = build_command(Engine("docker", "/x/docker"), ctx, cf, "t:1")
    assert docker[:4] == ["/x/docker", "buildx", "build", "--load"]
    buildah = build_command(Engine("buildah", "/x/buildah"), ctx, cf, "t:1")
    assert buildah[:5] == ["/x/buildah", "bud", "--format", "docker", "--layers"]
    assert buildah[-1] == str(ctx) and buildah[buildah.index("--tag") + 1] == "t:1"
    podman = build_command(Engine("podman", "/x/podman"), ctx, cf, "t:1")
    assert podman[:5] == ["/x/podman", "build", "--format", "docker", "--layers"]
    # annotations only where the format has them
    notes = {"org.opencontainers.image.version": "0.1.0", "b.key": "two words"}
    assert "--annotation" not in build_command(
        Engine("buildah", "b"), ctx, cf, "t", "docker", notes
    )
    oci = build_command(Engine("buildah", "b"), ctx, cf, "t", "oci", notes, tmp_path / "id")
    assert oci[:3] == ["b", "bud", "--format"] and oci[3] == "oci"
    assert oci[oci.index("--iidfile") + 1] == str(tmp_path / "id")
    assert [oci[i + 1] for i, word in enumerate(oci) if word == "--annotation"] == [
        "b.key=two words",
        "org.opencontainers.image.version=0.1.0",
    ]
    with_docker = build_command(Engine("docker", "d"), ctx, cf, "t", "oci", notes)
    assert "--annotation" in with_docker and "--load" in with_docker
    with pytest.raises(UsageError):
        build_command(Engine("buildah", "b"), ctx, cf, "t", "squashfs")
    assert progress_line("[2/3] STEP 3/3: RUN set -eu") == "[stage 2/3 step 3/3] RUN set -eu"
    assert progress_line("STEP 1/2: FROM x") == "[step 1/2] FROM x"
    assert progress_line("#7 [runtime 3/9] RUN a") == "[runtime 3/9] RUN a"
    assert progress_line("Getting image source signatures") is None


STAND_IN_BUILDAH = """printf '%s\\n' "$@" > "$(dirname "$0")/args"
while [ $# -gt 0 ]; do [ "$1" = --iidfile ] && echo sha256:1d > "$2"; shift; done
echo "STEP 1/2: FROM base"; echo "STEP 2/2: RUN x"; echo "--> Using cache 1d2e3f"
exit 0"""


def test_build_streams_a_real_engine_and_fails_with_its_last_lines(tmp_path: Path) -> None:
    """`image build` against a stand-in buildah that prints steps, then one that fails."""
    bin_dir = tmp_path / "bin"
    fake_tool(bin_dir, "buildah", STAND_IN_BUILDAH)
    wheel = tmp_path / "comfy_install-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"PK")
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    args = ["image", "build", str(tmp_path / "ctx"), "--gpu", "none", "--wheel", str(wheel)]
    done = run_cli(*args, "--engine", "buildah", "--json", env=env)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)["data"]
    assert data["build"] == {
        "engine": "buildah",
        "tag": data["tag"],
        "format": "docker",
        "seconds": data["build"]["seconds"],
        "steps": 2,
        "cached_steps": 1,
        "image_id": "sha256:1d",
    }
    assert "[step 2/2] RUN x" in done.stderr
    assert "(1 of 2 steps from the layer cache)" in done.stderr
    assert "--annotation" not in (bin_dir / "args").read_text().split()
    done = run_cli(*args, "--engine", "buildah", "--format", "oci", "--json", env=env)
    assert done.returncode == 0, done.stderr
    passed = (bin_dir / "args").read_text().splitlines()
    assert passed[:3] == ["bud", "--format", "oci"]
    version = json.loads(done.stdout)["data"]["tool_version"]
    assert f"org.opencontainers.image.version={version}" in passed
    done = run_cli(*args, "--engine", "buildah", "--format", "squashfs", "--json", env=env)
    assert done.returncode == 2
    fake_tool(bin_dir, "buildah", 'echo "STEP 1/1: RUN y"; echo "boom: no space left"; exit 125')
    done = run_cli(*args, "--engine", "buildah", "--json", env=env)
    assert done.returncode == 1
    error = json.loads(done.stdout)["errors"][0]
    assert "buildah build failed (exit code 125)" in error["message"]
    assert "boom: no space left" in error["message"]


# -- the start script: the real script under /bin/sh, a stand-in comfy-install ------------------

STAND_IN_TOOL = """echo "$*" >> "$(dirname "$0")/calls"
if [ "$1" = tune ]; then
    [ -n "${TUNE_FAILS:-}" ] && exit 3
    mkdir -p "$2/.comfy-install"
    echo '{"measured": "here"}' > "$2/.comfy-install/calibration.json"
fi
exit 0"""


def run_start(
    tmp_path: Path, *, gpu: bool, **env: str
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """Run the image's start script as the ENTRYPOINT does, in folders under ``tmp_path``."""
    from installer.image.runtime_files import start_script

    bin_dir = tmp_path / "bin"
    fake_tool(bin_dir, "comfy-install", STAND_IN_TOOL)
    (bin_dir / "calls").unlink(missing_ok=True)
    script = tmp_path / "start.sh"
    script.write_text(start_script("/opt/comfyui", "/var/lib/comfy-install/tune"))
    device = tmp_path / "nvidiactl"
    if gpu:
        device.write_text("")
    (tmp_path / "tune").mkdir(exist_ok=True)
    done = subprocess.run(
        ["/bin/sh", str(script), "--listen", "0.0.0.0", "--port", "8188", "--"],
        capture_output=True,
        text=True,
        env={
            "PATH": f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin",
            "COMFY_INSTALL_DIR": str(tmp_path / "inst"),
            "COMFY_TUNE_DIR": str(tmp_path / "tune"),
            "COMFY_GPU_DEVICE": str(device),
            **env,
        },
    )
    calls = (bin_dir / "calls").read_text().splitlines() if (bin_dir / "calls").exists() else []
    return done, calls


def test_start_measures_on_the_first_gpu_start_and_keeps_it_on_the_volume(tmp_path: Path) -> None:
    inst = tmp_path / "inst"
    done, calls = run_start(tmp_path, gpu=True, COMFY_TUNE_BUDGET="30")
    assert done.returncode == 0, done.stderr
    assert calls == [
        f"tune {inst} --budget 30",
        f"launch {inst} --listen 0.0.0.0 --port 8188 --",
    ]
    assert (tmp_path / "tune" / "calibration.json").read_text() == '{"measured": "here"}\n'
    assert not [p for p in (tmp_path / "tune").iterdir() if p.name != "calibration.json"]
    # the next start (a new container: the install's copy is gone) uses the kept one
    (inst / ".comfy-install" / "calibration.json").unlink()
    done, calls = run_start(tmp_path, gpu=True)
    assert calls == [f"launch {inst} --listen 0.0.0.0 --port 8188 --"]
    assert (inst / ".comfy-install" / "calibration.json").read_text() == '{"measured": "here"}\n'


def test_start_without_a_gpu_or_when_told_not_to_only_launches(tmp_path: Path) -> None:
    launch = f"launch {tmp_path / 'inst'} --listen 0.0.0.0 --port 8188 --"
    assert run_start(tmp_path, gpu=False)[1] == [launch]
    assert run_start(tmp_path, gpu=True, COMFY_TUNE_AT_START="0")[1] == [launch]
    assert not (tmp_path / "tune" / "calibration.json").exists()


def test_a_failed_measurement_still_launches_and_keeps_nothing(tmp_path: Path) -> None:
    done, calls = run_start(tmp_path, gpu=True, TUNE_FAILS="1")
    assert done.returncode == 0
    assert calls[-1].startswith("launch ") and calls[0].startswith("tune ")
    assert "ComfyUI starts with its default attention" in done.stderr
    assert not (tmp_path / "tune" / "calibration.json").exists()
