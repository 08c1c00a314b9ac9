"""Train the bundled micro model (data/micro-model): a small GLM-4.1V that answers the five questions
of the shapes world (minglm4v.study.shapes) in the Thinking format, trained exactly the way a user fine-tunes:

    .venv/bin/python scripts/train_micro_model.py [WORK_DIR]      # default WORK_DIR: build/micro-model

1. a randomly initialised model with the real architecture at tiny widths (`micro_config`), a
   tokenizer from the fixture recipe with shapes-world text in its corpus (`save_tokenizer`), and a
   processor that resizes every picture to 224x224 (16x16 patches, 64 image tokens: enough for the
   position and box answers) is saved to WORK_DIR/base;
2. for each of STAGES, `minglm4v.study.shapes.write_dataset` writes WORK_DIR/dataN/train.jsonl (+ PNGs) from
   its seed, and `python -m minglm4v train --model <previous> --data ... --freeze none ...` trains on it,
   into WORK_DIR/stageN; stage 3 starts from stage 2 with a token for each colour-shape pair added
   (`add_pair_tokens`, WORK_DIR/stage3-start);
3. RL: a fifth SFT stage on pictures with more variation (VARIED_STAGE: other shades, sizes, margins,
   anti-aliased edges) into WORK_DIR/stage5, then `python -m minglm4v rl` (GRPO, RL_STAGE) on prompts about
   other varied pictures into WORK_DIR/rl;
4. the shipped model is the average of the two ends, (1 - AVERAGE) * stage 4 + AVERAGE * RL, parameter by
   parameter (`average`, WORK_DIR/final): stage 4 answers a count question of the training renderer's
   pictures that the varied stage and RL lost, they answer the pictures of other renderers better, and the
   average keeps both (README, "What RL did to the micro model": how the weight was chosen);
5. the result is copied to data/micro-model, the demo picture to data/images/shapes.png, and
   `python -m minglm4v eval-shapes` scores it on 500 fresh pictures of each renderer.

The recipe, and what it took: see STAGES and the README's micro-model section.
"""

import argparse
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch
from tokenizers import AddedToken, Tokenizer

from minglm4v import Glm4vConfig, Glm4vForConditionalGeneration
from minglm4v.processing.image import Glm4vImageProcessor
from minglm4v.processing.tokenizer import Glm4vTokenizer
from minglm4v.processing.video import Glm4vVideoProcessor
from minglm4v.study.shapes import (
    COLORS,
    SHAPES,
    Scene,
    Shape,
    describe,
    questions,
    random_scene,
    write_dataset,
    write_rl_dataset,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling script, also when a test loads this one by path
from make_tokenizer import write as write_tokenizer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "data" / "micro-model"
# Runs of `minglm4v train`, each on fresh pictures seen once (AdamW, warmup then cosine decay to 0), each
# starting from the previous one's output. Question kinds (`kinds`, relative weights) lean towards the ones
# that need the question read over count. Stage 3 first gives every colour-shape pair a token of its own
# (`add_pair_tokens`); stages 3 and 4 lean on the kinds stage 2 left weakest (colour 75 %, yes/no 84 %).
STAGES = (dict(seed=0, pictures=48_000, per_picture=2, max_steps=6000, batch_size=16, lr=2e-3, warmup_steps=200,
               weight_decay=0.01, kinds={"count": 1, "color": 1.5, "shape": 1.5, "yes/no": 2, "position": 2}),
          dict(seed=1, pictures=32_000, per_picture=2, max_steps=4000, batch_size=16, lr=1e-3, warmup_steps=100,
               weight_decay=0.01, kinds={"count": 0.5, "color": 3, "shape": 1.5, "yes/no": 2, "position": 2}),
          dict(seed=2, pictures=24_000, per_picture=2, max_steps=3000, batch_size=16, lr=1e-3, warmup_steps=100,
               weight_decay=0.01, kinds={"count": 0.25, "color": 2, "shape": 1, "yes/no": 3, "position": 3},
               add_pair_tokens=True),
          dict(seed=3, pictures=16_000, per_picture=2, max_steps=2000, batch_size=16, lr=5e-4, warmup_steps=50,
               weight_decay=0.01, kinds={"count": 0.25, "color": 1, "shape": 0.5, "yes/no": 4, "position": 2}))
# stage 4's recipe continued on varied pictures, leaning on the kinds that transfer worst (yes/no, position)
VARIED_STAGE = dict(seed=4, pictures=16_000, per_picture=2, max_steps=2000, batch_size=16, lr=3e-4, warmup_steps=50,
                    weight_decay=0.01, kinds={"count": 0.5, "color": 1.5, "shape": 1, "yes/no": 3, "position": 3},
                    varied=True)
# GRPO from stage 5: 100 steps of 16 prompts x 8 replies, prompts weighted towards count (the one kind stage 5
# answers worse than stage 4 on the training renderer's pictures), about 2,000 varied pictures
RL_STAGE = dict(pictures=2000, per_picture=2, seed=21, max_steps=100, batch_size=16, group_size=8, lr=2e-5,
                max_new_tokens=96, save_every=50,
                kinds={"count": 3, "color": 1, "shape": 1, "yes/no": 1, "position": 1})
AVERAGE = 0.3  # the RL model's share of the shipped weights
PAIRS = tuple(f" {color} {kind}" for color in COLORS for kind in SHAPES)  # stage 3's new tokens
SIDE = 224  # the processor brings every picture (112..224 px) to 224x224: 2 * 220^2 <= pixels <= 2 * 224^2
MODEL_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
               "special_tokens_map.json", "preprocessor_config.json", "video_preprocessor_config.json")


