"""The GPU benchmark's generated models load through ComfyUI v0.33.0's own loaders (CPU).

`bench/gpu/make_models.py` writes random-weight models in ComfyUI's file formats;
the GPU machine runs real workflows on them. This test runs the checks in
`support/gpu_models_check.py` with a Python that has torch, beside the real
ComfyUI v0.33.0 source: SDXL's full-size layout is detected as SDXL from
zero-stride tensors (its detection pins the sizes), its CLIP part converts to
exactly ComfyUI's CLIP keys, its VAE part is written and loaded; the tiny Wan
files are written and loaded (Wan's detection reads sizes from shapes), the
full-size Wan and umt5 layouts are detected right; the tiny Flux DiT and the
Flux autoencoder are written and loaded, the full-size Flux DiT, CLIP-L and T5-XXL
layouts are detected right.

The Python: ``GPU_BENCH_PYTHON`` and ``GPU_BENCH_COMFYUI`` when both are set (a
venv with torch and ComfyUI's requirements, and a v0.33.0 checkout), else the venv
and ComfyUI of the session's shared real install (`real_install`: the torch 2.11.0 trio
from the registry and v0.33.0's requirements, the same set a venv built here would
hold), which the checks only read. Using it instead of a venv of this test's own saves
the suite a clone, a venv and, with bytecode caching on (CI), compiling torch and
ComfyUI a second time: about 10 s. The checks take about 10 s on two cores.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from support.cli import REPO_ROOT
from support.real import REAL_ENV

pytestmark = pytest.mark.real


@pytest.fixture(scope="module")
def comfy_torch(request: pytest.FixtureRequest) -> tuple[str, Path]:
    """(Python with torch and ComfyUI's requirements, ComfyUI v0.33.0 source folder)."""
    python, comfyui = os.environ.get("GPU_BENCH_PYTHON"), os.environ.get("GPU_BENCH_COMFYUI")
    if python and comfyui:
        return python, Path(comfyui)
    install: Path = request.getfixturevalue("real_install")
    return str(install / "venv" / "bin" / "python"), install / "ComfyUI"


def test_generated_models_load_through_comfyui(
    comfy_torch: tuple[str, Path], tmp_path: Path
) -> None:
    python, comfyui = comfy_torch
    done = subprocess.run(
        [
            python,
            str(REPO_ROOT / "tests" / "support" / "gpu_models_check.py"),
            str(comfyui),
            str(REPO_ROOT / "bench" / "gpu" / "make_models.py"),
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=REAL_ENV,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])

    # SDXL: detected from the full-size layout, CLIP keys as ComfyUI's, VAE loaded.
    assert found["sdxl_prefix"] == "model.diffusion_model."
    assert found["sdxl_class"] == "SDXL"
    assert found["sdxl_unet_config_matches"]
    # ComfyUI's own save drops these two and adds position_ids, as released checkpoints do.
    assert set(found["sdxl_clip_missing"]) <= {
        "clip_l.logit_scale",
        "clip_l.transformer.text_projection.weight",
    }
    assert set(found["sdxl_clip_extra"]) <= {
        "clip_l.transformer.text_model.embeddings.position_ids"
    }
    assert found["sdxl_clip_shape_mismatch"] == []
    assert found["sdxl_vae_class"] == "AutoencoderKL"
    assert found["sdxl_vae_latent_channels"] == 4

    # Wan 2.1: tiny files loaded for real, full-size layouts detected.
    assert found["wan_tiny_config"] == "WAN21_T2V"
    assert found["wan_tiny_model"] == "WAN21"
    assert found["wan_tiny_dim"] == 128
    assert found["wan_vae_class"] == "comfy.ldm.wan.vae.WanVAE"
    assert found["wan_vae_decoded_shape"] == [1, 5, 64, 64, 3]
    assert found["wan_full_config"] == "WAN21_T2V"
    assert found["wan_full_dims"] == [1536, 8960, 12, 30]
    assert found["umt5_te_model"] == "T5_XXL"
    assert found["umt5_key_diff"] == []
    assert found["umt5_tokens_ok"]

    # FLUX.1 [dev]: the tiny DiT and the autoencoder loaded for real, full sizes detected.
    assert found["flux_tiny_config"] == "Flux"
    assert found["flux_tiny_hidden"] == 256
    assert found["flux_vae_latent_channels"] == 16
    assert found["flux_vae_decoded_shape"] == [1, 64, 64, 3]
    assert found["flux_full_config"] == "Flux"
    assert found["flux_full_dims"] == [3072, 24, 19, 38, True]
    assert found["flux_te_models"] == ["CLIP_L", "T5_XXL"]
    assert found["flux_te_key_diff"] == []
