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
        # written out as transformers' Glm4vRMSNorm, operation for operation: bf16 results are bit for bit its
        xf = cast(x, torch.float32)
        normed = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * cast(normed, x.dtype)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"


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
