"""GLM-4.1V-Thinking: the vision tower and the GLM-4 decoder joined at the <|image|> tokens.

Corresponds to transformers' `Glm4vForConditionalGeneration` (and `Glm4vModel` inside it). Module
names follow the checkpoint keys: `model.visual.*`, `model.language_model.*`, `lm_head`.

    input_ids (B, L)            -> embed_tokens                          -> (B, L, D)
    pixel_values (N, 1176)      -> visual                                -> (N/4, D), written into the
                                   <|image|> rows (videos likewise, frame by frame)
    positions (3, B, L)         <- get_rope_index(input_ids, grids)      (t, h, w) streams
    decoder + lm_head           -> logits (B, L, vocab);  loss when labels are given (-100 ignored)
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from . import generation, rope
from .config import Glm4vConfig
from .decoder import Glm4vTextModel
from .vision import Glm4vVisionModel
from .weights import PretrainedMixin


@dataclass
class Glm4vOutput:
    logits: torch.Tensor  # (B, L, vocab)
    loss: torch.Tensor | None = None
    rope_deltas: torch.Tensor | None = None  # (B, 1): generated token k sits at real_length + k + delta


class Glm4vModel(nn.Module):
    """Container whose attribute names give the `model.visual.*` / `model.language_model.*` keys."""

    def __init__(self, config: Glm4vConfig):
        super().__init__()
        self.visual = Glm4vVisionModel(config.vision_config)
        self.language_model = Glm4vTextModel(config.text_config)


class Glm4vForConditionalGeneration(PretrainedMixin, nn.Module):
    def __init__(self, config: Glm4vConfig):
        super().__init__()
        self.config = config
        self.model = Glm4vModel(config)
        self.lm_head = nn.Linear(config.text_config.hidden_size, config.text_config.vocab_size, bias=False)

    def gradient_checkpointing_enable(self) -> None:
        """Recompute each ViT block's and decoder layer's activations in the backward pass instead of
        storing them (same loss and gradients, far less memory, ~1/3 more compute); training only."""
        self.model.visual.gradient_checkpointing = self.model.language_model.gradient_checkpointing = True

    # ------------------------------------------------------------------ pieces, usable one by one
    def get_token_types(self, input_ids: torch.Tensor) -> torch.Tensor:
        c = self.config
        return rope.token_types(input_ids, c.image_token_id, c.video_start_token_id, c.video_end_token_id)

    def get_rope_index(self, input_ids, image_grid_thw=None, video_grid_thw=None, attention_mask=None,
                       mm_token_type_ids=None):
        """position_ids (3, B, L) and rope_deltas (B, 1) for a prompt (see `rope.get_rope_index`)."""
        if mm_token_type_ids is None:
            mm_token_type_ids = self.get_token_types(input_ids)
        return rope.get_rope_index(input_ids, mm_token_type_ids, image_grid_thw, video_grid_thw, attention_mask,
                                   self.config.vision_config.spatial_merge_size)

    def get_image_features(self, pixel_values, grid_thw, what="image"):
        """Checked pixel rows -> merged features (sum of t*H*W/4, D), one row per <|image|> slot."""
        v = self.config.vision_config
        if pixel_values.ndim != 2 or pixel_values.shape[1] != v.patch_dim:
            raise ValueError(f"{what} pixel_values must have shape (patches, {v.patch_dim}) = (N, C*T*P*P) with "
                             f"C={v.in_channels}, T={v.temporal_patch_size}, P={v.patch_size}; got "
                             f"{tuple(pixel_values.shape)}. Use Glm4vImageProcessor to make them")
        if grid_thw is None or grid_thw.ndim != 2 or grid_thw.shape[1] != 3:
            raise ValueError(f"{what}_grid_thw must be given with shape ({what}s, 3) = [t, h, w] per {what}; "
                             f"got {None if grid_thw is None else tuple(grid_thw.shape)}")
        m = v.spatial_merge_size
        if bool((grid_thw[:, 1:] % m != 0).any()):
            raise ValueError(f"{what}_grid_thw {grid_thw.tolist()} has an h or w not divisible by the "
                             f"spatial merge size {m}; patch grids must be made of whole {m}x{m} windows")
        if int(grid_thw.prod(-1).sum()) != pixel_values.shape[0]:
            raise ValueError(f"{what}_grid_thw {grid_thw.tolist()} describes {int(grid_thw.prod(-1).sum())} "
                             f"patches (sum of t*h*w) but pixel_values has {pixel_values.shape[0]} rows")
        if what == "video":  # why: each temporal group is its own image inside the ViT
            grid_thw = torch.cat([g[None, :].repeat(int(g[0]), 1) for g in grid_thw])
            grid_thw[:, 0] = 1
        return self.model.visual(pixel_values, grid_thw)

    def embed(self, input_ids, pixel_values=None, image_grid_thw=None, pixel_values_videos=None,
              video_grid_thw=None, mm_token_type_ids=None):
        """Token embeddings with image/video features written into their <|image|> rows: (B, L, D)."""
        vocab = self.config.text_config.vocab_size
        if input_ids.numel() and (int(input_ids.min()) < 0 or int(input_ids.max()) >= vocab):
            raise ValueError(f"input_ids must lie in [0, {vocab}) (the model's vocab_size); got values from "
                             f"{int(input_ids.min())} to {int(input_ids.max())}")
        x = self.model.language_model.embed_tokens(input_ids)
        if pixel_values is None and pixel_values_videos is None:
            return x
        types = mm_token_type_ids if mm_token_type_ids is not None else self.get_token_types(input_ids)
        for kind, pixels, grid, what in ((rope.IMAGE, pixel_values, image_grid_thw, "image"),
                                         (rope.VIDEO, pixel_values_videos, video_grid_thw, "video")):
            if pixels is None:
                continue
            features = self.get_image_features(pixels, grid, what)
            slots = (types == kind) & (input_ids == self.config.image_token_id)  # stale types must not misplace
            if int(slots.sum()) != features.shape[0]:
                raise ValueError(f"{what.capitalize()} features and {what} tokens do not match: the prompt has "
                                 f"{int(slots.sum())} {what} tokens but the {what}s give {features.shape[0]} "
                                 f"features; expand each placeholder with Glm4vProcessor")
            x = x.masked_scatter(slots[..., None], features.to(x.dtype))  # row-major over (batch, position)
        return x

    # ------------------------------------------------------------------ the forward pass
    def forward(self, input_ids, attention_mask=None, position_ids=None, pixel_values=None, image_grid_thw=None,
                pixel_values_videos=None, video_grid_thw=None, mm_token_type_ids=None, labels=None,
                cache=None, logits_to_keep: int = 0) -> Glm4vOutput:
        """Logits (B, L, vocab) for a prompt, or (B, logits_to_keep, vocab) for only the last positions
        (generation needs just the last one). Explicit `position_ids` ((3, B, L) or (B, L)) skip the
        rope index, so `rope_deltas` is then None."""
        past = cache.length if cache is not None else 0
        _check_inputs(input_ids, attention_mask, mm_token_type_ids, past, pixel_values, image_grid_thw,
                      pixel_values_videos, video_grid_thw)
        types = mm_token_type_ids if mm_token_type_ids is not None else self.get_token_types(input_ids)
        x = self.embed(input_ids, pixel_values, image_grid_thw, pixel_values_videos, video_grid_thw, types)
        rope_deltas = None
        if position_ids is None:
            if past > 0:
                raise ValueError("position_ids are required after the first step of a cached forward; "
                                 "compute them from rope_deltas (see minglm4v.generation)")
            position_ids, rope_deltas = self.get_rope_index(input_ids, image_grid_thw, video_grid_thw,
                                                            attention_mask, types)
        elif position_ids.ndim == 2:  # (B, L) text positions: the same for all three streams
            position_ids = position_ids[None].expand(3, -1, -1)
        hidden = self.model.language_model(x, position_ids, attention_mask, cache)
        # why slice first: the (B, L, vocab) logits of a long prompt cost as much as a decoder layer
        logits = self.lm_head(hidden[:, -logits_to_keep:])  # -0: every position
        loss = None
        if labels is not None:
            if logits_to_keep:
                raise ValueError("labels need the logits of every position; drop logits_to_keep")
            # token i predicts label i + 1; -100 marks positions without a target
            loss = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=-100)
        return Glm4vOutput(logits=logits, loss=loss, rope_deltas=rope_deltas)

    def generate(self, input_ids, *, attention_mask=None, pixel_values=None, image_grid_thw=None,
                 pixel_values_videos=None, video_grid_thw=None, mm_token_type_ids=None, max_new_tokens=256,
                 do_sample=False, temperature=1.0, top_k=None, top_p=None, repetition_penalty=1.0,
                 eos_token_id=None, generator=None, streamer=None, thinking_budget=None, thinking_end_ids=None):
        """Prompt (B, L) -> (B, L + new) token ids; see `minglm4v.generation.generate`."""
        return generation.generate(
            self, input_ids, attention_mask=attention_mask, pixel_values=pixel_values,
            image_grid_thw=image_grid_thw, pixel_values_videos=pixel_values_videos, video_grid_thw=video_grid_thw,
            mm_token_type_ids=mm_token_type_ids, max_new_tokens=max_new_tokens, do_sample=do_sample,
            temperature=temperature, top_k=top_k, top_p=top_p, repetition_penalty=repetition_penalty,
            eos_token_id=eos_token_id, generator=generator, streamer=streamer, thinking_budget=thinking_budget,
            thinking_end_ids=thinking_end_ids)


COMPONENTS = ("vision tower", "merger", "language model", "lm_head")


def component(key: str) -> str:
    """Which part of the model a parameter belongs to (the 2x2 downsample counts as merger)."""
    if key.startswith(("model.visual.merger.", "model.visual.downsample.")):
        return "merger"
    if key.startswith("model.visual."):
        return "vision tower"
    if key.startswith("model.language_model."):
        return "language model"
    return "lm_head" if key.startswith("lm_head.") else "other"


def _check_inputs(input_ids, attention_mask, mm_token_type_ids, past, pixel_values, image_grid_thw,
                  pixel_values_videos, video_grid_thw):
    if not isinstance(input_ids, torch.Tensor) or input_ids.is_floating_point():
        raise TypeError(f"input_ids must be an integer tensor of token ids, got "
                        f"{getattr(input_ids, 'dtype', type(input_ids).__name__)}")
    if input_ids.ndim != 2:
        raise ValueError(f"input_ids must be (batch, length), got shape {tuple(input_ids.shape)}")
    if mm_token_type_ids is not None and mm_token_type_ids.shape != input_ids.shape:
        raise ValueError(f"mm_token_type_ids must have the shape of input_ids {tuple(input_ids.shape)}, got "
                         f"{tuple(mm_token_type_ids.shape)}")
    expected = (input_ids.shape[0], past + input_ids.shape[1])
    if attention_mask is not None and tuple(attention_mask.shape) != expected:
        raise ValueError(f"attention_mask must have shape (batch, cached + new tokens) = {expected}, got "
                         f"{tuple(attention_mask.shape)}")
    for pixels, grid, names in ((pixel_values, image_grid_thw, "pixel_values and image_grid_thw"),
                                (pixel_values_videos, video_grid_thw, "pixel_values_videos and video_grid_thw")):
        if (pixels is None) != (grid is None):
            raise ValueError(f"{names} go together: pass both or neither (got only "
                             f"{names.split(' and ')[pixels is None]})")
