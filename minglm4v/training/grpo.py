"""GRPO (Group Relative Policy Optimisation): the objective of GLM-4.1V-Thinking's RL stage, on one batch.

Corresponds to TRL's `GRPOTrainer` (the advantage lines of `_generate_and_score_completions`, and
`_compute_loss` with importance sampling per token); tests/test_grpo.py checks the loss, its gradients
and the advantages against it. The loop around it (rollouts, curriculum, dynamic sampling) is in
rollouts.py and rl.py.

For each prompt, G completions o_1..o_G are sampled and scored with rewards r_1..r_G (rewards.py):

    advantage    A_i = (r_i - mean(r)) / (std(r) + 1e-4)          std Bessel-corrected, per group:
                 no value network, the group is the baseline. A group whose rewards are all equal has
                 A = 0 everywhere: it carries no signal (rl.py drops such groups).
    ratio        rho_t = exp(logp_t - old_logp_t)                  per completion token t
    per token    l_t = -min(rho_t A, clip(rho_t, 1 - eps_low, 1 + eps_high) A) + beta k3_t
                 k3_t = exp(ref_t - logp_t) - (ref_t - logp_t) - 1  (KL to the start model, >= 0)
    loss         "grpo"     mean over completions of (sum_t l_t m_t / sum_t m_t)   (per sample; the paper's)
                 "bnpo"     sum l m / sum m                            (per token, this process)
                 "dapo"     sum l m / the active tokens of the whole batch (all processes)
                 "dr_grpo"  sum l m / (completions x max_new_tokens)

with m the completion mask (1 on sampled tokens up to and including the end of turn; 0 on padding
and on the tokens a thinking budget forced). "Clip-higher" (eps_high 0.28 > eps_low 0.2, from DAPO)
leaves more room to raise a rare token's probability than to lower it. With one update per batch the
ratio is exactly 1 (old_logp = logp, detached) and the gradient is plain REINFORCE with the group
baseline; the clip acts when a batch is reused.

    completion_logprobs(model, batch, completion_ids, completion_mask, suppress)  -> logp (B, C)
    policy_loss(logp, old_logp, A (B,), m (B, C), ...)  -> (loss, {"clip_fraction", "kl"})
"""

import torch

LOSS_TYPES = ("grpo", "bnpo", "dapo", "dr_grpo")


def group_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """rewards (groups, G) -> advantages (groups, G): the group mean subtracted, divided by the group's
    Bessel-corrected std + 1e-4 (TRL's `scale_rewards="group"`)."""
    mean = rewards.mean(dim=1, keepdim=True)
    std = rewards.std(dim=1, keepdim=True)  # unbiased (n - 1), as TRL's nanstd
    return (rewards - mean) / (std + 1e-4)


def completion_logprobs(model, batch: dict, completion_ids: torch.Tensor, completion_mask: torch.Tensor,
                        suppress: torch.Tensor | None = None) -> torch.Tensor:
    """Log-probability (B, C) of each completion token given the prompt and the tokens before it.

    batch: the left-padded prompts as the processor gives them (input_ids, attention_mask,
    mm_token_type_ids (B, P), pixels); completion_ids / completion_mask (B, C), right-padded. The
    completion is text whatever ids it holds (its token types are 0). `suppress`: ids rollouts never
    sample; they are left out of the softmax too, so these are the log-probs of the sampling policy."""
    C = completion_ids.shape[1]
    input_ids = torch.cat([batch["input_ids"], completion_ids], dim=1)
    media = {k: v for k, v in batch.items() if k not in ("input_ids", "attention_mask", "mm_token_type_ids")}
    logits = model(input_ids, attention_mask=torch.cat([batch["attention_mask"], completion_mask], dim=1),
                   mm_token_type_ids=torch.cat([batch["mm_token_type_ids"], torch.zeros_like(completion_ids)], dim=1),
                   logits_to_keep=C + 1, **media).logits[:, :-1].float()  # position P - 1 + t predicts token t
    if suppress is not None:
        logits = logits.index_fill(-1, suppress, float("-inf"))
    return logits.log_softmax(dim=-1).gather(-1, completion_ids[..., None])[..., 0]


def policy_loss(logp, old_logp, advantages, mask, *, loss_type: str = "grpo", epsilon_low: float = 0.2,
                epsilon_high: float = 0.28, beta: float = 0.0, ref_logp=None, max_completion_length=None,
                active_tokens=None):
    """The clipped GRPO objective of one batch (see the module docstring), as TRL computes it on one
    process. logp, old_logp, ref_logp, mask (B, C); advantages (B,). `max_completion_length` is
    dr_grpo's constant; `active_tokens` dapo's denominator (default: this batch's). Returns the loss
    and its statistics: the share of tokens whose ratio was clipped, and the mean k3 KL."""
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"unknown loss type {loss_type!r}; use one of {list(LOSS_TYPES)}")
    mask = mask.to(logp.dtype)
    A = advantages[:, None]
    ratio = torch.exp(logp - old_logp)
    clipped = torch.clamp(ratio, 1 - epsilon_low, 1 + epsilon_high)
    per_token = -torch.min(ratio * A, clipped * A)
    kl = None
    if beta != 0.0:
        delta = ref_logp - logp
        kl = torch.exp(delta) - delta - 1
        per_token = per_token + beta * kl
    total = (per_token * mask).sum()
    if loss_type == "grpo":
        loss = ((per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()
    elif loss_type == "bnpo":
        loss = total / mask.sum().clamp(min=1.0)
    elif loss_type == "dapo":
        loss = total / (mask.sum() if active_tokens is None else torch.as_tensor(active_tokens)).clamp(min=1.0)
    else:
        loss = total / (logp.shape[0] * max_completion_length)
    with torch.no_grad():
        region = ((ratio < 1 - epsilon_low) & (A < 0)) | ((ratio > 1 + epsilon_high) & (A > 0))
        tokens = mask.sum().clamp(min=1.0)
        stats = {"clip_fraction": float((region * mask).sum() / tokens),
                 "kl": float((kl * mask).sum() / tokens) if kl is not None else 0.0}
    return loss, stats


def rank_share(loss_type: str, sequences: int, all_sequences: int, world: int) -> float:
    """What one process's loss is multiplied by before the gradients of all processes are summed, so that
    the sum is the loss of the whole batch: a mean over every completion (grpo, dr_grpo), TRL's mean over
    processes of each one's token mean (bnpo); dapo's loss already divides by every process's tokens."""
    if loss_type in ("grpo", "dr_grpo"):
        return sequences / max(all_sequences, 1)
    return 1.0 / world if loss_type == "bnpo" else 1.0
