"""Glm4vConfig against transformers' Glm4vConfig: reading HF config.json in the legacy (hub) and the
transformers-5 style, writing one transformers reads back with identical values, and validation."""

import dataclasses
import json
import math
import warnings

import pytest
import torch
from helpers import TINY, classify, hf_config, load_ours
from hypothesis import given
from hypothesis import strategies as st

from minglm4v import Glm4vConfig, Glm4vForConditionalGeneration, TextConfig, VisionConfig

TOKEN_IDS = ("image_token_id", "video_token_id", "image_start_token_id", "image_end_token_id",
             "video_start_token_id", "video_end_token_id")
ROPE_FIELDS = ("rope_theta", "partial_rotary_factor", "mrope_section")  # in HF 5: rope_parameters


def legacy_tiny() -> dict:
    """The tiny config written the way the hub's config.json is (transformers 4.5x converter style):
    `rope_scaling` plus top-level `rope_theta` / `partial_rotary_factor`, `torch_dtype`, no vision
    model_type, and keys we do not use."""
    return {
        "architectures": ["Glm4vForConditionalGeneration"], "model_type": "glm4v",
        "image_token_id": 1014, "video_token_id": 1015, "image_start_token_id": 1010, "image_end_token_id": 1011,
        "video_start_token_id": 1012, "video_end_token_id": 1013, "tie_word_embeddings": False,
        "torch_dtype": "bfloat16", "transformers_version": "4.57.1",
        "text_config": {
            "model_type": "glm4v_text", "vocab_size": 1024, "hidden_size": 64, "intermediate_size": 128,
            "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1, "hidden_act": "silu",
            "max_position_embeddings": 1024, "rms_norm_eps": 1e-05, "rope_theta": 10000.0,
            "partial_rotary_factor": 0.5, "rope_scaling": {"type": "default", "mrope_section": [2, 3, 3]},
            "attention_bias": True, "attention_dropout": 0.0, "initializer_range": 0.02, "use_cache": True,
            "pad_token_id": 1000, "eos_token_id": [1000, 1007, 1009], "torch_dtype": "bfloat16",
        },
        "vision_config": {
            "depth": 2, "hidden_size": 32, "num_heads": 2, "intermediate_size": 128, "out_hidden_size": 64,
            "image_size": 112, "patch_size": 14, "temporal_patch_size": 2, "spatial_merge_size": 2,
            "in_channels": 3, "rms_norm_eps": 1e-05, "hidden_act": "silu", "attention_bias": False,
            "hidden_dropout_prob": 0.0, "initializer_range": 0.02,
        },
    }


def assert_same_as_hf(ours: Glm4vConfig, hf) -> None:
    """Every value minglm4v uses equals what transformers read for it."""
    for field in dataclasses.fields(TextConfig):
        want = hf.text_config.rope_parameters[field.name] if field.name in ROPE_FIELDS else \
            getattr(hf.text_config, field.name)
        assert getattr(ours.text_config, field.name) == want, field.name
    for field in dataclasses.fields(VisionConfig):
        want = hf.vision_config.rope_parameters["rope_theta"] if field.name == "rope_theta" else \
            getattr(hf.vision_config, field.name)
        assert getattr(ours.vision_config, field.name) == want, field.name
    for name in TOKEN_IDS + ("tie_word_embeddings",):
        assert getattr(ours, name) == getattr(hf, name), name
    assert str(hf.dtype).removeprefix("torch.") == ours.dtype


def test_legacy_hub_style_dict():
    from transformers import Glm4vConfig as HFConfig
    ours = Glm4vConfig.from_dict(legacy_tiny())
    assert ours == dataclasses.replace(Glm4vConfig.tiny(), dtype="bfloat16")
    assert_same_as_hf(ours, HFConfig.from_dict(legacy_tiny()))


def test_legacy_config_json_from_pretrained(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(legacy_tiny()))
    assert Glm4vConfig.from_pretrained(tmp_path) == Glm4vConfig.from_dict(legacy_tiny())


def test_transformers5_config_json():
    """data/fixtures/tiny/config.json was written by transformers 5.24 (rope_parameters, 'dtype')."""
    from transformers import Glm4vConfig as HFConfig
    assert "rope_parameters" in json.loads((TINY / "config.json").read_text())["text_config"]
    ours = Glm4vConfig.from_pretrained(TINY)
    assert ours == Glm4vConfig.tiny()
    assert_same_as_hf(ours, HFConfig.from_pretrained(TINY))


@pytest.mark.parametrize("preset", ["tiny", "glm41v_9b"])
def test_to_dict_reads_identically_in_transformers(preset, tmp_path):
    ours = getattr(Glm4vConfig, preset)()
    assert_same_as_hf(ours, hf_config(ours))
    ours.save_pretrained(tmp_path)
    assert Glm4vConfig.from_pretrained(tmp_path) == ours == Glm4vConfig.from_dict(ours.to_dict())


