"""Plotting helpers for the notebooks in notebooks/ (no transformers counterpart), one module per
concept: `pictures`, `positions`, `attention`, `outputs`; every name is importable from here.

Every `show_*` function draws one matplotlib Figure and returns it, so a notebook cell ends with
`plt.show()` and a test can inspect what was drawn:

* `setup_notebook(seed)` — seeds, short tensor printing, inline PNG figures.
* `show_patch_grid(image, grid_thw)` — an image (h*14, w*14, 3) with its patch grid, the 2x2 merge
  windows numbered in pixel_values row order (and optionally every patch's row number).
* `show_rope_angles(angles, grid_hw)` — cos(angle) of chosen rotary frequencies over a patch grid.
* `show_attention(maps)` — one or more (L, S) attention maps or masks, side by side.
* `show_position_streams(position_ids)` — the (t, h, w) M-RoPE positions of a prompt as a heatmap.
* `show_mrope_sections(sections)` — which text-RoPE frequency reads which position stream.
* `show_maps(maps, titles)` — 2-D maps side by side on one colour scale, with its colour bar.
* `show_patch_rows(pixel_values)` — the first rows of pixel_values, each drawn as its patch.
* `show_video_sampling(video, indices, recovered, timestamps)` — which frames a clip keeps.
* `show_video_tokens(frames, grid_thw, positions, timestamps)` — each temporal group's tokens
  over its frames, with their M-RoPE positions.
* `show_decode_positions(position_ids, token_types, prompt_length)` — M-RoPE positions vs index.
* `show_distributions(words, panels)` — bar charts of next-token probabilities, before/after.
* `show_differences(names, diffs)` — per-module max difference from transformers, log scale.

Figures are meant for a projector: lines carry a dark outline, colour bars label numeric colours.

Grounding answers return a PIL image instead (to save or show anywhere):

* `boxes_to_pixels(boxes, width, height)` — GLM-4.1V boxes, 0..1000 of the picture's width and
  height, to pixel coordinates of *that* picture (the original, not the processor's resized copy).
* `draw_boxes(image, answer)` — a copy of the picture with every box of a model answer drawn on it.

What a trained model attends to (probabilities from `minglm4v.study.attention_maps`):

* `show_attention_overlays(image, maps)` — attention maps (patches or merged tokens) over a picture.
"""

import warnings

import matplotlib.pyplot as plt
import numpy as np
import torch

from .attention import show_attention, show_attention_overlays, show_maps
from .outputs import show_differences, show_distributions
from .pictures import (
    boxes_to_pixels,
    draw_boxes,
    show_patch_grid,
    show_patch_rows,
    show_video_sampling,
    show_video_tokens,
)
from .positions import show_decode_positions, show_mrope_sections, show_position_streams, show_rope_angles

__all__ = ["setup_notebook", "show_patch_grid", "show_patch_rows", "show_video_sampling", "show_video_tokens",
           "boxes_to_pixels", "draw_boxes", "show_rope_angles", "show_position_streams", "show_mrope_sections",
           "show_decode_positions", "show_attention", "show_maps", "show_attention_overlays",
           "show_distributions", "show_differences"]


def setup_notebook(seed: int = 0) -> None:
    """Seed torch and numpy, print tensors with 4 decimals, and draw figures inline as PNG.

    PNG rather than SVG: nbval ignores PNG bytes but compares SVG text, whose ids change per run."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    torch.set_printoptions(precision=4, sci_mode=False)
    # tqdm (imported by transformers) warns on stderr when Jupyter widgets are not installed
    warnings.filterwarnings("ignore", message="IProgress not found")
    try:
        from IPython import get_ipython
    except ImportError:  # plain Python: nothing to configure
        get_ipython = None
    shell = get_ipython() if get_ipython else None
    if shell is not None:
        from matplotlib_inline.backend_inline import set_matplotlib_formats

        shell.run_line_magic("matplotlib", "inline")
        set_matplotlib_formats("png")
    # sizes for a projector: 10 pt text at 90 dpi
    plt.rcParams.update({"figure.figsize": (6, 4), "figure.dpi": 90, "font.size": 10,
                         "axes.titlesize": 11, "image.cmap": "viridis"})
