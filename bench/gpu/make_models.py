#!/usr/bin/env python3
"""Write random-weight models in ComfyUI's own file formats and key layouts.

The GPU machine cannot download weights, so the benchmark makes its own: every
file here has the keys, shapes and dtypes of the real one, taken from ComfyUI's
own model classes (built on the ``meta`` device, so nothing is allocated) and
ComfyUI's own conversions to the checkpoint layout. ComfyUI's real loaders and
model detection then run on them; the values are random (a small normal, std
0.02), so the images are noise, but the time per step is what a real model of
that shape costs.

Models (``--models``, comma separated):

- ``sdxl``: one SDXL checkpoint for ``CheckpointLoaderSimple``: the UNet under
  ``model.diffusion_model.``, CLIP-L under ``conditioner.embedders.0.``, CLIP-G
  (open_clip layout) under ``conditioner.embedders.1.model.``, the VAE under
  ``first_stage_model.``.
- ``wan21``: Wan 2.1 T2V 1.3B for ``UNETLoader``, umt5-xxl for ``CLIPLoader``
  (type ``wan``; the file carries a SentencePiece model as ``spiece_model``, as
  the released file does) and the Wan 2.1 VAE for ``VAELoader``.
- ``wan21-14b``: the 14B Wan 2.1 T2V diffusion model (28 GB in bf16).
- ``flux``: FLUX.1 [dev] (12B, guidance-distilled) for ``UNETLoader`` (bf16, 23.8 GB,
  the released file's keys: ``query_norm.scale``), CLIP-L and T5-XXL (fp16, as the
  released ``clip_l`` and ``t5xxl_fp16`` files) for ``DualCLIPLoader`` (type ``flux``;
  ComfyUI ships both tokenizers) and the 16-channel autoencoder for ``VAELoader``.

``--tiny`` writes small versions where ComfyUI's detection reads the sizes from
the shapes (the Wan DiT and VAE, the Flux DiT; no text encoders; Flux's autoencoder
stays full size, 84M parameters, since ComfyUI assumes its encoder's width); SDXL's
detection pins its sizes, so it has no tiny version (the test proves its detection on
zero-stride tensors).

Values are drawn once into a pool of random numbers and each tensor reads the
pool from an offset of its own, so writing is disk-bound and memory stays at the
pool plus one write buffer, whatever the model's size.

Usage: ``python bench/gpu/make_models.py --comfyui DIR --out MODELS_DIR
[--models sdxl,wan21,flux] [--tiny] [--dtype auto|fp16|bf16|fp32]``. It needs
ComfyUI's source (``--comfyui``) and a Python with torch; it uses no GPU.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import struct
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STD = 0.02
POOL_ELEMENTS = (1 << 24) + 4099  # odd length: neighbouring rows don't repeat in step
CHUNK_BYTES = 64 << 20

SDXL_UNET_CONFIG: dict[str, Any] = {
    "use_checkpoint": False,
    "image_size": 32,
    "out_channels": 4,
    "use_spatial_transformer": True,
    "legacy": False,
    "num_classes": "sequential",
    "adm_in_channels": 2816,
    "in_channels": 4,
    "model_channels": 320,
    "num_res_blocks": [2, 2, 2],
    "transformer_depth": [0, 0, 2, 2, 10, 10],
    "channel_mult": [1, 2, 4],
    "transformer_depth_middle": 10,
    "use_linear_in_transformer": True,
    "context_dim": 2048,
    "num_head_channels": 64,
    "transformer_depth_output": [0, 0, 0, 2, 2, 2, 10, 10, 10],
    "use_temporal_attention": False,
    "use_temporal_resblock": False,
}
"""SDXL base's UNet, as ComfyUI's detection reads it from the released checkpoint."""

SD_VAE_DDCONFIG: dict[str, Any] = {
    "double_z": True,
    "z_channels": 4,
    "resolution": 256,
    "in_channels": 3,
    "out_ch": 3,
    "ch": 128,
    "ch_mult": [1, 2, 4, 4],
    "num_res_blocks": 2,
    "attn_resolutions": [],
    "dropout": 0.0,
}

WAN_DIT = {
    # Wan 2.1 T2V 1.3B and 14B (the released configs); tiny keeps dim // 128 heads.
    "1.3b": {"dim": 1536, "ffn_dim": 8960, "num_heads": 12, "num_layers": 30},
    "14b": {"dim": 5120, "ffn_dim": 13824, "num_heads": 40, "num_layers": 40},
    "tiny": {"dim": 128, "ffn_dim": 256, "num_heads": 1, "num_layers": 2},
}
WAN_VAE_DIM = {"full": 96, "tiny": 16}

FLUX_DIT: dict[str, dict[str, Any]] = {
    # FLUX.1 [dev], as ComfyUI's detection reads it from the released file; tiny keeps
    # Flux's rotary axes (16, 56, 56: 128 per head), so its width is a multiple of 128.
    "dev": {"hidden_size": 3072, "num_heads": 24, "depth": 19, "depth_single_blocks": 38},
    "tiny": {"hidden_size": 256, "num_heads": 2, "depth": 1, "depth_single_blocks": 1},
}
FLUX_FIXED: dict[str, Any] = {
    "in_channels": 16,
    "out_channels": 16,
    "vec_in_dim": 768,
    "context_in_dim": 4096,
    "mlp_ratio": 4.0,
    "axes_dim": [16, 56, 56],
    "theta": 10000,
    "patch_size": 2,
    "qkv_bias": True,
    "guidance_embed": True,
    "txt_ids_dims": [],
}
FLUX_AE_DDCONFIG: dict[str, Any] = {**SD_VAE_DDCONFIG, "z_channels": 16}
"""FLUX.1's autoencoder: SD's, with 16 latent channels and no quant convolutions."""

FILE_NAMES = {
    "sdxl": "checkpoints/bench-sdxl.safetensors",
    "wan21-dit": "diffusion_models/bench-wan21-t2v-1.3b.safetensors",
    "wan21-14b-dit": "diffusion_models/bench-wan21-t2v-14b.safetensors",
    "wan21-dit-tiny": "diffusion_models/bench-wan21-t2v-tiny.safetensors",
    "umt5": "text_encoders/bench-umt5-xxl.safetensors",
    "wan21-vae": "vae/bench-wan21-vae.safetensors",
    "wan21-vae-tiny": "vae/bench-wan21-vae-tiny.safetensors",
    "flux-dit": "diffusion_models/bench-flux1-dev.safetensors",
    "flux-dit-tiny": "diffusion_models/bench-flux1-tiny.safetensors",
    "clip-l": "text_encoders/bench-clip-l.safetensors",
    "t5xxl": "text_encoders/bench-t5xxl-fp16.safetensors",
    "flux-ae": "vae/bench-flux-ae.safetensors",
}

SAFETENSORS_DTYPES = {
    "float16": "F16",
    "bfloat16": "BF16",
    "float32": "F32",
    "float64": "F64",
    "int64": "I64",
    "int32": "I32",
    "int16": "I16",
    "int8": "I8",
    "uint8": "U8",
    "bool": "BOOL",
    "float8_e4m3fn": "F8_E4M3",
    "float8_e5m2": "F8_E5M2",
}


@dataclass
class FileLayout:
    """One model file: where it goes and its tensors (meta tensors get random values)."""

    relpath: str
    tensors: dict[str, Any]
    dtype: Any  # the torch dtype for floating-point tensors
    metadata: dict[str, str] = field(default_factory=dict)


def import_comfy(comfyui: Path) -> Any:
    """Import ComfyUI's modules from its source folder, with its CPU default set.

    ComfyUI reads its command line only when ``comfy.options`` asks it to; the
    defaults are kept and ``cpu`` is set so that importing the model code never
    asks torch for a CUDA device (this script uses none).
    """
    sys.path.insert(0, str(comfyui))
    import comfy.cli_args

    comfy.cli_args.args.cpu = True
    import comfy.ldm.flux.model
    import comfy.ldm.models.autoencoder
    import comfy.ldm.modules.diffusionmodules.model
    import comfy.ldm.modules.diffusionmodules.openaimodel
    import comfy.ldm.wan.model
    import comfy.ldm.wan.vae
    import comfy.ops
    import comfy.sdxl_clip
    import comfy.supported_models
    import comfy.text_encoders.flux
    import comfy.text_encoders.wan

    return comfy


def _meta_state_dict(build: Callable[[], Any]) -> dict[str, Any]:
    import torch

    with torch.device("meta"):
        module = build()
    return dict(module.state_dict())


def sdxl_layout(comfy: Any, dtype: Any) -> list[FileLayout]:
    """The SDXL checkpoint, in the layout ComfyUI saves and loads."""
    ops = comfy.ops.disable_weight_init
    unet_cls = comfy.ldm.modules.diffusionmodules.openaimodel.UNetModel
    unet = _meta_state_dict(
        lambda: unet_cls(**SDXL_UNET_CONFIG, dtype=dtype, device="meta", operations=ops)
    )
    clip = _meta_state_dict(lambda: comfy.sdxl_clip.SDXLClipModel(device="meta", dtype=dtype))
    vae_cls = comfy.ldm.models.autoencoder.AutoencoderKL
    vae = _meta_state_dict(lambda: vae_cls(ddconfig=dict(SD_VAE_DDCONFIG), embed_dim=4))
    config = comfy.supported_models.SDXL(dict(SDXL_UNET_CONFIG))
    # ComfyUI's own conversions to the checkpoint layout (save_checkpoint uses them);
    # they work on meta tensors, and the few real ones they add are written as they are.
    tensors: dict[str, Any] = {}
    tensors.update(config.process_clip_state_dict_for_saving(clip))
    tensors.update(config.process_unet_state_dict_for_saving(unet))
    tensors.update(config.process_vae_state_dict_for_saving(vae))
    return [FileLayout(FILE_NAMES["sdxl"], tensors, dtype)]


def wan_dit_layout(comfy: Any, dtype: Any, size: str) -> FileLayout:
    """A Wan 2.1 T2V diffusion model, keys as in the released single file."""
    dims = WAN_DIT[size]
    ops = comfy.ops.disable_weight_init
    dit = _meta_state_dict(
        lambda: comfy.ldm.wan.model.WanModel(
            model_type="t2v", **dims, device="meta", dtype=dtype, operations=ops
        )
    )
    name = {"1.3b": "wan21-dit", "14b": "wan21-14b-dit", "tiny": "wan21-dit-tiny"}[size]
    return FileLayout(FILE_NAMES[name], dit, dtype)


def wan_vae_layout(comfy: Any, dtype: Any, tiny: bool) -> FileLayout:
    """The Wan 2.1 VAE (ComfyUI reads its width from ``decoder.head.0.gamma``)."""
    dim = WAN_VAE_DIM["tiny" if tiny else "full"]
    vae = _meta_state_dict(
        lambda: comfy.ldm.wan.vae.WanVAE(
            dim=dim,
            z_dim=16,
            dim_mult=[1, 2, 4, 4],
            num_res_blocks=2,
            attn_scales=[],
            temperal_downsample=[False, True, True],
            dropout=0.0,
        )
    )
    return FileLayout(FILE_NAMES["wan21-vae-tiny" if tiny else "wan21-vae"], vae, dtype)


def umt5_layout(comfy: Any, dtype: Any, comfyui: Path) -> FileLayout:
    """umt5-xxl's encoder in the released file's layout, with a SentencePiece model.

    The keys are those of ComfyUI's T5 (``encoder.block.N...``, ``shared.weight``),
    which its Wan text encoder loads. The released file carries its tokenizer as a
    uint8 tensor ``spiece_model``; the real umt5 one is not in the bundle, so the
    SentencePiece model ComfyUI ships for Pile-T5 stands in (its ids are all below
    umt5's vocabulary size, so every lookup stays in the embedding).
    """
    import torch

    model = _meta_state_dict(lambda: comfy.text_encoders.wan.te()(device="meta", dtype=dtype))
    prefix = "umt5xxl.transformer."
    tensors = {k[len(prefix) :]: v for k, v in model.items() if k.startswith(prefix)}
    spm = (comfyui / "comfy/text_encoders/t5_pile_tokenizer/tokenizer.model").read_bytes()
    tensors["spiece_model"] = torch.frombuffer(bytearray(spm), dtype=torch.uint8)
    return FileLayout(FILE_NAMES["umt5"], tensors, dtype)


def flux_dit_layout(comfy: Any, dtype: Any, size: str) -> FileLayout:
    """FLUX.1 [dev]'s diffusion model, keys as in the released single file.

    ComfyUI's module names the Q·K norms' parameter ``weight``; the released file says
    ``scale``, which ComfyUI's `Flux.process_unet_state_dict` renames on load.
    """
    ops = comfy.ops.disable_weight_init
    dit = _meta_state_dict(
        lambda: comfy.ldm.flux.model.Flux(
            **FLUX_FIXED, **FLUX_DIT[size], device="meta", dtype=dtype, operations=ops
        )
    )
    released = {}
    for key, value in dit.items():
        if key.endswith(("query_norm.weight", "key_norm.weight")):
            key = key.removesuffix(".weight") + ".scale"
        released[key] = value
    name = "flux-dit-tiny" if size == "tiny" else "flux-dit"
    return FileLayout(FILE_NAMES[name], released, dtype)


def flux_text_layouts(comfy: Any, dtype: Any) -> list[FileLayout]:
    """CLIP-L and T5-XXL for FLUX.1, each in its released standalone file's layout.

    The keys are those of ComfyUI's Flux text encoder without its ``clip_l.transformer.``
    and ``t5xxl.transformer.`` prefixes (``text_model...``, ``encoder.block.N...``), as
    `DualCLIPLoader` reads the two files; ComfyUI ships both tokenizers.
    """
    model = _meta_state_dict(
        lambda: comfy.text_encoders.flux.flux_clip()(device="meta", dtype=dtype)
    )
    out = []
    for prefix, name in (("clip_l.transformer.", "clip-l"), ("t5xxl.transformer.", "t5xxl")):
        tensors = {k[len(prefix) :]: v for k, v in model.items() if k.startswith(prefix)}
        out.append(FileLayout(FILE_NAMES[name], tensors, dtype))
    return out


def flux_ae_layout(comfy: Any, dtype: Any) -> FileLayout:
    """FLUX.1's autoencoder: ``encoder.``/``decoder.`` keys, no quant convolutions."""
    config = dict(FLUX_AE_DDCONFIG)
    diffusion = comfy.ldm.modules.diffusionmodules.model
    tensors: dict[str, Any] = {}
    for part, cls in (("encoder", diffusion.Encoder), ("decoder", diffusion.Decoder)):
        state = _meta_state_dict(lambda cls=cls: cls(**config))
        tensors.update({f"{part}.{k}": v for k, v in state.items()})
    return FileLayout(FILE_NAMES["flux-ae"], tensors, dtype)


def layouts(
    comfy: Any, comfyui: Path, models: Iterable[str], dtype: Any, tiny: bool
) -> list[FileLayout]:
    """Every file the chosen models need."""
    out: list[FileLayout] = []
    for name in models:
        if name == "sdxl":
            if tiny:
                print("sdxl: no tiny version (ComfyUI's SDXL detection pins its sizes)")
                continue
            out += sdxl_layout(comfy, dtype)
        elif name == "wan21":
            out.append(wan_dit_layout(comfy, dtype, "tiny" if tiny else "1.3b"))
            if not tiny:
                out.append(umt5_layout(comfy, dtype, comfyui))
            out.append(wan_vae_layout(comfy, dtype, tiny))
        elif name == "wan21-14b":
            out.append(wan_dit_layout(comfy, dtype, "14b"))
        elif name == "flux":
            import torch

            out.append(flux_dit_layout(comfy, dtype, "tiny" if tiny else "dev"))
            if not tiny:  # the released text encoders are fp16 whatever the DiT is
                out += flux_text_layouts(comfy, torch.float16)
            out.append(flux_ae_layout(comfy, dtype))
        else:
            raise SystemExit(f"unknown model {name!r}: choose from sdxl, wan21, wan21-14b, flux")
    return out


class RandomPool:
    """A fixed pool of N(0, STD) values per dtype; tensors read it at their own offset."""

    def __init__(self, seed: int) -> None:
        import torch

        generator = torch.Generator().manual_seed(seed)
        self._base = torch.randn(POOL_ELEMENTS, generator=generator) * STD
        self._bytes: dict[Any, bytes] = {}

    def pool(self, dtype: Any) -> bytes:
        import torch

        if dtype not in self._bytes:
            values = self._base.to(dtype).contiguous()
            raw = values.view(torch.uint8).numpy().tobytes()
            self._bytes[dtype] = raw + raw[:CHUNK_BYTES]  # a chunk can wrap once
        return self._bytes[dtype]

    def stream(self, key: str, dtype: Any, nbytes: int) -> Iterable[bytes]:
        """``nbytes`` bytes of random values of ``dtype`` for tensor ``key``."""
        buffer = memoryview(self.pool(dtype))
        size = len(buffer) - min(CHUNK_BYTES, len(buffer) // 2)
        itemsize = size // POOL_ELEMENTS
        start = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little")
        offset = (start % POOL_ELEMENTS) * itemsize
        left = nbytes
        while left > 0:
            take = min(left, CHUNK_BYTES, size)
            yield buffer[offset : offset + take]
            offset = (offset + take) % size
            left -= take


def _plan_tensor(key: str, value: Any, dtype: Any) -> tuple[Any, list[int], bytes | None]:
    """(dtype to store, shape, literal bytes or None for random values)."""
    import torch

    shape = list(value.shape)
    if value.device.type != "meta":  # a real tensor of ComfyUI's conversion: keep it
        store = value.dtype if not value.dtype.is_floating_point else dtype
        data = value.to(store).contiguous().view(torch.uint8).numpy().tobytes()
        return store, shape, data
    if value.dtype.is_floating_point:
        return dtype, shape, None
    numel = 1
    for dim in shape:
        numel *= dim
    return value.dtype, shape, bytes(numel * value.element_size())


def write_safetensors(layout: FileLayout, out_dir: Path, pool: RandomPool) -> tuple[Path, int]:
    """Write one file, tensor by tensor (bounded memory); return its path and size."""
    import torch

    header: dict[str, Any] = {"__metadata__": {"format": "pt", **layout.metadata}}
    plans = []
    offset = 0
    for key in sorted(layout.tensors):
        store, shape, literal = _plan_tensor(key, layout.tensors[key], layout.dtype)
        numel = 1
        for dim in shape:
            numel *= dim
        nbytes = numel * torch.empty((), dtype=store).element_size()
        name = str(store).removeprefix("torch.")
        header[key] = {
            "dtype": SAFETENSORS_DTYPES[name],
            "shape": shape,
            "data_offsets": [offset, offset + nbytes],
        }
        plans.append((key, store, nbytes, literal))
        offset += nbytes
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)
    path = out_dir / layout.relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with partial.open("wb") as handle:
        handle.write(struct.pack("<Q", len(encoded)))
        handle.write(encoded)
        for key, store, nbytes, literal in plans:
            if literal is not None:
                handle.write(literal)
            else:
                for piece in pool.stream(key, store, nbytes):
                    handle.write(piece)
    partial.replace(path)
    return path, path.stat().st_size


def parse_dtype(name: str, model: str) -> Any:
    """The float dtype for a model: ``auto`` is what the released files use."""
    import torch

    if name == "auto":
        return torch.float16 if model == "sdxl" else torch.bfloat16
    return {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[name]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--comfyui", type=Path, required=True, help="ComfyUI source folder")
    parser.add_argument("--out", type=Path, required=True, help="models folder to write into")
    parser.add_argument(
        "--models", default="sdxl,wan21", help="comma separated: sdxl,wan21,wan21-14b,flux"
    )
    parser.add_argument("--dtype", default="auto", choices=["auto", "fp16", "bf16", "fp32"])
    parser.add_argument("--tiny", action="store_true", help="small shapes where detection allows")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--force", action="store_true", help="rewrite files that exist")
    args = parser.parse_args(argv)

    comfyui = args.comfyui.resolve()
    comfy = import_comfy(comfyui)
    pool = RandomPool(args.seed)
    written = []
    for model in [m.strip() for m in args.models.split(",") if m.strip()]:
        dtype = parse_dtype(args.dtype, model)
        for layout in layouts(comfy, comfyui, [model], dtype, args.tiny):
            target = args.out / layout.relpath
            if target.exists() and not args.force:
                print(f"{layout.relpath}: exists, kept ({target.stat().st_size / 1e9:.2f} GB)")
                written.append({"file": layout.relpath, "bytes": target.stat().st_size, "s": 0})
                continue
            start = time.monotonic()
            _, size = write_safetensors(layout, args.out, pool)
            took = time.monotonic() - start
            print(
                f"{layout.relpath}: {len(layout.tensors)} tensors, "
                f"{size / 1e9:.2f} GB, {took:.1f} s"
            )
            written.append({"file": layout.relpath, "bytes": size, "s": round(took, 2)})
    (args.out / "bench-models.json").write_text(json.dumps(written, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
