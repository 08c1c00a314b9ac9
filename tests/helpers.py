"""Shared test helpers: the oracle fixtures in data/fixtures (the format's one home: paths, how a case
becomes forward() arguments, the hook on transformers' ViT; scripts/make_fixtures.py writes them with these
and transformers 5.24), the live transformers model, model directories, scripts loaded by path, and the
contract of the property-based tests. transformers is imported lazily: only the oracle tests pay for it."""

import importlib.util
import json
import os
from pathlib import Path

import torch
from einops import rearrange
from safetensors import safe_open

from minglm4v.processing.image import CLIP_MEAN, CLIP_STD

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "data" / "fixtures"
TINY = FIXTURES / "tiny"  # fp32, single model.safetensors, written by transformers' save_pretrained
TINY_BF16 = FIXTURES / "tiny-bf16-sharded"  # the same weights in bf16, several shards + index
CASES = FIXTURES / "cases.safetensors"
MICRO = REPO / "data" / "micro-model"  # the bundled trained micro model
CASE_NAMES = ("text", "image", "two_images", "image_between_text", "video", "batch")
VISION_CASES = CASE_NAMES[1:]
# Input fields of a case, under the keyword names both models' forward() accept.
INPUT_KEYS = ("input_ids", "attention_mask", "mm_token_type_ids", "pixel_values", "image_grid_thw",
              "pixel_values_videos", "video_grid_thw")
IDS = torch.tensor([[5, 6, 7, 8]])  # a four-token text prompt in the fixture vocabulary


# ----------------------------------------------------------------------------- the oracle fixtures
def normalize_pixels(levels: torch.Tensor) -> torch.Tensor:
    """uint8 pixel levels (N, C*T*P*P) -> pixel_values as the processor makes them: x / 255, then
    (x - mean) / std per channel (the channel is the outermost axis of a row)."""
    mean, std = torch.tensor(CLIP_MEAN), torch.tensor(CLIP_STD)
    x = rearrange(levels.float() / 255, "n (c rest) -> n c rest", c=len(mean))
    return rearrange((x - mean[:, None]) / std[:, None], "n c rest -> n (c rest)")


