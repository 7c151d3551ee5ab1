"""`comfy-install models`: manifest downloads, organizing loose files, shared stores.

Downloads go over real httpx to the local HTTP server of `support.http_server`;
safetensors files are built for real (8-byte header length, JSON header, zero
bytes); the YAML written for ComfyUI is checked as text and, where a Python
with PyYAML exists on the machine, with ComfyUI v0.3.77's own loader from the
fixture bundle.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from installer.cli.models import models_app
from installer.core.config import ModelEntry
from installer.core.errors import ConfigError, IntegrityError, UsageError
from installer.core.log import InstallerLogger
from installer.models.classify import (
    ManifestIndex,
    classify_model_file,
    kind_from_name,
    kind_from_tensor_names,
    read_safetensors_header,
)
from installer.models.downloads import download_models
from installer.models.extra_paths import (
    SHARED_SECTION,
    merge_extra_model_paths,
    shared_config_section,
    yaml_quote,
)
from installer.models.organize import plan_organize
from installer.models.share import link_shared_models
from installer.plan.model_downloads import plan_model_downloads
from installer.plan.model_kinds import KIND_ALIASES, MODEL_KINDS, canonical_kind
from support.http_server import LocalHTTPServer
from support.real import find_bundle

BUNDLE = find_bundle("v0.3.77")  # the kinds below are v0.3.77's
runner = CliRunner()


# --------------------------------------------------------------------------- helpers


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def safetensors(keys: list[str], *, data_bytes: int = 16, metadata: bool = True) -> bytes:
    """A real safetensors file: header length, JSON header, zero-filled tensor data."""
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}} if metadata else {}
    per = max(1, data_bytes // max(1, len(keys)))
    for number, key in enumerate(keys):
        header[key] = {
            "dtype": "U8",
            "shape": [per],
            "data_offsets": [number * per, (number + 1) * per],
        }
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + bytes(per * len(keys))


def install_dir(tmp_path: Path) -> Path:
    root = tmp_path / "inst"
    (root / "ComfyUI" / "models").mkdir(parents=True)
    return root


def write_manifest(path: Path, models: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps({"schema_version": 1, "models": models}), encoding="utf-8")
    return path


def invoke(*args: str) -> Any:
    return runner.invoke(models_app, [str(a) for a in args])


def envelope(result: Any) -> dict[str, Any]:
    return json.loads(result.stdout)


def tree(root: Path) -> dict[str, str]:
    """Every file under ``root`` with its sha256 (links shown as their target)."""
    out: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            out[str(path.relative_to(root))] = "-> " + os.readlink(path)
        elif path.is_file():
            out[str(path.relative_to(root))] = sha(path.read_bytes())
    return out


# --------------------------------------------------------------------------- kinds


@pytest.fixture(scope="module")
def comfyui_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ComfyUI v0.3.77's files, cloned from the fixture bundle once for this module."""
    if BUNDLE is None:
        pytest.skip("ComfyUI fixture bundle not available")
    clone = tmp_path_factory.mktemp("comfyui-src")
    subprocess.run(["git", "clone", "-q", str(BUNDLE), str(clone)], check=True)
    return clone


def test_kinds_match_comfyui_folder_paths(comfyui_source: Path) -> None:
    """MODEL_KINDS is exactly ComfyUI v0.3.77's folder_paths list minus custom_nodes."""
    source = (comfyui_source / "folder_paths.py").read_text()
    import re

    registered = re.findall(r'folder_names_and_paths\["([a-z_]+)"\]\s*=', source)
    assert set(MODEL_KINDS) == set(registered) - {"custom_nodes"}
    assert 'legacy = {"unet": "diffusion_models",\n              "clip": "text_encoders"}' in source
    assert KIND_ALIASES["clip"] == "text_encoders"
    assert KIND_ALIASES["unet"] == "diffusion_models"
    assert canonical_kind("loras") == "loras"
    assert canonical_kind("lora") is None


# --------------------------------------------------------------------------- download


