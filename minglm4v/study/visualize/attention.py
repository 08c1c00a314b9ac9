"""Attention: maps and masks side by side, and a trained model's attention over its picture."""

import matplotlib.pyplot as plt
import numpy as np

from .common import _as_numpy


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


def show_attention_overlays(image, maps, titles=None, marker=None, title: str | None = None,
                            columns: int = 4, vmax: float | None = None, label: str = "attention weight"):
    """Attention maps laid over a picture, one panel per (gh, gw) map in `maps` (n, gh, gw): each
    cell stretched over its share of the picture (a patch, or a merged 2x2 window), one colour
    scale for all panels, 0 .. `vmax` (default the largest value; larger values saturate), with a
    colour bar named `label`. Opacity grows with the value from 0, so the picture stays visible
    where little attention goes. `marker` (x, y) in the picture's pixels marks the query."""
    m = _as_numpy(maps).astype(float)
    if m.ndim == 2:
        m = m[None]
    if m.ndim != 3:
        raise ValueError(f"maps must be (gh, gw) or (n, gh, gw); got shape {m.shape}")
    img = np.asarray(image)
    height, width = img.shape[:2]
    top = float(vmax if vmax is not None else m.max()) or 1.0
    rows, cols = -(-len(m) // columns), min(columns, len(m))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols + 0.8, 3.2 * rows + 0.4), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i >= len(m):
            continue
        ax.imshow(img)
        shown = ax.imshow(m[i], cmap="viridis", alpha=0.9 * np.clip(m[i] / top, 0, 1), vmin=0, vmax=top,
                          interpolation="nearest", extent=(0, width, height, 0))
        if marker is not None:
            ax.plot(*marker, marker="x", color="magenta", markersize=12, markeredgewidth=3)
        ax.set_title(titles[i] if titles else "")
    fig.colorbar(shown, ax=axes.ravel().tolist(), shrink=0.8, label=label)
    if title:
        fig.suptitle(title)
    return fig
