"""Training and fine-tuning: `python -m minglm4v train --model DIR --data FILE.jsonl --output-dir OUT`.

Full fine-tuning of the unfrozen parts (default as LLaMA-Factory: vision tower and merger frozen), or
LoRA adapters on them (`--lora-rank R`), on one process or several under
`torchrun --nproc_per_node N -m minglm4v train ...` (DistributedDataParallel, or with --fsdp FSDP2, which
shards weights, gradients and optimizer state over the processes: see fsdp.py; gloo on CPU, nccl on GPU).

One optimizer step sees a global batch of batch_size x grad_accum x world_size conversations, taken
in order from an endless stream of per-epoch seeded permutations of the data set: rank r encodes only
its own slice of it. The loss is the mean over every label token of the global batch (each micro-batch's
token sum divided by the global token count), so 1 process x 4 conversations, 2 x 2 and 1 x 2 x 2
accumulation steps all take the same step. AdamW, linear warmup then cosine decay to 0
(transformers' `get_cosine_schedule_with_warmup`), gradient clipping, optional bf16 (autocast, frozen
weights kept in bf16: a LoRA run's base needs half the memory), gradient checkpointing and torch.compile
of the repeated blocks.

    OUT/                  the final model, a complete HF-layout directory (config.json, safetensors,
                          tokenizer and processor files copied from --model); LoRA merged in
    OUT/adapter/          with LoRA: the adapter alone, PEFT layout
    OUT/checkpoint-N/     every --save-every steps: the model as above + training_state.pt (step,
                          trainable tensors, optimizer, scheduler, RNG per rank) for --resume
    OUT/train_log.jsonl   one line per step (loss, lr, tokens/s) and per evaluation

Rank 0 alone writes. No counterpart in transformers (its `Trainer` plays this role).
"""

import json
import math
import os
import time
from contextlib import contextmanager, nullcontext
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.distributed.fsdp import FSDPModule
from tqdm import tqdm

from ..model.families import load_config, model_class
from ..model.glm4v import Glm4vForConditionalGeneration, component
from ..model.glm4v_moe import Glm4vMoeForConditionalGeneration
from ..processing.processor import Glm4vProcessor
from . import fsdp, lora
from .checkpoints import LOG, refuse_to_overwrite, resume, save_checkpoint, save_model
from .data import SFTDataset, collate

# --freeze names. LLaMA-Factory's GLM-4.1V groups are visual.patch_embed + visual.blocks and visual.merger,
# which leaves the position table, the norms and the 2x2 downsample training when both are "frozen";
# here every visual.* tensor belongs to one of the two (the downsample to the merger, as in `info`).
PARTS = {"vision tower": "vision", "merger": "merger", "language model": "language", "lm_head": "language"}
DEFAULT_FREEZE = "vision,merger"


def add_arguments(p) -> None:
    add_model_arguments(p, "JSON Lines conversations (see minglm4v/training/data.py)")
    p.add_argument("--batch-size", type=int, default=8, help="conversations per process per micro-step")
    p.add_argument("--grad-accum", type=int, default=1, help="micro-steps per optimizer step")
    p.add_argument("--warmup-steps", type=int, default=0, help="linear warmup, then cosine decay to 0")
    p.add_argument("--eval-data", metavar="FILE.jsonl", help="JSON Lines for the evaluation loss")
    p.add_argument("--eval-every", type=int, default=0, help="steps between evaluations (and at the end)")
    p.add_argument("--fsdp", action="store_true", help="under torchrun: shard weights, gradients and optimizer "
                   "state over the processes (FSDP2) instead of a full copy on each (DDP)")
    p.add_argument("--router-aux-loss", action="store_true", help="mixture of experts (GLM-4.5V): add the routers' "
                   "load-balancing loss times the config's router_aux_loss_coef to the loss")


