"""What GRPO learns from: prompts with reference answers, groups of sampled completions and their rewards,
and the choice of prompts (curriculum sampling) and of groups (dynamic sampling). No transformers
counterpart (TRL's `GRPOTrainer._generate_and_score_completions` and its samplers play this role).

    read_prompts(FILE.jsonl)      -> [RLPrompt]   the `train` format with only the user turn, plus "answer"
    sample_groups(model, ...)     -> Rollouts     G completions per prompt with the package's own generate,
                                                  at temperature 1 and top-p 1 (the paper's choice)
    Curriculum                    pass rate per prompt (the start model's, then an online EMA); prompts
                                  neither always nor never solved are drawn most often
    Expansion, select_groups      dynamic sampling: draw expansion_ratio x batch prompts, train on the groups
                                  whose rewards differ (an all-equal group has zero advantage), nearest to
                                  half right first

A data line:  {"messages": [{"role": "user", "content": "<image>How many shapes are there?"}],
               "images": ["p.png"], "answer": "2", "verifier": "number"}     ("verifier" is optional)
"""

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..generation.decoding import generate
from ..processing import special_tokens as st
from . import rewards
from .data import Conversation, DataError, collate, encode_prompt, parse_line


@dataclass
class RLPrompt:
    conversation: Conversation  # the prompt (messages, pictures) and where it comes from (path, line)
    answer: str  # the reference: the text inside <answer>…</answer>
    verifier: str | dict | None
    answer_type: str  # the verifier's name: what accuracy is counted by


def read_prompts(path) -> list[RLPrompt]:
    """Check every line of an RL data file (blank lines aside); a bad line raises DataError (file:line)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"RL data file {path} does not exist")
    prompts = []
    for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if text.strip():
            prompts.append(_parse(path, number, text))
    if not prompts:
        raise DataError(path, 1, "the file holds no prompts; write one JSON object per line")
    return prompts


def _parse(path: Path, number: int, text: str) -> RLPrompt:
    try:
        record = json.loads(text)
    except json.JSONDecodeError as error:
        raise DataError(path, number, f"invalid JSON ({error.msg} at column {error.colno})") from None
    if not isinstance(record, dict) or "answer" not in record:
        raise DataError(path, number, 'no "answer": an RL line is the user turn plus the reference answer, e.g. '
                        '{"messages": [{"role": "user", "content": "<image>How many shapes are there?"}], '
                        '"images": ["p.png"], "answer": "2"}')
    answer, verifier = record.pop("answer"), record.pop("verifier", None)
    try:
        answer_type = rewards.answer_type(answer, verifier)
    except ValueError as error:
        raise DataError(path, number, str(error)) from None
    messages = record.get("messages")
    last = messages[-1] if isinstance(messages, list) and messages else None
    if isinstance(last, dict) and last.get("role") != "user":
        raise DataError(path, number, "the last message must be the user's: the model writes the reply, and "
                        '"answer" holds the reference it is scored against')
    # the train command's checks, on the line with the answer as the assistant turn
    with_reply = {**record, "messages": [*messages, {"role": "assistant", "content": answer}]} if isinstance(
        messages, list) else record
    conversation = parse_line(path, number, json.dumps(with_reply))
    for image in conversation.images:  # now, not when the prompt is first drawn, maybe hours into a run
        try:
            with Image.open(image) as picture:
                picture.verify()
        except (OSError, SyntaxError) as error:
            raise DataError(path, number, f"cannot read image {image}: {error}") from None
    return RLPrompt(conversation, answer, verifier, answer_type)


@dataclass
class Rollouts:
    """One process's groups of one step: n prompts x G completions, row i * G + g is completion g of prompt i."""
    prompts: list[RLPrompt]
    examples: list[dict]  # each prompt's processor inputs (group_batch makes a batch of them)
    completion_ids: torch.Tensor  # (n * G, C), padded after the end of turn
    mask: torch.Tensor  # (n * G, C) 1 where a token carries loss: sampled, up to and including the end of turn
    texts: list[str]  # the completions decoded, special tokens kept
    lengths: list[int]  # tokens of each completion, the end of turn included
    rewards: torch.Tensor  # (n, G)
    correct: torch.Tensor  # (n, G) bool


