"""Rotary position embeddings of GLM-4.1V, and `get_rope_index` (the three text position streams).

* Vision: 2-D RoPE. Each patch has a (row, col) position in its image's patch grid; the first half of
  the rotary angles follows the row, the second half the column, applied with the rotate-half (NeoX)
  convention over the whole head. Corresponds to transformers' `Glm4vVisionRotaryEmbedding` and
  `apply_rotary_pos_emb_vision`.
* Text: 3-D M-RoPE. Every token has (t, h, w) positions; frequency j takes its position from the
  stream that `mrope_section` assigns to it, and pairs (2j, 2j+1) of the first `rotary_dim` dims of
  each head are rotated (GPT-J interleaved convention). Corresponds to `Glm4vTextRotaryEmbedding`
  and `apply_multimodal_rotary_pos_emb`.
* Text, GLM-4.5V: the same angles, but dims m and m + rotary_dim/2 form the pairs (NeoX `rotate_half`
  on the rotary part): `mrope_cos_sin_halves` / `apply_mrope_halves`; transformers' `Glm4vMoeTextRotaryEmbedding`
  and the `apply_rotary_pos_emb` of `glm4v_moe`.
* `get_rope_index(...)` -> position_ids (3, B, L), rope_deltas (B, 1). Corresponds to
  `Glm4vModel.get_rope_index`. It reads the token stream through `token_types` (text, image or video
  slot) and `image_tokens` (the slots a [t, h, w] grid takes), the one home of both facts.
"""

import torch
import torch.nn.functional as F
from einops import rearrange, repeat

TEXT, IMAGE, VIDEO = 0, 1, 2  # token types, as in `mm_token_type_ids`


def inverse_frequencies(dim: int, theta: float) -> torch.Tensor:
    """theta^(-2k/dim) for k = 0 .. dim/2 - 1, in fp32: (dim/2,)"""
    return 1.0 / theta ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim)


# ----------------------------------------------------------------------------- vision: 2-D RoPE
def vision_positions(grid_thw: torch.Tensor, merge: int) -> torch.Tensor:
    """(row, col) of every patch, listed in the pixel_values row order (merge windows): (N, 2)"""
    out = []
    for t, h, w in grid_thw.tolist():
        rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")  # (h, w) each
        rc = torch.stack([rows, cols], dim=-1)  # (h, w, 2)
        # why: the processor lists patches window by window so 4 consecutive rows form one 2x2 merge
        rc = rearrange(rc, "(bh mi) (bw mj) two -> (bh bw mi mj) two", mi=merge, mj=merge)
        out.append(rc.repeat(t, 1))  # every temporal group of a video reuses the same grid
    return torch.cat(out)


