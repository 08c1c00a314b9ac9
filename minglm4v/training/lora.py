"""LoRA, from scratch: low-rank adapters on chosen nn.Linear layers, merged into the weights on save.

A frozen layer W (out, in) learns a low-rank update instead of a full one:

    y = W x + b + (alpha / r) * B (A dropout(x))        A (r, in): kaiming-uniform;  B (out, r): zeros

so the wrapped model computes exactly what the base model does until B moves. `merge` folds the
update into W (W += (alpha / r) B A; inference then costs nothing extra) and `unmerge` takes it out.

The adapter alone is saved in PEFT's layout, which `peft.PeftModel.from_pretrained` and LoRA-serving
engines read: `adapter_config.json` + `adapter_model.safetensors` with keys
`base_model.model.<module path>.lora_A.weight` (r, in) and `...lora_B.weight` (out, r). The wrapper's
own names follow PEFT's too (`base_layer`, `lora_A`, `lora_B`). Corresponds to `peft.tuners.lora.Linear`.
"""

import json
import math
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from ..model.weights import checkpoint_tensors, read_tensors

CONFIG, WEIGHTS = "adapter_config.json", "adapter_model.safetensors"
PEFT_PREFIX = "base_model.model."


class LoRALinear(nn.Module):
    """nn.Linear (in -> out) plus a rank-r update; (..., in) -> (..., out)."""

    def __init__(self, base_layer: nn.Linear, rank: int, alpha: float, dropout: float = 0.0, dtype=None):
        super().__init__()
        self.base_layer = base_layer
        # dtype: the adapter's own (default: the base layer's); fp32 master weights over a bf16 base in training
        factory = {"device": base_layer.weight.device, "dtype": dtype or base_layer.weight.dtype}
        self.lora_A = nn.Linear(base_layer.in_features, rank, bias=False, **factory)
        self.lora_B = nn.Linear(rank, base_layer.out_features, bias=False, **factory)
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))  # nn.Linear's default, as PEFT
        nn.init.zeros_(self.lora_B.weight)  # why: the update starts at exactly zero
        self.dropout = nn.Dropout(dropout)
        self.scaling = alpha / rank
        self.merged = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base_layer(x)
        if self.merged:
            return out
        return out + self.lora_B(self.lora_A(self.dropout(x))) * self.scaling

    def delta_weight(self) -> torch.Tensor:
        """The update as a full matrix (out, in): scaling * B @ A."""
        return (self.lora_B.weight @ self.lora_A.weight) * self.scaling

    @torch.no_grad()
    def merge(self) -> None:
        if not self.merged:
            self.base_layer.weight += self.delta_weight()
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if self.merged:
            self.base_layer.weight -= self.delta_weight()
            self.merged = False


def select_targets(model: nn.Module, targets: str, allowed=lambda name: True) -> list[str]:
    """Module paths to adapt. `targets`: "all-linear" (every nn.Linear but the output head lm_head, as
    PEFT's shorthand) or comma-separated names matched against the end of a path ("q_proj,v_proj").
    `allowed(path)` restricts the choice (e.g. to the parts that are not frozen)."""
    names = [t.strip() for t in targets.split(",") if t.strip()]
    if not names:
        raise ValueError("--lora-targets is empty; use all-linear or module names like q_proj,v_proj")
    chosen = []
    for path, module in model.named_modules():
        if not isinstance(module, nn.Linear) or not allowed(path) or path == "lm_head":
            continue
        if names == ["all-linear"] or any(path == n or path.endswith("." + n) for n in names):
            chosen.append(path)
    if not chosen:
        linear = sorted({p.rsplit(".", 1)[-1] for p, m in model.named_modules() if isinstance(m, nn.Linear)})
        raise ValueError(f"LoRA targets {names} match no trainable nn.Linear; linear layer names in this model: "
                         f"{linear} (frozen parts, and lm_head, get no adapters)")
    return chosen


