"""Run in a Python with torch beside a ComfyUI source: the benchmark's models load there.

Usage: ``python gpu_models_check.py COMFYUI_DIR MAKE_MODELS_PY WORK_DIR``. Prints one
JSON object of findings on its last line; the test asserts on it. It checks, with
ComfyUI's own code on the CPU:

- SDXL: the full-size checkpoint layout, as zero-stride tensors (nothing allocated),
  is detected as `supported_models.SDXL` with SDXL's UNet config; its CLIP part,
  after ComfyUI's `process_clip_state_dict`, has exactly the keys and shapes of
  `SDXLClipModel`; its VAE part, written to a real file by the generator's writer,
  loads through `comfy.sd.VAE`.
- Wan 2.1: the tiny files the generator writes load through
  `comfy.sd.load_diffusion_model` (detected as WAN21_T2V) and `comfy.sd.VAE`
  (WanVAE, decodes a latent); the full-size 1.3B layout is detected as the same
  class from zero-stride tensors; the umt5 layout is detected as T5-XXL by
  `detect_te_model`, matches ComfyUI's Wan text encoder key for key, and its
  SentencePiece model tokenizes a prompt.
- FLUX.1 [dev]: the tiny DiT file loads through `comfy.sd.load_diffusion_model`
  (detected as `supported_models.Flux`, its ``scale`` norms renamed on load), the
  autoencoder file loads through `comfy.sd.VAE` (16 latent channels) and decodes; the
  full-size DiT layout is detected as Flux with dev's sizes from zero-stride tensors,
  and the CLIP-L and T5-XXL files' layouts are detected as such by `detect_te_model`
  and match ComfyUI's Flux text encoder key for key.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path


def main() -> None:
    comfyui, make_models_py, work = (Path(a) for a in sys.argv[1:4])
    spec = importlib.util.spec_from_file_location("make_models", make_models_py)
    assert spec is not None and spec.loader is not None
    mm = importlib.util.module_from_spec(spec)
    sys.modules["make_models"] = mm
    spec.loader.exec_module(mm)
    mm.import_comfy(comfyui)

    import comfy.model_detection
    import comfy.sd
    import comfy.sdxl_clip
    import comfy.supported_models
    import comfy.text_encoders.flux
    import comfy.text_encoders.wan
    import comfy.utils
    import torch

    found: dict[str, object] = {}

    def zero_stride(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = {}
        for key, value in tensors.items():
            if value.device.type == "meta":
                out[key] = torch.zeros((), dtype=value.dtype).expand(value.shape)
            else:
                out[key] = value
        return out

    # SDXL, full size, without materialising it.
    (sdxl,) = mm.sdxl_layout(comfy, torch.float16)
    sd = zero_stride(sdxl.tensors)
    prefix = comfy.model_detection.unet_prefix_from_state_dict(sd)
    config = comfy.model_detection.model_config_from_unet(sd, prefix)
    found["sdxl_prefix"] = prefix
    found["sdxl_class"] = type(config).__name__
    found["sdxl_unet_config_matches"] = all(
        config.unet_config.get(k) == v for k, v in mm.SDXL_UNET_CONFIG.items()
    )
    clip_sd = config.process_clip_state_dict(
        {k: v for k, v in sd.items() if k.startswith("conditioner.")}
    )
    with torch.device("meta"):
        clip_model = comfy.sdxl_clip.SDXLClipModel(device="meta", dtype=torch.float16)
    wanted = {k: tuple(v.shape) for k, v in clip_model.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in clip_sd.items()}
    found["sdxl_clip_missing"] = sorted(set(wanted) - set(got))[:5]
    found["sdxl_clip_extra"] = sorted(set(got) - set(wanted))[:5]
    found["sdxl_clip_shape_mismatch"] = [
        k for k in wanted.keys() & got.keys() if wanted[k] != got[k]
    ][:5]
    vae_part = {k: v for k, v in sdxl.tensors.items() if k.startswith("first_stage_model.")}
    pool = mm.RandomPool(0)
    vae_file, _ = mm.write_safetensors(
        mm.FileLayout("checkpoints/sdxl-vae-part.safetensors", vae_part, torch.float16), work, pool
    )
    vae_sd = comfy.utils.load_torch_file(str(vae_file))
    vae_sd = comfy.utils.state_dict_prefix_replace(
        vae_sd, {"first_stage_model.": ""}, filter_keys=True
    )
    vae = comfy.sd.VAE(sd=vae_sd)
    found["sdxl_vae_class"] = type(vae.first_stage_model).__name__
    found["sdxl_vae_latent_channels"] = vae.latent_channels

    # Wan 2.1: the tiny files, really loaded.
    assert (
        mm.main(["--comfyui", str(comfyui), "--out", str(work), "--models", "wan21", "--tiny"]) == 0
    )
    dit = comfy.sd.load_diffusion_model(str(work / mm.FILE_NAMES["wan21-dit-tiny"]))
    found["wan_tiny_config"] = type(dit.model.model_config).__name__
    found["wan_tiny_model"] = type(dit.model).__name__
    found["wan_tiny_dim"] = dit.model.diffusion_model.dim
    wan_vae = comfy.sd.VAE(
        sd=comfy.utils.load_torch_file(str(work / mm.FILE_NAMES["wan21-vae-tiny"]))
    )
    found["wan_vae_class"] = (
        type(wan_vae.first_stage_model).__module__ + "." + type(wan_vae.first_stage_model).__name__
    )
    images = wan_vae.decode(torch.zeros(1, 16, 2, 8, 8))
    found["wan_vae_decoded_shape"] = list(images.shape)

    # Wan 2.1 1.3B and umt5-xxl at full size, from zero-stride tensors.
    full = zero_stride(mm.wan_dit_layout(comfy, torch.bfloat16, "1.3b").tensors)
    wan_config = comfy.model_detection.model_config_from_unet(full, "")  # as UNETLoader: no prefix
    found["wan_full_config"] = type(wan_config).__name__
    found["wan_full_dims"] = [
        wan_config.unet_config[k] for k in ("dim", "ffn_dim", "num_heads", "num_layers")
    ]
    umt5 = mm.umt5_layout(comfy, torch.bfloat16, comfyui)
    te_sd = zero_stride(umt5.tensors)
    found["umt5_te_model"] = comfy.sd.detect_te_model(te_sd).name
    with torch.device("meta"):
        te = comfy.text_encoders.wan.te()(device="meta", dtype=torch.bfloat16)
    te_keys = {k for k in te.umt5xxl.transformer.state_dict()}
    found["umt5_key_diff"] = sorted(te_keys ^ (set(te_sd) - {"spiece_model"}))[:5]
    tokenizer = comfy.text_encoders.wan.WanT5Tokenizer(
        tokenizer_data={"spiece_model": te_sd["spiece_model"]}
    )
    tokens = tokenizer.tokenize_with_weights("a red fox in the snow")
    ids = [t[0] for t in tokens["umt5xxl"][0]]
    found["umt5_tokens_ok"] = bool(ids) and max(ids) < te_sd["shared.weight"].shape[0]

    # FLUX.1 [dev]: tiny DiT and the autoencoder really loaded, full sizes detected.
    assert (
        mm.main(["--comfyui", str(comfyui), "--out", str(work), "--models", "flux", "--tiny"]) == 0
    )
    flux = comfy.sd.load_diffusion_model(str(work / mm.FILE_NAMES["flux-dit-tiny"]))
    found["flux_tiny_config"] = type(flux.model.model_config).__name__
    found["flux_tiny_hidden"] = flux.model.diffusion_model.hidden_size
    flux_vae = comfy.sd.VAE(sd=comfy.utils.load_torch_file(str(work / mm.FILE_NAMES["flux-ae"])))
    found["flux_vae_latent_channels"] = flux_vae.latent_channels
    found["flux_vae_decoded_shape"] = list(flux_vae.decode(torch.zeros(1, 16, 8, 8)).shape)
    flux_full = zero_stride(mm.flux_dit_layout(comfy, torch.bfloat16, "dev").tensors)
    flux_config = comfy.model_detection.model_config_from_unet(flux_full, "")
    found["flux_full_config"] = type(flux_config).__name__
    found["flux_full_dims"] = [
        flux_config.unet_config[k]
        for k in ("hidden_size", "num_heads", "depth", "depth_single_blocks", "guidance_embed")
    ]
    clip_l, t5xxl = mm.flux_text_layouts(comfy, torch.float16)
    found["flux_te_models"] = [
        comfy.sd.detect_te_model(zero_stride(f.tensors)).name for f in (clip_l, t5xxl)
    ]
    with torch.device("meta"):
        flux_te = comfy.text_encoders.flux.flux_clip()(device="meta", dtype=torch.float16)
    te_wanted = set(flux_te.clip_l.transformer.state_dict()) | set(
        flux_te.t5xxl.transformer.state_dict()
    )
    found["flux_te_key_diff"] = sorted(te_wanted ^ (set(clip_l.tensors) | set(t5xxl.tensors)))[:5]
    print(json.dumps(found))


if __name__ == "__main__":
    main()
