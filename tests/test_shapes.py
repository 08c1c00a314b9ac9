"""The shapes world draws what its scenes say, and every question's answer is true of the picture."""

import json
import random

import numpy as np
import pytest

from minglm4v.study.shapes import (
    COLORS,
    KINDS,
    SHAPES,
    SIZES,
    Scene,
    Shape,
    describe,
    pick_question,
    questions,
    random_scene,
    target,
    write_dataset,
)

SCENES = [random_scene(random.Random(seed)) for seed in range(200)]


def test_same_seed_same_scene_and_pixels():
    a, b = random_scene(random.Random(7)), random_scene(random.Random(7))
    assert a == b and np.array_equal(np.asarray(a.image()), np.asarray(b.image()))
    assert random_scene(random.Random(8)) != a


def test_dataset_is_reproducible(tmp_path):
    one, two = write_dataset(tmp_path / "a", 3, seed=5), write_dataset(tmp_path / "b", 3, seed=5)
    assert one.read_text() == two.read_text()
    for name in (f"images/{i:06d}.png" for i in range(3)):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_scene_layout():
    for scene in SCENES:
        _check_layout(scene)


def _check_layout(scene):
    assert SIZES[0] <= scene.size <= SIZES[1] and 1 <= len(scene.shapes) <= 3
    for i, s in enumerate(scene.shapes):
        x1, y1, x2, y2 = s.box
        assert 0 < x1 < x2 < scene.size and 0 < y1 < y2 < scene.size and x2 - x1 == y2 - y1
        assert s.kind in SHAPES and s.color in COLORS
        for t in scene.shapes[i + 1:]:  # boxes apart, so shapes cannot touch
            assert x2 <= t.box[0] or t.box[2] <= x1 or y2 <= t.box[1] or t.box[3] <= y1


def test_counts_cover_one_to_three_and_every_kind_and_colour():
    assert {len(s.shapes) for s in SCENES} == {1, 2, 3}
    assert {(t.kind, t.color) for s in SCENES for t in s.shapes} == {(k, c) for k in SHAPES for c in COLORS}


@pytest.mark.parametrize("scene", SCENES[:30])
def test_pixels_match_the_scene(scene):
    """Read back from the picture: white outside the shapes; each box bounds its shape's pixels tightly;
    the fill is nearest its colour; the covered fraction tells the kind (square 1, circle pi/4, triangle 1/2)."""
    pixels = np.asarray(scene.image()).astype(int)
    inside = np.zeros(pixels.shape[:2], bool)
    for s in scene.shapes:
        x1, y1, x2, y2 = s.box
        patch = pixels[y1:y2, x1:x2]
        drawn = (patch == s.fill).all(-1)
        ys, xs = np.nonzero(drawn)
        assert (ys.min(), xs.min(), ys.max() + 1, xs.max() + 1) == (0, 0, y2 - y1, x2 - x1)
        assert min(COLORS, key=lambda c: np.abs(np.subtract(COLORS[c], s.fill)).sum()) == s.color
        covered = {"square": 1.0, "circle": np.pi / 4, "triangle": 0.5}[s.kind]
        assert drawn.mean() == pytest.approx(covered, abs=0.08)
        inside[y1:y2, x1:x2] = True
    assert (pixels[~inside] == 255).all()


def test_where_and_box_1000():
    shape = Shape("circle", "red", (10, 60, 40, 90), (220, 40, 40))
    assert shape.where(100) == "bottom left"
    assert shape.box_1000(100) == (100, 600, 400, 900)
    assert Shape("square", "blue", (40, 0, 60, 20), (0, 0, 0)).where(100) == "top center"
    assert Shape("square", "blue", (70, 0, 90, 20), (0, 0, 0)).box_1000(120) == (580, 0, 750, 170)


def _fixed_scene():
    shapes = (Shape("circle", "red", (10, 10, 40, 40), (220, 40, 40)),
              Shape("square", "red", (150, 20, 190, 60), (220, 40, 40)),
              Shape("circle", "blue", (90, 120, 130, 160), (40, 80, 220)))
    return Scene(200, shapes)


