"""Glm4vTokenizer against transformers' PreTrainedTokenizerFast on the fixture tokenizer."""
import importlib.util
import json
import shutil

import numpy as np
import pytest
import torch
from helpers import REPO, classify
from hypothesis import given
from hypothesis import strategies as st
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from minglm4v.processing.tokenizer import Glm4vTokenizer

TOKENIZER_DIR = REPO / "data" / "tokenizer"
REAL_SPECIAL_IDS = {  # reference §7.3
    "<|endoftext|>": 151329, "[MASK]": 151330, "[gMASK]": 151331, "[sMASK]": 151332, "<sop>": 151333,
    "<eop>": 151334, "<|system|>": 151335, "<|user|>": 151336, "<|assistant|>": 151337,
    "<|observation|>": 151338, "<|begin_of_image|>": 151339, "<|end_of_image|>": 151340,
    "<|begin_of_video|>": 151341, "<|end_of_video|>": 151342, "<|image|>": 151343, "<|video|>": 151344,
}
THINKING_TAGS = ["<think>", "</think>", "<answer>", "</answer>", "<|begin_of_box|>", "<|end_of_box|>"]
TEXTS = [
    "The image shows a red circle next to a cat.",
    "  leading and trailing spaces  ",
    "line one\nline two\n\n\ttabbed\r\nwindows",
    "Numbers 1234567 and 3.14159, -42, 1e10",
    "[gMASK]<sop><|user|>\n<|begin_of_image|><|image|><|end_of_image|>What is this?<|assistant|>\n",
    "<think>Let me think. The dog is brown.</think><answer>A <|begin_of_box|>[1,2,3,4]<|end_of_box|></answer>",
    "Ünïcödé café, naïve résumé — “quotes” and ‘apostrophes’",
    "中文文本测试，还有日本語とカタカナ",
    "emoji 🐱🐶🦊 👍🏽 👨‍👩‍👧 flags 🇩🇪",
    "it's we're they'll I'd YOU'VE",
    "<|endoftext|><|endoftext|>x<|observation|>",
    "weird <|image|text <think and </answer",
    "",
]


@pytest.fixture(scope="module")
def hf():
    return PreTrainedTokenizerFast(tokenizer_file=str(TOKENIZER_DIR / "tokenizer.json"),
                                   eos_token="<|endoftext|>", pad_token="<|endoftext|>", padding_side="left")


def test_fixture_id_layout(tokenizer, hf):
    assert tokenizer.vocab_size == hf.vocab_size == 1000
    assert len(tokenizer) == len(hf) == 1022
    for token, real_id in REAL_SPECIAL_IDS.items():
        assert tokenizer.convert_tokens_to_ids(token) == hf.convert_tokens_to_ids(token) == real_id - 150329
    assert tokenizer.convert_tokens_to_ids(THINKING_TAGS) == list(range(1016, 1022))
    assert tokenizer.convert_ids_to_tokens(list(range(1016, 1022))) == THINKING_TAGS
    ids = hf.encode("A red circle, 3 squares")
    assert tokenizer.convert_ids_to_tokens(ids) == hf.convert_ids_to_tokens(ids)
    with pytest.raises(ValueError, match=r"token id 5000 is outside the vocabulary \[0, 1022\)"):
        tokenizer.convert_ids_to_tokens(5000)
    assert set(THINKING_TAGS).isdisjoint(hf.all_special_tokens)
    assert tokenizer.image_token_id == 1014 and tokenizer.video_token_id == 1015
    assert (tokenizer.begin_of_image_id, tokenizer.end_of_image_id, tokenizer.begin_of_video_id,
            tokenizer.end_of_video_id) == (1010, 1011, 1012, 1013)
    assert tokenizer.eos_token_id == tokenizer.pad_token_id == 1000
    assert tokenizer.eos_token_ids == [1000, 1007, 1009]


