"""15 · what the model looks at: entropy per query, the shape under the top window (and how often
it is the one asked about), image share."""

import random

import torch

from minglm4v.study.attention_maps import image_token_map, record_attention
from minglm4v.study.shapes import questions, random_scene


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


def subject_hits(model, processor, seeds, max_new_tokens=200):
    """Exercise 2, the count: over the scenes of `seeds` that allow a colour question, how often
    the last layer's most attended window, seen from <answer>, lies on the shape the question
    names. Returns (hits, scenes asked)."""
    hits = asked = 0
    answer_id = processor.tokenizer.convert_tokens_to_ids("<answer>")
    for seed in seeds:
        scene = random_scene(random.Random(seed))
        question = next((q for q in questions(scene) if q.kind == "color"), None)
        if question is None:
            continue
        messages = [{"role": "user", "content": [{"type": "image", "image": scene.image()},
                                                 {"type": "text", "text": question.text}]}]
        prompt = processor(messages=messages)
        with torch.no_grad():
            out = model.generate(**prompt, max_new_tokens=max_new_tokens)
            with record_attention(model) as maps:
                model(input_ids=out, pixel_values=prompt["pixel_values"],
                      image_grid_thw=prompt["image_grid_thw"])
        ids = out[0]
        asked += 1
        if not (ids == answer_id).any():  # no answer written: not a hit
            continue
        at = int((ids == answer_id).nonzero()[0])
        window_map = image_token_map(maps.text[-1][0, :, at].mean(0), ids, model.config.image_token_id,
                                     prompt["image_grid_thw"])
        subject = scene.find(kind=question.text.split()[-1].rstrip("?"))[0]
        hits += looked_at(scene, window_map) == f"{subject.color} {subject.kind}"
    return hits, asked