def add_model_arguments(p, data_help: str) -> None:
    """The options every training command has: the model and data, the optimizer, what trains (parts,
    LoRA), checkpoints and the device (the RL command, rl.py, shares them)."""
    p.add_argument("--model", required=True, metavar="DIR",
                   help="base model: an HF-layout directory with tokenizer and processor")
    p.add_argument("--data", required=True, metavar="FILE.jsonl", help=data_help)
    p.add_argument("--output-dir", required=True, metavar="DIR")
    p.add_argument("--max-steps", type=int, default=100, help="optimizer steps")
    p.add_argument("--lr", type=float, default=1e-4, help="peak learning rate")
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--max-grad-norm", type=float, default=1.0)
    p.add_argument("--save-every", type=int, default=0, help="steps between checkpoints (0: final model only)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bf16", action="store_true", help="bf16 autocast; frozen weights kept in bf16 (trainable "
                   "ones and the optimizer state stay fp32)")
    p.add_argument("--gradient-checkpointing", action="store_true", help="recompute activations: less memory")
    p.add_argument("--compile", action="store_true", help="torch.compile each ViT block and decoder layer: "
                   "faster steps after a warm-up of about a minute")
    p.add_argument("--freeze", default=DEFAULT_FREEZE, metavar="PARTS", help="parts to keep fixed: any of "
                   "vision,merger,language or none (merger = 2x2 downsample + projector, "
                   "language = decoder + lm_head; default: vision,merger)")
    p.add_argument("--lora-rank", type=int, default=0, metavar="R",
                   help="> 0: train LoRA adapters (on the linear layers of the unfrozen parts) instead of the weights")
    p.add_argument("--lora-alpha", type=float, help="LoRA scale numerator (default: 2 x rank)")
    p.add_argument("--lora-dropout", type=float, default=0.0)
    p.add_argument("--lora-targets", default="all-linear", help="all-linear or names, e.g. q_proj,v_proj")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --output-dir")
    p.add_argument("--device", help="cpu, cuda, ... (default: cuda if available; under torchrun cuda:LOCAL_RANK)")


