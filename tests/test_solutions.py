"""The exercise solutions in notebooks/solutions/ give the right values, checked against the package."""

import math
import sys

import numpy as np
import pytest
import torch
from helpers import REPO, TINY, TINY_BF16
from PIL import Image

from minglm4v import Glm4vConfig, Glm4vForConditionalGeneration
from minglm4v.model.rope import get_rope_index, mrope_cos_sin, vision_cos_sin, vision_positions
from minglm4v.processing.chat_template import parse_thinking
from minglm4v.processing.image import Glm4vImageProcessor, smart_resize, unpatchify
from minglm4v.processing.processor import Glm4vProcessor
from minglm4v.processing.tokenizer import Glm4vTokenizer
from minglm4v.processing.video import Glm4vVideoProcessor, sample_frame_indices
from minglm4v.study.fake_inputs import create_fake_image_inputs, create_multimodal_inputs

sys.path.insert(0, str(REPO / "notebooks"))
from solutions import (  # noqa: E402
    ex00_tour,
    ex01_patch_embedding,
    ex02_vision_rope,
    ex03_vision_tower,
    ex04_decoder,
    ex05_rope_index,
    ex06_checkpoints,
    ex07_image_processing,
    ex08_prompts,
    ex09_video,
    ex10_generation,
    ex11_sampling,
    ex12_micro_model,
    ex16_performance,
)

TINY_CFG = Glm4vConfig.tiny()


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return Glm4vForConditionalGeneration(TINY_CFG).eval()


@pytest.fixture(scope="module")
def fixture_model():
    return Glm4vForConditionalGeneration.from_pretrained(TINY)


@pytest.fixture(scope="module")
def tokenizer():
    return Glm4vTokenizer.from_pretrained(REPO / "data" / "tokenizer")


def test_00_parts_add_up_to_the_total(tiny):
    # the tiny config: the 9B one takes seconds to build even on the meta device (notebook 00 does it)
    counts = ex00_tour.count_by_part(TINY_CFG)
    parts = {"vision": tiny.model.visual, "decoder": tiny.model.language_model, "lm_head": tiny.lm_head}
    for name, part in parts.items():
        assert counts[name] == sum(p.numel() for p in part.parameters())
    assert counts["vision"] + counts["decoder"] + counts["lm_head"] == counts["total"] == 303_072


@torch.no_grad()
def test_00_loss_by_hand_equals_the_models_loss(tiny):
    mm = create_multimodal_inputs(TINY_CFG, num_images=2, text_length=6, height=56, width=56)
    ids = mm["input_ids"]
    for scored in (torch.arange(ids.shape[1]) >= ids.shape[1] - 2, ex00_tour.text_tokens(ids, TINY_CFG)):
        out = tiny(**mm, labels=ids.masked_fill(~scored, -100))
        torch.testing.assert_close(ex00_tour.loss_by_hand(out.logits, ids, scored), out.loss)
    assert ex00_tour.text_tokens(ids, TINY_CFG).sum() == 6


def test_00_one_image_prompt_rope_delta(tiny):
    ids, delta = ex00_tour.one_image_prompt(TINY_CFG, 224, 168)
    _, deltas = tiny.get_rope_index(ids, image_grid_thw=torch.tensor([[1, 16, 12]]))
    assert delta == deltas.item() == 8 - 48


def test_01_conv_as_linear_and_identical_frames():
    from minglm4v.model.patch_embed import PatchEmbed

    torch.manual_seed(0)
    conv = PatchEmbed(TINY_CFG.vision_config).proj
    pixel_values = create_fake_image_inputs(TINY_CFG, height=56, width=56)["pixel_values"]
    expected = conv(pixel_values.view(-1, 3, 2, 14, 14)).flatten(1)
    torch.testing.assert_close(ex01_patch_embedding.conv_as_linear(conv, pixel_values), expected)
    still = Glm4vImageProcessor()(Image.open(REPO / "data" / "images" / "shapes.png")).pixel_values
    assert ex01_patch_embedding.frames_equal(still).all()
    assert not ex01_patch_embedding.frames_equal(pixel_values).any()  # random frames differ


def test_02_rope_1d_relative_property_and_column_dims():
    torch.manual_seed(0)
    q, k = torch.randn(2, 16)
    scores = []
    for p in (0, 17, 1000):
        rq, rk = ex02_vision_rope.rope_1d_all(torch.stack([q, k]), torch.tensor([p, p + 5]))
        scores.append((rq @ rk).item())
        torch.testing.assert_close(rq.norm(), q.norm())
    assert max(scores) - min(scores) < 1e-4
    # one column to the right changes the angles exactly on the column dims
    _, sin = vision_cos_sin(torch.tensor([[3, 5], [3, 6]]), 128, 10000.0)
    assert (sin[0] != sin[1]).nonzero()[:, 0].tolist() == ex02_vision_rope.column_dims(128)
    assert ex02_vision_rope.column_dims(16) == [4, 5, 6, 7, 12, 13, 14, 15]
    assert math.cos(ex02_vision_rope.fastest_period()) == pytest.approx(1.0)


