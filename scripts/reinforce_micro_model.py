"""A fifth stage for the bundled micro model, then RL (SFT + GRPO), the way a user would go on from
data/micro-model: SFT on pictures of the varied shapes world (`random_scene(varied=True)`: other shades, sizes,
margins, anti-aliased edges), then `python -m minglm4v rl` on RL prompts about other varied pictures, each
scored by `eval-shapes` on the training renderer and on the second renderer (minglm4v.study.shapes_other,
never trained on), 500 fresh pictures each.

    .venv/bin/python scripts/reinforce_micro_model.py [WORK_DIR]   # default: build/reinforced

Writes WORK_DIR/stage5, WORK_DIR/rl and an *.eval.txt per model and renderer; a finished part is kept.
data/micro-model is replaced only by hand, when the result is at least as good on every question kind and
well-formed in every reply (README, "What RL did to the micro model": what this recipe measured, and why
it was not shipped).
"""

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


def main(work: Path) -> None:
    stage5 = train_stage(work, 5, VARIED_STAGE, start=ROOT / "data" / "micro-model")
    evaluate_both(stage5)
    evaluate_both(reinforce(work, stage5, RL))


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "build" / "reinforced")
