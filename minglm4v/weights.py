"""Loading and saving checkpoints in the Hugging Face layout (the layout of zai-org/GLM-4.1V-9B-Thinking).

A model directory holds `config.json` and either `model.safetensors` or shards
`model-0000k-of-0000n.safetensors` listed in `model.safetensors.index.json`. Our parameter names *are*
the checkpoint keys, so loading is an identity map: build the model on the meta device (no memory),
then assign the tensors shard by shard, never holding two full copies. Strict: every checkpoint tensor
is used, every parameter is filled, and every shape matches. Corresponds to transformers'
`PreTrainedModel.from_pretrained` / `save_pretrained` for this one model.
"""

import dataclasses
import json
import re
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .config import Glm4vConfig

INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"


def checkpoint_files(directory: Path) -> list[Path]:
    """The safetensors files of a model directory, in shard order."""
    if (directory / INDEX).is_file():
        weight_map = json.loads((directory / INDEX).read_text())["weight_map"]
        return [directory / name for name in sorted(set(weight_map.values()))]
    if (directory / SINGLE).is_file():
        return [directory / SINGLE]
    if list(directory.glob("*.bin")) or list(directory.glob("*.pt")):
        raise ValueError(f"{directory} holds a pickled PyTorch checkpoint (.bin/.pt); minglm4v reads only "
                         f"safetensors, which cannot run code on load. Convert it once with transformers: "
                         f"Glm4vForConditionalGeneration.from_pretrained(dir).save_pretrained(new_dir)")
    raise FileNotFoundError(f"no {SINGLE} or {INDEX} in {directory}")


def parse_size(size) -> int:
    """'5GB' -> 5e9 bytes, '300KiB' -> 307200; ints pass through (HF's convention)."""
    if isinstance(size, int):
        return size
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(i?)B\s*", str(size), flags=re.IGNORECASE)
    if not match:
        raise ValueError(f"max_shard_size {size!r} is not a size like 5GB, 300KB or 2GiB")
    number, unit, binary = match.groups()
    return int(float(number) * (1024 if binary else 1000) ** "_KMGT".index(unit.upper() or "_"))


def _resolve_dtype(dtype):
    if dtype is None or dtype == "auto" or isinstance(dtype, torch.dtype):  # "auto": as transformers, = stored
        return None if dtype == "auto" else dtype
    resolved = getattr(torch, str(dtype).replace("torch.", ""), None)
    if not isinstance(resolved, torch.dtype):
        raise ValueError(f"unknown dtype {dtype!r}; use e.g. torch.float32, 'bfloat16' or 'float16'")
    return resolved


class PretrainedMixin:
    """Adds `from_pretrained` / `save_pretrained` to `Glm4vForConditionalGeneration`."""

    @classmethod
    def from_pretrained(cls, directory, dtype=None, device=None):
        """Load config + weights from an HF-layout directory. `dtype` (None or "auto") defaults to the
        dtype the weights are stored in (bf16 for the real model); `device` defaults to the CPU."""
        directory = Path(directory)
        if not directory.is_dir():
            raise FileNotFoundError(f"model directory {str(directory)!r} does not exist. minglm4v does not download; "
                                    f"fetch a checkpoint first, e.g. `huggingface-cli download "
                                    f"zai-org/GLM-4.1V-9B-Thinking --local-dir DIR`, and pass DIR")
        config = Glm4vConfig.from_pretrained(directory)
        files = checkpoint_files(directory)
        dtype, device = _resolve_dtype(dtype), torch.device(device or "cpu")
        with torch.device("meta"):
            model = cls(config)
        expected = {name: tuple(p.shape) for name, p in model.state_dict().items()}
        unexpected, wrong_shape, seen = [], [], set()
        for path in files:  # check names and shapes first, without reading any tensor data
            with safe_open(path, framework="pt") as f:
                for key in f.keys():
                    shape = tuple(f.get_slice(key).get_shape())
                    if key not in expected:
                        unexpected.append(key)
                    elif shape != expected[key]:
                        wrong_shape.append(f"{key}: expected {expected[key]}, found {shape}")
                    seen.add(key)
        missing = sorted(set(expected) - seen)
        if missing or unexpected or wrong_shape:
            raise ValueError(f"checkpoint in {directory} does not fit its config.json:"
                             + _listing("missing tensors", missing) + _listing("unexpected tensors", unexpected)
                             + _listing("wrong shapes", wrong_shape))
        for path in files:
            with safe_open(path, framework="pt") as f:
                shard = {key: f.get_tensor(key) for key in f.keys()}
            dtype = dtype or next(iter(shard.values())).dtype
            shard = {k: t.to(device=device, dtype=dtype if t.is_floating_point() else t.dtype) for k, t in shard.items()}
            model.load_state_dict(shard, strict=False, assign=True)  # replaces the meta tensors in place
            del shard
        model.config.dtype = str(dtype).removeprefix("torch.")
        return model.eval()

    def save_pretrained(self, directory, max_shard_size="5GB", state_dict=None) -> None:
        """Write config.json and safetensors (sharded with an index when larger than max_shard_size).
        `state_dict` replaces the model's own (training saves LoRA-merged weights this way)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: t.detach().contiguous().cpu() for k, t in (state_dict or self.state_dict()).items()}
        stored_dtype = str(next(iter(state.values())).dtype).removeprefix("torch.")
        dataclasses.replace(self.config, dtype=stored_dtype).save_pretrained(directory)
        limit, shards = parse_size(max_shard_size), [{}]
        sizes = [0]
        for key, tensor in state.items():
            nbytes = tensor.numel() * tensor.element_size()
            if shards[-1] and sizes[-1] + nbytes > limit:
                shards.append({})
                sizes.append(0)
            shards[-1][key] = tensor
            sizes[-1] += nbytes
        if len(shards) == 1:
            save_file(shards[0], directory / SINGLE, metadata={"format": "pt"})
            return
        weight_map = {}
        for i, shard in enumerate(shards, start=1):
            name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
            save_file(shard, directory / name, metadata={"format": "pt"})
            weight_map.update(dict.fromkeys(shard, name))
        index = {"metadata": {"total_parameters": sum(t.numel() for t in state.values()), "total_size": sum(sizes)},
                 "weight_map": weight_map}
        (directory / INDEX).write_text(json.dumps(index, indent=2) + "\n")


def _listing(title: str, items: list[str], most: int = 10) -> str:
    if not items:
        return ""
    more = f"\n    … and {len(items) - most} more" if len(items) > most else ""
    return f"\n  {title} ({len(items)}):\n    " + "\n    ".join(items[:most]) + more
