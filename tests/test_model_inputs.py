"""Glm4vForConditionalGeneration.forward (minglm4v/model/glm4v.py) and get_rope_index refuse bad inputs
with a clear TypeError/ValueError naming the argument and what was expected: prompts whose placeholders
do not fit the images, malformed pixels and grids, token ids, masks, labels and positions; never a
silently wrong result."""

import re

import pytest
import torch
from helpers import IDS, classify, finite
from hypothesis import given
from hypothesis import strategies as st


# ---- prompts, pixels and grids
def drop_first_slot(input_ids, image_token_id):
    ids = input_ids.clone()
    ids[ids == image_token_id] = torch.tensor([5] + [image_token_id] * (int((ids == image_token_id).sum()) - 1))
    return ids


def test_image_tokens_do_not_match_features(ours_tiny, image_inputs):
    ids = drop_first_slot(image_inputs["input_ids"], ours_tiny.config.image_token_id)
    with pytest.raises(ValueError, match="the prompt has 5 image tokens but the images give 6 features"):
        ours_tiny(ids, pixel_values=image_inputs["pixel_values"], image_grid_thw=image_inputs["image_grid_thw"])


def test_video_tokens_do_not_match_features(ours_tiny, video_inputs):
    ids = drop_first_slot(video_inputs["input_ids"], ours_tiny.config.image_token_id)
    with pytest.raises(ValueError, match="the prompt has 11 video tokens but the videos give 12 features"):
        ours_tiny(ids, pixel_values_videos=video_inputs["pixel_values_videos"],
                  video_grid_thw=video_inputs["video_grid_thw"])


def test_grid_does_not_match_pixel_rows(ours_tiny, image_inputs, video_inputs):
    with pytest.raises(ValueError, match=r"image_grid_thw \[\[1, 4, 8\]\] describes 32 patches .* but pixel_values "
                                         r"has 24 rows"):
        ours_tiny(image_inputs["input_ids"], pixel_values=image_inputs["pixel_values"],
                  image_grid_thw=torch.tensor([[1, 4, 8]]))
    with pytest.raises(ValueError, match=r"video_grid_thw \[\[1, 4, 6\]\] describes 24 patches"):
        ours_tiny(video_inputs["input_ids"], pixel_values_videos=video_inputs["pixel_values_videos"],
                  video_grid_thw=torch.tensor([[1, 4, 6]]))


def test_grid_not_divisible_by_merge_size(ours_tiny, image_inputs):
    with pytest.raises(ValueError, match=r"image_grid_thw \[\[1, 3, 8\]\] has an h or w not divisible by the "
                                         r"spatial merge size 2"):
        ours_tiny(image_inputs["input_ids"], pixel_values=image_inputs["pixel_values"],
                  image_grid_thw=torch.tensor([[1, 3, 8]]))


def test_grid_must_be_rows_of_three(ours_tiny, image_inputs):
    with pytest.raises(ValueError, match=r"image_grid_thw must be given with shape \(images, 3\).*got \(3,\)"):
        ours_tiny(image_inputs["input_ids"], pixel_values=image_inputs["pixel_values"],
                  image_grid_thw=torch.tensor([1, 4, 6]))
    with pytest.raises(ValueError, match="pixel_values and image_grid_thw go together"):
        ours_tiny(image_inputs["input_ids"], pixel_values=image_inputs["pixel_values"])


@pytest.mark.parametrize("shape", [(24, 1000), (24, 3 * 14 * 14), (1, 24, 1176)])
def test_pixel_values_wrong_shape(ours_tiny, image_inputs, shape):
    message = f"pixel_values must have shape (patches, 1176) = (N, C*T*P*P) with C=3, T=2, P=14; got {shape}"
    with pytest.raises(ValueError, match=re.escape(message)):
        ours_tiny(image_inputs["input_ids"], pixel_values=torch.zeros(shape),
                  image_grid_thw=image_inputs["image_grid_thw"])


