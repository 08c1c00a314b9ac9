"""GLM-4.1V-Thinking: the vision tower and the GLM-4 decoder joined at the <|image|> tokens.

Corresponds to transformers' `Glm4vForConditionalGeneration` (and `Glm4vModel` inside it). Module
names follow the checkpoint keys: `model.visual.*`, `model.language_model.*`, `lm_head`.

    input_ids (B, L)            -> embed_tokens                          -> (B, L, D)
    pixel_values (N, 1176)      -> get_image_features (the vision tower) -> (N/4, D), written into the
                                   <|image|> rows (videos likewise: get_video_features)
    positions (3, B, L)         <- get_rope_index(input_ids, types, grids)  (t, h, w) streams
    decoder + lm_head           -> logits (B, L, vocab);  loss when labels are given (-100 ignored)
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ..base.checks import check_integer_tensor, check_prompt, is_int
from ..generation import decoding
from . import rope
from .config import Glm4vConfig
from .decoder import Glm4vTextModel
from .vision import Glm4vVisionModel
from .weights import PretrainedMixin


@dataclass
class Glm4vOutput:
    logits: torch.Tensor  # (B, L, vocab)
    loss: torch.Tensor | None = None
    rope_deltas: torch.Tensor | None = None  # (B, 1): generated token k sits at real_length + k + delta
    aux_loss: torch.Tensor | None = None  # GLM-4.5V with output_router_logits: the load-balancing loss


class Glm4vModel(nn.Module):
    """Container whose attribute names give the `model.visual.*` / `model.language_model.*` keys."""

    def __init__(self, config: Glm4vConfig, text_model_class: type = Glm4vTextModel):
        super().__init__()
        self.visual = Glm4vVisionModel(config.vision_config)
        self.language_model = text_model_class(config.text_config)


class Glm4vForConditionalGeneration(PretrainedMixin, nn.Module):
    # what the GLM-4.5V subclass (glm4v_moe.Glm4vMoeForConditionalGeneration) replaces
    config_class = Glm4vConfig
    text_model_class = Glm4vTextModel

    def __init__(self, config: Glm4vConfig):
        super().__init__()
        if type(config) is not self.config_class:
            raise TypeError(f"{type(self).__name__} is built from a {self.config_class.__name__}, got a "
                            f"{type(config).__name__}; AutoModelForImageTextToText.from_config picks the class")
        self.config = config
        self.model = Glm4vModel(config, self.text_model_class)
        self.lm_head = nn.Linear(config.text_config.hidden_size, config.text_config.vocab_size, bias=False)

    # the decoding loop lives in generation/decoding.py and drives the decoder through its seam
    # (language_model.attention_inputs and .step); bound here so that model.generate(**inputs, ...) works
    # as in transformers, with one signature to read
    generate = decoding.generate

    @property
    def language_model(self) -> Glm4vTextModel:
        """The decoder (`model.language_model`), as transformers' property of the same name."""
        return self.model.language_model

    def gradient_checkpointing_enable(self) -> None:
        """Recompute each ViT block's and decoder layer's activations in the backward pass instead of
        storing them (same loss and gradients, far less memory, ~1/3 more compute); training only."""
        self.model.visual.gradient_checkpointing = self.model.language_model.gradient_checkpointing = True

    # ------------------------------------------------------------------ pieces, usable one by one
    def get_token_types(self, input_ids: torch.Tensor) -> torch.Tensor:
        c = self.config
        return rope.token_types(input_ids, c.image_token_id, c.video_start_token_id, c.video_end_token_id)

    def get_rope_index(self, input_ids, mm_token_type_ids=None, image_grid_thw=None, video_grid_thw=None,
                       attention_mask=None):
        """position_ids (3, B, L) and rope_deltas (B, 1) for a prompt (see `rope.get_rope_index`).
        Arguments in transformers' order; token types default to `get_token_types(input_ids)`."""
        _check_token_types(input_ids, mm_token_type_ids)
        if mm_token_type_ids is None:
            mm_token_type_ids = self.get_token_types(input_ids)
        return rope.get_rope_index(input_ids, mm_token_type_ids, image_grid_thw, video_grid_thw, attention_mask,
                                   self.config.vision_config.spatial_merge_size)

    def get_image_features(self, pixel_values, image_grid_thw):
        """Pixel rows (N, 1176) of all images -> merged features (N/4, D), one row per <|image|> slot."""
        _check_pixels(pixel_values, image_grid_thw, self.config.vision_config, "image")
        return self.model.visual(pixel_values, image_grid_thw)

    def get_video_features(self, pixel_values_videos, video_grid_thw):
        """Pixel rows of all videos -> merged features, one row per frame slot. The tower attends within
        each temporal group (a [t, h, w] grid is t separate images to it), so the grid goes in as is."""
        _check_pixels(pixel_values_videos, video_grid_thw, self.config.vision_config, "video")
        return self.model.visual(pixel_values_videos, video_grid_thw)

    def embed(self, input_ids, pixel_values=None, image_grid_thw=None, pixel_values_videos=None,
              video_grid_thw=None, mm_token_type_ids=None):
        """Token embeddings with image/video features written into their <|image|> rows: (B, L, D)."""
        _check_vocab(input_ids, self.config.text_config.vocab_size)
        x = self.model.language_model.embed_tokens(input_ids)
        if pixel_values is None and pixel_values_videos is None:
            return x
        types = mm_token_type_ids if mm_token_type_ids is not None else self.get_token_types(input_ids)
        vision = self.config.vision_config
        for kind, what, pixels, grid in ((rope.IMAGE, "image", pixel_values, image_grid_thw),
                                         (rope.VIDEO, "video", pixel_values_videos, video_grid_thw)):
            if pixels is None:
                continue
            slots = (types == kind) & (input_ids == self.config.image_token_id)  # stale types must not misplace
            _check_pixels(pixels, grid, vision, what)
            _check_slots(int(slots.sum()), grid, vision.spatial_merge_size, what)  # before the tower runs
            features = self.model.visual(pixels, grid)  # what get_image/video_features return, checked once
            x = x.masked_scatter(slots[..., None], features.to(x.dtype))  # row-major over (batch, position)
        return x

    # ------------------------------------------------------------------ the forward pass
    def forward(self, input_ids, attention_mask=None, position_ids=None, pixel_values=None, image_grid_thw=None,
                pixel_values_videos=None, video_grid_thw=None, mm_token_type_ids=None, labels=None,
                cache=None, logits_to_keep: int = 0) -> Glm4vOutput:
        """Logits (B, L, vocab) for a prompt, or (B, logits_to_keep, vocab) for only the last positions
        (generation needs just the last one). Explicit `position_ids` ((3, B, L) or (B, L)) skip the
        rope index, so `rope_deltas` is then None. `labels` (B, L) give the mean cross-entropy over the
        positions whose label is not -100; labels without any such position are refused (a mean over
        no tokens is undefined: transformers returns nan)."""
        past = cache.length if cache is not None else 0
        _check_inputs(self.config, past, input_ids, attention_mask, position_ids, mm_token_type_ids, labels,
                      logits_to_keep)
        _check_media(pixel_values, image_grid_thw, pixel_values_videos, video_grid_thw)
        types = mm_token_type_ids if mm_token_type_ids is not None else self.get_token_types(input_ids)
        x = self.embed(input_ids, pixel_values, image_grid_thw, pixel_values_videos, video_grid_thw, types)
        rope_deltas = None
        if position_ids is None:
            if past > 0:
                raise ValueError("position_ids are required after the first step of a cached forward; "
                                 "compute them from rope_deltas (see minglm4v.generation.decoding.decoding)")
            position_ids, rope_deltas = self.get_rope_index(input_ids, types, image_grid_thw, video_grid_thw,
                                                            attention_mask)
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
            predictions = rearrange(logits[:, :-1].float(), "b l v -> (b l) v")
            loss = F.cross_entropy(predictions, rearrange(labels[:, 1:], "b l -> (b l)"), ignore_index=-100)
        return Glm4vOutput(logits=logits, loss=loss, rope_deltas=rope_deltas)


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


