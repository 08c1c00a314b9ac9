"""The RL experiments behind the bundled micro model, each from the four-stage SFT model (WORK_DIR/stage4 of
scripts/train_micro_model.py, which then makes the shipped model from the first two of them):

1. SFT on pictures of the varied shapes world (`random_scene(varied=True)`: other shades, sizes, margins,
   anti-aliased edges), then `python -m minglm4v rl` on RL prompts about other varied pictures, either on all
   five kinds alike (WORK_DIR/rl) or weighted towards count (WORK_DIR/rl-count, train_micro_model.RL_STAGE);
2. with --count, the other tries at the count question the varied stage misses: RL on count-weighted prompts
   about the training renderer's pictures (rl-count-plain), and the varied stage with count weighted as much
   as shape, then RL (count/stage5, count/rl);
3. averages of the SFT model with rl-count and rl-count-plain, weights 0.3, 0.5 and 0.7 (avg-*).
Each model is scored by `eval-shapes` on the training renderer and on the second renderer
(minglm4v.study.shapes_other, never trained on), 500 fresh pictures each, and on 500 others (seed 2,000,003)
for the averages.

    .venv/bin/python scripts/reinforce_micro_model.py [WORK_DIR] [--sft DIR] [--count]

WORK_DIR defaults to build/reinforced, --sft to build/micro-model/stage4; a finished part is kept. What
each measured: README, "What RL did to the micro model", and data/rl-logs/varied-stage.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling script
from train_micro_model import (  # noqa: E402
    RL_STAGE,
    VARIED_STAGE,
    average,
    evaluate_both,
    finished,
    reinforce,
    train_stage,
)

ROOT = Path(__file__).resolve().parents[1]
RL = dict(RL_STAGE, seed=20, kinds=None)  # the five kinds alike
COUNT_RL_PLAIN = dict(RL_STAGE, seed=22, varied=False)
COUNT_STAGE = dict(VARIED_STAGE, kinds=dict(VARIED_STAGE["kinds"], count=1))
VALIDATION_SEED = 2_000_003  # pictures no choice was made on


def main(work: Path, sft: Path, count: bool) -> None:
    if not finished(sft):
        sys.exit(f"{sft}: no model there; run scripts/train_micro_model.py first (its WORK_DIR/stage4), or pass --sft")
    stage5 = train_stage(work, 5, VARIED_STAGE, start=sft)
    evaluate_both(stage5)
    evaluate_both(reinforce(work, stage5, RL))
    evaluate_both(reinforce(work, stage5, RL_STAGE, name="rl-count"))
    if count:
        evaluate_both(reinforce(work, stage5, COUNT_RL_PLAIN, name="rl-count-plain"))
        stage5_count = train_stage(work / "count", 5, COUNT_STAGE, start=sft)
        evaluate_both(stage5_count)
        evaluate_both(reinforce(work / "count", stage5_count, RL))
    for rl in ["rl-count", "rl-count-plain"] if count else ["rl-count"]:
        for weight in (0.3, 0.5, 0.7):
            averaged = average(sft, work / rl, weight, work / f"avg-{rl}-{weight}")
            evaluate_both(averaged)
            evaluate_both(averaged, seed=VALIDATION_SEED)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("work", nargs="?", type=Path, default=ROOT / "build" / "reinforced")
    parser.add_argument("--sft", type=Path, default=ROOT / "build" / "micro-model" / "stage4",
                        help="the four-stage SFT model (scripts/train_micro_model.py's WORK_DIR/stage4)")
    parser.add_argument("--count", action="store_true", help="also the tries aimed at count")
    args = parser.parse_args()
    main(args.work, args.sft, args.count)
