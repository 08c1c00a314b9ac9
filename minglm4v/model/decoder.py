"""The language model: a causal GLM-4 decoder with 3-D M-RoPE.

Corresponds to transformers' `Glm4vTextModel` (`Glm4vTextDecoderLayer`, `Glm4vTextAttention`,
`Glm4vTextMLP`). Shapes: inputs_embeds (B, L, D), position_ids (3, B, L) -> hidden states (B, L, D).

Each layer wraps both sublayers in a "sandwich" of RMSNorms (GLM-4):
    x = x + post_self_attn_layernorm(attn(input_layernorm(x)))
    x = x + post_mlp_layernorm(mlp(post_attention_layernorm(x)))

`Glm4vTextModel` has two entries besides `forward`, the seam generation decodes through:
    attention_inputs(position_ids (3, B, L), attention_mask (B, past + L), past, dtype)
        -> cos, sin (B, 1, L, head_dim) M-RoPE tables, and the additive mask (B, 1, L, past + L) or None
    step(inputs_embeds (B, L, D), cos, sin, mask, cache) -> hidden states (B, L, D), cache extended by L
`forward` is the two in a row. The cache is any object with `update(layer_idx, k, v) -> (all_k, all_v)`
(post-RoPE keys, (B, kv_heads, S, head_dim)) and `length` (tokens already stored);
`minglm4v.generation.decoding` owns it and the decoding loop.
"""

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn
from torch.utils.checkpoint import checkpoint

from .config import TextConfig
from .layers import RMSNorm
from .rope import apply_mrope, mrope_cos_sin


