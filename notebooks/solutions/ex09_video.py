"""09 · video: the sampling rule by hand; tokens of a clip; the timestamps of its groups."""

import math

from minglm4v.image_processing import smart_resize
from minglm4v.video_processing import sample_frame_indices


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


def timestamps(indices, fps):
    """Exercise 3: each group of two frames is dated by its first frame, in whole seconds."""
    return [int(i / fps) for i in indices[::2]]
