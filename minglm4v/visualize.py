"""Plotting helpers for the notebooks in notebooks/ (no transformers counterpart).

Every `show_*` function draws one matplotlib Figure and returns it, so a notebook cell ends with
`plt.show()` and a test can inspect what was drawn:

* `setup_notebook(seed)` — seeds, short tensor printing, inline PNG figures.
* `show_patch_grid(image, grid_thw)` — an image (h*14, w*14, 3) with its patch grid, the 2x2 merge
  windows numbered in pixel_values row order (and optionally every patch's row number).
* `show_rope_angles(angles, grid_hw)` — cos(angle) of chosen rotary frequencies over a patch grid.
* `show_attention(maps)` — one or more (L, S) attention maps or masks, side by side.
* `show_position_streams(position_ids)` — the (t, h, w) M-RoPE positions of a prompt as a heatmap.
* `show_mrope_sections(sections)` — which text-RoPE frequency reads which position stream.

Grounding answers return a PIL image instead (to save or show anywhere):

* `boxes_to_pixels(boxes, width, height)` — GLM-4.1V boxes, 0..1000 of the picture's width and
  height, to pixel coordinates of *that* picture (the original, not the processor's resized copy).
* `draw_boxes(image, answer)` — a copy of the picture with every box of a model answer drawn on it.

What a trained model attends to (probabilities from `minglm4v.attention_maps`):

* `show_attention_overlays(image, maps)` — attention maps (patches or merged tokens) over a picture.
* `show_image_share(shares, tokens)` — the share of each query's attention on image tokens.
"""

import warnings

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib import patheffects
from matplotlib.colors import ListedColormap
from PIL import Image, ImageDraw

from .chat_template import parse_boxes

STREAM_NAMES = ("t", "h", "w")
STREAM_COLORS = ("#4c72b0", "#dd8452", "#55a868")
OUTLINE = [patheffects.withStroke(linewidth=2, foreground="black")]  # legible on any photo


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
    plt.rcParams.update({"figure.figsize": (6, 4), "figure.dpi": 90, "font.size": 9,
                         "axes.titlesize": 10, "image.cmap": "viridis"})


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