def test_download_manifest_into_kind_folders(tmp_path: Path, http_server: LocalHTTPServer) -> None:
    bodies = {
        "/ckpt.safetensors": b"checkpoint" * 100,
        "/lora.safetensors": b"lora" * 50,
        "/t5.safetensors": b"t5" * 70,
        "/flux.safetensors": b"flux" * 90,
        "/files/upscaler.pth": b"esrgan" * 30,
    }
    for path, body in bodies.items():
        http_server.add(path, body)
    manifest = write_manifest(
        tmp_path / "models.json",
        [
            {"url": http_server.url("/ckpt.safetensors"), "kind": "checkpoints",
             "filename": "sd15.safetensors", "sha256": sha(bodies["/ckpt.safetensors"]),
             "size": len(bodies["/ckpt.safetensors"])},
            {"url": http_server.url("/lora.safetensors"), "kind": "loras",
             "filename": "sdxl/detail.safetensors", "sha256": sha(bodies["/lora.safetensors"])},
            {"url": http_server.url("/t5.safetensors"), "kind": "clip",
             "filename": "t5xxl.safetensors", "sha256": sha(bodies["/t5.safetensors"])},
            {"url": http_server.url("/flux.safetensors"), "kind": "unet",
             "filename": "flux1-dev.safetensors", "sha256": sha(bodies["/flux.safetensors"])},
            {"url": http_server.url("/files/upscaler.pth"), "kind": "upscale_models",
             "sha256": sha(bodies["/files/upscaler.pth"])},
        ],
    )  # fmt: skip
    root = install_dir(tmp_path)
    models = root / "ComfyUI" / "models"

    result = invoke("download", root, "--manifest", manifest, "--jobs", "3", "--json")

    assert result.exit_code == 0, result.output
    expected = {
        models / "checkpoints" / "sd15.safetensors": bodies["/ckpt.safetensors"],
        models / "loras" / "sdxl" / "detail.safetensors": bodies["/lora.safetensors"],
        models / "text_encoders" / "t5xxl.safetensors": bodies["/t5.safetensors"],
        models / "diffusion_models" / "flux1-dev.safetensors": bodies["/flux.safetensors"],
        models / "upscale_models" / "upscaler.pth": bodies["/files/upscaler.pth"],
    }
    for path, body in expected.items():
        assert sha(path.read_bytes()) == sha(body), path
    assert not (models / "clip").exists() and not (models / "unet").exists()
    document = envelope(result)
    assert document["status"] == "ok" and document["command"][:2] == ["models", "download"]
    files = document["data"]["files"]
    assert [f["kind"] for f in files] == [
        "checkpoints", "loras", "text_encoders", "diffusion_models", "upscale_models",
    ]  # fmt: skip
    assert {Path(f["path"]) for f in files} == {p.resolve() for p in expected}
    assert {f["status"] for f in files} == {"downloaded"}

    requests_before = len(http_server.requests)
    again = invoke("download", root, "--manifest", manifest, "--json")
    assert again.exit_code == 0, again.output
    assert {f["status"] for f in envelope(again)["data"]["files"]} == {"present"}
    # Files named in the manifest are checked on disk; only the URL-named one asks the server.
    assert len(http_server.requests) - requests_before <= 1


def test_download_models_api_returns_final_paths(
    tmp_path: Path, http_server: LocalHTTPServer
) -> None:
    http_server.add("/a.bin", b"a" * 10)
    http_server.add("/b.bin", b"b" * 20)
    entries = [
        ModelEntry(url=http_server.url("/a.bin"), kind="vae", filename="a.safetensors",
                   sha256=sha(b"a" * 10)),
        ModelEntry(url=http_server.url("/b.bin"), kind="embeddings", sha256=sha(b"b" * 20)),
    ]  # fmt: skip
    models = tmp_path / "models"
    paths = download_models(entries, models, log=InstallerLogger(verbosity=-1), jobs=2)
    assert paths == [
        (models / "vae" / "a.safetensors").resolve(),
        (models / "embeddings" / "b.bin").resolve(),
    ]
    assert download_models([], models, log=InstallerLogger(verbosity=-1)) == []


def test_unknown_kind_is_exit_2_with_json_path(
    tmp_path: Path, http_server: LocalHTTPServer
) -> None:
    http_server.add("/x.bin", b"x")
    good = {"url": http_server.url("/x.bin"), "kind": "loras", "sha256": sha(b"x")}
    manifest = write_manifest(
        tmp_path / "m.json", [good, good | {"kind": "lora", "filename": "y.bin"}]
    )
    root = install_dir(tmp_path)

    result = invoke("download", root, "--manifest", manifest)

    assert result.exit_code == 2
    assert f"{manifest}: models[1].kind: unknown model kind 'lora'" in result.stderr
    assert "checkpoints" in result.stderr and "clip → text_encoders" in result.stderr
    assert http_server.requests == []

    as_json = invoke("download", root, "--manifest", manifest, "--json")
    document = envelope(as_json)
    assert as_json.exit_code == 2 and document["exit_code"] == 2
    assert document["errors"][0]["code"] == "config"
    assert "models[1].kind" in document["errors"][0]["message"]


@pytest.mark.parametrize(
    "filename", ["../evil.safetensors", "../../etc/passwd", "/etc/passwd", "a/../../x.bin",
                 "..\\x.bin", "C:x.bin", "sub//x.bin", "."],
)  # fmt: skip
def test_traversal_in_filename_is_refused(tmp_path: Path, filename: str) -> None:
    entry = ModelEntry(url="https://example.org/x.bin", kind="loras", filename=filename,
                       sha256="0" * 64)  # fmt: skip
    with pytest.raises(ConfigError) as caught:
        plan_model_downloads([entry], tmp_path / "models", source="m.json")
    assert "m.json: models[0].filename" in caught.value.message
    assert int(caught.value.exit_code) == 2


def test_traversal_via_cli_writes_nothing(tmp_path: Path, http_server: LocalHTTPServer) -> None:
    http_server.add("/x.bin", b"x")
    manifest = write_manifest(
        tmp_path / "m.json",
        [{"url": http_server.url("/x.bin"), "kind": "loras", "filename": "../../../escape.bin",
          "sha256": sha(b"x")}],
    )  # fmt: skip
    root = install_dir(tmp_path)
    result = invoke("download", root, "--manifest", manifest)
    assert result.exit_code == 2
    assert "models[0].filename" in result.stderr and "outside" in result.stderr
    assert not list(tmp_path.rglob("escape.bin"))
    assert http_server.requests == []


