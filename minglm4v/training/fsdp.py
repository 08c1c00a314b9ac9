"""FSDP2 for `torchrun --nproc_per_node N -m minglm4v train --fsdp ...`: PyTorch's own sharded data parallel.

Each process keeps 1/N of every parameter, gradient and optimizer state instead of a full copy (as DDP
does). `fully_shard` makes each ViT block and each decoder layer one unit, whose full weights are
gathered just before its forward (and again for its backward) and freed right after; the root unit
holds the rest (token embeddings, patch embedding, position table, merger, final norm, lm_head). A
parameter becomes a DTensor sharded on dim 0; the model's code and names stay as they are.

    shard(model, bf16)              units as above; under --bf16 a mixed-precision policy: weights
                                    gathered and computed in bf16, gradients reduced in fp32
    full_state_dict(model)          the whole model on rank 0's CPU (every rank must call it)
    save_sharded / load_sharded     trainable weights + optimizer state, one file per rank, written
                                    and read by torch.distributed.checkpoint (for --resume)
    check_same_media(*datasets)     refuse data that would make the ranks run the vision tower a
                                    different number of times (the collectives would wait forever)

Counterpart: transformers' Trainer with accelerate's FSDP plugin (fsdp_version 2).
"""

from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard


def shard(model, bf16: bool) -> None:
    """Shard in place: one unit per ViT block and decoder layer, the root unit for the rest."""
    # why fp32 reduction: summing N bf16 gradients would round at every step of the sum
    policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if bf16 else \
        MixedPrecisionPolicy()
    for block in (*model.model.visual.blocks, *model.model.language_model.layers):
        fully_shard(block, mp_policy=policy)
    fully_shard(model, mp_policy=policy)


def full_state_dict(model) -> dict[str, torch.Tensor]:
    """Every tensor gathered whole onto rank 0's CPU (an empty dict on the other ranks)."""
    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def _sharded_state(model, optimizer) -> dict:
    # detached views of the parameters themselves: dcp.load writes into them in place
    return {"trainable": {n: p.detach() for n, p in model.named_parameters() if p.requires_grad},
            "optimizer": get_optimizer_state_dict(model, optimizer)}


def save_sharded(model, optimizer, directory: Path) -> None:
    dcp.save(_sharded_state(model, optimizer), checkpoint_id=directory)


def load_sharded(model, optimizer, directory: Path) -> None:
    # get_optimizer_state_dict first creates the optimizer's state (a step at lr 0), so there is
    # something to load into
    state = _sharded_state(model, optimizer)
    dcp.load(state, checkpoint_id=directory)
    set_optimizer_state_dict(model, optimizer, state["optimizer"])


def check_same_media(*datasets) -> None:
    """Under FSDP every rank must run the vision tower as often as the others (each ViT block gathers its
    weights from all ranks), so conversations may not mix text-only, image and video ones."""
    kinds = {(bool(c.images), bool(c.videos)) for d in datasets if d is not None for c in d.conversations}
    if len(kinds) > 1:
        raise ValueError("--fsdp needs conversations that all carry the same kinds of media (all text-only, all "
                         "with images, or all with videos): each ViT block gathers its weights from every "
                         "process, so all must run the vision tower together; split the data set by kind")
