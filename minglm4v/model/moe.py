"""The mixture-of-experts MLP of GLM-4.5V / GLM-4.6V: a router picks k of E small MLPs for every token.

Corresponds to transformers' `Glm4vMoeTextMoE` (`Glm4vMoeTextTopkRouter`, `Glm4vMoeTextExperts`, the
shared `Glm4vMoeTextMLP`). Module names follow the checkpoint keys of one decoder layer:

    mlp.gate.weight (E, D), mlp.gate.e_score_correction_bias (E,)     the router, both kept in fp32
    mlp.experts.{i}.{gate,up,down}_proj.weight                         expert i, a SwiGLU of width I
    mlp.shared_experts.{gate,up,down}_proj.weight                      one SwiGLU that every token uses

Layers before `first_k_dense_replace` have a plain SwiGLU `mlp` instead (`mlp_for_layer`).

For x (B, L, D), with N = B * L tokens:
    scores  = sigmoid(x @ gate.weight.T)                      (N, E), in fp32
    choose  = scores + e_score_correction_bias                only to *choose*: a learned nudge that
                                                              balanced the load during training
    groups  = the topk_group of the n_group groups whose two best `choose` values sum highest
    experts = the k best `choose` inside those groups          (N, k)
    weights = scores at those experts (unbiased), / their sum if norm_topk_prob, * routed_scaling_factor
    out     = sum_j weights[:, j] * expert_{experts[:, j]}(x)  +  shared_experts(x)

Each expert runs only on the tokens that chose it: the (token, expert) pairs are sorted by expert, so
each expert reads one contiguous run of them (`dispatch`).
"""

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import nn

from .config_moe import MoeTextConfig
from .layers import SwiGLU

# parameters a checkpoint keeps in fp32 even when everything else is bf16 (transformers does the same):
# scores of 128 experts that differ in the 3rd decimal would tie in bf16 and change which experts are chosen
FP32_KEYS = ("mlp.gate.weight", "mlp.gate.e_score_correction_bias")