def show_patch_grid(image, grid_thw, patch_size: int = 14, merge_size: int = 2,
                    patch_numbers: bool = False, title: str | None = None):
    """Draw `image` with patch lines (thin) and merge windows (thick), each window labelled with its
    index. Windows are numbered in raster order, and window k holds pixel_values rows 4k .. 4k+3 (for
    2x2 windows); with `patch_numbers` every patch also shows its own row. `image` is a PIL image or an (H, W[, 3])
    array whose size must be exactly the grid times the patch size."""
    h, w = _grid(grid_thw)
    img = np.asarray(image)
    if img.shape[:2] != (h * patch_size, w * patch_size):
        raise ValueError(f"image is {img.shape[0]}x{img.shape[1]} pixels but grid_thw {h}x{w} patches of "
                         f"{patch_size} px needs {h * patch_size}x{w * patch_size}; resize the image first")
    if h % merge_size or w % merge_size:
        raise ValueError(f"grid {h}x{w} is not made of whole {merge_size}x{merge_size} merge windows")
    cell = 0.8 if patch_numbers else 0.4  # inches per patch
    fig, ax = plt.subplots(figsize=(cell * w + 1, cell * h + 1))
    ax.imshow(img, cmap="gray" if img.ndim == 2 else None)
    for y in range(1, h):
        ax.axhline(y * patch_size - 0.5, color="w", lw=1.6 if y % merge_size == 0 else 0.4)
    for x in range(1, w):
        ax.axvline(x * patch_size - 0.5, color="w", lw=1.6 if x % merge_size == 0 else 0.4)
    windows_per_row, window = w // merge_size, patch_size * merge_size
    for k in range(h * w // merge_size**2):
        top, left = (k // windows_per_row) * window, (k % windows_per_row) * window
        ax.text(left + window / 2, top + window / 2, str(k), ha="center", va="center", color="yellow",
                fontsize=10, fontweight="bold", path_effects=OUTLINE)
        if patch_numbers:  # each patch's row, pushed towards the window's outer corner
            for m in range(merge_size**2):
                mi, mj = divmod(m, merge_size)
                shift = (np.array([mi, mj]) - (merge_size - 1) / 2) * 0.3 * patch_size
                py, px = np.array([top, left]) + (np.array([mi, mj]) + 0.5) * patch_size + shift
                ax.text(px, py, str(k * merge_size**2 + m), ha="center", va="center", color="w",
                        fontsize=7, path_effects=OUTLINE)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title or f"{h}x{w} patches, {h * w // merge_size**2} merge windows (row order)")
    return fig


def show_rope_angles(angles, grid_hw, freqs, labels=None, title: str | None = None):
    """cos(angle) over an h x w patch grid, one panel per frequency index in `freqs`.
    `angles` is (h*w, n_freqs), patches in raster order."""
    h, w = grid_hw
    a = _as_numpy(angles)
    if a.ndim != 2 or a.shape[0] != h * w:
        raise ValueError(f"angles must be (h*w, n_freqs) = ({h * w}, n); got shape {a.shape}")
    fig, axes = plt.subplots(1, len(freqs), figsize=(2.2 * len(freqs), 2.6), squeeze=False)
    for i, (ax, f) in enumerate(zip(axes[0], freqs)):
        ax.imshow(np.cos(a[:, f]).reshape(h, w), cmap="RdBu", vmin=-1, vmax=1)
        ax.set_title(labels[i] if labels else f"freq {f}")
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def show_attention(maps, titles=None, boundaries=(), title: str | None = None):
    """One panel per (L, S) map: attention weights, or a boolean mask (True = may attend).
    `maps` is (L, S) or (n, L, S); `boundaries` draws lines after those token indices."""
    m = _as_numpy(maps).astype(float)
    if m.ndim == 2:
        m = m[None]
    if m.ndim != 3:
        raise ValueError(f"maps must be (L, S) or (n, L, S); got shape {m.shape}")
    fig, axes = plt.subplots(1, len(m), figsize=(3.2 * len(m), 3.2), squeeze=False)
    for i, (ax, mi) in enumerate(zip(axes[0], m)):
        ax.imshow(mi, cmap="Blues", vmin=0, interpolation="nearest")
        for b in boundaries:
            ax.axhline(b - 0.5, color="r", lw=0.8)
            ax.axvline(b - 0.5, color="r", lw=0.8)
        ax.set_title(titles[i] if titles else "")
        ax.set_xlabel("key")
        ax.set_ylabel("query")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def show_position_streams(position_ids, tokens=None, title: str | None = None):
    """Heatmap of the three M-RoPE streams (rows t, h, w) over the tokens of one prompt.
    `position_ids` is (3, L) or (3, 1, L); values are written in the cells; `tokens` labels columns."""
    p = _as_numpy(position_ids)
    if p.ndim == 3 and p.shape[1] == 1:
        p = p[:, 0]
    if p.ndim != 2 or p.shape[0] != 3:
        raise ValueError(f"position_ids must be (3, L) or (3, 1, L); got shape {p.shape}")
    L = p.shape[1]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.32 * L + 1), 1.9))
    ax.imshow(p, cmap="viridis", aspect="auto", interpolation="nearest")
    bright = (p - p.min()) / max(p.max() - p.min(), 1) > 0.6  # the top of viridis is yellow
    for s in range(3):
        for i in range(L):
            ax.text(i, s, str(int(p[s, i])), ha="center", va="center", fontsize=7,
                    color="k" if bright[s, i] else "w")
    ax.set_yticks(range(3), [f"p_{n}" for n in STREAM_NAMES])
    if tokens is not None:
        ax.set_xticks(range(L), tokens, rotation=90, fontsize=7)
    else:
        ax.set_xlabel("token index")
    ax.set_title(title or "position streams")
    fig.tight_layout()
    return fig


def show_mrope_sections(sections, titles=None):
    """One strip per `mrope_section` [n_t, n_h, n_w]: rotary frequency j (highest first) coloured
    by the stream (t, h or w) its angle reads."""
    fig, axes = plt.subplots(len(sections), 1, figsize=(7, 0.9 * len(sections) + 0.4), squeeze=False)
    for i, (ax, sec) in enumerate(zip(axes[:, 0], sections)):
        stream = np.repeat(np.arange(3), sec)[None]  # (1, n_freqs)
        ax.imshow(stream, cmap=ListedColormap(STREAM_COLORS), vmin=0, vmax=2, aspect="auto")
        for start, n, name in zip(np.cumsum([0, *sec[:2]]), sec, STREAM_NAMES):
            ax.text(start + (n - 1) / 2, 0, f"{name} x{n}", ha="center", va="center", color="w")
        ax.set_yticks([])
        ax.set_xlabel("frequency index j  (pair 2j, 2j+1 of the head)")
        ax.set_title(titles[i] if titles else f"mrope_section {list(sec)}")
    fig.tight_layout()
    return fig


