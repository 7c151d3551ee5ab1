"""The files the image's runtime reads: `extra_model_paths.yaml` and the start script. Pure.

`extra_model_paths.yaml` points ComfyUI at the `/models` volume, one folder per
model kind. The start script keeps the attention calibration on a volume, then
runs `launch`. `comfy-install tune` measures attention on the GPU it runs on and writes
`DIR/.comfy-install/calibration.json`, which `launch` reads. An image is built
where there is no GPU (the install inside runs with `--no-tune`), so the
measuring happens at the container's first start on the real GPU, and the
result is kept on the tune volume so that later starts (and other containers
sharing the volume) skip it:

1. a calibration on the volume is copied into the install, and used;
2. else, with an NVIDIA device in the container (`/dev/nvidiactl`) and
   `COMFY_TUNE_AT_START` not `0`, `comfy-install tune` runs (budget
   `COMFY_TUNE_BUDGET` seconds, default 60) and its result is copied onto the
   volume; a failure only means ComfyUI's default attention;
3. then the script becomes `comfy-install launch DIR ARGS...`.

A calibration made on another GPU, driver or torch is stale: `launch` says so
and uses the default attention; delete `calibration.json` on the volume to
measure again. The paths can be moved with `COMFY_INSTALL_DIR`, `COMFY_TUNE_DIR`
and `COMFY_GPU_DEVICE` (the tests do).
"""

from __future__ import annotations

MODEL_FOLDERS = (  # ComfyUI's folder_paths kinds the models volume holds
    "checkpoints",
    "clip",
    "clip_vision",
    "configs",
    "controlnet",
    "diffusion_models",
    "embeddings",
    "gligen",
    "hypernetworks",
    "loras",
    "photomaker",
    "style_models",
    "text_encoders",
    "unet",
    "upscale_models",
    "vae",
    "vae_approx",
)

START_SCRIPT = "etc/start.sh"
"""The script's path in the build context (copied to the image's `/etc/comfy-install/`)."""


def start_script(install_dir: str, tune_dir: str) -> str:
    """Return the start script (POSIX sh; the ENTRYPOINT runs it with `/bin/sh`).

    Args:
        install_dir: DIR of the install in the image (`/opt/comfyui`).
        tune_dir: The tune volume's mount point (`/var/lib/comfy-install/tune`).
    """
    say = 'echo "comfy-install image: $1" >&2'
    return f"""\
# Written by `comfy-install image context`: the image's ENTRYPOINT runs it with /bin/sh.
# It keeps the attention calibration on the tune volume (measured on this GPU at the first
# start), then becomes `comfy-install launch`. COMFY_TUNE_AT_START=0 skips the measuring.
set -eu
say() {{ {say}; }}
dir="${{COMFY_INSTALL_DIR:-{install_dir}}}"
kept="${{COMFY_TUNE_DIR:-{tune_dir}}}/calibration.json"
used="$dir/.comfy-install/calibration.json"
if [ -s "$kept" ]; then
    mkdir -p "$dir/.comfy-install"
    cp "$kept" "$used"
elif [ "${{COMFY_TUNE_AT_START:-1}}" != 0 ] && [ -e "${{COMFY_GPU_DEVICE:-/dev/nvidiactl}}" ]; then
    say "no attention calibration on the tune volume yet: measuring this GPU"
    if comfy-install tune "$dir" --budget "${{COMFY_TUNE_BUDGET:-60}}" && [ -s "$used" ]; then
        if cp "$used" "$kept.$$" && mv "$kept.$$" "$kept"; then
            say "calibration kept on the tune volume: $kept"
        else
            say "could not keep the calibration on the tune volume (writable by uid $(id -u)?)"
        fi
    else
        say "attention was not measured: ComfyUI starts with its default attention"
    fi
fi
exec comfy-install launch "$dir" "$@"
"""


def extra_model_paths_yaml(models_dir: str) -> str:
    """Return the `extra_model_paths.yaml` that points ComfyUI at the models volume.

    Args:
        models_dir: The models volume's mount point (`/models`).
    """
    lines = [
        f"# comfy-install image: the models live on the {models_dir} volume, one folder per kind.",
        "comfy_install_models:",
        f"    base_path: {models_dir}",
        "    is_default: true",
    ]
    lines += [f"    {kind}: {kind}" for kind in MODEL_FOLDERS]
    return "\n".join(lines) + "\n"