class Router(nn.Module):
    def __init__(self, cfg: MoeTextConfig):
        super().__init__()
        self.cfg = cfg
        self.weight = nn.Parameter(torch.empty(cfg.n_routed_experts, cfg.hidden_size, dtype=torch.float32))
        nn.init.normal_(self.weight, std=0.02)  # transformers' initialisation of the router
        self.register_buffer("e_score_correction_bias", torch.zeros(cfg.n_routed_experts, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (N, D) -> logits (N, E) fp32, weights (N, k) fp32, experts (N, k) int64."""
        c = self.cfg
        # why autocast off: under --bf16 training autocast would run this linear in bf16, and close expert
        # scores would tie and change the choice; the router is fp32 in every mode
        with torch.autocast(x.device.type, enabled=False):
            logits = F.linear(x.float(), self.weight.float())
        scores = logits.sigmoid()
        choose = scores + self.e_score_correction_bias
        grouped = rearrange(choose, "n (g e) -> n g e", g=c.n_group)
        group_scores = grouped.topk(2, dim=-1).values.sum(-1)  # (N, G)
        best = group_scores.topk(c.topk_group, dim=-1, sorted=False).indices
        allowed = torch.zeros_like(group_scores, dtype=torch.bool).scatter(1, best, True)
        allowed = repeat(allowed, "n g -> n (g e)", e=c.n_routed_experts // c.n_group)
        experts = choose.masked_fill(~allowed, float("-inf")).topk(c.num_experts_per_tok, dim=-1, sorted=False).indices
        weights = scores.gather(1, experts)  # the bias chose; it does not weigh
        if c.norm_topk_prob:
            weights = weights / (weights.sum(-1, keepdim=True) + 1e-20)  # why 1e-20: as GLM, never 0 / 0
        return logits, weights * c.routed_scaling_factor, experts


def dispatch(x: torch.Tensor, experts: torch.Tensor, weights: torch.Tensor, modules: nn.ModuleList) -> torch.Tensor:
    """x (N, D), experts and weights (N, k) -> sum_j weights[:, j] * modules[experts[:, j]](x): (N, D).

    The N * k (token, expert) pairs are sorted by expert; expert e then runs once, on the rows of its
    run of pairs. Each pair's weighted output is kept in fp32 (the weights are fp32) and a token's k
    outputs are summed there, in slot order, before the cast back to x's dtype: what transformers'
    default ("grouped_mm") experts do, so bf16 results agree bit for bit."""
    k = experts.shape[1]
    pairs = rearrange(experts, "n k -> (n k)").argsort(stable=True)  # pair p = token p // k, slot p % k
    counts = torch.bincount(experts.flatten(), minlength=len(modules)).tolist()
    flat_weights = rearrange(weights, "n k -> (n k)")
    out = x.new_zeros(len(pairs), x.shape[1], dtype=torch.promote_types(x.dtype, weights.dtype))  # (N k, D)
    for expert, run in zip(modules, pairs.split(counts), strict=True):
        # an expert no token chose does not run; in training it runs on no rows, which gives its weights a
        # zero gradient: data-parallel training (DDP, FSDP) needs every parameter to get one on every rank
        if len(run) or torch.is_grad_enabled():
            out[run] = expert(x[run // k]) * flat_weights[run, None]
    return rearrange(out, "(n k) d -> n k d", k=k).sum(1).to(x.dtype)


class MoE(nn.Module):
    def __init__(self, cfg: MoeTextConfig):
        super().__init__()
        self.gate = Router(cfg)
        self.experts = nn.ModuleList(SwiGLU(cfg.hidden_size, cfg.moe_intermediate_size)
                                     for _ in range(cfg.n_routed_experts))
        self.shared_experts = SwiGLU(cfg.hidden_size, cfg.moe_intermediate_size * cfg.n_shared_experts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, L, D) -> (B, L, D)"""
        tokens = rearrange(x, "b l d -> (b l) d")
        _, weights, experts = self.gate(tokens)
        routed = dispatch(tokens, experts, weights, self.experts)
        return rearrange(routed, "(b l) d -> b l d", b=x.shape[0]) + self.shared_experts(x)


def mlp_for_layer(cfg: MoeTextConfig, layer_idx: int) -> nn.Module:
    """The first `first_k_dense_replace` layers keep a dense SwiGLU (width intermediate_size)."""
    return MoE(cfg) if cfg.is_moe_layer(layer_idx) else SwiGLU(cfg.hidden_size, cfg.intermediate_size)


def idle_expert_parameters(cfg: MoeTextConfig) -> int:
    """Parameters a token does not use: in every MoE layer, the E - k routed experts it did not choose.
    Active parameters per token = all parameters - these."""
    expert = 3 * cfg.hidden_size * cfg.moe_intermediate_size  # gate, up and down projections
    moe_layers = sum(cfg.is_moe_layer(i) for i in range(cfg.num_hidden_layers))
    return moe_layers * (cfg.n_routed_experts - cfg.num_experts_per_tok) * expert


def load_balancing_loss(router_logits: list[torch.Tensor], top_k: int, attention_mask=None) -> torch.Tensor:
    """The Switch-Transformer balance loss, as transformers computes it for GLM-4.5V's training
    (`load_balancing_loss_func`): router_logits, one (N, E) tensor per MoE layer, N = B * L tokens in
    (b l) order; attention_mask (B, L) leaves padding out. Pooled over every layer's tokens,
        f_e = share of the top-k choices that go to expert e   (top-k of a softmax over the logits)
        P_e = mean softmax probability of expert e
        loss = E * sum_e f_e * P_e
    which is k when the load is even and grows as the router favours a few experts. (The softmax is
    transformers' choice; GLM's router itself scores with a sigmoid.)"""
    logits = torch.cat(router_logits).float()  # (layers * N, E)
    n_experts, layers = logits.shape[1], len(router_logits)
    mask = torch.ones(logits.shape[0], device=logits.device) if attention_mask is None else \
        repeat(attention_mask.flatten().float().to(logits.device), "n -> (layers n)", layers=layers)
    probs = logits.softmax(-1)
    chosen = F.one_hot(probs.topk(top_k, dim=-1).indices, n_experts).sum(1).float()  # (rows, E) 0/1
    share = (chosen * mask[:, None]).sum(0) / mask.sum()
    mean_prob = (probs * mask[:, None]).sum(0) / mask.sum()
    return n_experts * (share * mean_prob).sum()

