"""Checkpoints in the Hugging Face layout, both directions: what transformers saves minglm4v loads and
what minglm4v saves transformers loads - single file and sharded, fp32 and bf16."""

import json

import pytest
import torch
from helpers import TINY, TINY_BF16, load_hf, load_ours, model_inputs
from safetensors.torch import load_file
from torch.testing import assert_close


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