def test_full_size_defaults():
    c = Glm4vConfig.glm41v_9b()
    assert (c.text_config.head_dim, c.text_config.rotary_dim, c.text_config.mrope_section) == (128, 64, [8, 12, 12])
    assert (c.vision_config.head_dim, c.vision_config.patch_dim, c.vision_config.out_hidden_size) == (128, 1176, 4096)
    assert (c.image_token_id, c.video_start_token_id, c.dtype) == (151343, 151341, "bfloat16")


def test_sub_configs_as_dicts_or_objects():
    vision, text = dict(depth=2, hidden_size=32, num_heads=2), dict(hidden_size=64, num_attention_heads=2)
    from_dicts = Glm4vConfig(vision_config=vision, text_config=text)
    from_objects = Glm4vConfig(vision_config=VisionConfig(**vision), text_config=TextConfig(**text))
    assert from_dicts == from_objects
    assert from_dicts.vision_config.out_hidden_size == 64  # defaults to the text width
    assert from_dicts.text_config.mrope_section == [2, 3, 3]  # 8 rotary frequencies split ~1:1.5:1.5


def test_guide_example_builds_like_transformers():
    config = Glm4vConfig(vision_config={"hidden_size": 512, "depth": 4, "num_heads": 8},
                         text_config={"hidden_size": 1024, "num_hidden_layers": 8})
    from transformers import Glm4vForConditionalGeneration as HFModel
    with torch.device("meta"):
        ours, hf = Glm4vForConditionalGeneration(config), HFModel(hf_config(config))
    shapes = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert shapes == {k: tuple(v.shape) for k, v in hf.state_dict().items()}
    assert shapes["model.visual.blocks.3.mlp.gate_proj.weight"] == (1024, 512)  # ViT MLP width = text width