def test_fixture_script_is_deterministic(tmp_path):
    spec = importlib.util.spec_from_file_location("make_tokenizer", REPO / "scripts" / "make_tokenizer.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    script.write(tmp_path)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        assert (tmp_path / name).read_bytes() == (TOKENIZER_DIR / name).read_bytes(), name


def test_transformers_loads_the_fixture_folder(tokenizer):
    auto = AutoTokenizer.from_pretrained(TOKENIZER_DIR)
    assert (auto.eos_token, auto.pad_token, auto.padding_side) == ("<|endoftext|>", "<|endoftext|>", "left")
    text = TEXTS[5]
    assert auto.encode(text, add_special_tokens=False) == tokenizer.encode(text)


@pytest.mark.parametrize("text", TEXTS)
def test_encode_decode_match_transformers(tokenizer, hf, text):
    ids = tokenizer.encode(text)
    assert ids == hf.encode(text, add_special_tokens=False)
    assert tokenizer.decode(ids) == hf.decode(ids) == text  # byte-level BPE round-trips exactly
    assert tokenizer.decode(ids, skip_special_tokens=True) == hf.decode(ids, skip_special_tokens=True)


def test_skip_special_tokens_keeps_thinking_tags(tokenizer):
    ids = tokenizer.encode("<|assistant|>\n<think>hmm</think><answer>cat</answer><|user|>")
    assert tokenizer.decode(ids, skip_special_tokens=True) == "\n<think>hmm</think><answer>cat</answer>"
    assert tokenizer.decode(torch.tensor(ids)) == tokenizer.decode(ids)


def test_batch_left_padding_matches_transformers(tokenizer, hf):
    batch = ["a cat", "The image shows a red circle next to a cat.", "<|user|>\nhi"]
    got = tokenizer(batch)
    want = hf(batch, padding=True, return_tensors="pt")
    assert torch.equal(got["input_ids"], want["input_ids"])
    assert torch.equal(got["attention_mask"], want["attention_mask"])
    assert got["input_ids"][0, 0] == tokenizer.pad_token_id and got["attention_mask"][0, 0] == 0
    assert tokenizer.batch_decode(got["input_ids"], skip_special_tokens=True) == hf.batch_decode(
        want["input_ids"], skip_special_tokens=True)


def test_call_without_tensors_or_padding(tokenizer):
    out = tokenizer(["a cat", "a red cat"], padding=False, return_tensors=None)
    assert out["input_ids"] == [tokenizer.encode("a cat"), tokenizer.encode("a red cat")]
    assert out["attention_mask"] == [[1] * len(r) for r in out["input_ids"]]
    single = tokenizer("a cat")
    assert single["input_ids"].shape == (1, len(tokenizer.encode("a cat")))


def test_apply_chat_template_tokenize(tokenizer, hf):
    hf_with_template = AutoTokenizer.from_pretrained(TOKENIZER_DIR)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is it?"}]}]
    text = hf_with_template.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert tokenizer.apply_chat_template(messages) == text
    assert tokenizer.apply_chat_template(messages, tokenize=True) == hf.encode(text, add_special_tokens=False)


def test_real_id_layout_loads_unchanged(tmp_path):
    """The real tokenizer.json has 151329 regular tokens before the specials: nothing may assume tokenizer."""
    data = json.loads((TOKENIZER_DIR / "tokenizer.json").read_text())
    vocab = data["model"]["vocab"]
    vocab.update({f"<unused_{i}>": i for i in range(len(vocab), 151329)})  # unreachable: no merges
    for token in data["added_tokens"]:
        token["id"] += 151329 - 1000
    (tmp_path / "tokenizer.json").write_text(json.dumps(data))
    # older GLM configs store special tokens as AddedToken dicts
    eos = {"content": "<|endoftext|>", "lstrip": False, "normalized": False, "rstrip": False,
           "single_word": False}
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"eos_token": eos, "pad_token": eos}))
    real = Glm4vTokenizer.from_pretrained(tmp_path)
    hf_real = PreTrainedTokenizerFast(tokenizer_file=str(tmp_path / "tokenizer.json"))
    for token, real_id in REAL_SPECIAL_IDS.items():
        assert real.convert_tokens_to_ids(token) == real_id
    assert (real.image_token_id, real.eos_token_id, real.pad_token_id) == (151343, 151329, 151329)
    assert real.eos_token_ids == [151329, 151336, 151338]
    for text in TEXTS:
        assert real.encode(text) == hf_real.encode(text, add_special_tokens=False)
    prompt = real.apply_chat_template([{"role": "user", "content": [{"type": "image"}, {"type": "text",
                                                                                         "text": "Dog?"}]}])
    assert real.encode(prompt)[:6] == [151331, 151333, 151336, 198, 151339, 151343]  # reference §7.1


