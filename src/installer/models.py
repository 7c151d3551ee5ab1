"""Model files: the folders ComfyUI reads them from, and getting files into them.

ComfyUI finds a model file by its *kind*: each kind is a folder under
`ComfyUI/models/` (`checkpoints`, `loras`, `vae`, ...) registered in its
`folder_paths.py`. This module knows those kinds as ComfyUI v0.3.77 defines
them ([`MODEL_KINDS`][installer.models.MODEL_KINDS]), with the legacy names
`clip`, `unet` and `t2i_adapter` mapped to the kind whose folder ComfyUI uses
for new files ([`KIND_ALIASES`][installer.models.KIND_ALIASES]). On that it
builds the three jobs of `comfy-install models` and of install step 12:

* **download** the files of a model manifest into `models/<kind>/`, each one
  verified by its sha256
  ([`download_models`][installer.models.download_models]); a manifest entry
  with an unknown kind, a file name that would leave its folder or no sha256
  is refused before anything is fetched;
* **organize** loose model files into the right folder
  ([`plan_organize`][installer.models.plan_organize], then
  [`apply_organize`][installer.models.apply_organize]), classified by the
  manifest (file name or sha256), else by the tensor names in a safetensors
  header (read without loading a tensor), else by the file name; a different
  file that already has the name is never overwritten;
* **share** one model store (a network volume, another drive) between
  installs, through a section of ComfyUI's own `extra_model_paths.yaml`
  ([`write_shared_config`][installer.models.write_shared_config]) or through
  per-file links ([`link_shared_models`][installer.models.link_shared_models]).

Every decision carries the reason it was made, for the tables and the JSON
output of the commands; nothing here prints except through the logger.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import struct
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

from installer.core.downloads import DownloadRequest
from installer.core.errors import (
    ConfigError,
    EnvironmentUnsupportedError,
    IntegrityError,
    UsageError,
)
from installer.core.filenames import safe_filename
from installer.edges.download.api import download_files
from installer.edges.download.files import sha256_file
from installer.edges.state import atomic_write_text

if TYPE_CHECKING:
    from installer.config import ModelEntry
    from installer.core.log import InstallerLogger

MODEL_KINDS: tuple[str, ...] = (
    "checkpoints",
    "configs",
    "loras",
    "vae",
    "text_encoders",
    "diffusion_models",
    "clip_vision",
    "style_models",
    "embeddings",
    "diffusers",
    "vae_approx",
    "controlnet",
    "gligen",
    "upscale_models",
    "latent_upscale_models",
    "hypernetworks",
    "photomaker",
    "classifiers",
    "model_patches",
    "audio_encoders",
)
"""The model kinds of ComfyUI v0.3.77 (`folder_paths.py`), each a folder under `models/`.

`custom_nodes`, also registered there, is not a model kind.
"""

KIND_ALIASES: Mapping[str, str] = MappingProxyType(
    {"clip": "text_encoders", "unet": "diffusion_models", "t2i_adapter": "controlnet"}
)
"""Legacy kind names and the kind they mean.

`clip` and `unet` are ComfyUI's own legacy names (`folder_paths.map_legacy`);
`t2i_adapter` is a folder ComfyUI searches for controlnets. New files go to
the folder of the kind they map to.
"""

LEGACY_FOLDERS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {kind: tuple(a for a, k in KIND_ALIASES.items() if k == kind) for kind in KIND_ALIASES.values()}
)
"""Kind → the older folders ComfyUI still searches for it (`text_encoders` → `clip`)."""

MODEL_EXTENSIONS: frozenset[str] = frozenset(
    {".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft", ".gguf"}
)
"""File extensions treated as model files: ComfyUI's `supported_pt_extensions` and `.gguf`."""

SHARED_SECTION = "comfy_install_shared"
"""The section of `extra_model_paths.yaml` that comfy-install owns."""

EXTRA_MODEL_PATHS = "extra_model_paths.yaml"
"""The file ComfyUI reads extra model folders from, next to its `main.py`."""

SAFETENSORS_MAX_HEADER = 100 * 1024 * 1024
"""The largest header the safetensors format allows, in bytes."""

