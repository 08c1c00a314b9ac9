"""Train the bundled micro model (data/micro-model): a ~1.2 M-parameter GLM-4.1V that answers questions
about pictures of coloured shapes in the Thinking format.

    .venv/bin/python scripts/train_micro_model.py          # ~10 minutes on one CPU core

Every picture is a 112x112 image (one 8x8 patch grid, 16 image tokens) with one shape of one colour on
a light background; the question asks for the shape, the colour, or a description, and the target is
`<think>I see a {colour} {shape}.</think><answer>...</answer><|user|>` (the real model also ends its
turn with `<|user|>`). Loss only on the answer tokens. The result is a real checkpoint in the HF layout
with the fixture tokenizer and a preprocessor config, so `python -m minglm4v chat` runs on it, and it
doubles as a demonstration that our model trains (backward works through every module).
"""

import random
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from minglm4v import Glm4vConfig, Glm4vForConditionalGeneration
from minglm4v.image_processing import Glm4vImageProcessor
from minglm4v.processor import Glm4vProcessor
from minglm4v.tokenizer import Glm4vTokenizer, left_pad
from minglm4v.video_processing import Glm4vVideoProcessor

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "data" / "micro-model"
COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (230, 200, 30)}
SHAPES = ("circle", "square", "triangle")
QUESTIONS = {
    "shape": ["What shape is in the picture?", "Which shape do you see?"],
    "colour": ["What color is the shape?", "Which color is it?"],
    "describe": ["Describe the picture.", "What is in the picture?"],
}
SIZE = 112  # smallest size the processor keeps as is: 8x8 patches -> 4x4 merged tokens


def draw(shape: str, colour: str, rng: random.Random) -> Image.Image:
    background = tuple(rng.randint(200, 255) for _ in range(3))
    image = Image.new("RGB", (SIZE, SIZE), background)
    r = rng.randint(18, 34)
    cx, cy = rng.randint(r + 4, SIZE - r - 4), rng.randint(r + 4, SIZE - r - 4)
    fill = tuple(min(255, max(0, c + rng.randint(-25, 25))) for c in COLOURS[colour])
    pen = ImageDraw.Draw(image)
    if shape == "circle":
        pen.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif shape == "square":
        pen.rectangle([cx - r, cy - r, cx + r, cy + r], fill=fill)
    else:
        pen.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill)
    return image


def example(rng: random.Random) -> tuple[Image.Image, str, str]:
    shape, colour = rng.choice(SHAPES), rng.choice(list(COLOURS))
    kind = rng.choice(list(QUESTIONS))
    answer = {"shape": f"It is a {shape}.", "colour": f"It is {colour}.", "describe": f"A {colour} {shape}."}[kind]
    target = f"<think>I see a {colour} {shape}.</think><answer>{answer}</answer><|user|>"
    return draw(shape, colour, rng), rng.choice(QUESTIONS[kind]), target


def micro_config() -> Glm4vConfig:
    tiny = Glm4vConfig.tiny()  # reuse the fixture tokenizer's special ids
    return Glm4vConfig(
        vision_config=dict(depth=2, hidden_size=64, num_heads=2, intermediate_size=256, image_size=112),
        text_config=dict(vocab_size=1024, hidden_size=128, intermediate_size=256, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         pad_token_id=tiny.text_config.pad_token_id, eos_token_id=tiny.text_config.eos_token_id),
        **{k: getattr(tiny, k) for k in ("image_token_id", "video_token_id", "image_start_token_id",
                                         "image_end_token_id", "video_start_token_id", "video_end_token_id")},
        dtype="float32",
    )


def encode_example(processor: Glm4vProcessor, rng: random.Random) -> dict:
    """One picture + question + target: ids, labels (-100 except on the target) and pixels."""
    image, question, target = example(rng)
    messages = [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": question}]}]
    prompt = processor(messages=messages)
    target_ids = processor.tokenizer.encode(target)
    return {"ids": prompt["input_ids"][0].tolist() + target_ids,
            "labels": [-100] * prompt["input_ids"].shape[1] + target_ids,
            "pixel_values": prompt["pixel_values"], "image_grid_thw": prompt["image_grid_thw"]}


def collate(examples: list[dict], pad: int) -> dict:
    """Left-pad a list of encoded examples into one batch."""
    return {
        "input_ids": left_pad([e["ids"] for e in examples], pad),
        "attention_mask": left_pad([[1] * len(e["ids"]) for e in examples], 0),
        "labels": left_pad([e["labels"] for e in examples], -100),
        "pixel_values": torch.cat([e["pixel_values"] for e in examples]),
        "image_grid_thw": torch.cat([e["image_grid_thw"] for e in examples]),
    }


def main(steps: int = 1500, batch_size: int = 24, pool_size: int = 3000) -> None:
    torch.manual_seed(0)
    rng = random.Random(0)
    tokenizer = Glm4vTokenizer.from_pretrained(ROOT / "data" / "tokenizer")
    processor = Glm4vProcessor(Glm4vImageProcessor(), tokenizer)
    model = Glm4vForConditionalGeneration(micro_config()).train()
    print(f"parameters: {sum(p.numel() for p in model.parameters()):,}")
    pool = [encode_example(processor, rng) for _ in range(pool_size)]  # preprocess once, sample batches
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=2e-3, total_steps=steps, pct_start=0.1)
    for step in range(1, steps + 1):
        loss = model(**collate(rng.sample(pool, batch_size), tokenizer.pad_token_id)).loss
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        if step % 100 == 0 or step == 1:
            print(f"step {step:5d}  loss {loss.item():.4f}", flush=True)
    model.eval().save_pretrained(OUT)
    tokenizer_dir = ROOT / "data" / "tokenizer"
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (OUT / name).write_bytes((tokenizer_dir / name).read_bytes())
    processor.image_processor.save_pretrained(OUT)
    Glm4vVideoProcessor().save_pretrained(OUT)  # so `chat --video` works on it too
    sample = draw("triangle", "blue", random.Random(1))
    (ROOT / "data" / "images").mkdir(exist_ok=True)
    sample.save(ROOT / "data" / "images" / "shapes.png")
    print("saved", OUT, "and data/images/shapes.png;", np.asarray(sample).shape)


if __name__ == "__main__":
    main(*map(int, sys.argv[1:]))
