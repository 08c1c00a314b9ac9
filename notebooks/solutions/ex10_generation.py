"""10 · generation: a greedy loop on the package's KV cache; the decode position of token k."""

import torch

from minglm4v.generation.decoding import KVCache


@torch.no_grad()
def greedy(model, inputs, max_new_tokens):
    """Exercise 1: batch of one. Prefill fills the cache; token k then goes in alone at position
    max prompt position + 1 + k in all three streams."""
    eos = model.config.text_config.eos_token_id
    positions, _ = model.get_rope_index(inputs["input_ids"], inputs["mm_token_type_ids"],
                                        inputs.get("image_grid_thw"))
    cache = KVCache(model.config.text_config.num_hidden_layers, inputs["input_ids"].shape[1] + max_new_tokens)
    logits = model(**inputs, position_ids=positions, cache=cache).logits[:, -1]
    tokens = []
    for k in range(max_new_tokens):
        token = logits.argmax(-1, keepdim=True)  # (1, 1)
        tokens.append(token.item())
        if token.item() in eos:
            break
        p = torch.full((3, 1, 1), int(positions.max()) + 1 + k)
        logits = model(token, position_ids=p, cache=cache).logits[:, -1]
    return torch.cat([inputs["input_ids"], torch.tensor([tokens])], dim=1)


def decode_position(model, inputs, k):
    """Exercise 2: generated tokens are text, so all streams continue from the prompt's max."""
    positions, _ = model.get_rope_index(inputs["input_ids"], inputs["mm_token_type_ids"],
                                        inputs.get("image_grid_thw"))
    return int(positions.max()) + 1 + k
