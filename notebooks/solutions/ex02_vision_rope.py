"""02 · RoPE: 1-D RoPE for a whole sequence; the column dims of a vision head; the period."""

import math

import torch


def rope_1d_all(x, positions, theta=10000.0):
    """Exercise 1: x (L, d), positions (L,) -> x with pair (2j, 2j+1) of row i rotated by
    positions[i] * theta^(-2j/d)."""
    d = x.shape[-1]
    omega = 1.0 / theta ** (torch.arange(0, d, 2, dtype=torch.float32) / d)
    a = positions.float()[:, None] * omega  # (L, d/2)
    x0, x1 = x[:, 0::2], x[:, 1::2]
    out = torch.stack([x0 * a.cos() - x1 * a.sin(), x0 * a.sin() + x1 * a.cos()], dim=-1)
    return out.flatten(1)  # (L, d/2, 2) -> (L, d): pairs back in place


def column_dims(head_dim):
    """Exercise 2: the angle vector is [row freqs, col freqs] (head_dim/4 each), written twice;
    so the column angles turn dims head_dim/4 .. head_dim/2 - 1 and the same + head_dim/2."""
    half, quarter = head_dim // 2, head_dim // 4
    return [*range(quarter, half), *range(half + quarter, head_dim)]


def fastest_period():
    """Exercise 3: the fastest pair turns 1 radian per position, so it is back after 2*pi ~ 6.28
    positions. Alone it could not tell offset 0 from offset 6.28; the slower pairs (periods 63,
    628, ... positions) can, and together the pairs pin down the offset."""
    return 2 * math.pi
