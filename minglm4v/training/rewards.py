"""Rule-based rewards for reinforcement learning: a completion and the reference answer -> a number in [0, 1].

As GLM-4.1V-Thinking's RL stage (arXiv 2507.01006 §4.1) and its released reward code: the answer is taken
out by rule (never by a model), shared checks come first, then one function per answer type. No
counterpart in transformers (TRL takes reward functions from the user).

    reward(completion, reference, verifier=None) -> Score(reward, correct)

1. Format (shared). After dropping the end-of-turn tokens that follow `</answer>`, the completion must be
   `<think>…</think>`, optional whitespace, `<answer>…</answer>` and nothing else; no `<think>`/`<answer>`
   tag inside either part, at most one `<|begin_of_box|>…<|end_of_box|>` in the answer. Else reward 0:
   a bad format gets the minimum, and there is no bonus for a good one.
2. The answer type (the line's optional "verifier"; without it, whether the reference holds a box):

    exact      reference without a box: 1 if normalise(answer) == normalise(reference), else 0.
               normalise: lower case, whitespace collapsed, one trailing period dropped, the number words
               zero..ten as digits. So "Two." is "2", and "2 or 3" is not.
    grounding  reference with a box: 0.5 x (the words outside the box are right, as `exact`)
               + 0.5 x (the answer's single box has IoU >= 0.5 with the reference's box)
    number     the answer is one number within `tolerance` x |reference| of it (relative; default 0)
    choice     the answer is one option letter, "B", "(B)" or "B)", and it is the reference's
    iou        the IoU of the answer's single box with the reference's (a continuous reward)

A line chooses with `"verifier": "number"` or `{"name": "number", "tolerance": 0.05}`. `correct` is the
accuracy the logs count: reward 1, or for `iou` an IoU >= 0.5.
"""

import re
from dataclasses import dataclass

from ..processing import special_tokens as st
from ..processing.chat_template import parse_boxes

TAGS = (st.THINK, st.END_THINK, st.ANSWER, st.END_ANSWER)
NUMBER_WORDS = {word: str(i) for i, word in enumerate(
    "zero one two three four five six seven eight nine ten".split())}
IOU_THRESHOLD = 0.5  # the paper's grounding rule, and what eval-shapes counts as a right box

_REPLY = re.compile(re.escape(st.THINK) + "(.*?)" + re.escape(st.END_THINK) + r"\s*"
                    + re.escape(st.ANSWER) + "(.*?)" + re.escape(st.END_ANSWER), re.DOTALL)
_SPAN = re.compile(re.escape(st.BEGIN_OF_BOX) + "(.*?)" + re.escape(st.END_OF_BOX), re.DOTALL)
_NUM = r"\s*(-?\d+(?:\.\d+)?)\s*"
_ONE_BOX = re.compile(r"\s*\[" + ",".join([_NUM] * 4) + r"\]\s*")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_LETTER = re.compile(r"\(?([a-z])\)?")


@dataclass(frozen=True)
class Score:
    reward: float
    correct: bool


def reward(completion: str, reference: str, verifier=None) -> Score:
    """Score one decoded completion (special tokens kept) against the reference answer."""
    name, tolerance = resolve(reference, verifier)
    answer = answer_part(completion)
    if answer is None:
        return Score(0.0, False)
    if name == "exact":
        return _binary(normalise(answer) == normalise(reference))
    if name == "grounding":
        words = normalise(_without_box(answer)) == normalise(_without_box(reference))
        box = box_iou(single_box(answer), single_box(reference)) >= IOU_THRESHOLD
        return Score(0.5 * words + 0.5 * box, words and box)
    if name == "number":
        got, want = normalise(answer), float(normalise(reference))
        return _binary(bool(_NUMBER.fullmatch(got)) and abs(float(got) - want) <= tolerance * abs(want))
    if name == "choice":
        got = _LETTER.fullmatch(normalise(answer))
        return _binary(got is not None and got.group(1) == _LETTER.fullmatch(normalise(reference)).group(1))
    iou = box_iou(single_box(answer), single_box(reference))
    return Score(iou, iou >= IOU_THRESHOLD)


