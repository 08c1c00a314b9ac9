"""The exercise solutions of notebook 17 (thinking, reinforced) give the package's values."""

import sys
from itertools import combinations

import pytest
import torch
from helpers import REPO

from minglm4v.training.grpo import group_advantages, policy_loss

sys.path.insert(0, str(REPO / "notebooks"))
from solutions import ex17_thinking_reinforced as ex17  # noqa: E402


def test_17_advantages_equal_the_packages():
    rewards = torch.tensor([[1, 0, 0, 1, 0.5, 1, 0, 0], [1, 1, 1, 1, 1, 1, 1, 1], [0, 0, 0, 0, 0, 0, 0, 0.5]])
    ours = ex17.advantages(rewards)
    torch.testing.assert_close(ours, group_advantages(rewards))
    assert (ours[1] == 0).all()  # an all-equal group: no signal
    biased = (rewards - rewards.mean(1, keepdim=True)) / (rewards.std(1, unbiased=False, keepdim=True) + 1e-4)
    assert not torch.allclose(ours, biased)  # Bessel's correction matters


@pytest.mark.parametrize("n, c, k", [(8, 0, 1), (8, 1, 1), (8, 1, 8), (8, 3, 2), (10, 4, 5), (8, 8, 3)])
def test_17_pass_at_k_counts_every_subset(n, c, k):
    results = [True] * c + [False] * (n - c)
    subsets = list(combinations(results, k))
    assert ex17.pass_at_k(n, c, k) == pytest.approx(sum(any(s) for s in subsets) / len(subsets))


@pytest.mark.parametrize("advantage", [1.0, -1.0])
@pytest.mark.parametrize("ratio", [0.5, 1.0, 1.5])
def test_17_token_objective_is_policy_losss_on_one_token(ratio, advantage):
    logp = torch.tensor([[0.0]])
    old = logp - torch.log(torch.tensor(ratio))  # exp(logp - old) = ratio
    loss, _ = policy_loss(logp, old, torch.tensor([advantage]), torch.ones(1, 1))
    ours = ex17.token_objective(torch.tensor(ratio), torch.tensor(advantage))
    torch.testing.assert_close(ours, loss, rtol=1e-6, atol=1e-6)
    clipped = {(1.5, 1.0): -1.28, (0.5, -1.0): 0.8}.get((ratio, advantage))
    if clipped is not None:  # the clip bites: the ratio is held at 1 + eps_high or 1 - eps_low
        assert float(ours) == pytest.approx(clipped)
