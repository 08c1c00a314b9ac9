"""Solutions to the exercises of notebook 17 (thinking, reinforced)."""

from math import comb

import torch


def advantages(rewards: torch.Tensor) -> torch.Tensor:
    """rewards (groups, G) -> (r - group mean) / (Bessel-corrected group std + 1e-4)."""
    G = rewards.shape[1]
    centred = rewards - rewards.sum(dim=1, keepdim=True) / G
    std = ((centred ** 2).sum(dim=1, keepdim=True) / (G - 1)).sqrt()
    return centred / (std + 1e-4)


def pass_at_k(n: int, c: int, k: int) -> float:
    """The chance that some of k samples drawn without replacement from n, c of them right, is right."""
    return 1.0 - comb(n - c, k) / comb(n, k)


def token_objective(ratio: torch.Tensor, advantage: torch.Tensor, eps_low: float = 0.2,
                    eps_high: float = 0.28) -> torch.Tensor:
    """-min(rho A, clip(rho, 1 - eps_low, 1 + eps_high) A), elementwise."""
    return -torch.minimum(ratio * advantage, ratio.clamp(1 - eps_low, 1 + eps_high) * advantage)
