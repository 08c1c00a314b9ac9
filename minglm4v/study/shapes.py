"""The shapes world: seeded pictures of coloured shapes, questions about them, and a training set in the
JSON Lines format GLM-4.1V fine-tuning tools use. No transformers counterpart.

    random_scene(rng)  -> Scene: a square picture of 112..224 px, 1-3 non-overlapping filled shapes
                          from {circle, square, triangle} x {red, green, blue, yellow} on white
    random_scene(rng, varied=True) -> the same world with the variation real pictures have (VARIED):
                          darker and lighter shades, smaller and larger shapes, narrower and wider
                          margins, anti-aliased edges
    scene.image()      -> PIL RGB image
    describe(scene)    -> "2 shapes: red circle top left [80,120,310,350]; blue square bottom right
                          [600,550,900,850]" (the <think> part)
    questions(scene)   -> [Question(kind, text, answer), ...] every question the templates allow
    write_dataset(dir, pictures, seed)  -> dir/train.jsonl + dir/images/*.png
    write_rl_dataset(dir, pictures, seed) -> dir/rl.jsonl + dir/images/*.png: the user turn only and
                          the "answer" as it appears inside <answer> (the `rl` command's data)

The five question templates and their answers:

    count     "How many shapes are there?"        -> "2"
    colour    "What color is the {shape}?"         -> "red"      (only if exactly one such shape)
    shape     "What shape is {color}?"             -> "circle"   (only if exactly one shape of that colour)
    yes/no    "Is there a {color} {shape}?"        -> "yes" / "no"
    position  "Where is the {color} {shape}?"      -> "top left <|begin_of_box|>[80,120,310,350]<|end_of_box|>"
                                                      (only if exactly one such shape)

An assistant turn is `<think>{describe(scene)}</think><answer>{answer}</answer>`. The description
gives the count and lists every shape in reading order (top row first, then left to right) with its
position words and box, so each answer is a lookup in it, and it is the same for every question
about one picture: every training example teaches the whole scene, boxes included, whatever its
question. Boxes are in the model's 0..1000 coordinates (x / width * 1000), rounded to multiples of
10: 1 % of the picture is far below what an IoU of 0.5 needs, and 101 values per coordinate are
easier to learn for a small model than 1001.
Shape centres keep a small distance from the lines that split top/bottom and left/center/right, so
every position word has one right answer.
"""

import json
import math
import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

from ..base.checks import is_number, positive_int

COLORS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (230, 200, 30)}
SHAPES = ("circle", "square", "triangle")
KINDS = ("count", "color", "shape", "yes/no", "position")
SIZES = (112, 224)  # smallest and largest picture side in pixels
SHADE = 30  # each channel of a shape's colour varies by up to this much
SIDE = (0.18, 0.36)  # a shape's side (its box is square) as a fraction of the picture side
GAP = 0.03  # smallest gap between two shapes' boxes, and between a shape and the picture's edge
MARGIN = 0.04  # smallest distance of a centre from the lines x = 1/3, 2/3 and y = 1/2
# random_scene(varied=True): per shape, a brightness factor times the colour, then SHADE per channel;
# per picture, the smallest gap (to the edge and between shapes); shape sides; edges drawn SMOOTH times
# larger, then averaged down. The position-word MARGIN stays: every position word keeps one right answer.
VARIED = dict(brightness=(0.7, 1.15), gap=(0.01, 0.07), side=(0.12, 0.42))
SMOOTH = 4


@dataclass(frozen=True)
class Shape:
    kind: str  # circle, square or triangle
    color: str
    box: tuple[int, int, int, int]  # x1, y1, x2, y2 in pixels: the shape covers x1 <= x < x2, y1 <= y < y2
    fill: tuple[int, int, int]  # the RGB shade it is drawn in

    def where(self, size: int) -> str:
        """'top left', 'bottom center', ... from the box centre."""
        cx, cy = (self.box[0] + self.box[2]) / 2 / size, (self.box[1] + self.box[3]) / 2 / size
        return f"{'top' if cy < 0.5 else 'bottom'} {'left' if cx < 1 / 3 else 'center' if cx < 2 / 3 else 'right'}"

    def box_1000(self, size: int) -> tuple[int, int, int, int]:
        """The box in 0..1000 coordinates, rounded to multiples of 10."""
        return tuple(round(v / size * 100) * 10 for v in self.box)


