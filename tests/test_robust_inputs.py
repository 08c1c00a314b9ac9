"""Untrusted pictures, videos, processor settings, chat messages and token ids: each bad value is a
TypeError or ValueError naming it, and control tokens typed into message text are refused (README,
"Untrusted inputs")."""

import re

import numpy as np
import pytest
import torch
from helpers import REPO
from PIL import Image

from minglm4v.processing.chat_template import apply_chat_template
from minglm4v.processing.image import Glm4vImageProcessor
from minglm4v.processing.processor import Glm4vProcessor
from minglm4v.processing.special_tokens import SPECIAL
from minglm4v.processing.tokenizer import Glm4vTokenizer
from minglm4v.processing.video import Glm4vVideoProcessor


@pytest.fixture(scope="module")
def tokenizer():
    return Glm4vTokenizer.from_pretrained(REPO / "data" / "tokenizer")


@pytest.fixture(scope="module")
def processor(tokenizer):
    return Glm4vProcessor(Glm4vImageProcessor(), tokenizer, Glm4vVideoProcessor())


# ---- images
def test_image_file_with_corrupt_exif(tmp_path):
    path = tmp_path / "bad-exif.png"
    Image.new("RGB", (40, 30)).save(path, exif=b"garbage-not-tiff")  # PIL's EXIF reader raises SyntaxError
    with pytest.raises(ValueError, match=r"cannot read image file .*bad-exif.png: SyntaxError: not a TIFF file"):
        Glm4vImageProcessor()(path)


@pytest.mark.parametrize("image, error, message", [
    (torch.zeros(3, 40, 50, dtype=torch.bfloat16), TypeError, "uint8 .* got dtype bfloat16"),
    (torch.zeros(3, 40, 50, dtype=torch.uint8, device="meta"), ValueError, "on the meta device"),
    (np.zeros((40, 50, 3), dtype=bool), TypeError, "uint8 .* got dtype bool"),
    (np.zeros((40, 50, 3), dtype=object), TypeError, "uint8 .* got dtype object"),
])
def test_image_tensors_of_the_wrong_kind(image, error, message):
    with pytest.raises(error, match=message):
        Glm4vImageProcessor()(image)


@pytest.mark.parametrize("settings, error, message", [
    (dict(patch_size=0), ValueError, "patch_size must be >= 1, got 0"),
    (dict(merge_size=0), ValueError, "merge_size must be >= 1, got 0"),
    (dict(merge_size=1.5), TypeError, "merge_size must be an int, got float 1.5"),
    (dict(temporal_patch_size=-2), ValueError, "temporal_patch_size must be >= 1, got -2"),
    (dict(max_pixels=0), ValueError, "max_pixels must be >= 1, got 0"),
    (dict(min_pixels="12544"), TypeError, "min_pixels must be an int, got str '12544'"),
    (dict(min_pixels=10**9), ValueError, "min_pixels 1000000000 is larger than max_pixels 9633792"),
    (dict(min_pixels=2 * 10**8 + 1, max_pixels=10**9), ValueError, "max_pixels 1000000000 is over minglm4v's limit"),
    (dict(patch_size=5000), ValueError, "max_pixels 9633792 is smaller than the smallest picture these settings "
                                        r"make: one 10000x10000 window \(patch_size \* merge_size\) in 2 frames"),
    (dict(image_std=(0.5, 0.5)), ValueError, r"image_std must be 3 finite numbers .*got \(0.5, 0.5\)"),
    (dict(image_std=(0.5, 0, 0.5)), ValueError, r"image_std must be > 0 in every channel"),
    (dict(image_mean=(0.5, float("nan"), 0.5)), ValueError, "image_mean must be 3 finite numbers"),
    (dict(image_mean="0.5"), ValueError, "image_mean must be 3 finite numbers"),
])
def test_image_processor_settings_are_checked_at_construction(settings, error, message):
    with pytest.raises(error, match=message):
        Glm4vImageProcessor(**settings)


def test_pixel_range_too_narrow_for_the_grid():
    # 30x40 needs an upscale to reach min_pixels; whole 28-pixel windows then give 84x112 x 2 frames
    with pytest.raises(ValueError, match=r"nearest size 84x112 makes 18816 pixels; widen the range"):
        Glm4vImageProcessor(min_pixels=12544, max_pixels=17103)(np.zeros((30, 40, 3), np.uint8))


