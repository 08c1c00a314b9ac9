"""generate(): greedy tokens equal transformers' on the oracle fixtures, the KV cache equals full
recomputation, eos/padding, the thinking budget, streaming, and argument errors."""

import inspect
import math

import pytest
import torch
from helpers import IDS, TINY, classify, load_ours, model_inputs
from hypothesis import given
from hypothesis import strategies as st
from torch.testing import assert_close

from minglm4v.generation import decoding
from minglm4v.generation.streaming import TextIteratorStreamer, TextStreamer, stream_generate

NEW = 20  # new tokens per oracle comparison (>= 16 asked for)
THINK_END, ANSWER = 1017, 1018  # '</think>', '<answer>' in the fixture tokenizer (data/tokenizer)


def greedy_pair(ours, hf, case, **kwargs):
    inputs = model_inputs(case)
    mine = ours.generate(**inputs, max_new_tokens=NEW, **kwargs)
    theirs = hf.generate(**inputs, max_new_tokens=NEW, do_sample=False, **kwargs)
    return inputs, mine, theirs


# ----------------------------------------------------------------------------- the oracle
@pytest.mark.parametrize("name", ["text", "image", "two_images", "video", "batch"])
def test_greedy_tokens_equal_transformers(ours_tiny, hf_tiny, oracle_cases, name):
    inputs, mine, theirs = greedy_pair(ours_tiny, hf_tiny, oracle_cases[name])
    length = inputs["input_ids"].shape[1]
    assert mine.shape == (inputs["input_ids"].shape[0], length + NEW)  # no row hit eos: all NEW compared
    assert torch.equal(mine, theirs)
    assert all(len(set(row)) > 5 for row in mine[:, length:].tolist())  # not one token repeated


def test_finished_rows_are_padded_like_transformers(ours_tiny, hf_tiny, oracle_cases):
    case = oracle_cases["batch"]
    plain = ours_tiny.generate(**model_inputs(case), max_new_tokens=NEW)
    L = case["input_ids"].shape[1]
    eos = plain[0, L + 2].item()  # row 0's third new token becomes an end-of-sequence token
    assert eos not in plain[1, L:].tolist()  # ... that row 1 never produces
    _, mine, theirs = greedy_pair(ours_tiny, hf_tiny, case, eos_token_id=eos)
    assert torch.equal(mine, theirs)
    pad = ours_tiny.config.text_config.pad_token_id
    assert mine[0, L + 3:].tolist() == [pad] * (NEW - 3)
    assert torch.equal(mine[1], plain[1])


@pytest.mark.parametrize("name", ["image", "batch"])
def test_cached_logits_equal_recomputing_everything(ours_tiny, oracle_cases, name):
    inputs = model_inputs(oracle_cases[name])
    steps, calls = [], []
    hooks = [ours_tiny.lm_head.register_forward_hook(lambda m, a, out: steps.append(out[:, -1])),
             ours_tiny.model.language_model.embed_tokens.register_forward_hook(
                 lambda m, a, out: calls.append(tuple(a[0].shape)))]
    try:
        tokens = ours_tiny.generate(**inputs, max_new_tokens=8, eos_token_id=[])
    finally:
        for h in hooks:
            h.remove()
    B, L = inputs["input_ids"].shape
    assert calls == [(B, L)] + [(B, 1)] * 7  # the prompt is run once; each step feeds one token
    mask = torch.cat([inputs["attention_mask"], torch.ones(B, 8, dtype=torch.long)], dim=1)
    for k, cached in enumerate(steps):
        full = dict(inputs, input_ids=tokens[:, :L + k], attention_mask=mask[:, :L + k],
                    mm_token_type_ids=torch.nn.functional.pad(inputs["mm_token_type_ids"], (0, k)))
        with torch.no_grad():
            uncached = ours_tiny(**full).logits[:, -1]
        assert_close(cached, uncached, rtol=1e-5, atol=1e-5)