@torch.no_grad()
def test_03_split_features_and_image_mask(fixture_model):
    a = create_fake_image_inputs(fixture_model.config, height=56, width=56, seed=1)
    b = create_fake_image_inputs(fixture_model.config, height=112, width=56, seed=2)
    grids = torch.cat([a["image_grid_thw"], b["image_grid_thw"]])
    both = fixture_model.get_image_features(torch.cat([a["pixel_values"], b["pixel_values"]]), grids)
    pieces = ex03_vision_tower.split_features(both, grids)
    for piece, alone in zip(pieces, (a, b)):
        torch.testing.assert_close(piece, fixture_model.get_image_features(alone["pixel_values"],
                                                                           alone["image_grid_thw"]))
    mask = ex03_vision_tower.image_mask(grids)
    torch.testing.assert_close(mask, torch.block_diag(torch.ones(16, 16), torch.ones(32, 32)).bool())


@torch.no_grad()
def test_04_kv_cache_size_and_rotated_dims(tiny):
    from minglm4v.generation.decoding import KVCache

    real = Glm4vConfig.glm41v_9b().text_config
    assert ex04_decoder.kv_cache_bytes_per_token(real, 2) == 40_960  # 40 layers x 2 kv heads x 128 x 2
    assert ex04_decoder.kv_cache_bytes_per_token(real, 2, kv_heads=real.num_attention_heads) == 655_360
    tc = TINY_CFG.text_config
    cache, ids = KVCache(tc.num_hidden_layers, 10), torch.arange(10)[None]
    tiny(ids, cache=cache)
    stored = sum(t.nbytes for t in cache.keys + cache.values)
    assert stored == 10 * ex04_decoder.kv_cache_bytes_per_token(tc, 4)
    streams = ex04_decoder.stream_of_dim(tc)
    assert len(streams) == tc.head_dim and streams[tc.rotary_dim:] == [None] * (tc.head_dim - tc.rotary_dim)
    pos = torch.arange(5).expand(3, 1, 5)
    moved = pos.clone()
    moved[1] += 7  # only the h stream
    _, sin_a = mrope_cos_sin(pos, tc.rotary_dim, tc.rope_theta, tc.mrope_section, torch.float32)
    _, sin_b = mrope_cos_sin(moved, tc.rotary_dim, tc.rope_theta, tc.mrope_section, torch.float32)
    changed = (sin_a != sin_b)[0, 0].any(0)
    assert changed.tolist() == [s == "h" for s in streams[:tc.rotary_dim]]


def test_05_image_rope_delta_and_block_positions():
    for h, w in [(4, 4), (8, 12), (16, 6), (2, 20)]:
        n = h * w // 4
        ids = torch.tensor([[5, 6, 7, 10] + [14] * n + [11, 8]])
        pos, delta = get_rope_index(ids, (ids == 14).long(), image_grid_thw=torch.tensor([[1, h, w]]))
        assert ex05_rope_index.image_rope_delta(h, w) == delta.item()
        assert torch.equal(ex05_rope_index.image_block_positions(4, h, w), pos[:, 0, 4:4 + n])


def test_06_counts_from_the_header_and_bf16_error(fixture_model):
    parts = {"vision": fixture_model.model.visual, "lm_head": fixture_model.lm_head,
             "language_model": fixture_model.model.language_model}
    expected = {k: sum(p.numel() for p in m.parameters()) for k, m in parts.items()}
    assert ex06_checkpoints.count_by_component(TINY) == expected
    assert ex06_checkpoints.count_by_component(TINY_BF16) == expected  # sharded
    inputs = create_multimodal_inputs(fixture_model.config, text_length=8, height=56, width=56)
    err, scale = ex06_checkpoints.bf16_logit_error(fixture_model, inputs)
    assert 0 < err < 0.05 * scale


def test_07_tokens_rows_and_unpatchify():
    h, w = smart_resize(2, 1000, 700)
    assert ex07_image_processing.tokens_for(1000, 700) == h * w // 784 == 900
    rc = vision_positions(torch.tensor([[1, 6, 8]]), merge=2)
    for row, (r, c) in enumerate(rc.tolist()):
        assert ex07_image_processing.row_of(r, c, 8) == row
    out = Glm4vImageProcessor(max_pixels=100_000)(Image.open(REPO / "data" / "images" / "shapes.png"))
    mine = ex07_image_processing.unpatchify_one(out.pixel_values, out.image_grid_thw[0])
    assert torch.equal(mine, unpatchify(out.pixel_values, out.image_grid_thw)[0])


