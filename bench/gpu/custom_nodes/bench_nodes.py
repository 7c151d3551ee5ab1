"""A node for the CPU shake-down of the GPU benchmark only (never loaded on the GPU runs).

Text encoders' sizes are pinned by ComfyUI's detection, so a tiny workflow cannot
load one; this node stands in for `CLIPTextEncode` with zero conditioning of the
width the Wan DiT expects. `run_workflows.py --tiny` adds this folder through
the extra model paths file; the real workflows use ComfyUI's own nodes only.
"""

import torch


class BenchZeroConditioning:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "tokens": ("INT", {"default": 16, "min": 1, "max": 4096}),
                "width": ("INT", {"default": 4096, "min": 1, "max": 16384}),
            }
        }

    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "make"
    CATEGORY = "bench"

    def make(self, tokens, width):
        return ([[torch.zeros(1, tokens, width), {}]],)


NODE_CLASS_MAPPINGS = {"BenchZeroConditioning": BenchZeroConditioning}
