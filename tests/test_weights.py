"""Checkpoints in the Hugging Face layout, both directions: what transformers saves minglm4v loads and
what minglm4v saves transformers loads - single file and sharded, fp32 and bf16."""

import json
import shutil
import struct
import tempfile
from pathlib import Path

import pytest
import torch
from helpers import TINY, TINY_BF16, classify, load_hf, load_ours, model_inputs
from hypothesis import given
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file
from torch.testing import assert_close

from minglm4v import Glm4vForConditionalGeneration


def logits(model, case):
    with torch.no_grad():
        return model(**model_inputs(case)).logits


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert sa[key].dtype == sb[key].dtype and torch.equal(sa[key], sb[key]), key


def test_loads_the_transformers_file_exactly(ours_tiny):
    stored = load_file(TINY / "model.safetensors")
    state = ours_tiny.state_dict()
    assert state.keys() == stored.keys() and len(state) == 56
    assert all(torch.equal(state[k], stored[k]) for k in stored)
    assert {p.dtype for p in ours_tiny.parameters()} == {torch.float32} and ours_tiny.config.dtype == "float32"


def test_our_save_loads_in_transformers(tmp_path, ours_tiny, hf_tiny, oracle_cases):
    ours_tiny.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    hf = load_hf(tmp_path)
    assert_same_weights(hf, hf_tiny)
    for name in ("two_images", "video"):
        assert torch.equal(logits(hf, oracle_cases[name]), logits(hf_tiny, oracle_cases[name]))


def test_transformers_save_loads_in_ours(tmp_path, ours_tiny, hf_tiny, oracle_cases):
    hf_tiny.save_pretrained(tmp_path)
    ours = load_ours(tmp_path)
    assert_same_weights(ours, ours_tiny)
    assert torch.equal(logits(ours, oracle_cases["two_images"]), logits(ours_tiny, oracle_cases["two_images"]))


def test_sharded_save_both_ways(tmp_path, ours_tiny, hf_tiny, oracle_cases):
    ours_tiny.save_pretrained(tmp_path, max_shard_size="200KB")
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    shards = sorted(tmp_path.glob("model-*-of-*.safetensors"))
    assert len(shards) > 2 and not (tmp_path / "model.safetensors").exists()
    assert set(index["weight_map"].values()) == {p.name for p in shards}
    assert index["weight_map"].keys() == ours_tiny.state_dict().keys()
    sizes = {p.name: sum(t.numel() * t.element_size() for t in load_file(p).values()) for p in shards}
    assert index["metadata"]["total_size"] == sum(sizes.values()) == 4 * index["metadata"]["total_parameters"]
    for p in shards:  # a shard exceeds the limit only when one tensor alone does (the 262 KB embedding)
        assert sizes[p.name] <= 200_000 or len(load_file(p)) == 1
    hf = load_hf(tmp_path)
    assert_same_weights(hf, hf_tiny)
    assert torch.equal(logits(hf, oracle_cases["image"]), logits(hf_tiny, oracle_cases["image"]))
    assert_same_weights(load_ours(tmp_path), ours_tiny)


def test_auto_dtype_means_the_stored_dtype():
    assert {p.dtype for p in load_ours(TINY_BF16, dtype="auto").parameters()} == {torch.bfloat16}
    with pytest.raises(ValueError, match="unknown dtype 'float33'"):
        load_ours(TINY_BF16, dtype="float33")


def test_bf16_sharded_checkpoint_from_transformers(oracle_cases):
    """TINY_BF16 was written by transformers with max_shard_size="300KB". Like transformers 5, we load
    the stored dtype by default; with the vision fix the two models then agree bit for bit in bf16."""
    ours, hf = load_ours(TINY_BF16), load_hf(TINY_BF16)
    assert len(list(TINY_BF16.glob("model-*.safetensors"))) > 1
    assert {p.dtype for p in ours.parameters()} == {torch.bfloat16} and ours.config.dtype == "bfloat16"
    assert_same_weights(ours, hf)
    for name in ("text", "image", "video", "batch"):
        case = oracle_cases[name]
        real = case["attention_mask"].bool()
        got, want = logits(ours, case), logits(hf, case)
        assert got.dtype == torch.bfloat16 and torch.equal(got[real], want[real]), name


@pytest.mark.parametrize("dtype", [torch.float32, "float32"])
def test_bf16_checkpoint_loads_as_fp32_on_request(dtype, oracle_cases):
    ours, hf = load_ours(TINY_BF16, dtype=dtype), load_hf(TINY_BF16, dtype=torch.float32)
    assert {p.dtype for p in ours.parameters()} == {torch.float32} and ours.config.dtype == "float32"
    assert_same_weights(ours, hf)
    stored = load_file(next(TINY_BF16.glob("model-00001-*.safetensors")))
    assert all(torch.equal(ours.state_dict()[k], t.float()) for k, t in stored.items())
    case = oracle_cases["two_images"]
    assert_close(logits(ours, case), logits(hf, case), rtol=1e-5, atol=1e-5)


def test_our_bf16_save_is_bf16_for_transformers(tmp_path):
    ours = load_ours(TINY_BF16)
    ours.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["dtype"] == "bfloat16"
    hf = load_hf(tmp_path)  # no dtype argument: transformers 5 follows the stored dtype
    assert next(hf.parameters()).dtype == torch.bfloat16
    assert_same_weights(hf, ours)


