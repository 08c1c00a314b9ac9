"""GLM-4.5V's decoder: GLM-4.1V's (decoder.py: attention, M-RoPE sections, KV cache, generation are shared)
with four differences, each named once here.

Corresponds to transformers' `Glm4vMoeTextModel` (`Glm4vMoeTextDecoderLayer`, `Glm4vMoeTextAttention`).
Shapes as in decoder.py: inputs_embeds (B, L, D), position_ids (3, B, L) -> hidden states (B, L, D).

    1. pre-norm only (GLM-4.1V also normalises each sublayer's output, the "sandwich"):
           x = x + attn(input_layernorm(x))
           x = x + mlp(post_attention_layernorm(x))
    2. rotary: the first rotary_dim = head_dim * partial_rotary_factor dims of each head turn with
       `rotate_half` (dim m pairs with m + rotary_dim/2), not in interleaved pairs (rope.apply_mrope_halves)
    3. MLP: separate gate_proj / up_proj (GLM-4.1V fuses them into gate_up_proj), and from layer
       first_k_dense_replace on a mixture of experts (moe.py)
    4. head_dim is stated in the config (96 heads x 128 = 12288 for a width of 4096)
"""

from torch import nn

from .config_moe import MoeTextConfig
from .decoder import Attention, Glm4vTextModel
from .layers import RMSNorm
from .moe import mlp_for_layer
from .rope import apply_mrope_halves, mrope_cos_sin_halves


class MoeAttention(Attention):
    rotate = staticmethod(apply_mrope_halves)  # difference 2; head_dim (4) comes from the config


class MoeDecoderLayer(nn.Module):
    def __init__(self, cfg: MoeTextConfig, layer_idx: int):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = MoeAttention(cfg, layer_idx)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = mlp_for_layer(cfg, layer_idx)  # difference 3

    def forward(self, x, cos, sin, mask, cache=None):  # difference 1
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask, cache)
        return x + self.mlp(self.post_attention_layernorm(x))


class Glm4vMoeTextModel(Glm4vTextModel):
    layer_class = MoeDecoderLayer

    def rotary(self, position_ids, dtype):
        """position_ids (3, B, L) -> cos, sin (B, 1, L, rotary_dim) in the rotate_half layout (difference 2)."""
        c = self.cfg
        return mrope_cos_sin_halves(position_ids, c.rotary_dim, c.rope_theta, c.mrope_section, dtype)