@pytest.mark.parametrize("fps", [float("nan"), float("inf"), 0, -1, "30"])
def test_video_fps_must_be_a_finite_positive_number(fps):
    video = np.zeros((4, 28, 28, 3), np.uint8)
    for sample_frames in (True, False):
        with pytest.raises(ValueError, match=f"fps must be the source frame rate, a finite number > 0; got {fps!r}"):
            Glm4vVideoProcessor()(video, fps=fps, sample_frames=sample_frames)


def test_video_fps_too_small_to_date_the_frames():
    for sample_frames in (True, False):
        with pytest.raises(ValueError, match=r"fps=5e-324 puts 4 frames at an infinite time"):
            Glm4vVideoProcessor()(np.zeros((4, 28, 28, 3), np.uint8), fps=5e-324, sample_frames=sample_frames)


@pytest.mark.parametrize("settings, message", [
    (dict(fps=0), r"fps \(frames sampled per second\), a finite number > 0; got 0"),
    (dict(max_duration=float("inf")), r"max_duration \(seconds\), a finite number > 0; got inf"),
])
def test_video_processor_settings(settings, message):
    with pytest.raises(ValueError, match=message):
        Glm4vVideoProcessor(**settings)


# ---- chat messages
@pytest.mark.parametrize("messages, error, message", [
    ({"role": "user", "content": "Hi"}, TypeError, r"messages must be a list of message dicts.*got dict"),
    ([None], ValueError, r"each message must be a dict with 'role' and 'content', got None"),
    ([{"role": "user", "content": [{"type": "text", "text": 5}]}], TypeError,
     r"a text item's 'text' must be a string, got int: 5"),
    ([{"role": "user", "content": None}], TypeError, r"user content must be a string or a list of items"),
    ([{"role": "assistant", "content": "ok", "metadata": {"tool": 1}}], TypeError,
     r"assistant metadata must be a string, got dict"),
])
def test_malformed_messages(processor, messages, error, message):
    with pytest.raises(error, match=message):
        processor(messages=messages)


@pytest.mark.parametrize("token", SPECIAL)
def test_control_tokens_typed_into_text_are_refused(token):
    where = {"user": "a text item's 'text'", "system": "system content", "assistant": "assistant content"}
    for role, what in where.items():
        content = [{"type": "text", "text": f"what is {token}?"}] if role == "user" else f"say {token}"
        with pytest.raises(ValueError, match=rf"{what} contains the control token '{re.escape(token)}'"):
            apply_chat_template([{"role": role, "content": content}])


def test_model_written_tags_are_allowed_in_history():
    history = [{"role": "user", "content": "Where is it?"},
               {"role": "assistant", "content": "<answer>Here: <|begin_of_box|>[1,2,3,4]<|end_of_box|></answer>"}]
    assert "<|begin_of_box|>[1,2,3,4]" in apply_chat_template(history)


def test_video_marker_in_image_prompt_text_is_refused(processor):
    picture = np.zeros((28, 28, 3), np.uint8)
    with pytest.raises(ValueError, match=r"the text has <\|begin_of_video\|> but no video is passed"):
        processor(text="<|begin_of_video|><|begin_of_image|><|image|><|end_of_image|>", images=[picture])


# ---- tokenizer
@pytest.mark.parametrize("ids, error, message", [
    ([-1], ValueError, r"token id -1 is outside the vocabulary \[0, 1022\)"),
    ([2**32], ValueError, r"token id 4294967296 is outside the vocabulary"),
    ([1022, 1023], ValueError, r"token id 1022 is outside the vocabulary \[0, 1022\) of this tokenizer \(2 such"),
    ([1.0], ValueError, r"token id 1.0 is outside the vocabulary"),
    (None, TypeError, "decode expects a sequence of token ids, got NoneType"),
    ("abc", TypeError, "decode expects a sequence of token ids, got str"),
])
def test_decode_refuses_ids_it_has_no_text_for(tokenizer, ids, error, message):
    with pytest.raises(error, match=message):
        tokenizer.decode(ids)


def test_decode_accepts_numpy_and_tensor_ids(tokenizer):
    ids = tokenizer.encode("a cat")
    assert tokenizer.decode(np.array(ids)) == tokenizer.decode(torch.tensor(ids)) == "a cat"


def test_unpaired_surrogate_in_text(tokenizer, processor):
    with pytest.raises(ValueError, match=r"'\\ud800' at position 2 is an unpaired surrogate"):
        tokenizer("ab\ud800c")
    with pytest.raises(ValueError, match="unpaired surrogate"):
        processor(messages=[{"role": "user", "content": "x\udfff"}])
