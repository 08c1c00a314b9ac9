"""14 · training: the masked loss by hand; a LoRA update as one matrix; counting LoRA's parameters."""

import torch.nn.functional as F


def masked_loss(logits, labels):
    """Exercise 1: the mean cross-entropy of logits[:, i] against labels[:, i + 1], over the
    positions whose label is not -100 (chosen by a mask instead of ignore_index)."""
    logits, labels = logits[:, :-1], labels[:, 1:]  # token i predicts token i + 1
    scored = labels != -100
    return F.cross_entropy(logits[scored].float(), labels[scored])


def lora_update(A, B, alpha):
    """Exercise 2: what merging adds to W (out, in): (alpha / r) B A, with A (r, in), B (out, r)."""
    rank = A.shape[0]
    return alpha / rank * B @ A


def lora_parameter_count(model, targets, rank):
    """Exercise 3: A (rank × in) + B (out × rank) for each nn.Linear at the module paths `targets`."""
    layers = [model.get_submodule(path) for path in targets]
    return sum(rank * (layer.in_features + layer.out_features) for layer in layers)
