"""Loading speed and memory of minglm4v's from_pretrained vs transformers', on the same sharded bf16
checkpoint of a ~0.7B-parameter random GLM-4.1V (text 2048 x 12 layers, vocab 32768; 1.4 GB in three
~500 MB shards), loaded as stored (bf16) and converted to fp32.

    .venv/bin/python benchmarks/bench_load.py                   # ~3 minutes on 2 cores
    .venv/bin/python benchmarks/bench_load.py --dir /tmp/ckpt   # where the checkpoint is (made if absent)

Every load runs in a fresh subprocess (so neither implementation inherits the other's memory), and
each round runs ours and transformers' back to back, alternating which goes first. Per load:
* seconds: wall time of the from_pretrained call (imports excluded; the files are in the OS cache after
  the warm-up loads, so this is the loader's own work, not the disk's);
* growth: the process's peak resident memory during the call minus its resident memory before it,
  as a multiple of the loaded weights' size (in the loaded dtype);
* paged in: wall time of the call plus reading one value from every 4 KB page of every weight. A
  memory-mapped load reads nothing during the call; the first forward pays for the page-ins instead.
The tables give medians over rounds and, for the time ratio, the median of per-round ratios with a 95%
bootstrap interval (> 1: ours is faster).
"""

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

CHILD = r"""
import json, sys, time, torch
which, dtype, directory = sys.argv[1], getattr(torch, sys.argv[2]), sys.argv[3]
if which == "ours":
    from minglm4v import Glm4vForConditionalGeneration as Model
else:
    from transformers import Glm4vForConditionalGeneration as Model
    from transformers.utils import logging
    logging.set_verbosity_error()


def status(field):  # kB -> bytes
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024


open("/proc/self/clear_refs", "w").write("5")  # reset the peak (VmHWM) to the current resident size
before = status("VmRSS")
start = time.perf_counter()
model = Model.from_pretrained(directory, dtype=dtype)
seconds = time.perf_counter() - start
peak = status("VmHWM")
params = list(model.parameters())
for p in params:  # one read per 4 KB page
    p.detach().reshape(-1)[:: max(1, 4096 // p.element_size())].sum()
paged_in = time.perf_counter() - start
assert all(p.dtype == dtype for p in params)
weights = sum(p.numel() * p.element_size() for p in params)
print(json.dumps(dict(seconds=seconds, paged_in=paged_in, growth=(peak - before) / weights, weights=weights)))
"""


def make_checkpoint(directory: Path) -> None:
    from minglm4v import Glm4vConfig, Glm4vForConditionalGeneration
    config = Glm4vConfig(
        vision_config=dict(depth=4, hidden_size=512, num_heads=8, intermediate_size=1408, out_hidden_size=2048),
        text_config=dict(vocab_size=32768, hidden_size=2048, intermediate_size=5632, num_hidden_layers=12,
                         num_attention_heads=16, num_key_value_heads=2, pad_token_id=32000, eos_token_id=[32000]),
        image_token_id=32014, video_token_id=32015, image_start_token_id=32010, image_end_token_id=32011,
        video_start_token_id=32012, video_end_token_id=32013, dtype="bfloat16")
    torch.manual_seed(0)
    model = Glm4vForConditionalGeneration(config).to(torch.bfloat16)
    model.save_pretrained(directory, max_shard_size="500MB")


def load(which: str, dtype: str, directory: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, which, dtype, str(directory)], capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def paired(numerators: list, denominators: list) -> str:
    ratios = [a / b for a, b in zip(numerators, denominators)]
    rng = random.Random(0)
    medians = sorted(statistics.median(rng.choices(ratios, k=len(ratios))) for _ in range(2000))
    return f"{statistics.median(ratios):.2f} [{medians[50]:.2f}, {medians[1949]:.2f}]"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "minglm4v-bench-load")
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    if not (args.dir / "model.safetensors.index.json").is_file():
        print(f"writing the checkpoint to {args.dir} ...")
        make_checkpoint(args.dir)
    size = sum(f.stat().st_size for f in args.dir.glob("*.safetensors"))
    print(f"checkpoint: {args.dir}, {len(list(args.dir.glob('*.safetensors')))} shards, {size / 1e9:.2f} GB bf16, "
          f"torch {torch.__version__}")
    names = ("minglm4v", "transformers")
    rows = []
    for dtype in ("bfloat16", "float32"):
        for which in ("ours", "hf"):  # warm-up: the files into the OS cache, imports compiled
            load(which, dtype, args.dir)
        runs = {name: [] for name in names}
        for r in range(args.rounds):
            for name, which in list(zip(names, ("ours", "hf")))[:: 1 if r % 2 == 0 else -1]:
                runs[name].append(load(which, dtype, args.dir))
        rows.append((dtype, runs))
    med = statistics.median
    print(f"\nmedians over {args.rounds} rounds; time ratio = median of per-round transformers / minglm4v "
          f"[95% interval]; growth = peak RSS growth / loaded weights")
    print(f"{'to':<10}{'seconds (ours / HF)':>22}{'ratio':>19}{'growth (ours / HF)':>22}"
          f"{'paged in s (ours / HF)':>26}{'ratio':>19}")
    for dtype, runs in rows:
        o, h = ({key: [run[key] for run in runs[name]] for key in runs[name][0]} for name in names)
        pair = lambda key: f"{med(o[key]):.2f} / {med(h[key]):.2f}"  # noqa: E731
        print(f"{dtype:<10}{pair('seconds'):>22}{paired(h['seconds'], o['seconds']):>19}{pair('growth'):>22}"
              f"{pair('paged_in'):>26}{paired(h['paged_in'], o['paged_in']):>19}")

if __name__ == "__main__":
    main()
