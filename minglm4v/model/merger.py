"""From ViT patches to language-model tokens: 2x2 downsample, then the projector.

Corresponds to the tail of transformers' `Glm4vVisionModel` (`post_layernorm`, `downsample`) and to
`Glm4vVisionPatchMerger`:

    (N, 1536)  --post_layernorm, rows viewed as 2x2 windows-->  (N/4, 1536, 2, 2)
               --downsample Conv2d(k=2, s=2) as a Linear-->     (N/4, 4096)
               --proj, LayerNorm, GELU, SwiGLU-->               (N/4, 4096)   one vector per <|image|>
"""

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .layers import SwiGLU


class Downsample(nn.Conv2d):
    """transformers' `downsample`: a Conv2d whose kernel and stride are the 2x2 merge window, so each
    output is one dot product with a whole (hidden, 2, 2) window: (n, hidden, 2, 2) -> (n, out, 1, 1)."""

    def __init__(self, dim: int, out: int, merge: int):
        super().__init__(dim, out, kernel_size=merge, stride=merge)

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        # why F.linear: a convolution that covers its whole input is a Linear, and as one it skips
        # im2col (4x faster on CPU in fp32); the weight keeps the checkpoint's (out, hidden, 2, 2) shape
        flat = rearrange(windows, "n d mi mj -> n (d mi mj)")
        out = F.linear(flat, rearrange(self.weight, "e d mi mj -> e (d mi mj)"), self.bias)
        return rearrange(out, "n e -> n e 1 1")


def downsample_windows(x: torch.Tensor, downsample: Downsample, merge: int) -> torch.Tensor:
    """(N, hidden) patches, 4 consecutive rows = one window -> (N / merge^2, out) merged tokens."""
    # why no spatial bookkeeping: the processor already listed each window's patches together
    windows = rearrange(x, "(n mi mj) d -> n d mi mj", mi=merge, mj=merge)
    return rearrange(downsample(windows), "n d 1 1 -> n d")


class PatchMerger(SwiGLU):
    """proj -> LayerNorm -> GELU -> SwiGLU; keys `merger.proj`, `merger.post_projection_norm`,
    `merger.gate_proj` / `up_proj` / `down_proj`. (N/4, dim) -> (N/4, dim)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__(dim, hidden)
        self.proj = nn.Linear(dim, dim, bias=False)
        self.post_projection_norm = nn.LayerNorm(dim, eps=1e-5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.gelu(self.post_projection_norm(self.proj(x))))
