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
import math
import mmap
import re
from collections import Counter
from contextlib import contextmanager, suppress
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch.overrides import TorchFunctionMode

from ..base.checks import read_json
from ..base.hub import check_kwargs, check_model_type, resolve_directory

INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"
_FLOAT_DTYPES = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16, "F64": torch.float64}


def checkpoint_files(directory: Path) -> list[Path]:
    """The safetensors files of a model directory, in shard order. An index may name only files
    inside the directory: a checkpoint must not make the loader read anything outside its folder."""
    if (directory / INDEX).is_file():
        weight_map = read_json(directory / INDEX, 'a safetensors index: {"weight_map": {tensor name: file name}}')
        weight_map = weight_map.get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map or \
                not all(isinstance(v, str) for v in weight_map.values()):
            raise ValueError(f"{directory / INDEX} has no usable 'weight_map': expected a non-empty mapping "
                             f"from tensor names to shard file names, got {str(weight_map)[:100]}")
        files = [_inside(directory, name) for name in sorted(set(weight_map.values()))]
    elif (directory / SINGLE).is_file():
        files = [directory / SINGLE]
    elif list(directory.glob("*.bin")) or list(directory.glob("*.pt")):
        raise ValueError(f"{directory} holds a pickled PyTorch checkpoint (.bin/.pt); minglm4v reads only "
                         f"safetensors, which cannot run code on load. Convert it once with transformers: "
                         f"Glm4vForConditionalGeneration.from_pretrained(dir).save_pretrained(new_dir)")
    else:
        raise FileNotFoundError(f"no {SINGLE} or {INDEX} in {directory}")
    for path in files:
        if not path.is_file():
            error = IsADirectoryError if path.is_dir() else FileNotFoundError
            raise error(f"{INDEX} in {directory} lists {path.name}, which is "
                        f"{'a directory' if path.is_dir() else 'missing'}; it must be a safetensors file")
    return files


@contextmanager
def open_safetensors(path: Path):
    """`safe_open(path)`; a damaged file raises OSError naming it instead of a bare SafetensorError."""
    try:
        with safe_open(path, framework="pt") as f:
            yield f
    except SafetensorError as error:
        raise OSError(f"{path} is not a readable safetensors file ({error}); it is damaged or truncated: "
                      f"download or save it again") from error


def checkpoint_tensors(files: list[Path]) -> dict[str, tuple[tuple[int, ...], str]]:
    """{key: (shape, safetensors dtype such as 'BF16')} from the files' headers, reading no tensor data.
    A key in two files is an error: which copy is meant is unknowable."""
    tensors, where = {}, {}
    for path in files:
        with open_safetensors(path) as f:
            for key in f.keys():
                if key in where:
                    raise ValueError(f"tensor {key} is stored twice, in {where[key]} and in {path}; "
                                     f"a checkpoint holds each tensor once")
                info = f.get_slice(key)
                tensors[key], where[key] = (tuple(info.get_shape()), info.get_dtype()), path
    return tensors


def model_dtype(tensors: dict[str, tuple[tuple[int, ...], str]], directory, requested) -> torch.dtype:
    """`requested`, or else the one floating dtype all tensors are stored in. Mixed stored dtypes then
    are refused rather than letting the first tensor decide for all the others."""
    counts = dict(sorted(Counter(dtype for _, dtype in tensors.values()).items()))
    if not set(counts) <= set(_FLOAT_DTYPES):
        raise ValueError(f"checkpoint in {directory} stores non-floating tensors ({counts}); every "
                         f"GLM-4.1V weight is a floating-point tensor ({', '.join(_FLOAT_DTYPES)})")
    if requested is not None:
        return requested
    if len(counts) > 1:
        raise ValueError(f"checkpoint in {directory} mixes dtypes ({counts} tensors); pass dtype=... "
                         f"(e.g. torch.bfloat16) to load every tensor in one dtype")
    return _FLOAT_DTYPES[next(iter(counts))]


def _inside(directory: Path, name: str) -> Path:
    path = Path(name)
    if path.is_absolute() or path.drive or ".." in path.parts or not path.parts:
        raise ValueError(f"{directory / INDEX} names the shard {name!r}, which is outside the model directory; "
                         f"shards must be plain file names inside {directory}")
    return directory / path


def parse_size(size) -> int:
    """'5GB' -> 5e9 bytes, '300KiB' -> 307200; ints pass through (HF's convention)."""
    if isinstance(size, int):
        return size
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(i?)B\s*", str(size), flags=re.IGNORECASE)
    if not match:
        raise ValueError(f"max_shard_size {size!r} is not a size like 5GB, 300KB or 2GiB")
    number, unit, binary = match.groups()
    return int(float(number) * (1024 if binary else 1000) ** "_KMGT".index(unit.upper() or "_"))