def test_duplicate_destination_is_refused(tmp_path: Path) -> None:
    entries = [
        ModelEntry(url="https://example.org/a", kind="clip", filename="t5.bin", sha256="0" * 64),
        ModelEntry(url="https://example.org/b", kind="text_encoders", filename="t5.bin",
                   sha256="1" * 64),
    ]  # fmt: skip
    with pytest.raises(ConfigError, match=r"models\[1\] and models\[0\] both write"):
        plan_model_downloads(entries, tmp_path)


def test_missing_sha256_is_refused_unless_allowed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with LocalHTTPServer(tls=True) as server:
        server.add("/free.safetensors", b"unpinned" * 10)
        assert server.cert_path is not None
        monkeypatch.setenv("SSL_CERT_FILE", str(server.cert_path))
        manifest = write_manifest(
            tmp_path / "m.json", [{"url": server.url("/free.safetensors"), "kind": "vae"}]
        )
        root = install_dir(tmp_path)

        refused = invoke("download", root, "--manifest", manifest)
        assert refused.exit_code == 4
        assert "no sha256 is recorded" in refused.stderr and "models[0]" in refused.stderr
        assert "--allow-unverified" in refused.stderr
        assert server.requests == []

        allowed = invoke("download", root, "--manifest", manifest, "--allow-unverified")
        assert allowed.exit_code == 0, allowed.output
        saved = root / "ComfyUI" / "models" / "vae" / "free.safetensors"
        assert saved.read_bytes() == b"unpinned" * 10


def test_wrong_checksum_is_exit_4(tmp_path: Path, http_server: LocalHTTPServer) -> None:
    http_server.add("/x.bin", b"tampered")
    manifest = write_manifest(
        tmp_path / "m.json",
        [{"url": http_server.url("/x.bin"), "kind": "loras", "filename": "x.bin",
          "sha256": sha(b"original")}],
    )  # fmt: skip
    root = install_dir(tmp_path)
    result = invoke("download", root, "--manifest", manifest)
    assert result.exit_code == 4
    assert "sha256 mismatch" in result.stderr
    assert not (root / "ComfyUI" / "models" / "loras" / "x.bin").exists()


def test_api_refuses_unverified_before_any_request(tmp_path: Path) -> None:
    entries = [ModelEntry(url="https://example.org/a.bin", kind="loras")]
    with pytest.raises(IntegrityError):
        download_models(entries, tmp_path, log=InstallerLogger(verbosity=-1))
    planned = plan_model_downloads(entries, tmp_path, allow_unverified=True)
    assert planned[0].kind == "loras" and planned[0].request.dest_dir == tmp_path / "loras"


def test_missing_install_is_exit_2(tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "m.json", [])
    result = invoke("download", tmp_path / "nowhere", "--manifest", manifest)
    assert result.exit_code == 2
    assert "holds no ComfyUI install" in result.stderr
    assert not (tmp_path / "nowhere").exists()


def test_link_without_shared_models_is_usage_error(tmp_path: Path) -> None:
    result = invoke("organize", install_dir(tmp_path), "--link")
    assert result.exit_code == 2 and "--link needs --shared-models" in result.stderr


def test_download_into_shared_store(tmp_path: Path, http_server: LocalHTTPServer) -> None:
    http_server.add("/l.safetensors", b"lora!")
    manifest = write_manifest(
        tmp_path / "m.json",
        [{"url": http_server.url("/l.safetensors"), "kind": "loras", "filename": "l.safetensors",
          "sha256": sha(b"lora!")}],
    )  # fmt: skip
    root = install_dir(tmp_path)
    store = tmp_path / "store"
    store.mkdir()

    result = invoke("download", root, "--manifest", manifest, "--shared-models", store)
    assert result.exit_code == 0, result.output
    assert (store / "loras" / "l.safetensors").read_bytes() == b"lora!"
    assert not (root / "ComfyUI" / "models" / "loras").exists()
    yaml_text = (root / "ComfyUI" / "extra_model_paths.yaml").read_text()
    assert f"    base_path: '{store.resolve()}'" in yaml_text

    linked = invoke("download", root, "--manifest", manifest, "--shared-models", store, "--link")
    assert linked.exit_code == 0, linked.output
    link = root / "ComfyUI" / "models" / "loras" / "l.safetensors"
    assert link.is_symlink() and link.resolve() == (store / "loras" / "l.safetensors").resolve()

    missing = invoke("download", root, "--manifest", manifest, "--shared-models", tmp_path / "nas")
    assert missing.exit_code == 2 and "does not exist" in missing.stderr
    assert not (tmp_path / "nas").exists()


# --------------------------------------------------------------------------- classification

LORA_KOHYA = ["lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight",
              "lora_unet_down_blocks_0_attentions_0_proj_in.alpha"]  # fmt: skip
