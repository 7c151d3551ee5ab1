"""comfy-install: install ComfyUI on a GPU machine in one command."""

__version__ = "0.1.0"