def vision_cos_sin(positions: torch.Tensor, head_dim: int, theta: float):
    """positions (N, 2) -> cos, sin (N, head_dim) for rotate-half RoPE (fp32)."""
    inv_freq = inverse_frequencies(head_dim // 2, theta)  # (head_dim/4,)
    angles = rearrange(positions.float()[:, :, None] * inv_freq, "n rc k -> n (rc k)")  # (N, head_dim/2)
    angles = torch.cat([angles, angles], dim=-1)  # (N, head_dim): dim m and m + head_dim/2 share an angle
    return angles.cos(), angles.sin()


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def apply_vision_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x (N, heads, head_dim), cos/sin (N, head_dim): rotate in fp32, return in x's dtype."""
    xf, cos, sin = x.float(), cos[:, None, :], sin[:, None, :]
    return (xf * cos + rotate_half(xf) * sin).to(x.dtype)


# ----------------------------------------------------------------------------- text: 3-D M-RoPE
def mrope_angles(position_ids: torch.Tensor, rotary_dim: int, theta: float, mrope_section) -> torch.Tensor:
    """position_ids (3, B, L) -> angle a_j of every rotary frequency j: (B, L, rotary_dim/2), fp32.
    Frequency j reads its position from the stream (t, h or w) that mrope_section assigns to it."""
    inv_freq = inverse_frequencies(rotary_dim, theta)  # (rotary_dim/2,)
    angles = position_ids.float()[..., None] * inv_freq  # (3, B, L, rotary_dim/2)
    stream = torch.repeat_interleave(torch.arange(3), torch.tensor(mrope_section))  # (rotary_dim/2,)
    return angles.gather(0, repeat(stream, "j -> 1 b l j", b=angles.shape[1], l=angles.shape[2]))[0]


def mrope_cos_sin(position_ids: torch.Tensor, rotary_dim: int, theta: float, mrope_section, dtype,
                  head_dim: int | None = None):
    """position_ids (3, B, L) -> cos, sin (B, 1, L, head_dim or rotary_dim), laid out per dim: pair
    (2j, 2j+1) has angle a_j, so cos holds (cos a_j, cos a_j) and sin holds (-sin a_j, +sin a_j) there;
    with head_dim, the dims past rotary_dim get cos 1, sin 0 and pass through apply_mrope unchanged."""
    angles = mrope_angles(position_ids, rotary_dim, theta, mrope_section)
    cos, sin = angles.cos().to(dtype), angles.sin().to(dtype)  # (B, L, rotary_dim/2)
    # computed once per forward (once per generation when decoding), so that every layer's rotation is
    # two multiplies and an add over the whole head: no splitting off and re-joining the rotated part
    cos = repeat(cos, "b l j -> b 1 l (j two)", two=2)
    sin = rearrange(torch.stack([-sin, sin], dim=-1), "b l j two -> b 1 l (j two)")
    rest = (head_dim or rotary_dim) - rotary_dim
    return F.pad(cos, (0, rest), value=1.0), F.pad(sin, (0, rest), value=0.0)


def apply_mrope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x (B, heads, L, head_dim), cos/sin (B, 1, L, head_dim) from mrope_cos_sin: rotate pairs (2j, 2j+1),
    (x1, x2) -> (x1 cos a - x2 sin a, x2 cos a + x1 sin a), i.e. x * cos + swapped pairs * signed sin
    (bit for bit: the pass-through dims compute x * 1 + y * 0 = x)."""
    swapped = x.index_select(-1, pair_swap(x.shape[-1], x.device))  # (x2, x1) in every pair
    # why interleaved: the HF checkpoint permuted q/k rows for GPT-J pairs; rotate-half here breaks images
    return x * cos + swapped * sin


PAIR_SWAPS: dict[tuple[int, torch.device], torch.Tensor] = {}  # pair_swap's gathers, made once each


def pair_swap(dim: int, device: torch.device) -> torch.Tensor:
    """Indices (dim,) that exchange the two dims of every pair (2j, 2j+1): 1, 0, 3, 2, ..., made once per
    (dim, device). Why a gather and not rearrange to (j two), flip, rearrange back: one operator instead of
    three per rotation, 3% of a decode step of benchmarks/bench_generate.py's 1M model."""
    if (dim, device) not in PAIR_SWAPS:  # a plain dict: torch.compile traces it without warnings
        with torch.inference_mode(False):  # also used by training: an ordinary tensor
            pairs = rearrange(torch.arange(dim, device=device), "(j two) -> j two", two=2)
            PAIR_SWAPS[dim, device] = rearrange(pairs.flip(-1), "j two -> (j two)")
    return PAIR_SWAPS[dim, device]


def mrope_cos_sin_halves(position_ids: torch.Tensor, rotary_dim: int, theta: float, mrope_section, dtype):
    """GLM-4.5V's layout of the same angles: position_ids (3, B, L) -> cos, sin (B, 1, L, rotary_dim) with
    dims m and m + rotary_dim/2 sharing angle a_m (the NeoX `rotate_half` convention)."""
    angles = mrope_angles(position_ids, rotary_dim, theta, mrope_section)
    cos, sin = angles.cos().to(dtype), angles.sin().to(dtype)
    return repeat(cos, "b l j -> b 1 l (two j)", two=2), repeat(sin, "b l j -> b 1 l (two j)", two=2)


def apply_mrope_halves(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x (B, heads, L, head_dim), cos/sin (B, 1, L, rotary_dim) from mrope_cos_sin_halves: the first
    rotary_dim dims of each head turn by rotate_half, the rest pass through. (GLM-4.5V's checkpoints
    were converted for this convention; GLM-4.1V's for the interleaved pairs of apply_mrope.)"""
    rotated, rest = x[..., :cos.shape[-1]], x[..., cos.shape[-1]:]
    return torch.cat([rotated * cos + rotate_half(rotated) * sin, rest], dim=-1)


# ----------------------------------------------------------------------------- get_rope_index
def image_tokens(grid_thw: torch.Tensor, merge_size: int) -> torch.Tensor:
    """[t, h, w] patch grids (..., 3) -> the features the tower makes of each (...), one per <|image|> slot:
    t·h·w / merge², since every merge x merge window of patches becomes one token."""
    return grid_thw.prod(-1) // merge_size**2


def token_types(input_ids: torch.Tensor, image_token_id: int, video_start_id: int, video_end_id: int):
    """0 text / 1 image / 2 video for every token: an <|image|> inside a video span is a frame slot."""
    depth = (input_ids == video_start_id).cumsum(-1) - (input_ids == video_end_id).cumsum(-1)
    is_slot = input_ids == image_token_id
    return torch.where(is_slot, torch.where(depth > 0, VIDEO, IMAGE), TEXT)


def get_rope_index(input_ids, mm_token_type_ids, image_grid_thw=None, video_grid_thw=None,
                   attention_mask=None, spatial_merge_size: int = 2):
    """Three position streams (t, h, w) for every token, and each row's rope delta.

    Text tokens advance all three streams together. An image (or one temporal group of a video)
    with merged grid h x w starting at `cur` places token (i, j) at (cur, cur + i, cur + j); the
    next token starts after the largest position used so far. rope_delta = max position + 1 -
    number of real tokens, so generated token k sits at (real length + k + rope_delta).
    Returns position_ids (3, B, L) int64 and rope_deltas (B, 1) int64; padding gets position 0.
    """
    B, L = input_ids.shape
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    # why split videos: each temporal group is positioned like a separate image with t = 1
    frames = []
    if video_grid_thw is not None:
        frames = [(1, h, w) for t, h, w in video_grid_thw.tolist() for _ in range(t)]
    grids = {IMAGE: iter(image_grid_thw.tolist() if image_grid_thw is not None else []), VIDEO: iter(frames)}
    position_ids = torch.zeros(3, B, L, dtype=torch.long)
    deltas = torch.zeros(B, 1, dtype=torch.long)
    for b in range(B):
        real = attention_mask[b].bool()
        types = mm_token_type_ids[b][real].tolist()
        streams, cur, i = [], 0, 0
        while i < len(types):
            kind, n = types[i], 1
            while i + n < len(types) and types[i + n] == kind:
                n += 1
            if kind == TEXT:
                streams.append(repeat(torch.arange(cur, cur + n), "n -> 3 n"))
                cur += n
            else:
                used = 0
                while used < n:  # a run may hold several images with nothing between them
                    t, h, w = _next_grid(grids[kind], kind, b)
                    h, w = h // spatial_merge_size, w // spatial_merge_size
                    ti, hi, wi = torch.meshgrid(torch.arange(t), torch.arange(h), torch.arange(w), indexing="ij")
                    pos = torch.stack([ti.flatten(), hi.flatten(), wi.flatten()]) + cur  # (3, t*h*w)
                    streams.append(pos)
                    used += pos.shape[1]
                    cur = int(pos.max()) + 1
                if used != n:
                    raise ValueError(f"row {b}: a run of {n} {'image' if kind == IMAGE else 'video'} tokens does "
                                     f"not match the grids it consumes ({used} tokens); check the grid_thw rows")
            i += n
        pos = torch.cat(streams, dim=1) if streams else torch.zeros(3, 0, dtype=torch.long)
        position_ids[:, b, real] = pos
        deltas[b] = (int(pos.max()) + 1 - len(types)) if len(types) else 0
    for kind, name in ((IMAGE, "image_grid_thw"), (VIDEO, "video_grid_thw")):
        if next(grids[kind], None) is not None:
            raise ValueError(f"{name} has more rows than the prompt has {name.split('_')[0]}s; "
                             f"pass one grid row per image (per video) in the prompt")
    return position_ids, deltas


def _next_grid(grids, kind, row):
    grid = next(grids, None)
    if grid is None:
        name = "image_grid_thw" if kind == IMAGE else "video_grid_thw"
        what = "image" if kind == IMAGE else "video"
        raise ValueError(f"row {row}: the prompt has more {what} tokens than the rows of {name} account for; "
                         f"pass one grid row per {what}, each with t*h*w/merge^2 {what} tokens in the prompt")
    return grid