def test_08_image_tokens_template_and_boxes(tokenizer):
    processor = Glm4vProcessor(Glm4vImageProcessor(), tokenizer)
    rng = np.random.default_rng(0)
    for height, width in [(300, 400), (90, 500)]:
        image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        ids = processor(messages=[{"role": "user", "content": [{"type": "image", "image": image},
                                                               {"type": "text", "text": "Hi"}]}]).input_ids
        assert ex08_prompts.image_tokens(height, width) == (ids == tokenizer.image_token_id).sum()
    conversations = [
        [{"role": "user", "content": "Hi"}],
        [{"role": "system", "content": "Be brief."},
         {"role": "user", "content": [{"type": "image", "image": None}, {"type": "text", "text": "What?"}]},
         {"role": "assistant", "content": "<answer>A cat</answer>"},
         {"role": "user", "content": "And?"}]]
    for messages in conversations:
        assert ex08_prompts.render(messages) == tokenizer.apply_chat_template(messages)
    answer = "a <|begin_of_box|>[100,200,500,1000]<|end_of_box|>"
    assert ex08_prompts.boxes_to_pixels(answer, 512, 600) == [(51.2, 120.0, 256.0, 600.0)]


@torch.no_grad()
def test_09_sampling_tokens_and_features_per_group(fixture_model):
    for n, fps in [(300, 30), (12, 4), (7, 2), (25, 10)]:
        assert ex09_video.sample_by_hand(n, fps, n / fps) == sample_frame_indices(n, fps, duration=n / fps)
    video = np.zeros((20, 224, 280, 3), np.uint8)
    processed = Glm4vVideoProcessor()(video, fps=4, duration=5.0)
    assert ex09_video.video_tokens(20, 224, 280, 4) == processed.video_grid_thw.prod().item() // 4
    clips = [np.random.default_rng(i).integers(0, 256, (n, 56, 84, 3), dtype=np.uint8) for i, n in ((0, 4), (1, 6))]
    videos = Glm4vVideoProcessor()(clips, fps=2)  # two videos: grids [2, 4, 6] and [3, 4, 6]
    pixels, grid = videos.pixel_values_videos, videos.video_grid_thw
    torch.testing.assert_close(ex09_video.features_per_group(fixture_model, pixels, grid),
                               fixture_model.get_video_features(pixels, grid))


@torch.no_grad()
def test_10_greedy_and_decode_position(fixture_model, tokenizer):
    processor = Glm4vProcessor(Glm4vImageProcessor(), tokenizer)
    inputs = processor(messages=[{"role": "user", "content": [
        {"type": "image", "image": Image.open(REPO / "data" / "images" / "shapes.png")},
        {"type": "text", "text": "What shape is it?"}]}])
    assert torch.equal(ex10_generation.greedy(fixture_model, inputs, 8),
                       fixture_model.generate(**inputs, max_new_tokens=8))
    k, L = 3, inputs["input_ids"].shape[1]
    longer = torch.cat([inputs["input_ids"], torch.full((1, k + 1), 7)], dim=1)
    types = torch.nn.functional.pad(inputs["mm_token_type_ids"], (0, k + 1))
    pos, _ = fixture_model.get_rope_index(longer, types, inputs["image_grid_thw"])
    assert pos[:, 0, L + k].tolist() == [ex10_generation.decode_position(fixture_model, inputs, k)] * 3


def test_11_min_p_and_entropy():
    scores = torch.tensor([2.0, 1.5, 1.0, 0.5, 0.2, -0.5, -1.0, -2.0])
    kept = ex11_sampling.min_p_filter(scores, 0.3)
    assert kept.isfinite().tolist() == [True] * 3 + [False] * 5  # exp(s - 2) >= 0.3 <=> s >= 0.80
    assert torch.equal(kept[:3], scores[:3])
    h = [ex11_sampling.entropy(scores, t).item() for t in (0.5, 1.0, 2.0, 100.0)]
    assert h == sorted(h) and h[-1] < math.log(8)
    assert ex11_sampling.entropy(torch.zeros(1024)).item() == pytest.approx(math.log(1024))


def test_12_counting_streamer_and_split_reply(fixture_model, tokenizer):
    inputs = Glm4vProcessor(Glm4vImageProcessor(), tokenizer)(messages=[{"role": "user", "content": "Hi"}])
    streamer = ex12_micro_model.CountingStreamer()
    out = fixture_model.generate(**inputs, max_new_tokens=6, streamer=streamer)
    assert streamer.ended and streamer.tokens == out.shape[1] - inputs["input_ids"].shape[1] == 6
    for reply in ["<think>A</think><answer>B</answer>", "<think>A</think>B", "<think>A</think><answer>B",
                  "<think>A", "A</think><answer>B</answer>", "<answer>B</answer>", "B",
                  "x <think> I see </think> <answer> a cat </answer> y"]:
        assert ex12_micro_model.split_reply(reply) == parse_thinking(reply)


def test_16_longest_context_and_decode_ceiling():
    real = Glm4vConfig.glm41v_9b()
    per_token = 2 * 40 * 2 * 128 * 2  # (k, v) x 40 layers x 2 kv heads x 128 dims x 2 bytes = 40 KiB
    assert ex16_performance.longest_context(real.text_config, 1000 * per_token) == 1000
    assert ex16_performance.longest_context(real.text_config, 1000 * per_token - 1) == 999
    with torch.device("meta"):
        big = Glm4vForConditionalGeneration(real)
    ceiling = ex16_performance.decode_ceiling(big, 4.8e12)
    assert math.isclose(ceiling, 4.8e12 / (2 * 10_292_777_472))  # the reference's parameter count