def _resolve_dtype(dtype, torch_dtype=None):
    """dtype (or its older name torch_dtype) -> a torch.dtype, or None for "as stored"."""
    if torch_dtype is not None:
        if dtype is not None and dtype != torch_dtype:
            raise ValueError(f"dtype={dtype!r} and torch_dtype={torch_dtype!r} disagree; torch_dtype is the older "
                             f"name of dtype, pass only one")
        dtype = torch_dtype
    if dtype is None or dtype == "auto" or isinstance(dtype, torch.dtype):  # "auto": as transformers, = stored
        return None if dtype == "auto" else dtype
    resolved = getattr(torch, str(dtype).replace("torch.", ""), None)
    if not isinstance(resolved, torch.dtype):
        raise ValueError(f"unknown dtype {dtype!r}; use e.g. torch.float32, 'bfloat16' or 'float16'")
    return resolved


def _resolve_device_map(device_map) -> torch.device:
    """transformers' device_map, for a model that lives on one device: None (the CPU), "auto" (the first
    GPU if there is one), a device ("cpu", "cuda:1", 0, torch.device) or {"": device}."""
    if isinstance(device_map, dict):
        devices = set(device_map.values())
        if len(devices) != 1:
            raise ValueError(f"device_map {device_map} spreads the model over several devices; minglm4v keeps a "
                             f"model on one device: pass device_map='cuda', 'cpu' or 'auto'")
        device_map = devices.pop()
    if device_map is None:
        return torch.device("cpu")
    if device_map == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device_map)  # an int n means cuda:n, as in transformers
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"device_map {device_map!r} is not a device; use None, 'auto', 'cpu', 'cuda', 'cuda:1' "
                         f"or a torch.device") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device_map {device_map!r}: CUDA is not available in this PyTorch; use 'cpu' or 'auto'")
    return device


# ----------------------------------------------------------------------------- reading tensors
# A safetensors file: 8 bytes (little-endian header length n), n bytes of JSON {name: {dtype, shape,
# data_offsets: [begin, end]}} (offsets counted from the end of the header), then the raw tensor data.
CHUNK = 1 << 24  # elements converted at a time (32 MB of bf16)
HUGE_PAGE = 1 << 21  # bytes in a transparent huge page on x86-64 and most arm64 kernels