def model_inputs(case: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The forward() keyword arguments of a case (identical names for minglm4v and transformers).
    Pixels are stored as uint8 levels (a quarter of the bytes of fp32) and normalised here."""
    inputs = {k: case[k] for k in INPUT_KEYS if k in case}
    for key in ("pixel_values", "pixel_values_videos"):
        if key in inputs:
            inputs[key] = normalize_pixels(inputs[key])
    return inputs


def load_cases() -> dict[str, dict[str, torch.Tensor]]:
    """{case name: {field: tensor}} from cases.safetensors (keys are stored as 'case/field')."""
    cases: dict[str, dict[str, torch.Tensor]] = {}
    with safe_open(CASES, framework="pt") as f:
        for key in f.keys():
            name, field = key.split("/")
            cases.setdefault(name, {})[field] = f.get_tensor(key)
    return cases


def hf_config(config):
    """transformers' Glm4vConfig from a minglm4v Glm4vConfig, through the config.json dict."""
    from transformers import Glm4vConfig as HFConfig
    return HFConfig.from_dict(config.to_dict())


@torch.no_grad()
def hf_vision_features(hf, inputs: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """transformers' ViT output before post_layernorm (captured with a hook: HF returns only the
    downsampled and merged tensors) and the merged features, for the case's images or video."""
    captured = []
    hook = hf.model.visual.post_layernorm.register_forward_hook(lambda mod, args, out: captured.append(args[0]))
    try:
        if "pixel_values" in inputs:
            out = hf.model.get_image_features(inputs["pixel_values"], inputs["image_grid_thw"])
        else:
            out = hf.model.get_video_features(inputs["pixel_values_videos"], inputs["video_grid_thw"])
    finally:
        hook.remove()
    return captured[0], torch.cat(out.pooler_output)


# ----------------------------------------------------------------------------- models, scripts, files
def mm_token_type_ids(input_ids: torch.Tensor, image_token_id: int, video_start_id: int,
                      video_end_id: int) -> torch.Tensor:
    """What Glm4vProcessor returns as `mm_token_type_ids`: 1 for an <|image|> slot, 2 for an <|image|>
    between <|begin_of_video|> and <|end_of_video|> (a video-frame slot), 0 for everything else.
    Written as a plain scan, independently of minglm4v's vectorised `rope.token_types`."""
    out = torch.zeros_like(input_ids)
    for b, row in enumerate(input_ids.tolist()):
        in_video = False
        for i, token in enumerate(row):
            if token == video_start_id:
                in_video = True
            elif token == video_end_id:
                in_video = False
            elif token == image_token_id:
                out[b, i] = 2 if in_video else 1
    return out


def load_hf(directory, **kwargs):
    """transformers' Glm4vForConditionalGeneration from an HF-layout directory, in eval mode."""
    from transformers import Glm4vForConditionalGeneration
    return Glm4vForConditionalGeneration.from_pretrained(directory, **kwargs).eval()


def load_ours(directory, **kwargs):
    from minglm4v import Glm4vForConditionalGeneration
    return Glm4vForConditionalGeneration.from_pretrained(directory, **kwargs)


def load_script(name: str):
    """scripts/<name>.py as a module, loaded from its path: scripts/ is not a package, and the tests do
    not put it on sys.path."""
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def chat_model_dir(directory: Path) -> Path:
    """A model directory as a hub download holds it, made of the tiny fixture checkpoint: weights and
    config, the fixture tokenizer files and default image and video preprocessor configs."""
    import shutil

    from minglm4v.processing.image import Glm4vImageProcessor
    from minglm4v.processing.video import Glm4vVideoProcessor
    for path in [*TINY.iterdir(), *(REPO / "data" / "tokenizer").iterdir()]:
        shutil.copy(path, directory / path.name)
    Glm4vImageProcessor().save_pretrained(directory)
    Glm4vVideoProcessor().save_pretrained(directory)
    return directory


def write_video(path, frames, fps) -> Path:
    """(T, H, W, 3) uint8 frames -> a video file (.mp4, .mov) whose frames PyAV reads back exactly."""
    import pytest
    av = pytest.importorskip("av")  # optional dependency; load_video's error without it is tested
    with av.open(str(path), "w") as container:
        stream = container.add_stream("png", rate=fps)  # lossless, so the frames read back exactly
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "rgb24"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return Path(path)


# ----------------------------------------------------------------------------- property-based tests
# The contract for every generated case: success with consistent shapes and finite values, or one of the
# documented exceptions whose message names the culprit. `classify` sorts a case into ok / clear (a
# documented error naming the culprit) / unclear (any other exception, or a documented one that names
# nothing) / silent (success with a wrong or non-finite result, or with an input that should have been
# refused); the tests (named test_fuzz_*, beside the tests of the module they drive) require ok or clear.
# CI runs the "ci" profile (conftest.py: few examples, derandomized). A bigger local run, which also tallies
# the outcomes per area into a JSON-lines file:
#     MINGLM4V_FUZZ_TALLY=/tmp/tally.jsonl pytest tests -k fuzz --hypothesis-profile=fuzz
DOCUMENTED = (TypeError, ValueError, FileNotFoundError, OSError)
TALLY = os.environ.get("MINGLM4V_FUZZ_TALLY")


def classify(area, call, check, culprits):
    """Run `call()`; on success `check(result)` returns None or what is silently wrong. Asserts ok or
    clear (or, with MINGLM4V_FUZZ_TALLY set, only records the outcome)."""
    try:
        problem = check(call())
        outcome, detail = ("silent", problem) if problem else ("ok", "")
    except DOCUMENTED as error:
        message = str(error).lower()
        named = any(c.lower() in message for c in culprits)
        outcome, detail = ("clear" if named else "unclear"), f"{type(error).__name__}: {error}"
    except Exception as error:  # noqa: BLE001 - anything else is what the contract forbids
        outcome, detail = "unclear", f"{type(error).__name__}: {error}"
    if TALLY:
        with open(TALLY, "a") as f:
            f.write(json.dumps({"area": area, "outcome": outcome, "detail": detail[:300]}) + "\n")
    else:
        assert outcome in ("ok", "clear"), f"{outcome}: {detail}"


def finite(t: torch.Tensor) -> bool:
    return bool(torch.isfinite(t).all())


def check_pixels(out, key="pixel_values", grid_key="image_grid_thw", patch=14, frames=2, merge=2):
    """What is wrong with processor output `out` (non-finite values, rows that do not fit the grid), or None."""
    rows, grid = out[key], out[grid_key]
    if not finite(rows):
        return "non-finite pixel values"
    if rows.shape[1] != 3 * frames * patch ** 2 or int(grid.prod(-1).sum()) != rows.shape[0] or \
            bool((grid[:, 1:] % merge).any()):
        return f"inconsistent rows {tuple(rows.shape)} and grid {grid.tolist()}"
