"""03 · vision tower: split the merged features per image; the block-diagonal mask."""

import torch


def split_features(features, grid_thw, merge_size=2):
    """Exercise 1: (sum of t*h*w/4, D) -> one (t*h*w/4, D) tensor per image."""
    counts = (grid_thw.prod(-1) // merge_size**2).tolist()
    return list(features.split(counts))


def image_mask(grid_thw):
    """Exercise 2: (N, N) bool, True where patches i and j belong to the same image."""
    image_of_patch = torch.repeat_interleave(torch.arange(len(grid_thw)), grid_thw.prod(-1))
    return image_of_patch[:, None] == image_of_patch[None, :]
