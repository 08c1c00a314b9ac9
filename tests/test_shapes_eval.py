"""eval-shapes grades replies the way the table claims: right answers, position words, box IoU and
well-formedness, each counted per question kind."""

import pytest

from minglm4v.study.shapes import Question
from minglm4v.study.shapes_eval import box_iou, eval_questions, format_table, grade, summarize

WHERE = Question("position", "Where is the red circle?", "top left <|begin_of_box|>[0,0,400,400]<|end_of_box|>")
COUNT = Question("count", "How many shapes are there?", "2")


def reply(answer, thinking="red circle top left [0,0,400,400]"):
    return f"<think>{thinking}</think><answer>{answer}</answer>"


def test_box_iou():
    assert box_iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1
    assert box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(1 / 3)
    assert box_iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0


def test_grade_plain_answers():
    right, wrong = grade(COUNT, reply("2")), grade(COUNT, reply("3"))
    assert right.correct and right.well_formed and right.iou is None
    assert not wrong.correct and wrong.well_formed
    for malformed in ("<think>x</think>2", "<think>x</think><answer>2", "<answer>2</answer>",
                      reply("two"), reply("2") + "<think>"):
        assert not grade(COUNT, malformed).well_formed, malformed


def test_grade_position_words_and_box():
    exact = grade(WHERE, reply(WHERE.answer))
    assert exact.correct and exact.well_formed and exact.iou == 1
    shifted = grade(WHERE, reply("top left <|begin_of_box|>[200,0,600,400]<|end_of_box|>"))
    assert shifted.correct and shifted.iou == pytest.approx(1 / 3)
    wrong_words = grade(WHERE, reply("top center <|begin_of_box|>[0,0,400,400]<|end_of_box|>"))
    assert not wrong_words.correct and wrong_words.iou == 1
    no_box = grade(WHERE, reply("top left"))
    assert no_box.correct and not no_box.well_formed and no_box.iou == 0


@pytest.mark.parametrize("box", ["[0,400,400,0]", "[400,0,0,400]", "[0,0,0,400]", "[0,0,400,0]", "[400,400,0,0]"])
def test_grade_a_box_with_corners_out_of_order_is_wrong(box):
    # what a 300-step model wrote: [350,150,560,70] has y2 < y1; it encloses nothing, whatever the words
    graded = grade(WHERE, reply(f"top left <|begin_of_box|>{box}<|end_of_box|>"))
    assert graded.correct  # the words are graded on their own
    assert graded.iou == 0 and not graded.well_formed


def test_summary_and_table():
    graded = [grade(COUNT, reply("2")), grade(COUNT, reply("1")), grade(WHERE, reply(WHERE.answer)),
              grade(WHERE, reply("bottom left <|begin_of_box|>[500,500,900,900]<|end_of_box|>"))]
    summary = summarize(graded)
    assert summary["count"] == (1, 2) and summary["position"] == (1, 2) and summary["color"] == (0, 0)
    assert summary["box IoU >= 0.5"] == (1, 2) and summary["well-formed"] == (4, 4)
    table = format_table(summary).splitlines()
    assert table[1].split() == ["count", "1", "2", "50.0%"]
    assert table[5].split() == ["position", "words", "1", "2", "50.0%"]


def test_eval_questions_ask_every_kind_a_scene_allows():
    pairs = eval_questions(20, seed=3)
    assert pairs == eval_questions(20, seed=3)
    scenes = {id(s) for s, _ in pairs}
    assert len(scenes) == 20
    kinds = [q.kind for _, q in pairs]
    assert kinds.count("count") == kinds.count("yes/no") == 20
    for scene, q in pairs:
        assert q.kind != "position" or len(scene.find(*q.text.rstrip("?").split()[-1:-3:-1])) == 1


def test_no_pictures_is_refused():
    with pytest.raises(ValueError, match="pictures must be >= 1, got 0"):
        eval_questions(0, seed=1)
