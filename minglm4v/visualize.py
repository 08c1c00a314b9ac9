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

What a trained model attends to (probabilities from `minglm4v.attention_maps`):

* `show_attention_overlays(image, maps)` — attention maps (patches or merged tokens) over a picture.
* `show_image_share(shares, tokens)` — the share of each query's attention on image tokens.
"""

import warnings

import matplotlib.pyplot as plt
import numpy as np
import torch
from einops import rearrange
from matplotlib import patheffects
from matplotlib.colors import ListedColormap
from PIL import Image, ImageDraw

from .chat_template import parse_boxes
from .image_processing import unnormalize

STREAM_NAMES = ("t", "h", "w")
STREAM_COLORS = ("#4c72b0", "#dd8452", "#55a868")
OUTLINE = [patheffects.withStroke(linewidth=2, foreground="black")]  # legible on any photo


def _outlined(lw: float) -> list:
    """A white line of width `lw` on a black one: visible on bright and dark pictures alike."""
    return [patheffects.Stroke(linewidth=lw + 1.2, foreground="black"), patheffects.Normal()]


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
        lw = 2.0 if y % merge_size == 0 else 0.8
        ax.axhline(y * patch_size - 0.5, color="w", lw=lw, path_effects=_outlined(lw))
    for x in range(1, w):
        lw = 2.0 if x % merge_size == 0 else 0.8
        ax.axvline(x * patch_size - 0.5, color="w", lw=lw, path_effects=_outlined(lw))
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
    ax.set(xticks=[], yticks=[])
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
        im = ax.imshow(np.cos(a[:, f]).reshape(h, w), cmap="RdBu", vmin=-1, vmax=1)
        ax.set_title(labels[i] if labels else f"freq {f}")
        ax.set(xticks=[], yticks=[])
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.colorbar(im, ax=axes[0].tolist(), label="cos(angle)", shrink=0.8)
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
        im = ax.imshow(mi, cmap="Blues", vmin=0, interpolation="nearest")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
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


def show_maps(maps, titles, label: str, cmap: str = "RdBu", marks=None):
    """2-D maps (of any sizes) side by side on one symmetric colour scale, with a colour bar named
    `label`. `maps` is (n, H, W) or a list of (H, W); `marks` puts a cross at one (row, col) each."""
    m = [_as_numpy(x) for x in maps]
    if any(x.ndim != 2 for x in m):
        raise ValueError(f"maps must be 2-D (H, W) each; got shapes {[x.shape for x in m]}")
    top = max(float(np.abs(x).max()) for x in m) or 1.0
    fig, axes = plt.subplots(1, len(m), figsize=(2.9 * len(m) + 0.8, 3.0), squeeze=False)
    for i, (ax, mi) in enumerate(zip(axes[0], m)):
        im = ax.imshow(mi, cmap=cmap, vmin=-top, vmax=top, interpolation="nearest")
        if marks is not None:
            ax.plot(marks[i][1], marks[i][0], "k+", ms=12, mew=2)
        ax.set_title(titles[i])
        ax.set(xticks=[], yticks=[])
    fig.colorbar(im, ax=axes[0].tolist(), label=label, shrink=0.85)
    return fig


def show_patch_rows(pixel_values, n: int = 16, patch_size: int = 14, merge_size: int = 2):
    """The first `n` rows of `pixel_values` (N, C·2·P·P) drawn as patches (frame 0), titled
    with the row number and its merge window."""
    tiles = rearrange(pixel_values[:n], "n (c tp p1 p2) -> n tp c p1 p2", c=3,
                      p1=patch_size, p2=patch_size)[:, 0]
    tiles = rearrange(unnormalize(tiles), "n c p1 p2 -> n p1 p2 c")
    fig, axes = plt.subplots(1, n, figsize=(0.75 * n, 1.5), squeeze=False)
    for row, (ax, tile) in enumerate(zip(axes.flat, tiles)):
        ax.imshow(tile.numpy())
        ax.set_title(f"{row}\nw{row // merge_size**2}", fontsize=9)
        ax.set(xticks=[], yticks=[])
    fig.suptitle(f"pixel_values rows 0-{n - 1} (w = merge window)", y=1.1)
    return fig


def show_video_sampling(video, indices, recovered, timestamps, temporal_patch_size: int = 2):
    """Top: the frames of `video` (T, H, W, 3), sampled `indices` framed in their temporal group's
    colour. Bottom: `recovered` frames (n, 3, H', W') from `unpatchify`, dated by `timestamps`."""
    colors = plt.cm.tab10(np.arange(10))
    fig, axes = plt.subplots(2, len(video), figsize=(0.95 * len(video), 2.6), squeeze=False)
    for i, ax in enumerate(axes[0]):
        ax.imshow(video[i])
        ax.set_title(f"frame {i}", fontsize=8)
        if i in indices:
            group = indices.index(i) // temporal_patch_size
            for spine in ax.spines.values():
                spine.set(edgecolor=colors[group], linewidth=4)
    for k, ax in enumerate(axes[1][:len(recovered)]):
        group = k // temporal_patch_size
        ax.imshow(rearrange(unnormalize(recovered[k]), "c h w -> h w c").numpy())
        ax.set_title(f"group {group}\n{timestamps[group]} s", fontsize=8, color=colors[group])
    for ax in axes[1][len(recovered):]:
        ax.axis("off")
    for ax in axes.flat:
        ax.set(xticks=[], yticks=[])
    return fig


def show_decode_positions(position_ids, token_types, prompt_length: int):
    """The three M-RoPE streams of one sequence (3, L) or (3, 1, L) against the token index, with
    the image tokens (`token_types` != 0) and the generated tokens (from `prompt_length`) shaded."""
    p = _as_numpy(position_ids).reshape(3, -1)
    index = np.arange(p.shape[1])
    fig, ax = plt.subplots(figsize=(7.5, 3.2))
    for name, stream, style in zip(STREAM_NAMES, p, ("-", "--", ":")):
        ax.step(index, stream, where="mid", ls=style, lw=2, label=f"{name} stream")
    ax.plot(index, index, color="0.6", lw=1, label="token index")
    image = np.flatnonzero(_as_numpy(token_types).reshape(-1))
    ax.axvspan(image[0] - 0.5, image[-1] + 0.5, color="C4", alpha=0.15, label="image tokens")
    ax.axvspan(prompt_length - 0.5, index[-1] + 0.5, color="C2", alpha=0.15, label="generated")
    ax.set(xlabel="token index in the sequence", ylabel="position")
    ax.legend(loc="upper left")
    return fig


def show_distributions(words, panels, ncols: int = 2):
    """Grouped bar charts of probabilities over `words`, one panel per (title, [(label, probs)])."""
    rows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(rows, ncols, figsize=(5 * ncols, 2.8 * rows), sharey=True,
                             squeeze=False)
    x = np.arange(len(words))
    for ax, (title, bars) in zip(axes.flat, panels):
        width = 0.8 / len(bars)
        for j, (label, probs) in enumerate(bars):
            ax.bar(x + (j - (len(bars) - 1) / 2) * width, _as_numpy(probs), width, label=label)
        slanted = len(words) > 6  # long word lists would overlap
        ax.set_xticks(x, words, rotation=30 if slanted else 0, ha="right" if slanted else "center")
        ax.set_title(title)
        ax.legend()
    axes[0, 0].set_ylabel("probability")
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    fig.tight_layout()
    return fig


def show_differences(names, diffs, tolerance: float = 1e-5):
    """Max |ours - reference| per module, log-scale bars; exact zeros labelled, tolerance dashed."""
    fig, ax = plt.subplots(figsize=(7, 0.27 * len(names) + 0.6))
    ax.barh(range(len(names)), [max(d, 1e-9) for d in diffs])
    for i, d in enumerate(diffs):
        if d == 0:
            ax.text(1.3e-9, i, "exactly 0", va="center")
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.set(xscale="log", xlim=(1e-9, 1e-3), xlabel="max |minglm4v - transformers|")
    ax.axvline(tolerance, color="k", ls="--", lw=1)
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


def show_video_tokens(frames, grid_thw, positions, timestamps, patch_size: int = 14,
                      merge_size: int = 2, temporal_patch_size: int = 2):
    """The <|image|> tokens of one video, one panel per temporal group: its frames blended (each
    token sees all of them), every merge window (one token) outlined and labelled with the token's
    (p_h, p_w), the title giving the group's second and p_t. `frames` (T, 3, H, W) normalised, from
    `unpatchify`; `positions` (3, n) the M-RoPE positions of the video's tokens in prompt order."""
    groups, h, w = (int(x) for x in np.asarray(_as_numpy(grid_thw)).reshape(-1))
    rows, cols = h // merge_size, w // merge_size
    p = _as_numpy(positions).astype(int)
    if p.shape != (3, groups * rows * cols) or len(frames) != groups * temporal_patch_size:
        raise ValueError(f"grid [{groups}, {h}, {w}] needs {groups * temporal_patch_size} frames and "
                         f"positions of shape (3, {groups * rows * cols}); got {len(frames)} frames "
                         f"and positions {p.shape}")
    size = patch_size * merge_size
    fig, axes = plt.subplots(1, groups, figsize=(3.2 * groups, 3.0), squeeze=False)
    for k, (ax, block) in enumerate(zip(axes[0], np.split(p, groups, axis=1))):
        pair = unnormalize(frames[k * temporal_patch_size:(k + 1) * temporal_patch_size]).mean(0)
        ax.imshow(rearrange(pair, "c h w -> h w c").numpy())
        for i in range(1, rows):
            ax.axhline(i * size - 0.5, color="w", lw=1.5, path_effects=_outlined(1.5))
        for j in range(1, cols):
            ax.axvline(j * size - 0.5, color="w", lw=1.5, path_effects=_outlined(1.5))
        for n, (ph, pw) in enumerate(block[1:].T):
            i, j = divmod(n, cols)
            ax.text((j + 0.5) * size - 0.5, (i + 0.5) * size - 0.5, f"{ph},{pw}", ha="center",
                    va="center", color="w", fontsize=9, path_effects=OUTLINE)
        t = sorted(set(block[0].tolist()))
        ax.set_title(f"group {k}: {timestamps[k]} s\np_t = {'/'.join(map(str, t))}")
        ax.set(xticks=[], yticks=[])
    fig.suptitle("one token per window, labelled (p_h, p_w)", y=1.02)
    return fig