def micro_config(vocab_size: int = 1024) -> Glm4vConfig:
    tiny = Glm4vConfig.tiny()  # reuse the fixture tokenizer's special ids
    return Glm4vConfig(
        vision_config=dict(depth=2, hidden_size=64, num_heads=2, intermediate_size=256, image_size=SIDE),
        text_config=dict(vocab_size=vocab_size, hidden_size=128, intermediate_size=256, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         pad_token_id=tiny.text_config.pad_token_id, eos_token_id=tiny.text_config.eos_token_id),
        **{k: getattr(tiny, k) for k in ("image_token_id", "video_token_id", "image_start_token_id",
                                         "image_end_token_id", "video_start_token_id", "video_end_token_id")},
        dtype="float32",
    )


def shapes_corpus(scenes: int = 3000, seed: int = 7) -> list[str]:
    """Shapes-world text for the tokenizer: descriptions, questions and answers of `scenes` pictures."""
    rng, lines = random.Random(seed), []
    for _ in range(scenes):
        scene = random_scene(rng)
        lines += [describe(scene), *(text for q in questions(scene) for text in (q.text, q.answer))]
    return lines


def save_tokenizer(directory: Path) -> None:
    """The fixture tokenizer's recipe (same special ids) with the shapes world in its corpus.
    why: the 1000-token fixture BPE splits "120" into "1" "20" and "bottom" into five pieces, so one number
    or word had several spellings to learn; here every box number and world word is one token, as common
    numbers and words are in the real 151k-token GLM-4 tokenizer."""
    write_tokenizer(directory, shapes_corpus())
    tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
    words = [f"{space}{w}" for w in (*COLORS, *SHAPES) for space in ("", " ")]
    words += [" top", " bottom", " left", " center", " right", "yes", "no", *(str(v) for v in range(0, 980, 10))]
    split = [w for w in words if len(tokenizer.encode(w).ids) != 1]
    if split:
        raise RuntimeError(f"the micro tokenizer splits {split}; give the corpus more shapes-world lines")


def save_base(directory: Path) -> None:
    """The untrained starting point: random weights (seed 0), tokenizer, image and video processors."""
    torch.manual_seed(0)
    model = Glm4vForConditionalGeneration(micro_config())
    print(f"parameters: {sum(p.numel() for p in model.parameters()):,}")
    model.save_pretrained(directory)
    save_tokenizer(directory)
    Glm4vImageProcessor(min_pixels=2 * 220 * 220, max_pixels=2 * SIDE * SIDE).save_pretrained(directory)
    Glm4vVideoProcessor().save_pretrained(directory)  # so `chat --video` works on it too