def test_decode_step_k_uses_row_k_of_the_new_tokens_tables(ours_tiny):
    """generate asks the decoder's attention_inputs once for all new tokens: row k of the mask, cut to the
    L + k + 1 keys that exist then, is the mask of a one-token forward at step k, and the tables' row k
    are those of position k alone."""
    from minglm4v.model.decoder import attention_mask_4d
    decoder, new = ours_tiny.language_model, 5
    padding = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    L = padding.shape[1]
    positions = torch.arange(new).expand(3, 2, new) + 7
    keys = torch.nn.functional.pad(padding, (0, new), value=1)
    cos, sin, mask = decoder.attention_inputs(positions, keys, past=L)
    for k in range(new):
        assert torch.equal(mask[:, :, k:k + 1, :L + k + 1], attention_mask_4d(keys[:, :L + k + 1], 1, L + k,
                                                                               torch.float32))
        alone = decoder.attention_inputs(positions[..., k:k + 1], keys[:, :L + k + 1], past=L + k)
        assert torch.equal(cos[:, :, k:k + 1], alone[0]) and torch.equal(sin[:, :, k:k + 1], alone[1])


def test_the_cache_is_written_in_place_and_can_be_passed_in(ours_tiny, oracle_cases):
    """The default KVCache is preallocated for prompt + new tokens and filled in place; a cache passed
    as `cache=` is the one filled, with the same tokens as a fresh one."""
    inputs = model_inputs(oracle_cases["batch"])
    B, L = inputs["input_ids"].shape
    cache = decoding.KVCache(ours_tiny.config.text_config.num_hidden_layers, L + 6)
    tokens = ours_tiny.generate(**inputs, max_new_tokens=6, eos_token_id=[], cache=cache)
    assert torch.equal(tokens, ours_tiny.generate(**inputs, max_new_tokens=6, eos_token_id=[]))
    assert cache.length == L + 5 and cache.keys[0].shape[2] == L + 6  # the last token is never fed back
    with pytest.raises(ValueError, match="cache already holds"):
        ours_tiny.generate(**inputs, max_new_tokens=2, cache=cache)
    with pytest.raises(ValueError, match="KVCache holds 3 tokens"):
        ours_tiny.generate(**inputs, max_new_tokens=2, cache=decoding.KVCache(2, 3))
    with pytest.raises(TypeError, match="cache must have update"):
        ours_tiny.generate(**inputs, max_new_tokens=2, cache=[])

# ----------------------------------------------------------------------------- thinking budget
def test_thinking_budget_forces_the_answer_after_n_tokens(ours_tiny, oracle_cases):
    inputs = model_inputs(oracle_cases["text"])
    L = inputs["input_ids"].shape[1]
    plain = ours_tiny.generate(**inputs, max_new_tokens=6, eos_token_id=[])
    assert THINK_END not in plain[0, L:].tolist()
    capped = ours_tiny.generate(**inputs, max_new_tokens=12, eos_token_id=[], thinking_budget=3,
                                thinking_end_ids=[THINK_END, ANSWER])
    assert torch.equal(capped[:, :L + 3], plain[:, :L + 3])
    assert capped[0, L + 3:L + 5].tolist() == [THINK_END, ANSWER]
    # after the forced tags the model simply continues: the same as prompting with them
    forced_prompt = capped[:, :L + 5]
    resumed = ours_tiny.generate(forced_prompt, max_new_tokens=7, eos_token_id=[])
    assert torch.equal(capped, resumed)


def test_thinking_budget_leaves_rows_alone_that_closed_thinking(ours_tiny, oracle_cases):
    inputs = model_inputs(oracle_cases["batch"])
    L = inputs["input_ids"].shape[1]
    plain = ours_tiny.generate(**inputs, max_new_tokens=8, eos_token_id=[])
    closing = plain[0, L + 1].item()  # pretend row 0's second token is '</think>'
    assert closing not in plain[1, L:L + 4].tolist()
    out = ours_tiny.generate(**inputs, max_new_tokens=8, eos_token_id=[], thinking_budget=4,
                             thinking_end_ids=[closing, ANSWER])
    assert torch.equal(out[0], plain[0])
    assert out[1, L + 4:L + 6].tolist() == [closing, ANSWER]


def test_thinking_budget_zero_answers_at_once(ours_tiny, oracle_cases):
    inputs = model_inputs(oracle_cases["text"])
    out = ours_tiny.generate(**inputs, max_new_tokens=3, eos_token_id=[], thinking_budget=0,
                             thinking_end_ids=[THINK_END, ANSWER])
    assert out[0, -3:-1].tolist() == [THINK_END, ANSWER]


