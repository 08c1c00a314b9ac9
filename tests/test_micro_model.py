"""The bundled micro model (data/micro-model, trained by scripts/train_micro_model.py through
`python -m minglm4v train`) on pictures it never saw: what it gets right, with floors from its
measured accuracy."""

import numpy as np
import pytest
from helpers import REPO
from PIL import Image
from train_micro_model import demo_scene  # scripts/, on sys.path through helpers

from minglm4v import Glm4vForConditionalGeneration
from minglm4v.processor import Glm4vProcessor
from minglm4v.shapes import questions
from minglm4v.shapes_eval import EVAL_SEED, answer, evaluate, grade, summarize

MICRO = REPO / "data" / "micro-model"


@pytest.fixture(scope="module")
def micro():
    return Glm4vForConditionalGeneration.from_pretrained(MICRO), Glm4vProcessor.from_pretrained(MICRO)


def test_demo_picture(micro):
    """data/images/shapes.png, the picture ./run.sh asks about: all 22 questions the templates allow get
    well-formed replies, the count is right, and so is every shape named by its colour."""
    scene = demo_scene()
    picture = Image.open(REPO / "data" / "images" / "shapes.png")
    assert np.array_equal(np.asarray(picture), np.asarray(scene.image()))
    asked = questions(scene)
    graded = [grade(q, r) for q, r in zip(asked, answer(*micro, [picture] * len(asked), [q.text for q in asked]))]
    assert len(graded) == 22 and all(g.well_formed for g in graded)
    assert [g.correct for g in graded if g.question.kind == "count"] == [True]
    assert [g.correct for g in graded if g.question.kind == "shape"] == [True] * 3


def test_fresh_pictures_meet_the_floor(micro):
    """30 pictures from a seed that made no training data. Measured with this model: count 30/30, color
    24/24, shape 29/29, yes/no 29/30, position words 29/30, box IoU >= 0.5 28/30, well-formed 143/143;
    the floors sit below those and far above chance (count 1/3, color 1/4, shape 1/3, yes/no 1/2,
    position words 1/6)."""
    summary = summarize(evaluate(*micro, pictures=30, seed=EVAL_SEED + 1))
    rates = {name: right / asked for name, (right, asked) in summary.items()}
    floors = {"count": 0.95, "color": 0.9, "shape": 0.9, "yes/no": 0.9, "position": 0.85, "box IoU >= 0.5": 0.85,
              "well-formed": 1.0}
    assert all(rates[name] >= floor for name, floor in floors.items()), rates
