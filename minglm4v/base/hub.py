"""Where `from_pretrained` reads from: a local directory, or a hub id already in the local cache.

Corresponds to the lookup part of transformers' `from_pretrained` (huggingface_hub's `cached_file`),
without the download: minglm4v never touches the network. A hub id such as
`zai-org/GLM-4.1V-9B-Thinking` that someone already downloaded (with transformers, `hf download` or
`huggingface-cli download`) is found in the Hugging Face cache, laid out as

    $HF_HUB_CACHE (default $HF_HOME/hub, default ~/.cache/huggingface/hub)
      models--zai-org--GLM-4.1V-9B-Thinking/
        refs/main                     -> the commit hash of the snapshot "main" points at
        snapshots/<commit>/           -> config.json, *.safetensors, tokenizer files, ...

Also here: the transformers keyword arguments that are accepted because they cannot change the result
(`check_kwargs`), and the check that a directory holds a model family we implement.
"""

import os
import re
from pathlib import Path

from .checks import read_json

# config.json "model_type" of GLM-4.1V-Thinking (and GLM-4.6V-Flash), and of GLM-4.5V / GLM-4.6V
MODEL_TYPES = ("glm4v", "glm4v_moe")

# transformers from_pretrained arguments that change nothing here: we never download, never run code
# from the hub, and always load the fast (Rust) tokenizer. Accepted so transformers code runs unchanged.
HARMLESS_KWARGS = frozenset({"use_fast", "trust_remote_code", "local_files_only", "force_download",
                             "resume_download", "proxies", "token", "use_auth_token", "low_cpu_mem_usage"})


def hub_cache(cache_dir=None) -> Path:
    """The Hugging Face hub cache directory, by the same environment variables huggingface_hub reads."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache") / "huggingface"
    return Path(home).expanduser() / "hub"


def cached_snapshot(repo_id: str, revision: str = "main", cache_dir=None) -> Path | None:
    """The snapshot directory of `repo_id` at `revision` (a branch, tag or commit hash), if cached."""
    repo = hub_cache(cache_dir) / ("models--" + repo_id.replace("/", "--"))
    ref = repo / "refs" / revision
    commit = ref.read_text().strip() if ref.is_file() else revision
    snapshot = repo / "snapshots" / commit
    return snapshot if re.fullmatch(r"[0-9a-f]{40}", commit) and snapshot.is_dir() else None


def resolve_directory(name_or_path, revision: str | None = None, cache_dir=None) -> Path:
    """A local directory as is, or the cached snapshot of a hub id; otherwise a clear error."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    text = str(name_or_path)
    if re.fullmatch(r"[\w.-]+/[\w.-]+", text) and not path.exists():
        snapshot = cached_snapshot(text, revision or "main", cache_dir)
        if snapshot is not None:
            return snapshot
        raise FileNotFoundError(
            f"{text!r} is not a local directory and no snapshot of it (revision {revision or 'main'!r}) is in the "
            f"Hugging Face cache at {hub_cache(cache_dir)}. minglm4v never downloads: fetch it once with "
            f"`hf download {text}` (or `huggingface-cli download {text} --local-dir DIR` and pass DIR)")
    raise FileNotFoundError(f"model directory {text!r} does not exist. minglm4v does not download; fetch a "
                            f"checkpoint first, e.g. `huggingface-cli download zai-org/GLM-4.1V-9B-Thinking "
                            f"--local-dir DIR`, and pass DIR")


def check_kwargs(kwargs: dict, where: str) -> None:
    """Refuse transformers arguments we do not implement and that would change the result."""
    unknown = sorted(set(kwargs) - HARMLESS_KWARGS)
    if unknown:
        raise TypeError(f"{where} got argument(s) {unknown} that minglm4v does not implement (in transformers they "
                        f"change what is loaded); remove them. Accepted and ignored, as they change nothing "
                        f"here: {sorted(HARMLESS_KWARGS)}")


def check_model_type(directory: Path, expected: str | None = None) -> str | None:
    """The config.json `model_type` of a directory (None if it has no config.json), refusing one we do not
    implement (Qwen2-VL, ...) and, given `expected`, any other than that one."""
    path = directory / "config.json"
    if not path.is_file():
        return None  # a tokenizer- or processor-only directory: nothing says which model it belongs to
    model_type = read_json(path, "a GLM-4.1V config.json with 'text_config' and 'vision_config'").get("model_type")
    if model_type is not None and model_type not in MODEL_TYPES:
        raise ValueError(f"{directory} holds a {model_type!r} model (config.json model_type); minglm4v implements "
                         f"only {list(MODEL_TYPES)} (GLM-4.1V, GLM-4.5V/4.6V). Use transformers for other models")
    if expected is not None and model_type not in (None, expected):
        raise ValueError(f"{directory} holds a {model_type!r} model, not {expected!r}; load it with "
                         f"AutoModelForImageTextToText.from_pretrained, which picks the class by model_type")
    return model_type
