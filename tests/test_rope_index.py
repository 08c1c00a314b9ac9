"""get_rope_index (the three M-RoPE position streams and the rope deltas) against transformers:
exactly equal on every fixture case, and equal to the hand-worked examples of the reference (§4)."""

import pytest
import torch
from helpers import CASE_NAMES, mm_token_type_ids

from minglm4v import Glm4vConfig

CFG = Glm4vConfig.tiny()
BOI, EOI, BOV, EOV, IMG = (CFG.image_start_token_id, CFG.image_end_token_id, CFG.video_start_token_id,
                           CFG.video_end_token_id, CFG.image_token_id)
PAD = CFG.text_config.pad_token_id


def both(ours, hf, input_ids, image_grid_thw=None, video_grid_thw=None, attention_mask=None):
    """(ours, transformers') (position_ids, rope_deltas) for one prompt batch."""
    types = mm_token_type_ids(input_ids, IMG, BOV, EOV)
    got = ours.get_rope_index(input_ids, types, image_grid_thw, video_grid_thw, attention_mask)  # the same order
    want = hf.model.get_rope_index(input_ids, types, image_grid_thw, video_grid_thw, attention_mask)
    return got, want


@pytest.mark.parametrize("name", CASE_NAMES)
def test_rope_index_equals_transformers(name, oracle_cases, ours_tiny, hf_tiny):
    case = oracle_cases[name]
    (pos, deltas), (hf_pos, hf_deltas) = both(ours_tiny, hf_tiny, case["input_ids"], case.get("image_grid_thw"),
                                              case.get("video_grid_thw"), case["attention_mask"])
    # whole tensors, padding included: both implementations put position 0 at padded slots
    assert torch.equal(pos, hf_pos) and torch.equal(deltas, hf_deltas)
    assert torch.equal(pos, case["position_ids"]) and torch.equal(deltas, case["rope_deltas"])


@pytest.mark.parametrize("name", CASE_NAMES)
def test_token_types_from_ids(name, oracle_cases, ours_tiny):
    """Without mm_token_type_ids the model derives them from the ids (video spans included)."""
    case = oracle_cases[name]
    types = ours_tiny.get_token_types(case["input_ids"])
    assert torch.equal(types, case["mm_token_type_ids"])
    assert torch.equal(types, mm_token_type_ids(case["input_ids"], IMG, BOV, EOV))  # the independent scan
    pos, deltas = ours_tiny.get_rope_index(case["input_ids"], image_grid_thw=case.get("image_grid_thw"),
                                           video_grid_thw=case.get("video_grid_thw"),
                                           attention_mask=case["attention_mask"])
    assert torch.equal(pos, case["position_ids"]) and torch.equal(deltas, case["rope_deltas"])


def test_padding_gets_position_zero(oracle_cases):
    case = oracle_cases["batch"]
    pads = case["attention_mask"] == 0
    assert pads[0].sum() == 2 and not pads[1].any()  # the image row is left-padded
    assert (case["position_ids"][:, pads] == 0).all()
    real = case["position_ids"][:, 0, 2:]  # text, <boi>, 2x2 image, <eoi>, text: starts at 0 after the pads
    assert real.tolist() == [[0, 1, 2, 2, 2, 2, 4, 5], [0, 1, 2, 2, 3, 3, 4, 5], [0, 1, 2, 3, 2, 3, 4, 5]]


def test_text_only_with_padding(ours_tiny, hf_tiny):
    """transformers' get_rope_index also skips left padding for text: positions restart at 0 after the
    pads, pads get 0, deltas are 0. (Its forward() does not call get_rope_index without grids and uses
    arange(L) instead; that only shifts a row uniformly - see test_model_oracle.)"""
    ids = torch.tensor([[PAD, PAD, PAD, 5, 6, 7], [1, 2, 3, 4, 5, 6]])
    mask = (ids != PAD).long()
    (pos, deltas), (hf_pos, hf_deltas) = both(ours_tiny, hf_tiny, ids, attention_mask=mask)
    assert torch.equal(pos, hf_pos) and torch.equal(deltas, hf_deltas)
    assert pos[0].tolist() == [[0, 0, 0, 0, 1, 2], [0, 1, 2, 3, 4, 5]]
    assert torch.equal(pos[0], pos[1]) and torch.equal(pos[0], pos[2])
    assert deltas.tolist() == [[0], [0]]


# ---- the worked examples of glm4v-reference.md §4, positions written out by hand
def test_one_image_example(ours_tiny, hf_tiny):
    ids = torch.tensor([[7, 8, BOI] + [IMG] * 16 + [EOI, 9, 10, 11]])
    (pos, deltas), (hf_pos, hf_deltas) = both(ours_tiny, hf_tiny, ids, image_grid_thw=torch.tensor([[1, 8, 8]]))
    expected = [
        [0, 1, 2] + [3] * 16 + [7, 8, 9, 10],
        [0, 1, 2] + [3] * 4 + [4] * 4 + [5] * 4 + [6] * 4 + [7, 8, 9, 10],
        [0, 1, 2] + [3, 4, 5, 6] * 4 + [7, 8, 9, 10],
    ]
    assert pos[:, 0].tolist() == expected and deltas.tolist() == [[10 + 1 - 23]]
    assert torch.equal(pos, hf_pos) and torch.equal(deltas, hf_deltas)


def test_two_images_example(ours_tiny, hf_tiny):
    ids = torch.tensor([[7, BOI] + [IMG] * 4 + [EOI, BOI] + [IMG] * 8 + [EOI, 8]])
    grids = torch.tensor([[1, 4, 4], [1, 4, 8]])
    (pos, deltas), (hf_pos, hf_deltas) = both(ours_tiny, hf_tiny, ids, image_grid_thw=grids)
    expected = [
        [0, 1, 2, 2, 2, 2, 4, 5] + [6] * 8 + [10, 11],
        [0, 1, 2, 2, 3, 3, 4, 5] + [6] * 4 + [7] * 4 + [10, 11],
        [0, 1, 2, 3, 2, 3, 4, 5] + [6, 7, 8, 9] * 2 + [10, 11],
    ]
    assert pos[:, 0].tolist() == expected and deltas.tolist() == [[-6]]
    assert torch.equal(pos, hf_pos) and torch.equal(deltas, hf_deltas)


def test_video_example(ours_tiny, hf_tiny):
    """Each temporal group is positioned like its own image; time shows only in the sequence order."""
    zero, one = 48, 49  # timestamp digits: ordinary text tokens
    ids = torch.tensor([[7, BOV, BOI] + [IMG] * 4 + [EOI, zero, BOI] + [IMG] * 4 + [EOI, one, EOV, 8, 9]])
    (pos, deltas), (hf_pos, hf_deltas) = both(ours_tiny, hf_tiny, ids, video_grid_thw=torch.tensor([[2, 4, 4]]))
    text_tail = [10, 11, 12, 13, 14]
    expected = [
        [0, 1, 2, 3, 3, 3, 3, 5, 6, 7, 8, 8, 8, 8] + text_tail,
        [0, 1, 2, 3, 3, 4, 4, 5, 6, 7, 8, 8, 9, 9] + text_tail,
        [0, 1, 2, 3, 4, 3, 4, 5, 6, 7, 8, 9, 8, 9] + text_tail,
    ]
    assert pos[:, 0].tolist() == expected and deltas.tolist() == [[-4]]
    assert torch.equal(pos, hf_pos) and torch.equal(deltas, hf_deltas)
