"""00 · tour: parameters per part, the loss by hand, a one-image prompt and its rope delta."""

import torch
import torch.nn.functional as F

from minglm4v import Glm4vForConditionalGeneration


def count_by_part(config) -> dict[str, int]:
    """Exercise 1: parameters of the vision tower, decoder, lm_head and the total (meta device)."""
    with torch.device("meta"):
        model = Glm4vForConditionalGeneration(config)
    parts = {"vision": model.model.visual, "decoder": model.model.language_model,
             "lm_head": model.lm_head, "total": model}
    return {name: sum(p.numel() for p in part.parameters()) for name, part in parts.items()}


def loss_by_hand(logits, input_ids, scored):
    """Exercise 2: mean cross-entropy of logits (1, L, V) against the next token, over the
    target tokens where `scored` (L,) is True (position i predicts token i + 1)."""
    keep = scored[1:]
    return F.cross_entropy(logits[0, :-1][keep], input_ids[0, 1:][keep])


def text_tokens(input_ids, config):
    """Exercise 2, second part: every token outside the image blocks."""
    image = torch.tensor([config.image_start_token_id, config.image_token_id,
                          config.image_end_token_id])
    return ~torch.isin(input_ids[0], image)


def one_image_prompt(config, height, width, before=(5, 6), after=(7, 8, 9)):
    """Exercise 3: input_ids (1, L) with one height x width image between text tokens, and the
    rope delta by hand: the image's h*w merged tokens span only max(h, w) positions."""
    h, w = height // 28, width // 28  # merged grid: 28 px per token side
    ids = [*before, config.image_start_token_id, *[config.image_token_id] * (h * w),
           config.image_end_token_id, *after]
    return torch.tensor([ids]), max(h, w) - h * w