_SECTION_BEGIN = "# >>> comfy-install shared models >>>"
_SECTION_END = "# <<< comfy-install shared models <<<"
_TOP_LEVEL_KEY = re.compile(
    r"""^(?:"(?:[^"\\]|\\.)*"|'(?:[^']|'')*'|[^\s#'"\-?:,\[\]{}&*!|>%@`][^#]*?)\s*:(?:\s|$)"""
)
_YAML_BREAKS = frozenset("\x85\u2028\u2029\ufeff")
_PARTIAL_SUFFIXES = (".part", ".part.json", ".tmp")

ClassifyMethod = Literal["manifest", "header", "name", "none"]
OrganizeActionKind = Literal["move", "remove-duplicate", "skip", "unclassified"]
LinkActionKind = Literal["linked", "copied", "present", "skipped"]


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


@dataclass(frozen=True)
class PlannedModel:
    """One checked manifest entry, ready to download.

    Attributes:
        index: The entry's position in the manifest's `models` list.
        kind: The entry's kind with aliases resolved (`clip` → `text_encoders`).
        request: What [`download_files`][installer.edges.download.api.download_files]
            fetches for it.
    """

    index: int
    kind: str
    request: DownloadRequest


@dataclass(frozen=True)
class OrganizeAction:
    """What organizing does (or would do) with one loose file.

    Attributes:
        source: The loose file.
        action: `move` into place, `remove-duplicate` (an identical file is
            already in place), `skip` (a reason prevents the move) or
            `unclassified` (left where it is).
        classification: The kind found for the file and why.
        destination: Where the file goes or collides (`None` when unclassified).
        reason: Why this action, for people.
    """

    source: Path
    action: OrganizeActionKind
    classification: Classification
    destination: Path | None
    reason: str

    def as_dict(self) -> dict[str, Any]:
        """Return the action as JSON-ready data."""
        return {
            "source": str(self.source),
            "action": self.action,
            "kind": self.classification.kind,
            "method": self.classification.method,
            "destination": None if self.destination is None else str(self.destination),
            "reason": self.reason,
        }


@dataclass(frozen=True)
class OrganizePlan:
    """Every loose file found and what organizing does with it.

    Attributes:
        models_dir: The `ComfyUI/models` whose loose files were looked at.
        target_dir: The folder holding the `<kind>/` folders files go to
            (`ComfyUI/models`, or a shared store).
        actions: One action per loose model file, in the order found.
    """

    models_dir: Path
    target_dir: Path
    actions: tuple[OrganizeAction, ...]

    def counts(self) -> dict[str, int]:
        """Return how many files get each action."""
        kinds: tuple[OrganizeActionKind, ...] = ("move", "remove-duplicate", "skip", "unclassified")
        return {kind: sum(a.action == kind for a in self.actions) for kind in kinds}

    def as_dict(self) -> dict[str, Any]:
        """Return the plan as JSON-ready data."""
        return {
            "models_dir": str(self.models_dir),
            "target_dir": str(self.target_dir),
            "actions": [action.as_dict() for action in self.actions],
            "counts": self.counts(),
        }


