"""Helpers for the training tests: a complete model directory around the tiny fixture checkpoint and a
small JSON Lines data set of 112x112 pictures (16 image tokens each) of one coloured disc."""

import json
import shutil
from pathlib import Path

from helpers import REPO, TINY
from PIL import Image, ImageDraw

from minglm4v import cli
from minglm4v.processing.image import Glm4vImageProcessor
from minglm4v.processing.video import Glm4vVideoProcessor
from minglm4v.training import train

COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220)}


def make_model_dir(directory: Path) -> Path:
    """TINY's config and weights + the fixture tokenizer + the default image and video processor configs."""
    directory.mkdir(parents=True, exist_ok=True)
    for path in (TINY / "config.json", TINY / "model.safetensors", *(REPO / "data" / "tokenizer").iterdir()):
        shutil.copy(path, directory / path.name)
    Glm4vImageProcessor().save_pretrained(directory)
    Glm4vVideoProcessor().save_pretrained(directory)
    return directory


def picture(colour: str, shift: int) -> Image.Image:
    image = Image.new("RGB", (112, 112), "white")
    ImageDraw.Draw(image).ellipse([20 + shift, 25, 70 + shift, 75], fill=COLOURS[colour])
    return image


def write_dataset(directory: Path, count: int, name: str = "data.jsonl") -> Path:
    """`count` one-picture conversations, one answer length per colour (so batches need padding)."""
    directory.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(count):
        colour = list(COLOURS)[i % len(COLOURS)]
        picture(colour, 3 * i % 30).save(directory / f"pic{i}.png")
        lines.append({"messages": [{"role": "user", "content": "<image>What color is the disc?"},
                                   {"role": "assistant", "content": f"<think>A {colour} disc.</think>"
                                                                    f"<answer>{colour}</answer>"}],
                      "images": [f"pic{i}.png"]})
    path = directory / name
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def run_train(*argv: str) -> int:
    """`python -m minglm4v train ...` in this process (errors propagate, unlike cli.main)."""
    return train.run(cli.parser().parse_args(["train", *argv]))
