"""How much RL can add to a model of the shapes world: greedy accuracy against k sampled replies per
question (temperature 1, top-p 1, as GRPO's rollouts sample), per question kind, on pictures of one of
`shapes_eval.RENDERERS`.

    .venv/bin/python scripts/measure_pass_at_k.py [--model DIR] [--renderer other] [--pictures 100] [--k 8]

A reply earns the reward GRPO trains with (minglm4v.training.rewards.reward, decoded with special tokens
kept): 0 unless well-formed; 1 for the right answer; position questions 0.5 for the words + 0.5 for a
box with IoU >= 0.5. Printed per kind: greedy
reward, mean sampled reward, pass@k (some sample earns 1), and the share of questions whose k rewards
are not all equal (the groups that carry a GRPO signal). --out FILE.jsonl gets each question's k rewards
as soon as its batch is done (`--table FILE.jsonl` prints the table of such a file, finished or not).
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
from minglm4v.study.shapes_eval import EVAL_SEED, RENDERERS, eval_questions
from minglm4v.training import rewards

ROOT = Path(__file__).resolve().parents[1]


def replies(model, processor, images, texts, k: int, generator=None) -> list[list[str]]:
    """k replies to each question (special tokens kept): sampled at temperature 1, top-p 1, or greedy
    (k = 1) without a generator."""
    messages = [[{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": text}]}]
                for image, text in zip(images, texts) for _ in range(k)]
    inputs = processor(messages=messages)
    sampling = dict(do_sample=True, temperature=1.0, top_p=1.0, generator=generator) if generator else {}
    out = model.generate(**inputs, max_new_tokens=96, **sampling,
                         suppress_tokens=processor.tokenizer.ids_without_text(model.config.text_config.vocab_size))
    decoded = processor.batch_decode(out[:, inputs["input_ids"].shape[1]:])
    return [decoded[i * k:(i + 1) * k] for i in range(len(texts))]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(ROOT / "data" / "micro-model"))
    p.add_argument("--renderer", default="other", choices=list(RENDERERS))
    p.add_argument("--pictures", type=int, default=100)
    p.add_argument("--seed", type=int, default=EVAL_SEED)
    p.add_argument("--k", type=int, default=8)
    p.add_argument("--batch", type=int, default=8, help="questions per generate call (x k rows)")
    p.add_argument("--out", help="JSON Lines: each question's kind, greedy reward and k sampled rewards")
    p.add_argument("--table", help="only print the table of an --out file")
    args = p.parse_args()
    if args.table:
        rows = [json.loads(line) for line in Path(args.table).read_text().splitlines()]
        print(f"{args.table}: {len(rows)} questions")
        print_table(rows, len(rows[0]["sampled"]))
        return
    torch.manual_seed(0)
    model = Glm4vForConditionalGeneration.from_pretrained(args.model)
    processor = Glm4vProcessor.from_pretrained(args.model)
    generator = torch.Generator().manual_seed(0)
    pairs, rows, started = eval_questions(args.pictures, args.seed, args.renderer), [], time.time()
    out = Path(args.out).open("w") if args.out else None
    for start in range(0, len(pairs), args.batch):
        batch = pairs[start:start + args.batch]
        images, texts = [s.image() for s, _ in batch], [q.text for _, q in batch]
        greedy = replies(model, processor, images, texts, 1)
        sampled = replies(model, processor, images, texts, args.k, generator)
        new = [dict(kind=q.kind, question=q.text, answer=q.answer, greedy=rewards.reward(g, q.answer).reward,
                    sampled=[rewards.reward(r, q.answer).reward for r in rs])
               for (_, q), (g,), rs in zip(batch, greedy, sampled)]
        rows += new
        if out:
            out.write("".join(json.dumps(r) + "\n" for r in new))
            out.flush()
        print(f"\r{len(rows)}/{len(pairs)} questions", end="", file=sys.stderr)
    minutes = (time.time() - started) / 60
    print(file=sys.stderr)
    print(f"{args.model}: {args.pictures} pictures ({args.renderer!r} renderer, seed {args.seed}), "
          f"k = {args.k}, {minutes:.1f} min")
    print_table(rows, args.k)


def print_table(rows: list[dict], k: int) -> None:
    print(f"| kind | questions | greedy | sampled mean | pass@{k} | groups with signal |")
    print("|---|---|---|---|---|---|")
    for kind in KINDS:
        mine = [r for r in rows if r["kind"] == kind]
        n = max(len(mine), 1)
        print(f"| {kind} | {len(mine)} | {sum(r['greedy'] for r in mine) / n:.1%} "
              f"| {sum(sum(r['sampled']) / k for r in mine) / n:.1%} "
              f"| {sum(max(r['sampled']) == 1 for r in mine) / n:.1%} "
              f"| {sum(len(set(r['sampled'])) > 1 for r in mine) / n:.1%} |")


if __name__ == "__main__":
    main()
