"""Checkpoints of a training run: what `python -m minglm4v train` writes and `--resume` reads.

    save_model       a complete HF-layout model directory: merged weights in the base model's stored
                     dtype, the base's tokenizer and processor files, and with LoRA `adapter/` (PEFT)
    save_checkpoint  OUT/checkpoint-N: save_model + training_state.pt (step, trainable tensors,
                     optimizer, scheduler, the RNG state of every rank); written aside, then renamed.
                     Under --fsdp the trainable tensors and the optimizer go to checkpoint-N/sharded/
                     instead, one file per rank (torch.distributed.checkpoint; see fsdp.py)
    resume           restore the latest checkpoint-N into a freshly prepared (and sharded) model and optimizer

No counterpart in transformers (its `Trainer._save_checkpoint` / `_load_from_checkpoint`).
"""

import shutil
from pathlib import Path

import torch
import torch.distributed as dist

from ..model.families import load_config
from . import fsdp, lora

STATE, SHARDED = "training_state.pt", "sharded"
LOG = "train_log.jsonl"
RL_LOG, ROLLOUTS, PASS_RATES = "rl_log.jsonl", "rollouts.jsonl", "pass_rates.jsonl"  # what the rl command writes
# what a training run writes itself: never copied from the base (which may be an earlier run's output)
OWN_FILES = ("config.json", "model.safetensors", "model.safetensors.index.json", STATE, LOG, RL_LOG, ROLLOUTS,
             PASS_RATES)


def save_model(model, directory: Path, base: Path, state: dict | None = None) -> None:
    """A complete HF-layout model in `directory`: merged weights in the base's stored dtype, the base's
    tokenizer/processor files, and with LoRA the adapter alone in `directory/adapter`. `state`: the
    model's tensors when `model` holds only shards of them (fsdp.full_state_dict)."""
    dtype = getattr(torch, load_config(base).dtype)
    # why on the CPU: the merged copies of the adapted matrices would not fit beside the model on its GPU
    state = {k: t.detach().cpu() for k, t in (model.state_dict() if state is None else state).items()}
    merged = lora.merged_state_dict(model, state)
    model.save_pretrained(directory, state_dict={  # a GLM-4.5V router stays fp32
        k: t.to(dtype) if t.is_floating_point() and not k.endswith(model.fp32_keys) else t for k, t in merged.items()})
    for path in base.iterdir():
        if path.is_file() and path.name not in OWN_FILES and not path.name.endswith(".safetensors"):
            shutil.copy2(path, directory / path.name)
    if lora.lora_layers(model):
        lora.save_adapter(model, directory / "adapter", str(base.resolve()), state)


def save_checkpoint(model, optimizer, scheduler, step: int, args, extra: dict | None = None) -> None:
    """checkpoint-N: the model + training_state.pt; written aside, then renamed (never half a checkpoint).
    `extra`: more state of the run to restore (the rl command's curriculum and expansion ratio)."""
    rng = {"cpu": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state() if torch.cuda.is_available() else None}
    states = [None] * dist.get_world_size() if dist.is_initialized() else [rng]
    if dist.is_initialized():
        dist.all_gather_object(states, rng)
    rank = dist.get_rank() if dist.is_initialized() else 0
    final, partial = Path(args.output_dir) / f"checkpoint-{step}", Path(args.output_dir) / f".checkpoint-{step}"
    state = fsdp.full_state_dict(model) if args.fsdp else None  # every rank takes part in gathering
    if rank == 0:
        shutil.rmtree(partial, ignore_errors=True)
        save_model(model, partial, Path(args.model), state)
    if args.fsdp:
        dist.barrier()  # the directory exists before the other ranks write their shards into it
        fsdp.save_sharded(model, optimizer, partial / SHARDED)
        training = {}
    else:
        training = {"trainable": {n: p.detach().cpu() for n, p in model.named_parameters() if p.requires_grad},
                    "optimizer": optimizer.state_dict()}
    if rank == 0:
        torch.save({"step": step, **training, "scheduler": scheduler.state_dict(), "rng": states,
                    "extra": extra}, partial / STATE)
        shutil.rmtree(final, ignore_errors=True)
        partial.rename(final)


def refuse_to_overwrite(output_dir: Path, resuming: bool) -> None:
    if not resuming and output_dir.is_dir() and any(output_dir.glob("checkpoint-*")):
        raise ValueError(f"{output_dir} already holds checkpoints; pass --resume to continue, or another --output-dir")


def latest_checkpoint(output_dir: Path) -> Path | None:
    done = [p for p in output_dir.glob("checkpoint-*") if (p / STATE).is_file()]
    return max(done, key=lambda p: int(p.name.split("-")[-1]), default=None)


def resume(model, optimizer, scheduler, args, rank: int) -> tuple[int, dict | None]:
    """Restore the latest checkpoint; returns the step to continue from and save_checkpoint's `extra`."""
    checkpoint = latest_checkpoint(Path(args.output_dir))
    if checkpoint is None:
        raise ValueError(f"--resume: no checkpoint-N/{STATE} in {args.output_dir} (save them with --save-every)")
    state = torch.load(checkpoint / STATE, map_location="cpu", weights_only=True)
    if args.fsdp:
        fsdp.load_sharded(model, optimizer, checkpoint / SHARDED)
    else:
        with torch.no_grad():
            for name, tensor in state["trainable"].items():
                model.get_parameter(name).copy_(tensor)
        optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if rank < len(state["rng"]):
        torch.set_rng_state(state["rng"][rank]["cpu"])
        if state["rng"][rank]["cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state(state["rng"][rank]["cuda"])
    return state["step"], state.get("extra")