CHECKPOINT = ["model.diffusion_model.input_blocks.0.0.weight",
              "first_stage_model.encoder.conv_in.weight",
              "cond_stage_model.transformer.text_model.embeddings.position_ids"]  # fmt: skip
FLUX = ["double_blocks.0.img_attn.qkv.weight", "single_blocks.0.linear1.weight", "img_in.weight"]


@pytest.mark.parametrize(
    ("keys", "kind"),
    [
        (LORA_KOHYA, "loras"),
        (["lora_te1_text_model_encoder_layers_0_mlp_fc1.lora_up.weight"], "loras"),
        (["base_model.model.transformer.blocks.0.attn.to_q.lora_A.weight"], "loras"),
        (["double_blocks.0.processor.proj_lora1.down.weight"], "loras"),
        (["lora_controlnet", "input_blocks.0.0.weight"], "controlnet"),
        (["control_model.input_blocks.0.0.weight", "control_model.zero_convs.0.0.weight"],
         "controlnet"),
        (["controlnet_cond_embedding.conv_in.weight", "down_blocks.0.resnets.0.conv1.weight"],
         "controlnet"),
        (CHECKPOINT, "checkpoints"),
        (["model.diffusion_model.double_blocks.0.img_attn.qkv.weight", "vae.decoder.conv_in.bias",
          "text_encoders.t5xxl.transformer.shared.weight"], "checkpoints"),
        (["first_stage_model.encoder.conv_in.weight", "first_stage_model.decoder.conv_out.bias"],
         "vae"),
        (["encoder.down_blocks.0.resnets.0.conv1.weight", "decoder.up_blocks.0.norm1.weight"],
         "vae"),
        (["encoder.down.0.block.0.conv1.weight", "decoder.up.0.block.0.conv1.weight"], "vae"),
        (["encoder.block.0.layer.0.SelfAttention.k.weight", "shared.weight"], "text_encoders"),
        (["text_model.encoder.layers.0.mlp.fc1.weight", "text_model.final_layer_norm.weight"],
         "text_encoders"),
        (["vision_model.encoder.layers.0.mlp.fc1.weight", "visual_projection.weight"],
         "clip_vision"),
        (FLUX, "diffusion_models"),
        (["joint_blocks.0.x_block.attn.qkv.weight", "x_embedder.proj.weight"], "diffusion_models"),
        (["model.diffusion_model.double_blocks.0.img_attn.qkv.weight"], "diffusion_models"),
        (["blocks.0.self_attn.q.weight", "patch_embedding.weight"], "diffusion_models"),
        (["model.0.weight", "model.1.sub.0.RDB1.conv1.0.weight"], "upscale_models"),
        (["conv_first.weight", "body.0.rdb1.conv1.weight", "conv_last.weight"], "upscale_models"),
        (["emb_params"], "embeddings"),
        (["clip_l", "clip_g"], "embeddings"),
        (["weight", "bias"], None),
        (["text_model.encoder.layers.0.x", "vision_model.encoder.layers.0.x"], None),
        ([], None),
    ],
)  # fmt: skip
def test_kind_from_tensor_names(keys: list[str], kind: str | None) -> None:
    found = kind_from_tensor_names(keys)
    if kind is None:
        assert found is None
    else:
        assert found is not None and found.kind == kind and found.method == "header"
        assert "header:" in found.reason


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("sdxl_vae.safetensors", "vae"),
        ("vae-ft-mse-840000-ema-pruned.ckpt", "vae"),
        ("ae.safetensors", "vae"),
        ("taesd_decoder.pth", "vae_approx"),
        ("add_detail_LoRA.safetensors", "loras"),
        ("myLora.safetensors", "loras"),
        ("floral_landscape.safetensors", None),
        ("control_v11p_sd15_canny.pth", "controlnet"),
        ("t2iadapter_style_sd14v1.pth", "style_models"),
        ("flux1-redux-dev.safetensors", "style_models"),
        ("t2iadapter_depth_sd15v2.pth", "controlnet"),
        ("4x-UltraSharp.pth", "upscale_models"),
        ("RealESRGAN_x4plus.pth", "upscale_models"),
        ("clip_l.safetensors", "text_encoders"),
        ("t5xxl_fp16.safetensors", "text_encoders"),
        ("umt5_xxl_fp8_e4m3fn_scaled.safetensors", "text_encoders"),
        ("clip_vision_h.safetensors", "clip_vision"),
        ("EasyNegative_embedding.pt", "embeddings"),
        ("wav2vec2_large.safetensors", "audio_encoders"),
        ("my_unet.safetensors", "diffusion_models"),
        ("dreamshaper_8.ckpt", "checkpoints"),
        ("dreamshaper_8.safetensors", None),
    ],
)
def test_kind_from_name(name: str, kind: str | None) -> None:
    found = kind_from_name(name)
    assert (found.kind if found else None) == kind


