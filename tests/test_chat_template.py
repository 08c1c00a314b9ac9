"""Python chat template vs the official Jinja template rendered by transformers; output parsers."""
import json
import re
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from minglm4v.processing.chat_template import CHAT_TEMPLATE_JINJA, apply_chat_template, parse_boxes, parse_thinking
from minglm4v.processing.special_tokens import SPECIAL

TOKENIZER_DIR = Path(__file__).resolve().parents[1] / "data" / "tokenizer"

IMAGE_AND_QUESTION = [{"role": "user", "content": [{"type": "image", "image": "dog.jpg"},
                                                   {"type": "text", "text": "What kind of dog is this?"}]}]
CONVERSATIONS = {
    "string content": [{"role": "user", "content": "Hi there!"}],
    "image then text": IMAGE_AND_QUESTION,
    "two images, text between": [{"role": "user", "content": [
        {"type": "text", "text": "Compare "}, {"type": "image", "image": "a.png"},
        {"type": "text", "text": " and "}, {"type": "image", "image": "b.png"}]}],
    "video": [{"role": "user", "content": [{"type": "video", "video": ["f0", "f1"]},
                                           {"type": "text", "text": "Describe this video."}]}],
    "media keys without type": [{"role": "user", "content": [{"image": "x.png"}, {"video": "v.mp4"},
                                                             {"type": "text", "text": "ok"}]}],
    "system + multi-turn": [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "<answer>Hello</answer>"},
        {"role": "user", "content": [{"type": "image", "image": "c.png"}, {"type": "text", "text": "Cat?"}]},
        {"role": "assistant", "content": "<think>It has whiskers.</think><answer>Yes.</answer>"},
        {"role": "user", "content": "Sure?\nReally?"},
    ],
    "assistant metadata": [{"role": "user", "content": "weather?"},
                           {"role": "assistant", "metadata": "get_weather", "content": "{\"city\": \"Paris\"}"},
                           {"role": "assistant", "metadata": "", "content": "empty metadata is ignored"}],
    "unicode": [{"role": "user", "content": "café 🐱 中文\n\n  spaced  "}],
}


@pytest.fixture(scope="module")
def hf():
    return AutoTokenizer.from_pretrained(TOKENIZER_DIR)


@pytest.mark.parametrize("add_generation_prompt", [True, False])
@pytest.mark.parametrize("name", list(CONVERSATIONS))
def test_matches_official_jinja_in_transformers(hf, name, add_generation_prompt):
    messages = CONVERSATIONS[name]
    want = hf.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    assert apply_chat_template(messages, add_generation_prompt=add_generation_prompt) == want


def test_reference_examples():
    assert apply_chat_template(IMAGE_AND_QUESTION) == (
        "[gMASK]<sop><|user|>\n<|begin_of_image|><|image|><|end_of_image|>What kind of dog is this?"
        "<|assistant|>\n")
    multi_turn = CONVERSATIONS["system + multi-turn"][1:3] + [{"role": "user", "content": "Bye"}]
    assert apply_chat_template(multi_turn) == (
        "[gMASK]<sop><|user|>\nHi<|assistant|>\n<answer>Hello</answer><|user|>\nBye<|assistant|>\n")


def test_fixture_config_holds_this_template():
    config = json.loads((TOKENIZER_DIR / "tokenizer_config.json").read_text())
    assert config["chat_template"] == CHAT_TEMPLATE_JINJA


def test_bad_messages():
    with pytest.raises(ValueError, match="no messages"):
        apply_chat_template([])
    with pytest.raises(ValueError, match=r"unknown role 'tool'; expected one of \('system', 'user', 'assistant'\)"):
        apply_chat_template([{"role": "tool", "content": "42"}])
    with pytest.raises(ValueError, match=r"unknown content type 'audio'.*expected one of \('text', 'image', 'video'\)"):
        apply_chat_template([{"role": "user", "content": [{"type": "audio", "audio": "a.wav"}]}])
    with pytest.raises(ValueError, match="unknown content type 'image_url'"):
        apply_chat_template([{"role": "user", "content": [{"type": "image_url", "url": "x"}]}])
    with pytest.raises(ValueError, match="has no 'text' field"):
        apply_chat_template([{"role": "user", "content": [{"type": "text", "content": "hi"}]}])
    with pytest.raises(ValueError, match="dict with 'role' and 'content'"):
        apply_chat_template([{"content": "no role"}])
    with pytest.raises(TypeError, match="content item must be a dict"):
        apply_chat_template([{"role": "user", "content": ["plain string item"]}])
    with pytest.raises(TypeError, match="user content must be a string or a list"):
        apply_chat_template([{"role": "user", "content": None}])
    with pytest.raises(TypeError, match="system content must be a string, got list"):
        apply_chat_template([{"role": "system", "content": [{"type": "text", "text": "be brief"}]}])


@pytest.mark.parametrize("text, thinking, answer", [
    ("<think>A</think><answer>B</answer>", "A", "B"),
    ("\n<think>\nstep 1\nstep 2\n</think>\n<answer>\nB\n</answer>", "step 1\nstep 2", "B"),
    ("<think>A</think>B", "A", "B"),
    ("<think>A</think><answer>B", "A", "B"),
    ("<think>A</think><answer>", "A", ""),
    ("<think>A", "A", ""),
    ("<think>", "", ""),
    ("A</think><answer>B</answer>", "A", "B"),
    ("<answer>B</answer>", "", "B"),
    ("  just text  ", "", "just text"),
    ("", "", ""),
    ("<think>A</think><answer>B</answer> trailing", "A", "B"),
    ("<think>A</think><answer>x <|begin_of_box|>[1,2,3,4]<|end_of_box|></answer>", "A",
     "x <|begin_of_box|>[1,2,3,4]<|end_of_box|>"),
])
def test_parse_thinking(text, thinking, answer):
    assert parse_thinking(text) == (thinking, answer)


@pytest.mark.parametrize("text, boxes", [
    ("The dog is at <|begin_of_box|>[12,40,300,512]<|end_of_box|>.", [(12, 40, 300, 512)]),
    ("<|begin_of_box|>[[ 1, 2 , 3,4 ]]<|end_of_box|>", [(1, 2, 3, 4)]),
    ("<|begin_of_box|>[[1,2,3,4],[5,6,7,8]]<|end_of_box|> and <|begin_of_box|>[9.5,10,11,12.25]<|end_of_box|>",
     [(1, 2, 3, 4), (5, 6, 7, 8), (9.5, 10, 11, 12.25)]),
    ("The answer is <|begin_of_box|>42<|end_of_box|>", []),
    ("<|begin_of_box|>[1,2,3]<|end_of_box|>", []),
    ("[1,2,3,4] outside any box", []),
    ("<|begin_of_box|>[1,2,3,4] never closed", []),
])
def test_parse_boxes(text, boxes):
    got = parse_boxes(text)
    assert got == boxes
    assert all(isinstance(v, float) for box in got for v in box)


def test_parsers_reject_non_strings():
    with pytest.raises(TypeError, match="parse_thinking expects the decoded output string, got list"):
        parse_thinking([1, 2])
    with pytest.raises(TypeError, match="parse_boxes expects the decoded output string, got NoneType"):
        parse_boxes(None)


# ---- control tokens typed into text
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
