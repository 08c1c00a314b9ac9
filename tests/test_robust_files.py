"""Untrusted model directories: every damaged or ill-formed file is refused with an error that names it
(config.json, safetensors weights and their index, tokenizer.json, preprocessor_config.json), and a
checkpoint never makes the loader read a file outside its own directory."""

import json
import shutil
import struct
import warnings

import pytest
import torch
from helpers import REPO, TINY, TINY_BF16, load_ours
from safetensors.torch import load_file, save_file

from minglm4v import Glm4vConfig
from minglm4v.processing.image import Glm4vImageProcessor
from minglm4v.processing.tokenizer import Glm4vTokenizer


def header_length(raw: bytes) -> int:
    return struct.unpack("<Q", raw[:8])[0]


def single(tmp_path, edit_bytes):
    """The fp32 fixture checkpoint with its model.safetensors bytes passed through `edit_bytes`."""
    shutil.copy(TINY / "config.json", tmp_path)
    (tmp_path / "model.safetensors").write_bytes(edit_bytes((TINY / "model.safetensors").read_bytes()))
    return tmp_path


def sharded(tmp_path, edit):
    """The sharded bf16 fixture checkpoint after `edit(directory)`."""
    directory = tmp_path / "ckpt"
    shutil.copytree(TINY_BF16, directory)
    edit(directory)
    return directory


def edit_index(edit):
    def apply(directory):
        path = directory / "model.safetensors.index.json"
        index = json.loads(path.read_text())
        edit(index)
        path.write_text(json.dumps(index))
    return apply


def first_shard(directory):
    return sorted(directory.glob("model-*.safetensors"))[0]


# ---- damaged safetensors: an OSError naming the file, never a bare SafetensorError
@pytest.mark.parametrize("edit, reason", [
    (lambda raw: raw[:-10], "file not fully covered"),  # truncated download
    (lambda raw: b"", "header too small"),
    (lambda raw: struct.pack("<Q", 2**40) + raw[8:], "header too large"),
    (lambda raw: struct.pack("<Q", header_length(raw) + 1) + raw[8:], "header"),
    (lambda raw: struct.pack("<Q", header_length(raw) - 1) + raw[8:], "header"),
    (lambda raw: raw[:8] + b"\0" * header_length(raw) + raw[8 + header_length(raw):], "invalid JSON in header"),
    (lambda raw: raw.replace(b'"data_offsets":[0,', b'"data_offsets":[4,', 1), "invalid offset"),
    (lambda raw: raw.replace(b'"shape":[', b'"shape":[2,', 1), "invalid shape"),
    (lambda raw: raw.replace(b'"F32"', b'"Q32"', 1), "unknown variant `Q32`"),
], ids=["truncated", "empty", "header-huge", "header+1", "header-1", "junk-header", "offsets", "shape", "dtype"])
def test_damaged_safetensors_names_the_file(tmp_path, edit, reason):
    with pytest.raises(OSError, match=rf"{tmp_path}/model.safetensors is not a readable safetensors file "
                                      rf"\(.*{reason}.*\); it is damaged or truncated"):
        load_ours(single(tmp_path, edit))


def test_empty_shard_names_the_shard(tmp_path):
    directory = sharded(tmp_path, lambda d: first_shard(d).write_bytes(b""))
    with pytest.raises(OSError, match=r"model-00001-of-00003.safetensors is not a readable safetensors file"):
        load_ours(directory)


def test_shard_that_is_a_directory(tmp_path):
    def to_directory(directory):
        path = first_shard(directory)
        path.unlink()
        path.mkdir()
    with pytest.raises(IsADirectoryError, match="lists model-00001-of-00003.safetensors, which is a directory"):
        load_ours(sharded(tmp_path, to_directory))


@pytest.mark.parametrize("edit, message", [
    (lambda index: index.pop("weight_map"), "has no usable 'weight_map'.*got None"),
    (lambda index: index.update(weight_map=[]), "has no usable 'weight_map'"),
    (lambda index: index.update(weight_map={"lm_head.weight": 3}), "has no usable 'weight_map'"),
])
def test_index_without_a_weight_map(tmp_path, edit, message):
    with pytest.raises(ValueError, match=message):
        load_ours(sharded(tmp_path, edit_index(edit)))


