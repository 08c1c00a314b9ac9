"""Issue 22's "one hour in all": the ~30-minute SFT recipe of the README (two stages, pair tokens from the
start, `--compile`), then at most ~30 minutes of GRPO (`python -m minglm4v rl`; the two recipes of
RL_RUNS), each measured with `eval-shapes` on the training renderer and on the second renderer (500 fresh
pictures each), plus pass@8 of the SFT model (scripts/measure_pass_at_k.py: what RL can reach at best).

    OMP_NUM_THREADS=1 .venv/bin/python scripts/sft_and_rl_in_an_hour.py [WORK_DIR]   # default: build/one-hour

Everything goes to WORK_DIR (base, sft1, sft2, rl, rl-b, *.eval.txt, pass_at_8.jsonl, minutes.txt); an
interrupted run goes on where it stopped (a finished part is kept). data/micro-model is not touched.
"""

import argparse
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling script
from train_micro_model import (  # noqa: E402
    STAGES,
    add_pair_tokens,
    evaluate_both,
    finished,
    reinforce,
    save_base,
    train_stage,
)

ROOT = Path(__file__).resolve().parents[1]
# The README's 30-minute row: 4,000 steps at lr 2e-3, then 1,000 at 5e-4, every picture seen once, with
# stage 1's and stage 2's question weights.
SHORT_SFT = (dict(STAGES[0], pictures=32_000, max_steps=4000, compile=True),
             dict(STAGES[1], pictures=8_000, max_steps=1000, lr=5e-4, warmup_steps=50, compile=True))
# Two GRPO runs from the SFT model (all weights, prompts about 3,000 varied pictures): 8 groups of 8 per step at
# lr 1e-4, then twice the groups per step at under a third of the lr.
RL_RUNS = {"rl": dict(pictures=3000, per_picture=2, seed=20, max_steps=300, batch_size=8, group_size=8, lr=1e-4,
                      max_new_tokens=96, save_every=0),
           "rl-b": dict(pictures=3000, per_picture=2, seed=20, max_steps=120, batch_size=16, group_size=8, lr=3e-5,
                        max_new_tokens=96, save_every=0)}


def timed(label: str, started: float, log: Path) -> None:
    with log.open("a") as out:
        out.write(f"{label}: {(time.time() - started) / 60:.1f} min\n")


def main(work: Path) -> None:
    log = work / "minutes.txt"
    if not finished(work / "base-pairs"):
        save_base(work / "base")
        add_pair_tokens(work / "base", work / "base-pairs")
    started, ran = time.time(), not finished(work / f"sft{len(SHORT_SFT)}")
    start = work / "base-pairs"
    for number, recipe in enumerate(SHORT_SFT, 1):
        start = train_stage(work, number, recipe, start, name="sft")
    if ran:  # a resumed run keeps its parts: only what ran now gets its minutes
        timed("SFT", started, log)
    evaluate_both(start, "sft")
    if not (work / "pass_at_8.jsonl").is_file():
        subprocess.run([sys.executable, str(ROOT / "scripts" / "measure_pass_at_k.py"), "--model", str(start),
                        "--renderer", "shapes", "--pictures", "40", "--out", str(work / "pass_at_8.jsonl")],
                       check=True)
    for name, recipe in RL_RUNS.items():
        started, ran = time.time(), not finished(work / name)
        out = reinforce(work, start, recipe, name)
        if ran:
            timed(name, started, log)
        evaluate_both(out)
    print(log.read_text())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("work", nargs="?", type=Path, default=ROOT / "build" / "one-hour")
    main(parser.parse_args().work)
