"""05 · rope index: the rope delta of one image; the positions of an image block."""

import torch


def image_rope_delta(h, w, merge_size=2):
    """Exercise 1: h x w patches -> (h/2)(w/2) tokens spanning max(h/2, w/2) positions."""
    gh, gw = h // merge_size, w // merge_size
    return max(gh, gw) - gh * gw


def image_block_positions(start, h, w, merge_size=2):
    """Exercise 2: (3, h*w/4) positions of the <|image|> tokens: t stays at `start`, h and w walk
    the merged grid from `start`, in raster order."""
    gh, gw = h // merge_size, w // merge_size
    rows = torch.arange(gh).repeat_interleave(gw)
    cols = torch.arange(gw).repeat(gh)
    return torch.stack([torch.zeros(gh * gw, dtype=torch.long), rows, cols]) + start
