"""RL on top of the bundled micro model (SFT + GRPO), the way a user reinforces: an RL prompt set of the varied
shapes world (minglm4v.study.shapes.write_rl_dataset: other shades, sizes, margins, anti-aliased edges), then
`python -m minglm4v rl` from data/micro-model, then `eval-shapes` on the training renderer and on the second
renderer (minglm4v.study.shapes_other), 500 fresh pictures each.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/reinforce_micro_model.py [WORK_DIR]   # default: build/reinforced

One thread: on 2 shared cores, two threads made a GRPO step 25x slower (110-165 s against 4-6 s).
The model goes to WORK_DIR/model; data/micro-model is replaced only by hand, when it is at least as good
on every question kind and well-formed in every reply (README, "Reinforce it": what this recipe measured).
"""

import subprocess
import sys
import time
from pathlib import Path

from minglm4v.study.shapes import write_rl_dataset

ROOT = Path(__file__).resolve().parents[1]
RECIPE = dict(pictures=2000, per_picture=2, seed=20, max_steps=60, batch_size=8, group_size=8, lr=5e-5)


def main(work: Path) -> None:
    started = time.time()
    data = write_rl_dataset(work / "data", RECIPE["pictures"], RECIPE["seed"], RECIPE["per_picture"], varied=True)
    out = work / "model"
    command = [sys.executable, "-m", "minglm4v", "rl", "--model", str(ROOT / "data" / "micro-model"),
               "--data", str(data), "--output-dir", str(out), "--freeze", "none", "--seed", "0",
               "--max-new-tokens", "96"]
    for key in ("max_steps", "batch_size", "group_size", "lr"):
        command += [f"--{key.replace('_', '-')}", str(RECIPE[key])]
    print(" ".join(command), flush=True)
    subprocess.run(command, check=True)
    print(f"RL took {(time.time() - started) / 60:.1f} minutes", flush=True)
    for renderer in ("shapes", "other"):
        subprocess.run([sys.executable, "-m", "minglm4v", "eval-shapes", str(out), "--renderer", renderer], check=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "build" / "reinforced")
