"""Pictures in, pictures out: patch grids and merge windows, pixel rows, video frames and their
token blocks, and a model's 0..1000 boxes drawn on the picture they describe."""

import matplotlib.pyplot as plt
import numpy as np
from einops import rearrange
from PIL import Image, ImageDraw

from ...processing.chat_template import parse_boxes
from ...processing.image import unnormalize
from .common import OUTLINE, _as_numpy, _grid, _outlined


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
    # merge-window edges thick and yellow, the patch lines inside a window thin, dashed and white, so the
    # two kinds of boundary read apart on any picture
    for y in range(1, h):
        ax.axhline(y * patch_size - 0.5, **_grid_line(y % merge_size == 0))
    for x in range(1, w):
        ax.axvline(x * patch_size - 0.5, **_grid_line(x % merge_size == 0))
    windows_per_row, window = w // merge_size, patch_size * merge_size
    for k in range(h * w // merge_size**2):
        top, left = (k // windows_per_row) * window, (k % windows_per_row) * window
        ax.text(left + window / 2, top + window / 2, str(k), ha="center", va="center", color="yellow",
                fontsize=10, fontweight="bold", bbox=LABEL_BOX)
        if patch_numbers:  # each patch's row, pushed towards the window's outer corner
            for m in range(merge_size**2):
                mi, mj = divmod(m, merge_size)
                shift = (np.array([mi, mj]) - (merge_size - 1) / 2) * 0.3 * patch_size
                py, px = np.array([top, left]) + (np.array([mi, mj]) + 0.5) * patch_size + shift
                ax.text(px, py, str(k * merge_size**2 + m), ha="center", va="center", color="w",
                        fontsize=7, bbox=LABEL_BOX)
    ax.set(xticks=[], yticks=[])
    ax.set_title(title or f"{h}x{w} patches, {h * w // merge_size**2} merge windows (row order)")
    return fig


LABEL_BOX = {"boxstyle": "round,pad=0.15", "facecolor": "black", "alpha": 0.65, "linewidth": 0}


def _grid_line(window_edge: bool) -> dict:
    if window_edge:
        return {"color": "yellow", "lw": 2.5, "path_effects": _outlined(2.5)}
    return {"color": "w", "lw": 0.6, "linestyle": (0, (3, 2)), "path_effects": _outlined(0.6)}


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