def test_errors(tokenizer, tmp_path):
    with pytest.raises(ValueError, match="'<\\|img\\|>' is not in the vocabulary"):
        tokenizer.convert_tokens_to_ids("<|img|>")
    with pytest.raises(ValueError, match="expects one sequence.*batch_decode"):
        tokenizer.decode(torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"different lengths \[2, 3\].*padding=True"):
        tokenizer(["a cat", "a red cat"], padding=False)
    with pytest.raises(ValueError, match="return_tensors must be 'pt' or None"):
        tokenizer("a cat", return_tensors="np")
    with pytest.raises(TypeError, match="string or a non-empty list of strings"):
        tokenizer([1, 2])
    with pytest.raises(TypeError, match="encode expects a string, got list"):
        tokenizer.encode(["a"])
    with pytest.raises(FileNotFoundError, match="no tokenizer.json in"):
        Glm4vTokenizer.from_pretrained(tmp_path)


# ---- bad tokenizer files, ids and text
def test_invalid_tokenizer_json(tmp_path):
    (tmp_path / "tokenizer.json").write_text('{"model": 3}')
    with pytest.raises(ValueError, match=r"tokenizer.json is not a valid tokenizer file .*expected the "
                                         r"tokenizer.json of a GLM-4.1V checkpoint"):
        Glm4vTokenizer.from_pretrained(tmp_path)
    shutil.copy(REPO / "data" / "tokenizer" / "tokenizer.json", tmp_path)
    (tmp_path / "tokenizer_config.json").write_text("[]")
    with pytest.raises(ValueError, match=r"tokenizer_config.json holds a JSON list"):
        Glm4vTokenizer.from_pretrained(tmp_path)


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


@pytest.mark.parametrize("convert, value, message", [
    ("convert_tokens_to_ids", 5, r"convert_tokens_to_ids expects a token string \(or a list of them\) such as "
                                 r"'<\|image\|>', got int 5; ids go to tokens with convert_ids_to_tokens"),
    ("convert_tokens_to_ids", [5], "convert_tokens_to_ids expects a token string .*got int 5"),
    ("convert_tokens_to_ids", None, "convert_tokens_to_ids expects a token string .*got NoneType None"),
    ("convert_ids_to_tokens", "<|image|>", r"convert_ids_to_tokens expects a token id \(an int, or a list of them\), "
                                           r"got str '<\|image\|>'; tokens go to ids with convert_tokens_to_ids"),
    ("convert_ids_to_tokens", [1.5], "convert_ids_to_tokens expects a token id .*got float 1.5"),
])
def test_convert_refuses_the_other_kind_by_name(tokenizer, convert, value, message):
    with pytest.raises(TypeError, match=message):
        getattr(tokenizer, convert)(value)


def test_decode_accepts_numpy_and_tensor_ids(tokenizer):
    ids = tokenizer.encode("a cat")
    assert tokenizer.decode(np.array(ids)) == tokenizer.decode(torch.tensor(ids)) == "a cat"


def test_unpaired_surrogate_in_text(tokenizer, processor):
    with pytest.raises(ValueError, match=r"'\\ud800' at position 2 is an unpaired surrogate"):
        tokenizer("ab\ud800c")
    with pytest.raises(ValueError, match="unpaired surrogate"):
        processor(messages=[{"role": "user", "content": "x\udfff"}])


id_items = st.one_of(st.integers(-2**40, 2**40), st.integers(0, 1030), st.floats(), st.none())
ids = st.one_of(st.none(), st.text(max_size=3), st.integers(), st.lists(id_items, max_size=4))


@given(token_ids=ids)
def test_fuzz_decode(tokenizer, token_ids):
    def check(text):
        bad = [i for i in token_ids if not isinstance(i, int) or not 0 <= i < len(tokenizer)]
        return f"decoded ids {bad} the tokenizer does not have" if bad else None
    classify("token ids", lambda: tokenizer.decode(token_ids), check, ("token id", "decode"))
