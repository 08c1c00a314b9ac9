"""Shared test helpers: the oracle fixtures in data/fixtures and the live transformers model.

`scripts/make_fixtures.py` writes the fixtures with transformers 5.24 using these same helpers (token
types, pixel normalisation, the hook on transformers' ViT), so fixtures and tests build inputs the same
way. transformers is imported lazily: only the oracle tests pay for it.
"""

from pathlib import Path

import torch
from einops import rearrange
from safetensors import safe_open

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "data" / "fixtures"
TINY = FIXTURES / "tiny"  # fp32, single model.safetensors, written by transformers' save_pretrained
TINY_BF16 = FIXTURES / "tiny-bf16-sharded"  # the same weights in bf16, several shards + index
CASES = FIXTURES / "cases.safetensors"
CASE_NAMES = ("text", "image", "two_images", "image_between_text", "video", "batch")
VISION_CASES = CASE_NAMES[1:]

# Input fields of a case, under the keyword names both models' forward() accept.
INPUT_KEYS = ("input_ids", "attention_mask", "mm_token_type_ids", "pixel_values", "image_grid_thw",
              "pixel_values_videos", "video_grid_thw")
# Glm4vImageProcessor's normalisation (the OpenAI CLIP per-channel mean and std)
PIXEL_MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073])
PIXEL_STD = torch.tensor([0.26862954, 0.26130258, 0.27577711])


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


def normalize_pixels(levels: torch.Tensor) -> torch.Tensor:
    """uint8 pixel levels (N, C*T*P*P) -> pixel_values as the processor makes them: x / 255, then
    (x - mean) / std per channel (the channel is the outermost axis of a row)."""
    x = rearrange(levels.float() / 255, "n (c rest) -> n c rest", c=len(PIXEL_MEAN))
    return rearrange((x - PIXEL_MEAN[:, None]) / PIXEL_STD[:, None], "n c rest -> n (c rest)")


def model_inputs(case: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The forward() keyword arguments of a case (identical names for minglm4v and transformers).
    Pixels are stored as uint8 levels (a quarter of the bytes of fp32) and normalised here."""
    inputs = {k: case[k] for k in INPUT_KEYS if k in case}
    for key in ("pixel_values", "pixel_values_videos"):
        if key in inputs:
            inputs[key] = normalize_pixels(inputs[key])
    return inputs


def hf_config(config):
    """transformers' Glm4vConfig from a minglm4v Glm4vConfig, through the config.json dict."""
    from transformers import Glm4vConfig as HFConfig
    return HFConfig.from_dict(config.to_dict())


def load_hf(directory, **kwargs):
    """transformers' Glm4vForConditionalGeneration from an HF-layout directory, in eval mode."""
    from transformers import Glm4vForConditionalGeneration
    return Glm4vForConditionalGeneration.from_pretrained(directory, **kwargs).eval()


def load_ours(directory, **kwargs):
    from minglm4v import Glm4vForConditionalGeneration
    return Glm4vForConditionalGeneration.from_pretrained(directory, **kwargs)


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
