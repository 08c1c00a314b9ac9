"""The mixture-of-experts MLP (minglm4v/model/moe.py) against transformers' Glm4vMoeTextMoE on configs
that really route: the same experts chosen, the same weights, the same output; and sparse dispatch
equal to the dense reference (every expert on every token, weighted by a mostly-zero matrix)."""

import dataclasses

import pytest
import torch
from torch.testing import assert_close

from minglm4v import Glm4vMoeConfig
from minglm4v.model.moe import MoE, Router, dispatch, idle_expert_parameters

VARIANTS = {  # tiny(): 8 experts in 4 groups, 2 groups allowed, top-3, scaling 2.5
    "grouped": {},
    "grouped-unnormalised": dict(norm_topk_prob=False),
    "one-group": dict(n_group=1, topk_group=1, num_experts_per_tok=2, n_shared_experts=2),
}


def moe_config(**text):
    tiny = Glm4vMoeConfig.tiny()
    return dataclasses.replace(tiny, text_config=dataclasses.replace(tiny.text_config, **text)).text_config


def randomized(cfg, seed=0) -> MoE:
    """An MoE with random weights and a random selection bias big enough to change choices."""
    gen = torch.Generator().manual_seed(seed)
    moe = MoE(cfg)
    with torch.no_grad():
        for name, p in sorted(moe.named_parameters()):
            p.copy_(torch.randn(p.shape, generator=gen) / p.shape[-1] ** 0.5)
        moe.gate.e_score_correction_bias.copy_(0.3 * torch.randn(cfg.n_routed_experts, generator=gen))
    return moe


def transformers_moe(cfg, ours: MoE):
    """transformers' Glm4vMoeTextMoE with our weights (its experts are fused: gate_up (E, 2I, D))."""
    from transformers import Glm4vMoeConfig as HFConfig
    from transformers.models.glm4v_moe.modeling_glm4v_moe import Glm4vMoeTextMoE
    hf_text = HFConfig.from_dict(dataclasses.replace(Glm4vMoeConfig.tiny(), text_config=cfg).to_dict()).text_config
    hf_text._experts_implementation = "grouped_mm"  # what from_pretrained picks by default
    hf = Glm4vMoeTextMoE(hf_text).eval()
    with torch.no_grad():
        hf.gate.weight.copy_(ours.gate.weight)
        hf.gate.e_score_correction_bias.copy_(ours.gate.e_score_correction_bias)
        hf.experts.gate_up_proj.copy_(torch.stack([torch.cat([e.gate_proj.weight, e.up_proj.weight])
                                                   for e in ours.experts]))
        hf.experts.down_proj.copy_(torch.stack([e.down_proj.weight for e in ours.experts]))
        hf.shared_experts.load_state_dict(ours.shared_experts.state_dict())
    return hf


