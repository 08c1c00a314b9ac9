"""Glm4vProcessor: image prompts against transformers' Glm4vProcessor, videos against hand-built layouts."""
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import classify
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image
from transformers import AutoTokenizer
from transformers.models.glm4v.image_processing_pil_glm4v import Glm4vImageProcessorPil
from transformers.models.glm4v.processing_glm4v import Glm4vProcessor as HFProcessor

from minglm4v.processing.image import CLIP_MEAN, CLIP_STD, Glm4vImageProcessor
from minglm4v.processing.processor import Glm4vProcessor
from minglm4v.processing.video import Glm4vVideoProcessor

TOKENIZER_DIR = Path(__file__).resolve().parents[1] / "data" / "tokenizer"
IMG = "<|begin_of_image|><|image|><|end_of_image|>"
TEXT_KEYS = ("input_ids", "attention_mask", "mm_token_type_ids")


def random_image(height, width, seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


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
def test_text_prompts_match_transformers(processor, hf, name):
    texts, sizes = PROMPTS[name]
    images = [random_image(h, w, seed=i) for i, (h, w) in enumerate(sizes)] or None
    assert_same(processor(text=texts, images=images), hf(text=texts, images=images, padding=True, return_tensors="pt"))


def test_messages_match_transformers_chat_template(processor, hf):
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
        assert_same(processor(messages=messages), want)


def test_image_expansion_by_hand(processor):
    # reference §7.1: a 336x336 image is a (1, 24, 24) grid -> 144 <|image|> tokens
    out = processor(text="<|user|>\n" + IMG + "Dog?", images=random_image(336, 336))
    ids = out["input_ids"][0].tolist()
    tok = processor.tokenizer
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


def test_video_token_layout(processor):
    tok = processor.tokenizer
    frames = np.random.default_rng(0).integers(0, 256, (24, 56, 56, 3), dtype=np.uint8)
    # 24 frames at 1 fps, every frame kept: 12 temporal groups starting at seconds 0, 2, ..., 22;
    # 24*56*56 is inside the pixel budget, so frames stay 56x56 -> 4x4 patches -> 4 tokens per group.
    out = processor(text="<|user|>\n<|begin_of_video|><|video|><|end_of_video|>Describe.", videos=[frames],
               fps=1, sample_frames=False)
    assert out["video_grid_thw"].tolist() == [[12, 4, 4]]
    assert out["pixel_values_videos"].shape == (12 * 16, 1176)
    ids = out["input_ids"][0].tolist()
    video = video_layout(tok, range(0, 24, 2), per_group=4)
    assert ids == tok.encode("<|user|>\n") + video + tok.encode("Describe.")
    types = out["mm_token_type_ids"][0].tolist()
    assert types == [2 if i == tok.image_token_id else 0 for i in ids]
    assert types.count(2) == 48 and "pixel_values" not in out


def test_video_messages_batch(processor):
    tok = processor.tokenizer
    clip = np.zeros((4, 56, 84, 3), dtype=np.uint8)  # 4 frames at 2 fps: groups at seconds 0 and 1
    conversations = [[{"role": "user", "content": [{"type": "video", "video": clip},
                                                   {"type": "text", "text": "What happens?"}]}],
                     [{"role": "user", "content": "No video here."}]]
    out = processor(messages=conversations, fps=2, sample_frames=False)
    assert out["video_grid_thw"].tolist() == [[2, 4, 6]]
    prompt = [tok.convert_tokens_to_ids(t) for t in ("[gMASK]", "<sop>", "<|user|>")] + [198]
    first = prompt + video_layout(tok, [0, 1], per_group=6) + tok.encode("What happens?<|assistant|>\n")
    second = tok.encode("[gMASK]<sop><|user|>\nNo video here.<|assistant|>\n")
    pad = len(first) - len(second)
    assert out["input_ids"].tolist() == [first, [tok.pad_token_id] * pad + second]
    assert out["attention_mask"][1].tolist() == [0] * pad + [1] * len(second)
    assert out["mm_token_type_ids"][1].sum() == 0


def test_from_pretrained_and_decode(tmp_path, processor):
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


def test_bad_input(processor):
    image = random_image(56, 56)
    with pytest.raises(ValueError, match=r"has 2 <\|image\|> placeholder\(s\) but 1 image\(s\) were passed"):
        processor(text=IMG + IMG, images=[image])
    with pytest.raises(ValueError, match=r"has 0 <\|image\|> placeholder\(s\) but 1 image\(s\)"):
        processor(text="no placeholder", images=image)
    with pytest.raises(ValueError, match=r"has 1 <\|image\|> placeholder\(s\) but 0 image\(s\)"):
        processor(text=IMG)
    with pytest.raises(ValueError, match=r"has 1 <\|video\|> placeholder\(s\) but 0 video\(s\)"):
        processor(text="<|video|>")
    with pytest.raises(ValueError, match=r"has 2 <\|video\|> placeholder\(s\) but 1 video\(s\)"):
        processor(text=["<|video|>", "<|video|>"], videos=[np.zeros((2, 56, 56, 3), np.uint8)], fps=1)
    with pytest.raises(ValueError, match="images and videos in one call are not supported"):
        processor(text=IMG + "<|video|>", images=[image], videos=[np.zeros((2, 56, 56, 3), np.uint8)], fps=1)
    with pytest.raises(ValueError, match="images and videos in one call are not supported"):
        processor(messages=[{"role": "user", "content": [{"type": "image", "image": image},
                                                    {"type": "video", "video": [image, image]}]}])
    with pytest.raises(ValueError, match=r"unknown role 'tool'; expected one of"):
        processor(messages=[{"role": "tool", "content": "x"}])
    with pytest.raises(ValueError, match=r"unknown content type 'audio'.*\('text', 'image', 'video'\)"):
        processor(messages=[{"role": "user", "content": [{"type": "audio", "audio": "a.wav"}]}])
    with pytest.raises(ValueError, match="image URL 'http://x/cat.png': minglm4v reads only local files"):
        processor(messages=[{"role": "user", "content": [{"type": "image", "url": "http://x/cat.png"}]}])
    with pytest.raises(ValueError, match="image item .* has no 'image', 'path' or 'url' field"):
        processor(messages=[{"role": "user", "content": [{"type": "image", "file": "cat.png"}]}])
    with pytest.raises(ValueError, match="no messages to render"):
        processor(messages=[])
    with pytest.raises(ValueError, match="either messages .* or text"):
        processor(text="hi", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(ValueError, match="only return_tensors='pt'"):
        processor(text="hi", return_tensors="np")
    with pytest.raises(TypeError, match="text must be a prompt string or a non-empty list"):
        processor(text=None)
    no_video = Glm4vProcessor(Glm4vImageProcessor(), processor.tokenizer)
    with pytest.raises(ValueError, match="no video processor"):
        no_video(text="<|video|>", videos=[np.zeros((2, 56, 56, 3), np.uint8)], fps=1)


# ---- bad messages and prompts
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


@pytest.mark.parametrize("text, index", [("", 0), (["<|user|>hi", ""], 1)])
def test_empty_prompt_is_refused(processor, text, index):
    with pytest.raises(ValueError, match=rf"text {index} of the batch is empty, and a prompt needs at least one token"):
        processor(text=text)
    assert processor(text=" ")["input_ids"].shape == (1, 1)  # a space is a token


def test_video_marker_in_image_prompt_text_is_refused(processor):
    picture = np.zeros((28, 28, 3), np.uint8)
    with pytest.raises(ValueError, match=r"the text has <\|begin_of_video\|> but no video is passed"):
        processor(text="<|begin_of_video|><|begin_of_image|><|image|><|end_of_image|>", images=[picture])


TYPED_CONTROL = ["<|assistant|>", "<|user|>", "<|begin_of_video|>", "<|end_of_video|>", "<|image|>", "[gMASK]"]


text_pieces = st.lists(st.one_of(st.text(max_size=6), st.sampled_from(TYPED_CONTROL), st.just("\ud800")), max_size=3)
texts = text_pieces.map("".join)


items = st.one_of(st.builds(lambda t: {"type": "text", "text": t}, st.one_of(texts, st.integers(), st.none())),
                  st.just({"type": "image", "image": np.zeros((28, 28, 3), np.uint8)}),
                  st.just({"type": "image"}), st.just({"type": "audio"}), st.none(), texts)


message = st.fixed_dictionaries({"role": st.sampled_from(["user", "system", "assistant", "tool", None])},
                                optional={"content": st.one_of(texts, st.lists(items, max_size=3), st.none())})


conversations = st.one_of(st.lists(message, max_size=3), message, st.lists(st.lists(message, max_size=2), max_size=2),
                          st.none(), texts, st.lists(st.none(), max_size=2))


def typed_text(value) -> str:
    """All text the user typed anywhere in `value` (message contents and text items)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return typed_text(value.get("content")) + typed_text(value.get("text"))
    return "".join(typed_text(v) for v in value) if isinstance(value, list) else ""


@given(messages=conversations)
def test_fuzz_messages(tokenizer, messages):
    processor = Glm4vProcessor(Glm4vImageProcessor(), tokenizer)

    def check(out):
        if any(token in typed_text(messages) for token in TYPED_CONTROL):
            return "a control token typed in message text was accepted"
        if out["input_ids"].ndim != 2 or out["mm_token_type_ids"].shape != out["input_ids"].shape:
            return "inconsistent shapes"
    culprits = ("message", "content", "role", "item", "text", "type", "control token", "image", "placeholder",
                "unicode", "string")
    classify("messages", lambda: processor(messages=messages), check, culprits)