class Attention(nn.Module):
    rotate = staticmethod(apply_mrope)  # GLM-4.5V's attention (decoder_moe.py) rotates the other way

    def __init__(self, cfg: TextConfig, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.heads, self.kv_heads, d = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        self.q_proj = nn.Linear(cfg.hidden_size, self.heads * d, bias=True)
        self.k_proj = nn.Linear(cfg.hidden_size, self.kv_heads * d, bias=True)
        self.v_proj = nn.Linear(cfg.hidden_size, self.kv_heads * d, bias=True)
        self.o_proj = nn.Linear(self.heads * d, cfg.hidden_size, bias=False)

    def project(self, x, cos, sin) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q (B, heads, L, d), k and v (B, kv_heads, L, d), q and k rotated; also what
        minglm4v.study.attention_maps reads."""
        # q's and k's heads side by side, so that one rotation turns both
        qk = rearrange(torch.cat([self.q_proj(x), self.k_proj(x)], dim=-1), "b l (h d) -> b h l d",
                       h=self.heads + self.kv_heads)
        q, k = self.rotate(qk, cos, sin).split([self.heads, self.kv_heads], dim=1)
        # why contiguous: left views of qk, they crashed train --compile's backward (inductor's stride check);
        # at batch 1 they are contiguous already, so decoding copies nothing
        q, k = q.contiguous(), k.contiguous()
        return q, k, rearrange(self.v_proj(x), "b l (h d) -> b h l d", h=self.kv_heads)

    def forward(self, x, cos, sin, mask, cache=None):
        q, k, v = self.project(x, cos, sin)
        if cache is not None:
            k, v = cache.update(self.layer_idx, k, v)  # (B, kv_heads, S, d): past + new
        # grouped-query attention: query heads h*g .. h*g+g-1 share key/value head h, g = heads / kv_heads.
        # enable_gqa reads the shared heads in place; repeating k and v (b h s d -> b (h g) s d) would
        # copy the whole cache every step and made decoding ~8% slower on CPU.
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None and q.shape[2] > 1,
                                             enable_gqa=True)
        return self.o_proj(rearrange(out, "b h l d -> b l (h d)"))


class MLP(nn.Module):
    def __init__(self, cfg: TextConfig):
        super().__init__()
        # why fused: the checkpoint stores gate and up as one (2 * intermediate, hidden) matrix
        self.gate_up_proj = nn.Linear(cfg.hidden_size, 2 * cfg.intermediate_size, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)

    def forward(self, x):
        gate, up = self.gate_up_proj(x).chunk(2, dim=-1)
        return self.down_proj(up * F.silu(gate))


class DecoderLayer(nn.Module):
    def __init__(self, cfg: TextConfig, layer_idx: int):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = Attention(cfg, layer_idx)
        self.post_self_attn_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)  # why: the *pre*-MLP norm
        self.mlp = MLP(cfg)
        self.post_mlp_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

    def forward(self, x, cos, sin, mask, cache=None):
        x = x + self.post_self_attn_layernorm(self.self_attn(self.input_layernorm(x), cos, sin, mask, cache))
        return x + self.post_mlp_layernorm(self.mlp(self.post_attention_layernorm(x)))


def attention_mask_4d(attention_mask, q_len: int, past: int, dtype):
    """Additive mask (B, 1, L, past + L) from the 0/1 padding mask (B, past + L), or None when SDPA's
    is_causal gives the same: nothing padded, and no cached keys (or a single query, which sees them all)."""
    if (attention_mask is None or bool(attention_mask.all())) and (q_len == 1 or past == 0):
        return None
    return causal_mask(attention_mask, q_len, past, dtype)


def causal_mask(attention_mask, q_len: int, past: int, dtype, device=None):
    """The additive mask itself, (B, 1, L, past + L) (B = 1 without a padding mask): query i (at position
    past + i) sees the keys up to its own that are not padding. Masked entries get the dtype's minimum
    rather than -inf, so a padding query that sees no real key gets a harmless uniform softmax, not NaN."""
    if attention_mask is None:
        attention_mask = torch.ones(1, past + q_len, dtype=torch.long, device=device)
    keys = torch.arange(past + q_len, device=attention_mask.device)
    queries = keys[past:]
    allowed = (keys[None, :] <= queries[:, None])[None] & attention_mask[:, None, :].bool()  # (B, L, S)
    mask = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(~allowed, torch.finfo(dtype).min)
    return rearrange(mask, "b l s -> b 1 l s")


class Glm4vTextModel(nn.Module):
    layer_class = DecoderLayer  # GLM-4.5V's text model (decoder_moe.py) builds its own layers

    def __init__(self, cfg: TextConfig):
        super().__init__()
        self.cfg = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(self.layer_class(cfg, i) for i in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.gradient_checkpointing = False  # see Glm4vForConditionalGeneration.gradient_checkpointing_enable

    def forward(self, inputs_embeds, position_ids, attention_mask=None, cache=None):
        """inputs_embeds (B, L, D), position_ids (3, B, L), attention_mask (B, past + L) -> (B, L, D)"""
        past = cache.length if cache is not None else 0
        cos, sin, mask = self.attention_inputs(position_ids, attention_mask, past, inputs_embeds.dtype)
        return self.step(inputs_embeds, cos, sin, mask, cache)

    def attention_inputs(self, position_ids, attention_mask=None, past: int = 0, dtype=torch.float32):
        """What every layer needs besides the hidden states, made once per forward: the M-RoPE tables
        cos, sin (B, 1, L, head_dim) of position_ids (3, B, L), and the additive mask (B, 1, L, past + L)
        from the 0/1 padding mask (B, past + L), or None where plain causal attention suffices.
        Generation calls it once for all of its new tokens; decode step k takes row k of each."""
        cos, sin = self.rotary(position_ids, dtype)
        return cos, sin, attention_mask_4d(attention_mask, position_ids.shape[-1], past, dtype)

    def rotary(self, position_ids, dtype):
        """position_ids (3, B, L) -> the M-RoPE tables cos, sin (B, 1, L, head_dim) in apply_mrope's layout
        (GLM-4.5V's text model, decoder_moe.py, lays them out for its own rotation)."""
        c = self.cfg
        return mrope_cos_sin(position_ids, c.rotary_dim, c.rope_theta, c.mrope_section, dtype, c.head_dim)

    def step(self, inputs_embeds, cos, sin, mask=None, cache=None):
        """The layers and the final norm over L new tokens: inputs_embeds (B, L, D), the tables and mask
        of `attention_inputs` -> hidden states (B, L, D) for lm_head. A given cache is extended in place
        by these L tokens' keys and values (its `length` grows by L): a decode step is L = 1."""
        x = inputs_embeds
        for layer in self.layers:
            if self.gradient_checkpointing and self.training:
                x = checkpoint(layer, x, cos, sin, mask, cache, use_reentrant=False)
            else:
                x = layer(x, cos, sin, mask, cache)
        return self.norm(x)