def test_image_tokens_without_grid(ours_tiny, image_inputs):
    with pytest.raises(ValueError, match="more image tokens than the rows of image_grid_thw account for"):
        ours_tiny(image_inputs["input_ids"])


def test_more_grids_than_images(ours_tiny, image_inputs):
    with pytest.raises(ValueError, match="image_grid_thw has more rows than the prompt has images"):
        ours_tiny.get_rope_index(image_inputs["input_ids"], image_grid_thw=torch.tensor([[1, 4, 6], [1, 4, 4]]))


def test_image_run_shorter_than_its_grid(ours_tiny, image_inputs):
    with pytest.raises(ValueError, match="row 0: a run of 6 image tokens does not match the grids it consumes "
                                         r"\(8 tokens\); check the grid_thw rows"):
        ours_tiny.get_rope_index(image_inputs["input_ids"], image_grid_thw=torch.tensor([[1, 4, 8]]))


def test_token_types_that_disagree_with_the_ids(ours_tiny, image_inputs):
    ids = drop_first_slot(image_inputs["input_ids"], ours_tiny.config.image_token_id)
    with pytest.raises(ValueError, match="image tokens"):  # stale types still mark 6 slots, the ids hold 5
        ours_tiny(ids, pixel_values=image_inputs["pixel_values"], image_grid_thw=image_inputs["image_grid_thw"],
                  mm_token_type_ids=image_inputs["mm_token_type_ids"])


def test_grid_without_pixels(ours_tiny, image_inputs):
    with pytest.raises(ValueError, match="pixel_values"):
        ours_tiny(image_inputs["input_ids"], image_grid_thw=image_inputs["image_grid_thw"])


def test_token_types_must_match_the_ids(ours_tiny, image_inputs):
    shape = r"mm_token_type_ids must have the shape of input_ids \(1, \d+\), got \(1, 3\)"
    with pytest.raises(ValueError, match=shape):
        ours_tiny(image_inputs["input_ids"], pixel_values=image_inputs["pixel_values"],
                  image_grid_thw=image_inputs["image_grid_thw"], mm_token_type_ids=torch.zeros(1, 3, dtype=torch.long))


@pytest.mark.parametrize("grid, error, message", [
    ([[1, 4, 6]], TypeError, r"image_grid_thw must be an int64 \(or int32\) tensor, got list"),
    (torch.tensor([[1.0, 4, 6]]), TypeError, r"image_grid_thw must be an int64"),
    (torch.tensor([[0, 4, 6]]), ValueError, r"image_grid_thw must hold \[t, h, w\] >= 1 per image, got "
                                            r"\[\[0, 4, 6\]\]"),
    (torch.tensor([[1, -4, -6]]), ValueError, r"image_grid_thw must hold \[t, h, w\] >= 1"),
])
def test_image_grid_values(ours_tiny, image_inputs, grid, error, message):
    with pytest.raises(error, match=message):
        ours_tiny(image_inputs["input_ids"], pixel_values=image_inputs["pixel_values"], image_grid_thw=grid)


@pytest.mark.parametrize("bad", [[float("nan")], [float("inf")], [float("inf"), float("-inf")]])
def test_non_finite_pixels(ours_tiny, image_inputs, bad):
    pixels = image_inputs["pixel_values"].clone()
    pixels[3, 7:7 + len(bad)] = torch.tensor(bad)
    with pytest.raises(ValueError, match="pixel_values holds NaN or infinite values"):
        ours_tiny(image_inputs["input_ids"], pixel_values=pixels, image_grid_thw=image_inputs["image_grid_thw"])


def test_finite_pixels_whose_sum_overflows_are_not_called_non_finite(ours_tiny, image_inputs):
    pixels = image_inputs["pixel_values"].clone()
    pixels[3, 7:9] = 3e38  # finite, but their float32 sum is inf: the quick test fails, the exact one passes
    out = ours_tiny(image_inputs["input_ids"], pixel_values=pixels, image_grid_thw=image_inputs["image_grid_thw"])
    assert out.logits.shape[:2] == image_inputs["input_ids"].shape