def answer_type(reference: str, verifier=None) -> str:
    """The verifier's name a line is scored with: what the logs count accuracy by."""
    return resolve(reference, verifier)[0]


def answer_part(completion: str) -> str | None:
    """The text inside <answer>…</answer> if the completion passes the format rule, else None."""
    text = completion
    while (end := next((t for t in st.END_OF_TURN if text.endswith(t)), None)) is not None:
        text = text[:-len(end)]
    match = _REPLY.fullmatch(text)
    if match is None or any(tag in part for part in match.groups() for tag in TAGS):
        return None
    answer = match.group(2)
    if answer.count(st.BEGIN_OF_BOX) > 1 or answer.count(st.END_OF_BOX) > 1:
        return None
    return answer


def normalise(text: str) -> str:
    """Lower case, whitespace collapsed, one trailing period dropped, number words zero..ten as digits."""
    words = " ".join(text.lower().split()).removesuffix(".").split()
    return " ".join(NUMBER_WORDS.get(word, word) for word in words)


def single_box(text: str) -> tuple[float, ...] | None:
    """The box of the one `<|begin_of_box|>[x1,y1,x2,y2]<|end_of_box|>` span in text; None when there is
    no such span, or when it holds anything else (two boxes, three numbers, words)."""
    spans = _SPAN.findall(text)
    if len(spans) != 1 or (match := _ONE_BOX.fullmatch(spans[0])) is None:
        return None
    return tuple(float(v) for v in match.groups())


def box_iou(a, b) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes; 0 when either is None."""
    if a is None or b is None:
        return 0.0
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / union if union > 0 else 0.0


def _without_box(text: str) -> str:
    return _SPAN.sub(" ", text)


def _binary(right: bool) -> Score:
    return Score(float(right), right)


# ----------------------------------------------------------------------------- checking a line's verifier
VERIFIERS = ("exact", "grounding", "number", "choice", "iou")


def resolve(reference: str, verifier=None) -> tuple[str, float]:
    """(name, tolerance) of a line's verifier, checked against its reference; ValueError says what is wrong."""
    if not isinstance(reference, str) or not reference.strip():
        raise ValueError(f'"answer" must be the non-empty reference answer text, got {reference!r}')
    spec = {"name": verifier} if isinstance(verifier, str) else verifier
    if spec is None:
        spec = {"name": "grounding" if parse_boxes(reference) else "exact"}
    if not isinstance(spec, dict) or spec.get("name") not in VERIFIERS or set(spec) - {"name", "tolerance"}:
        raise ValueError(f'unknown "verifier" {verifier!r}; use one of {list(VERIFIERS)}, or '
                         f'{{"name": "number", "tolerance": 0.05}}, or leave it out (exact match, or '
                         f"grounding when the answer holds a box)")
    name, tolerance = spec["name"], spec.get("tolerance", 0.0)
    if "tolerance" in spec and (name != "number" or isinstance(tolerance, bool)
                                or not isinstance(tolerance, (int, float)) or not tolerance >= 0):
        raise ValueError(f'"tolerance" is a number >= 0 for the "number" verifier only, got {spec!r}')
    one_box = (single_box(reference) is not None, "exactly one <|begin_of_box|>[x1,y1,x2,y2]<|end_of_box|>")
    needs = {"grounding": one_box, "iou": one_box,
             "number": (bool(_NUMBER.fullmatch(normalise(reference))), "one number, e.g. 12 or -0.5"),
             "choice": (bool(_LETTER.fullmatch(normalise(reference))), "one option letter, e.g. B or (B)")}
    if name in needs and not needs[name][0]:
        raise ValueError(f'the "{name}" verifier needs a reference answer with {needs[name][1]}, got {reference!r}')
    if any(tag in reference for tag in TAGS):
        raise ValueError(f"the reference answer is the text inside <answer>…</answer>, without tags; got {reference!r}")
    return name, float(tolerance)
