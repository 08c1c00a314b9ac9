"""13 · reference check: the first stage that disagrees; finer stages; bit-identical stages in bf16."""

import torch

from minglm4v.study.compare import compare_checkpoint, component_names

INSIDE = {"visual.blocks": ("attn", "mlp"), "language_model.layers": ("self_attn", "mlp")}


def first_mismatch(rows, tolerance: float = 1e-5):
    """Exercise 1: the first row (in flow order) whose relative difference exceeds tolerance."""
    return next((row.name for row in rows if row.relative > tolerance), None)


def finer_names(config) -> list[str]:
    """Exercise 2: a block's attention and MLP run before the block's own output, so they go first."""
    names = []
    for name in component_names(config):
        stack = name.removeprefix("model.").rsplit(".", 1)[0]
        names += [f"{name}.{part}" for part in INSIDE.get(stack, ())]
        names.append(name)
    return names


def bf16_exact_stages(directory) -> list[str]:
    """Exercise 3: the stages whose outputs are bit-identical when both models run in bf16.

    Each bf16 operation computes in float32 and rounds to 8 significant bits (steps of ~4e-3
    relative); two float32 results that differ by ~1e-7 relative round to the same bf16 number
    unless they straddle a rounding boundary, which is rare."""
    rows, _ = compare_checkpoint(directory, dtype=torch.bfloat16)
    return [row.name for row in rows if row.max_diff == 0]
