"""A second renderer of the shapes world, written independently of `minglm4v.study.shapes`' drawing: it
places and paints its shapes with its own code, palette, sizes and margins, so that accuracy on its
pictures measures what a model learnt about circles, squares and triangles rather than about one
drawing routine. Used by `python -m minglm4v eval-shapes --renderer other`. No transformers counterpart.

    random_scene(rng) -> OtherScene: a square picture of 120..240 px on a near-white background, 1-3
                         shapes (the world's categories: shapes.COLORS x shapes.SHAPES)

What differs from `shapes.random_scene` (the semantics do not: the questions, their answers, the boxes
in 0..1000 and the position words come from the same `Shape` and `questions`):
- colours: another base RGB per colour word (PALETTE), each shape a random mix towards black or
  white, plus its own noise per channel;
- sizes and margins: pictures of 120-240 px, shape sides 14-40 % of the picture, edge margins 2-9 %,
  gaps between shapes of at least 2 % (the training world: 18-36 %, 3 % and 3 %);
- drawing: every pixel's coverage of the shape from 3x3 sample points inside it (numpy, no PIL
  drawing), blended with the background — anti-aliased edges unlike PIL's hard ones;
- background: white with a faint grey tint per picture (245-255).
"""

import random
from dataclasses import dataclass

import numpy as np
from PIL import Image

from .shapes import COLORS, MARGIN, SHAPES, Scene, Shape

PALETTE = {"red": (205, 25, 45), "green": (30, 150, 75), "blue": (25, 95, 200), "yellow": (245, 215, 50)}
SIDES = (0.14, 0.40)  # shape side as a fraction of the picture side
EDGE = (0.02, 0.09)  # distance of a shape from the picture's edge, as a fraction of its side
SPACING = 0.02  # smallest gap between two shapes' boxes
_SAMPLES = (np.arange(3) + 0.5) / 3  # sample points inside a pixel, per axis


@dataclass(frozen=True)
class OtherScene(Scene):
    background: int = 255  # grey level of the background

    def image(self) -> Image.Image:
        n = self.size
        canvas = np.full((n, n, 3), float(self.background))
        # pixel (row y, column x) is the square [x, x+1) x [y, y+1); 3 x 3 samples per pixel
        grid = (np.arange(n)[:, None] + _SAMPLES[None]).reshape(-1)  # (3n,) coordinates
        ys, xs = np.meshgrid(grid, grid, indexing="ij")  # (3n, 3n)
        for s in self.shapes:
            inside = _inside(s.kind, s.box, xs, ys)
            coverage = inside.reshape(n, 3, n, 3).mean(axis=(1, 3))[..., None]  # (n, n, 1) in 0..1
            canvas = canvas * (1 - coverage) + np.array(s.fill, dtype=float) * coverage
        return Image.fromarray(np.round(canvas).astype(np.uint8), "RGB")


def _inside(kind: str, box, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Which sample points (xs, ys) fall inside the shape of `kind` filling `box` = (x1, y1, x2, y2)."""
    x1, y1, x2, y2 = box
    if kind == "square":
        return (xs >= x1) & (xs < x2) & (ys >= y1) & (ys < y2)
    cx, cy, half = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2
    if kind == "circle":
        return (xs - cx) ** 2 + (ys - cy) ** 2 < half ** 2
    # triangle, apex (cx, y1), base from (x1, y2) to (x2, y2): inside when below both slanted edges
    depth = (ys - y1) / (y2 - y1)  # 0 at the apex, 1 at the base
    return (ys < y2) & (depth >= 0) & (np.abs(xs - cx) <= half * depth)


def _shade(color: str, rng: random.Random) -> tuple[int, int, int]:
    base = np.array(PALETTE[color], dtype=float)
    towards = rng.choice((0.0, 255.0))  # darker or lighter
    mixed = base + (towards - base) * rng.uniform(0, 0.3) + np.array([rng.gauss(0, 8) for _ in range(3)])
    return tuple(int(v) for v in np.clip(np.round(mixed), 0, 255))


def _clear(box, boxes, size) -> bool:
    """Far enough from the lines that split the position words, and from every other shape."""
    cx, cy = (box[0] + box[2]) / 2 / size, (box[1] + box[3]) / 2 / size
    if min(abs(cx - 1 / 3), abs(cx - 2 / 3), abs(cy - 0.5)) < MARGIN:
        return False
    gap = SPACING * size
    return all(box[2] + gap <= b[0] or b[2] + gap <= box[0] or box[3] + gap <= b[1] or b[3] + gap <= box[1]
               for b in boxes)


def random_scene(rng: random.Random) -> OtherScene:
    """1-3 shapes on a 120..240 px picture, drawn from `rng` alone."""
    size, count = rng.randrange(120, 241, 8), rng.choice((1, 2, 3))
    shapes: list[Shape] = []
    while len(shapes) < count:
        shapes = []
        for _ in range(200):  # tries to place the next shape
            side = int(rng.uniform(*SIDES) * size)
            edge = int(rng.uniform(*EDGE) * size)
            x1, y1 = rng.randint(edge, size - side - edge), rng.randint(edge, size - side - edge)
            box = (x1, y1, x1 + side, y1 + side)
            if _clear(box, [s.box for s in shapes], size):
                color = rng.choice(sorted(COLORS))
                shapes.append(Shape(rng.choice(SHAPES), color, box, _shade(color, rng)))
                if len(shapes) == count:
                    break
    shapes.sort(key=lambda s: (s.where(size).startswith("bottom"), s.box[0]))
    return OtherScene(size, tuple(shapes), background=rng.randint(245, 255))