def boxes_to_pixels(boxes, width: int, height: int) -> list[tuple[float, float, float, float]]:
    """(x1, y1, x2, y2) boxes in GLM-4.1V's 0..1000 coordinates -> pixels of a width x height picture.

    The model writes every coordinate as a fraction of the picture's side times 1000, whatever the
    picture's size in pixels; reading the numbers as pixels puts boxes in the wrong place."""
    out = []
    for box in boxes:
        x1, y1, x2, y2 = box
        if not (0 <= x1 <= x2 <= 1000 and 0 <= y1 <= y2 <= 1000):
            raise ValueError(f"box {list(box)} is not [x1, y1, x2, y2] with 0 <= x1 <= x2 <= 1000 and "
                             f"0 <= y1 <= y2 <= 1000 (GLM-4.1V's normalised coordinates)")
        out.append((x1 * width / 1000, y1 * height / 1000, x2 * width / 1000, y2 * height / 1000))
    return out


def draw_boxes(image, answer, color=(255, 0, 0), line_width: int = 2) -> Image.Image:
    """A copy of `image` (PIL) with the boxes of `answer` drawn as outlines. `answer` is the model's
    text (boxes in <|begin_of_box|>[x1,y1,x2,y2]<|end_of_box|>) or a list of 0..1000 boxes."""
    boxes = parse_boxes(answer) if isinstance(answer, str) else list(answer)
    if not boxes:
        raise ValueError(f"no box to draw: the answer has no <|begin_of_box|>[x1,y1,x2,y2]<|end_of_box|> "
                         f"span: {answer!r}")
    picture = image.convert("RGB")
    pen = ImageDraw.Draw(picture)
    for x1, y1, x2, y2 in boxes_to_pixels(boxes, picture.width, picture.height):
        # the outline's last row/column is x2 - 1: the box covers pixels x1 <= x < x2
        pen.rectangle([x1, y1, max(x1, x2 - 1), max(y1, y2 - 1)], outline=color, width=line_width)
    return picture


def show_attention_overlays(image, maps, titles=None, marker=None, title: str | None = None,
                            columns: int = 4):
    """Attention maps laid over a picture, one panel per (gh, gw) map in `maps` (n, gh, gw): each
    cell stretched over its share of the picture (a patch, or a merged 2x2 window), one colour
    scale for all panels (0 .. the largest weight) with its colour bar. Opacity grows with the
    weight, so the picture stays visible where little attention goes. `marker` (x, y) in the
    picture's pixels marks the query with a cross."""
    m = _as_numpy(maps).astype(float)
    if m.ndim == 2:
        m = m[None]
    if m.ndim != 3:
        raise ValueError(f"maps must be (gh, gw) or (n, gh, gw); got shape {m.shape}")
    img = np.asarray(image)
    height, width = img.shape[:2]
    rows, cols = -(-len(m) // columns), min(columns, len(m))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols + 0.8, 3.2 * rows + 0.4), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i >= len(m):
            continue
        ax.imshow(img)
        level = m[i] / m.max() if m.max() > 0 else m[i]
        shown = ax.imshow(m[i], cmap="viridis", alpha=0.1 + 0.75 * level, vmin=0, vmax=m.max(),
                          interpolation="nearest", extent=(0, width, height, 0))
        if marker is not None:
            ax.plot(*marker, marker="x", color="cyan", markersize=12, markeredgewidth=3)
        ax.set_title(titles[i] if titles else "")
    fig.colorbar(shown, ax=axes.ravel().tolist(), shrink=0.8, label="attention weight")
    if title:
        fig.suptitle(title)
    return fig


def show_image_share(shares, tokens, labels=None, title: str | None = None):
    """How much of each query's attention lands on image tokens, as a heat map: `shares` (rows, T),
    one row per layer (or head, named by `labels`) over T queries named by `tokens`; 0 = none of
    it, 1 = all of it, on one colour scale with its colour bar."""
    s = _as_numpy(shares)
    if s.ndim != 2 or s.shape[1] != len(tokens):
        raise ValueError(f"shares must be (rows, {len(tokens)}) for {len(tokens)} tokens; got {s.shape}")
    fig, ax = plt.subplots(figsize=(min(16.0, max(6.0, 0.22 * len(tokens) + 2)), 0.45 * len(s) + 1.6))
    shown = ax.imshow(s, cmap="viridis", vmin=0, vmax=1, aspect="auto", interpolation="nearest")
    ax.set_xticks(range(len(tokens)), tokens, rotation=90)
    ax.set_yticks(range(len(s)), labels if labels else range(len(s)))
    fig.colorbar(shown, ax=ax, pad=0.01, label="share on image tokens")
    ax.set_title(title or "share of attention on the picture, per query")
    return fig