def add_pair_tokens(trained: Path, directory: Path) -> Path:
    """`trained` plus one token for each colour-shape pair (" red circle", ...), saved to `directory`: the
    tokenizer gains 12 added tokens (ids 1022-1033), the vocabulary grows to the next multiple of 8 (1040
    rows), and a pair's rows of embed_tokens and lm_head start as the mean of its two words' rows.
    why: stage 2's thinking was right 93-95 % of the time, yet given a right thinking the answer followed
    it for "What shape is red?" (find " red", copy the word after it: 123/124) but not for "What color is
    the circle?" (copy the word before: 92/121) or the two-word matches of yes/no and position: those it
    read off the picture. With pair tokens each answer is a one-token lookup in the thinking."""
    tokenizer = Tokenizer.from_file(str(trained / "tokenizer.json"))
    tokenizer.add_tokens([AddedToken(pair, normalized=False) for pair in PAIRS])
    old = Glm4vForConditionalGeneration.from_pretrained(trained)
    torch.manual_seed(0)
    new = Glm4vForConditionalGeneration(micro_config(vocab_size=-(-tokenizer.get_vocab_size() // 8) * 8))
    weights = old.state_dict()
    for key in ("model.language_model.embed_tokens.weight", "lm_head.weight"):
        rows = new.state_dict()[key].clone()  # random rows for the ids no token uses
        rows[:len(weights[key])] = weights[key]
        for pair in PAIRS:
            color, kind = (tokenizer.encode(" " + word).ids[0] for word in pair.split())  # " red", " circle"
            rows[tokenizer.token_to_id(pair)] = (weights[key][color] + weights[key][kind]) / 2
        weights[key] = rows
    new.load_state_dict(weights)
    new.save_pretrained(directory)
    Glm4vTokenizer(tokenizer).save_pretrained(directory)
    for name in ("preprocessor_config.json", "video_preprocessor_config.json"):
        shutil.copy(trained / name, directory / name)
    return directory


def demo_scene() -> Scene:
    """data/images/shapes.png, the picture of ./run.sh: three shapes, one question of each kind possible."""
    shapes = (Shape("triangle", "blue", (30, 36, 90, 96), COLORS["blue"]),
              Shape("circle", "red", (150, 24, 200, 74), COLORS["red"]),
              Shape("square", "yellow", (96, 140, 156, 200), COLORS["yellow"]))
    return Scene(SIDE, shapes)


def finished(model: Path) -> bool:
    """Whether a model's weights are already there (a part of a recipe that an earlier run finished)."""
    return (model / "model.safetensors").is_file()


def kept(out: Path) -> bool:
    """finished(out), said on stdout: a recipe keeps its finished parts, so an interrupted run goes on where it
    stopped."""
    if finished(out):
        print(f"{out} exists: kept", flush=True)
    return finished(out)


def train_stage(work: Path, number: int, recipe: dict | None = None, start: Path | None = None,
                name: str = "stage") -> Path:
    """Stage `number` (1, 2, ...) of STAGES (or `recipe`): write its data, train from `start` (default: the
    previous stage's output) into WORK_DIR/<name><number>. A stage whose output is already there is kept, so an
    interrupted run goes on where it stopped."""
    recipe = recipe or STAGES[number - 1]
    start = start or work / ("base" if number == 1 else f"{name}{number - 1}")
    out = work / f"{name}{number}"
    if kept(out):
        return out
    if recipe.get("add_pair_tokens"):
        start = add_pair_tokens(start, work / f"{name}{number}-start")
    data = write_dataset(work / f"data{number}", recipe["pictures"], recipe["seed"], recipe["per_picture"],
                         recipe["kinds"], recipe.get("varied", False))
    command = [sys.executable, "-m", "minglm4v", "train", "--model", str(start), "--data", str(data),
               "--output-dir", str(out), "--freeze", "none"] + ["--compile"] * recipe.get("compile", False)
    for key in ("seed", "max_steps", "batch_size", "lr", "warmup_steps", "weight_decay"):
        command += [f"--{key.replace('_', '-')}", str(recipe[key])]
    print(" ".join(command), flush=True)
    subprocess.run(command, check=True)
    return out


def reinforce(work: Path, start: Path, recipe: dict, name: str = "rl") -> Path:
    """GRPO (`python -m minglm4v rl`, all weights) from `start` on RL prompts about `recipe["pictures"]` pictures
    (`write_rl_dataset`; optional recipe["kinds"] weights, recipe["varied"] default True), into WORK_DIR/<name>
    (kept if there). Used by the RL scripts beside this one.
    One thread: on 2 shared cores, two threads made a GRPO step 25x slower (110-165 s against 4-6 s)."""
    out = work / name
    if kept(out):
        return out
    data = write_rl_dataset(work / f"{name}-data", recipe["pictures"], recipe["seed"], recipe["per_picture"],
                            recipe.get("kinds"), recipe.get("varied", True))
    command = [sys.executable, "-m", "minglm4v", "rl", "--model", str(start), "--data", str(data),
               "--output-dir", str(out), "--freeze", "none", "--seed", "0"]
    for key in ("max_steps", "batch_size", "group_size", "lr", "max_new_tokens", "save_every"):
        command += [f"--{key.replace('_', '-')}", str(recipe[key])]
    print(" ".join(command), flush=True)
    subprocess.run(command, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return out


def evaluate_both(model: Path, name: str | None = None, seed: int | None = None) -> None:
    """`eval-shapes` of `model` on the training renderer and on the second one (500 fresh pictures each, of
    eval-shapes' seed or `seed`), each table printed and kept beside the model as
    <name>.<renderer>[.seed<seed>].eval.txt (name: the model's folder name); a table already there is not
    measured again."""
    suffix, seed_args = ("", []) if seed is None else (f".seed{seed}", ["--seed", str(seed)])
    for renderer in ("shapes", "other"):
        path = model.parent / f"{name or model.name}.{renderer}{suffix}.eval.txt"
        if not path.is_file():
            result = subprocess.run([sys.executable, "-m", "minglm4v", "eval-shapes", str(model), "--renderer",
                                     renderer, *seed_args], check=True, capture_output=True, text=True)
            path.write_text(result.stdout)
        print(path.read_text(), flush=True)


def average(first: Path, second: Path, weight: float, out: Path) -> Path:
    """(1 - weight) * first + weight * second for every parameter of two models of one lineage (the same
    architecture and tokenizer), saved in `out` with first's tokenizer and processors; kept if there."""
    if kept(out):
        return out
    model = Glm4vForConditionalGeneration.from_pretrained(first)
    other = dict(Glm4vForConditionalGeneration.from_pretrained(second).named_parameters())
    if {name: p.shape for name, p in model.named_parameters()} != {name: p.shape for name, p in other.items()}:
        raise ValueError(f"{first} and {second} have different parameters (names or shapes): only two models of one "
                         f"architecture, e.g. a model and its fine-tuned descendant, can be averaged")
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            parameter.copy_((1 - weight) * parameter + weight * other[name])
    model.save_pretrained(out)
    for name in MODEL_FILES[2:]:
        shutil.copy(first / name, out / name)
    return out


def main(work: Path) -> None:
    started = time.time()
    save_base(work / "base")
    for number in range(1, len(STAGES) + 1):
        sft = train_stage(work, number)
    reinforced = reinforce(work, train_stage(work, len(STAGES) + 1, VARIED_STAGE), RL_STAGE)
    final = average(sft, reinforced, AVERAGE, work / "final")
    print(f"data + training took {(time.time() - started) / 60:.1f} minutes")
    OUT.mkdir(parents=True, exist_ok=True)
    for name in MODEL_FILES:
        shutil.copy(final / name, OUT / name)
    demo_scene().image().save(ROOT / "data" / "images" / "shapes.png")
    evaluate_both(final)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("work", nargs="?", type=Path, default=ROOT / "build" / "micro-model")
    main(parser.parse_args().work)