@dataclass(frozen=True)
class Scene:
    size: int  # the picture is size x size pixels
    shapes: tuple[Shape, ...]  # in reading order
    smooth: bool = False  # anti-aliased edges: drawn SMOOTH times larger, then each SMOOTH x SMOOTH block averaged

    def image(self) -> Image.Image:
        scale = SMOOTH if self.smooth else 1
        image = Image.new("RGB", (self.size * scale, self.size * scale), (255, 255, 255))
        pen = ImageDraw.Draw(image)
        for s in self.shapes:
            x1, y1, x2, y2 = (v * scale for v in s.box)
            corners = [x1, y1, x2 - 1, y2 - 1]  # PIL includes the last pixel row and column
            if s.kind == "circle":
                pen.ellipse(corners, fill=s.fill)
            elif s.kind == "square":
                pen.rectangle(corners, fill=s.fill)
            else:  # pointing up, base along the bottom of the box
                pen.polygon([(x1, y2 - 1), (x2 - 1, y2 - 1), ((x1 + x2 - 1) / 2, y1)], fill=s.fill)
        return image.reduce(scale) if scale > 1 else image

    def find(self, kind: str | None = None, color: str | None = None) -> list[Shape]:
        return [s for s in self.shapes if kind in (None, s.kind) and color in (None, s.color)]


def _fits(box, boxes, size, gap=GAP) -> bool:
    x1, y1, x2, y2 = box
    cx, cy = (x1 + x2) / 2 / size, (y1 + y2) / 2 / size
    if min(abs(cx - 1 / 3), abs(cx - 2 / 3), abs(cy - 0.5)) < MARGIN:
        return False
    gap = gap * size
    return all(x2 + gap <= a1 or a2 + gap <= x1 or y2 + gap <= b1 or b2 + gap <= y1 for a1, b1, a2, b2 in boxes)


def random_scene(rng: random.Random, varied: bool = False) -> Scene:
    """A picture of 1-3 shapes, drawn from `rng` alone (the same seed gives the same scene).
    `varied`: with the variation of VARIED and anti-aliased edges (the plain world draws the same
    numbers from `rng` as before this option existed, so its pictures are unchanged)."""
    size = rng.randint(*SIZES)
    count = rng.randint(1, 3)
    gap, sides = (rng.uniform(*VARIED["gap"]), VARIED["side"]) if varied else (GAP, SIDE)
    while True:  # a few crowded draws fail to place every shape; start over
        boxes, shapes = [], []
        for _ in range(count):
            side = round(rng.uniform(*sides) * size)
            for _ in range(100):
                x1 = rng.randint(round(gap * size), size - side - round(gap * size))
                y1 = rng.randint(round(gap * size), size - side - round(gap * size))
                box = (x1, y1, x1 + side, y1 + side)
                if _fits(box, boxes, size, gap):
                    break
            else:
                break
            boxes.append(box)
            color = rng.choice(list(COLORS))
            bright = rng.uniform(*VARIED["brightness"]) if varied else 1
            fill = tuple(min(255, max(0, round(c * bright) + rng.randint(-SHADE, SHADE))) for c in COLORS[color])
            shapes.append(Shape(rng.choice(SHAPES), color, box, fill))
        if len(shapes) == count:
            order = sorted(shapes, key=lambda s: (s.where(size).split()[0] == "bottom", s.box[0]))
            return Scene(size, tuple(order), smooth=varied)


def describe(scene: Scene) -> str:
    """The thinking: the count, then every shape in reading order,
    "2 shapes: red circle top left [80,120,310,350]; blue square bottom right [600,550,900,850]"."""
    # why the count first: every colour and shape word then follows a space, as in the questions, so
    # a word has one spelling (one token: " red") wherever the model has to match it
    listed = "; ".join(f"{s.color} {s.kind} {s.where(scene.size)} [{','.join(map(str, s.box_1000(scene.size)))}]"
                       for s in scene.shapes)
    return f"{len(scene.shapes)} shape{'s' if len(scene.shapes) > 1 else ''}: {listed}"


def box_text(box) -> str:
    return "<|begin_of_box|>[{},{},{},{}]<|end_of_box|>".format(*box)


@dataclass(frozen=True)
class Question:
    kind: str  # one of KINDS
    text: str
    answer: str


