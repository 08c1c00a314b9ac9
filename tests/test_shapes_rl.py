"""The shapes world for RL: the plain world is unchanged, varied pictures keep the world's rules with more
variation, RL prompt sets hold the user turn and the answer, and the second renderer draws what its
scenes say with code of its own."""

import hashlib
import json
import random

import numpy as np
import pytest
from PIL import Image

from minglm4v.study import shapes_other
from minglm4v.study.shapes import COLORS, MARGIN, SHADE, SIDE, VARIED, questions, random_scene, write_rl_dataset
from minglm4v.study.shapes_eval import RENDERERS, eval_questions

# sha256 of the pixels of random_scene(Random(s)).image() for s in 0..19, computed with the code before
# `varied` existed: the stored outputs (notebooks, the micro model's training data) depend on them
PLAIN_PIXELS = "47e6f722db91ed55fb067d0a233756157bac96dca4d15d20edf7029e51b71091"


def _layout_ok(scene):
    boxes = [s.box for s in scene.shapes]
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        assert 0 < x1 < x2 < scene.size and 0 < y1 < y2 < scene.size and x2 - x1 == y2 - y1
        cx, cy = (x1 + x2) / 2 / scene.size, (y1 + y2) / 2 / scene.size
        assert min(abs(cx - 1 / 3), abs(cx - 2 / 3), abs(cy - 0.5)) >= MARGIN  # one right position word
        for a1, b1, a2, b2 in boxes[i + 1:]:
            assert x2 <= a1 or a2 <= x1 or y2 <= b1 or b2 <= y1


def test_the_plain_world_is_unchanged():
    digest = hashlib.sha256()
    for seed in range(20):
        digest.update(np.asarray(random_scene(random.Random(seed)).image()).tobytes())
    assert digest.hexdigest() == PLAIN_PIXELS


def test_varied_pictures_vary_more_and_keep_the_rules():
    plain = [random_scene(random.Random(s)) for s in range(300)]
    varied = [random_scene(random.Random(s), varied=True) for s in range(300)]
    for scene in varied:
        _layout_ok(scene)
    sides = [(s.box[2] - s.box[0]) / sc.size for sc in varied for s in sc.shapes]
    assert min(sides) < SIDE[0] - 0.03 and max(sides) > SIDE[1] + 0.03
    assert min(sides) >= VARIED["side"][0] - 0.01 and max(sides) <= VARIED["side"][1] + 0.01

    def darkest(scenes):  # the lowest red channel of a red shape (plain: at least 220 - SHADE)
        return min(s.fill[0] for sc in scenes for s in sc.shapes if s.color == "red")
    assert darkest(plain) >= COLORS["red"][0] - SHADE and darkest(varied) < COLORS["red"][0] - SHADE - 20
    assert {(s.kind, s.color) for sc in varied for s in sc.shapes} == {(k, c) for k in ("circle", "square",
                                                                                        "triangle") for c in COLORS}


def test_varied_edges_are_anti_aliased():
    """Plain pictures hold only white and the fills; varied ones also blends of the two along the edges of
    circles and triangles (a square's edges lie on pixel borders, its box being whole pixels)."""
    for seed in range(8):
        for varied in (False, True):
            scene = random_scene(random.Random(seed), varied=varied)
            pixels = {tuple(p) for p in np.asarray(scene.image()).reshape(-1, 3)}
            pure = {(255, 255, 255), *(s.fill for s in scene.shapes)}
            assert bool(pixels - pure) is (varied and any(s.kind != "square" for s in scene.shapes))
            # the box still bounds the shape: outside every box the picture is white
            outside = np.ones((scene.size, scene.size), bool)
            for x1, y1, x2, y2 in (s.box for s in scene.shapes):
                outside[y1:y2, x1:x2] = False
            assert (np.asarray(scene.image())[outside] == 255).all()


def test_rl_dataset_lines(tmp_path):
    path = write_rl_dataset(tmp_path, 30, seed=4)
    assert path == tmp_path / "rl.jsonl"
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(lines) == 60
    first = {q.text: q.answer for q in questions(random_scene(random.Random(4), varied=True))}  # picture 0
    for line in lines:
        assert set(line) == {"messages", "images", "answer"}
        (user,) = line["messages"]
        assert user["role"] == "user" and user["content"].startswith("<image>")
        assert (tmp_path / line["images"][0]).is_file()
        if user["content"].startswith("<image>Where"):
            assert "<|begin_of_box|>[" in line["answer"] and line["answer"].endswith("]<|end_of_box|>")
    for line in lines[:2]:  # both questions about the first picture carry its true answers
        assert first[line["messages"][0]["content"].removeprefix("<image>")] == line["answer"]
    assert write_rl_dataset(tmp_path / "again", 30, seed=4).read_text() == path.read_text()