def test_read_safetensors_header_reads_only_the_header(tmp_path: Path) -> None:
    path = tmp_path / "big.safetensors"
    path.write_bytes(safetensors(FLUX))
    with path.open("r+b") as handle:
        handle.truncate(8 * 1024**3)  # sparse: reading the tensors would take seconds
    header = read_safetensors_header(path)
    assert header is not None and set(header) == {"__metadata__", *FLUX}

    bad_files = [
        b"",
        b"\x00" * 4,
        struct.pack("<Q", 10**12) + b"{}",
        struct.pack("<Q", 4) + b"[1] ",
        struct.pack("<Q", 8) + b"not json",
        b"GGUF\x03\x00\x00\x00" + b"\x00" * 64,
    ]
    for bad in bad_files:
        path.write_bytes(bad)
        assert read_safetensors_header(path) is None


def test_classify_prefers_manifest_then_header_then_name(tmp_path: Path) -> None:
    lora_named_vae = tmp_path / "vae_style.safetensors"
    lora_named_vae.write_bytes(safetensors(LORA_KOHYA))
    assert classify_model_file(lora_named_vae).kind == "loras"
    index = ManifestIndex.from_entries(
        [ModelEntry(url="https://x.org/f", kind="vae", filename="vae_style.safetensors")]
    )
    found = classify_model_file(lora_named_vae, manifest=index)
    assert (found.kind, found.method) == ("vae", "manifest")
    unknown = tmp_path / "mystery.safetensors"
    unknown.write_bytes(safetensors(["weight"]))
    assert classify_model_file(unknown).method == "none"


# --------------------------------------------------------------------------- organize


def loose_files(models: Path) -> dict[str, bytes]:
    files = {
        "kohya_style.safetensors": safetensors(LORA_KOHYA),
        "sd15_pruned.safetensors": safetensors(CHECKPOINT),
        "flux_dev_fp8.safetensors": safetensors(FLUX),
        "sdxl_vae.safetensors": safetensors(["decoder.conv_in.weight"]),  # name decides
        "t5.sft": safetensors(["encoder.block.0.layer.0.SelfAttention.q.weight"]),
        "mystery.safetensors": safetensors(["weight", "bias"]),
        "4x_foolhardy.pth": b"\x80\x02pickle",
    }
    for name, body in files.items():
        (models / name).write_bytes(body)
    (models / "notes.txt").write_text("not a model")
    return files


def test_organize_by_header_and_name(tmp_path: Path) -> None:
    root = install_dir(tmp_path)
    models = root / "ComfyUI" / "models"
    files = loose_files(models)

    result = invoke("organize", root)

    assert result.exit_code == 0, result.output
    expected = {
        "loras/kohya_style.safetensors": "kohya_style.safetensors",
        "checkpoints/sd15_pruned.safetensors": "sd15_pruned.safetensors",
        "diffusion_models/flux_dev_fp8.safetensors": "flux_dev_fp8.safetensors",
        "vae/sdxl_vae.safetensors": "sdxl_vae.safetensors",
        "text_encoders/t5.sft": "t5.sft",
        "upscale_models/4x_foolhardy.pth": "4x_foolhardy.pth",
    }
    for relative, name in expected.items():
        assert (models / relative).read_bytes() == files[name], relative
        assert not (models / name).exists()
    assert (models / "mystery.safetensors").exists()  # unclassified: left and listed
    assert (models / "notes.txt").exists()
    assert "mystery.safetensors" in result.stderr and "unclassified" in result.stderr
    assert "6 file(s) were moved" in result.stderr


def test_organize_dry_run_changes_nothing(tmp_path: Path) -> None:
    root = install_dir(tmp_path)
    models = root / "ComfyUI" / "models"
    loose_files(models)
    before = tree(root)

    table = invoke("organize", root, "--dry-run")
    as_json = invoke("organize", root, "--dry-run", "--json")

    assert table.exit_code == 0 and as_json.exit_code == 0
    assert tree(root) == before
    assert "Dry run, nothing changed" in table.stderr and "would be moved" in table.stderr
    assert table.stdout == ""
    document = envelope(as_json)
    assert document["command"] == ["models", "organize", str(root), "--dry-run"]
    data = document["data"]
    assert data["dry_run"] is True and data["counts"]["move"] == 6
    by_name = {Path(a["source"]).name: a for a in data["actions"]}
    assert by_name["kohya_style.safetensors"]["destination"] == str(
        models / "loras" / "kohya_style.safetensors"
    )
    assert by_name["kohya_style.safetensors"]["method"] == "header"
    assert by_name["sdxl_vae.safetensors"]["method"] == "name"
    assert by_name["mystery.safetensors"]["action"] == "unclassified"


def test_organize_by_manifest_name_and_sha256(tmp_path: Path) -> None:
    root = install_dir(tmp_path)
    models = root / "ComfyUI" / "models"
    downloads = tmp_path / "Downloads"
    downloads.mkdir()
    renamed = safetensors(["weight"], data_bytes=40)
    (downloads / "model (1).safetensors").write_bytes(renamed)
    (downloads / "style.safetensors").write_bytes(safetensors(["a"]))
    manifest = write_manifest(
        tmp_path / "m.json",
        [{"url": "https://example.org/dl/12345", "kind": "clip_vision", "sha256": sha(renamed)},
         {"url": "https://example.org/x", "kind": "loras", "filename": "sd15/style.safetensors",
          "sha256": "0" * 64}],
    )  # fmt: skip

    result = invoke("organize", root, "--from", downloads, "--manifest", manifest, "--json")

    assert result.exit_code == 0, result.output
    assert (models / "clip_vision" / "model (1).safetensors").read_bytes() == renamed
    assert (models / "loras" / "sd15" / "style.safetensors").exists()
    reasons = {Path(a["source"]).name: a["reason"] for a in envelope(result)["data"]["actions"]}
    assert reasons["model (1).safetensors"] == "manifest: models[0] has its sha256"
    assert reasons["style.safetensors"] == "manifest: models[1] names it"


