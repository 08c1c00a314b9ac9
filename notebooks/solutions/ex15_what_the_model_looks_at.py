"""15 · what the model looks at: entropy per query, the shape under the top window, image share."""

import torch


def attention_entropy(probs):
    """Exercise 1: entropy in nats of each query's distribution, (heads, queries, keys) ->
    (heads, queries); 0 * log 0 counts as 0 (masked keys)."""
    return -(probs * probs.clamp_min(1e-30).log()).sum(-1)


def looked_at(scene, window_map):
    """Exercise 2: "red circle", ... or "background" under the centre of the most attended
    window of a (gh, gw) map over the picture of `scene`."""
    gh, gw = window_map.shape
    r, c = divmod(int(window_map.argmax()), gw)
    x, y = (c + 0.5) / gw * scene.size, (r + 0.5) / gh * scene.size
    for s in scene.shapes:
        if s.box[0] <= x < s.box[2] and s.box[1] <= y < s.box[3]:
            return f"{s.color} {s.kind}"
    return "background"


def image_share(text_maps, ids, image_token_id, query):
    """Exercise 3: per layer, the share of `query`'s attention on image tokens (mean over
    heads); `text_maps` is AttentionMaps.text, `ids` the (L,) token ids of batch row 0."""
    on_image = ids == image_token_id
    return torch.stack([m[0, :, query][:, on_image].sum(-1).mean() for m in text_maps])
