"""Checkpoints of a training run: what `python -m minglm4v train` writes and `--resume` reads.

    save_model       a complete HF-layout model directory: merged weights in the base model's stored
                     dtype, the base's tokenizer and processor files, and with LoRA `adapter/` (PEFT)
    save_checkpoint  OUT/checkpoint-N: save_model + training_state.pt (step, trainable tensors,
                     optimizer, scheduler, the RNG state of every rank); written aside, then renamed
    resume           restore the latest checkpoint-N into a freshly prepared model and optimizer

No counterpart in transformers (its `Trainer._save_checkpoint` / `_load_from_checkpoint`).
"""

import shutil
from pathlib import Path

import torch
import torch.distributed as dist

from ..model.config import Glm4vConfig
from . import lora

STATE = "training_state.pt"
LOG = "train_log.jsonl"
# what a training run writes itself: never copied from the base (which may be an earlier run's output)
OWN_FILES = ("config.json", "model.safetensors", "model.safetensors.index.json", STATE, LOG)


def save_model(model, directory: Path, base: Path) -> None:
    """A complete HF-layout model in `directory`: merged weights in the base's stored dtype, the base's
    tokenizer/processor files, and with LoRA the adapter alone in `directory/adapter`."""
    dtype = getattr(torch, Glm4vConfig.from_pretrained(base).dtype)
    state = {k: t.to(dtype) if t.is_floating_point() else t for k, t in lora.merged_state_dict(model).items()}
    model.save_pretrained(directory, state_dict=state)
    for path in base.iterdir():
        if path.is_file() and path.name not in OWN_FILES and not path.name.endswith(".safetensors"):
            shutil.copy2(path, directory / path.name)
    if lora.lora_layers(model):
        lora.save_adapter(model, directory / "adapter", str(base.resolve()))


def save_checkpoint(model, optimizer, scheduler, step: int, args) -> None:
    """checkpoint-N: the model + training_state.pt; written aside, then renamed (never half a checkpoint)."""
    rng = {"cpu": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state() if torch.cuda.is_available() else None}
    states = [None] * dist.get_world_size() if dist.is_initialized() else [rng]
    if dist.is_initialized():
        dist.all_gather_object(states, rng)
    if dist.is_initialized() and dist.get_rank() != 0:
        return
    final, partial = Path(args.output_dir) / f"checkpoint-{step}", Path(args.output_dir) / f".checkpoint-{step}"
    shutil.rmtree(partial, ignore_errors=True)
    save_model(model, partial, Path(args.model))
    trainable = {n: p.detach().cpu() for n, p in model.named_parameters() if p.requires_grad}
    torch.save({"step": step, "trainable": trainable, "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "rng": states}, partial / STATE)
    shutil.rmtree(final, ignore_errors=True)
    partial.rename(final)


def latest_checkpoint(output_dir: Path) -> Path | None:
    done = [p for p in output_dir.glob("checkpoint-*") if (p / STATE).is_file()]
    return max(done, key=lambda p: int(p.name.split("-")[-1]), default=None)


def resume(model, optimizer, scheduler, args, rank: int) -> int:
    """Restore the latest checkpoint; returns the step to continue from."""
    checkpoint = latest_checkpoint(Path(args.output_dir))
    if checkpoint is None:
        raise ValueError(f"--resume: no checkpoint-N/{STATE} in {args.output_dir} (save them with --save-every)")
    state = torch.load(checkpoint / STATE, map_location="cpu", weights_only=True)
    with torch.no_grad():
        for name, tensor in state["trainable"].items():
            model.get_parameter(name).copy_(tensor)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if rank < len(state["rng"]):
        torch.set_rng_state(state["rng"][rank]["cpu"])
        if state["rng"][rank]["cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state(state["rng"][rank]["cuda"])
    return state["step"]
