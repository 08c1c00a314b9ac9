"""Choosing the next token: repetition penalty, temperature, top-k, top-p, seeded sampling.

Hand-made logits check the kept set and the renormalised distribution; random logits check the
processors against transformers' logits processors (the oracle)."""

import math

import pytest
import torch
from helpers import REPO
from torch.testing import assert_close

from minglm4v import Glm4vConfig, Glm4vForConditionalGeneration
from minglm4v.generation.decoding import next_tokens, penalize_repetition, top_k_filter, top_p_filter

INF = float("inf")


def kept(logits):
    return torch.isfinite(logits).nonzero()[:, -1].tolist()


# ----------------------------------------------------------------------------- hand-made logits
def test_repetition_penalty_divides_positive_and_multiplies_negative_seen_logits():
    logits = torch.tensor([[2.0, -2.0, 1.0, 0.5]])
    seen = torch.tensor([[True, True, False, False]])
    assert penalize_repetition(logits, seen, 2.0).tolist() == [[1.0, -4.0, 1.0, 0.5]]


def test_temperature_scales_the_distribution():
    logits = torch.tensor([[0.0, math.log(2.0)]])  # probabilities 1/3, 2/3
    gen = torch.Generator().manual_seed(0)
    # temperature 2 halves the log-odds: p = 1 / (1 + sqrt 2), sqrt 2 / (1 + sqrt 2)
    probs = (logits / 2.0).softmax(-1)
    assert_close(probs, torch.tensor([[1 / (1 + 2**0.5), 2**0.5 / (1 + 2**0.5)]]))
    tokens = next_tokens(logits.expand(40000, 2), None, do_sample=True, temperature=2.0, top_k=None, top_p=None,
                         repetition_penalty=1.0, generator=gen)
    assert abs(tokens.float().mean().item() - 2**0.5 / (1 + 2**0.5)) < 0.01


def test_top_k_keeps_the_k_largest_and_ties_with_the_kth():
    logits = torch.tensor([[1.0, 3.0, 2.0, 3.0, 0.0]])
    assert kept(top_k_filter(logits, 1)) == [1, 3]  # both 3.0s tie for first place
    assert kept(top_k_filter(logits, 3)) == [1, 2, 3]
    assert kept(top_k_filter(logits, 10)) == [0, 1, 2, 3, 4]  # k larger than the vocabulary
    assert top_k_filter(logits, 3)[0, 2] == 2.0  # kept logits are unchanged


@pytest.mark.parametrize("p, expected", [(0.4, [0]), (0.7, [0, 1]), (0.85, [0, 1, 2]), (1.0, [0, 1, 2, 3])])
def test_top_p_keeps_the_smallest_set_reaching_p(p, expected):
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    assert kept(top_p_filter(probs.log(), p)) == expected


def test_top_p_always_keeps_the_most_likely_token():
    logits = torch.tensor([[0.0, 10.0, 0.0]])  # p(top) ~ 0.9999 > any small p
    assert kept(top_p_filter(logits, 1e-5)) == [1]


def test_filtered_sampling_follows_the_renormalised_distribution():
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    logits = probs.log().expand(40000, 4)
    gen = torch.Generator().manual_seed(0)
    tokens = next_tokens(logits, None, do_sample=True, temperature=1.0, top_k=None, top_p=0.7,
                         repetition_penalty=1.0, generator=gen)
    counts = torch.bincount(tokens, minlength=4).float() / len(tokens)
    assert counts[2:].sum() == 0  # filtered tokens are never drawn
    assert abs(counts[0].item() - 0.5 / 0.8) < 0.01  # kept ones in proportion: 0.625 / 0.375
    tokens = next_tokens(logits, None, do_sample=True, temperature=1.0, top_k=3, top_p=None,
                         repetition_penalty=1.0, generator=gen)
    counts = torch.bincount(tokens, minlength=4).float() / len(tokens)
    assert counts[3] == 0 and abs(counts[2].item() - 0.15 / 0.95) < 0.01


def test_greedy_takes_the_argmax_after_the_repetition_penalty():
    logits = torch.tensor([[3.0, 2.0, -1.0]])
    seen = torch.tensor([[True, False, False]])
    pick = dict(do_sample=False, temperature=1.0, top_k=None, top_p=None, generator=None)
    assert next_tokens(logits, seen, repetition_penalty=1.0, **pick).item() == 0
    assert next_tokens(logits, seen, repetition_penalty=2.0, **pick).item() == 1  # 3 / 2 < 2


# ----------------------------------------------------------------------------- the transformers oracle
@pytest.fixture(scope="module")
def hf_processors():
    from transformers.generation import logits_process
    return logits_process


