"""From a real photo (and a real clip of frames) and a question to logits: our processor feeds both our
model and transformers' model (same fixture checkpoint) and the logits agree to fp32 precision."""

import matplotlib.cbook
import numpy as np
import pytest
import torch
from helpers import REPO, TINY, load_hf, load_ours
from PIL import Image

from minglm4v.processing.image import Glm4vImageProcessor
from minglm4v.processing.processor import Glm4vProcessor
from minglm4v.processing.tokenizer import Glm4vTokenizer
from minglm4v.processing.video import Glm4vVideoProcessor

# a small pixel budget keeps the prompt short; the path is the same as with the real budget
BUDGET = dict(min_pixels=56 * 56, max_pixels=4 * 112 * 112)


@pytest.fixture(scope="module")
def models():
    return load_ours(TINY), load_hf(TINY)


@pytest.fixture(scope="module")
def budget_processor():
    return Glm4vProcessor(Glm4vImageProcessor(**BUDGET), Glm4vTokenizer.from_pretrained(REPO / "data" / "tokenizer"),
                          Glm4vVideoProcessor(**BUDGET))


def photo() -> Image.Image:
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        return Image.open(f).convert("RGB")


def ask(kind: str, media) -> list[dict]:
    return [{"role": "user", "content": [{"type": kind, kind: media}, {"type": "text", "text": "Who is this?"}]}]


def assert_same_logits(models, inputs):
    ours, hf = models
    with torch.no_grad():
        a = ours(**inputs).logits
        b = hf(**inputs).logits
    real = inputs["attention_mask"].bool()
    torch.testing.assert_close(a[real], b[real], rtol=1e-5, atol=1e-5)


def test_photo_and_question(models, budget_processor):
    inputs = budget_processor(messages=ask("image", photo()))
    # 600x512 photo over budget: beta = sqrt(2*600*512 / 50176) = 3.499 -> floor(600/beta/28)*28 = 168,
    # floor(512/beta/28)*28 = 140 pixels -> a 12x10 patch grid, 30 merged tokens
    assert inputs["image_grid_thw"].tolist() == [[1, 12, 10]]
    assert int((inputs["mm_token_type_ids"] == 1).sum()) == 12 * 10 // 4
    assert_same_logits(models, inputs)


def test_batch_of_two_photos_left_padded(models, budget_processor):
    image = photo()
    inputs = budget_processor(messages=[ask("image", image), ask("image", image.crop((0, 0, 300, 200)))])
    assert inputs["attention_mask"][1, 0] == 0  # the shorter prompt is left-padded
    assert_same_logits(models, inputs)


def test_video_frames_and_question(models, budget_processor):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(8, 90, 120, 3), dtype=np.uint8)  # 8 frames at 4 fps = 2 s
    inputs = budget_processor(messages=ask("video", frames), fps=4)
    # the reference's duration estimate round(7 / 4) + 1 = 3 s at 2 fps -> 6 frames = 3 temporal groups
    assert inputs["video_grid_thw"][0, 0] == 3
    assert int((inputs["mm_token_type_ids"] == 2).sum()) == int(inputs["video_grid_thw"].prod()) // 4
    assert_same_logits(models, inputs)