# ---------------------------------------------------------------------- input checks
def _check_inputs(config, past, input_ids, attention_mask, position_ids, mm_token_type_ids, labels, logits_to_keep):
    text = config.text_config
    check_prompt(input_ids, attention_mask, past, text.max_position_embeddings)
    _check_token_types(input_ids, mm_token_type_ids)
    B, L = input_ids.shape
    if position_ids is not None:
        check_integer_tensor("position_ids", position_ids)
        if tuple(position_ids.shape) not in ((3, B, L), (B, L)):
            raise ValueError(f"position_ids must have shape (3, batch, length) = {(3, B, L)} or (batch, length) = "
                             f"{(B, L)}, got {tuple(position_ids.shape)}")
        if position_ids.numel() and int(position_ids.min()) < 0:
            raise ValueError(f"position_ids must be >= 0 (a prompt's first token is at 0), got "
                             f"{int(position_ids.min())}; leave them out to have them computed (get_rope_index)")
    if not is_int(logits_to_keep) or logits_to_keep < 0:
        raise ValueError(f"logits_to_keep must be an int >= 0 (0 = every position), got {logits_to_keep!r}")
    if labels is not None:
        _check_labels(labels, input_ids.shape, text.vocab_size)


def _check_labels(labels, shape, vocab):
    check_integer_tensor("labels", labels)
    if labels.shape != shape:
        raise ValueError(f"labels must have the shape of input_ids {tuple(shape)}, got {tuple(labels.shape)}")
    if bool(((labels != -100) & ((labels < 0) | (labels >= vocab))).any()):
        raise ValueError(f"labels must be token ids in [0, {vocab}) or -100 (no target), got values from "
                         f"{int(labels.min())} to {int(labels.max())}")
    if not bool((labels[:, 1:] != -100).any()):
        raise ValueError("labels have no target: every label after the first position is -100, so the loss "
                         "would average over no tokens; give at least one position a token id")