def test_processors_match_transformers_on_random_logits(hf_processors):
    gen = torch.Generator().manual_seed(0)
    scores = 3 * torch.randn(8, 300, generator=gen)
    ids = torch.randint(0, 300, (8, 40), generator=gen)
    seen = torch.zeros(8, 300, dtype=torch.bool).scatter(1, ids, True)
    hf = hf_processors
    assert_close(penalize_repetition(scores, seen, 1.3), hf.RepetitionPenaltyLogitsProcessor(1.3)(ids, scores.clone()))
    assert_close(scores / 0.7, hf.TemperatureLogitsWarper(0.7)(ids, scores.clone()))
    for k in (1, 5, 50):
        assert torch.equal(top_k_filter(scores, k), hf.TopKLogitsWarper(k)(ids, scores.clone()))
    for p in (0.05, 0.5, 0.9, 0.99):
        assert torch.equal(top_p_filter(scores, p), hf.TopPLogitsWarper(p)(ids, scores.clone()))
    suppress = [0, 7, 299]
    assert torch.equal(next_tokens(scores, suppress_tokens=torch.tensor(suppress)),
                       hf.SuppressTokensLogitsProcessor(suppress)(ids, scores.clone()).argmax(-1))


# ----------------------------------------------------------------------------- sampling in generate()
@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = Glm4vForConditionalGeneration(Glm4vConfig.tiny()).eval()
    with torch.no_grad():  # larger logits than the 0.02 init, so that sampling has something to choose
        m.lm_head.weight.normal_(0, 0.5)
    return m


PROMPT = torch.tensor([[5, 6, 7, 8, 9]])
SAMPLING = dict(do_sample=True, temperature=0.9, top_k=50, top_p=0.95, repetition_penalty=1.2, eos_token_id=[],
                max_new_tokens=12)


def test_seeded_sampling_is_reproducible(model):
    first = model.generate(PROMPT, generator=torch.Generator().manual_seed(1), **SAMPLING)
    again = model.generate(PROMPT, generator=torch.Generator().manual_seed(1), **SAMPLING)
    other = model.generate(PROMPT, generator=torch.Generator().manual_seed(2), **SAMPLING)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    assert len(set(first[0, 5:].tolist())) > 3  # really sampled, not one repeated token


def test_sampling_matches_transformers_with_the_same_global_seed(model):
    """Same processors in the same order and one torch.multinomial per step: with the same global
    RNG state both implementations draw the same tokens."""
    from transformers import Glm4vConfig as HFConfig
    from transformers import Glm4vForConditionalGeneration as HF
    hf = HF(HFConfig.from_dict(model.config.to_dict())).eval()
    hf.load_state_dict(model.state_dict())
    hf.generation_config.eos_token_id = None  # never stop, like eos_token_id=[] for ours
    settings = {k: v for k, v in SAMPLING.items() if k != "eos_token_id"}
    torch.manual_seed(3)
    ours = model.generate(PROMPT, eos_token_id=[], **settings)
    torch.manual_seed(3)
    theirs = hf.generate(PROMPT, attention_mask=torch.ones_like(PROMPT), **settings)
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize("kwargs, match", [
    (dict(do_sample=True, temperature=0.0), "temperature must be > 0"),
    (dict(do_sample=True, top_k=0), "top_k must be a positive int"),
    (dict(do_sample=True, top_p=1.5), r"top_p must lie in \(0, 1\]"),
    (dict(repetition_penalty=0.0), "repetition_penalty must be > 0"),
    (dict(temperature=0.5), "pass do_sample=True"),
    (dict(top_p=0.9), "pass do_sample=True"),
])
def test_bad_sampling_settings_are_rejected(model, kwargs, match):
    with pytest.raises(ValueError, match=match):
        model.generate(PROMPT, max_new_tokens=2, **kwargs)


def test_suppressed_tokens_are_never_generated(model):
    """The tokens a free run samples most are suppressed: 64 rows x 12 steps never produce one, and greedy
    decoding takes the best of the rest."""
    settings = dict(do_sample=True, eos_token_id=[], max_new_tokens=12)
    free = model.generate(PROMPT.expand(64, -1), generator=torch.Generator().manual_seed(0), **settings)[:, 5:]
    common = free.flatten().bincount().topk(5).indices
    assert int(torch.isin(free, common).sum()) > 64  # they were really being sampled
    held = model.generate(PROMPT.expand(64, -1), generator=torch.Generator().manual_seed(0),
                          suppress_tokens=common.tolist(), **settings)[:, 5:]
    assert not bool(torch.isin(held, common).any())
    greedy = model.generate(PROMPT, max_new_tokens=1, eos_token_id=[])[0, -1]
    second = model.generate(PROMPT, max_new_tokens=1, eos_token_id=[], suppress_tokens=[int(greedy)])[0, -1]
    logits = model(PROMPT).logits[0, -1]
    assert int(second) == int(logits.topk(2).indices[1])


def test_the_micro_models_padding_rows_are_the_ids_without_text():
    from minglm4v import Glm4vProcessor
    tokenizer = Glm4vProcessor.from_pretrained(REPO / "data" / "micro-model").tokenizer
    vocab = Glm4vConfig.from_pretrained(REPO / "data" / "micro-model").text_config.vocab_size
    assert (len(tokenizer), vocab) == (1034, 1040)
    assert tokenizer.ids_without_text(vocab) == [1034, 1035, 1036, 1037, 1038, 1039]
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tokenizer.decode([1037])  # why they must never be sampled


@pytest.mark.parametrize("ids", [[-1], [10_000], [1.5]])
def test_bad_suppress_tokens_are_rejected(model, ids):
    with pytest.raises(ValueError, match="suppress_tokens must be token ids"):
        model.generate(PROMPT, max_new_tokens=2, suppress_tokens=ids)