@dataclass(frozen=True)
class LinkAction:
    """What happened to one file of a shared store when linking it into `models/`.

    Attributes:
        source: The file in the store.
        destination: Its place under `models/<kind>/`.
        action: `linked` (a symlink made), `copied` (symlinks not allowed
            here), `present` (already linked, or an identical file is there)
            or `skipped` (a different file has the name).
        reason: Why, for people.
    """

    source: Path
    destination: Path
    action: LinkActionKind
    reason: str

    def as_dict(self) -> dict[str, str]:
        """Return the action as JSON-ready data."""
        return {
            "source": str(self.source),
            "destination": str(self.destination),
            "action": self.action,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class ShareResult:
    """How ComfyUI was pointed at a shared model store.

    Attributes:
        store: The shared store (absolute).
        config_path: The `extra_model_paths.yaml` written, or `None` with links.
        links: The per-file link results (empty without `--link`).
    """

    store: Path
    config_path: Path | None
    links: tuple[LinkAction, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """Return the result as JSON-ready data."""
        return {
            "store": str(self.store),
            "config_path": None if self.config_path is None else str(self.config_path),
            "links": [link.as_dict() for link in self.links],
        }


# --------------------------------------------------------------------------- kinds


def canonical_kind(kind: str) -> str | None:
    """Return the kind ``kind`` names, aliases resolved, or `None` if ComfyUI has no such kind.

    Args:
        kind: A kind or legacy alias, e.g. `loras`, `clip`, `unet`.

    Returns:
        A member of `MODEL_KINDS` (`clip` → `text_encoders`), or `None`.
    """
    kind = KIND_ALIASES.get(kind, kind)
    return kind if kind in MODEL_KINDS else None


def _kinds_hint() -> str:
    aliases = ", ".join(f"{alias} → {kind}" for alias, kind in KIND_ALIASES.items())
    return f"Use one of: {', '.join(MODEL_KINDS)} (aliases: {aliases})."


def resolve_kind(kind: str, *, where: str) -> str:
    """Return the kind ``kind`` names, or raise a ConfigError that says where it came from.

    Args:
        kind: A kind or legacy alias from a manifest.
        where: The place shown in the error, e.g. ``models.json: models[3].kind``.

    Returns:
        A member of `MODEL_KINDS`.

    Raises:
        ConfigError: ComfyUI v0.3.77 has no such kind; the hint lists the valid ones.
    """
    resolved = canonical_kind(kind)
    if resolved is None:
        raise ConfigError(f"{where}: unknown model kind {kind!r}.", _kinds_hint())
    return resolved


def model_relative_path(filename: str, *, where: str) -> tuple[str, ...]:
    """Split a manifest file name into safe path parts under `models/<kind>/`.

    A name may hold subfolders with `/` (`sdxl/base.safetensors`); every part
    must be a plain name that
    [`safe_filename`][installer.core.filenames.safe_filename] leaves unchanged, so
    `..`, absolute paths, backslashes and drive letters are refused.

    Args:
        filename: The entry's `filename`.
        where: The place shown in the error, e.g. ``models[2].filename``.

    Returns:
        The parts, the file name last.

    Raises:
        ConfigError: A part would leave the kind's folder or is not a safe name.
    """
    parts = tuple(filename.split("/"))
    for part in parts:
        if not part or part in (".", "..") or safe_filename(part) != part:
            raise ConfigError(
                f"{where}: {filename!r} would write outside its models/<kind>/ folder "
                "or is not a safe file name.",
                "Use a plain file name (optionally in subfolders joined with '/'); "
                "the kind chooses the folder.",
            )
    return parts


# --------------------------------------------------------------------------- download


def _prefix(source: str | None, path: str) -> str:
    return f"{source}: {path}" if source else path


def plan_model_downloads(
    entries: Sequence[ModelEntry],
    models_dir: Path,
    *,
    allow_unverified: bool = False,
    source: str | None = None,
) -> list[PlannedModel]:
    """Check manifest entries and turn them into download requests; fetch nothing.

    Args:
        entries: The `models` list of a model manifest or of `dependencies.json`.
        models_dir: The folder holding the `<kind>/` folders (`ComfyUI/models`
            or a shared store).
        allow_unverified: Accept entries without a sha256.
        source: The file the entries come from, named in errors.

    Returns:
        One planned download per entry, in order.

    Raises:
        ConfigError: An unknown kind, a file name that would leave its folder,
            or two entries writing the same file; the message gives the JSON
            path (`models[3].kind`).
        IntegrityError: Entries without a sha256 while unverified files are
            not allowed (all of them are listed).
    """
    planned: list[PlannedModel] = []
    unverified: list[str] = []
    targets: dict[tuple[str, ...], int] = {}
    for index, entry in enumerate(entries):
        path = f"models[{index}]"
        kind = resolve_kind(entry.kind, where=_prefix(source, f"{path}.kind"))
        dest_dir = models_dir / kind
        filename: str | None = None
        if entry.filename is not None:
            parts = model_relative_path(entry.filename, where=_prefix(source, f"{path}.filename"))
            dest_dir = dest_dir.joinpath(*parts[:-1])
            filename = parts[-1]
            other = targets.setdefault((kind, *parts), index)
            if other != index:
                raise ConfigError(
                    f"{_prefix(source, path)} and models[{other}] both write "
                    f"{kind}/{entry.filename}.",
                    "Remove the duplicate entry or give one of them another filename.",
                )
        if entry.sha256 is None:
            unverified.append(f"{path} ({entry.filename or entry.url})")
        planned.append(
            PlannedModel(
                index=index,
                kind=kind,
                request=DownloadRequest(
                    url=entry.url,
                    dest_dir=dest_dir,
                    filename=filename,
                    sha256=entry.sha256,
                    size=entry.size,
                ),
            )
        )
    if unverified and not allow_unverified:
        where = f" in {source}" if source else ""
        raise IntegrityError(
            f"no sha256 is recorded{where} for: {', '.join(unverified)}; refusing to download "
            "unverified model files.",
            "Add each file's sha256 (and size) to the manifest, or pass --allow-unverified "
            "to accept them unchecked.",
        )
    return planned


def download_models(
    entries: Sequence[ModelEntry],
    models_dir: Path,
    *,
    log: InstallerLogger,
    jobs: int = 4,
    allow_unverified: bool = False,
) -> list[Path]:
    """Download model files into `models_dir/<kind>/`, verified, ``jobs`` at a time.

    Every entry is checked first (see
    [`plan_model_downloads`][installer.models.plan_model_downloads]); files
    already present with the right sha256 are not fetched again.

    Args:
        entries: The `models` list of a model manifest or of `dependencies.json`.
        models_dir: `ComfyUI/models`, or a shared store laid out the same way.
        log: Progress bars on a terminal, one line per file otherwise.
        jobs: Transfers at a time.
        allow_unverified: Accept entries without a sha256.

    Returns:
        The final path of each file, in the order of ``entries``.

    Raises:
        ConfigError: A bad entry (unknown kind, unsafe file name, duplicate).
        IntegrityError: An entry without sha256 (unless allowed), or a file
            whose hash or size is wrong.
        NetworkError: A server stayed unreachable or kept failing.
        DownloadError: A server refused a file, or a URL breaks the policy.
        EnvironmentUnsupportedError: A file cannot be written.
        UsageError: ``jobs`` below 1.
    """
    planned = plan_model_downloads(entries, models_dir, allow_unverified=allow_unverified)
    results = download_files(
        [item.request for item in planned],
        log=log,
        jobs=jobs,
        allow_unverified=allow_unverified,
    )
    return [result.path for result in results]


# --------------------------------------------------------------------------- classification


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
            kind = resolve_kind(entry.kind, where=_prefix(source, f"{path}.kind"))
            if entry.filename is not None:
                parts = model_relative_path(
                    entry.filename, where=_prefix(source, f"{path}.filename")
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


class _Hashes:
    """sha256 of files, each computed once per run."""

    def __init__(self) -> None:
        self._known: dict[Path, str] = {}

    def sha256(self, path: Path) -> str:
        key = path.absolute()
        if key not in self._known:
            self._known[key] = sha256_file(path)
        return self._known[key]

    def same(self, first: Path, second: Path) -> bool:
        if first.stat().st_size != second.stat().st_size:
            return False
        return self.sha256(first) == self.sha256(second)


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
    return _classify(path, manifest, _Hashes())


def _classify(path: Path, manifest: ManifestIndex | None, hashes: _Hashes) -> Classification:
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


# --------------------------------------------------------------------------- organize


def _is_model_file(path: Path) -> bool:
    name = path.name
    return (
        not name.startswith(".")
        and not name.endswith(_PARTIAL_SUFFIXES)
        and path.suffix.lower() in MODEL_EXTENSIONS
        and path.is_file()
        and not path.is_symlink()
    )


def loose_model_files(models_dir: Path, sources: Sequence[Path] = ()) -> list[Path]:
    """Return the model files waiting to be organized.

    Args:
        models_dir: `ComfyUI/models`; the model files directly in it count.
        sources: Further download folders (their model files, not
            subfolders) or single files (taken whatever their extension).

    Returns:
        The files, each once, in a stable order. Hidden files, partial
        downloads and symlinks in the folders are left out.

    Raises:
        UsageError: A source does not exist, or is a symlink to a file.
    """
    found: list[Path] = []
    seen: set[Path] = set()

    def add(path: Path) -> None:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            found.append(path)

    for folder in (models_dir, *sources):
        if folder.is_symlink() and folder.is_file():
            raise UsageError(
                f"{folder} is a symlink; organize moves real files only (a moved relative "
                "link would break).",
                "Give the path of the file it points to.",
            )
        if folder.is_file():
            add(folder)
        elif folder.is_dir():
            for child in sorted(folder.iterdir()):
                if _is_model_file(child):
                    add(child)
        elif folder != models_dir:
            raise UsageError(f"{folder} does not exist.", "Check the path given to --from.")
    return found


def plan_organize(
    models_dir: Path,
    *,
    sources: Sequence[Path] = (),
    manifest: ManifestIndex | None = None,
    target_dir: Path | None = None,
) -> OrganizePlan:
    """Decide where every loose model file goes; change nothing.

    A file goes to `target_dir/<kind>/<name>`. When a file of that name is
    already there (or another loose file claims the place), the two are
    compared: identical content means the loose copy is a duplicate to
    remove; different content means the file is skipped with the reason. A
    file already in its place, of no settled kind, or that cannot be read
    stays where it is.

    Args:
        models_dir: `ComfyUI/models` (its loose files are organized).
        sources: Further download folders or files to organize.
        manifest: A manifest whose entries decide first.
        target_dir: Where the `<kind>/` folders are (default: ``models_dir``;
            a shared store with `--shared-models`).

    Returns:
        The plan, one action per loose file.

    Raises:
        UsageError: A source does not exist, or is a symlink to a file.
    """
    target = target_dir if target_dir is not None else models_dir
    hashes = _Hashes()
    claimed: dict[Path, Path] = {}
    actions: list[OrganizeAction] = []
    for source in loose_model_files(models_dir, sources):
        try:
            actions.append(_plan_one(source, target, manifest, hashes, claimed))
        except OSError as exc:
            unread = Classification(None, "none", f"cannot read it: {exc.strerror or exc}")
            actions.append(OrganizeAction(source, "skip", unread, None, unread.reason))
    return OrganizePlan(models_dir=models_dir, target_dir=target, actions=tuple(actions))


def _plan_one(
    source: Path,
    target: Path,
    manifest: ManifestIndex | None,
    hashes: _Hashes,
    claimed: dict[Path, Path],
) -> OrganizeAction:
    found = _classify(source, manifest, hashes)
    if found.kind is None:
        return OrganizeAction(source, "unclassified", found, None, "left in place: " + found.reason)
    folder = target / found.kind
    if found.subfolder:
        folder = folder.joinpath(*found.subfolder.split("/"))
    destination = folder / source.name
    if destination.exists() and destination.resolve() == source.resolve():
        return OrganizeAction(source, "skip", found, destination, "already in place")
    rival = claimed.get(destination)
    if rival is not None:
        if hashes.same(rival, source):
            return OrganizeAction(
                source,
                "remove-duplicate",
                found,
                destination,
                f"identical to {rival}, which moves there",
            )
        return OrganizeAction(
            source,
            "skip",
            found,
            destination,
            f"{rival} (different content, same name) moves there",
        )
    if destination.is_symlink() or destination.exists():
        if destination.is_file() and hashes.same(destination, source):
            return OrganizeAction(
                source, "remove-duplicate", found, destination, "an identical file is already there"
            )
        return OrganizeAction(
            source,
            "skip",
            found,
            destination,
            "a different file with this name is already there; not overwritten",
        )
    claimed[destination] = source
    return OrganizeAction(source, "move", found, destination, found.reason)


def apply_organize(plan: OrganizePlan, *, log: InstallerLogger) -> list[OrganizeAction]:
    """Carry out a plan: move files and remove duplicates; skip the rest.

    Moves never overwrite: a file that appeared at a destination since the
    plan was made is left alone. A move across file systems copies to a
    temporary file beside the destination, renames it, then deletes the source.

    Args:
        plan: The plan from [`plan_organize`][installer.models.plan_organize].
        log: One line per file moved or removed.

    Returns:
        The actions carried out (moves and duplicate removals).

    Raises:
        EnvironmentUnsupportedError: A file cannot be moved or removed (the
            files handled before it stay handled).
    """
    done: list[OrganizeAction] = []
    for action in plan.actions:
        if action.destination is None or action.action not in ("move", "remove-duplicate"):
            continue
        try:
            if action.action == "move":
                if not _move_no_clobber(action.source, action.destination):
                    log.warn(f"{action.destination} appeared meanwhile; {action.source} not moved")
                    continue
                log.info(f"moved {action.source.name} → {action.destination.parent}")
            else:
                action.source.unlink()
                log.info(f"removed {action.source} (identical to {action.destination})")
        except OSError as exc:
            raise EnvironmentUnsupportedError(
                f"cannot {action.action.replace('-', ' ')} {action.source}: {exc.strerror or exc}.",
                "Check free space and permissions of both folders, then run again.",
            ) from exc
        done.append(action)
    return done


def _move_no_clobber(source: Path, destination: Path) -> bool:
    """Move ``source`` to ``destination`` unless something is there; return whether it moved."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    if destination.exists() or destination.is_symlink():
        return False
    try:
        os.rename(source, destination)  # noqa: PTH104 - os.rename reports EXDEV, which we need
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        _copy_into_place(source, destination)
        source.unlink()
    return True


def _copy_into_place(source: Path, destination: Path) -> None:
    """Copy ``source`` to ``destination`` through a temporary file in the same folder."""
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{destination.name}.", suffix=".tmp", dir=destination.parent
    )
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as writer, source.open("rb") as reader:
            shutil.copyfileobj(reader, writer, 1024 * 1024)
            writer.flush()
            os.fsync(writer.fileno())
        shutil.copystat(source, tmp)
        tmp.replace(destination)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------- shared store


def check_shared_store(store: Path, models_dir: Path) -> Path:
    """Check that a shared store can be used, and return its absolute path.

    The store must already exist (a network volume that is not mounted must
    not be replaced by an empty folder) and must not be `models_dir` itself
    or lie inside it.

    Args:
        store: The shared store (laid out like `ComfyUI/models`: `<kind>/` folders).
        models_dir: The install's `ComfyUI/models`.

    Returns:
        The store, absolute and resolved.

    Raises:
        UsageError: The store is missing, not a folder, or inside `models_dir`.
    """
    if not store.is_dir():
        raise UsageError(
            f"the shared model store {store} does not exist or is not a folder.",
            "Mount or create it first (comfy-install does not create it, so an unmounted "
            "volume is not mistaken for an empty one).",
        )
    resolved = store.resolve()
    models = models_dir.resolve()
    if resolved == models or resolved.is_relative_to(models):
        raise UsageError(
            f"the shared model store {store} is inside {models_dir}.",
            "Choose a folder outside ComfyUI/models.",
        )
    return resolved


def _store_folders(kind: str) -> tuple[str, ...]:
    return (kind, *LEGACY_FOLDERS.get(kind, ()))


def yaml_quote(text: str) -> str:
    r"""Return ``text`` as a YAML scalar that any YAML 1.1/1.2 parser reads back unchanged.

    Single-quoted when possible (backslashes in Windows paths stay as they
    are, `'` is doubled); double-quoted with escapes when the text holds line
    breaks or other control characters.

    Args:
        text: Any string.

    Returns:
        The quoted scalar.
    """
    if not any(ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F or ch in _YAML_BREAKS for ch in text):
        return "'" + text.replace("'", "''") + "'"
    out: list[str] = []
    for ch in text:
        code = ord(ch)
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif code < 0x20 or 0x7F <= code <= 0x9F:
            out.append(f"\\x{code:02x}")
        elif ch in _YAML_BREAKS:
            out.append(f"\\u{code:04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def shared_config_section(store: Path) -> str:
    """Return the `comfy_install_shared` section of `extra_model_paths.yaml` for ``store``.

    The section lists every model kind with its folder in the store (and the
    legacy folder: `text_encoders` also reads `clip/`), relative to a
    `base_path`. ComfyUI expands environment variables in `base_path`, so for
    a store whose path holds `$` or `%` every folder is written as an
    absolute path instead, which ComfyUI takes literally. The section sits
    between two marker comments so a later run can replace exactly it.

    Args:
        store: The shared store, absolute.

    Returns:
        The section's text, ending with a newline.

    Raises:
        UsageError: The path holds a line break, which ComfyUI cannot read.
    """
    text = str(store)
    if "\n" in text or "\r" in text:
        raise UsageError(
            f"the shared model store path {text!r} holds a line break.",
            "Rename the folder; ComfyUI splits folder lists on line breaks.",
        )
    literal = "$" in text or "%" in text
    lines = [
        _SECTION_BEGIN,
        "# Written by comfy-install: ComfyUI also reads models from the shared store below.",
        "# These lines are replaced whenever comfy-install shares models again; edit outside them.",
        f"{SHARED_SECTION}:",
    ]
    if not literal:
        lines.append(f"    base_path: {yaml_quote(text)}")
    for kind in MODEL_KINDS:
        folders = "\n".join(str(store / f) if literal else f for f in _store_folders(kind))
        lines.append(f"    {kind}: {yaml_quote(folders)}")
    lines.append(_SECTION_END)
    return "\n".join(lines) + "\n"


def merge_extra_model_paths(existing: str, section: str, *, path: Path) -> str:
    """Return ``existing`` with the comfy-install section added or replaced, the rest kept.

    The section is recognised by its marker comments. Without them it is
    appended, provided the file's top level is a plain block mapping (one
    `name:` line per section) that appending to keeps valid.

    Args:
        existing: The current text of `extra_model_paths.yaml` ('' for none).
        section: The section from
            [`shared_config_section`][installer.models.shared_config_section].
        path: The file, named in errors.

    Returns:
        The new text (line endings as in ``existing``).

    Raises:
        ConfigError: The file cannot be changed safely: damaged markers, a
            `comfy_install_shared` section without markers, several YAML
            documents, or a top level that is not a block mapping.
    """
    newline = "\r\n" if "\r\n" in existing else "\n"
    bom = "\ufeff" if existing.startswith("\ufeff") else ""
    lines = existing.removeprefix("\ufeff").splitlines()
    begins = [i for i, line in enumerate(lines) if line.strip() == _SECTION_BEGIN]
    ends = [i for i, line in enumerate(lines) if line.strip() == _SECTION_END]
    hint = (
        f"Edit {path} by hand: remove the {SHARED_SECTION} section and its marker lines, "
        "or use --link to link files instead."
    )
    new = section.splitlines()
    if begins or ends:
        if len(begins) != 1 or len(ends) != 1 or begins[0] > ends[0]:
            raise ConfigError(f"{path}: the comfy-install marker lines are damaged.", hint)
        kept = lines[: begins[0]] + lines[ends[0] + 1 :]
        _check_appendable(kept, path, hint)
        merged = lines[: begins[0]] + new + lines[ends[0] + 1 :]
    else:
        _check_appendable(lines, path, hint)
        body = lines
        while body and not body[-1].strip():
            body = body[:-1]
        merged = [*body, "", *new] if body else new
    return bom + newline.join(merged) + newline


def _check_appendable(lines: Sequence[str], path: Path, hint: str) -> None:
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.startswith((" ", "#")):
            continue
        if line.startswith(("---", "...", "\t")) or not _TOP_LEVEL_KEY.match(line):
            raise ConfigError(
                f"{path} line {number}: {line.strip()[:60]!r} is not a plain top-level "
                "section, so comfy-install cannot add its own safely.",
                hint,
            )
        if re.match(rf"""^['"]?{SHARED_SECTION}['"]?\s*:""", line):
            raise ConfigError(
                f"{path} line {number}: a {SHARED_SECTION} section exists without the "
                "comfy-install marker lines.",
                hint,
            )


def write_shared_config(comfyui_dir: Path, store: Path) -> Path:
    """Point ComfyUI at a shared store through `ComfyUI/extra_model_paths.yaml`.

    Adds or replaces the `comfy_install_shared` section and keeps everything
    else in the file; the file is replaced atomically.

    Args:
        comfyui_dir: The ComfyUI checkout (where `main.py` is).
        store: The shared store, absolute.

    Returns:
        The path of `extra_model_paths.yaml`.

    Raises:
        ConfigError: The existing file cannot be changed safely (see
            [`merge_extra_model_paths`][installer.models.merge_extra_model_paths]).
        UsageError: The store's path cannot be written for ComfyUI.
        EnvironmentUnsupportedError: The file cannot be read or written.
    """
    target = comfyui_dir / EXTRA_MODEL_PATHS
    if target.is_symlink():
        target = target.resolve()
    try:
        existing = target.read_text(encoding="utf-8") if target.exists() else ""
    except (OSError, UnicodeDecodeError) as exc:
        raise EnvironmentUnsupportedError(
            f"cannot read {target}: {exc}.", "Check the file, then run again."
        ) from exc
    merged = merge_extra_model_paths(existing, shared_config_section(store), path=target)
    if merged != existing:
        atomic_write_text(target, merged)
    return target


def _store_files(store: Path) -> Iterator[tuple[str, Path, Path]]:
    """Yield (kind, file, path relative to its kind folder) for each file of the store."""
    for kind in MODEL_KINDS:
        for folder_name in _store_folders(kind):
            folder = store / folder_name
            if not folder.is_dir():
                continue
            for root, dirs, files in os.walk(folder):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    if name.startswith(".") or name.endswith(_PARTIAL_SUFFIXES):
                        continue
                    file = Path(root, name)
                    yield kind, file, file.relative_to(folder)


def link_shared_models(store: Path, models_dir: Path, *, log: InstallerLogger) -> list[LinkAction]:
    """Link every file of a shared store into `models/<kind>/`; copy where links are not allowed.

    A file in `store/<kind>/` (or a legacy folder such as `store/clip/`)
    gets a symlink at `models_dir/<kind>/<same relative path>`. Where the OS
    refuses symlinks (Windows without the privilege, some file systems) the
    file is copied instead, with one warning. A link already pointing at the
    file, or an identical file, is left; a different file is never replaced.

    Args:
        store: The shared store, absolute.
        models_dir: `ComfyUI/models`.
        log: One line per file linked or copied; the warning above.

    Returns:
        One action per file of the store.

    Raises:
        EnvironmentUnsupportedError: A link or copy cannot be written.
    """
    hashes = _Hashes()
    actions: list[LinkAction] = []
    symlinks = True
    for kind, source, relative in _store_files(store):
        destination = models_dir / kind / relative
        present = _link_state(source, destination, hashes)
        if present is not None:
            actions.append(LinkAction(source, destination, *present))
            continue
        try:
            destination.parent.mkdir(parents=True, exist_ok=True)
            made: LinkActionKind = "copied"
            if symlinks:
                try:
                    destination.symlink_to(source)
                    made = "linked"
                except OSError as exc:
                    if destination.is_symlink() or destination.exists():
                        raise
                    symlinks = False
                    log.warn(
                        f"cannot create symlinks in {models_dir} ({exc.strerror or exc}); "
                        "copying the shared files instead"
                    )
            if made == "linked":
                actions.append(LinkAction(source, destination, made, "symlink created"))
                log.info(f"linked {destination} → {source}")
            else:
                _copy_into_place(source, destination)
                actions.append(LinkAction(source, destination, made, "symlinks not allowed"))
                log.info(f"copied {source} → {destination}")
        except OSError as exc:
            raise EnvironmentUnsupportedError(
                f"cannot link {source} into {destination.parent}: {exc.strerror or exc}.",
                "Check free space and permissions, then run again.",
            ) from exc
    return actions


def _link_state(
    source: Path, destination: Path, hashes: _Hashes
) -> tuple[LinkActionKind, str] | None:
    """Return (action, reason) when ``destination`` is already taken, else `None`."""
    if destination.is_symlink():
        if destination.readlink() == source or destination.resolve() == source.resolve():
            return "present", "already linked"
        return "skipped", "a link to another file has this name; not replaced"
    if not destination.exists():
        return None
    if destination.is_file() and hashes.same(destination, source):
        return "present", "an identical file is already there"
    return "skipped", "a different file with this name is already there; not replaced"


def share_models(
    comfyui_dir: Path, store: Path, *, log: InstallerLogger, link: bool = False
) -> ShareResult:
    """Point the ComfyUI in ``comfyui_dir`` at a shared model store.

    Args:
        comfyui_dir: The ComfyUI checkout (`DIR/ComfyUI`).
        store: The shared store, laid out like `ComfyUI/models` (`<kind>/` folders).
        log: Where status lines go.
        link: Link (or copy) each file into `models/<kind>/` instead of
            writing `extra_model_paths.yaml`.

    Returns:
        What was written or linked.

    Raises:
        UsageError: The store is missing or inside `ComfyUI/models`.
        ConfigError: An existing `extra_model_paths.yaml` cannot be changed safely.
        EnvironmentUnsupportedError: A file cannot be written.
    """
    models_dir = comfyui_dir / "models"
    resolved = check_shared_store(store, models_dir)
    if link:
        links = link_shared_models(resolved, models_dir, log=log)
        return ShareResult(store=resolved, config_path=None, links=tuple(links))
    config = write_shared_config(comfyui_dir, resolved)
    log.info(f"{config} points ComfyUI at {resolved}")
    return ShareResult(store=resolved, config_path=config)
