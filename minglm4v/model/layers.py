"""Building blocks of the vision tower, the merger and the decoder.

* `RMSNorm` — transformers' `Glm4vRMSNorm`: normalise in fp32, cast back, *then* scale by the weight
  (the order matters for bit-exact bf16).
* `Linear` — `nn.Linear`, but a single bf16/fp16 row (decoding one token at batch 1) is a
  matrix-vector product.
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
        # written out, not F.rms_norm: on CPU its composite adds casts and copies around the same math,
        # which made a small model's decode step ~8% slower; same kernels as GLM, so bit for bit.
        # why the dtype tests: x.float() and .to(x.dtype) on fp32 are no-ops that still go through the
        # dispatcher, 34 of the ~290 operators of a 1M model's decode step
        xf = x if x.dtype == torch.float32 else x.float()
        normed = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * (normed if normed.dtype == x.dtype else normed.to(x.dtype))

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"


class Linear(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float32 or x.shape[:-1].numel() != 1:
            return super().forward(x)
        # why: on CPU, one bf16 row through nn.Linear's matrix-matrix path takes up to 2x as long as a
        # matrix-vector product (fp32: the same), and a batch-1 decode step is nothing but such rows
        row = x.reshape(-1)  # a view whenever the row is contiguous, which a decode step's rows are
        y = torch.addmv(self.bias, self.weight, row) if self.bias is not None else self.weight @ row
        return y.view(*x.shape[:-1], -1)


class SwiGLU(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.gate_proj = nn.Linear(dim, hidden, bias=False)
        self.up_proj = nn.Linear(dim, hidden, bias=False)
        self.down_proj = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))
