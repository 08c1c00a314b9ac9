"""How much RL can add to a model of the shapes world: greedy accuracy against k sampled replies per
question (temperature 1, top-p 1, as GRPO's rollouts sample), per question kind, on pictures of one of
`shapes_eval.RENDERERS`.

    .venv/bin/python scripts/measure_pass_at_k.py [--model DIR] [--renderer other] [--pictures 100] [--k 8]

A reply earns the reward of the RL issue's rule: 0 unless well-formed; 1 for the right answer;
position questions 0.5 for the words + 0.5 for a box with IoU >= 0.5. Printed per kind: greedy
reward, mean sampled reward, pass@k (some sample earns 1), and the share of questions whose k rewards
are not all equal (the groups that carry a GRPO signal). --out FILE.jsonl keeps each question's k rewards.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from minglm4v.model.glm4v import Glm4vForConditionalGeneration
from minglm4v.processing.processor import Glm4vProcessor
from minglm4v.study.shapes import KINDS
from minglm4v.study.shapes_eval import EVAL_SEED, RENDERERS, answer, eval_questions, grade

ROOT = Path(__file__).resolve().parents[1]


def reward(question, reply: str) -> float:
    g = grade(question, reply)
    if not g.well_formed:
        return 0.0
    return float(g.correct) if g.iou is None else 0.5 * g.correct + 0.5 * (g.iou >= 0.5)


def sample(model, processor, images, texts, k: int, generator) -> list[list[str]]:
    """k replies to each question, sampled at temperature 1, top-p 1."""
    messages = [[{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": text}]}]
                for image, text in zip(images, texts) for _ in range(k)]
    inputs = processor(messages=messages)
    out = model.generate(**inputs, max_new_tokens=96, do_sample=True, temperature=1.0, top_p=1.0,
                         generator=generator)[:, inputs["input_ids"].shape[1]:]
    # ids of the padded vocabulary rows have no text: such a reply is wrong, not a crash
    out = out.masked_fill(out >= len(processor.tokenizer), processor.tokenizer.pad_token_id)
    replies = processor.batch_decode(out, skip_special_tokens=True)
    return [replies[i * k:(i + 1) * k] for i in range(len(texts))]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(ROOT / "data" / "micro-model"))
    p.add_argument("--renderer", default="other", choices=list(RENDERERS))
    p.add_argument("--pictures", type=int, default=100)
    p.add_argument("--seed", type=int, default=EVAL_SEED)
    p.add_argument("--k", type=int, default=8)
    p.add_argument("--batch", type=int, default=8, help="questions per generate call (x k rows)")
    p.add_argument("--out", help="JSON Lines: each question's kind, greedy reward and k sampled rewards")
    args = p.parse_args()
    torch.manual_seed(0)
    model = Glm4vForConditionalGeneration.from_pretrained(args.model)
    processor = Glm4vProcessor.from_pretrained(args.model)
    generator = torch.Generator().manual_seed(0)
    pairs, rows, started = eval_questions(args.pictures, args.seed, args.renderer), [], time.time()
    for start in range(0, len(pairs), args.batch):
        batch = pairs[start:start + args.batch]
        images, texts = [s.image() for s, _ in batch], [q.text for _, q in batch]
        greedy = answer(model, processor, images, texts)
        sampled = sample(model, processor, images, texts, args.k, generator)
        rows += [dict(kind=q.kind, question=q.text, answer=q.answer, greedy=reward(q, g),
                      sampled=[reward(q, r) for r in rs]) for (_, q), g, rs in zip(batch, greedy, sampled)]
        print(f"\r{len(rows)}/{len(pairs)} questions", end="", file=sys.stderr)
    minutes = (time.time() - started) / 60
    print(file=sys.stderr)
    if args.out:
        Path(args.out).write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(f"{args.model}: {args.pictures} pictures ({args.renderer!r} renderer, seed {args.seed}), "
          f"k = {args.k}, {minutes:.1f} min")
    print(f"| kind | questions | greedy | sampled mean | pass@{args.k} | groups with signal |")
    print("|---|---|---|---|---|---|")
    for kind in KINDS:
        mine = [r for r in rows if r["kind"] == kind]
        n = max(len(mine), 1)
        print(f"| {kind} | {len(mine)} | {sum(r['greedy'] for r in mine) / n:.1%} "
              f"| {sum(sum(r['sampled']) / args.k for r in mine) / n:.1%} "
              f"| {sum(max(r['sampled']) == 1 for r in mine) / n:.1%} "
              f"| {sum(len(set(r['sampled'])) > 1 for r in mine) / n:.1%} |")


if __name__ == "__main__":
    main()
