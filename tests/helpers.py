"""Shared test helpers: the oracle fixtures in data/fixtures and the live transformers model.

The fixture format (paths, how a case becomes forward() arguments, the hook on transformers' ViT) has
its home in `scripts/make_fixtures.py`, which writes the fixtures with transformers 5.24; it is
re-exported here. transformers is imported lazily: only the oracle tests pay for it.
"""

import sys
from pathlib import Path

import torch
from safetensors import safe_open

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
from make_fixtures import CASES, FIXTURES, TINY, TINY_BF16, hf_config, hf_vision_features, model_inputs  # noqa: E402,F401

CASE_NAMES = ("text", "image", "two_images", "image_between_text", "video", "batch")
VISION_CASES = CASE_NAMES[1:]


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


def load_cases() -> dict[str, dict[str, torch.Tensor]]:
    """{case name: {field: tensor}} from cases.safetensors (keys are stored as 'case/field')."""
    cases: dict[str, dict[str, torch.Tensor]] = {}
    with safe_open(CASES, framework="pt") as f:
        for key in f.keys():
            name, field = key.split("/")
            cases.setdefault(name, {})[field] = f.get_tensor(key)
    return cases


def load_hf(directory, **kwargs):
    """transformers' Glm4vForConditionalGeneration from an HF-layout directory, in eval mode."""
    from transformers import Glm4vForConditionalGeneration
    return Glm4vForConditionalGeneration.from_pretrained(directory, **kwargs).eval()


def load_ours(directory, **kwargs):
    from minglm4v import Glm4vForConditionalGeneration
    return Glm4vForConditionalGeneration.from_pretrained(directory, **kwargs)


def chat_model_dir(directory: Path) -> Path:
    """A model directory as a hub download holds it, made of the tiny fixture checkpoint: weights and
    config, the fixture tokenizer files and a default preprocessor_config.json."""
    import shutil

    from minglm4v.processing.image import Glm4vImageProcessor
    for path in [*TINY.iterdir(), *(REPO / "data" / "tokenizer").iterdir()]:
        shutil.copy(path, directory / path.name)
    Glm4vImageProcessor().save_pretrained(directory)
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
