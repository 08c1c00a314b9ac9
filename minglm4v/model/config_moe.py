"""Configuration of GLM-4.5V / GLM-4.6V: `Glm4vMoeConfig`, a `Glm4vConfig` whose text part is a
`MoeTextConfig` (the decoder of a mixture of experts).

Corresponds to transformers' `Glm4vMoeConfig` / `Glm4vMoeTextConfig` (`model_type` "glm4v_moe"). The
vision part is GLM-4.1V's `VisionConfig` unchanged. The defaults are the real GLM-4.5V;
`Glm4vMoeConfig.tiny()` is a small model that really routes (used by tests and notebook 18).

What the text part adds to GLM-4.1V's:
    head_dim                 stated, not hidden_size / heads (GLM-4.5V: 96 heads x 128 = 12288 != 4096)
    first_k_dense_replace    layers 0 .. k-1 keep a dense MLP (width intermediate_size); the others are MoE
    n_routed_experts         experts per MoE layer, each an MLP of width moe_intermediate_size
    num_experts_per_tok      experts each token is sent to (top-k)
    n_group, topk_group      experts come in n_group groups; a token may only pick from its topk_group best
    norm_topk_prob           rescale the k chosen scores to sum to 1
    routed_scaling_factor    multiply the (normalised) weights by this
    n_shared_experts         one always-on MLP of width moe_intermediate_size * n_shared_experts
    router_aux_loss_coef     weight of the load-balancing loss when training asks for it
"""

from dataclasses import dataclass, field
from typing import ClassVar

from .config import _REQUIRED_TEXT, Glm4vConfig, TextConfig


@dataclass
class MoeTextConfig(TextConfig):
    vocab_size: int = 151552
    hidden_size: int = 4096
    intermediate_size: int = 10944  # the dense layers' MLP width
    num_hidden_layers: int = 46
    num_attention_heads: int = 96
    num_key_value_heads: int = 8
    head_dim: int = 128  # a field here; GLM-4.1V's TextConfig derives it
    moe_intermediate_size: int = 1408
    n_routed_experts: int = 128
    num_experts_per_tok: int = 8
    n_shared_experts: int = 1
    n_group: int = 1
    topk_group: int = 1
    norm_topk_prob: bool = True
    routed_scaling_factor: float = 1.0
    first_k_dense_replace: int = field(default=1, metadata={"min": 0})
    router_aux_loss_coef: float = field(default=0.0001, metadata={"min": 0})

    def head_dim_problems(self) -> list[str]:
        return []  # stated, so nothing has to divide

    def is_moe_layer(self, layer_idx: int) -> bool:
        return layer_idx >= self.first_k_dense_replace


@dataclass
class Glm4vMoeConfig(Glm4vConfig):
    text_config: MoeTextConfig = field(default_factory=MoeTextConfig)
    image_token_id: int = 151363  # GLM-4.5V's tokenizer: not 4.1V's 151343
    video_token_id: int = 151364
    text_class: ClassVar[type] = MoeTextConfig
    model_type: ClassVar[str] = "glm4v_moe"
    architecture: ClassVar[str] = "Glm4vMoeForConditionalGeneration"
    # the MoE sizes decide the shapes of the expert tensors: a checkpoint's config.json must state them
    required_text: ClassVar[tuple[str, ...]] = (*_REQUIRED_TEXT, "n_routed_experts", "moe_intermediate_size",
                                                "n_shared_experts", "first_k_dense_replace")

    def _validate(self):
        super()._validate()
        t, problems = self.text_config, []
        per_group, groups = t.n_routed_experts // t.n_group, t.n_group
        if t.n_routed_experts % groups:
            problems.append(f"n_routed_experts {t.n_routed_experts} is not divisible by n_group {groups}")
        elif per_group < 2:  # why: a group's score is the sum of its two best experts
            problems.append(f"each of the n_group {groups} groups must hold >= 2 experts, got {per_group}")
        if t.topk_group > groups:
            problems.append(f"topk_group {t.topk_group} is more than n_group {groups}")
        elif t.num_experts_per_tok > t.topk_group * per_group:
            problems.append(f"num_experts_per_tok {t.num_experts_per_tok} is more than the {t.topk_group} "
                            f"allowed group(s) of {per_group} experts hold; lower it or raise topk_group")
        if t.first_k_dense_replace > t.num_hidden_layers:
            problems.append(f"first_k_dense_replace {t.first_k_dense_replace} is more than num_hidden_layers "
                            f"{t.num_hidden_layers}")
        if problems:
            raise ValueError("invalid Glm4vMoeConfig:\n  - " + "\n  - ".join(problems))

    # ---------------------------------------------------------------- presets
    @classmethod
    def glm45v(cls) -> "Glm4vMoeConfig":
        """The real GLM-4.5V (107.7 B parameters, ~12 B of them active per token)."""
        return cls(vision_config=dict(intermediate_size=10944))

    @classmethod
    def tiny(cls) -> "Glm4vMoeConfig":
        """A small model that really routes: 8 experts in 4 groups, 2 groups allowed, 3 experts per
        token, one dense layer first, head_dim 24 != 64 / 4. Token ids follow the fixture tokenizer."""
        return cls(
            vision_config=dict(depth=2, hidden_size=32, num_heads=2, intermediate_size=128,
                               out_hidden_size=64, image_size=112),
            text_config=dict(vocab_size=1024, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                             num_attention_heads=4, num_key_value_heads=2, head_dim=24, mrope_section=[2, 2, 2],
                             moe_intermediate_size=32, n_routed_experts=8, num_experts_per_tok=3, n_group=4,
                             topk_group=2, routed_scaling_factor=2.5, first_k_dense_replace=1,
                             max_position_embeddings=1024, pad_token_id=1000, eos_token_id=[1000, 1007, 1009]),
            image_token_id=1014, video_token_id=1015, image_start_token_id=1010, image_end_token_id=1011,
            video_start_token_id=1012, video_end_token_id=1013, dtype="float32",
        )

    # ---------------------------------------------------------------- HF config.json
    @classmethod
    def from_dict(cls, d: dict) -> "Glm4vMoeConfig":
        """As `Glm4vConfig.from_dict`, plus what transformers does for a missing `head_dim` (derive it)
        and the hub's keys for parts we do not build (qk-norm must be off; the MTP layer is skipped)."""
        if isinstance(d, dict) and isinstance(d.get("text_config"), dict):
            text = dict(d["text_config"])
            if text.pop("use_qk_norm", False):
                raise ValueError("config text_config.use_qk_norm is true; GLM-4.5V/4.6V have no qk-norm and "
                                 "minglm4v does not implement it")
            text.pop("num_nextn_predict_layers", None)  # the MTP layer; see weights.py
            text.pop("output_router_logits", None)  # a training switch; see training/train.py
            if "hidden_size" in text and "num_attention_heads" in text:
                text.setdefault("head_dim", text["hidden_size"] // text["num_attention_heads"])
            d = {**d, "text_config": text}
        return super().from_dict(d)