def _check(args) -> set[str]:
    for name in ("batch_size", "grad_accum"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.eval_every and not args.eval_data:
        raise ValueError("--eval-every needs --eval-data FILE.jsonl")
    if args.fsdp and args.compile:
        raise ValueError("--fsdp and --compile together are not supported; drop one of them")
    if args.fsdp and int(os.environ.get("WORLD_SIZE", "1")) < 2:
        raise ValueError("--fsdp shards the model over several processes: start them with "
                         "`torchrun --nproc_per_node N -m minglm4v train --fsdp ...` (N >= 2)")
    return check_model_arguments(args)


def check_model_arguments(args) -> set[str]:
    """Check the options of add_model_arguments; returns the frozen parts."""
    if args.max_steps < 1:
        raise ValueError(f"--max-steps must be at least 1, got {args.max_steps}")
    if not 0 <= args.seed < 2**63:  # numpy's generators take no negative seed; rl adds the rank to it
        raise ValueError(f"--seed must be a whole number from 0 to 2**63 - 1, got {args.seed}")
    frozen = {part.strip() for part in args.freeze.split(",") if part.strip() not in ("", "none")}
    if frozen - set(PARTS.values()):
        raise ValueError(f"--freeze {args.freeze!r}: unknown part(s) {sorted(frozen - set(PARTS.values()))}; "
                         f"use a comma list of vision, merger, language, or none")
    if frozen == set(PARTS.values()):
        raise ValueError("--freeze vision,merger,language leaves nothing to train")
    if Path(args.output_dir).resolve() == Path(args.model).resolve():
        raise ValueError("--output-dir must differ from --model: the base model's files are copied into it")
    if not args.lora_rank and (args.lora_alpha is not None or args.lora_dropout or args.lora_targets != "all-linear"):
        raise ValueError("--lora-alpha, --lora-dropout and --lora-targets need --lora-rank R (> 0)")
    if not 0 <= args.lora_dropout < 1:
        raise ValueError(f"--lora-dropout must be in [0, 1), got {args.lora_dropout}")
    return frozen


def prepare_model(args, frozen: set[str], device) -> Glm4vForConditionalGeneration:
    """Load, then `configure`; gradient checkpointing and compiling as asked."""
    # why the stored dtype under --bf16: the real model is stored in bf16, and loading it in fp32 first
    # would need the very memory (36 GB for the 9B) that a bf16 frozen base saves
    model = model_class(args.model).from_pretrained(  # GLM-4.1V or GLM-4.5V, by config.json
        args.model, dtype=None if args.bf16 else torch.float32, device_map=device).train()
    if args.router_aux_loss and not isinstance(model, Glm4vMoeForConditionalGeneration):
        raise ValueError(f"--router-aux-loss needs a mixture-of-experts model (glm4v_moe); {args.model} is a "
                         f"{model.config.model_type} model without routers")
    configure(model, args, frozen)
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    if args.compile:
        compile_blocks(model)
    return model


def configure(model, args, frozen: set[str]) -> None:
    """Freeze parts or wrap the unfrozen parts' linear layers in LoRA, then set the dtypes: without
    --bf16 every weight is fp32; with it the frozen weights are kept in bf16 and the trainable ones in
    fp32 (the master weights the optimizer updates), and autocast runs the matrix products in bf16.
    (`plan` calls it on a model on the meta device.)"""
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(PARTS[component(name)] not in frozen)
    if args.lora_rank:
        torch.manual_seed(args.seed)  # the A matrices' initialisation
        targets = lora.select_targets(model, args.lora_targets,
                                      lambda path: PARTS[component(path + ".weight")] not in frozen)
        lora.inject(model, targets, args.lora_rank, args.lora_alpha or 2 * args.lora_rank, args.lora_dropout,
                    dtype=torch.float32)
    for name, parameter in model.named_parameters():  # a router stays fp32: bf16 scores would tie
        keep = parameter.requires_grad or not args.bf16 or name.endswith(model.fp32_keys)
        parameter.data = parameter.data.to(torch.float32 if keep else torch.bfloat16)


def compile_blocks(model: Glm4vForConditionalGeneration) -> None:
    """torch.compile each ViT block and decoder layer in place (state-dict names stay as they are).
    why block by block ("regional compilation"): the repeated blocks are where the time goes, and the
    model's input checks and Python glue stay eager instead of breaking one big graph."""
    for block in (*model.model.visual.blocks, *model.model.language_model.layers):
        block.compile()


@lru_cache(maxsize=4)
def _permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(n)


def step_indices(n: int, step: int, size: int, seed: int) -> list[int]:
    """Data indices of global batch `step`: positions step*size ... of the epoch permutations, laid
    end to end (every example is used once per epoch, none is dropped, and resuming needs no state)."""
    return [int(_permutation(n, seed, pos // n)[pos % n]) for pos in range(step * size, (step + 1) * size)]


def lr_factor(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return step / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def sum_over_ranks(*values: float) -> list[float]:
    if not dist.is_initialized():
        return list(values)
    on_gpu = dist.get_backend() == "nccl"  # nccl reduces only GPU tensors
    t = torch.tensor(values, dtype=torch.float64, device=torch.cuda.current_device() if on_gpu else "cpu")
    dist.all_reduce(t)
    return t.tolist()


def _label_tokens(batch: dict) -> int:
    return int((batch["labels"][:, 1:] != -100).sum())  # token i predicts label i + 1


def _gradient_sync(model, last: bool):
    """Reduce gradients over the ranks only after the last micro-batch (DDP: no_sync; FSDP2: a flag)."""
    if isinstance(model, torch.nn.parallel.DistributedDataParallel) and not last:
        return model.no_sync()
    if isinstance(model, FSDPModule):
        model.set_requires_gradient_sync(last)
    return nullcontext()


def train_step(model, batches: list[dict], world: int, bf16: bool, device, **forward) -> tuple[float, int]:
    """Forward/backward over this rank's micro-batches; gradients end up summed over the global batch
    and divided by its label-token count. Returns (global mean loss, global non-padding tokens)."""
    (total,) = sum_over_ranks(sum(_label_tokens(b) for b in batches))
    loss_sum, seen = 0.0, sum(int(b["attention_mask"].sum()) for b in batches)
    for i, batch in enumerate(batches):
        with _gradient_sync(model, i == len(batches) - 1), torch.autocast(device.type, dtype=torch.bfloat16,
                                                                          enabled=bf16):
            loss = model(**{k: v.to(device) for k, v in batch.items()}, **forward).loss
            n = _label_tokens(batch)
            # why * world: DDP and FSDP average gradients over ranks, and we want their sum
            (loss * n / total * world).backward()
        loss_sum += loss.item() * n
    loss_sum, seen = sum_over_ranks(loss_sum, seen)
    return loss_sum / total, int(seen)


@torch.no_grad()
def evaluate(model, dataset, processor, batch_size: int, rank: int, world: int, bf16: bool, device) -> float:
    """Mean loss over every label token of `dataset` (each rank takes every world-th conversation)."""
    model.eval()
    loss_sum, tokens = 0.0, 0
    mine = list(range(rank, len(dataset), world))
    # why every rank runs as many batches: under FSDP each forward gathers weights from all the ranks;
    # a rank with fewer conversations repeats its first batch and counts it with weight 0
    rounds = math.ceil(math.ceil(len(dataset) / world) / batch_size)
    for start in range(0, rounds * batch_size, batch_size):
        batch = collate([dataset[i] for i in mine[start:start + batch_size] or mine[:batch_size] or [0]], processor)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = model(**{k: v.to(device) for k, v in batch.items()}).loss
        n = _label_tokens(batch) if start < len(mine) else 0
        loss_sum, tokens = loss_sum + loss.item() * n, tokens + n
    model.train()
    loss_sum, tokens = sum_over_ranks(loss_sum, tokens)
    return loss_sum / tokens


@contextmanager
def distributed(device: str | None):
    """(rank, world size, device) for the `with` block; under torchrun (WORLD_SIZE > 1) joins the process
    group, and leaves it at the end whatever happens (shared by `train` and `rl`)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        yield 0, 1, torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        return
    local = int(os.environ["LOCAL_RANK"])
    cuda = torch.cuda.is_available() and device != "cpu"
    dist.init_process_group("nccl" if cuda else "gloo")
    try:
        if cuda:
            torch.cuda.set_device(local)
        yield dist.get_rank(), world, torch.device("cuda", local) if cuda else torch.device("cpu")
        # why: a rank that tears its group down while a peer's last collective is still in flight was once
        # aborted at exit ("terminate called without an active exception", an FSDP test under a full suite)
        dist.barrier()
    finally:
        dist.destroy_process_group()


def run(args) -> int:
    frozen = _check(args)
    with distributed(args.device) as (rank, world, device):
        return _train(args, frozen, rank, world, device)


def _train(args, frozen, rank, world, device) -> int:
    output = Path(args.output_dir)
    refuse_to_overwrite(output, args.resume)
    processor = Glm4vProcessor.from_pretrained(args.model)
    limit = load_config(Path(args.model)).text_config.max_position_embeddings
    data = SFTDataset(args.data, processor, limit)
    eval_data = SFTDataset(args.eval_data, processor, limit) if args.eval_data else None
    if args.fsdp:
        fsdp.check_same_media(data, eval_data)
    model = prepare_model(args, frozen, device)
    if args.fsdp:
        fsdp.shard(model, args.bf16)  # before the optimizer, which must see the sharded parameters
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=args.lr, weight_decay=args.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, args.warmup_steps, args.max_steps))
    torch.manual_seed(args.seed + rank)  # LoRA dropout masks differ per rank
    start = resume(model, optimizer, scheduler, args, rank)[0] if args.resume else 0
    # why: a batch of text-only conversations leaves a trainable vision tower without gradients, and DDP
    # must then look for unused parameters (a graph traversal per step, so only when it can happen)
    sees_unused = any(not (c.images or c.videos) for c in data.conversations) and any(
        p.requires_grad for n, p in model.named_parameters() if n.startswith("model.visual."))
    ddp = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=sees_unused) \
        if world > 1 and not args.fsdp else model
    if rank == 0:
        output.mkdir(parents=True, exist_ok=True)
        print(f"{len(data)} conversations, {sum(p.numel() for p in trainable):,} trainable of "
              f"{sum(p.numel() for p in model.parameters()):,} parameters (frozen ones kept in "
              f"{'bfloat16' if args.bf16 else 'float32'}), {world} process(es), global batch "
              f"{args.batch_size * args.grad_accum * world}", flush=True)
    log = (output / LOG).open("a") if rank == 0 else None
    per_rank = args.batch_size * args.grad_accum
    bar = tqdm(total=args.max_steps, initial=start, disable=rank != 0, desc="train")
    for step in range(start, args.max_steps):
        began = time.perf_counter()
        mine = step_indices(len(data), step, per_rank * world, args.seed)[rank * per_rank:(rank + 1) * per_rank]
        batches = [collate([data[i] for i in mine[j:j + args.batch_size]], processor)
                   for j in range(0, per_rank, args.batch_size)]
        aux = {"output_router_logits": True} if args.router_aux_loss else {}
        loss, tokens = train_step(ddp, batches, world, args.bf16, device, **aux)
        torch.nn.utils.clip_grad_norm_(trainable, args.max_grad_norm)
        lr = scheduler.get_last_lr()[0]
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        record = {"step": step + 1, "loss": loss, "lr": lr, "tokens_per_s": tokens / (time.perf_counter() - began)}
        bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", tok_s=f"{record['tokens_per_s']:.0f}")
        bar.update()
        if eval_data and (step + 1 == args.max_steps or args.eval_every and (step + 1) % args.eval_every == 0):
            record["eval_loss"] = evaluate(model, eval_data, processor, args.batch_size, rank, world, args.bf16, device)
            if rank == 0:
                bar.write(f"step {step + 1}: eval loss {record['eval_loss']:.4f}")
        if log:
            log.write(json.dumps(record) + "\n")
            log.flush()
        if args.save_every and (step + 1) % args.save_every == 0:
            save_checkpoint(model, optimizer, scheduler, step + 1, args)
    bar.close()
    state = fsdp.full_state_dict(model) if args.fsdp else None  # every rank takes part in gathering
    if rank == 0:
        save_model(model, output, Path(args.model), state)
        log.close()
        print(f"saved {output}", flush=True)
    return 0

