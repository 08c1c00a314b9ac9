"""09 · video: the sampling rule by hand; tokens of a clip; the tower sees each temporal group alone."""

import math

import torch

from minglm4v.processing.image import smart_resize
from minglm4v.processing.video import sample_frame_indices


def sample_by_hand(n_frames, fps, duration):
    """Exercise 1 (clips up to 300 s): 2 samples per second, sample i = frame ceil(i*fps/2)
    clamped to the last frame, repeats dropped, an odd count padded with the last frame."""
    picks = [min(n_frames - 1, math.ceil(i * fps / 2)) for i in range(math.floor(duration * 2))]
    picks = list(dict.fromkeys(picks))
    return picks + picks[-1:] if len(picks) % 2 else picks


def video_tokens(n_frames, height, width, fps, max_pixels=47_040_000):
    """Exercise 2: one pixel budget for all sampled frames; each pair of frames is one temporal
    group of (h/14)(w/14)/4 tokens."""
    frames = len(sample_frame_indices(n_frames, fps, duration=n_frames / fps))
    h, w = smart_resize(frames, height, width, max_pixels=max_pixels)
    return frames // 2 * (h // 14) * (w // 14) // 4


def features_per_group(model, pixel_values_videos, video_grid_thw):
    """Exercise 3: every temporal group run through the tower as its own [1, h, w] image, the
    features concatenated in order: the same as model.get_video_features."""
    grids = [(h, w) for t, h, w in video_grid_thw.tolist() for _ in range(t)]
    rows = pixel_values_videos.split([h * w for h, w in grids])
    return torch.cat([model.get_image_features(r, torch.tensor([[1, h, w]]))
                      for r, (h, w) in zip(rows, grids)])
