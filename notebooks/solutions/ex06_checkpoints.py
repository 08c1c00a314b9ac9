"""06 · checkpoints: parameter counts from the safetensors header; the bf16 logit error."""

import copy
import math
from pathlib import Path

import torch
from safetensors import safe_open

PARTS = {"model.visual.": "vision", "model.language_model.": "language_model", "lm_head.": "lm_head"}


def count_by_component(directory) -> dict[str, int]:
    """Exercise 1: shapes from the header of every *.safetensors file (no tensor data read)."""
    counts = dict.fromkeys(PARTS.values(), 0)
    for path in sorted(Path(directory).glob("*.safetensors")):
        with safe_open(path, "pt") as f:
            for key in f.keys():
                part = next(name for prefix, name in PARTS.items() if key.startswith(prefix))
                counts[part] += math.prod(f.get_slice(key).get_shape())
    return counts


@torch.no_grad()
def bf16_logit_error(model, inputs):
    """Exercise 2: max |logits(fp32) - logits(bf16 copy)|, and max |logits(fp32)| for scale."""
    ref = model(**inputs).logits
    low = copy.deepcopy(model).to(torch.bfloat16)
    low_inputs = {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in inputs.items()}
    err = (low(**low_inputs).logits.float() - ref).abs().max().item()
    return err, ref.abs().max().item()
