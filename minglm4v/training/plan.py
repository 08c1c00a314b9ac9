"""How much memory a training run needs on each GPU, before it runs:

    python -m minglm4v plan --preset glm41v-9b --lora-rank 8 --bf16 --gradient-checkpointing
    python -m minglm4v plan --model DIR --fsdp 8 --bf16 --batch-size 1 --seq-len 4096
    python -m minglm4v plan --preset glm45v --fsdp 16 --lora-rank 8 --bf16 --gradient-checkpointing

The model is built on the meta device (no memory, no weights read) and prepared exactly as `train`
prepares it (train.configure: the default --freeze, LoRA, the dtypes of --bf16), then counted:

    weights      every parameter once, in its dtype; under --bf16 autocast also keeps a bf16 copy of each
                 trainable weight for the step. With --fsdp N: 1/N of them, plus the units gathered whole
                 at a time: the root (embeddings, lm_head, merger, ...) and two blocks (one prefetched)
    gradients    fp32, trainable parameters only (1/N under FSDP); they appear during the backward
                 pass as the activations go, so the total counts the larger of the two
    optimizer    AdamW's two fp32 moments per trainable parameter (1/N under FSDP)
    activations  what autograd keeps for the backward pass, per token: one decoder layer is built alone
                 with the real shapes (uninitialised CPU memory, no weights read) and run on a few tokens,
                 its saved tensors counted (the growth from 16 to 32 tokens, so weight casts drop out);
                 times layers x batch x seq-len, plus the head (fp32 log-probabilities and, in the
                 backward pass, their gradient and the logits'). With gradient checkpointing each layer
                 keeps only its input, plus the larger of the head and one recomputed layer (counted
                 twice: its activations and their gradients)

The vision tower and merger are frozen here (train's default): they keep no activations. Not counted:
the CUDA context and the allocator's fragmentation (about 1 GiB on a GPU). The estimate is checked
against measured peaks of real runs by benchmarks/bench_memory.py (and tests/test_plan.py).
No counterpart in transformers (accelerate's `estimate-memory` counts the weights only).
"""

import argparse
import dataclasses
from pathlib import Path

import torch

from ..model.config import Glm4vConfig
from ..model.config_moe import Glm4vMoeConfig
from ..model.families import load_config
from ..model.glm4v import Glm4vForConditionalGeneration
from ..model.glm4v_moe import Glm4vMoeForConditionalGeneration
from . import train

GIB = 2**30
PRESETS = {"glm41v-9b": Glm4vConfig, "glm45v": Glm4vMoeConfig.glm45v}
FROZEN = set(train.DEFAULT_FREEZE.split(","))  # train's default --freeze


def add_arguments(p) -> None:
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--preset", choices=sorted(PRESETS), help="a known model's shapes")
    source.add_argument("--model", metavar="DIR", help="an HF-layout model directory (only config.json is read)")
    p.add_argument("--lora-rank", type=int, default=0, metavar="R", help="> 0: LoRA on all linear layers")
    p.add_argument("--bf16", action="store_true", help="as train --bf16: bf16 autocast, frozen weights in bf16")
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--batch-size", type=int, default=1, help="conversations per GPU per micro-step")
    p.add_argument("--seq-len", type=int, default=2048, help="tokens per conversation (image tokens included)")
    p.add_argument("--fsdp", type=int, default=1, metavar="N", help="GPUs the model is sharded over (FSDP2)")