def test_conversion_chunk_by_chunk_is_exact(monkeypatch):
    """Converting copies each tensor from the memory map in chunks, each into storage asking for huge
    pages: with chunks far smaller than the tensors (and not dividing them) and every tensor in such
    storage, the fp32 weights are still exactly the stored bf16 ones."""
    from minglm4v.model import weights
    monkeypatch.setattr(weights, "CHUNK", 1000)
    monkeypatch.setattr(weights, "HUGE_PAGE", 1)
    ours = load_ours(TINY_BF16, dtype=torch.float32)
    assert not any(p.untyped_storage().resizable() for p in ours.parameters())  # mapped, not torch.empty
    assert_same_weights(ours, load_ours(TINY_BF16).float())


# ---- ill-fitting and damaged checkpoints: errors that name the file
def edited_checkpoint(directory, edit):
    """A copy of the fixture checkpoint whose tensors went through `edit(state_dict)`."""
    directory.mkdir()
    shutil.copy(TINY / "config.json", directory)
    state = load_file(TINY / "model.safetensors")
    edit(state)
    save_file(state, directory / "model.safetensors")
    return directory


def test_checkpoint_missing_tensors(tmp_path):
    def drop(state):
        del state["lm_head.weight"], state["model.visual.post_layernorm.weight"]
    with pytest.raises(ValueError, match=r"does not fit its config.json:\n  missing tensors \(2\):\n    lm_head.weight"
                                         r"\n    model.visual.post_layernorm.weight"):
        load_ours(edited_checkpoint(tmp_path / "ckpt", drop))


def test_checkpoint_unexpected_tensors(tmp_path):
    def add(state):
        state["model.visual.extra.weight"] = torch.zeros(3)
    with pytest.raises(ValueError, match=r"unexpected tensors \(1\):\n    model.visual.extra.weight"):
        load_ours(edited_checkpoint(tmp_path / "ckpt", add))


def test_checkpoint_wrong_shape(tmp_path):
    def reshape(state):
        state["model.language_model.layers.1.self_attn.k_proj.weight"] = torch.zeros(64, 64)
    with pytest.raises(ValueError, match=r"wrong shapes \(1\):\n    model.language_model.layers.1.self_attn.k_proj"
                                         r".weight: expected \(32, 64\), found \(64, 64\)"):
        load_ours(edited_checkpoint(tmp_path / "ckpt", reshape))


def test_pickle_checkpoint_refused_with_conversion_hint(tmp_path):
    shutil.copy(TINY / "config.json", tmp_path)
    torch.save(load_file(TINY / "model.safetensors"), tmp_path / "pytorch_model.bin")
    with pytest.raises(ValueError, match=r"holds a pickled PyTorch checkpoint \(.bin/.pt\); minglm4v reads only "
                                         r"safetensors.*from_pretrained\(dir\).save_pretrained\(new_dir\)"):
        load_ours(tmp_path)


def test_no_weights_or_no_directory(tmp_path):
    shutil.copy(TINY / "config.json", tmp_path)
    with pytest.raises(FileNotFoundError, match="no model.safetensors or model.safetensors.index.json in"):
        load_ours(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist. minglm4v does not download"):
        load_ours(tmp_path / "nowhere")


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


# ---- property-based: corrupted files and index paths
RAW = (TINY / "model.safetensors").read_bytes()
HEADER_END = 8 + struct.unpack("<Q", RAW[:8])[0]


corruptions = st.one_of(  # (what, where, value): small to print, unlike the damaged file itself
    st.tuples(st.just("truncate"), st.integers(0, len(RAW) - 1), st.just(0)),
    st.tuples(st.just("length"), st.just(0), st.integers(0, 2**64 - 1)),
    st.tuples(st.just("junk tail"), st.just(0), st.integers(1, 2**64 - 1)),
    st.tuples(st.sampled_from(["header byte"]), st.integers(8, HEADER_END - 1), st.integers(0, 255)),
    st.tuples(st.sampled_from(["data byte"]), st.integers(HEADER_END, len(RAW) - 1), st.integers(0, 255)))


def corrupt(what, where, value) -> bytes:
    if what == "truncate":
        return RAW[:where]
    if what == "length":
        return struct.pack("<Q", value) + RAW[8:]
    if what == "junk tail":
        return RAW + struct.pack("<Q", value)
    return RAW[:where] + bytes([value]) + RAW[where + 1:]


@given(corruption=corruptions)
def test_fuzz_corrupted_safetensors(corruption):
    with tempfile.TemporaryDirectory() as directory:
        shutil.copy(TINY / "config.json", directory)
        (Path(directory) / "model.safetensors").write_bytes(corrupt(*corruption))
        # a changed data byte may load (safetensors has no checksum); a changed header must be noticed
        classify("checkpoints", lambda: Glm4vForConditionalGeneration.from_pretrained(directory),
                 lambda model: None, ("model.safetensors", "does not fit its config.json"))


shard_names = st.sampled_from(["../outside.safetensors", "/tmp/../outside.safetensors", "", ".", "sub/../../x",
                               "model-00001-of-00003.safetensors", "missing.safetensors", 3])


@given(name=shard_names, key=st.sampled_from(["lm_head.weight", "model.visual.post_layernorm.weight"]))
def test_fuzz_index_paths(name, key):
    with tempfile.TemporaryDirectory() as root:
        directory = Path(root) / "model"
        shutil.copytree(TINY_BF16, directory)
        shutil.copy(sorted(directory.glob("model-*.safetensors"))[-1], Path(root) / "outside.safetensors")  # bait
        index = json.loads((directory / "model.safetensors.index.json").read_text())
        index["weight_map"][key] = name
        (directory / "model.safetensors.index.json").write_text(json.dumps(index))

        def check(model):
            if isinstance(name, str) and (".." in name or name.startswith("/")):
                return f"read the shard {name!r} from outside the model directory"
        classify("checkpoints", lambda: Glm4vForConditionalGeneration.from_pretrained(directory), check,
                 ("model.safetensors.index.json", "weight_map", str(name), key))
