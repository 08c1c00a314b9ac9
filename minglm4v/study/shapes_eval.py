"""How well a model answers in the shapes world (minglm4v.study.shapes): fresh pictures, every question
kind, greedy answers, one table. Behind `python -m minglm4v eval-shapes [DIR]`. No transformers
counterpart.

    evaluate(model, processor, pictures=500, seed=EVAL_SEED, renderer="shapes") -> [Graded, ...]
        each picture gets one question of every kind it allows (count and yes/no always; color,
        shape and position when the scene has a unique subject), answered by greedy generation;
        the pictures come from one of RENDERERS: "shapes" (the world the micro model trained on),
        "varied" (the same with the variation of shapes.VARIED) or "other" (an independent
        renderer, minglm4v.study.shapes_other: what transfers to pictures drawn by other code)
    summarize(graded) -> {"count": (right, asked), ..., "box IoU >= 0.5": ..., "well-formed": ...}
    write_rl_questions(dir, pictures, seed, renderer, kinds) -> dir/rl.jsonl: such questions as RL prompts
    format_table(summary) -> the printed table

A reply is well-formed when it is exactly `<think>…</think><answer>…</answer>` and the answer has the
form its question asks for (a number, a colour, a shape, yes/no, or position words and one box with
x1 < x2 and y1 < y2).
"""

import json
import random
import re
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch

from ..base.checks import positive_int
from ..processing.chat_template import parse_boxes, parse_thinking
from ..training.rewards import box_iou
from . import shapes_other
from .shapes import COLORS, KINDS, SHAPES, Question, pick_question, random_scene

EVAL_SEED = 1_000_003  # training data comes from small seeds (scripts/train_micro_model.py uses 0)
_REPLY = re.compile(r"<think>[^<]*</think><answer>(.*)</answer>", re.DOTALL)
_POSITION = re.compile(r"(top|bottom) (left|center|right) <\|begin_of_box\|>\[\d+,\d+,\d+,\d+\]<\|end_of_box\|>")
RENDERERS = {"shapes": random_scene, "varied": partial(random_scene, varied=True), "other": shapes_other.random_scene}
_FORMS = {"count": re.compile(r"[1-3]"), "color": re.compile("|".join(COLORS)),
          "shape": re.compile("|".join(SHAPES)), "yes/no": re.compile("yes|no"), "position": _POSITION}


@dataclass(frozen=True)
class Graded:
    question: Question
    reply: str  # decoded with skip_special_tokens=True
    well_formed: bool
    correct: bool  # the answer equals the expected one (position: the words only, the box is `iou`)
    iou: float | None  # position questions: IoU of the first box with the true box (0 if none, or if
    #                    its corners are out of order: x2 <= x1 or y2 <= y1)


def grade(question: Question, reply: str) -> Graded:
    """Compare one decoded reply with the question's expected answer."""
    match = _REPLY.fullmatch(reply.strip())
    answer = parse_thinking(reply)[1]
    well_formed = bool(match) and bool(_FORMS[question.kind].fullmatch(match.group(1)))
    if question.kind != "position":
        return Graded(question, reply, well_formed, answer == question.answer, None)
    boxes, truth = parse_boxes(answer), parse_boxes(question.answer)[0]
    # a "box" whose corners come in the wrong order ([350,150,560,70]: y2 < y1) encloses nothing
    box = boxes[0] if boxes and boxes[0][0] < boxes[0][2] and boxes[0][1] < boxes[0][3] else None
    return Graded(question, reply, well_formed and box is not None,
                  answer.split()[:2] == question.answer.split()[:2], box_iou(box, truth))


def eval_questions(pictures: int, seed: int, renderer: str = "shapes") -> list[tuple]:
    """(scene, question) pairs: for each of `pictures` fresh scenes drawn by RENDERERS[renderer], one
    question of each kind it allows."""
    positive_int(pictures, "pictures")
    if renderer not in RENDERERS:
        raise ValueError(f"unknown renderer {renderer!r}: choose one of {', '.join(RENDERERS)}")
    rng = random.Random(seed)
    pairs = []
    for _ in range(pictures):
        scene = RENDERERS[renderer](rng)
        pairs += [(scene, q) for kind in KINDS if (q := pick_question(scene, rng, kind)) is not None]
    return pairs