def test_questions_of_a_known_scene():
    scene = _fixed_scene()
    assert describe(scene) == ("3 shapes: red circle top left [50,50,200,200]; red square top right "
                               "[750,100,950,300]; blue circle bottom center [450,600,650,800]")
    assert describe(Scene(200, scene.shapes[:1])) == "1 shape: red circle top left [50,50,200,200]"
    asked = {q.text: q.answer for q in questions(scene)}
    assert asked["How many shapes are there?"] == "3"
    assert asked["What color is the square?"] == "red"
    assert "What color is the circle?" not in asked  # two circles
    assert asked["What shape is blue?"] == "circle"
    assert "What shape is red?" not in asked  # two red shapes
    assert "What shape is green?" not in asked
    assert asked["Is there a blue circle?"] == "yes" and asked["Is there a blue square?"] == "no"
    assert sum(text.startswith("Is there") for text in asked) == 12
    assert asked["Where is the red square?"] == "top right <|begin_of_box|>[750,100,950,300]<|end_of_box|>"
    assert "Where is the green circle?" not in asked
    assert target(scene, questions(scene)[0]) == (
        f"<think>{describe(scene)}</think><answer>3</answer>")


def test_answers_agree_with_the_scene():
    for scene in SCENES:
        _check_answers(scene)


def _check_answers(scene):
    for q in questions(scene):
        words = q.text.rstrip("?").split()
        if q.kind == "count":
            assert q.answer == str(len(scene.shapes))
        elif q.kind == "color":
            assert [s.color for s in scene.shapes if s.kind == words[-1]] == [q.answer]
        elif q.kind == "shape":
            assert [s.kind for s in scene.shapes if s.color == words[-1]] == [q.answer]
        elif q.kind == "yes/no":
            assert q.answer == ("yes" if scene.find(words[-1], words[-2]) else "no")
        else:
            (s,) = scene.find(words[-1], words[-2])
            assert q.answer.startswith(s.where(scene.size) + " <|begin_of_box|>")
        assert q.kind in KINDS


def test_description_is_in_reading_order():
    for scene in SCENES:
        keys = [(s.where(scene.size).startswith("bottom"), s.box[0]) for s in scene.shapes]
        assert keys == sorted(keys)


def test_yes_and_no_are_balanced():
    rng = random.Random(0)
    answers = [pick_question(s, rng, "yes/no").answer for s in SCENES]
    assert 70 < answers.count("yes") < 130


def test_dataset_lines(tmp_path):
    path = write_dataset(tmp_path, 4, seed=1, per_picture=3)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(lines) == 12
    for line in lines:
        (image,) = line["images"]
        assert (tmp_path / image).is_file()
        user, assistant = line["messages"]
        assert user["role"] == "user" and user["content"].startswith("<image>")
        assert user["content"].count("<image>") == 1
        assert assistant["role"] == "assistant"
        assert assistant["content"].startswith("<think>") and assistant["content"].endswith("</answer>")


def test_kind_weights_steer_the_questions(tmp_path):
    weights = {"count": 0, "color": 0, "shape": 0, "yes/no": 1, "position": 3}
    path = write_dataset(tmp_path, 40, seed=2, kind_weights=weights)
    asked = [json.loads(line)["messages"][0]["content"] for line in path.read_text().splitlines()]
    kinds = [text.split()[0] for text in asked]  # "<image>Is" or "<image>Where"
    assert set(kinds) == {"<image>Is", "<image>Where"}
    assert kinds.count("<image>Where") > kinds.count("<image>Is")  # 3:1, less the scenes with no unique subject


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(kind_weights={"count": 1}), ValueError, r"a weight to each of \['count', 'color'"),
    (dict(kind_weights={k: 0 for k in KINDS}), ValueError, "all 0"),
    (dict(kind_weights={**{k: 1 for k in KINDS}, "shape": float("nan")}), ValueError, r"kind_weights\['shape'\]"),
    (dict(kind_weights={**{k: 1 for k in KINDS}, "count": -1}), ValueError, ">= 0, got -1"),
    (dict(pictures=0), ValueError, "pictures must be >= 1"),
    (dict(per_picture=1.5), TypeError, "per_picture must be an int"),
])
def test_bad_dataset_arguments_are_explained(tmp_path, kwargs, error, match):
    with pytest.raises(error, match=match):
        write_dataset(tmp_path, **{"pictures": 2, "seed": 0, **kwargs})
    assert not (tmp_path / "train.jsonl").exists()  # refused before anything was written