def test_rl_dataset_refuses_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="pictures must be >= 1"):
        write_rl_dataset(tmp_path, 0, seed=0)
    assert not (tmp_path / "rl.jsonl").exists()


@pytest.mark.parametrize("seed", range(12))
def test_second_renderer_draws_its_scene(seed):
    """Read back: near-background outside the boxes; inside, the covered fraction tells the kind and the
    pixels at the centre are the fill, nearest its colour word in the renderer's own palette."""
    scene = shapes_other.random_scene(random.Random(seed))
    _layout_ok(scene)
    pixels = np.asarray(scene.image()).astype(int)
    outside = np.ones(pixels.shape[:2], bool)
    for s in scene.shapes:
        x1, y1, x2, y2 = s.box
        outside[y1:y2, x1:x2] = False
        patch = pixels[y1:y2, x1:x2]
        paint = np.abs(patch - scene.background).sum(-1) / max(np.abs(np.subtract(s.fill, scene.background)).sum(), 1)
        covered = {"square": 1.0, "circle": np.pi / 4, "triangle": 0.5}[s.kind]
        assert paint.clip(0, 1).mean() == pytest.approx(covered, abs=0.06)
        assert tuple(pixels[(y1 + y2) // 2 + (y2 - y1) // 4, (x1 + x2) // 2]) == s.fill
        palette = shapes_other.PALETTE
        assert min(palette, key=lambda c: np.abs(np.subtract(palette[c], s.fill)).sum()) == s.color
    assert (pixels[outside] == scene.background).all()
    edges = {tuple(p) for p in pixels.reshape(-1, 3)} - {(scene.background,) * 3, *(s.fill for s in scene.shapes)}
    assert bool(edges) is any(s.kind != "square" for s in scene.shapes)  # anti-aliased: blends along slanted edges


def test_renderers_for_evaluation():
    assert set(RENDERERS) == {"shapes", "varied", "other"}
    for name in RENDERERS:
        pairs = eval_questions(5, seed=3, renderer=name)
        assert pairs == eval_questions(5, seed=3, renderer=name)
        assert {q.kind for _, q in pairs} >= {"count", "yes/no"}
    assert isinstance(eval_questions(1, 3, "other")[0][0], shapes_other.OtherScene)
    assert eval_questions(5, 3) == eval_questions(5, 3, "shapes")
    with pytest.raises(ValueError, match="unknown renderer 'mine': choose one of shapes, varied, other"):
        eval_questions(5, 3, "mine")


def test_eval_shapes_takes_a_renderer(capsys):
    from minglm4v import cli
    assert cli.main(["eval-shapes", "--pictures", "2", "--seed", "5", "--renderer", "other"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert "2 fresh pictures (seed 5), drawn by the 'other' renderer, greedy answers" in printed[0]
    asked = len(eval_questions(2, 5, "other"))
    assert printed[-1].split()[:3] == ["well-formed", str(asked), str(asked)]
    with pytest.raises(SystemExit):
        cli.main(["eval-shapes", "--renderer", "mine"])
    assert "invalid choice: 'mine'" in capsys.readouterr().err


def test_rl_questions_from_any_renderer(tmp_path):
    from minglm4v.study.shapes_eval import write_rl_questions
    path = write_rl_questions(tmp_path, 6, seed=2, renderer="other", kinds=("position", "color"))
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    wanted = [(s, q) for s, q in eval_questions(6, 2, "other") if q.kind in ("position", "color")]
    assert [(line["messages"][0]["content"], line["answer"]) for line in lines] == \
        [("<image>" + q.text, q.answer) for _, q in wanted]
    for line, (scene, _) in zip(lines, wanted):  # each line's picture is its scene's, saved once
        assert np.array_equal(np.asarray(Image.open(tmp_path / line["images"][0])), np.asarray(scene.image()))
    assert len(list((tmp_path / "images").iterdir())) == len({id(s) for s, _ in wanted})
    with pytest.raises(ValueError, match=r"kinds must be some of \['count'"):
        write_rl_questions(tmp_path, 2, seed=2, kinds=("where",))


def test_rl_prompt_sets_are_what_the_rl_command_reads(tmp_path):
    from minglm4v.study.shapes_eval import write_rl_questions
    from minglm4v.training.rollouts import read_prompts
    for path in (write_rl_dataset(tmp_path / "varied", 5, seed=1), write_rl_questions(tmp_path / "other", 3, seed=1)):
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        prompts = read_prompts(path)
        assert [p.answer for p in prompts] == [line["answer"] for line in lines]
        assert {p.answer_type for p in prompts} <= {"exact", "grounding"}
        assert all((p.answer_type == "grounding") == ("<|begin_of_box|>" in p.answer) for p in prompts)
