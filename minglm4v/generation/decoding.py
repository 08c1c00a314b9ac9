"""Generating text with GLM-4.1V: a KV cache, M-RoPE positions while decoding, greedy and sampled
next tokens, eos/padding, streaming and a thinking budget.

Corresponds to transformers' `GenerationMixin.generate` (greedy search and sampling only), `StaticCache`,
and the logits processors `RepetitionPenaltyLogitsProcessor`, `TemperatureLogitsWarper`,
`TopKLogitsWarper`, `TopPLogitsWarper` (applied in that order, as transformers does).

    input_ids (B, L), left-padded      -> generate(model, ...)      -> (B, L + new) token ids
    prefill:  one forward over the prompt (images/videos included) fills the cache and gives each
              row's rope delta; the k-th new token sits at max prompt position + 1 + k in all three
              M-RoPE streams (text tokens advance t, h and w together).
    decode:   one step per new token (decode_step): the newest token through the decoder layers,
              attending to the cache of post-RoPE keys. What does not change from step to step
              (the cache buffers, the rotary tables of every new position, the padding mask) is
              made once, before the first step; a step only slices out its part.

The decoder's seam is all this module uses of the model's inside: `attention_inputs` (rotary tables and
mask) and `step` (the layers over new embeddings, extending the cache), plus `embed_tokens` and
`lm_head`; the decoder only calls `cache.update` and reads `cache.length`. The model binds `generate`
as its method (`model.generate(**inputs)`, as in transformers), which is its one link to this module.
"""

import math

import torch
import torch.nn.functional as F

from ..base.checks import check_prompt, is_int, is_number


class KVCache:
    """Keys and values of every decoder layer, in buffers (B, kv_heads, capacity, head_dim) allocated at
    the first update and written in place; `update` returns views of the filled part.

    Growing the cache with torch.cat instead copies all of it at every step: O(length) work per token
    that this avoids (benchmarks/bench_generate.py --compare-cache measures the two on a long prompt)."""

    def __init__(self, num_layers: int, capacity: int):
        self.keys: list[torch.Tensor | None] = [None] * num_layers
        self.values: list[torch.Tensor | None] = [None] * num_layers
        self.capacity = capacity
        self.length = 0  # tokens stored by earlier steps; advanced when the last layer has written

    def update(self, layer_idx: int, k: torch.Tensor, v: torch.Tensor):
        """Store this step's k, v (B, kv_heads, L_new, head_dim); return all keys and values so far."""
        end = self.length + k.shape[2]
        if self.keys[layer_idx] is None:
            shape = (k.shape[0], k.shape[1], self.capacity, k.shape[3])
            self.keys[layer_idx], self.values[layer_idx] = k.new_empty(shape), v.new_empty(shape)
        if end > self.capacity:
            raise ValueError(f"KVCache holds {self.capacity} tokens; storing {end} needs a larger capacity")
        keys, values = self.keys[layer_idx], self.values[layer_idx]
        keys[:, :, self.length:end] = k
        values[:, :, self.length:end] = v
        if layer_idx == len(self.keys) - 1:
            self.length = end
        return keys[:, :, :end], values[:, :, :end]