# ---- token ids, masks, labels, positions
@pytest.mark.parametrize("bad", [1024, -1])
def test_input_ids_out_of_vocab(ours_tiny, bad):
    with pytest.raises(ValueError, match=r"input_ids must lie in \[0, 1024\) \(the model's vocab_size\)"):
        ours_tiny(torch.tensor([[1, 2, bad]]))


def test_input_ids_must_be_2d(ours_tiny):
    with pytest.raises(ValueError, match=r"input_ids must be \(batch, length\), got shape \(3,\)"):
        ours_tiny(torch.tensor([1, 2, 3]))


def test_attention_mask_wrong_shape(ours_tiny):
    with pytest.raises(ValueError, match="attention_mask"):
        ours_tiny(torch.tensor([[1, 2, 3, 4]]), attention_mask=torch.ones(1, 3, dtype=torch.long))


def test_input_ids_must_be_integers(ours_tiny):
    with pytest.raises((TypeError, ValueError), match="input_ids"):
        ours_tiny(torch.tensor([[1.0, 2.0, 3.0]]))


@pytest.mark.parametrize("dtype", [torch.int16, torch.int8, torch.uint8, torch.bool])
def test_input_ids_of_a_small_integer_dtype(ours_tiny, dtype):
    with pytest.raises(TypeError, match=rf"input_ids must be an int64 \(or int32\) tensor, got {dtype}"):
        ours_tiny(IDS.to(dtype))


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(input_ids=torch.zeros(1, 0, dtype=torch.long)), ValueError, r"got shape \(1, 0\); a prompt needs at least"),
    (dict(attention_mask=torch.tensor([[1, 1, 2, 1]])), ValueError, r"only 0 \(padding\) and 1 \(token\), got the "
                                                                    r"values \[1, 2\]"),
    (dict(attention_mask=torch.tensor([[1, 0.5, 1, 1]])), ValueError, r"got the values \[0.5, 1.0\]"),
    (dict(position_ids=torch.arange(3)[None]), ValueError,
     r"position_ids must have shape \(3, batch, length\) = \(3, 1, 4\) or \(batch, length\) = \(1, 4\), got \(1, 3\)"),
    (dict(position_ids=torch.zeros(1, 4)), TypeError, r"position_ids must be an int64 \(or int32\) tensor"),
    (dict(position_ids=torch.tensor([[0, 1, -2, 3]])), ValueError,
     r"position_ids must be >= 0 \(a prompt's first token is at 0\), got -2; leave them out"),
    (dict(position_ids=torch.tensor([[[0, 1, 2, 3]], [[0, 1, 2, 3]], [[0, -1, 2, 3]]])), ValueError,
     r"position_ids must be >= 0"),
    (dict(attention_mask=torch.zeros(1, 4, dtype=torch.long)), ValueError,
     r"attention_mask is 0 on every new token of batch row\(s\) \[0\]: a row needs at least one real token"),
    (dict(labels=torch.tensor([[5, 6, 7]])), ValueError, r"labels must have the shape of input_ids \(1, 4\), got "
                                                         r"\(1, 3\)"),
    (dict(labels=torch.tensor([[5, 6, 7, 1024]])), ValueError, r"labels must be token ids in \[0, 1024\) or -100 "
                                                               r"\(no target\), got values from 5 to 1024"),
    (dict(labels=torch.tensor([[5, -100, -100, -100]])), ValueError, "labels have no target"),
    (dict(labels=torch.tensor([[5.0, 6, 7, 8]])), TypeError, "labels must be an int64"),
    (dict(logits_to_keep=1.5), ValueError, r"logits_to_keep must be an int >= 0 \(0 = every position\), got 1.5"),
    (dict(logits_to_keep=-1), ValueError, "logits_to_keep must be an int >= 0"),
])
def test_forward_arguments(ours_tiny, kwargs, error, message):
    with pytest.raises(error, match=message):
        ours_tiny(**{"input_ids": IDS, **kwargs})