# ----------------------------------------------------------------------------- streaming
class ByteTokenizer:
    """One token per UTF-8 byte: multi-byte characters really are split over tokens."""

    def decode(self, ids, skip_special_tokens=True):
        return bytes(ids).decode("utf-8", errors="replace")


def test_streamer_never_emits_half_a_character():
    text = "naïve café 😀 → 北京\nnext line ✓"
    pieces = []
    streamer = TextStreamer(ByteTokenizer(), on_text=pieces.append)
    streamer.put(torch.tensor([[104, 105]]))  # the prompt, skipped
    for byte in text.encode():
        streamer.put(torch.tensor([byte]))
    streamer.end()
    assert "".join(pieces) == text
    assert not any("\ufffd" in piece for piece in pieces)
    assert "😀" in pieces  # emitted once all four of its bytes arrived, not before
    assert len(pieces) > 15  # streamed character by character, not all at the end


def test_streamer_end_flushes_an_unfinished_character():
    pieces = []
    streamer = TextStreamer(ByteTokenizer(), on_text=pieces.append, skip_prompt=False)
    streamer.put(torch.tensor([[104, 105]]))
    streamer.put(torch.tensor(list("😀".encode()[:2])))
    assert pieces == ["hi"]
    streamer.end()
    assert pieces == ["hi", "\ufffd"]


def test_streamed_text_is_the_decoded_output(ours_tiny, oracle_cases, tokenizer):
    inputs = model_inputs(oracle_cases["image"])
    pieces = []
    out = ours_tiny.generate(**inputs, max_new_tokens=12, streamer=TextStreamer(tokenizer, on_text=pieces.append))
    L = inputs["input_ids"].shape[1]
    assert len(pieces) > 1
    assert "".join(pieces) == tokenizer.decode(out[0, L:], skip_special_tokens=True)
    iterated = "".join(stream_generate(ours_tiny, tokenizer, **inputs, max_new_tokens=12))
    assert iterated == "".join(pieces)


def test_iterator_streamer_reraises_the_generation_error(ours_tiny, tokenizer):
    with pytest.raises(ValueError, match="max_new_tokens must be a positive int"):
        list(stream_generate(ours_tiny, tokenizer, torch.tensor([[5, 6]]), max_new_tokens=0))


def test_streamer_refuses_a_batch(ours_tiny, oracle_cases, tokenizer):
    with pytest.raises(ValueError, match="one sequence, got a batch of 2"):
        ours_tiny.generate(**model_inputs(oracle_cases["batch"]), max_new_tokens=2,
                           streamer=TextIteratorStreamer(tokenizer))


# ----------------------------------------------------------------------------- the API and its errors
def test_model_generate_spells_out_the_same_signature():
    from minglm4v import Glm4vForConditionalGeneration
    ours = list(inspect.signature(decoding.generate).parameters.values())[1:]  # minus `model`
    method = list(inspect.signature(Glm4vForConditionalGeneration.generate).parameters.values())[1:]  # minus self
    assert ours == method


def test_unknown_arguments_are_named(ours_tiny):
    with pytest.raises(TypeError, match="num_beams"):
        ours_tiny.generate(torch.tensor([[5, 6]]), num_beams=4)


@pytest.mark.parametrize("kwargs, match", [
    (dict(input_ids=torch.tensor([5, 6, 7])), r"input_ids must be \(batch, length\), got shape \(3,\)"),
    (dict(max_new_tokens=0), "max_new_tokens must be a positive int"),
    (dict(attention_mask=torch.tensor([[1, 1, 0]])), "pad on the left"),
    (dict(attention_mask=torch.tensor([[1, 1]])), r"attention_mask must be a tensor of shape \(batch, cached \+ new "
                                                  r"tokens\) = \(1, 3\), got \(1, 2\)"),
    (dict(max_new_tokens=1022), r"0 cached \+ 3 new tokens \+ max_new_tokens 1022 exceed the model's "
                                r"max_position_embeddings \(1024\); .* or lower max_new_tokens"),
    (dict(eos_token_id=[5000]), "eos_token_id must be token ids"),
    (dict(thinking_budget=4), "thinking_budget and thinking_end_ids go together"),
    (dict(thinking_budget=-1, thinking_end_ids=[1, 2]), "thinking_budget must be an int >= 0"),
    (dict(thinking_budget=1, thinking_end_ids=[]), "thinking_end_ids must be token ids"),
])
def test_bad_arguments_are_explained(ours_tiny, kwargs, match):
    kwargs = {"input_ids": torch.tensor([[5, 6, 7]]), **kwargs}
    with pytest.raises(ValueError, match=match):
        ours_tiny.generate(**kwargs)


