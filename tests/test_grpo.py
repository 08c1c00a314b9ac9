"""GRPO's objective (minglm4v/training/grpo.py) against TRL 1.16's GRPOTrainer, the oracle: the same loss and
gradients on the same batch for every loss type x beta x epsilon_high, and the same advantages; then the
completion log-probs against one forward per unpadded row."""

import inspect
import textwrap
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from minglm4v import Glm4vConfig, Glm4vForConditionalGeneration
from minglm4v.training.grpo import LOSS_TYPES, completion_logprobs, group_advantages, policy_loss, rank_share

G, GROUPS, C, MAX_NEW = 4, 3, 9, 12


@pytest.fixture(scope="module")
def trl():
    from trl.trainer import grpo_trainer, utils
    return grpo_trainer.GRPOTrainer, utils.nanstd


class OneProcess:
    """accelerate's Accelerator on one process, as far as `_compute_loss` uses it (metrics only)."""
    num_processes = 1

    def reduce(self, tensor, reduction):
        return tensor

    def gather(self, tensor):
        return tensor

    gather_for_metrics = gather


def trl_loss(GRPOTrainer, batch, loss_type, beta, epsilon_high):
    """`GRPOTrainer._compute_loss` on a batch of log-probs: a trainer object holding just the settings
    it reads, whose model forward returns the given log-probs (the only part of it that needs a model)."""
    trainer = object.__new__(GRPOTrainer)
    trainer.__dict__.update(
        loss_type=loss_type, beta=beta, epsilon_low=0.2, epsilon_high=epsilon_high, top_entropy_quantile=1.0,
        off_policy_mask_threshold=None, importance_sampling_level="token", use_vllm=False,
        vllm_importance_sampling_correction=False, _entropy_bonus_enabled=False, aux_loss_enabled=False,
        max_completion_length=MAX_NEW, current_gradient_accumulation_steps=1, accelerator=OneProcess(),
        _metrics={"train": defaultdict(list)}, model=nn.Module().train(),
        args=SimpleNamespace(delta=None, use_bias_correction_kl=False, steps_per_generation=1))
    trainer._get_per_token_logps_and_entropies = lambda *args, **kwargs: (
        batch["logp"], torch.zeros_like(batch["logp"]), None)
    B = batch["logp"].shape[0]
    inputs = {"prompt_ids": torch.zeros(B, 3, dtype=torch.long), "prompt_mask": torch.ones(B, 3, dtype=torch.long),
              "completion_ids": torch.zeros(B, C, dtype=torch.long), "completion_mask": batch["mask"],
              "advantages": batch["advantages"], "old_per_token_logps": batch["old_logp"],
              "ref_per_token_logps": batch["ref_logp"], "num_items_in_batch": batch["mask"].sum()}
    return trainer._compute_loss(None, inputs), trainer._metrics["train"]


def make_batch(seed=0):
    gen = torch.Generator().manual_seed(seed)
    B = G * GROUPS
    logp = (-3 * torch.rand(B, C, generator=gen)).requires_grad_()
    lengths = torch.tensor([9, 1, 5, 7, 9, 3, 8, 2, 6, 9, 4, 5])  # one token up to the whole width
    mask = (torch.arange(C) < lengths[:, None]).long()
    rewards = torch.tensor([[1, 0, 0, 1], [0.5, 1, 0, 0], [1, 1, 1, 0]], dtype=torch.float32)
    # old and reference log-probs off by up to +-0.4: ratios 0.67..1.5, so both clip edges are crossed
    old_logp = logp.detach() + 0.8 * (torch.rand(B, C, generator=gen) - 0.5)
    ref_logp = logp.detach() + 0.8 * (torch.rand(B, C, generator=gen) - 0.5)
    return {"logp": logp, "mask": mask, "rewards": rewards, "advantages": group_advantages(rewards).flatten(),
            "old_logp": old_logp, "ref_logp": ref_logp}


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
@pytest.mark.parametrize("beta", [0.0, 0.04])
@pytest.mark.parametrize("epsilon_high", [0.2, 0.28])
def test_loss_and_gradients_equal_trl(trl, loss_type, beta, epsilon_high):
    batch = make_batch()
    theirs, metrics = trl_loss(trl[0], batch, loss_type, beta, epsilon_high)
    ours, stats = policy_loss(batch["logp"], batch["old_logp"], batch["advantages"], batch["mask"],
                              loss_type=loss_type, epsilon_high=epsilon_high, beta=beta, ref_logp=batch["ref_logp"],
                              max_completion_length=MAX_NEW)
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-7)
    (grad_ours,) = torch.autograd.grad(ours, batch["logp"])
    (grad_theirs,) = torch.autograd.grad(theirs, batch["logp"])
    torch.testing.assert_close(grad_ours, grad_theirs, rtol=1e-6, atol=1e-8)
    assert grad_ours[batch["mask"] == 0].abs().max() == 0  # padding carries no gradient
    assert stats["clip_fraction"] == pytest.approx(metrics["clip_ratio/region_mean"][0], abs=1e-7)
    assert 0.05 < stats["clip_fraction"] < 0.5  # the batch really exercises the clip
    if beta:
        assert stats["kl"] == pytest.approx(metrics["kl"][0], rel=1e-6)