class SkipRandomInit(TorchFunctionMode):
    """Inside, the initializers that module constructors call (torch.nn.init.*, Tensor.normal_ and
    uniform_) leave their tensor as it is: on the meta device there is nothing to fill, and the first
    `normal_` on meta alone costs ~6 s of imports."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        initializer = getattr(func, "__module__", None) == "torch.nn.init"
        if initializer or func in (torch.Tensor.normal_, torch.Tensor.uniform_):
            return args[0] if args else kwargs["tensor"]
        return func(*args, **(kwargs or {}))


def read_tensors(files: list[Path], dtypes: dict[str, torch.dtype | None],
                 device: torch.device) -> dict[str, torch.Tensor]:
    """The tensors named in `dtypes` of the (already checked: `checkpoint_tensors`) safetensors `files`, each
    in its dtype there (None: as stored), on `device`; the files' other tensors are not read. minglm4v's one
    safetensors reader: checkpoints and LoRA adapters.

    Each file is memory-mapped. A tensor kept in its stored dtype on the CPU is a view of the map:
    nothing is read or copied now; the OS pages it in when it is first used (and can drop it again, the
    file being its backing). A tensor that is converted (or sent to a GPU) is copied from the map a chunk
    at a time into its new storage, each chunk's pages unmapped once copied: the process never holds
    more than the new weights plus one chunk of the file. Converting 1.4 GB of bf16 to fp32 spends its
    time less in converting (~0.4 s) than in the kernel handing out the new 2.8 GB, one zeroed 4 KB page
    per page fault (~700 k faults); `_empty` asks for 2 MB pages instead (~1.4 k faults)."""
    tensors = {}
    for path in files:
        with open(path, "rb") as f:
            start = 8 + int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(start - 8))
            mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)  # copy-on-write: the file stays as is
        header.pop("__metadata__", None)
        for name, entry in header.items():
            if name not in dtypes:
                continue
            stored, (begin, end) = _FLOAT_DTYPES[entry["dtype"]], entry["data_offsets"]
            target = dtypes[name] or stored
            count = (end - begin) // stored.itemsize
            if stored == target and device.type == "cpu":
                tensors[name] = (torch.frombuffer(mapped, dtype=stored, count=count, offset=start + begin)
                                 if count else torch.empty(0, dtype=stored)).view(entry["shape"])
                continue
            out = _empty(entry["shape"], target, device)
            for i in range(0, count, CHUNK):
                offset, n = start + begin + i * stored.itemsize, min(CHUNK, count - i)
                out.view(-1)[i:i + n] = torch.frombuffer(mapped, dtype=stored, count=n, offset=offset)
                if hasattr(mmap, "MADV_DONTNEED"):  # nothing was written to the map: dropping is lossless
                    page = offset - offset % mmap.PAGESIZE
                    mapped.madvise(mmap.MADV_DONTNEED, page, offset + n * stored.itemsize - page)
            tensors[name] = out
    return tensors


def _empty(shape, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """`torch.empty`, but a CPU tensor of 2 MB or more asks Linux for 2 MB pages (transparent huge pages:
    most distributions grant them only to memory that asks), so that filling it faults once per 2 MB."""
    nbytes = math.prod(shape) * dtype.itemsize
    if device.type != "cpu" or nbytes < HUGE_PAGE or not hasattr(mmap, "MADV_HUGEPAGE"):
        return torch.empty(shape, dtype=dtype, device=device)
    memory = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)  # private: not shared memory
    with suppress(OSError):  # a kernel built without huge pages refuses: then 4 KB pages as usual
        memory.madvise(mmap.MADV_HUGEPAGE)
    return torch.frombuffer(memory, dtype=dtype).view(shape)


class PretrainedMixin:
    """Adds `from_pretrained` / `save_pretrained`, `device` and `dtype` to `Glm4vForConditionalGeneration`."""

    fp32_keys: tuple[str, ...] = ()  # key endings loaded in fp32 whatever the dtype (GLM-4.5V: its router)

    @staticmethod
    def skipped_key(key: str, config) -> bool:
        """Whether a checkpoint tensor is deliberately not loaded (GLM-4.1V: none)."""
        return False

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *, dtype=None, torch_dtype=None, device_map=None,
                        revision=None, cache_dir=None, **kwargs):
        """Load config + weights from an HF-layout directory or a cached hub id (see hub.py). `dtype`
        (or `torch_dtype`; None or "auto") defaults to the dtype the weights are stored in (bf16 for the
        real model); `device_map` (None, "auto", "cpu", "cuda", a device) to the CPU."""
        check_kwargs(kwargs, f"{cls.__name__}.from_pretrained")
        directory = resolve_directory(pretrained_model_name_or_path, revision, cache_dir)
        check_model_type(directory, cls.config_class.model_type)
        config = cls.config_class.from_pretrained(directory)
        files = checkpoint_files(directory)
        dtype, device = _resolve_dtype(dtype, torch_dtype), _resolve_device_map(device_map)
        with torch.device("meta"), SkipRandomInit():
            model = cls(config)
        expected = {name: tuple(p.shape) for name, p in model.state_dict().items()}
        unexpected, wrong_shape = [], []
        tensors = checkpoint_tensors(files)  # check names and shapes first, without reading any tensor data
        tensors = {key: info for key, info in tensors.items() if not cls.skipped_key(key, config)}
        for key, (shape, _) in tensors.items():
            if key not in expected:
                unexpected.append(key)
            elif shape != expected[key]:
                wrong_shape.append(f"{key}: expected {expected[key]}, found {shape}")
        missing = sorted(set(expected) - set(tensors))
        if missing or unexpected or wrong_shape:
            raise ValueError(f"checkpoint in {directory} does not fit its config.json:"
                             + _listing("missing tensors", missing) + _listing("unexpected tensors", unexpected)
                             + _listing("wrong shapes", wrong_shape))
        fp32 = {key for key in tensors if key.endswith(model.fp32_keys)}
        dtype = model_dtype({k: info for k, info in tensors.items() if k not in fp32}, directory, dtype)
        dtypes = {key: torch.float32 if key in fp32 else dtype for key in tensors}
        model.load_state_dict(read_tensors(files, dtypes, device), assign=True)  # replaces the meta tensors
        model.config.dtype = str(dtype).removeprefix("torch.")
        return model.eval()

    def save_pretrained(self, save_directory, max_shard_size="5GB", state_dict=None) -> None:
        """Write config.json and safetensors (sharded with an index when larger than max_shard_size).
        `state_dict` replaces the model's own (training saves LoRA-merged weights this way)."""
        directory = Path(save_directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: t.detach().contiguous().cpu() for k, t in (state_dict or self.state_dict()).items()}
        stored_dtype = str(next(iter(state.values())).dtype).removeprefix("torch.")
        dataclasses.replace(self.config, dtype=stored_dtype).save_pretrained(directory)
        limit, shards, sizes = parse_size(max_shard_size), [{}], [0]
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