def test_a_batch_row_without_tokens_is_refused_by_forward_and_generate(ours_tiny):
    mask = torch.tensor([[1, 1, 1, 1], [0, 0, 0, 0]])
    with pytest.raises(ValueError, match=r"attention_mask is 0 on every new token of batch row\(s\) \[1\]"):
        ours_tiny(IDS.repeat(2, 1), attention_mask=mask)
    with pytest.raises(ValueError, match=r"attention_mask is 0 on every new token of batch row\(s\) \[1\]"):
        ours_tiny.generate(IDS.repeat(2, 1), attention_mask=mask, max_new_tokens=2)
    ours_tiny(IDS.repeat(2, 1), attention_mask=torch.tensor([[1, 1, 1, 1], [0, 0, 0, 1]]))  # one token is enough


def test_labels_without_targets_in_one_row_are_fine(ours_tiny):
    labels = torch.tensor([[5, -100, -100, -100], [5, 6, 7, 8]])
    loss = ours_tiny(IDS.repeat(2, 1), labels=labels).loss
    assert torch.isfinite(loss)


def test_prompt_longer_than_max_position_embeddings(ours_tiny):
    with pytest.raises(ValueError, match=r"0 cached \+ 1025 new tokens exceed the model's max_position_embeddings "
                                         r"\(1024\)"):
        ours_tiny(torch.ones(1, 1025, dtype=torch.long))


# ---- property-based: random arguments
dtypes = st.sampled_from([torch.int64, torch.int64, torch.int32, torch.int16, torch.uint8, torch.bool, torch.float32])


@st.composite
def forward_args(draw):
    B, L = draw(st.integers(0, 2)), draw(st.integers(0, 5))
    args = {"input_ids": torch.tensor(draw(st.lists(st.integers(-2, 1030), min_size=B * L, max_size=B * L)),
                                      dtype=torch.long).reshape(B, L).to(draw(dtypes))}
    if draw(st.booleans()):
        shape = draw(st.sampled_from([(B, L), (B, max(L - 1, 0)), (L,)]))
        args["attention_mask"] = torch.tensor(draw(st.sampled_from([1, 1, 0, 2, 0.5])), dtype=torch.float).expand(shape)
    if draw(st.booleans()):
        shape = draw(st.sampled_from([(B, L), (B, L), (B, L + 1)]))
        args["labels"] = torch.tensor(draw(st.sampled_from([-100, 0, 5, 1023, 1024, -1]))).expand(shape).clone()
    if draw(st.booleans()):
        args["logits_to_keep"] = draw(st.sampled_from([0, 1, 2, -1, 1.5, 99]))
    if draw(st.booleans()):
        args["position_ids"] = torch.zeros(draw(st.sampled_from([(3, B, L), (B, L), (2, B, L)])), dtype=torch.long)
    return args


def forward_problem(args, out, vocab):
    B, L = args["input_ids"].shape
    mask, labels, keep = args.get("attention_mask"), args.get("labels"), args.get("logits_to_keep", 0)
    if mask is not None and bool(((mask != 0) & (mask != 1)).any()):
        return f"accepted attention_mask values {mask.unique().tolist()}"
    if keep < 0:
        return f"accepted logits_to_keep {keep}"
    if tuple(out.logits.shape) != (B, min(keep, L) if keep else L, vocab) or not finite(out.logits):
        return f"logits {tuple(out.logits.shape)} finite={finite(out.logits)}"
    if labels is not None and not finite(out.loss):
        return f"loss {out.loss}"


@given(args=forward_args())
def test_fuzz_forward(ours_tiny, args):
    culprits = ("input_ids", "attention_mask", "labels", "logits_to_keep", "position_ids")
    classify("forward", lambda: ours_tiny(**args), lambda out: forward_problem(args, out, 1024), culprits)
