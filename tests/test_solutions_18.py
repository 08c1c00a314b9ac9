"""The solutions of notebook 18's exercises (notebooks/solutions/ex18_mixture_of_experts.py), checked
against the package."""

import sys

import torch
from helpers import REPO

from minglm4v import Glm4vMoeConfig
from minglm4v.model.moe import MoE, idle_expert_parameters

sys.path.insert(0, str(REPO / "notebooks"))
from solutions import ex18_mixture_of_experts as ex18  # noqa: E402


def test_expert_load_is_the_routers_share_per_expert():
    cfg = Glm4vMoeConfig.tiny().text_config
    torch.manual_seed(0)
    moe = MoE(cfg)
    with torch.no_grad():
        _, _, experts = moe.gate(torch.randn(50, cfg.hidden_size))
    load = ex18.expert_load(experts, cfg.n_routed_experts)
    assert load.shape == (8,) and abs(float(load.sum()) - 1) < 1e-6
    torch.testing.assert_close(load * experts.numel(), torch.bincount(experts.flatten(), minlength=8).float())
    assert len(load.nonzero()) > 3  # several experts in use


def test_weight_gib_of_glm45v():
    t = Glm4vMoeConfig.glm45v().text_config
    total = 107_710_927_360
    all_gib, active_gib = ex18.weight_gib(t, total)
    assert round(all_gib, 1) == 200.6 and active_gib == (total - idle_expert_parameters(t)) * 2 / 2**30
    assert round(active_gib, 1) == 26.6
