"""Rewards (minglm4v/training/rewards.py): the format rule, one block per answer type, and the hacking
attempts each rule must refuse."""

import pytest

from minglm4v.training.rewards import answer_type, box_iou, normalise, reward

BOX = "<|begin_of_box|>[100,200,300,400]<|end_of_box|>"


def reply(answer: str, thinking: str = "1 shape: red circle") -> str:
    return f"<think>{thinking}</think><answer>{answer}</answer><|user|>"


def score(completion, reference, verifier=None):
    s = reward(completion, reference, verifier)
    return s.reward, s.correct


# ----------------------------------------------------------------------------- format
@pytest.mark.parametrize("completion", [
    "<think>x</think><answer>2</answer>",  # no end-of-turn token: fine
    "<think>x</think><answer>2</answer><|user|>",
    "<think>x</think>\n <answer>2</answer><|endoftext|><|endoftext|>",  # whitespace between, padding after
    "<think></think><answer>2</answer><|observation|>",  # empty thinking is still the format
])
def test_well_formed_replies_are_scored(completion):
    assert score(completion, "2") == (1.0, True)


@pytest.mark.parametrize("completion", [
    "<answer>2</answer>",  # no thinking
    "2",  # no tags at all
    "<think>x</think>2",  # no answer tags
    "<think>x</think><answer>2",  # cut off inside the answer
    "<think>x</think><answer>2</answer> and more",  # text after </answer>
    "<think>x</think><answer>2</answer><|user|>2",  # text after the end of the turn
    " <think>x</think><answer>2</answer>",  # text before <think>
    "<think>x<think>y</think><answer>2</answer>",  # nested <think>
    "<think>x</think><answer>2</think><answer>2</answer>",  # a second answer hidden inside the first
    "<think>x</think><answer>1</answer><answer>2</answer>",  # two answers
    "<think>x</think>y<answer>2</answer>",  # words between the parts
])
def test_bad_format_gets_zero(completion):
    assert score(completion, "2") == (0.0, False)


# ----------------------------------------------------------------------------- exact (reference without a box)
def test_normalise():
    assert normalise("  Two   Red\tcircles. ") == "2 red circles"
    assert normalise("Ten.") == "10"
    assert normalise("tenth") == "tenth"  # whole words only
    assert normalise("3..") == "3."  # one period only


@pytest.mark.parametrize("answer, right", [
    ("2", True), ("two", True), ("Two.", True), (" 2 ", True),
    ("2 or 3", False), ("2, 3", False), ("3", False), ("22", False), ("2 shapes", False), ("", False),
    ("<|begin_of_box|>2<|end_of_box|>", False),  # the answer as written in <answer> must match, boxes included
])
def test_exact_match(answer, right):
    assert score(reply(answer), "2") == (float(right), right)
    assert answer_type("2") == "exact"


def test_exact_match_of_words():
    assert score(reply("Red"), "red") == (1.0, True)
    assert score(reply("red or blue"), "red") == (0.0, False)
    assert score(reply("reddish"), "red") == (0.0, False)


# ----------------------------------------------------------------------------- grounding (reference with a box)
REFERENCE = f"top left {BOX}"


@pytest.mark.parametrize("answer, expected", [
    (REFERENCE, (1.0, True)),
    ("Top Left <|begin_of_box|>[ 110, 210, 300, 400 ]<|end_of_box|>", (1.0, True)),  # IoU 0.855
    ("top left <|begin_of_box|>[100,200,300,300]<|end_of_box|>", (1.0, True)),  # IoU exactly 0.5
    ("top left <|begin_of_box|>[100,200,300,299]<|end_of_box|>", (0.5, False)),  # IoU just below 0.5
    (f"top right {BOX}", (0.5, False)),  # right box, wrong words
    ("top left", (0.5, False)),  # no box
    ("top left <|begin_of_box|>[100,200,300]<|end_of_box|>", (0.5, False)),  # three numbers: no box
    ("top left <|begin_of_box|>[[100,200,300,400],[0,0,1000,1000]]<|end_of_box|>", (0.5, False)),  # two in one span
    (f"top left {BOX}{BOX}", (0.0, False)),  # two boxes break the format
    (f"top left or top right {BOX}", (0.5, False)),
    ("top left <|begin_of_box|>[0,0,1000,1000]<|end_of_box|>", (0.5, False)),  # the whole picture: IoU 0.04
])
def test_grounding_is_half_words_half_box(answer, expected):
    assert score(reply(answer), REFERENCE) == expected
    assert answer_type(REFERENCE) == "grounding"


def test_box_iou():
    assert box_iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1
    assert box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(1 / 3)
    assert box_iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0
    assert box_iou(None, (0, 0, 10, 10)) == 0
    assert box_iou((5, 5, 5, 5), (5, 5, 5, 5)) == 0  # empty boxes: no division by zero


# ----------------------------------------------------------------------------- the other verifiers
@pytest.mark.parametrize("answer, verifier, expected", [
    ("12", "number", (1.0, True)),
    ("12.0", "number", (1.0, True)),
    ("twelve", "number", (0.0, False)),  # number words stop at ten
    ("12.5", {"name": "number", "tolerance": 0.05}, (1.0, True)),
    ("12.7", {"name": "number", "tolerance": 0.05}, (0.0, False)),
    ("12 or 13", {"name": "number", "tolerance": 0.5}, (0.0, False)),
    ("about 12", "number", (0.0, False)),
])
def test_number(answer, verifier, expected):
    assert score(reply(answer), "12", verifier) == expected


@pytest.mark.parametrize("answer, right", [
    ("B", True), ("b", True), ("(B)", True), ("B)", True), ("B.", True),
    ("A", False), ("B or C", False), ("AB", False), ("B) because", False), ("", False),
])
def test_choice(answer, right):
    assert score(reply(answer), "(B)", "choice") == (float(right), right)


def test_continuous_iou():
    assert score(reply(f"anything {BOX}"), BOX, "iou") == (1.0, True)
    r, right = score(reply("<|begin_of_box|>[100,200,300,300]<|end_of_box|>"), BOX, "iou")
    assert (r, right) == (0.5, True)
    r, right = score(reply("<|begin_of_box|>[150,200,300,400]<|end_of_box|>"), BOX, "iou")
    assert (r, right) == (0.75, True)
    assert score(reply("<|begin_of_box|>[0,0,100,100]<|end_of_box|>"), BOX, "iou") == (0.0, False)
    assert score(reply("no box"), BOX, "iou") == (0.0, False)


# ----------------------------------------------------------------------------- bad verifiers and references
@pytest.mark.parametrize("reference, verifier, message", [
    ("2", "fuzzy", "unknown \"verifier\" 'fuzzy'"),
    ("2", {"name": "number", "tol": 1}, "unknown \"verifier\""),
    ("2", {"name": "exact", "tolerance": 0.1}, "for the \"number\" verifier only"),
    ("2", {"name": "number", "tolerance": -1}, "tolerance"),
    ("two or three", "number", "needs a reference answer with one number"),
    ("red", "choice", "one option letter"),
    ("2", "iou", "exactly one <|begin_of_box|>"),
    (f"{BOX}{BOX}", None, "exactly one <|begin_of_box|>"),
    ("<answer>2</answer>", None, "without tags"),
    ("", None, "non-empty"),
    (2, None, "non-empty"),
])
def test_bad_verifiers_and_references_are_clear_errors(reference, verifier, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("|", r"\|").replace("[", r"\[")):
        reward(reply("2"), reference, verifier)