def write_rl_questions(directory, pictures: int, seed: int, renderer: str = "other", kinds=KINDS) -> Path:
    """The questions of `eval_questions(pictures, seed, renderer)` whose kind is in `kinds`, as an RL prompt
    set (`python -m minglm4v rl`): directory/rl.jsonl (the user turn and the reference "answer") and
    directory/images/*.png. RL prompts from any renderer, e.g. the pictures the model gets wrong most."""
    unknown = set(kinds) - set(KINDS)
    if unknown or not kinds:
        raise ValueError(f"kinds must be some of {list(KINDS)}, got {list(kinds)}")
    directory = Path(directory)
    (directory / "images").mkdir(parents=True, exist_ok=True)
    scenes, lines = {}, []
    for scene, question in eval_questions(pictures, seed, renderer):
        if question.kind in kinds:
            if id(scene) not in scenes:
                scenes[id(scene)] = name = f"images/{len(scenes):06d}.png"
                scene.image().save(directory / name)
            lines.append({"messages": [{"role": "user", "content": "<image>" + question.text}],
                          "images": [scenes[id(scene)]], "answer": question.answer})
    path = directory / "rl.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def answer(model, processor, images, texts, max_new_tokens: int = 96) -> list[str]:
    """Greedy replies to a batch of one-picture questions, decoded without special tokens.
    96 tokens hold the longest right reply (three shapes and a box: 95 tokens with `<|user|>`)."""
    messages = [[{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": text}]}]
                for image, text in zip(images, texts)]
    inputs = processor(messages=messages)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=max_new_tokens)
    return processor.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)


def evaluate(model, processor, pictures: int = 500, seed: int = EVAL_SEED, batch_size: int = 64,
             progress=None, renderer: str = "shapes") -> list[Graded]:
    """Ask every question of `eval_questions(pictures, seed, renderer)`; `progress(done, total)` after each batch."""
    pairs = eval_questions(pictures, seed, renderer)
    graded = []
    for start in range(0, len(pairs), batch_size):
        batch = pairs[start:start + batch_size]
        replies = answer(model, processor, [s.image() for s, _ in batch], [q.text for _, q in batch])
        graded += [grade(q, reply) for (_, q), reply in zip(batch, replies)]
        if progress is not None:
            progress(len(graded), len(pairs))
    return graded


def summarize(graded: list[Graded]) -> dict[str, tuple[int, int]]:
    """(right, asked) per question kind, for boxes with IoU >= 0.5, and for well-formed replies."""
    summary = {kind: (sum(g.correct for g in graded if g.question.kind == kind),
                      sum(g.question.kind == kind for g in graded)) for kind in KINDS}
    ious = [g.iou for g in graded if g.iou is not None]
    summary["box IoU >= 0.5"] = (sum(iou >= 0.5 for iou in ious), len(ious))
    summary["well-formed"] = (sum(g.well_formed for g in graded), len(graded))
    return summary


def format_table(summary: dict[str, tuple[int, int]]) -> str:
    rows = [f"{'question':<16}{'right':>7}{'asked':>7}{'accuracy':>10}"]
    for name, (right, asked) in summary.items():
        label = "position words" if name == "position" else name
        rows.append(f"{label:<16}{right:>7}{asked:>7}{right / max(asked, 1):>10.1%}")
    return "\n".join(rows)


def main(directory, pictures: int, seed: int, batch_size: int = 64, renderer: str = "shapes") -> int:
    """Load a model directory, evaluate it, print the table (progress goes to stderr)."""
    import sys

    from ..model.glm4v import Glm4vForConditionalGeneration
    from ..processing.processor import Glm4vProcessor
    model = Glm4vForConditionalGeneration.from_pretrained(directory)
    processor = Glm4vProcessor.from_pretrained(directory)
    graded = evaluate(model, processor, pictures, seed, batch_size, renderer=renderer,
                      progress=lambda done, total: print(f"\r{done}/{total} questions", end="", file=sys.stderr))
    print(file=sys.stderr)
    drawn = "" if renderer == "shapes" else f", drawn by the {renderer!r} renderer"
    print(f"{directory}: {pictures} fresh pictures (seed {seed}){drawn}, greedy answers")
    print(format_table(summarize(graded)))
    return 0
