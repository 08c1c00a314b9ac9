"""GLM-4.5V / GLM-4.6V: GLM-4.1V's model (glm4v.py) with the mixture-of-experts decoder of decoder_moe.py.

Corresponds to transformers' `Glm4vMoeForConditionalGeneration` (`model_type` "glm4v_moe"). The vision
tower, the merger, get_rope_index, the forward pass and generation are GLM-4.1V's; what changes:

    config            Glm4vMoeConfig (config_moe.py)
    text model        Glm4vMoeTextModel (decoder_moe.py)
    router in fp32    mlp.gate.weight and mlp.gate.e_score_correction_bias load in fp32 whatever the dtype
    aux loss          forward(..., output_router_logits=True) adds the routers' load-balancing loss
                      (moe.load_balancing_loss) to the output, and router_aux_loss_coef times it to the loss
    MTP layer skipped the hub checkpoints carry one more decoder layer after the last (GLM-4.5V: layer 46),
                      trained to predict a second token ahead for speculative decoding. Plain decoding
                      never runs it (transformers does not load it either), so its tensors are not read.
"""

import re

from .config_moe import Glm4vMoeConfig
from .decoder_moe import Glm4vMoeTextModel
from .glm4v import Glm4vForConditionalGeneration, Glm4vOutput
from .moe import FP32_KEYS, Router, load_balancing_loss

_LAYER = re.compile(r"model\.language_model\.layers\.(\d+)\.")


class Glm4vMoeForConditionalGeneration(Glm4vForConditionalGeneration):
    config_class = Glm4vMoeConfig
    text_model_class = Glm4vMoeTextModel
    fp32_keys = FP32_KEYS

    @staticmethod
    def skipped_key(key: str, config: Glm4vMoeConfig) -> bool:
        """The multi-token-prediction layer's tensors (any layer index past the last decoder layer)."""
        layer = _LAYER.match(key)
        return layer is not None and int(layer.group(1)) >= config.text_config.num_hidden_layers

    def forward(self, input_ids, attention_mask=None, *args, output_router_logits: bool = False,
                **kwargs) -> Glm4vOutput:
        """GLM-4.1V's forward (same arguments); with output_router_logits the routers' logits are
        collected on the way and turned into `aux_loss` (a training signal: no cache, mask (B, L))."""
        if not output_router_logits:
            return super().forward(input_ids, attention_mask, *args, **kwargs)
        logits = []
        hooks = [m.register_forward_hook(lambda module, inputs, out: logits.append(out[0]))
                 for m in self.modules() if isinstance(m, Router)]
        try:
            out = super().forward(input_ids, attention_mask, *args, **kwargs)
        finally:
            for hook in hooks:
                hook.remove()
        if not logits:  # every layer is dense (first_k_dense_replace = num_hidden_layers)
            return out
        text = self.config.text_config
        out.aux_loss = load_balancing_loss(logits, text.num_experts_per_tok, attention_mask)
        if out.loss is not None:
            out.loss = out.loss + text.router_aux_loss_coef * out.aux_loss
        return out

