"""How generation cost grows, minglm4v vs transformers on CPU, drawn to two PNGs in benchmarks/plots/:
* prefill time (vision tower + prompt forward + first pick) against image resolution, 224^2 -> 1344^2
  (256 -> 9216 patches, 64 -> 2304 image tokens);
* decode time per token against context length, 256 -> 8192 text tokens.
A small random GLM-4.1V (text 256 x 4 layers, vision 128 x 4 blocks) keeps this to a few minutes on
2 cores; the shapes of the curves, not their heights, are the point: vision attention is quadratic in
the patches, and a decode step reads the whole KV cache.

    .venv/bin/python benchmarks/bench_scaling.py     # ~5 minutes

Same timing rules as bench_generate.py (CPU time of one thread, each point alternating ours and
transformers over rounds, median); the printed ratios are transformers / minglm4v time (> 1: ours faster).
"""

import argparse
import statistics
from pathlib import Path

import matplotlib
import torch
from bench_generate import make_config, measure, models, prompt_inputs, run

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

PLOTS = Path(__file__).parent / "plots"
CONFIG = make_config(8192, dict(hidden_size=256, intermediate_size=640, num_hidden_layers=4, num_attention_heads=4,
                                num_key_value_heads=2),
                     dict(depth=4, hidden_size=128, num_heads=2, intermediate_size=320, out_hidden_size=256,
                          image_size=336))


def points(ours, hf, inputs_of, sizes, new_tokens, rounds, pick):
    """{name: [median per size]} for pick(prefill seconds, decode tokens/s) over `rounds`."""
    out = {"minglm4v": [], "transformers": []}
    for size in sizes:
        inputs = inputs_of(size)
        r = measure({"minglm4v": lambda n, clock: run(ours, inputs, n, False, clock),
                     "transformers": lambda n, clock: run(hf, inputs, n, True, clock)}, new_tokens, rounds)
        for name, (prefill, decode) in r.items():
            out[name].append(statistics.median(pick(prefill, decode)))
        ours_s, hf_s = out["minglm4v"][-1], out["transformers"][-1]
        print(f"  {size:>5}: ours {ours_s * 1e3:8.2f} ms, transformers {hf_s * 1e3:8.2f} ms, ratio {hf_s / ours_s:.2f}",
              flush=True)
    return out


def plot(x, series, xlabel, ylabel, title, path, log=True):
    fig, ax = plt.subplots(figsize=(5, 3.4), dpi=80)
    for name, ys in series.items():
        ax.plot(x, [y * 1e3 for y in ys], marker="o", label=name)
    if log:
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
    ax.set_xticks(x, [str(v) for v in x])
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    print(f"wrote {path}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(1)
    ours, hf = models(CONFIG)
    PLOTS.mkdir(exist_ok=True)
    print(f"{sum(t.numel() for t in ours.parameters()) / 1e6:.1f}M parameters, fp32, 1 thread")

    sides = [224, 448, 672, 896, 1120, 1344]
    print("prefill vs image side (pixels)")
    prefill = points(ours, hf, lambda side: prompt_inputs(CONFIG, side // 14), sides, 1, args.rounds,
                     lambda prefill, decode: prefill)
    plot(sides, prefill, "image side (pixels)", "prefill (ms)", "Prefill vs image resolution",
         PLOTS / "prefill_vs_resolution.png")

    contexts = [256, 512, 1024, 2048, 4096, 8192]
    new = 8
    print("decode time per token vs context length (tokens)")
    gen = torch.Generator().manual_seed(0)
    ordinary = CONFIG.text_config.pad_token_id  # special tokens (pad, <|image|>, ...) sit above it
    decode = points(ours, hf, lambda n: {"input_ids": torch.randint(0, ordinary, (1, n), generator=gen)}, contexts,
                    new, args.rounds, lambda prefill, decode: [1 / tok_s for tok_s in decode])
    plot(contexts, decode, "context (tokens)", "decode per token (ms)", "Decode vs context length",
         PLOTS / "decode_vs_context.png")


if __name__ == "__main__":
    main()