def inject(model: nn.Module, paths: list[str], rank: int, alpha: float, dropout: float = 0.0, dtype=None) -> None:
    """Replace each nn.Linear at `paths` by a LoRALinear around it (A and B in `dtype`, default: the
    layer's); freeze everything but A and B."""
    if rank < 1:
        raise ValueError(f"LoRA rank must be at least 1, got {rank}")
    model.requires_grad_(False)
    for path in paths:
        parent, _, name = path.rpartition(".")
        owner = model.get_submodule(parent)
        setattr(owner, name, LoRALinear(getattr(owner, name), rank, alpha, dropout, dtype))
    model.lora_config = {"r": rank, "lora_alpha": alpha, "lora_dropout": dropout, "target_modules": paths}


def lora_layers(model: nn.Module) -> dict[str, LoRALinear]:
    return {path: m for path, m in model.named_modules() if isinstance(m, LoRALinear)}


def merged_state_dict(model: nn.Module, state: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """The state dict of the plain model with every update folded in, under the checkpoint's names
    (`...q_proj.weight`, not `...q_proj.base_layer.weight`); the model itself is left unchanged.
    `state`: the model's state dict when it is not `model.state_dict()` (gathered from FSDP shards)."""
    state = model.state_dict() if state is None else state
    layers = lora_layers(model)
    merged = {}
    for key, tensor in state.items():
        path, _, leaf = key.rpartition(".")
        if path.endswith((".lora_A", ".lora_B")) and path.rpartition(".")[0] in layers:
            continue
        owner = path.removesuffix(".base_layer")
        if owner != path and owner in layers:
            if leaf == "weight" and not layers[owner].merged:
                a, b = state[f"{owner}.lora_A.weight"], state[f"{owner}.lora_B.weight"]
                # delta_weight, from `state`; why back to the base's dtype at once: a bf16 base plus an
                # fp32 update would otherwise hold every merged matrix in fp32 (36 GB for the 9B)
                tensor = (tensor + (b @ a).detach() * layers[owner].scaling).to(tensor.dtype)
            key = f"{owner}.{leaf}"
        merged[key] = tensor
    return merged


def save_adapter(model: nn.Module, directory, base_model_name_or_path: str = "",
                 state: dict[str, torch.Tensor] | None = None) -> None:
    """Write the adapter alone in PEFT's layout (see module docstring); `state` as in merged_state_dict."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = model.state_dict() if state is None else state
    tensors = {f"{PEFT_PREFIX}{path}.{name}.weight": state[f"{path}.{name}.weight"].detach().contiguous().cpu()
               for path in lora_layers(model) for name in ("lora_A", "lora_B")}
    save_file(tensors, directory / WEIGHTS, metadata={"format": "pt"})
    config = {"peft_type": "LORA", "base_model_name_or_path": base_model_name_or_path, "task_type": None,
              "bias": "none", "fan_in_fan_out": False, "init_lora_weights": True, "use_rslora": False,
              "use_dora": False, "modules_to_save": None, **model.lora_config}
    (directory / CONFIG).write_text(json.dumps(config, indent=2) + "\n")


def load_adapter(model: nn.Module, directory) -> None:
    """Inject and fill the adapter saved in `directory` (PEFT layout, full module paths as targets)."""
    directory = Path(directory)
    config = json.loads((directory / CONFIG).read_text())
    if config.get("peft_type") != "LORA" or config.get("use_dora") or config.get("use_rslora"):
        raise ValueError(f"{directory / CONFIG} is not a plain LoRA adapter (peft_type LORA, no DoRA/rsLoRA)")
    targets = config["target_modules"]  # full paths (ours) or name endings (PEFT's own adapters)
    targets = select_targets(model, targets if isinstance(targets, str) else ",".join(targets))
    inject(model, targets, config["r"], config["lora_alpha"], config["lora_dropout"])
    files = [directory / WEIGHTS]
    stored = dict.fromkeys(checkpoint_tensors(files))  # every tensor, as stored; a damaged file is refused by name
    weights = {k.removeprefix(PEFT_PREFIX): v for k, v in read_tensors(files, stored, torch.device("cpu")).items()}
    expected = {f"{p}.{n}.weight" for p in targets for n in ("lora_A", "lora_B")}
    if set(weights) != expected:
        raise ValueError(f"{directory / WEIGHTS} does not match its config: missing "
                         f"{sorted(expected - set(weights))[:5]}, unexpected {sorted(set(weights) - expected)[:5]}")
    for key, tensor in weights.items():
        model.get_parameter(key).data.copy_(tensor)
