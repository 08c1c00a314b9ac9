"""Attention probabilities of the vision tower and the decoder, for looking at what a model attends to.

No transformers counterpart as such: transformers returns these with `output_attentions=True` (eager
attention only); minglm4v attends with SDPA, which never forms the probabilities. Forward hooks on
every attention module recompute them from the module's own rotated q and k (`project`):

    softmax(q k^T / sqrt(head_dim) + mask)                       attention_probs(q, k, mask)

so probs @ v is the attention output before its output projection (tests/test_attention_maps.py).

    with record_attention(model) as maps:      # one forward pass, no cache (not generate)
        model(**inputs)
    maps.vision[block]  (heads, N, N)      N = every patch of the batch in pixel_values row order;
                                           zero between two images (each attends only to itself)
    maps.text[layer]    (B, heads, L, L)   causal (and padding) mask applied

    with block_attention(model, layer, query, key, heads):   # a knockout: that query may not
        model(**inputs)                                      # read that key, in one decoder layer

    patch_map(values, grid_thw)            (h*w,) per patch, pixel_values order -> (h, w) picture grid
    image_token_map(row, input_ids, image_token_id, grid_thw)
                                           (L,) one query's weights -> (h/2, w/2) over the image tokens
"""

import inspect
import math
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from einops import rearrange, repeat

from ..model.decoder import causal_mask
from ..model.rope import image_tokens


def attention_probs(q, k, mask=None) -> torch.Tensor:
    """q (..., heads, L, d), k (..., kv_heads, S, d), additive mask broadcasting to (..., L, S)
    -> (..., heads, L, S) in fp32. Query heads h*g .. h*g+g-1 read key head h (grouped-query
    attention, g = heads / kv_heads), as SDPA's enable_gqa does."""
    k = repeat(k.float(), "... h s d -> ... (h g) s d", g=q.shape[-3] // k.shape[-3])
    scores = q.float() @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores + mask.float()
    return scores.softmax(-1)


@dataclass
class AttentionMaps:
    vision: list = field(default_factory=list)  # per ViT block: (heads, N, N)
    text: list = field(default_factory=list)  # per decoder layer: (B, heads, L, L)


@contextmanager
def record_attention(model):
    """Fill an AttentionMaps from the forward passes run inside the `with` (the last one wins)."""
    blocks, layers = model.model.visual.blocks, model.model.language_model.layers
    maps = AttentionMaps(vision=[None] * len(blocks), text=[None] * len(layers))

    def vision_hook(i):
        def hook(module, args, kwargs, output):
            a = _arguments(module, args, kwargs)
            q, k, _ = (rearrange(t, "n h d -> h n d") for t in module.project(a["x"], a["cos"], a["sin"]))
            probs = q.new_zeros(q.shape[0], q.shape[1], q.shape[1], dtype=torch.float32)
            start = 0
            for n in a["seq_lens"]:  # block-diagonal: each image (or temporal group) attends to itself
                span = slice(start, start + n)
                probs[:, span, span] = attention_probs(q[:, span], k[:, span])
                start += n
            maps.vision[i] = probs.detach()
        return hook

    def text_hook(i):
        def hook(module, args, kwargs, output):
            a = _arguments(module, args, kwargs)
            if a.get("cache") is not None:
                raise ValueError("record_attention needs one forward pass without a cache, e.g. "
                                 "model(**inputs) on the prompt plus the reply; generate() runs with one")
            q, k, _ = module.project(a["x"], a["cos"], a["sin"])
            mask = a.get("mask")
            if mask is None:  # the decoder's plain causal case (SDPA's is_causal), written out
                mask = causal_mask(None, q.shape[2], 0, torch.float32, q.device)
            maps.text[i] = attention_probs(q, k, mask).detach()
        return hook

    handles = [b.attn.register_forward_hook(vision_hook(i), with_kwargs=True) for i, b in enumerate(blocks)]
    handles += [layer.self_attn.register_forward_hook(text_hook(i), with_kwargs=True)
                for i, layer in enumerate(layers)]
    try:
        yield maps
    finally:
        for handle in handles:
            handle.remove()


def _arguments(module, args, kwargs) -> dict:
    """The arguments of module.forward by parameter name, however the caller passed them."""
    return inspect.signature(module.forward).bind(*args, **kwargs).arguments


@contextmanager
def block_attention(model, layer: int, query: int, key: int, heads=None):
    """Inside the `with`, query position `query` of decoder layer `layer` may not attend to key
    position `key` (in the query heads `heads`, default all): an attention knockout. If the answer
    changes, what flowed along that one edge mattered. One unpadded forward pass without a cache."""
    attn = model.model.language_model.layers[layer].self_attn
    if not 0 <= key <= query:
        raise ValueError(f"key must be a position the query can see, 0 <= key <= query; got key {key}, "
                         f"query {query}")

    def pre_hook(module, args, kwargs):
        a = _arguments(module, args, kwargs)
        if a.get("cache") is not None or a.get("mask") is not None:
            raise ValueError("block_attention needs one forward pass without a cache or padding, e.g. "
                             "model(input_ids=...) on the prompt plus the reply")
        x = a["x"]
        mask = causal_mask(None, x.shape[1], 0, x.dtype, x.device).repeat(1, module.heads, 1, 1)
        mask[0, list(range(module.heads)) if heads is None else list(heads), query, key] = torch.finfo(x.dtype).min
        return (), {**a, "mask": mask}

    handle = attn.register_forward_pre_hook(pre_hook, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()


def patch_map(values, grid_thw, merge_size: int = 2) -> torch.Tensor:
    """One value per patch of one image, in pixel_values row order (each merge window's patches
    together), -> (h, w) laid out like the picture."""
    h, w = _one_grid(grid_thw)
    if values.shape != (h * w,):
        raise ValueError(f"values must be one number per patch, shape ({h * w},) for a {h}x{w} grid; "
                         f"got {tuple(values.shape)}")
    return rearrange(values, "(bh bw mi mj) -> (bh mi) (bw mj)", bh=h // merge_size, mi=merge_size,
                     mj=merge_size)


def image_token_map(row, input_ids, image_token_id: int, grid_thw, merge_size: int = 2) -> torch.Tensor:
    """One query's attention row (L,) over a prompt of one image -> (h/merge, w/merge): the weight on
    each <|image|> token (one merged 2x2 window of patches), laid out like the picture."""
    h, w = _one_grid(grid_thw)
    slots = input_ids.reshape(-1) == image_token_id
    expected = int(image_tokens(torch.as_tensor(grid_thw), merge_size).sum())
    if row.shape != input_ids.reshape(-1).shape or int(slots.sum()) != expected:
        raise ValueError(f"need one attention row per token ({input_ids.numel()}) of a prompt with one "
                         f"image of {expected} <|image|> tokens (grid {h}x{w}); got a row of shape "
                         f"{tuple(row.shape)} and {int(slots.sum())} image tokens")
    return rearrange(row[slots], "(bh bw) -> bh bw", bh=h // merge_size)


def _one_grid(grid_thw) -> tuple[int, int]:
    g = torch.as_tensor(grid_thw).reshape(-1).tolist()
    if len(g) != 3 or g[0] != 1:
        raise ValueError(f"grid_thw must be one image's [1, h, w] (shape (3,) or (1, 3)); got {g}")
    return g[1], g[2]