def test_organize_never_overwrites_a_different_file(tmp_path: Path) -> None:
    root = install_dir(tmp_path)
    models = root / "ComfyUI" / "models"
    (models / "loras").mkdir()
    theirs = safetensors(LORA_KOHYA, data_bytes=64)
    (models / "loras" / "style.safetensors").write_bytes(theirs)
    mine = safetensors(LORA_KOHYA, data_bytes=32)
    (models / "style.safetensors").write_bytes(mine)
    same = safetensors([*LORA_KOHYA, "lora_te_x.alpha"])
    (models / "loras" / "twin.safetensors").write_bytes(same)
    (models / "twin.safetensors").write_bytes(same)

    result = invoke("organize", root, "--json")

    assert result.exit_code == 0, result.output
    assert (models / "loras" / "style.safetensors").read_bytes() == theirs
    assert (models / "style.safetensors").read_bytes() == mine
    assert not (models / "twin.safetensors").exists()  # identical duplicate removed
    assert (models / "loras" / "twin.safetensors").read_bytes() == same
    actions = {Path(a["source"]).name: a for a in envelope(result)["data"]["actions"]}
    assert actions["style.safetensors"]["action"] == "skip"
    assert "different file" in actions["style.safetensors"]["reason"]
    assert actions["twin.safetensors"]["action"] == "remove-duplicate"


def test_organize_two_loose_files_with_one_name(tmp_path: Path) -> None:
    root = install_dir(tmp_path)
    models = root / "ComfyUI" / "models"
    other = tmp_path / "other"
    other.mkdir()
    (models / "a_lora.safetensors").write_bytes(b"first")
    (other / "a_lora.safetensors").write_bytes(b"second")
    result = invoke("organize", root, "--from", other, "--json")
    assert result.exit_code == 0, result.output
    assert (models / "loras" / "a_lora.safetensors").read_bytes() == b"first"
    assert (other / "a_lora.safetensors").read_bytes() == b"second"


def test_organize_missing_from_is_usage_error(tmp_path: Path) -> None:
    result = invoke("organize", install_dir(tmp_path), "--from", tmp_path / "nope")
    assert result.exit_code == 2 and "does not exist" in result.stderr


def test_organize_skips_unreadable_and_refuses_symlinked_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / "locked.safetensors").write_bytes(safetensors(FLUX))
    (models / "real_lora.pth").write_bytes(b"x")
    (tmp_path / "link.safetensors").symlink_to(models / "real_lora.pth")

    def unreadable(path: Path) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("installer.models.classify.read_safetensors_header", unreadable)
    plan = plan_organize(models)
    by_name = {action.source.name: action for action in plan.actions}
    assert by_name["locked.safetensors"].action == "skip"
    assert "cannot read it: Permission denied" in by_name["locked.safetensors"].reason
    assert by_name["real_lora.pth"].action == "move"

    with pytest.raises(UsageError, match="symlink"):
        plan_organize(models, sources=[tmp_path / "link.safetensors"])


def test_organize_into_shared_store(tmp_path: Path) -> None:
    root = install_dir(tmp_path)
    models = root / "ComfyUI" / "models"
    store = tmp_path / "store"
    store.mkdir()
    (models / "x_lora.safetensors").write_bytes(b"lora")

    result = invoke("organize", root, "--shared-models", store, "--link")

    assert result.exit_code == 0, result.output
    assert (store / "loras" / "x_lora.safetensors").read_bytes() == b"lora"
    link = models / "loras" / "x_lora.safetensors"
    assert link.is_symlink() and link.read_bytes() == b"lora"
    assert not (models / "x_lora.safetensors").exists()
    assert not (root / "ComfyUI" / "extra_model_paths.yaml").exists()

    inside = invoke("organize", root, "--shared-models", models / "loras")
    assert inside.exit_code == 2 and "inside" in inside.stderr


# --------------------------------------------------------------------------- share


USER_YAML = """\
#config for a1111 ui
a111:
    base_path: path/to/stable-diffusion-webui/
    checkpoints: models/Stable-diffusion
    loras: |
         models/Lora
         models/LyCORIS

# trailing user comment
"""