@pytest.mark.parametrize("kwargs, message", [
    (dict(text_config=dict(mrope_section=[2, 3, 4])),
     r"mrope_section \[2, 3, 4\] sums to 9 but must sum to head_dim \* partial_rotary_factor / 2 = 128 \* 0.5 / 2"),
    (dict(text_config=dict(mrope_section=[4, 4])), r"mrope_section must have 3 entries \(t, h, w\), got \[4, 4\]"),
    (dict(text_config=dict(hidden_size=4096, num_attention_heads=30)),
     "text hidden_size 4096 is not divisible by num_attention_heads 30"),
    (dict(text_config=dict(num_key_value_heads=3)),
     "num_attention_heads 32 is not a multiple of num_key_value_heads 3"),
    (dict(vision_config=dict(hidden_size=1536, num_heads=10)),
     "vision hidden_size 1536 / num_heads 10 must give an integer head_dim divisible by 4"),
    (dict(vision_config=dict(image_size=300)), "vision image_size 300 is not a multiple of patch_size 14"),
    (dict(vision_config=dict(out_hidden_size=2048)), "vision out_hidden_size 2048 must equal text hidden_size 4096"),
    (dict(image_token_id=200000), r"image_token_id 200000 is outside the vocabulary \[0, 151552\)"),
    (dict(tie_word_embeddings=True), "tie_word_embeddings=True is not supported: GLM-4.1V has an untied lm_head"),
])
def test_invalid_config(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Glm4vConfig(**kwargs)


def test_unknown_field_is_named():
    with pytest.raises(TypeError, match=r"text_config got unknown field\(s\) \['num_layers'\]; valid fields are"):
        Glm4vConfig(text_config={"num_layers": 4})
    with pytest.raises(TypeError, match="vision_config must be a VisionConfig or a dict, got list"):
        Glm4vConfig(vision_config=[1, 2])


# ---- bad config.json: errors that name the field
def test_config_missing_required_fields(tmp_path):
    config = Glm4vConfig.tiny().to_dict()
    del config["text_config"]["vocab_size"], config["vision_config"]["out_hidden_size"]
    with pytest.raises(ValueError, match=r"config text_config is missing required field\(s\) \['vocab_size'\]"):
        Glm4vConfig.from_dict(config)
    config["text_config"]["vocab_size"] = 1024
    with pytest.raises(ValueError, match=r"vision_config is missing required field\(s\) \['out_hidden_size'\]"):
        Glm4vConfig.from_dict(config)
    del config["vision_config"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="config is missing the required 'vision_config' section"):
        load_ours(tmp_path)


def tiny_config() -> dict:
    return json.loads((TINY / "config.json").read_text())


@pytest.mark.parametrize("text, message", [
    ("{", r"config.json is not valid JSON \(Expecting property name"),
    ("[1, 2]", r"config.json holds a JSON list; expected a GLM-4.1V config.json"),
    ("\xff", r"config.json is not valid JSON"),
])
def test_config_json_that_is_not_a_json_object(tmp_path, text, message):
    (tmp_path / "config.json").write_text(text, encoding="latin-1")
    with pytest.raises(ValueError, match=message):
        load_ours(tmp_path)


@pytest.mark.parametrize("section, key, value, error, message", [
    ("text_config", "hidden_size", "128", TypeError, r"text_config.hidden_size = '128' should be int"),
    ("text_config", "num_hidden_layers", 4.5, TypeError, r"text_config.num_hidden_layers = 4.5 should be int"),
    ("text_config", "rms_norm_eps", "1e-5", TypeError, r"text_config.rms_norm_eps = '1e-5' should be float"),
    ("vision_config", "depth", True, TypeError, r"vision_config.depth = True should be int"),
    ("text_config", "num_attention_heads", 0, ValueError, r"text_config.num_attention_heads must be >= 1, got 0"),
    ("text_config", "num_key_value_heads", -1, ValueError, r"text_config.num_key_value_heads must be >= 1"),
    ("vision_config", "num_heads", 0, ValueError, r"vision_config.num_heads must be >= 1, got 0"),
    ("vision_config", "patch_size", 0, ValueError, r"vision_config.patch_size must be >= 1, got 0"),
    ("text_config", "rms_norm_eps", -1e-5, ValueError, r"text_config.rms_norm_eps must be a finite number > 0"),
    ("text_config", "hidden_act", "gelu", ValueError, r"text_config.hidden_act 'gelu' is not supported"),
    ("vision_config", "hidden_act", "gelu", ValueError, r"vision_config.hidden_act 'gelu' is not supported"),
    ("text_config", "pad_token_id", 151329, ValueError,
     r"text_config.pad_token_id 151329 is outside the vocabulary \[0, 1024\)"),
    ("text_config", "eos_token_id", [1000, 5000], ValueError,
     r"text_config.eos_token_id 5000 is outside the vocabulary \[0, 1024\)"),
])
def test_config_field_types_and_ranges(section, key, value, error, message):
    config = tiny_config()
    config[section][key] = value
    with pytest.raises(error, match=message):
        Glm4vConfig.from_dict(config)


@pytest.mark.parametrize("key, value, message", [
    ("mrope_section", [-1, 5, 4], r"text_config.mrope_section must hold counts >= 0, got \[-1, 5, 4\]"),
    ("rope_theta", 0, r"text_config.rope_theta must be a finite number > 0, got 0"),
    ("partial_rotary_factor", 2.0, r"partial_rotary_factor must lie in \(0, 1\], got 2.0"),
])
def test_config_rope_parameters(key, value, message):
    config = tiny_config()
    config["text_config"]["rope_parameters"][key] = value
    with pytest.raises(ValueError, match=message):
        Glm4vConfig.from_dict(config)


def test_missing_pad_token_id_is_the_first_eos_not_the_9b_id():
    config = tiny_config()
    del config["text_config"]["pad_token_id"]
    assert Glm4vConfig.from_dict(config).text_config.pad_token_id == 1000
    assert Glm4vConfig(text_config=dict(pad_token_id=None)).text_config.pad_token_id == 151329  # 9B eos[0]


def test_unknown_keys_are_warned_about_with_the_likely_meant_key():
    config = tiny_config()
    config["text_config"]["rms_norm_epsilon"] = 1e-6
    config["image_token_idx"] = 3
    with pytest.warns(UserWarning) as record:
        Glm4vConfig.from_dict(config)
    assert [str(w.message) for w in record] == [
        "config.json: unknown key 'image_token_idx' is ignored (did you mean 'image_token_id'?)",
        "config.json text_config: unknown key 'rms_norm_epsilon' is ignored (did you mean 'rms_norm_eps'?)"]


def test_hf_bookkeeping_keys_are_not_warned_about():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Glm4vConfig.from_pretrained(TINY)  # written by transformers: model_type, use_cache, initializer_range, ...


CONFIG_KEYS = [("text_config", k) for k in ("hidden_size", "num_hidden_layers", "num_attention_heads",
                                            "rms_norm_eps", "hidden_act", "pad_token_id", "vocab_size")] + \
              [("vision_config", k) for k in ("patch_size", "num_heads", "depth", "spatial_merge_size")]
json_values = st.one_of(st.integers(-2, 70), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=4),
                        st.booleans(), st.none(), st.lists(st.integers(0, 3), max_size=2), st.just("gelu"))


def config_value_invalid(key, value):
    if key == "hidden_act":
        return value != "silu"
    if key == "rms_norm_eps":
        return not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
                    and value > 0)
    if key == "pad_token_id":
        return value is not None and (type(value) is not int or not 0 <= value < 1024)  # None: the first eos id
    return type(value) is not int or value < 1


@given(where=st.sampled_from(CONFIG_KEYS), value=json_values)
def test_fuzz_config_values(where, value):
    section, key = where
    config = json.loads((TINY / "config.json").read_text())
    config[section][key] = value

    def check(made):
        if config_value_invalid(key, value):
            return f"accepted {section}.{key} = {value!r}"
        with torch.device("meta"):
            Glm4vForConditionalGeneration(made)  # a config that is accepted must build a model
    classify("config", lambda: Glm4vConfig.from_dict(config), check, (key, "config"))
