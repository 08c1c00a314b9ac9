"""Peak memory of real training runs on CPU, against what `python -m minglm4v plan` estimates.

    python benchmarks/bench_memory.py            # every configuration below (a few minutes)
    python benchmarks/bench_memory.py --quick    # the two smallest (what tests/test_plan.py runs)

Each run is `train` in a fresh process, on a random-weight model stored in bf16 (as the real checkpoint
is), for two steps on equal-length text conversations (the vision tower is frozen, so pictures would add
no activations). The measurement is the process's peak resident memory (VmHWM, reset once the imports
are done) minus its resident memory at that moment, read when the final save begins (the save's merged
copies and serialisation cost CPU memory, not GPU memory). glibc is told to return every block above 64 kB
to the system when it is freed (MALLOC_MMAP_THRESHOLD_), so freed activations do not linger in the count.
Prints one line per run: measured (the framework's own memory taken off: see `rows`) and planned GiB,
and their ratio.
"""

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from minglm4v import Glm4vConfig, Glm4vForConditionalGeneration  # noqa: E402
from minglm4v.processing.image import Glm4vImageProcessor  # noqa: E402
from minglm4v.processing.video import Glm4vVideoProcessor  # noqa: E402
from minglm4v.training import plan  # noqa: E402

# text shapes (the tiny vision tower stays), vocabulary larger than the fixture tokenizer's: the rows
# past it are never looked up, but lm_head's logits are as wide as a real head's would be
CONFIGS = {
    "0.3M": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=2,
                 num_key_value_heads=1, vocab_size=1024),  # the framework's own memory (see rows)
    "20M": dict(hidden_size=512, intermediate_size=1536, num_hidden_layers=4, num_attention_heads=8,
                num_key_value_heads=2, vocab_size=8192),
    "60M": dict(hidden_size=768, intermediate_size=2304, num_hidden_layers=6, num_attention_heads=12,
                num_key_value_heads=2, vocab_size=16384),
    "160M": dict(hidden_size=1024, intermediate_size=3072, num_hidden_layers=8, num_attention_heads=16,
                 num_key_value_heads=2, vocab_size=32768),
    "0.7B": dict(hidden_size=2048, intermediate_size=6144, num_hidden_layers=12, num_attention_heads=16,
                 num_key_value_heads=2, vocab_size=32768),
}
# (config, train options, batch size, tokens per conversation)
RUNS = [
    ("20M", ["--freeze", "vision,merger"], 4, 512),
    ("20M", ["--lora-rank", "8", "--bf16"], 4, 512),
    ("60M", ["--bf16", "--gradient-checkpointing"], 4, 512),
    ("60M", ["--lora-rank", "8"], 2, 512),
    ("160M", ["--bf16"], 2, 512),
    ("160M", ["--lora-rank", "8", "--bf16", "--gradient-checkpointing"], 4, 512),
    ("0.7B", ["--lora-rank", "8"], 1, 256),
    ("0.7B", ["--lora-rank", "8", "--bf16"], 1, 256),
]
QUICK = RUNS[:2]


def config(name: str) -> Glm4vConfig:
    tiny = Glm4vConfig.tiny()
    text = dataclasses.replace(tiny.text_config, mrope_section=None, **CONFIGS[name])
    vision = dataclasses.replace(tiny.vision_config, out_hidden_size=text.hidden_size)
    return dataclasses.replace(tiny, text_config=text, vision_config=vision)


def make_model_dir(name: str, directory: Path) -> Path:
    """Random weights in bf16, the fixture tokenizer, the default processors."""
    torch.manual_seed(0)
    model = Glm4vForConditionalGeneration(config(name)).to(torch.bfloat16)
    model.save_pretrained(directory)
    for path in (REPO / "data" / "tokenizer").iterdir():
        (directory / path.name).write_bytes(path.read_bytes())
    Glm4vImageProcessor().save_pretrained(directory)
    Glm4vVideoProcessor().save_pretrained(directory)
    return directory