def test_share_writes_yaml_and_keeps_user_sections(tmp_path: Path) -> None:
    root = install_dir(tmp_path)
    config = root / "ComfyUI" / "extra_model_paths.yaml"
    config.write_text(USER_YAML)
    store = tmp_path / "store one"
    store.mkdir()

    first = invoke("share", root, store, "--json")
    assert first.exit_code == 0, first.output
    text = config.read_text()
    assert text.startswith(USER_YAML)
    assert f"{SHARED_SECTION}:\n    base_path: '{store.resolve()}'\n" in text
    assert "    loras: 'loras'\n" in text
    assert '    text_encoders: "text_encoders\\nclip"\n' in text
    assert '    diffusion_models: "diffusion_models\\nunet"\n' in text
    assert envelope(first)["data"]["config_path"] == str(config)

    assert invoke("share", root, store).exit_code == 0
    assert config.read_text() == text  # idempotent

    other = tmp_path / "store two"
    other.mkdir()
    assert invoke("share", root, other).exit_code == 0
    replaced = config.read_text()
    assert replaced.startswith(USER_YAML)
    assert replaced.count(f"{SHARED_SECTION}:") == 1
    assert str(other.resolve()) in replaced and f"'{store.resolve()}'" not in replaced
    sections = [line.split(":")[0] for line in replaced.splitlines()
                if line and not line.startswith((" ", "#"))]  # fmt: skip
    assert sections == ["a111", SHARED_SECTION]


def test_shared_section_structure() -> None:
    section = shared_config_section(Path("/mnt/models"))
    lines = section.splitlines()
    assert lines[0].startswith("# >>>") and lines[-1].startswith("# <<<")
    body = [line for line in lines if not line.startswith("#")]
    assert body[0] == f"{SHARED_SECTION}:"
    entries = dict(line.strip().split(": ", 1) for line in body[1:])
    assert entries["base_path"] == "'/mnt/models'"
    assert set(entries) == {"base_path", *MODEL_KINDS}

    literal = shared_config_section(Path("/mnt/$HOME/models"))
    assert "base_path" not in literal
    assert "    checkpoints: '/mnt/$HOME/models/checkpoints'\n" in literal


@pytest.mark.parametrize(
    "existing",
    [
        "{a111: {base_path: /x}}\n",
        "---\na: {}\n---\nb: {}\n",
        "- a\n- b\n",
        f"{SHARED_SECTION}:\n    base_path: /mine\n",
        "x: 1\n# >>> comfy-install shared models >>>\ncomfy_install_shared:\n",
    ],
)
def test_share_refuses_a_yaml_it_cannot_edit_safely(tmp_path: Path, existing: str) -> None:
    root = install_dir(tmp_path)
    config = root / "ComfyUI" / "extra_model_paths.yaml"
    config.write_text(existing)
    store = tmp_path / "store"
    store.mkdir()
    result = invoke("share", root, store)
    assert result.exit_code == 2, result.output
    assert "hint:" in result.stderr
    assert config.read_text() == existing


def test_merge_keeps_crlf_and_empty_files() -> None:
    section = shared_config_section(Path("/s"))
    assert merge_extra_model_paths("", section, path=Path("x")) == section
    merged = merge_extra_model_paths("a:\r\n    b: c\r\n", section, path=Path("x"))
    assert merged.startswith("a:\r\n    b: c\r\n\r\n# >>>") and "\n" not in merged.replace(
        "\r\n", ""
    )


@pytest.mark.parametrize(
    "text", ["plain", "it's", "C:\\Users\\me\\models", "a: b # c", "tab\there", "line\nbreak",
             "uni\u2028code", "quote\"s", "émoji 🎨"],
)  # fmt: skip
def test_yaml_quote_round_trips(text: str) -> None:
    quoted = yaml_quote(text)
    assert quoted.startswith("'" if text.isprintable() else '"')
    loaded = _yaml_python_eval(
        "import json, sys, yaml; print(json.dumps(yaml.safe_load('k: ' + sys.argv[1])['k']))",
        quoted,
    )
    if loaded is None:
        pytest.skip("needs a Python with PyYAML")
    assert json.loads(loaded) == text


def _yaml_python() -> str | None:
    """A Python on this machine that has PyYAML (ComfyUI's parser), if any."""
    candidates = [sys.executable, shutil.which("python3", path=os.defpath) or ""]
    for candidate in candidates:
        if candidate and subprocess.run([candidate, "-c", "import yaml"],
                                        capture_output=True).returncode == 0:  # fmt: skip
            return candidate
    return None


_PYTHON_WITH_YAML: list[str | None] = []


def _yaml_python_eval(code: str, *args: str) -> str | None:
    if not _PYTHON_WITH_YAML:
        _PYTHON_WITH_YAML.append(_yaml_python())
    python = _PYTHON_WITH_YAML[0]
    if python is None:
        return None
    done = subprocess.run([python, "-c", code, *args], capture_output=True, text=True, check=True)
    return done.stdout.strip()


STUB_FOLDER_PATHS = """
calls = []
def add_model_folder_path(folder_name, full_folder_path, is_default=False):
    calls.append([folder_name, full_folder_path, is_default])
"""

LOAD_WITH_COMFYUI = """
import importlib.util, json, sys
sys.path.insert(0, sys.argv[1])
spec = importlib.util.spec_from_file_location("extra_config", sys.argv[2])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
module.load_extra_path_config(sys.argv[3])
import folder_paths
print(json.dumps(folder_paths.calls))
"""


