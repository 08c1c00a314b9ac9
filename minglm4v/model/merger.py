"""From ViT patches to language-model tokens: 2x2 downsample, then the projector.

Corresponds to the tail of transformers' `Glm4vVisionModel` (`post_layernorm`, `downsample`) and to
`Glm4vVisionPatchMerger`:

    (N, 1536)  --post_layernorm, 4 rows = one 2x2 window-->    (N/4, 1536*2*2)
               --downsample (a Conv2d, k=2, s=2: a Linear)-->  (N/4, 4096)
               --proj, LayerNorm, GELU, SwiGLU-->              (N/4, 4096)   one vector per <|image|>
"""

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .layers import SwiGLU


class Downsample(nn.Conv2d):
    """transformers' `downsample`: a Conv2d whose kernel and stride are the 2x2 merge window, given one
    whole window per output. Each output is then one dot product with the whole window: a Linear whose
    weight is the conv weight flattened, and it runs as one on flattened windows (n, hidden*2*2) ->
    (n, out). The module stays a Conv2d so that the weight keeps the checkpoint's (out, hidden, 2, 2)
    shape and its initialisation.

    Why a Linear: calling the Conv2d took 3x as long on CPU (fp32, the 113M benchmark's sizes) and 12x
    at GLM-4.1V's, ~10% of the whole vision tower. The patch embedding is the same kind of convolution
    but keeps its Conv3d call, as transformers does: as a Linear it differs from it by ~2e-6, which grows
    to 1.5e-5 in the test fixture's logits (the oracle tests allow 1e-5), and it does 0.25% of the
    tower's multiply-adds."""

    def __init__(self, dim: int, out: int, merge: int):
        super().__init__(dim, out, kernel_size=merge, stride=merge)

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        return F.linear(windows, rearrange(self.weight, "e d mi mj -> e (d mi mj)"), self.bias)


def downsample_windows(x: torch.Tensor, downsample: Downsample, merge: int) -> torch.Tensor:
    """(N, hidden) patches, merge^2 consecutive rows = one window -> (N / merge^2, out) merged tokens."""
    # why no spatial bookkeeping: the processor already listed each window's patches together
    return downsample(rearrange(x, "(n mi mj) d -> n (d mi mj)", mi=merge, mj=merge))  # the weight's order


class PatchMerger(SwiGLU):
    """proj -> LayerNorm -> GELU -> SwiGLU; keys `merger.proj`, `merger.post_projection_norm`,
    `merger.gate_proj` / `up_proj` / `down_proj`. (N/4, dim) -> (N/4, dim)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__(dim, hidden)
        self.proj = nn.Linear(dim, dim, bias=False)
        self.post_projection_norm = nn.LayerNorm(dim, eps=1e-5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.gelu(self.post_projection_norm(self.proj(x))))
