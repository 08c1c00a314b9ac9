"""Shared plotting pieces: stream colours, outlined lines legible on any picture, array helpers."""

import numpy as np
import torch
from matplotlib import patheffects

STREAM_NAMES = ("t", "h", "w")


STREAM_COLORS = ("#4c72b0", "#dd8452", "#55a868")


OUTLINE = [patheffects.withStroke(linewidth=2, foreground="black")]  # legible on any photo


def _outlined(lw: float) -> list:
    """A white line of width `lw` on a black one: visible on bright and dark pictures alike."""
    return [patheffects.Stroke(linewidth=lw + 1.2, foreground="black"), patheffects.Normal()]


def _as_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().float().numpy()
    return np.asarray(x)


def _grid(grid_thw) -> tuple[int, int]:
    """(h, w) in patches from a [t, h, w] row, given as (3,) or (1, 3)."""
    g = np.asarray(grid_thw.tolist() if isinstance(grid_thw, torch.Tensor) else grid_thw).reshape(-1)
    if g.shape != (3,):
        raise ValueError(f"grid_thw must be one [t, h, w] row, shape (3,) or (1, 3); got {g.tolist()}")
    return int(g[1]), int(g[2])