@torch.no_grad()
def sample_groups(model, processor, prompts: list[RLPrompt], group_size: int, max_new_tokens: int,
                  thinking_budget: int, generator: torch.Generator) -> Rollouts:
    """Sample `group_size` completions per prompt (temperature 1, top-p 1) and score them.

    The vocabulary rows the tokenizer has no text for are never sampled. A completion still thinking after
    `thinking_budget` tokens is made to answer (`</think><answer>` forced, as the paper does on
    truncation); the forced tokens carry no loss, since the policy did not choose them."""
    tokenizer, device = processor.tokenizer, next(model.parameters()).device
    examples = [prompt_example(p, processor) for p in prompts]
    batch = group_batch(examples, group_size, processor, device)
    end_ids = tokenizer.convert_tokens_to_ids([st.END_THINK, st.ANSWER])
    out = generate(model, **batch, max_new_tokens=max_new_tokens, do_sample=True, temperature=1.0,
                   generator=generator, thinking_budget=thinking_budget, thinking_end_ids=end_ids,
                   suppress_tokens=tokenizer.ids_without_text(model.config.text_config.vocab_size))
    completion = out[:, batch["input_ids"].shape[1]:]
    C, eos = completion.shape[1], torch.tensor(model.config.text_config.eos_token_id, device=device).flatten()
    ends = torch.isin(completion, eos)
    length = torch.where(ends.any(1), ends.int().argmax(1) + 1, C)  # tokens up to and including the end of turn
    mask = (torch.arange(C, device=device) < length[:, None]).long()
    if thinking_budget < C:  # rows still going at the budget with no </think> yet had the tags forced there
        forced = (length > thinking_budget) & ~(completion[:, :thinking_budget] == end_ids[0]).any(1)
        mask[forced, thinking_budget:thinking_budget + len(end_ids)] = 0
    texts = [tokenizer.decode(row[:n].tolist()) for row, n in zip(completion, length.tolist())]
    scores = [rewards.reward(text, p.answer, p.verifier) for i, p in enumerate(prompts)
              for text in texts[i * group_size:(i + 1) * group_size]]
    shape = (len(prompts), group_size)
    return Rollouts(prompts, examples, completion, mask, texts, length.tolist(),
                    torch.tensor([s.reward for s in scores]).view(shape),
                    torch.tensor([s.correct for s in scores]).view(shape))


def group_batch(examples: list[dict], group_size: int, processor, device) -> dict:
    """The prompts' processor inputs, each repeated `group_size` times, left-padded: (n * G, P) tensors."""
    batch = collate([e for e in examples for _ in range(group_size)], processor)
    batch.pop("labels")
    return {k: v.to(device) for k, v in batch.items()}


def prompt_example(prompt: RLPrompt, processor) -> dict:
    """One prompt as data.collate takes it (ids as a list, no labels)."""
    inputs = encode_prompt(prompt.conversation, processor)
    media = {k: v for k, v in inputs.items() if k not in ("input_ids", "attention_mask", "mm_token_type_ids")}
    return {**media, "input_ids": inputs["input_ids"][0].tolist(), "labels": []}


# ----------------------------------------------------------------------------- curriculum sampling
class Curriculum:
    """A pass rate per prompt (NaN until first seen): seeded by the start model's offline pass rate, then an
    EMA of each group's share of right completions. Prompts are drawn with weight 4 p (1 - p) (1 at p = 1/2),
    at least `floor`; unseen prompts with weight 1. So a prompt always or never solved is drawn `floor`
    times as often as a prompt solved half the time: it would give an all-equal group, no signal."""

    def __init__(self, size: int, momentum: float = 0.5, floor: float = 0.05):
        self.rates = np.full(size, np.nan)
        self.momentum, self.floor = momentum, floor

    def weights(self) -> np.ndarray:
        p = self.rates
        return np.where(np.isnan(p), 1.0, np.maximum(self.floor, 4 * p * (1 - np.nan_to_num(p))))

    def sample(self, rng: np.random.Generator, count: int) -> list[int]:
        weights = self.weights()
        return rng.choice(len(weights), size=min(count, len(weights)), replace=False,
                          p=weights / weights.sum()).tolist()

    def update(self, index: int, rate: float) -> None:
        old = self.rates[index]
        self.rates[index] = rate if np.isnan(old) else self.momentum * old + (1 - self.momentum) * rate

    def tiers(self) -> dict[str, int]:
        """How many prompts are never solved, sometimes, always, or not seen yet."""
        p = self.rates
        seen = ~np.isnan(p)
        return {"never": int((p[seen] == 0).sum()), "sometimes": int(((p[seen] > 0) & (p[seen] < 1)).sum()),
                "always": int((p[seen] == 1).sum()), "unseen": int((~seen).sum())}


# ----------------------------------------------------------------------------- dynamic sampling
class Expansion:
    """The paper's expansion ratio 1 / (1 - not_valid_rate), where not_valid_rate is the share of groups
    whose rewards were all equal last step, kept as an EMA: draw that many more prompts than the batch
    needs, so a step still finds its batch of groups with signal. Capped at `limit`."""

    def __init__(self, momentum: float = 0.9, limit: float = 4.0):
        self.ratio, self.momentum, self.limit = 1.0, momentum, limit

    def update(self, not_valid_rate: float) -> None:
        target = self.limit if not_valid_rate >= 1 else min(self.limit, 1 / (1 - not_valid_rate))
        self.ratio = self.momentum * self.ratio + (1 - self.momentum) * target

    def prompts_for(self, batch: int) -> int:
        return math.ceil(batch * self.ratio)


def select_groups(rewards: torch.Tensor, batch: int) -> list[int]:
    """Indices of at most `batch` groups (rows of rewards (n, G)) with signal, nearest to half right first."""
    useful = [i for i in range(len(rewards)) if bool((rewards[i] != rewards[i, 0]).any())]
    return sorted(useful, key=lambda i: (abs(float(rewards[i].mean()) - 0.5), i))[:batch]