def questions(scene: Scene) -> list[Question]:
    """Every question the five templates allow about `scene`, with its answer."""
    out = [Question("count", "How many shapes are there?", str(len(scene.shapes)))]
    for kind in SHAPES:
        if len(found := scene.find(kind=kind)) == 1:
            out.append(Question("color", f"What color is the {kind}?", found[0].color))
    for color in COLORS:
        if len(found := scene.find(color=color)) == 1:
            out.append(Question("shape", f"What shape is {color}?", found[0].kind))
    for color in COLORS:
        for kind in SHAPES:
            found = scene.find(kind, color)
            out.append(Question("yes/no", f"Is there a {color} {kind}?", "yes" if found else "no"))
            if len(found) == 1:
                answer = f"{found[0].where(scene.size)} {box_text(found[0].box_1000(scene.size))}"
                out.append(Question("position", f"Where is the {color} {kind}?", answer))
    return out


def pick_question(scene: Scene, rng: random.Random, kind: str) -> Question | None:
    """A random question of one kind (yes/no: "yes" and "no" equally often), None if the scene has none."""
    pool = [q for q in questions(scene) if q.kind == kind]
    if kind == "yes/no":
        wanted = rng.choice(("yes", "no"))
        pool = [q for q in pool if q.answer == wanted]
    return rng.choice(pool) if pool else None


def target(scene: Scene, question: Question) -> str:
    """The assistant turn the model is trained to write."""
    return f"<think>{describe(scene)}</think><answer>{question.answer}</answer>"


def _draw_kind(rng: random.Random, weights: dict[str, float] | None) -> str:
    return rng.choice(KINDS) if weights is None else rng.choices(KINDS, [weights[k] for k in KINDS])[0]


def _check_kind_weights(weights: dict[str, float] | None) -> None:
    if weights is None:
        return
    if not isinstance(weights, dict) or set(weights) != set(KINDS):
        raise ValueError(f"kind_weights must give a weight to each of {list(KINDS)} (0 leaves a kind out), "
                         f"got {weights!r}")
    for kind, weight in weights.items():
        if not is_number(weight) or not (math.isfinite(weight) and weight >= 0):
            raise ValueError(f"kind_weights[{kind!r}] must be a finite number >= 0, got {weight!r}")
    if not sum(weights.values()) > 0:
        raise ValueError("kind_weights are all 0: give at least one question kind a positive weight")


def _pictures_and_questions(directory, pictures: int, seed: int, per_picture: int,
                            kind_weights: dict[str, float] | None, varied: bool):
    """Check the arguments, make directory/images; then, lazily, save `pictures` PNGs there and yield
    (image name, scene, question) `per_picture` times for each."""
    positive_int(pictures, "pictures"), positive_int(per_picture, "per_picture")
    _check_kind_weights(kind_weights)
    (directory / "images").mkdir(parents=True, exist_ok=True)

    def lines():
        rng = random.Random(seed)
        for i in range(pictures):
            scene = random_scene(rng, varied)
            name = f"images/{i:06d}.png"
            scene.image().save(directory / name)
            for _ in range(per_picture):
                while (question := pick_question(scene, rng, _draw_kind(rng, kind_weights))) is None:
                    pass
                yield name, scene, question
    return lines()


def write_dataset(directory, pictures: int, seed: int, per_picture: int = 2,
                  kind_weights: dict[str, float] | None = None, varied: bool = False) -> Path:
    """Write `pictures` PNGs to directory/images and `per_picture` questions about each (a kind drawn
    uniformly or by `kind_weights`, then a random question of that kind) to directory/train.jsonl;
    returns the JSONL path. `varied`: pictures from `random_scene(rng, varied=True)`."""
    path = Path(directory) / "train.jsonl"
    lines = _pictures_and_questions(Path(directory), pictures, seed, per_picture, kind_weights, varied)
    with path.open("w") as out:
        for name, scene, question in lines:
            messages = [{"role": "user", "content": "<image>" + question.text},
                        {"role": "assistant", "content": target(scene, question)}]
            out.write(json.dumps({"messages": messages, "images": [name]}) + "\n")
    return path


def write_rl_dataset(directory, pictures: int, seed: int, per_picture: int = 2,
                     kind_weights: dict[str, float] | None = None, varied: bool = True) -> Path:
    """Like write_dataset, for reinforcement learning (`python -m minglm4v rl`): each line holds only the
    user turn and the reference `answer` as it appears inside <answer> (boxes included), to directory/rl.jsonl.
    Varied pictures by default: RL on pictures the model already solves teaches it nothing."""
    path = Path(directory) / "rl.jsonl"
    lines = _pictures_and_questions(Path(directory), pictures, seed, per_picture, kind_weights, varied)
    with path.open("w") as out:
        for name, _, question in lines:
            messages = [{"role": "user", "content": "<image>" + question.text}]
            out.write(json.dumps({"messages": messages, "images": [name], "answer": question.answer}) + "\n")
    return path
