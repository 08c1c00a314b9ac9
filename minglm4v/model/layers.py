"""Building blocks of the vision tower, the merger and the decoder.

* `RMSNorm` — transformers' `Glm4vRMSNorm`: normalise in fp32, cast back, *then* scale by the weight
  (the order matters for bit-exact bf16).
* `SwiGLU` — `down(silu(gate(x)) * up(x))` with separate `gate_proj` / `up_proj` / `down_proj`, no
  biases; transformers' `Glm4VisionMlp`, and the tail of `Glm4vVisionPatchMerger`.
Shapes: (..., dim) -> (..., dim).
"""

import torch
import torch.nn.functional as F
from torch import nn


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # as transformers' Glm4vRMSNorm: normalise in fp32, cast back, *then* scale (bf16 bit for bit its)
        return self.weight * cast(rms_normalize(cast(x, torch.float32), self.eps), x.dtype)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"


def rms_normalize(x: torch.Tensor, eps: float) -> torch.Tensor:
    """x (..., dim) fp32 -> x / sqrt(mean(x^2 over dim) + eps), bit for bit (forward and backward)
    `x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)`. Why a sum over dim and two 0-dim tensors:
    a Python number in a tensor operation is wrapped and converted to the tensor's dtype every time (one
    more copy operator), and `mean` divides by a Python int inside; in the 17 norms of a decode step of
    benchmarks/bench_generate.py's 1M model these copies took ~6% of the step."""
    mean_square = x.pow(2).sum(-1, keepdim=True) / fp32(x.shape[-1])
    return x * torch.rsqrt(mean_square + fp32(eps))


FP32: dict[float, torch.Tensor] = {}  # fp32's tensors, made once each


def fp32(value: float) -> torch.Tensor:
    """`value` as a 0-dim fp32 CPU tensor, made once per value. A 0-dim CPU tensor joins operations on any
    device as a scalar, and in fp32 it is the same number a Python float becomes there."""
    if value not in FP32:  # a plain dict, as rope.pair_swap's
        with torch.inference_mode(False):  # made during generate, also used by training: an ordinary tensor
            FP32[value] = torch.tensor(value, dtype=torch.float32)
    return FP32[value]


def cast(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """`x.to(dtype)`, skipped when x already has that dtype. Why: such a `.to` changes nothing but still
    goes through the dispatcher; RMSNorm's two casts in fp32 were 34 of the ~300 operators of a decode
    step of benchmarks/bench_generate.py's 1M model (it counts them), each a few microseconds."""
    return x if x.dtype == dtype else x.to(dtype)


class SwiGLU(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.gate_proj = nn.Linear(dim, hidden, bias=False)
        self.up_proj = nn.Linear(dim, hidden, bias=False)
        self.down_proj = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))
