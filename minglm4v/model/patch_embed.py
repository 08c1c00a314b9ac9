"""Patch embedding of the vision tower: pixels -> one vector per 14x14x2 patch, plus absolute positions.

* `PatchEmbed` (transformers' `Glm4vVisionPatchEmbed`): a Conv3d whose kernel equals its stride, so
  it is exactly a Linear on the flattened 1176-vector (C=3, T=2, P=14, P=14) of each pixel_values row
  (why it is still called as a convolution: `merger.Downsample`): (N, 1176) -> (N, hidden).
* `PositionEmbedding` (transformers' `Glm4vVisionEmbeddings`): a learned table for a 24x24 patch
  grid (336 px at 14 px/patch) that is bicubically resized to every image's own H x W patch grid and
  added to its patches: (N, hidden) + grid_thw (images, 3) -> (N, hidden).
"""

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .config import VisionConfig


class PatchEmbed(nn.Module):
    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.cfg = cfg
        kernel = (cfg.temporal_patch_size, cfg.patch_size, cfg.patch_size)
        self.proj = nn.Conv3d(cfg.in_channels, cfg.hidden_size, kernel_size=kernel, stride=kernel, bias=True)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        c = self.cfg
        x = rearrange(pixel_values, "n (c t p q) -> n c t p q", c=c.in_channels, t=c.temporal_patch_size,
                      p=c.patch_size, q=c.patch_size)
        x = self.proj(x.to(self.proj.weight.dtype))  # (N, hidden, 1, 1, 1): one output per patch
        return rearrange(x, "n d 1 1 1 -> n d")


class PositionEmbedding(nn.Module):
    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.side = cfg.image_size // cfg.patch_size  # 24 for GLM-4.1V
        self.merge = cfg.spatial_merge_size
        self.position_embedding = nn.Embedding(self.side**2, cfg.hidden_size)

    def table_for_grid(self, h: int, w: int) -> torch.Tensor:
        """The 24x24 table resized to an h x w patch grid, rows in merge-window order: (h*w, hidden)"""
        table = rearrange(self.position_embedding.weight.float(), "(r c) d -> 1 d r c", r=self.side)
        # why bicubic, align_corners=False: this is the resampling the checkpoint was trained with
        grid = F.interpolate(table, size=(h, w), mode="bicubic", align_corners=False)  # (1, d, h, w)
        grid = rearrange(grid, "1 d (bh mi) (bw mj) -> (bh bw mi mj) d", mi=self.merge, mj=self.merge)
        return grid.to(self.position_embedding.weight.dtype)

    def forward(self, x: torch.Tensor, grid_thw: torch.Tensor) -> torch.Tensor:
        pos = torch.cat([self.table_for_grid(h, w).repeat(t, 1) for t, h, w in grid_thw.tolist()])
        return x + pos.to(x.dtype)
