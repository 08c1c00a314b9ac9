"""Positions: 2-D rotary angles over a patch grid, the (t, h, w) M-RoPE streams, and decode positions."""

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import ListedColormap

from .common import STREAM_COLORS, STREAM_NAMES, _as_numpy


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
