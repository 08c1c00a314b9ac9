"""Outputs: next-token probability bars and per-module differences from the reference."""

import matplotlib.pyplot as plt
import numpy as np

from .common import _as_numpy


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