def test_clip_higher_changes_the_loss():
    """Sanity of the batch the oracle test uses: epsilon_high and beta are not no-ops on it."""
    batch = make_batch()
    args = (batch["logp"], batch["old_logp"], batch["advantages"], batch["mask"])
    low = policy_loss(*args, epsilon_high=0.2)[0]
    assert abs(policy_loss(*args, epsilon_high=0.28)[0] - low) > 1e-3
    assert abs(policy_loss(*args, beta=0.04, ref_logp=batch["ref_logp"])[0] - policy_loss(*args)[0]) > 1e-4


def test_advantages_equal_trl(trl):
    """Run TRL's own advantage lines (taken from GRPOTrainer's source) on the same rewards."""
    GRPOTrainer, nanstd = trl
    source = textwrap.dedent(inspect.getsource(GRPOTrainer._generate_and_score_completions))
    last = "advantages = advantages / (std_rewards + 1e-4)"
    start = source.rindex("\n", 0, source.index("mean_grouped_rewards = torch.nanmean")) + 1
    code = textwrap.dedent(source[start:source.index(last) + len(last)])
    rewards = torch.tensor([[1, 0, 0, 1], [0.5, 1, 0, 0], [1, 1, 1, 1], [0, 0.25, 0.75, 1]], dtype=torch.float32)
    scope = {"torch": torch, "nanstd": nanstd, "rewards": rewards.flatten(), "num_generations": 4,
             "self": SimpleNamespace(scale_rewards="group")}
    exec(code, scope)
    torch.testing.assert_close(group_advantages(rewards).flatten(), scope["advantages"], rtol=1e-6, atol=0)
    assert group_advantages(rewards)[2].abs().max() == 0  # all right: no signal
    assert group_advantages(rewards)[0].tolist() == pytest.approx([0.866, -0.866, -0.866, 0.866], abs=1e-3)


def test_bad_loss_type_is_a_clear_error():
    batch = make_batch()
    with pytest.raises(ValueError, match="unknown loss type 'ppo'"):
        policy_loss(batch["logp"], batch["old_logp"], batch["advantages"], batch["mask"], loss_type="ppo")


# ----------------------------------------------------------------------------- log-probs of completions
def test_completion_logprobs_equal_one_forward_per_unpadded_row():
    """Left-padded prompts + right-padded completions in one batch give each token the log-prob that a
    forward over that row alone (no padding at all) gives it."""
    torch.manual_seed(0)
    model = Glm4vForConditionalGeneration(Glm4vConfig.tiny()).eval()
    prompts, completions = [[5, 6, 7, 8, 9], [11, 12]], [[20, 21, 22], [23, 24, 25, 26, 27]]
    P, C = 5, 5
    batch = {"input_ids": torch.tensor([p + [0] * 0 for p in [prompts[0], [0, 0, 0] + prompts[1]]]),
             "attention_mask": torch.tensor([[1] * 5, [0, 0, 0, 1, 1]])}
    batch["mm_token_type_ids"] = torch.zeros_like(batch["input_ids"])
    ids = torch.tensor([c + [0] * (C - len(c)) for c in completions])
    mask = (torch.arange(C) < torch.tensor([[3], [5]])).long()
    suppress = torch.tensor([0, 1, 2])
    with torch.no_grad():
        logp = completion_logprobs(model, batch, ids, mask, suppress)
        for row, (prompt, completion) in enumerate(zip(prompts, completions)):
            logits = model(torch.tensor([prompt + completion])).logits[0, len(prompt) - 1:-1]
            logits[:, suppress] = float("-inf")
            expected = logits.log_softmax(-1).gather(-1, torch.tensor(completion)[:, None])[:, 0]
            torch.testing.assert_close(logp[row, :len(completion)], expected, rtol=1e-5, atol=1e-5)
    assert logp.shape == (2, C) and P == 5


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
def test_two_processes_add_up_to_the_whole_batch(loss_type):
    """Each process's loss x rank_share, gradients summed (what rl.py's all-reduce does), is the loss of the
    whole batch: the same gradient as one process; bnpo is TRL's mean of the processes' token means."""
    batch = make_batch()
    keys = ("logp", "old_logp", "advantages", "mask")
    halves = [{k: batch[k][rows] for k in keys} for rows in (slice(0, 4), slice(4, 12))]
    tokens = int(batch["mask"].sum())
    options = dict(loss_type=loss_type, max_completion_length=MAX_NEW, active_tokens=tokens)
    parts = [policy_loss(*(h[k] for k in keys), **options)[0] for h in halves]
    summed = sum(part * rank_share(loss_type, len(h["mask"]), 12, 2) for part, h in zip(parts, halves))
    whole = policy_loss(*(batch[k] for k in keys), **options)[0] if loss_type != "bnpo" else sum(parts) / 2
    torch.testing.assert_close(summed, whole, rtol=1e-6, atol=1e-8)
    if loss_type != "bnpo":
        (grad_summed,) = torch.autograd.grad(summed, batch["logp"])
        (grad_whole,) = torch.autograd.grad(policy_loss(*(batch[k] for k in keys), **options)[0], batch["logp"])
        torch.testing.assert_close(grad_summed, grad_whole, rtol=1e-6, atol=1e-9)
