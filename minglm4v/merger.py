"""From ViT patches to language-model tokens: 2x2 downsample, then the projector.

Corresponds to the tail of transformers' `Glm4vVisionModel` (`post_layernorm`, `downsample`) and to
`Glm4vVisionPatchMerger`:

    (N, 1536)  --post_layernorm, rows viewed as 2x2 windows-->  (N/4, 1536, 2, 2)
               --downsample Conv2d(k=2, s=2)-->                 (N/4, 4096)
               --proj, LayerNorm, GELU, SwiGLU-->               (N/4, 4096)   one vector per <|image|>
"""

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .layers import SwiGLU


def downsample_windows(x: torch.Tensor, downsample: nn.Conv2d, merge: int) -> torch.Tensor:
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