def test_comfyui_own_loader_reads_the_section(tmp_path: Path, comfyui_source: Path) -> None:
    """ComfyUI v0.3.77's utils/extra_config.py, run as is, registers the store's folders."""
    if _yaml_python_eval("import yaml") is None:
        pytest.skip("needs a Python with PyYAML")
    root = install_dir(tmp_path)
    config = root / "ComfyUI" / "extra_model_paths.yaml"
    config.write_text(USER_YAML)
    store = tmp_path / "it's a: #store"
    store.mkdir()
    dollar = tmp_path / "$HOME store"
    dollar.mkdir()
    stub = tmp_path / "stub"
    stub.mkdir()
    (stub / "folder_paths.py").write_text(STUB_FOLDER_PATHS)
    loader = comfyui_source / "utils" / "extra_config.py"

    for shared in (store, dollar):
        assert invoke("share", root, shared).exit_code == 0
        out = _yaml_python_eval(LOAD_WITH_COMFYUI, str(stub), str(loader), str(config))
        assert out is not None
        calls = [(kind, path) for kind, path, _default in json.loads(out)]
        base = str(shared.resolve())
        ours = [(kind, path) for kind, path in calls if path.startswith(base)]
        assert ("loras", f"{base}/loras") in ours
        assert ("text_encoders", f"{base}/text_encoders") in ours
        assert ("text_encoders", f"{base}/clip") in ours
        assert ("diffusion_models", f"{base}/unet") in ours
        assert {kind for kind, _ in ours} == set(MODEL_KINDS)
        assert any(kind == "checkpoints" and "stable-diffusion-webui" in path
                   for kind, path in calls)  # fmt: skip


def test_share_link_symlinks_files(tmp_path: Path) -> None:
    root = install_dir(tmp_path)
    models = root / "ComfyUI" / "models"
    store = tmp_path / "store"
    (store / "loras" / "sdxl").mkdir(parents=True)
    (store / "clip").mkdir()
    (store / "loras" / "sdxl" / "a.safetensors").write_bytes(b"a")
    (store / "clip" / "t5.safetensors").write_bytes(b"t5")
    (store / "loras" / ".hidden").write_bytes(b"h")
    (models / "loras").mkdir()
    (models / "loras" / "b.safetensors").write_bytes(b"mine")
    (store / "loras" / "b.safetensors").write_bytes(b"theirs")

    result = invoke("share", root, store, "--link", "--json")

    assert result.exit_code == 0, result.output
    a = models / "loras" / "sdxl" / "a.safetensors"
    t5 = models / "text_encoders" / "t5.safetensors"
    assert a.is_symlink() and a.resolve() == (store / "loras" / "sdxl" / "a.safetensors").resolve()
    assert t5.is_symlink() and t5.read_bytes() == b"t5"
    assert (models / "loras" / "b.safetensors").read_bytes() == b"mine"
    assert not (models / "loras" / ".hidden").exists()
    actions = {Path(x["destination"]).name: x["action"] for x in envelope(result)["data"]["links"]}
    assert actions == {"a.safetensors": "linked", "t5.safetensors": "linked",
                       "b.safetensors": "skipped"}  # fmt: skip
    assert "a different file" in result.stderr

    again = invoke("share", root, store, "--link", "--json")
    assert {x["action"] for x in envelope(again)["data"]["links"]} == {"present", "skipped"}


def test_link_copies_where_symlinks_are_not_allowed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = tmp_path / "store"
    (store / "vae").mkdir(parents=True)
    (store / "vae" / "v.safetensors").write_bytes(b"vae bytes")
    (store / "vae" / "w.safetensors").write_bytes(b"w bytes")
    models = tmp_path / "models"

    def refuse(self: Path, target: Any, target_is_directory: bool = False) -> None:
        raise OSError(1314, "A required privilege is not held by the client")

    monkeypatch.setattr(Path, "symlink_to", refuse)
    warnings: list[str] = []
    log = InstallerLogger(verbosity=-1)
    monkeypatch.setattr(log, "warn", warnings.append)

    actions = link_shared_models(store, models, log=log)

    assert [a.action for a in actions] == ["copied", "copied"]
    copied = models / "vae" / "v.safetensors"
    assert not copied.is_symlink() and copied.read_bytes() == b"vae bytes"
    assert len(warnings) == 1 and "copying" in warnings[0]


# --------------------------------------------------------------------------- CLI wiring


def test_models_app_help_and_default_dir() -> None:
    from installer.cli import common

    result = runner.invoke(models_app, ["--help"])
    assert result.exit_code == 0
    for command in ("download", "organize", "share"):
        assert command in result.output
    from installer.cli.models import DEFAULT_DIR

    assert DEFAULT_DIR == common.DEFAULT_DIR


def test_main_app_has_models_commands() -> None:
    from installer.cli.app import app

    result = runner.invoke(app, ["models", "--help"])
    if result.exit_code != 0:
        pytest.skip("models_app is not registered in installer.cli.app yet")
    assert "organize" in result.output


def test_importing_the_cli_module_stays_light() -> None:
    code = (
        "import sys, installer.cli.models; "
        "print(sorted(m for m in ('httpx', 'pydantic', 'installer.models',"
        " 'installer.edges.download') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