def test_index_that_is_not_json(tmp_path):
    directory = sharded(tmp_path, lambda d: (d / "model.safetensors.index.json").write_text("{'weight_map':"))
    with pytest.raises(ValueError, match=r"model.safetensors.index.json is not valid JSON"):
        load_ours(directory)


@pytest.mark.parametrize("name", ["/etc/passwd", "../outside.safetensors", "sub/../../outside.safetensors"])
def test_index_cannot_reach_outside_the_model_directory(tmp_path, name):
    save_file({"lm_head.weight": torch.zeros(1024, 64)}, tmp_path / "outside.safetensors")  # a bait file
    directory = sharded(tmp_path, edit_index(lambda index: index["weight_map"].update({"lm_head.weight": name})))
    with pytest.raises(ValueError, match=rf"names the shard '{name}', which is outside the model directory"):
        load_ours(directory)


def test_tensor_in_two_shards_is_refused(tmp_path):
    def duplicate(directory):
        first, second = sorted(directory.glob("model-*.safetensors"))[:2]
        other = load_file(second)
        other.update(list(load_file(first).items())[:1])  # a tensor of the first shard, again in the second
        save_file(other, second)
    directory = sharded(tmp_path, duplicate)
    with pytest.raises(ValueError, match=r"tensor \S+ is stored twice, in \S+model-00001-of-00003.safetensors "
                                         r"and in \S+model-00002-of-00003.safetensors; a checkpoint holds each"):
        load_ours(directory)


def test_mixed_dtypes_are_refused_unless_a_dtype_is_given(tmp_path):
    def one_fp16_tensor(raw):
        state = load_file(TINY / "model.safetensors")
        state["model.visual.patch_embed.proj.weight"] = state["model.visual.patch_embed.proj.weight"].half()
        save_file(state, tmp_path / "model.safetensors")
        return (tmp_path / "model.safetensors").read_bytes()
    directory = single(tmp_path, one_fp16_tensor)
    with pytest.raises(ValueError, match=r"mixes dtypes \(\{'F16': 1, 'F32': 55\} tensors\); pass dtype=..."):
        load_ours(directory)
    model = load_ours(directory, dtype=torch.float32)
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    expected = load_file(TINY / "model.safetensors")["model.visual.patch_embed.proj.weight"].half().float()
    assert torch.equal(model.model.visual.patch_embed.proj.weight, expected)


def test_integer_tensors_are_refused(tmp_path):
    def int_tensor(raw):
        state = load_file(TINY / "model.safetensors")
        state["lm_head.weight"] = state["lm_head.weight"].to(torch.int32)
        save_file(state, tmp_path / "model.safetensors")
        return (tmp_path / "model.safetensors").read_bytes()
    directory = single(tmp_path, int_tensor)
    for dtype in (None, torch.float32):
        with pytest.raises(ValueError, match=r"stores non-floating tensors \(\{'F32': 55, 'I32': 1\}\)"):
            load_ours(directory, dtype=dtype)


# ---- config.json
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


# ---- tokenizer.json and preprocessor_config.json
def test_invalid_tokenizer_json(tmp_path):
    (tmp_path / "tokenizer.json").write_text('{"model": 3}')
    with pytest.raises(ValueError, match=r"tokenizer.json is not a valid tokenizer file .*expected the "
                                         r"tokenizer.json of a GLM-4.1V checkpoint"):
        Glm4vTokenizer.from_pretrained(tmp_path)
    shutil.copy(REPO / "data" / "tokenizer" / "tokenizer.json", tmp_path)
    (tmp_path / "tokenizer_config.json").write_text("[]")
    with pytest.raises(ValueError, match=r"tokenizer_config.json holds a JSON list"):
        Glm4vTokenizer.from_pretrained(tmp_path)


@pytest.mark.parametrize("text, message", [
    ("{", r"preprocessor_config.json is not valid JSON"),
    ("[]", r"preprocessor_config.json holds a JSON list"),
    ('{"size": 5}', r"preprocessor_config.json has 'size': 5; expected \{'shortest_edge': min_pixels"),
    ('{"patch_size": "14"}', r"patch_size must be an int, got str '14'"),
    ('{"size": {"shortest_edge": 0}}', r"min_pixels must be >= 1, got 0"),
])
def test_invalid_preprocessor_config(tmp_path, text, message):
    (tmp_path / "preprocessor_config.json").write_text(text)
    with pytest.raises((ValueError, TypeError), match=message):
        Glm4vImageProcessor.from_pretrained(tmp_path)
