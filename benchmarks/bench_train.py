"""Training-step speed of minglm4v vs transformers on CPU: one forward + backward + AdamW step of the
bundled micro model (data/micro-model) on a batch of shapes-world conversations, as `minglm4v train`
takes it (batch 16 by default, 224x224 pictures: 4096 patches and ~135 tokens per conversation).

    .venv/bin/python benchmarks/bench_train.py                # ~3 minutes on 2 cores
    .venv/bin/python benchmarks/bench_train.py --rounds 30 --batch-size 8

Contenders: transformers, minglm4v eager, and minglm4v with `--compile` (each ViT block and decoder
layer compiled; its one-time warm-up is printed apart). Each gets its own copy of the same weights and
the same batches; the first step's losses are checked to agree. Each round times every contender on
the same batch, in an order that rotates from round to round, and gives one paired ratio per pair;
the table reports medians of those per-round ratios with a 95% bootstrap interval (see
bench_generate.py). Ratios > 1 mean minglm4v is faster. Wall time on all threads, as training runs.
The data loading (pictures -> pixel rows, ~7 ms a conversation) is the same code for all and left out.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
from bench_generate import paired

from minglm4v import Glm4vForConditionalGeneration
from minglm4v.processing.processor import Glm4vProcessor
from minglm4v.study.shapes import write_dataset
from minglm4v.training.data import SFTDataset, collate
from minglm4v.training.train import compile_blocks

MODEL = Path(__file__).resolve().parents[1] / "data" / "micro-model"


def contenders() -> dict:
    from transformers import Glm4vForConditionalGeneration as HF
    models = {"transformers": HF.from_pretrained(MODEL),
              "minglm4v": Glm4vForConditionalGeneration.from_pretrained(MODEL),
              "compiled": Glm4vForConditionalGeneration.from_pretrained(MODEL)}
    compile_blocks(models["compiled"])  # what `minglm4v train --compile` does
    return {name: (model.train(), torch.optim.AdamW(model.parameters(), lr=1e-6)) for name, model in models.items()}


def step(model, optimizer, batch) -> tuple[float, float]:
    """(seconds, loss) of one optimizer step."""
    began = time.perf_counter()
    loss = model(**batch).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - began, loss.item()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    processor = Glm4vProcessor.from_pretrained(MODEL)
    with tempfile.TemporaryDirectory() as tmp:
        data = SFTDataset(write_dataset(Path(tmp), (args.rounds + 1) * args.batch_size // 2, seed=5, per_picture=2),
                          processor)
        batches = [collate([data[i] for i in range(r * args.batch_size, (r + 1) * args.batch_size)], processor)
                   for r in range(args.rounds + 1)]
    runners = contenders()
    names = list(runners)
    first = {}
    for name in names:  # warm-up on batch 0 (the compiled one compiles here)
        seconds, first[name] = step(*runners[name], batches[0])
        print(f"{name}: first step {seconds:.1f} s, loss {first[name]:.6f}", flush=True)
    if max(first.values()) - min(first.values()) > 1e-4:
        sys.exit(f"the contenders' losses differ: {first}")
    times = {name: [] for name in names}
    for r, batch in enumerate(batches[1:]):
        for name in names[r % len(names):] + names[:r % len(names)]:
            times[name].append(step(*runners[name], batch)[0])
    print(f"\nbatch {args.batch_size}, {args.rounds} rounds, {torch.get_num_threads()} threads; median ms per step:")
    for name in names:
        print(f"  {name:13s} {sorted(times[name])[len(times[name]) // 2] * 1000:7.1f}")
    print(f"transformers / minglm4v eager:    {paired(times['transformers'], times['minglm4v'])}")
    print(f"transformers / minglm4v compiled: {paired(times['transformers'], times['compiled'])}")
    print(f"minglm4v eager / compiled:        {paired(times['minglm4v'], times['compiled'])}")


if __name__ == "__main__":
    main()
