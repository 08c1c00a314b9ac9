"""The vision tower: a bidirectional ViT over every image (and video frame pair) in the batch.

Corresponds to transformers' `Glm4vVisionModel` (blocks: `Glm4vVisionBlock`, `Glm4vVisionAttention`).

    pixel_values (N, C*T*P*P)  -> patch_embed -> post_conv_layernorm -> + resized position table
                               -> depth x [x + attn(norm1(x)); x + mlp(norm2(x))]   (2-D RoPE in attn)
                               -> post_layernorm -> 2x2 downsample -> merger
                               -> (N / merge^2, out_hidden_size)

N is the total number of patches over all images; `grid_thw` (images, 3) says how they split. An
image attends only to itself (block-diagonal attention), and so does every temporal group of a video:
a [t, h, w] grid is t separate h x w images to the tower.
"""

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn
from torch.utils.checkpoint import checkpoint

from .config import VisionConfig
from .layers import RMSNorm, SwiGLU
from .merger import Downsample, PatchMerger, downsample_windows
from .patch_embed import PatchEmbed, PositionEmbedding
from .rope import apply_vision_rope, vision_cos_sin, vision_positions


class VisionAttention(nn.Module):
    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.heads = cfg.num_heads
        self.qkv = nn.Linear(cfg.hidden_size, 3 * cfg.hidden_size, bias=False)  # [q | k | v], head-major
        self.proj = nn.Linear(cfg.hidden_size, cfg.hidden_size, bias=False)

    def project(self, x, cos, sin) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q, k (rotated) and v, each (N, heads, head_dim); also what minglm4v.study.attention_maps reads."""
        q, k, v = rearrange(self.qkv(x), "n (three h d) -> three n h d", three=3, h=self.heads)
        return apply_vision_rope(q, cos, sin), apply_vision_rope(k, cos, sin), v

    def forward(self, x, cos, sin, seq_lens: list[int]) -> torch.Tensor:
        q, k, v = self.project(x, cos, sin)
        out = []
        for qi, ki, vi in zip(*(t.split(seq_lens) for t in (q, k, v))):  # one image at a time
            # why the batch axis of 1: CPU SDPA picks another kernel for 3-D inputs; bf16 would drift from HF
            qi, ki, vi = (rearrange(t, "n h d -> 1 h n d") for t in (qi, ki, vi))
            out.append(rearrange(F.scaled_dot_product_attention(qi, ki, vi), "1 h n d -> n (h d)"))
        return self.proj(torch.cat(out))


class VisionBlock(nn.Module):
    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.norm1 = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.attn = VisionAttention(cfg)
        self.norm2 = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = SwiGLU(cfg.hidden_size, cfg.out_hidden_size)  # why: ViT MLP width is out_hidden_size

    def forward(self, x, cos, sin, seq_lens):
        x = x + self.attn(self.norm1(x), cos, sin, seq_lens)
        return x + self.mlp(self.norm2(x))


class Glm4vVisionModel(nn.Module):
    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.cfg = cfg
        self.patch_embed = PatchEmbed(cfg)
        self.post_conv_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.embeddings = PositionEmbedding(cfg)
        self.blocks = nn.ModuleList(VisionBlock(cfg) for _ in range(cfg.depth))
        self.post_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.downsample = Downsample(cfg.hidden_size, cfg.out_hidden_size, cfg.spatial_merge_size)
        self.merger = PatchMerger(cfg.out_hidden_size, cfg.intermediate_size)
        self.gradient_checkpointing = False  # see Glm4vForConditionalGeneration.gradient_checkpointing_enable

    def vit(self, pixel_values: torch.Tensor, grid_thw: torch.Tensor) -> torch.Tensor:
        """The ViT alone: (N, C*T*P*P) -> (N, hidden), before post_layernorm."""
        c = self.cfg
        x = self.post_conv_layernorm(self.patch_embed(pixel_values))  # (N, hidden)
        x = self.embeddings(x, grid_thw)
        cos, sin = vision_cos_sin(vision_positions(grid_thw, c.spatial_merge_size), c.head_dim, c.rope_theta)
        seq_lens = [h * w for t, h, w in grid_thw.tolist() for _ in range(t)]
        for block in self.blocks:
            if self.gradient_checkpointing and self.training:
                x = checkpoint(block, x, cos, sin, seq_lens, use_reentrant=False)
            else:
                x = block(x, cos, sin, seq_lens)
        return x

    def forward(self, pixel_values: torch.Tensor, grid_thw: torch.Tensor) -> torch.Tensor:
        """(N, C*T*P*P), grid_thw (images, 3) -> merged features (N / merge^2, out_hidden_size)"""
        x = self.post_layernorm(self.vit(pixel_values, grid_thw))
        x = downsample_windows(x, self.downsample, self.cfg.spatial_merge_size)
        return self.merger(x)
