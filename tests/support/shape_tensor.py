"""A torch-free tensor stand-in for the attention shims' unit tests."""

from __future__ import annotations


class FakeDevice:
    """A tensor's device as the shims read it: only its ``type``."""

    def __init__(self, kind: str) -> None:
        self.type = kind


class ShapeTensor:
    """A tensor of shape, dtype and device only: what the routes' reshapes and fallbacks read.

    ``reshape`` (with one -1), ``transpose`` and ``contiguous`` return new shapes as torch's
    would; no data is held, so the shims' logic runs without torch.
    """

    def __init__(self, *shape: int, dtype: str = "torch.float16", device: str = "cuda") -> None:
        self.shape = tuple(shape)
        self.dtype = dtype
        self.device = FakeDevice(device)

    @property
    def is_cuda(self) -> bool:
        """Whether it is on a CUDA device (torch's `Tensor.is_cuda`; the router's key reads it)."""
        return self.device.type == "cuda"

    def reshape(self, *shape: int) -> ShapeTensor:
        size = 1
        for n in self.shape:
            size *= n
        known = 1
        for n in shape:
            known *= n if n != -1 else 1
        return ShapeTensor(*(size // known if n == -1 else n for n in shape), dtype=self.dtype)

    def transpose(self, a: int, b: int) -> ShapeTensor:
        shape = list(self.shape)
        shape[a], shape[b] = shape[b], shape[a]
        return ShapeTensor(*shape, dtype=self.dtype)

    def contiguous(self) -> ShapeTensor:
        return self