def _check_media(pixel_values, image_grid_thw, pixel_values_videos, video_grid_thw):
    for pixels, grid, names in ((pixel_values, image_grid_thw, "pixel_values and image_grid_thw"),
                                (pixel_values_videos, video_grid_thw, "pixel_values_videos and video_grid_thw")):
        if (pixels is None) != (grid is None):
            raise ValueError(f"{names} go together: pass both or neither (got only "
                             f"{names.split(' and ')[pixels is None]})")


def _check_vocab(input_ids, vocab: int):
    if input_ids.numel() and (int(input_ids.min()) < 0 or int(input_ids.max()) >= vocab):
        raise ValueError(f"input_ids must lie in [0, {vocab}) (the model's vocab_size); got values from "
                         f"{int(input_ids.min())} to {int(input_ids.max())}")


def _check_token_types(input_ids, mm_token_type_ids):
    if mm_token_type_ids is not None and mm_token_type_ids.shape != input_ids.shape:
        raise ValueError(f"mm_token_type_ids must have the shape of input_ids {tuple(input_ids.shape)}, got "
                         f"{tuple(mm_token_type_ids.shape)} (get_rope_index takes transformers' argument order: "
                         f"input_ids, mm_token_type_ids, image_grid_thw, video_grid_thw, attention_mask)")


def _check_pixels(pixel_values, grid_thw, v, what):
    name = "pixel_values" if what == "image" else "pixel_values_videos"
    if not isinstance(pixel_values, torch.Tensor) or not pixel_values.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got "
                        f"{getattr(pixel_values, 'dtype', type(pixel_values).__name__)}")
    # why the float32 sum first: one reduction instead of isfinite's four passes; the exact test confirms
    if not bool(pixel_values.sum(dtype=torch.float32).isfinite()) and not bool(torch.isfinite(pixel_values).all()):
        raise ValueError(f"{name} holds NaN or infinite values; they would make every logit NaN. "
                         f"Make pixel values with Glm4vImageProcessor from real images")
    if grid_thw is not None:
        check_integer_tensor(f"{what}_grid_thw", grid_thw)
    if pixel_values.ndim != 2 or pixel_values.shape[1] != v.patch_dim:
        raise ValueError(f"{what} pixel_values must have shape (patches, {v.patch_dim}) = (N, C*T*P*P) with "
                         f"C={v.in_channels}, T={v.temporal_patch_size}, P={v.patch_size}; got "
                         f"{tuple(pixel_values.shape)}. Use Glm4vImageProcessor to make them")
    if grid_thw is None or grid_thw.ndim != 2 or grid_thw.shape[1] != 3:
        raise ValueError(f"{what}_grid_thw must be given with shape ({what}s, 3) = [t, h, w] per {what}; "
                         f"got {None if grid_thw is None else tuple(grid_thw.shape)}")
    if grid_thw.numel() and int(grid_thw.min()) < 1:
        raise ValueError(f"{what}_grid_thw must hold [t, h, w] >= 1 per {what}, got {grid_thw.tolist()}")
    m = v.spatial_merge_size
    if bool((grid_thw[:, 1:] % m != 0).any()):
        raise ValueError(f"{what}_grid_thw {grid_thw.tolist()} has an h or w not divisible by the "
                         f"spatial merge size {m}; patch grids must be made of whole {m}x{m} windows")
    if int(grid_thw.prod(-1).sum()) != pixel_values.shape[0]:
        raise ValueError(f"{what}_grid_thw {grid_thw.tolist()} describes {int(grid_thw.prod(-1).sum())} "
                         f"patches (sum of t*h*w) but pixel_values has {pixel_values.shape[0]} rows")


def _check_slots(slots: int, grid_thw, merge: int, what: str):
    """The prompt must hold one <|image|> token per feature the tower will make (t*h*w / merge^2)."""
    features = int(rope.image_tokens(grid_thw, merge).sum())
    if slots == 0:
        raise ValueError(
            f"the prompt has no <|image|> tokens, but {what} pixels for {features} features were given. Each "
            f"{what} needs its slots in input_ids: <|begin_of_image|>, then one <|image|> token per merged "
            f"{merge}x{merge} patch window (t*h*w/{merge**2} for its grid), then <|end_of_image|>. A placeholder "
            f"such as '<image>' in the text is just text to the tokenizer. Build the inputs with "
            f"processor.apply_chat_template(messages, tokenize=True, return_dict=True, return_tensors='pt'), "
            f"which writes and expands the placeholders for you")
    if slots != features:
        raise ValueError(f"{what.capitalize()} features and {what} tokens do not match: the prompt has {slots} "
                         f"{what} tokens but the {what}s give {features} features; expand each placeholder with "
                         f"Glm4vProcessor (processor.apply_chat_template does it)")
