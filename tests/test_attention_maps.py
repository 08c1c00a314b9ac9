"""Recomputed attention probabilities are the ones SDPA used: probs @ v gives each module's output."""

import random

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from einops import rearrange  # noqa: E402

from minglm4v.study.attention_maps import (  # noqa: E402
    attention_probs,
    block_attention,
    image_token_map,
    patch_map,
    record_attention,
)
from minglm4v.study.shapes import random_scene  # noqa: E402
from minglm4v.study.visualize import show_attention_overlays  # noqa: E402


def _prompt(processor, seeds, question="What color is the circle?"):
    content = [{"type": "image", "image": random_scene(random.Random(s)).image()} for s in seeds]
    return processor(messages=[{"role": "user", "content": content + [{"type": "text", "text": question}]}])


def test_probs_times_v_is_sdpa_with_gqa_and_masks():
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 4, 7, 8), torch.randn(2, 2, 7, 8), torch.randn(2, 2, 7, 8)
    allowed = torch.ones(7, 7).tril().bool() & torch.tensor([[0, 0, 1, 1, 1, 1, 1], [1] * 7]).bool()[:, None, None]
    mask = torch.zeros(2, 1, 7, 7).masked_fill(~allowed, torch.finfo(torch.float32).min)
    for m in (None, mask):
        probs = attention_probs(q, k, m)
        expected = F.scaled_dot_product_attention(q, k, v, attn_mask=m, enable_gqa=True)
        torch.testing.assert_close(probs @ v.repeat_interleave(2, dim=1), expected, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(probs.sum(-1), torch.ones(2, 4, 7))
    # masked keys get no weight (padding queries, which see no key, get a uniform row as in SDPA)
    blocked = ~allowed & allowed.any(-1, keepdim=True)
    assert bool((attention_probs(q, k, mask)[blocked.expand(2, 4, 7, 7)] == 0).all())


@torch.no_grad()
def test_recorded_maps_reproduce_every_attention_output(micro):
    model, processor = micro
    prompt = _prompt(processor, seeds=(3, 8))  # two pictures: block-diagonal ViT attention
    prompt["attention_mask"][0, 0] = 0  # a padded first token: the decoder's explicit-mask path
    seen = {}
    modules = [b.attn for b in model.model.visual.blocks] + [la.self_attn for la in model.model.language_model.layers]
    hooks = [m.register_forward_hook(lambda mod, args, out: seen.update({mod: (args, out)})) for m in modules]
    with record_attention(model) as maps:
        model(**prompt)
    for h in hooks:
        h.remove()
    lens = [h * w for _, h, w in prompt["image_grid_thw"].tolist()]
    for block, probs in zip(model.model.visual.blocks, maps.vision):
        (x, cos, sin, _), out = seen[block.attn]
        _, _, v = block.attn.project(x, cos, sin)
        mixed = rearrange(probs @ rearrange(v, "n h d -> h n d"), "h n d -> n (h d)")
        torch.testing.assert_close(block.attn.proj(mixed), out, rtol=1e-5, atol=1e-5)
        assert bool((probs[:, :lens[0], lens[0]:] == 0).all()) and bool((probs[:, lens[0]:, :lens[0]] == 0).all())
    for layer, probs in zip(model.model.language_model.layers, maps.text):
        attn = layer.self_attn
        (x, cos, sin, mask, _), out = seen[attn]
        assert mask is not None
        _, _, v = attn.project(x, cos, sin)
        mixed = rearrange(probs @ v.repeat_interleave(attn.heads // attn.kv_heads, dim=1), "b h l d -> b l (h d)")
        torch.testing.assert_close(attn.o_proj(mixed), out, rtol=1e-5, atol=1e-5)
        assert bool((probs[0, :, 1:, 0] == 0).all())  # nobody attends to the padded token
    # hooks are gone after the with: a second forward leaves the maps alone
    before = maps.text[0].clone()
    model(**_prompt(processor, seeds=(1,)))
    assert torch.equal(maps.text[0], before)


def test_a_cached_forward_is_refused(micro):
    model, processor = micro
    with record_attention(model), pytest.raises(ValueError, match="without a cache"):
        model.generate(**_prompt(processor, seeds=(3,)), max_new_tokens=2)


def test_patch_map_lays_windows_out_like_the_picture():
    grid = torch.tensor([[1, 4, 6]])
    laid = patch_map(torch.arange(24), grid)
    assert laid[:2, :2].tolist() == [[0, 1], [2, 3]]  # window 0: four consecutive rows
    assert laid[:2, 2:4].tolist() == [[4, 5], [6, 7]]  # window 1, right of it
    assert laid[2:, :2].tolist() == [[12, 13], [14, 15]]  # window 3 starts the second window row
    with pytest.raises(ValueError, match=r"one number per patch, shape \(24,\)"):
        patch_map(torch.arange(23), grid)
    with pytest.raises(ValueError, match=r"one image's \[1, h, w\]"):
        patch_map(torch.arange(24), torch.tensor([[2, 4, 6]]))


def test_image_token_map_keeps_image_tokens_in_raster_order():
    ids = torch.tensor([5, 9, 9, 9, 9, 9, 9, 7])  # 6 image tokens = a 4x6 patch grid merged 2x2
    row = torch.arange(8.0)
    assert image_token_map(row, ids, 9, torch.tensor([1, 4, 6])).tolist() == [[1, 2, 3], [4, 5, 6]]
    with pytest.raises(ValueError, match="6 <|image|> tokens"):
        image_token_map(row, ids, 9, torch.tensor([1, 4, 4]))


@torch.no_grad()
def test_block_attention_removes_one_edge_in_one_layer_and_head(micro):
    model, processor = micro
    prompt = _prompt(processor, seeds=(3,))
    query = prompt["input_ids"].shape[1] - 1
    key = query - 4
    with record_attention(model) as plain:
        base = model(**prompt).logits
    with block_attention(model, 2, query, key, heads=[1]), record_attention(model) as cut:
        logits = model(**prompt).logits
    before, after = plain.text[2][0, 1, query], cut.text[2][0, 1, query]
    assert float(before[key]) > 0.001 and float(after[key]) == 0.0
    # the rest of that row is renormalised: softmax without the key
    torch.testing.assert_close(after, before.index_fill(0, torch.tensor([key]), 0.0) / (1 - before[key]))
    torch.testing.assert_close(cut.text[2][0, [0, 2, 3]], plain.text[2][0, [0, 2, 3]])  # other heads
    for layer in (0, 1):  # earlier layers see nothing of it
        torch.testing.assert_close(cut.text[layer], plain.text[layer])
    torch.testing.assert_close(logits[:, :query], base[:, :query])  # causal: only the query moves on
    assert not torch.allclose(logits[:, query], base[:, query])
    torch.testing.assert_close(model(**prompt).logits, base)  # the hook is gone after the with
    with pytest.raises(ValueError, match=r"0 <= key <= query; got key 5, query 4"):
        with block_attention(model, 0, 4, 5):
            pass
    with pytest.raises(ValueError, match="without a cache or padding"):
        with block_attention(model, 0, 4, 3):
            model.generate(**prompt, max_new_tokens=2)


def test_overlays():
    fig = show_attention_overlays(torch.zeros(56, 84, 3, dtype=torch.uint8).numpy(), torch.rand(5, 4, 6),
                                  [f"m{i}" for i in range(5)], marker=(10, 20), columns=4)
    panels = [ax for ax in fig.axes if ax.get_title().startswith("m")]
    assert [ax.get_title() for ax in panels] == ["m0", "m1", "m2", "m3", "m4"]
    assert panels[0].images[1].get_extent() == [0, 84, 56, 0]  # the map covers the whole picture
    assert fig.axes[-1].get_ylabel() == "attention weight"  # the colour bar
    fig = show_attention_overlays(torch.zeros(56, 84, 3, dtype=torch.uint8).numpy(), torch.full((1, 4, 6), 9.0),
                                  vmax=8, label="times uniform")
    assert fig.axes[0].images[1].get_clim() == (0, 8) and fig.axes[-1].get_ylabel() == "times uniform"
    with pytest.raises(ValueError, match=r"\(gh, gw\) or \(n, gh, gw\)"):
        show_attention_overlays(torch.zeros(8, 8, 3).numpy(), torch.rand(2, 2, 3, 3))
    plt.close("all")