def write_data(path: Path, tokens: int, count: int) -> Path:
    """`count` text conversations of about `tokens` tokens each (one word a token in the fixture tokenizer)."""
    words = " ".join(["red"] * (tokens // 2 - 8))
    line = {"messages": [{"role": "user", "content": words}, {"role": "assistant", "content": words}]}
    path.write_text("".join(json.dumps(line) + "\n" for _ in range(count)))
    return path


def measure(model_dir: Path, data: Path, options: list[str], batch: int) -> float:
    """Peak bytes of one training step, in a fresh process (see the module docstring)."""
    with tempfile.TemporaryDirectory() as out:
        argv = ["train", "--model", str(model_dir), "--data", str(data), "--output-dir", out, "--max-steps", "2",
                "--batch-size", str(batch), *options]
        env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "OMP_NUM_THREADS": "2", "PYTHONPATH": str(REPO)}
        result = subprocess.run([sys.executable, __file__, "--child", json.dumps(argv)], env=env, check=True,
                                capture_output=True, text=True)
    return float(result.stdout.strip().splitlines()[-1])


def child(argv: list[str]) -> None:
    from minglm4v import cli
    from minglm4v.training import train

    def status(field: str) -> int:
        line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith(field))
        return int(line.split()[1]) * 1024

    peak = []

    def at_save(frame, event, arg):  # the peak of training, before the final save (a CPU-side cost)
        if event == "call" and frame.f_code.co_name == "save_model" and not peak:
            peak.append(status("VmHWM:"))

    args = cli.parser().parse_args(argv)
    before = status("VmRSS:")
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current resident size
    sys.setprofile(at_save)
    train.run(args)
    sys.setprofile(None)
    print(peak[0] - before)


def planned(name: str, options: list[str], batch: int, seq_len: int) -> float:
    lora = int(options[options.index("--lora-rank") + 1]) if "--lora-rank" in options else 0
    return plan.estimate(config(name), lora, "--bf16" in options, "--gradient-checkpointing" in options, batch,
                         seq_len)["per GPU"]


def rows(runs, root: Path):
    """(config, options, batch, seq_len, measured bytes, planned bytes) per run. The measurement has the
    framework's own memory taken off (kernels, thread pools, the processor: on a GPU, the CUDA context
    is its counterpart, which plan leaves out too): the measured peak of a 0.3M-parameter model's run
    beyond what plan counts for it."""
    from minglm4v.processing.processor import Glm4vProcessor
    from minglm4v.training.data import SFTDataset
    framework = None
    for name in dict.fromkeys(["0.3M"] + [r[0] for r in runs]):
        model_dir = make_model_dir(name, root / name)
        for _, options, batch, tokens in [r for r in [("0.3M", [], 1, 64), *runs] if r[0] == name]:
            data = write_data(root / f"data{tokens}.jsonl", tokens, batch)
            seq_len = len(SFTDataset(data, Glm4vProcessor.from_pretrained(model_dir))[0]["input_ids"])
            measured, estimate = measure(model_dir, data, options, batch), planned(name, options, batch, seq_len)
            if framework is None:
                framework = measured - estimate
                print(f"framework's own memory: {framework / 2**30:.3f} GiB", flush=True)
                continue
            yield name, options, batch, seq_len, measured - framework, estimate


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(json.loads(args.child))
    print(f"{'config':<7}{'options':<50}{'batch x seq':>12}{'measured GiB':>14}{'planned GiB':>13}{'ratio':>7}")
    with tempfile.TemporaryDirectory() as root:
        for name, options, batch, seq_len, measured, estimate in rows(QUICK if args.quick else RUNS, Path(root)):
            print(f"{name:<7}{' '.join(options):<50}{f'{batch} x {seq_len}':>12}{measured / 2**30:>14.3f}"
                  f"{estimate / 2**30:>13.3f}{estimate / measured:>7.2f}", flush=True)


if __name__ == "__main__":
    main()
