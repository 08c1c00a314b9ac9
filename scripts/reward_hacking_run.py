"""Reward hacking, shown: the same short GRPO run of the bundled micro model with the package's verifier and
with two deliberately weak ones, then what each run's rollouts were paid for and how each model answers
afterwards, graded by the real rule.

    .venv/bin/python scripts/reward_hacking_run.py [WORK_DIR] [--steps 16]    # default WORK_DIR: build/hacking

The weak verifiers: "substring", tiny-grpo's kind of reward, 1 when the reference's words (its box left out)
occur anywhere in the completion, format unchecked (it pays a right answer, but also a wrong one whose
thinking names the right words, and any box); "box-blind", the format rule and the position words, the box
unchecked. Every run: `python -m minglm4v rl` with notebook 17's live settings (the "Where is ...?"
questions about pictures of the second renderer, minglm4v.study.shapes_other; 4 groups of 8, lr 3e-4, all
weights trained), the same seed; a weak run swaps `minglm4v.training.rewards.reward` for its verifier.

Writes data/rl-logs/hacking.json (notebook 17 reads it): per run and step the reward it was trained on and
the real reward of the same rollouts; per run the held-out accuracy on position questions (eval-shapes'
grading, second renderer).
"""

import argparse
import contextlib
import io
import json
import sys
import time
from pathlib import Path

from minglm4v import cli
from minglm4v.model.glm4v import Glm4vForConditionalGeneration
from minglm4v.processing.processor import Glm4vProcessor
from minglm4v.processing.special_tokens import BEGIN_OF_BOX
from minglm4v.study.shapes_eval import answer, eval_questions, grade, summarize, write_rl_questions
from minglm4v.training import rewards

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "data" / "micro-model"
LOG = ROOT / "data" / "rl-logs" / "hacking.json"
PROMPT_SEED, HELDOUT_SEED = 5, 1_000_003  # the held-out pictures are eval-shapes' first ones


def substring_reward(completion: str, reference: str, verifier=None) -> rewards.Score:
    """1 if the reference's words occur anywhere in the completion (no format check, no box check)."""
    words = reference.split(BEGIN_OF_BOX)[0].strip()
    return rewards.Score(float(words in completion), words in completion)


def box_blind_reward(completion: str, reference: str, verifier=None) -> rewards.Score:
    """The format rule and the position words, the box unchecked: a grounding verifier that forgot the box."""
    answer = rewards.answer_part(completion)
    right = answer is not None and (rewards.normalise(answer.split(BEGIN_OF_BOX)[0])
                                    == rewards.normalise(reference.split(BEGIN_OF_BOX)[0]))
    return rewards.Score(float(right), right)


VERIFIERS = {"real": None, "substring": substring_reward, "box-blind": box_blind_reward}


def train(work: Path, name: str, data: Path, steps: int) -> Path:
    out = work / name
    argv = ["rl", "--model", str(MODEL), "--data", str(data), "--output-dir", str(out), "--max-steps", str(steps),
            "--batch-size", "4", "--group-size", "8", "--lr", "3e-4", "--freeze", "none", "--seed", "0",
            "--max-new-tokens", "96"]
    original = rewards.reward
    rewards.reward = VERIFIERS[name] or original  # what sample_groups scores the rollouts with
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            status = cli.main(argv)
    finally:
        rewards.reward = original
    if status:
        sys.exit(f"rl failed for {name}")
    return out


def summarise(out: Path, heldout: int) -> dict:
    steps = [json.loads(line) for line in (out / "rl_log.jsonl").read_text().splitlines()]
    rows = [json.loads(line) for line in (out / "rollouts.jsonl").read_text().splitlines()]
    prompts = [json.loads(line) for line in (out.parent / "prompts" / "rl.jsonl").read_text().splitlines()]
    per_step = []
    for record in steps:
        mine = [r for r in rows if r["step"] == record["step"]]
        real = [rewards.reward(r["completion"], prompts[r["line"] - 1]["answer"]).reward for r in mine]
        paid_wrong = [r["reward"] > 0 and q < 1 for r, q in zip(mine, real)]
        per_step.append({"step": record["step"], "trained_reward": round(sum(r["reward"] for r in mine) / len(mine), 4),
                         "real_reward": round(sum(real) / len(real), 4),
                         "paid_but_wrong": round(sum(paid_wrong) / len(mine), 4),
                         "length": round(record["completion_length"], 2)})
    summary = _position(out, heldout)
    examples = [r["completion"] for r in rows if r["step"] == steps[-1]["step"]][:4]
    return {"steps": per_step, "heldout": summary, "last_step_completions": examples}


def _position(directory: Path, pictures: int) -> dict:
    """(right, asked) on the position questions of `pictures` held-out pictures: words, box IoU >= 0.5,
    well-formed (greedy replies, eval-shapes' grading)."""
    model = Glm4vForConditionalGeneration.from_pretrained(directory)
    processor = Glm4vProcessor.from_pretrained(directory)
    pairs = [(s, q) for s, q in eval_questions(pictures, HELDOUT_SEED, "other") if q.kind == "position"]
    graded = []
    for start in range(0, len(pairs), 32):
        batch = pairs[start:start + 32]
        graded += [grade(q, reply) for (_, q), reply in
                   zip(batch, answer(model, processor, [s.image() for s, _ in batch], [q.text for _, q in batch]))]
    summary = summarize(graded)
    return {"position words": summary["position"], "box IoU >= 0.5": summary["box IoU >= 0.5"],
            "well-formed": summary["well-formed"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("work", nargs="?", default=str(ROOT / "build" / "hacking"))
    p.add_argument("--steps", type=int, default=16)
    p.add_argument("--pictures", type=int, default=30, help="pictures the prompts ask about")
    p.add_argument("--heldout", type=int, default=60, help="held-out pictures for the after-run accuracy")
    p.add_argument("--verifiers", nargs="+", default=list(VERIFIERS), choices=list(VERIFIERS))
    p.add_argument("--log", default=str(LOG), help="where the JSON log goes")
    args = p.parse_args()
    work, started = Path(args.work), time.time()
    data = write_rl_questions(work / "prompts", args.pictures, PROMPT_SEED, renderer="other", kinds=("position",))
    result = {"settings": {"steps": args.steps, "pictures": args.pictures, "heldout": args.heldout,
                           "batch": 4, "group": 8, "lr": 3e-4}}
    result["start"] = {"heldout": _position(MODEL, args.heldout)}
    for name in args.verifiers:
        result[name] = summarise(train(work, name, data, args.steps), args.heldout)
        print(name, json.dumps(result[name]["heldout"]), flush=True)
    result["minutes"] = round((time.time() - started) / 60, 1)
    log = Path(args.log)
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {log} ({result['minutes']} min)")


if __name__ == "__main__":
    main()
