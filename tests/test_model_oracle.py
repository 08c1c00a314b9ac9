"""The whole model against transformers (the oracle), fp32: live on the fixture checkpoint and against
the outputs stored by scripts/make_fixtures.py. Also the full-size model's parameters, on meta."""

import importlib.util

import pytest
import torch
from helpers import (
    CASE_NAMES,
    CASES,
    REPO,
    TINY,
    TINY_BF16,
    VISION_CASES,
    hf_config,
    hf_vision_features,
    model_inputs,
)
from safetensors.torch import load_file
from torch.testing import assert_close

from minglm4v import Glm4vConfig, Glm4vForConditionalGeneration

TOL = dict(rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", CASE_NAMES)
def test_logits_and_loss(name, oracle_cases, ours_tiny, hf_tiny):
    case = oracle_cases[name]
    inputs = model_inputs(case)
    with torch.no_grad():
        got = ours_tiny(**inputs, labels=case["labels"])
        want = hf_tiny(**inputs, labels=case["labels"])
    real = case["attention_mask"].bool()  # padded slots hold no prediction; the two fill them differently
    assert_close(got.logits[real], want.logits[real], **TOL)
    assert_close(got.logits[real], case["logits"][real], **TOL)
    assert_close(got.loss, want.loss, **TOL)
    assert_close(got.loss, case["loss"], **TOL)
    assert torch.equal(got.rope_deltas, case["rope_deltas"])


@pytest.mark.parametrize("name", VISION_CASES)
def test_vision_features(name, oracle_cases, ours_tiny, hf_tiny):
    """The ViT output before post_layernorm, and the merged features (one row per <|image|> slot)."""
    case = oracle_cases[name]
    inputs = model_inputs(case)
    kind = "image" if "pixel_values" in inputs else "video"
    pixels, grid = (inputs["pixel_values"], inputs["image_grid_thw"]) if kind == "image" else \
        (inputs["pixel_values_videos"], inputs["video_grid_thw"])
    with torch.no_grad():
        vit = ours_tiny.model.visual.vit(pixels, grid)
        features_of = ours_tiny.get_image_features if kind == "image" else ours_tiny.get_video_features
        merged = features_of(pixels, grid)
    hf_vit, hf_merged = hf_vision_features(hf_tiny, inputs)
    assert vit.abs().mean() > 0.5 and merged.abs().mean() > 0.1  # randomised weights: far from ~1e-3
    assert_close(vit, hf_vit, **TOL)
    assert_close(vit, case["vision_features"], **TOL)
    assert_close(merged, hf_merged, **TOL)
    assert_close(merged, case["merged_features"], **TOL)


def test_text_batch_with_padding(ours_tiny, hf_tiny):
    """Without grids transformers' forward uses positions arange(L) for every row, ignoring left padding;
    minglm4v restarts each row at 0 after its pads. RoPE only sees position differences, so the real
    tokens' logits agree."""
    pad = ours_tiny.config.text_config.pad_token_id
    ids = torch.tensor([[pad] * 4 + [11, 12, 13, 14, 15], [21, 22, 23, 24, 25, 26, 27, 28, 29]])
    mask = (ids != pad).long()
    with torch.no_grad():
        got, want = ours_tiny(ids, attention_mask=mask), hf_tiny(input_ids=ids, attention_mask=mask)
    real = mask.bool()
    assert_close(got.logits[real], want.logits[real], **TOL)
    with torch.no_grad():  # and the padded row alone gives the same logits
        alone = ours_tiny(ids[:1, 4:])
    assert_close(got.logits[0, 4:], alone.logits[0], **TOL)


def test_fixtures_are_reproducible(tmp_path):
    """scripts/make_fixtures.py really is the source of data/fixtures: rerun it and compare."""
    spec = importlib.util.spec_from_file_location("make_fixtures", REPO / "scripts" / "make_fixtures.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    script.main(tmp_path)
    stored = [TINY / "model.safetensors", CASES, *sorted(TINY_BF16.glob("*.safetensors"))]
    for path in stored:
        old, new = load_file(path), load_file(tmp_path / path.relative_to(CASES.parent))
        assert old.keys() == new.keys()
        for key in old:  # weights and inputs bit-equal; fp32 outputs equal up to the CPU's float rounding
            exact = path != CASES or old[key].dtype != torch.float32
            assert torch.equal(old[key], new[key]) if exact else torch.allclose(old[key], new[key], **TOL), key


# ---- the full-size model (glm4v-reference.md §1.5), built on the meta device: no memory, a few seconds
def test_full_size_parameters_match_transformers():
    from transformers import Glm4vForConditionalGeneration as HFModel
    config = Glm4vConfig.glm41v_9b()
    with torch.device("meta"):
        ours = Glm4vForConditionalGeneration(config)
        hf = HFModel(hf_config(config))
    shapes = {name: tuple(t.shape) for name, t in ours.state_dict().items()}
    assert len(shapes) == 704
    assert shapes == {name: tuple(t.shape) for name, t in hf.state_dict().items()}

    def count(prefix="", skip=()):
        return sum(p.numel() for name, p in ours.named_parameters()
                   if name.startswith(prefix) and not name.startswith(skip))

    assert count() == 10_292_777_472 == sum(p.numel() for p in hf.parameters())
    assert count("model.visual.", skip=("model.visual.downsample.", "model.visual.merger.")) == 682_246_656
    assert count("model.visual.downsample.") == 25_169_920
    assert count("model.visual.merger.") == 185_081_856
    assert count("model.language_model.") == 8_779_522_048
    assert count("model.language_model.embed_tokens.") == count("lm_head.") == 620_756_992
    assert count("model.language_model.layers.0.") == 203_969_024
    assert count("model.visual.blocks.0.") == 28_314_624


def test_logits_to_keep_matches_transformers(oracle_cases, ours_tiny, hf_tiny):
    """Generation asks for the last position only; the slice must be the same as transformers' one."""
    inputs = model_inputs(oracle_cases["image"])
    with torch.no_grad():
        last = ours_tiny(**inputs, logits_to_keep=1).logits
        full = ours_tiny(**inputs).logits
        want = hf_tiny(**inputs, logits_to_keep=1).logits
    assert last.shape == (1, 1, full.shape[-1])
    assert_close(last, full[:, -1:], rtol=1e-6, atol=1e-6)  # one row through lm_head: another matmul kernel
    assert_close(last, want, **TOL)
    with pytest.raises(ValueError, match="labels need the logits of every position"):
        ours_tiny(**inputs, labels=oracle_cases["image"]["labels"], logits_to_keep=1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rms_norm_equals_transformers_bit_for_bit(dtype):
    """layers.rms_normalize writes the mean as a sum divided by a kept 0-dim tensor (and eps as one): the
    norm, its gradients and the weight's must still be transformers' Glm4vRMSNorm bit for bit, also when
    those tensors were first made under inference_mode (generate) and then saved for backward."""
    from transformers.models.glm4v.modeling_glm4v import Glm4vRMSNorm

    from minglm4v.model.layers import FP32, RMSNorm
    FP32.clear()
    gen = torch.Generator().manual_seed(0)
    for dim, eps in ((96, 1e-5), (1536, 1e-6)):
        ours, hf = RMSNorm(dim, eps).to(dtype), Glm4vRMSNorm(dim, eps).to(dtype)
        weight = torch.randn(dim, generator=gen).to(dtype)
        ours.weight.data.copy_(weight), hf.weight.data.copy_(weight)
        x = (torch.randn(2, 9, dim, generator=gen) * torch.rand(2, 9, 1, generator=gen) * 40).to(dtype)
        with torch.inference_mode():
            assert torch.equal(ours(x), hf(x))
        grad = torch.randn(2, 9, dim, generator=gen).to(dtype)
        results = []
        for norm in (ours, hf):
            leaf = x.clone().requires_grad_(True)
            y = norm(leaf)
            results.append((y, *torch.autograd.grad(y, (leaf, norm.weight), grad)))
        assert all(torch.equal(a, b) for a, b in zip(*results)) and results[0][1].abs().sum() > 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rotation_equals_transformers_bit_for_bit(dtype, ours_tiny, hf_tiny):
    """apply_mrope (a gather swaps the pairs) against transformers' apply_rotary_pos_emb (rotate_half_llm):
    the same bits in fp32 and bf16, on random q, k and three different position streams."""
    from transformers.models.glm4v.modeling_glm4v import apply_rotary_pos_emb

    from minglm4v.model.rope import apply_mrope
    text, gen = ours_tiny.config.text_config, torch.Generator().manual_seed(0)
    q = (torch.randn(2, text.num_attention_heads, 7, text.head_dim, generator=gen) * 30).to(dtype)
    k = (torch.randn(2, text.num_key_value_heads, 7, text.head_dim, generator=gen) * 30).to(dtype)
    position_ids = torch.randint(0, 500, (3, 2, 7), generator=gen)
    cos, sin = ours_tiny.language_model.rotary(position_ids, dtype)
    hf_cos, hf_sin = hf_tiny.model.language_model.rotary_emb(q, position_ids)
    want_q, want_k = apply_rotary_pos_emb(q, k, hf_cos, hf_sin)
    assert torch.equal(apply_mrope(q, cos, sin), want_q) and torch.equal(apply_mrope(k, cos, sin), want_k)


def test_rotation_made_in_inference_mode_still_trains(ours_tiny):
    """The pair-swapping indices are made once and kept (rope.pair_swap); made first under inference_mode
    (generate), they must still work where autograd saves them for backward (training), with the gradient
    of the rotation written with a flip."""
    from einops import rearrange

    from minglm4v.model.rope import PAIR_SWAPS, apply_mrope
    PAIR_SWAPS.clear()
    text = ours_tiny.config.text_config
    cos, sin = ours_tiny.language_model.rotary(torch.arange(5).expand(3, 1, 5), torch.float32)
    x = torch.randn(1, 2, 5, text.head_dim, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        apply_mrope(x, cos, sin)
    grads = []
    for rotate in (apply_mrope, lambda t, c, s: t * c + rearrange(
            rearrange(t, "... (j two) -> ... j two", two=2).flip(-1), "... j two -> ... (j two)") * s):
        leaf = x.clone().requires_grad_(True)
        (rotate(leaf, cos, sin) ** 3).sum().backward()
        grads.append(leaf.grad)
    assert torch.equal(grads[0], grads[1]) and grads[0].abs().sum() > 0
