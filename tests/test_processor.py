"""Glm4vProcessor: image prompts against transformers' Glm4vProcessor, videos against hand-built layouts."""
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoTokenizer
from transformers.models.glm4v.image_processing_pil_glm4v import Glm4vImageProcessorPil
from transformers.models.glm4v.processing_glm4v import Glm4vProcessor as HFProcessor

from minglm4v.processing.image import CLIP_MEAN, CLIP_STD, Glm4vImageProcessor
from minglm4v.processing.processor import Glm4vProcessor
from minglm4v.processing.tokenizer import Glm4vTokenizer
from minglm4v.processing.video import Glm4vVideoProcessor

TOKENIZER_DIR = Path(__file__).resolve().parents[1] / "data" / "tokenizer"
IMG = "<|begin_of_image|><|image|><|end_of_image|>"
TEXT_KEYS = ("input_ids", "attention_mask", "mm_token_type_ids")


def random_image(height, width, seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def ours():
    return Glm4vProcessor(Glm4vImageProcessor(), Glm4vTokenizer.from_pretrained(TOKENIZER_DIR), Glm4vVideoProcessor())


@pytest.fixture(scope="module")
def hf():
    # transformers 5.24 cannot build Glm4vProcessor without torchvision (reference §6.5): skip its
    # argument-class check, here only, and give it the PIL image processor with checkpoint values.
    patch = pytest.MonkeyPatch()
    patch.setattr(HFProcessor, "check_argument_for_proper_class", lambda *args, **kwargs: None)
    tokenizer = AutoTokenizer.from_pretrained(TOKENIZER_DIR)
    image_processor = Glm4vImageProcessorPil(size={"shortest_edge": 12544, "longest_edge": 9633792},
                                             image_mean=list(CLIP_MEAN), image_std=list(CLIP_STD))
    yield HFProcessor(image_processor=image_processor, tokenizer=tokenizer, video_processor=None,
                      chat_template=tokenizer.chat_template)
    patch.undo()


def assert_same(got, want):
    assert set(got) == set(want)
    for key in want:
        assert torch.equal(got[key], want[key]), key


PROMPTS = {
    "one image": (["[gMASK]<sop><|user|>\n" + IMG + "What is it?<|assistant|>\n"], [(100, 60)]),
    "three images in one prompt": (["<|user|>\n" + IMG + " and " + IMG + "\nvs" + IMG], [(56, 112), (84, 84),
                                                                                        (30, 200)]),
    "batch of different lengths": ([IMG + "short", "a much longer prompt " + IMG + IMG + " with text",
                                    "no image at all"], [(140, 84), (84, 84), (28, 28)]),
    "text only": (["just text", "[gMASK]<sop><|user|>\nhi"], []),
}


@pytest.mark.parametrize("name", list(PROMPTS))
def test_text_prompts_match_transformers(ours, hf, name):
    texts, sizes = PROMPTS[name]
    images = [random_image(h, w, seed=i) for i, (h, w) in enumerate(sizes)] or None
    assert_same(ours(text=texts, images=images), hf(text=texts, images=images, padding=True, return_tensors="pt"))


def test_messages_match_transformers_chat_template(ours, hf):
    first = [{"role": "system", "content": "Be brief."},
             {"role": "user", "content": [{"type": "image", "image": random_image(112, 56, 1)},
                                          {"type": "text", "text": "What colour?"}]}]
    second = [{"role": "user", "content": [{"type": "text", "text": "Compare"},
                                           {"type": "image", "image": random_image(84, 84, 2)},
                                           {"type": "image", "image": random_image(90, 150, 3)}]},
              {"role": "assistant", "content": "<answer>They differ.</answer>"},
              {"role": "user", "content": "How?"}]
    for messages in (first, [first, second]):
        want = hf.apply_chat_template(messages, tokenize=True, return_dict=True, add_generation_prompt=True,
                                      padding=True, return_tensors="pt")
        assert_same(ours(messages=messages), want)


def test_image_expansion_by_hand(ours):
    # reference §7.1: a 336x336 image is a (1, 24, 24) grid -> 144 <|image|> tokens
    out = ours(text="<|user|>\n" + IMG + "Dog?", images=random_image(336, 336))
    ids = out["input_ids"][0].tolist()
    tok = ours.tokenizer
    assert out["image_grid_thw"].tolist() == [[1, 24, 24]]
    assert ids[:3] == [tok.convert_tokens_to_ids("<|user|>"), 198, tok.begin_of_image_id]
    assert ids[3:147] == [tok.image_token_id] * 144 and ids[147] == tok.end_of_image_id
    assert out["mm_token_type_ids"][0].tolist() == [0] * 3 + [1] * 144 + [0] * (len(ids) - 147)


def video_layout(tok, seconds, per_group):
    """Hand-built ids of <|begin_of_video|> [frame blocks] <|end_of_video|> (reference §6.5)."""
    ids = [tok.begin_of_video_id]
    for s in seconds:
        ids += [tok.begin_of_image_id] + [tok.image_token_id] * per_group + [tok.end_of_image_id]
        ids += tok.encode(str(s))
    return ids + [tok.end_of_video_id]


def test_video_token_layout(ours):
    tok = ours.tokenizer
    frames = np.random.default_rng(0).integers(0, 256, (24, 56, 56, 3), dtype=np.uint8)
    # 24 frames at 1 fps, every frame kept: 12 temporal groups starting at seconds 0, 2, ..., 22;
    # 24*56*56 is inside the pixel budget, so frames stay 56x56 -> 4x4 patches -> 4 tokens per group.
    out = ours(text="<|user|>\n<|begin_of_video|><|video|><|end_of_video|>Describe.", videos=[frames],
               fps=1, sample_frames=False)
    assert out["video_grid_thw"].tolist() == [[12, 4, 4]]
    assert out["pixel_values_videos"].shape == (12 * 16, 1176)
    ids = out["input_ids"][0].tolist()
    video = video_layout(tok, range(0, 24, 2), per_group=4)
    assert ids == tok.encode("<|user|>\n") + video + tok.encode("Describe.")
    types = out["mm_token_type_ids"][0].tolist()
    assert types == [2 if i == tok.image_token_id else 0 for i in ids]
    assert types.count(2) == 48 and "pixel_values" not in out


def test_video_messages_batch(ours):
    tok = ours.tokenizer
    clip = np.zeros((4, 56, 84, 3), dtype=np.uint8)  # 4 frames at 2 fps: groups at seconds 0 and 1
    conversations = [[{"role": "user", "content": [{"type": "video", "video": clip},
                                                   {"type": "text", "text": "What happens?"}]}],
                     [{"role": "user", "content": "No video here."}]]
    out = ours(messages=conversations, fps=2, sample_frames=False)
    assert out["video_grid_thw"].tolist() == [[2, 4, 6]]
    prompt = [tok.convert_tokens_to_ids(t) for t in ("[gMASK]", "<sop>", "<|user|>")] + [198]
    first = prompt + video_layout(tok, [0, 1], per_group=6) + tok.encode("What happens?<|assistant|>\n")
    second = tok.encode("[gMASK]<sop><|user|>\nNo video here.<|assistant|>\n")
    pad = len(first) - len(second)
    assert out["input_ids"].tolist() == [first, [tok.pad_token_id] * pad + second]
    assert out["attention_mask"][1].tolist() == [0] * pad + [1] * len(second)
    assert out["mm_token_type_ids"][1].sum() == 0


def test_from_pretrained_and_decode(tmp_path, ours):
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(TOKENIZER_DIR / name, tmp_path / name)
    Glm4vImageProcessor(max_pixels=200_000).save_pretrained(tmp_path)
    loaded = Glm4vProcessor.from_pretrained(tmp_path)
    assert loaded.video_processor is None and loaded.image_processor.max_pixels == 200_000
    Glm4vVideoProcessor().save_pretrained(tmp_path)
    assert isinstance(Glm4vProcessor.from_pretrained(tmp_path).video_processor, Glm4vVideoProcessor)
    out = loaded(text=["hi <think>", "<|user|>\nyes, a longer one"])
    assert loaded.batch_decode(out["input_ids"], skip_special_tokens=True) == ["hi <think>", "\nyes, a longer one"]
    assert loaded.decode(out["input_ids"][0]).endswith("<|endoftext|><|endoftext|>hi <think>")


def test_bad_input(ours):
    image = random_image(56, 56)
    with pytest.raises(ValueError, match=r"has 2 <\|image\|> placeholder\(s\) but 1 image\(s\) were passed"):
        ours(text=IMG + IMG, images=[image])
    with pytest.raises(ValueError, match=r"has 0 <\|image\|> placeholder\(s\) but 1 image\(s\)"):
        ours(text="no placeholder", images=image)
    with pytest.raises(ValueError, match=r"has 1 <\|image\|> placeholder\(s\) but 0 image\(s\)"):
        ours(text=IMG)
    with pytest.raises(ValueError, match=r"has 1 <\|video\|> placeholder\(s\) but 0 video\(s\)"):
        ours(text="<|video|>")
    with pytest.raises(ValueError, match=r"has 2 <\|video\|> placeholder\(s\) but 1 video\(s\)"):
        ours(text=["<|video|>", "<|video|>"], videos=[np.zeros((2, 56, 56, 3), np.uint8)], fps=1)
    with pytest.raises(ValueError, match="images and videos in one call are not supported"):
        ours(text=IMG + "<|video|>", images=[image], videos=[np.zeros((2, 56, 56, 3), np.uint8)], fps=1)
    with pytest.raises(ValueError, match="images and videos in one call are not supported"):
        ours(messages=[{"role": "user", "content": [{"type": "image", "image": image},
                                                    {"type": "video", "video": [image, image]}]}])
    with pytest.raises(ValueError, match=r"unknown role 'tool'; expected one of"):
        ours(messages=[{"role": "tool", "content": "x"}])
    with pytest.raises(ValueError, match=r"unknown content type 'audio'.*\('text', 'image', 'video'\)"):
        ours(messages=[{"role": "user", "content": [{"type": "audio", "audio": "a.wav"}]}])
    with pytest.raises(ValueError, match="image URL 'http://x/cat.png': minglm4v reads only local files"):
        ours(messages=[{"role": "user", "content": [{"type": "image", "url": "http://x/cat.png"}]}])
    with pytest.raises(ValueError, match="image item .* has no 'image', 'path' or 'url' field"):
        ours(messages=[{"role": "user", "content": [{"type": "image", "file": "cat.png"}]}])
    with pytest.raises(ValueError, match="no messages to render"):
        ours(messages=[])
    with pytest.raises(ValueError, match="either messages .* or text"):
        ours(text="hi", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(ValueError, match="only return_tensors='pt'"):
        ours(text="hi", return_tensors="np")
    with pytest.raises(TypeError, match="text must be a prompt string or a non-empty list"):
        ours(text=None)
    no_video = Glm4vProcessor(Glm4vImageProcessor(), ours.tokenizer)
    with pytest.raises(ValueError, match="no video processor"):
        no_video(text="<|video|>", videos=[np.zeros((2, 56, 56, 3), np.uint8)], fps=1)