def test_streamer_without_put_is_a_type_error(ours_tiny):
    with pytest.raises(TypeError, match=r"streamer must have put\(token_ids\) and end\(\)"):
        ours_tiny.generate(torch.tensor([[5, 6]]), streamer=print)


# ---- bad arguments
@pytest.mark.parametrize("kwargs, error, message", [
    (dict(input_ids=torch.zeros(1, 0, dtype=torch.long)), ValueError, r"got shape \(1, 0\); a prompt needs at least"),
    (dict(attention_mask=torch.tensor([[2, 1, 1, 1]])), ValueError, r"only 0 \(padding\) and 1 \(token\)"),
    (dict(attention_mask=torch.tensor([[0.5, 1, 1, 1]])), ValueError, r"only 0 \(padding\) and 1 \(token\)"),
    (dict(do_sample=True, temperature="0.7"), TypeError, "temperature must be a finite number, got str '0.7'"),
    (dict(do_sample=True, temperature=float("nan")), TypeError, "temperature must be a finite number, got float nan"),
    (dict(do_sample=True, top_p="0.9"), TypeError, "top_p must be a finite number, got str"),
    (dict(repetition_penalty=float("inf")), TypeError, "repetition_penalty must be a finite number"),
    (dict(do_sample=True, top_k=2.0), ValueError, r"top_k must be a positive int \(or None\), got 2.0"),
    (dict(max_new_tokens=True), ValueError, "max_new_tokens must be a positive int, got True"),
])
def test_generate_arguments(ours_tiny, kwargs, error, message):
    with pytest.raises(error, match=message):
        ours_tiny.generate(**{"input_ids": IDS, "max_new_tokens": 2, **kwargs})


def test_generate_without_a_usable_pad_id():
    model = load_ours(TINY)
    model.config.text_config.pad_token_id = None
    with pytest.raises(ValueError, match=r"text_config.pad_token_id must be a token id in \[0, 1024\) .*got None"):
        model.generate(IDS, max_new_tokens=2)


@pytest.mark.parametrize("do_sample", [False, True])
def test_nan_logits_stop_generation_with_likely_causes(nan_model_dir, do_sample):
    model = load_ours(nan_model_dir)
    with pytest.raises(ValueError, match=r"the model produced NaN or infinite logits at generation step 0; likely "
                                         r"causes: NaN/inf weights in the checkpoint, NaN/inf pixel values"):
        model.generate(IDS, max_new_tokens=2, do_sample=do_sample)


numbers = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-2, 5), st.text(max_size=3), st.none())


@given(kwargs=st.fixed_dictionaries({}, optional={
    "max_new_tokens": st.one_of(st.integers(-1, 3), st.just(2.0), st.just(True)), "do_sample": st.booleans(),
    "temperature": numbers, "top_k": numbers, "top_p": numbers, "repetition_penalty": numbers}))
def test_fuzz_generate(ours_tiny, kwargs):
    prompt = torch.tensor([[5, 6, 7]])
    kwargs.setdefault("max_new_tokens", 2)

    def check(out):
        t = kwargs.get("temperature", 1.0)
        if kwargs.get("do_sample") and not (isinstance(t, (int, float)) and math.isfinite(t) and t > 0):
            return f"sampled with temperature {t!r}"
        new = out.shape[1] - prompt.shape[1]
        if not 1 <= new <= kwargs["max_new_tokens"] or out.min() < 0 or out.max() >= 1024:
            return f"output {out.tolist()}"
    culprits = tuple(kwargs) + ("do_sample",)
    classify("generate", lambda: ours_tiny.generate(prompt, **kwargs), check, culprits)
