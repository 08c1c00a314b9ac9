"""Random but well-formed model inputs, as in the GLM-4.1V test guide.

Useful to see what the model consumes before any image or tokenizer is involved:
* `create_fake_text_inputs(config, batch_size, seq_len)` -> input_ids / attention_mask (B, L)
* `create_fake_image_inputs(config, num_images, height, width)` -> pixel_values (N, C*T*P*P),
  image_grid_thw (num_images, 3)
* `create_multimodal_inputs(config, num_images, text_length)` -> both, with one
  `<|begin_of_image|> <|image|> x (h*w/4) <|end_of_image|>` block per image inside the text.
"""

import torch

from ..model.config import Glm4vConfig
from ..model.rope import image_tokens
from ..processing.special_tokens import image_block_ids


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _ordinary_tokens(config: Glm4vConfig, shape, gen) -> torch.Tensor:
    # why an upper bound: GLM puts every special token (pad, <|image|>, ...) at the top of the vocabulary
    top = min(config.text_config.pad_token_id, config.image_start_token_id, config.text_config.vocab_size)
    return torch.randint(0, top, shape, generator=gen)


def create_fake_text_inputs(config: Glm4vConfig, batch_size: int = 1, seq_len: int = 16, seed: int = 0) -> dict:
    input_ids = _ordinary_tokens(config, (batch_size, seq_len), _generator(seed))
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}


def create_fake_image_inputs(config: Glm4vConfig, num_images: int = 1, height: int = 112, width: int = 112,
                             seed: int = 0) -> dict:
    """`num_images` random images of height x width pixels, already patchified like the processor's output."""
    v = config.vision_config
    unit = v.patch_size * v.spatial_merge_size  # 28 px: one merged token
    if height % unit or width % unit or height <= 0 or width <= 0:
        raise ValueError(f"height and width must be positive multiples of patch_size * spatial_merge_size = "
                         f"{unit} pixels, got {height} x {width}; use Glm4vImageProcessor for arbitrary images")
    grid = [1, height // v.patch_size, width // v.patch_size]
    patches = num_images * grid[1] * grid[2]
    return {"pixel_values": torch.randn(patches, v.patch_dim, generator=_generator(seed)),
            "image_grid_thw": torch.tensor([grid] * num_images)}


def create_multimodal_inputs(config: Glm4vConfig, num_images: int = 1, text_length: int = 10,
                             height: int = 112, width: int = 112, seed: int = 0) -> dict:
    """text_length ordinary tokens split around `num_images` image blocks, batch size 1."""
    images = create_fake_image_inputs(config, num_images, height, width, seed)
    tokens_per_image = int(image_tokens(images["image_grid_thw"][0], config.vision_config.spatial_merge_size))
    text = _ordinary_tokens(config, (text_length,), _generator(seed + 1))
    pieces = list(text.tensor_split(num_images + 1))
    ids = [pieces[0]]
    for piece in pieces[1:]:
        ids += [torch.tensor(image_block_ids(config, tokens_per_image)), piece]
    input_ids = torch.cat(ids)[None]
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), **images}
