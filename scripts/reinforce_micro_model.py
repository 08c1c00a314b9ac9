"""A fifth stage for the bundled micro model, then RL (SFT + GRPO), the way a user would go on from
data/micro-model: SFT on pictures of the varied shapes world (`random_scene(varied=True)`: other shades, sizes,
margins, anti-aliased edges), then `python -m minglm4v rl` on RL prompts about other varied pictures, each
scored by `eval-shapes` on the training renderer and on the second renderer (minglm4v.study.shapes_other,
never trained on), 500 fresh pictures each.

    .venv/bin/python scripts/reinforce_micro_model.py [WORK_DIR]           # default: build/reinforced
    .venv/bin/python scripts/reinforce_micro_model.py [WORK_DIR] --count   # + the tries aimed at count

Writes WORK_DIR/stage5, WORK_DIR/rl and an *.eval.txt per model and renderer; a finished part is kept.
--count adds the three tries at the one count question the varied stage misses: RL from stage 5 on prompts
weighted towards count (varied pictures: WORK_DIR/rl-count; the training renderer's: rl-count-plain), and the
varied stage with count weighted as much as shape (WORK_DIR/count/stage5, then RL as above: count/rl).
data/micro-model is replaced only by hand, when the result is at least as good on every question kind and
well-formed in every reply (README, "What RL did to the micro model": what this recipe measured, and why
it was not shipped).
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling script
from train_micro_model import evaluate_both, reinforce, train_stage  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# stage 4's recipe (train_micro_model.STAGES) continued on varied pictures, leaning on the kinds that
# transfer worst (yes/no, position)
VARIED_STAGE = dict(seed=4, pictures=16_000, per_picture=2, max_steps=2000, batch_size=16, lr=3e-4, warmup_steps=50,
                    weight_decay=0.01, kinds={"count": 0.5, "color": 1.5, "shape": 1, "yes/no": 3, "position": 3},
                    varied=True)
RL = dict(pictures=2000, per_picture=2, seed=20, max_steps=100, batch_size=16, group_size=8, lr=2e-5,
          max_new_tokens=96, save_every=50)

# the --count tries (the varied stage misses one count question that the shipped model answers)
COUNT_KINDS = {"count": 3, "color": 1, "shape": 1, "yes/no": 1, "position": 1}
COUNT_RL = dict(RL, seed=21, kinds=COUNT_KINDS)
COUNT_RL_PLAIN = dict(RL, seed=22, kinds=COUNT_KINDS, varied=False)
COUNT_STAGE = dict(VARIED_STAGE, kinds=dict(VARIED_STAGE["kinds"], count=1))


def main(work: Path, count: bool) -> None:
    stage5 = train_stage(work, 5, VARIED_STAGE, start=ROOT / "data" / "micro-model")
    evaluate_both(stage5)
    evaluate_both(reinforce(work, stage5, RL))
    if count:
        evaluate_both(reinforce(work, stage5, COUNT_RL, name="rl-count"))
        evaluate_both(reinforce(work, stage5, COUNT_RL_PLAIN, name="rl-count-plain"))
        stage5_count = train_stage(work / "count", 5, COUNT_STAGE, start=ROOT / "data" / "micro-model")
        evaluate_both(stage5_count)
        evaluate_both(reinforce(work / "count", stage5_count, RL))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("work", nargs="?", type=Path, default=ROOT / "build" / "reinforced")
    parser.add_argument("--count", action="store_true", help="also the three tries aimed at count")
    args = parser.parse_args()
    main(args.work, args.count)
