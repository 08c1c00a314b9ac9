"""Glm4vMoeConfig (GLM-4.5V / 4.6V) against transformers' Glm4vMoeConfig: written config.json read back by
transformers with identical values, transformers' own config.json and the hub's legacy style read by us,
and the MoE checks."""

import dataclasses
import json

import pytest

from minglm4v import Glm4vMoeConfig, VisionConfig
from minglm4v.model.config_moe import MoeTextConfig

ROPE_FIELDS = ("rope_theta", "partial_rotary_factor", "mrope_section")


def hf_moe_config(config):
    from transformers import Glm4vMoeConfig as HFConfig
    return HFConfig.from_dict(config.to_dict())


def assert_same_as_hf(ours, hf) -> None:
    for f in dataclasses.fields(MoeTextConfig):
        want = hf.text_config.rope_parameters[f.name] if f.name in ROPE_FIELDS else getattr(hf.text_config, f.name)
        assert getattr(ours.text_config, f.name) == want, f.name
    for f in dataclasses.fields(VisionConfig):
        want = hf.vision_config.rope_parameters["rope_theta"] if f.name == "rope_theta" else \
            getattr(hf.vision_config, f.name)
        assert getattr(ours.vision_config, f.name) == want, f.name
    for name in ("image_token_id", "video_token_id", "image_start_token_id", "image_end_token_id",
                 "video_start_token_id", "video_end_token_id", "tie_word_embeddings"):
        assert getattr(ours, name) == getattr(hf, name), name
    assert hf.model_type == "glm4v_moe" and str(hf.dtype).removeprefix("torch.") == ours.dtype


@pytest.mark.parametrize("preset", ["tiny", "glm45v"])
def test_to_dict_reads_identically_in_transformers(preset, tmp_path):
    ours = getattr(Glm4vMoeConfig, preset)()
    assert_same_as_hf(ours, hf_moe_config(ours))
    ours.save_pretrained(tmp_path)
    assert Glm4vMoeConfig.from_pretrained(tmp_path) == ours == Glm4vMoeConfig.from_dict(ours.to_dict())


def test_config_json_written_by_transformers(tmp_path):
    from transformers import Glm4vMoeConfig as HFConfig
    hf_moe_config(Glm4vMoeConfig.tiny()).save_pretrained(tmp_path)
    written = json.loads((tmp_path / "config.json").read_text())
    assert written["model_type"] == "glm4v_moe" and "rope_parameters" in written["text_config"]
    ours = Glm4vMoeConfig.from_pretrained(tmp_path)
    assert ours == Glm4vMoeConfig.tiny()
    assert_same_as_hf(ours, HFConfig.from_pretrained(tmp_path))


def hub_style() -> dict:
    """The tiny config as the hub's GLM-4.5V config.json is written: legacy rope fields, torch_dtype, token
    ids repeated in text_config, and keys for parts minglm4v does not build (no qk-norm, one MTP layer)."""
    d = Glm4vMoeConfig.tiny().to_dict()
    text = d["text_config"]
    rope = text.pop("rope_parameters")
    text.update(rope_theta=rope["rope_theta"], partial_rotary_factor=rope["partial_rotary_factor"],
                rope_scaling={"type": "default", "mrope_section": rope["mrope_section"]},
                use_qk_norm=False, num_nextn_predict_layers=1, image_token_id=1014, torch_dtype="bfloat16")
    d["torch_dtype"] = d.pop("dtype")
    return d


def test_hub_style_dict():
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # none of the hub's keys is reported as unknown
        ours = Glm4vMoeConfig.from_dict(hub_style())
    assert ours == Glm4vMoeConfig.tiny()


def test_missing_head_dim_is_derived_as_transformers_does():
    d = Glm4vMoeConfig.tiny().to_dict()
    del d["text_config"]["head_dim"]
    d["text_config"]["rope_parameters"]["mrope_section"] = [1, 1, 2]  # 64 / 4 = 16 -> 8 rotary dims
    assert Glm4vMoeConfig.from_dict(d).text_config.head_dim == hf_moe_config(Glm4vMoeConfig.from_dict(d)) \
        .text_config.head_dim == 16


def test_full_size_defaults():
    c = Glm4vMoeConfig.glm45v()
    t = c.text_config
    assert (t.head_dim, t.rotary_dim, t.mrope_section, t.num_attention_heads * t.head_dim) == (128, 64, [8, 12, 12],
                                                                                              12288)
    assert (t.n_routed_experts, t.num_experts_per_tok, t.moe_intermediate_size, t.first_k_dense_replace) == \
        (128, 8, 1408, 1)
    assert (c.image_token_id, c.video_token_id, c.vision_config.intermediate_size) == (151363, 151364, 10944)
    assert [t.is_moe_layer(i) for i in range(3)] == [False, True, True]


@pytest.mark.parametrize("text, message", [
    (dict(n_routed_experts=9, n_group=2), "n_routed_experts 9 is not divisible by n_group 2"),
    (dict(n_routed_experts=8, n_group=8, topk_group=2, num_experts_per_tok=2),
     r"each of the n_group 8 groups must hold >= 2 experts, got 1"),
    (dict(n_routed_experts=8, n_group=2, topk_group=3), "topk_group 3 is more than n_group 2"),
    (dict(n_routed_experts=8, n_group=4, topk_group=1, num_experts_per_tok=3),
     "num_experts_per_tok 3 is more than the 1 allowed group"),
    (dict(num_hidden_layers=2, first_k_dense_replace=3), "first_k_dense_replace 3 is more than num_hidden_layers 2"),
    (dict(first_k_dense_replace=-1), "text_config.first_k_dense_replace must be >= 0, got -1"),
    (dict(routed_scaling_factor=0.0), "text_config.routed_scaling_factor must be a finite number > 0"),
    (dict(router_aux_loss_coef=-1.0), "text_config.router_aux_loss_coef must be a finite number >= 0"),
])
def test_invalid_moe_config(text, message):
    with pytest.raises(ValueError, match=message):
        Glm4vMoeConfig(text_config=text)


def test_zero_dense_layers_and_no_aux_loss_are_valid():
    t = Glm4vMoeConfig(text_config=dict(first_k_dense_replace=0, router_aux_loss_coef=0.0)).text_config
    assert t.is_moe_layer(0)


def test_qk_norm_and_missing_expert_sizes_are_refused():
    d = hub_style()
    d["text_config"]["use_qk_norm"] = True
    with pytest.raises(ValueError, match="use_qk_norm is true; GLM-4.5V/4.6V have no qk-norm"):
        Glm4vMoeConfig.from_dict(d)
    d = Glm4vMoeConfig.tiny().to_dict()
    del d["text_config"]["n_routed_experts"]
    with pytest.raises(ValueError, match=r"text_config is missing required field\(s\) \['n_routed_experts'\]"):
        Glm4vMoeConfig.from_dict(d)