# ----------------------------------------------------------------------------- choosing the next token
def penalize_repetition(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """Make every token already in the sequence (seen (B, V) bool) less likely: positive logits are
    divided by `penalty`, negative ones multiplied (CTRL-style; dividing a negative would raise it)."""
    penalized = torch.where(logits < 0, logits * penalty, logits / penalty)
    return torch.where(seen, penalized, logits)


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest logits of each row (ties with the k-th included); the rest become -inf."""
    kth = logits.topk(min(k, logits.shape[-1]), dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filter: keep the smallest set of most likely tokens whose probabilities sum to >= p.
    A token is kept when the tokens ranked above it hold less than p, so the top one always stays."""
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    probs = sorted_logits.softmax(dim=-1)
    mass_above = probs.cumsum(dim=-1) - probs
    drop_sorted = mass_above >= p
    drop = drop_sorted.scatter(-1, order, drop_sorted)  # back to vocabulary order
    return logits.masked_fill(drop, float("-inf"))


def next_tokens(logits, seen=None, *, do_sample=False, temperature=1.0, top_k=None, top_p=None,
                repetition_penalty=1.0, generator=None, suppress_tokens=None):
    """logits (B, V) fp32 -> token ids (B,). The warpers only shape the sampling distribution, so
    greedy decoding ignores them (and generate() refuses them without do_sample). `suppress_tokens`
    (a tensor of ids) can never be chosen, greedy or sampled."""
    if repetition_penalty != 1.0:
        logits = penalize_repetition(logits, seen, repetition_penalty)
    if suppress_tokens is not None:
        logits = logits.index_fill(-1, suppress_tokens, float("-inf"))
    if not do_sample:
        return logits.argmax(dim=-1)
    logits = logits / temperature
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None and top_p < 1.0:
        logits = top_p_filter(logits, top_p)
    return torch.multinomial(logits.softmax(dim=-1), 1, generator=generator)[:, 0]


# ----------------------------------------------------------------------------- thinking budget
class ThinkingBudget:
    """After `budget` generated tokens with no `</think>` among them, force `</think><answer>` (the
    `end_ids`) into the output, one per step, and let the model write its answer — what the official
    GLM-4.1V benchmark script does when a reply runs out of tokens while still thinking."""

    def __init__(self, budget: int, end_ids, batch: int, device):
        self.budget = budget
        self.end_ids = torch.tensor(end_ids, device=device)
        self.spent = 0
        self.closed = torch.zeros(batch, dtype=torch.bool, device=device)  # </think> already in the row
        self.forcing = torch.full((batch,), -1, device=device)  # index into end_ids to force next, -1: none

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.spent >= self.budget:
            self.forcing[~self.closed & (self.forcing < 0)] = 0
        active = self.forcing >= 0
        tokens = torch.where(active, self.end_ids[self.forcing.clamp(min=0)], tokens)
        self.forcing = torch.where(active, self.forcing + 1, self.forcing)
        self.forcing[self.forcing == len(self.end_ids)] = -1
        self.closed |= tokens == self.end_ids[0]
        self.spent += 1
        return tokens


# ----------------------------------------------------------------------------- the loop
@torch.inference_mode()  # why not no_grad: it also skips autograd's view and version tracking, ~13% per token
def generate(model, input_ids, *, attention_mask=None, pixel_values=None, image_grid_thw=None,
             pixel_values_videos=None, video_grid_thw=None, mm_token_type_ids=None, max_new_tokens=256,
             do_sample=False, temperature=1.0, top_k=None, top_p=None, repetition_penalty=1.0,
             eos_token_id=None, generator=None, streamer=None, thinking_budget=None, thinking_end_ids=None,
             cache=None, compile=False, suppress_tokens=None):
    """Continue each (left-padded) prompt by up to `max_new_tokens` tokens; returns (B, L + new).

    A row stops at the first of `eos_token_id` (default: text_config.eos_token_id; [] never stops)
    and is then filled with text_config.pad_token_id until every row has stopped. `streamer` gets
    `put(ids)` with the prompt (B, L), then each new token (B,), and `end()`. `thinking_budget` with
    `thinking_end_ids` (ids of `</think>`, `<answer>`) caps the thinking part (see ThinkingBudget).
    `cache`: an empty object with `update` and `length` to fill instead of a new KVCache.
    `compile=True` runs the decode steps through torch.compile (opt-in: the first call compiles).
    `suppress_tokens`: ids never to generate, e.g. the rows of a model's vocabulary that its tokenizer has
    no text for (`Glm4vTokenizer.ids_without_text`): a model whose vocab_size is padded can sample them."""
    text = model.config.text_config
    eos = text.eos_token_id if eos_token_id is None else eos_token_id
    eos = [eos] if isinstance(eos, int) else list(eos)
    attention_mask = _check_inputs(input_ids, attention_mask, max_new_tokens, text.max_position_embeddings)
    _check_sampling(do_sample, temperature, top_k, top_p, repetition_penalty, eos, text.pad_token_id, text.vocab_size)
    if streamer is not None and not all(callable(getattr(streamer, name, None)) for name in ("put", "end")):
        raise TypeError(f"streamer must have put(token_ids) and end() methods (e.g. minglm4v.generation.streaming."
                        f"TextStreamer), got {type(streamer).__name__}")
    _check_cache(cache)
    device, (B, L), V = input_ids.device, input_ids.shape, text.vocab_size
    budget = None
    if thinking_budget is not None or thinking_end_ids is not None:
        _check_thinking(thinking_budget, thinking_end_ids, V)
        budget = ThinkingBudget(thinking_budget, thinking_end_ids, B, device)
    seen = None
    if repetition_penalty != 1.0:  # padding goes to a spare column V, so it never counts as seen
        seen = torch.zeros(B, V + 1, dtype=torch.bool, device=device)
        seen = seen.scatter(1, input_ids.masked_fill(attention_mask == 0, V), True)[:, :V]
    eos, pad = torch.tensor(eos, dtype=torch.long, device=device), text.pad_token_id
    if suppress_tokens is not None:
        suppress_tokens = _check_suppress(suppress_tokens, V, device)

    if streamer is not None:
        streamer.put(input_ids)
    cache = KVCache(text.num_hidden_layers, L + max_new_tokens) if cache is None else cache
    out = model(input_ids, attention_mask=attention_mask, pixel_values=pixel_values, image_grid_thw=image_grid_thw,
                pixel_values_videos=pixel_values_videos, video_grid_thw=video_grid_thw,
                mm_token_type_ids=mm_token_type_ids, cache=cache, logits_to_keep=1)
    logits = out.logits[:, -1]
    # what changes from step to step is only which slice of these is used, so they are made once:
    # rope delta = max prompt position + 1 - real tokens, so step k's position is real length + delta + k
    first = attention_mask.sum(dim=-1, keepdim=True) + out.rope_deltas.to(device)  # (B, 1)
    positions = first + torch.arange(max_new_tokens, device=device)  # (B, new): text, so t = h = w
    positions, decoder = positions[None].expand(3, -1, -1), model.language_model
    if bool(attention_mask.all()):  # nothing padded: the tables alone, as a single query may see every key
        cos, sin, mask = decoder.attention_inputs(positions, dtype=logits.dtype)
    else:
        keys = F.pad(attention_mask, (0, max_new_tokens), value=1)  # prompt padding, then the new tokens
        cos, sin, mask = decoder.attention_inputs(positions, keys, past=L, dtype=logits.dtype)
    cos, sin = cos.split(1, dim=2), sin.split(1, dim=2)  # step k's row (B, 1, 1, head_dim), as views
    rows = None if mask is None else mask.split(1, dim=2)  # step k's row (B, 1, 1, L + new)
    step_fn = torch.compile(decode_step, dynamic=True) if compile else decode_step
    tokens = [input_ids]
    # which rows have met an end token; None with eos_token_id=[], where no row stops (5 operators less a step)
    finished = torch.zeros(B, dtype=torch.bool, device=device) if eos.numel() else None
    for step in range(max_new_tokens):
        token = next_tokens(_check_logits(logits.float(), step), seen, do_sample=do_sample, temperature=temperature,
                            top_k=top_k, top_p=top_p, repetition_penalty=repetition_penalty, generator=generator,
                            suppress_tokens=suppress_tokens)
        if budget is not None:
            token = budget(token)
        if finished is not None:
            token = token.masked_fill(finished, pad)
        tokens.append(token[:, None])
        if streamer is not None:
            streamer.put(token)
        if seen is not None:
            seen[torch.arange(B, device=device), token] = True
        if finished is not None:
            finished |= torch.isin(token, eos)
            if bool(finished.all()):
                break
        if step == max_new_tokens - 1:
            break
        row = None if rows is None else rows[step][..., :L + step + 1]  # the keys that exist now
        logits = step_fn(model, token, cos[step], sin[step], row, cache)
    if streamer is not None:
        streamer.end()
    with torch.inference_mode(False):  # the result is an ordinary tensor: the caller may write into it
        return torch.cat(tokens, dim=1)


def decode_step(model, token, cos, sin, mask, cache):
    """token (B,) -> logits (B, V) of the next position: the decoder's `step` on one new token per row,
    with the rotary tables (B, 1, 1, head_dim) and mask (B, 1, 1, keys) of this step already prepared.
    Unlike model(...), nothing is checked or derived again: the loop made it all for every step at once."""
    decoder = model.language_model
    hidden = decoder.step(decoder.embed_tokens(token[:, None]), cos, sin, mask, cache)
    return model.lm_head(hidden)[:, -1]


# ----------------------------------------------------------------------------- argument checks
def _check_inputs(input_ids, attention_mask, max_new_tokens, max_positions):
    if not is_int(max_new_tokens) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be a positive int, got {max_new_tokens!r}")
    check_prompt(input_ids, attention_mask, 0, max_positions, max_new_tokens)
    if attention_mask is None:
        return torch.ones_like(input_ids)
    if bool((attention_mask[:, -1] == 0).any()):
        raise ValueError("a prompt ends in padding (attention_mask[:, -1] == 0): generation appends to the "
                         "right, so pad on the left (tokenizer/processor padding_side='left')")
    return attention_mask.long()


def _check_sampling(do_sample, temperature, top_k, top_p, repetition_penalty, eos, pad, vocab):
    for name, value in (("temperature", temperature), ("repetition_penalty", repetition_penalty),
                        ("top_p", 1.0 if top_p is None else top_p)):
        if not is_number(value) or not math.isfinite(value):
            raise TypeError(f"{name} must be a finite number, got {type(value).__name__} {value!r}")
    if not do_sample and (temperature != 1.0 or top_k is not None or top_p is not None):
        raise ValueError("temperature, top_k and top_p only shape sampling; pass do_sample=True to use them "
                         "(greedy decoding would silently ignore them)")
    if do_sample and not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}; for deterministic output use "
                         f"do_sample=False")
    if top_k is not None and (not is_int(top_k) or top_k < 1):
        raise ValueError(f"top_k must be a positive int (or None), got {top_k!r}")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"top_p must lie in (0, 1], got {top_p}")
    if not repetition_penalty > 0:
        raise ValueError(f"repetition_penalty must be > 0 (1.0 = off), got {repetition_penalty}")
    if any(not is_int(e) or not 0 <= e < vocab for e in eos):
        raise ValueError(f"eos_token_id must be token ids in [0, {vocab}), got {eos}")
    if not is_int(pad) or not 0 <= pad < vocab:
        raise ValueError(f"text_config.pad_token_id must be a token id in [0, {vocab}) (finished rows are filled "
                         f"with it), got {pad!r}; set it to the id of <|endoftext|>")