@pytest.mark.parametrize("variant", VARIANTS)
def test_routing_and_output_equal_transformers(variant):
    cfg = moe_config(**VARIANTS[variant])
    ours = randomized(cfg)
    hf = transformers_moe(cfg, ours)
    x = torch.randn(2, 7, cfg.hidden_size, generator=torch.Generator().manual_seed(1))
    tokens = x.flatten(0, 1)
    with torch.no_grad():
        logits, weights, experts = ours.gate(tokens)
        hf_logits, hf_weights, hf_experts = hf.gate(tokens)
        got, want = ours(x), hf(x)
    assert torch.equal(experts.sort(-1).values, hf_experts.sort(-1).values)
    assert_close(weights.gather(1, experts.argsort(-1)), hf_weights.gather(1, hf_experts.argsort(-1)),
                 rtol=1e-6, atol=1e-7)
    assert_close(logits, hf_logits, rtol=0, atol=0)
    assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert got.abs().mean() > 0.1
    if cfg.norm_topk_prob:
        assert_close(weights.sum(-1), torch.full((14,), cfg.routed_scaling_factor))
    if cfg.n_group > 1:  # every token's experts lie in at most topk_group groups
        per_group = cfg.n_routed_experts // cfg.n_group
        assert max(len(set((experts[n] // per_group).tolist())) for n in range(14)) <= cfg.topk_group


def test_bf16_equal_transformers():
    """In bf16 (router in fp32, as both keep it) the outputs agree bit for bit."""
    cfg = moe_config()
    ours = randomized(cfg)
    hf = transformers_moe(cfg, ours)
    for module in (ours, hf):
        module.to(torch.bfloat16)
        module.gate.float()
    x = torch.randn(3, 5, cfg.hidden_size, generator=torch.Generator().manual_seed(2)).to(torch.bfloat16)
    with torch.no_grad():
        got, want = ours(x), hf(x)
    assert got.dtype == torch.bfloat16 and torch.equal(got, want)


def test_selection_bias_chooses_but_does_not_weigh():
    cfg = moe_config()
    moe = randomized(cfg)
    x = torch.randn(64, cfg.hidden_size, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        _, weights, experts = moe.gate(x)
        scores = torch.sigmoid(x @ moe.gate.weight.T)
        moe.gate.e_score_correction_bias.zero_()
        _, _, unbiased_experts = moe.gate(x)
    assert not torch.equal(experts.sort(-1).values, unbiased_experts.sort(-1).values)  # the bias changed choices
    picked = scores.gather(1, experts)
    assert_close(weights, picked / picked.sum(-1, keepdim=True) * cfg.routed_scaling_factor)


def test_the_router_stays_fp32_under_bf16_autocast():
    """`train --bf16` runs under autocast, which would compute the router's linear in bf16: it must not."""
    cfg = moe_config()
    moe = randomized(cfg)
    x = torch.randn(64, cfg.hidden_size, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        expected = moe.gate(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            under_autocast = moe.gate(x)
    assert under_autocast[0].dtype == under_autocast[1].dtype == torch.float32
    for a, b in zip(expected, under_autocast, strict=True):
        assert torch.equal(a, b)


def test_sparse_dispatch_equals_dense_reference():
    """Every expert on every token, weighted by an (N, E) matrix that is zero where a token did not choose."""
    cfg = moe_config()
    moe = randomized(cfg)
    x = torch.randn(40, cfg.hidden_size, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        _, weights, experts = moe.gate(x)
        dense_weights = torch.zeros(40, cfg.n_routed_experts).scatter(1, experts, weights)  # (N, E)
        every = torch.stack([expert(x) for expert in moe.experts], dim=1)  # (N, E, D)
        reference = (dense_weights[..., None] * every).sum(1)
        sparse = dispatch(x, experts, weights, moe.experts)
    assert (dense_weights > 0).sum(-1).eq(cfg.num_experts_per_tok).all()
    assert_close(sparse, reference, rtol=1e-5, atol=1e-6)


def test_an_expert_nobody_chose_is_skipped():
    cfg = moe_config()
    moe = randomized(cfg)
    x = torch.randn(5, cfg.hidden_size)
    experts = torch.tensor([[0, 1, 2]] * 5)
    weights = torch.rand(5, 3)
    calls = []
    for i, expert in enumerate(moe.experts):
        expert.register_forward_hook(lambda module, args, out, i=i: calls.append((i, args[0].shape[0])))
    with torch.no_grad():
        dispatch(x, experts, weights, moe.experts)
    assert calls == [(0, 5), (1, 5), (2, 5)]


def test_idle_expert_parameters():
    t = Glm4vMoeConfig.glm45v().text_config  # 45 MoE layers, 120 idle experts of 3 * 4096 * 1408
    assert idle_expert_parameters(t) == 45 * 120 * 3 * 4096 * 1408
    assert isinstance(MoE(moe_config()).gate, Router)


@pytest.mark.parametrize("masked", [False, True])
def test_load_balancing_loss_equals_transformers(masked):
    from transformers.models.glm4v_moe.modeling_glm4v_moe import load_balancing_loss_func

    from minglm4v.model.moe import load_balancing_loss
    gen = torch.Generator().manual_seed(5)
    layers = [torch.randn(2 * 6, 8, generator=gen) for _ in range(3)]  # 3 MoE layers, B=2, L=6, E=8
    mask = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]]) if masked else None
    got = load_balancing_loss(layers, 3, mask)
    assert_close(got, load_balancing_loss_func(tuple(layers), 8, 3, mask), rtol=1e-6, atol=1e-6)
    even = load_balancing_loss([torch.zeros(4, 8)], 2)  # every expert equally likely: the loss is k
    assert_close(even, torch.tensor(2.0))


def test_in_training_every_expert_gets_a_gradient():
    """An expert nobody chose still gets a (zero) gradient, as data-parallel training needs."""
    cfg = moe_config()
    moe = randomized(cfg)
    x = torch.randn(2, cfg.hidden_size, requires_grad=True)
    moe(x[None]).sum().backward()
    _, _, experts = moe.gate(x)
    idle = set(range(cfg.n_routed_experts)) - set(experts.flatten().tolist())
    assert idle  # 2 tokens x 3 experts leave some of the 8 unchosen
    for i in idle:
        assert torch.equal(moe.experts[i].up_proj.weight.grad, torch.zeros_like(moe.experts[i].up_proj.weight))
    assert all(p.grad is not None for p in moe.parameters())

