"""The solutions of notebook 15's exercises give the right values on the micro model."""

import math
import random
import sys

import pytest
import torch
from helpers import REPO

from minglm4v import Glm4vForConditionalGeneration
from minglm4v.processing.processor import Glm4vProcessor
from minglm4v.study.attention_maps import image_token_map, record_attention
from minglm4v.study.shapes import Scene, Shape, random_scene

sys.path.insert(0, str(REPO / "notebooks"))
from solutions import ex15_what_the_model_looks_at as ex15  # noqa: E402

MICRO = REPO / "data" / "micro-model"


@pytest.fixture(scope="module")
def recorded():
    model = Glm4vForConditionalGeneration.from_pretrained(MICRO).eval()
    processor = Glm4vProcessor.from_pretrained(MICRO)
    content = [{"type": "image", "image": random_scene(random.Random(3)).image()},
               {"type": "text", "text": "What color is the circle?"}]
    prompt = processor(messages=[{"role": "user", "content": content}])
    with torch.no_grad(), record_attention(model) as maps:
        model(**prompt)
    return model, prompt, maps


def test_15_entropy_is_log_n_for_uniform_rows_and_below_for_the_model(recorded):
    uniform = torch.full((2, 3, 5), 0.2)
    torch.testing.assert_close(ex15.attention_entropy(uniform), torch.full((2, 3), math.log(5)))
    one_hot = torch.zeros(1, 1, 4).index_fill_(-1, torch.tensor([2]), 1.0)
    assert float(ex15.attention_entropy(one_hot)) == 0.0
    _, prompt, maps = recorded
    entropy = ex15.attention_entropy(maps.vision[0])
    n = maps.vision[0].shape[-1]
    assert entropy.shape == maps.vision[0].shape[:2]
    assert bool((entropy > 0).all()) and bool((entropy <= math.log(n) + 1e-5).all())
    # the mean entropy equals the definition written out with a loop over one head
    p = maps.vision[0][1]
    by_hand = torch.tensor([-sum(float(x) * math.log(float(x)) for x in row if x > 0) for row in p[:3]])
    torch.testing.assert_close(entropy[1, :3], by_hand, rtol=1e-4, atol=1e-4)


def test_15_looked_at_names_the_shape_under_the_top_window():
    scene = Scene(100, (Shape("circle", "red", (0, 0, 40, 40), (220, 40, 40)),
                        Shape("square", "blue", (60, 60, 100, 100), (40, 80, 220))))
    window_map = torch.zeros(4, 4)
    assert ex15.looked_at(scene, window_map.index_put((torch.tensor(0), torch.tensor(0)),
                                                      torch.tensor(1.0))) == "red circle"
    assert ex15.looked_at(scene, window_map.index_put((torch.tensor(3), torch.tensor(3)),
                                                      torch.tensor(1.0))) == "blue square"
    assert ex15.looked_at(scene, window_map.index_put((torch.tensor(0), torch.tensor(3)),
                                                      torch.tensor(1.0))) == "background"


def test_15_subject_hits_counts_scenes_with_a_colour_question(recorded):
    model, _, _ = recorded
    processor = Glm4vProcessor.from_pretrained(MICRO)
    # seeds 3 and 7 allow a colour question, seed 4 (two green squares) none
    hits, asked = ex15.subject_hits(model, processor, seeds=(3, 4, 7), max_new_tokens=80)
    assert asked == 2
    expected = 0
    for seed, subject in ((3, "circle"), (7, "triangle")):  # the one circle / triangle of each scene
        scene = random_scene(random.Random(seed))
        content = [{"type": "image", "image": scene.image()}, {"type": "text", "text": f"What color is the {subject}?"}]
        prompt = processor(messages=[{"role": "user", "content": content}])
        with torch.no_grad():
            out = model.generate(**prompt, max_new_tokens=80)
            with record_attention(model) as maps:
                model(input_ids=out, pixel_values=prompt["pixel_values"], image_grid_thw=prompt["image_grid_thw"])
        text = processor.decode(out[0])
        if "<answer>" not in text:
            continue
        at = out[0].tolist().index(processor.tokenizer.convert_tokens_to_ids("<answer>"))
        heat = sum(maps.text[-1][0, h, at] for h in range(maps.text[-1].shape[1])) / maps.text[-1].shape[1]
        window_map = image_token_map(heat, out[0], model.config.image_token_id, prompt["image_grid_thw"])
        (shape,) = scene.find(kind=subject)
        expected += ex15.looked_at(scene, window_map) == f"{shape.color} {shape.kind}"
    assert hits == expected


def test_15_image_share_matches_the_summed_image_token_map(recorded):
    model, prompt, maps = recorded
    ids, grid = prompt["input_ids"][0], prompt["image_grid_thw"]
    query = ids.shape[0] - 1
    shares = ex15.image_share(maps.text, ids, model.config.image_token_id, query)
    assert shares.shape == (len(maps.text),)
    for layer, share in enumerate(shares):
        heads = maps.text[layer].shape[1]
        total = sum(float(image_token_map(maps.text[layer][0, h, query], ids, model.config.image_token_id,
                                          grid).sum()) for h in range(heads)) / heads
        assert float(share) == pytest.approx(total, abs=1e-6)
        assert 0 < float(share) < 1
