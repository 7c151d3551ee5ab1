"""Which kind a model file is: by the manifest, else its safetensors header, else its name.

[`classify_model_file`][installer.models.classify.classify_model_file] tries the manifest first
(file name or sha256, [`ManifestIndex`][installer.models.classify.ManifestIndex]), then the tensor
names of a safetensors header (read without loading a tensor,
[`kind_from_tensor_names`][installer.models.classify.kind_from_tensor_names]), then the file name
([`kind_from_name`][installer.models.classify.kind_from_name]); each answer carries its reason.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from installer.core.filenames import safe_filename
from installer.edges.download.files import sha256_file
from installer.models.files import FileHashes
from installer.plan.model_kinds import model_relative_path, resolve_kind, where_in

if TYPE_CHECKING:
    from installer.core.config import ModelEntry

SAFETENSORS_MAX_HEADER = 100 * 1024 * 1024
"""The largest header the safetensors format allows, in bytes."""

ClassifyMethod = Literal["manifest", "header", "name", "none"]


@dataclass(frozen=True)
class Classification:
    """Which kind a model file is, and how that was decided.

    Attributes:
        kind: The model kind (a key of `MODEL_KINDS`), or `None` when nothing
            settled it.
        method: `manifest` (file name or sha256 in the manifest), `header`
            (tensor names in the safetensors header), `name` (file name
            rules) or `none`.
        reason: The evidence, for people: ``'lora_unet_down...' is a LoRA
            tensor``.
        subfolder: A folder under `models/<kind>/` the manifest asks for
            (`sdxl` for `filename: "sdxl/x.safetensors"`), else empty.
    """

    kind: str | None
    method: ClassifyMethod
    reason: str
    subfolder: str = ""


def read_safetensors_header(path: Path) -> dict[str, Any] | None:
    """Return the JSON header of a safetensors file, reading nothing else.

    Reads the 8-byte little-endian header length and the header itself; the
    tensor data is never touched, so this is fast on files of any size.

    Args:
        path: The file to read.

    Returns:
        The header (tensor name → dtype, shape and offsets; `__metadata__`
        when present), or `None` when the file is not a valid safetensors file.

    Raises:
        OSError: The file cannot be opened or read.
    """
    with path.open("rb") as handle:
        prefix = handle.read(8)
        if len(prefix) != 8:
            return None
        (length,) = struct.unpack("<Q", prefix)
        if length < 2 or length > SAFETENSORS_MAX_HEADER:
            return None
        raw = handle.read(length)
    if len(raw) != length or not raw.startswith(b"{"):
        return None
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        return None
    return header if isinstance(header, dict) else None


_LORA_KEY = re.compile(r"(?:^|[._])(?:lora|hada|lokr)(?:[._0-9]|$)")
_VAE_PAIRS = (
    ("encoder.down_blocks.", "decoder.up_blocks."),
    ("encoder.down.", "decoder.up."),
    ("encoder.downsamples.", "decoder.upsamples."),
)
_TEXT_ENCODER_PREFIXES = ("encoder.block.", "text_model.encoder.", "model.embed_tokens.")
_EMBEDDING_KEYS = frozenset({"emb_params", "clip_l", "clip_g"})


def kind_from_tensor_names(names: Iterable[str]) -> Classification | None:
    """Return the kind a set of tensor names settles, or `None` when it settles nothing.

    The rules, first match wins: Control-LoRA (`lora_controlnet`); LoRA
    tensors (`lora_unet_*`, `lora_te*`, `*.lora_down.*`, `*lora_A*`,
    LyCORIS `hada`/`lokr`); controlnet (`control_model.*`, `controlnet_*`,
    `zero_convs`, `input_hint_block`); diffusion model and VAE in one file
    (`model.diffusion_model.*` + `first_stage_model.*` or `vae.*`) → checkpoints; VAE
    alone (`first_stage_model.*` only, or an encoder/decoder pair such as
    `encoder.down_blocks` + `decoder.up_blocks`); CLIP vision
    (`vision_model.*`); text encoders (T5 `encoder.block.*`, CLIP
    `text_model.encoder.*`, LLM `model.embed_tokens.*`); diffusion models
    (Flux `double_blocks`/`single_blocks`, SD3 `joint_blocks` without a VAE,
    `model.diffusion_model.*` alone, UNet or DiT blocks); upscalers (ESRGAN
    `RDB` blocks, `conv_first` + `conv_last`); textual-inversion embeddings
    (`emb_params`, `clip_l`/`clip_g` only).

    Args:
        names: The tensor names of a safetensors header (`__metadata__` is ignored).

    Returns:
        The kind with the tensor name that decided it, or `None`.
    """
    keys = [name for name in names if name != "__metadata__"]
    if not keys:
        return None

    def starting(*prefixes: str) -> str | None:
        return next((k for k in keys if k.startswith(prefixes)), None)

    def holding(*parts: str) -> str | None:
        return next((k for k in keys if any(part in k for part in parts)), None)

    def found(kind: str, what: str, key: str) -> Classification:
        shown = key if len(key) <= 60 else key[:57] + "..."
        return Classification(kind, "header", f"header: {shown!r} is {what}")

    if "lora_controlnet" in keys:
        return found("controlnet", "the Control-LoRA marker", "lora_controlnet")
    lora = next((k for k in keys if _LORA_KEY.search(k)), None)
    if lora:
        return found("loras", "a LoRA tensor", lora)
    control = starting("control_model.") or holding(
        "controlnet_", "zero_convs.", "input_hint_block."
    )
    if control:
        return found("controlnet", "a controlnet tensor", control)
    unet = starting("model.diffusion_model.")
    # ComfyUI saves the VAE of newer checkpoints (Flux, SD3, ...) under `vae.`.
    vae = starting("first_stage_model.", "vae.")
    if unet and vae:
        return found("checkpoints", "a diffusion model tensor next to VAE tensors", unet)
    if vae and all(k.startswith("first_stage_model.") for k in keys):
        return found("vae", "a VAE tensor and the only kind in the file", vae)
    for encoder, decoder in _VAE_PAIRS:
        key = starting(encoder)
        if key and starting(decoder):
            return found("vae", f"a VAE encoder tensor next to {decoder}*", key)
    text = starting(*_TEXT_ENCODER_PREFIXES)
    vision = starting("vision_model.")
    if vision and not text:
        return found("clip_vision", "a CLIP vision tensor", vision)
    if text and not vision:
        return found("text_encoders", "a text encoder tensor", text)
    if vae is None:
        dit = starting("double_blocks.", "single_blocks.", "joint_blocks.")
        if dit:
            return found("diffusion_models", "a transformer block of a diffusion model", dit)
    if unet:
        return found("diffusion_models", "a diffusion model tensor without a VAE", unet)
    for first, second in (
        ("input_blocks.", "output_blocks."),
        ("down_blocks.", "up_blocks."),
        ("transformer_blocks.", "proj_out."),
        ("blocks.", "patch_embedding."),
    ):
        key = starting(first)
        if key and starting(second):
            return found("diffusion_models", "a diffusion model block", key)
    upscaler = holding(".RDB1.", ".rdb1.")
    if upscaler is None and starting("conv_first."):
        upscaler = starting("conv_last.", "conv_up1.")
    if upscaler:
        return found("upscale_models", "an upscaler (ESRGAN-style) tensor", upscaler)
    if set(keys) <= _EMBEDDING_KEYS:
        return found("embeddings", "a textual-inversion embedding", keys[0])
    return None


def _either_side(word: str) -> str:
    """Match ``word`` with a non-letter on at least one side (`mylora`, `lora_x`, not `floral`)."""
    return rf"(?:(?<![a-z]){word}|{word}(?![a-z]))"


_NAME_RULES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), kind)
    for pattern, kind in (
        (r"clip[_-]?vision|sigclip|image[_-]?encoder", "clip_vision"),
        (r"style[_-]?model|t2i[_-]?adapter[_-]?style|coadapter[_-]?style|(?<![a-z])redux",
         "style_models"),
        (r"control[_-]?net|(?<![a-z])control[_-]|control[_-]?lora|t2i[_-]?adapter", "controlnet"),
        (_either_side("(?:lora|lycoris|locon|loha|lokr)"), "loras"),
        (r"taesd|taef1|taew|taehv|vae[_-]?approx", "vae_approx"),
        (_either_side("vae") + r"|^ae\.", "vae"),
        (r"latent[_-]?upscale", "latent_upscale_models"),
        (r"upscal|esrgan|swinir|ultrasharp|remacri|(?<![a-z0-9])(?:[1-8]x|x[1-8])(?![0-9])",
         "upscale_models"),
        (r"(?<![a-z])(?:clip|(?:u?m)?t5|llava|gemma)|text[_-]?encoder", "text_encoders"),
        (r"embedding|textual[_-]?inversion", "embeddings"),
        (r"hypernet", "hypernetworks"),
        (r"gligen", "gligen"),
        (r"photomaker", "photomaker"),
        (r"wav2vec|whisper|hubert", "audio_encoders"),
        (r"unet|diffusion[_-]?model", "diffusion_models"),
        (r"checkpoint|\.ckpt$", "checkpoints"),
    )
)  # fmt: skip


def kind_from_name(filename: str) -> Classification | None:
    """Return the kind a file name suggests, or `None`.

    Case-insensitive rules, first match wins: `clip_vision`, style models
    (`redux`, `t2iadapter_style`), `controlnet`/`control_`/`t2i_adapter`,
    `lora`, `taesd` (vae_approx), `vae` (and Flux's `ae.safetensors`),
    `latent_upscale`, upscalers (`upscale`, `esrgan`, `4x`, `x4`), text
    encoders (`clip`, `t5`, `umt5`, `llava`, `gemma`), `embedding`,
    `hypernet`, `gligen`, `photomaker`, audio encoders (`wav2vec`,
    `whisper`), `unet`/`diffusion_model`, and `checkpoint` or a `.ckpt`
    extension.

    Args:
        filename: The file's name (no folder).

    Returns:
        The kind with the part of the name that decided it, or `None`.
    """
    lowered = filename.lower()
    for pattern, kind in _NAME_RULES:
        match = pattern.search(lowered)
        if match:
            return Classification(kind, "name", f"name: {match.group(0)!r} in {filename!r}")
    return None


@dataclass
class ManifestIndex:
    """A model manifest's entries looked up by file name and by sha256.

    Attributes:
        by_name: File name → the classification a file of that name gets.
        by_sha256: sha256 → the classification a file with that content gets.
    """

    by_name: dict[str, Classification] = field(default_factory=dict)
    by_sha256: dict[str, Classification] = field(default_factory=dict)

    @classmethod
    def from_entries(
        cls, entries: Sequence[ModelEntry], *, source: str | None = None
    ) -> ManifestIndex:
        """Index the entries of a manifest.

        An entry without `filename` is indexed by the last segment of its
        URL path.

        Args:
            entries: The manifest's `models` list.
            source: The manifest file, named in errors.

        Returns:
            The index.

        Raises:
            ConfigError: An entry with an unknown kind or an unsafe file name.
        """
        from urllib.parse import unquote, urlsplit

        index = cls()
        for number, entry in enumerate(entries):
            path = f"models[{number}]"
            kind = resolve_kind(entry.kind, where=where_in(source, f"{path}.kind"))
            if entry.filename is not None:
                parts = model_relative_path(
                    entry.filename, where=where_in(source, f"{path}.filename")
                )
            else:
                parts = (safe_filename(unquote(urlsplit(entry.url).path.rsplit("/", 1)[-1])),)
            subfolder = "/".join(parts[:-1])
            index.by_name.setdefault(
                parts[-1],
                Classification(kind, "manifest", f"manifest: {path} names it", subfolder),
            )
            if entry.sha256 is not None:
                index.by_sha256.setdefault(
                    entry.sha256,
                    Classification(kind, "manifest", f"manifest: {path} has its sha256", subfolder),
                )
        return index

    def match(
        self, path: Path, sha256: Callable[[Path], str] = sha256_file
    ) -> Classification | None:
        """Return the manifest's kind for ``path``, by file name, else by sha256.

        Args:
            path: The loose file.
            sha256: Hashes a file; called only when the name does not match
                and the manifest has sha256 entries.

        Returns:
            The kind, or `None` when the manifest does not list the file.
        """
        hit = self.by_name.get(path.name)
        if hit is None and self.by_sha256:
            hit = self.by_sha256.get(sha256(path))
        return hit


def classify_model_file(path: Path, *, manifest: ManifestIndex | None = None) -> Classification:
    """Decide the kind of one model file: manifest, then safetensors header, then name.

    Args:
        path: The file.
        manifest: A manifest to match by file name or sha256 first.

    Returns:
        The kind and the reason, or kind `None` with method `none` when
        nothing settled it.

    Raises:
        OSError: The file cannot be read.
    """
    return classify_with(path, manifest, FileHashes())


def classify_with(path: Path, manifest: ManifestIndex | None, hashes: FileHashes) -> Classification:
    """Classify ``path`` like `classify_model_file`, sharing ``hashes`` across files.

    Args:
        path: The file.
        manifest: A manifest to match by file name or sha256 first.
        hashes: The sha256 of files already hashed in this run.

    Returns:
        The kind and the reason (kind `None`, method `none` when nothing settled it).

    Raises:
        OSError: The file cannot be read.
    """
    if manifest is not None:
        hit = manifest.match(path, hashes.sha256)
        if hit is not None:
            return hit
    if path.suffix.lower() in (".safetensors", ".sft"):
        header = read_safetensors_header(path)
        if header is not None:
            decided = kind_from_tensor_names(header)
            if decided is not None:
                return decided
    by_name = kind_from_name(path.name)
    if by_name is not None:
        return by_name
    return Classification(None, "none", "neither the header nor the name says which kind it is")