def _check_logits(logits, step):
    """NaN or infinite logits would make greedy pick token 0 and sampling fail: say where they come from."""
    # one sum per step instead of testing every logit (~15x cheaper on a 151k vocabulary): any NaN or inf
    # makes it NaN or inf; summed in fp32, so float16 logits cannot overflow it (finite ones never reach 3e38)
    if not math.isfinite(logits.sum(dtype=torch.float32).item()):
        raise ValueError(f"the model produced NaN or infinite logits at generation step {step}; likely causes: "
                         f"NaN/inf weights in the checkpoint, NaN/inf pixel values, or float16 overflow (load "
                         f"in bfloat16 or float32)")
    return logits


def _check_suppress(ids, vocab, device) -> torch.Tensor:
    ids = torch.as_tensor(ids, device=device).flatten()
    if ids.numel() and (ids.is_floating_point() or not bool(((ids >= 0) & (ids < vocab)).all())):
        raise ValueError(f"suppress_tokens must be token ids in [0, {vocab}), got {ids.tolist()[:8]}")
    return ids.long()


def _check_cache(cache):
    if cache is None:
        return
    if not callable(getattr(cache, "update", None)) or not hasattr(cache, "length"):
        raise TypeError("cache must have update(layer_idx, k, v) and length (e.g. "
                        f"minglm4v.generation.decoding.KVCache), got {type(cache).__name__}")
    if cache.length != 0:
        raise ValueError(f"cache already holds {cache.length} tokens; generate fills an empty cache "
                         f"(make a new one for each call)")


def _check_thinking(budget, end_ids, vocab):
    if budget is None or end_ids is None:
        raise ValueError("thinking_budget and thinking_end_ids go together: the budget in tokens and the "
                         "ids of '</think>' and '<answer>' (tokenizer.convert_tokens_to_ids)")
    if not isinstance(budget, int) or budget < 0:
        raise ValueError(f"thinking_budget must be an int >= 0, got {budget!r}")
    if len(end_ids) == 0 or any(not isinstance(i, int) or not 0 <= i < vocab for i in end_ids):
        raise ValueError(f"thinking_end_ids must be token ids in [0, {vocab}) such as the ids of "
                         f"['</think>', '<answer>'], got {end_ids!r}")
