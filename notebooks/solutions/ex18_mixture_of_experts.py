"""18 · mixture of experts: the load per expert; GLM-4.5V's weight memory, all and per token."""

import torch


def expert_load(experts, n_experts):
    """Exercise 1: the share of the (token, slot) choices that went to each expert, from the router's
    chosen experts (N, k): (n_experts,), summing to 1."""
    counts = torch.bincount(experts.flatten(), minlength=n_experts).float()
    return counts / counts.sum()


def weight_gib(text_config, total_parameters, bytes_per_value=2):
    """Exercise 2: (GiB to hold every weight, GiB of weights one token reads) for a MoE model with
    `total_parameters`. A token skips the n_routed_experts - num_experts_per_tok experts it did not
    choose in each MoE layer; each expert has gate, up and down projections of hidden x moe_intermediate."""
    t = text_config
    moe_layers = t.num_hidden_layers - t.first_k_dense_replace
    idle = moe_layers * (t.n_routed_experts - t.num_experts_per_tok) * 3 * t.hidden_size * t.moe_intermediate_size
    gib = bytes_per_value / 2**30
    return total_parameters * gib, (total_parameters - idle) * gib