def run(args) -> int:
    for name in ("batch_size", "seq_len", "fsdp"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    config = PRESETS[args.preset]() if args.preset else load_config(Path(args.model))  # 4.1V or 4.5V
    rows = estimate(config, args.lora_rank, args.bf16, args.gradient_checkpointing, args.batch_size, args.seq_len,
                    args.fsdp)
    print(f"{args.preset or args.model}: LoRA rank {args.lora_rank or '-'}, {'bf16' if args.bf16 else 'fp32'}, "
          f"batch {args.batch_size} x {args.seq_len} tokens, {args.fsdp} GPU(s)"
          f"{' (FSDP)' if args.fsdp > 1 else ''}")
    *parts, (last, total) = rows.items()
    for name, value in parts:
        print(f"{name + ':':<36}{value / GIB:8.2f} GiB")
    print(f"{last}: {total / GIB:.2f} GiB")
    return 0


def estimate(config, lora_rank: int, bf16: bool, checkpointing: bool, batch: int, seq_len: int,
             shards: int = 1) -> dict[str, float]:
    """Bytes per GPU by line, the last one ('per GPU') their sum (with the chosen activations)."""
    model = _meta_model(config, lora_rank, bf16)
    params = list(model.parameters())
    trainable = sum(p.numel() for p in params if p.requires_grad)
    weights = sum(p.numel() * p.element_size() for p in params) / shards
    if bf16 and shards == 1:
        weights += 2 * trainable  # autocast's bf16 copies of the fp32 trainable weights
    if shards > 1:  # the gathered units, in the dtype they compute in
        size = 2 if bf16 else 4
        blocks = [*model.model.visual.blocks, *model.model.language_model.layers]
        in_blocks = {id(p) for b in blocks for p in b.parameters()}
        root = sum(p.numel() for p in params if id(p) not in in_blocks)
        weights += size * (root + 2 * max(sum(p.numel() for p in b.parameters()) for b in blocks))
    text = config.text_config
    per_layer = _activations_per_token(config, lora_rank, bf16) / text.num_hidden_layers  # their mean
    residual = 2 if bf16 and not model.model.language_model.embed_tokens.weight.requires_grad else 4
    head = 3 * 4 * text.vocab_size
    tokens = batch * seq_len
    full = tokens * (text.num_hidden_layers * per_layer + head)
    # why max: the head's buffers are gone by the time the backward pass recomputes the first layer
    recomputed = tokens * (text.num_hidden_layers * residual * text.hidden_size + max(2 * per_layer, head))
    return {"weights": weights, "gradients": 4 * trainable / shards, "optimizer state (AdamW)": 8 * trainable / shards,
            "activations without checkpointing": full, "activations with checkpointing": recomputed,
            # why max: the backward pass frees a layer's activations as it makes that layer's gradients
            "per GPU": weights + 8 * trainable / shards + max(4 * trainable / shards,
                                                              recomputed if checkpointing else full)}


def _meta_model(config, lora_rank: int, bf16: bool) -> Glm4vForConditionalGeneration:
    with torch.device("meta"):
        model = (Glm4vMoeForConditionalGeneration if isinstance(config, Glm4vMoeConfig)
                 else Glm4vForConditionalGeneration)(config)
    train.configure(model, train_options(lora_rank, bf16), FROZEN)
    return model


def train_options(lora_rank: int, bf16: bool) -> argparse.Namespace:
    """What train.configure reads of `train`'s options: LoRA on all linear layers, no dropout."""
    return argparse.Namespace(lora_rank=lora_rank, lora_alpha=None, lora_dropout=0.0, lora_targets="all-linear",
                              seed=0, bf16=bf16)


def _activations_per_token(config, lora_rank: int, bf16: bool) -> float:
    """Bytes autograd keeps per token in all decoder layers. A mixture of experts (GLM-4.5V) is measured
    with as many experts per layer as each token goes to: a token's activations are the same, and one
    layer's 128 experts would take 4.4 GB to build."""
    text = config.text_config
    if not isinstance(config, Glm4vMoeConfig):
        return text.num_hidden_layers * _layer_activations(_meta_model(config, lora_rank, bf16), 0, bf16)
    few = dataclasses.replace(config, text_config=dataclasses.replace(
        text, n_routed_experts=text.num_experts_per_tok, n_group=1, topk_group=1))
    model, dense = _meta_model(few, lora_rank, bf16), text.first_k_dense_replace
    return (dense * _layer_activations(model, 0, bf16) if dense else 0) + \
        (text.num_hidden_layers - dense) * _layer_activations(model, text.num_hidden_layers - 1, bf16)


def _layer_activations(model, index: int, bf16: bool) -> float:
    """Bytes autograd keeps per token in decoder layer `index` (measured on CPU: see the module docstring)."""
    text_model = model.model.language_model
    layer = text_model.layers[index].to_empty(device="cpu")
    dtype = text_model.embed_tokens.weight.dtype
    counts = [_saved_bytes(layer, text_model, tokens, dtype, bf16) for tokens in (16, 32)]
    return (counts[1] - counts[0]) / 16


def _saved_bytes(layer, text_model, tokens: int, dtype, bf16: bool) -> int:
    weights = {p.untyped_storage().data_ptr() for p in layer.parameters()}
    storages = {}

    def keep(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in weights:
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    x = torch.zeros(1, tokens, text_model.cfg.hidden_size, dtype=dtype, requires_grad=True)
    positions = torch.arange(tokens).expand(3, 1, tokens)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16), \
            torch.autograd.graph.saved_tensors_hooks(keep, lambda tensor: tensor):
        cos, sin, mask = text_model.attention_inputs(positions, None, 0, dtype)
        layer(x, cos, sin, mask)
    return sum(storages.values())
