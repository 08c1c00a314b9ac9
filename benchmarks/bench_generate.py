"""Generation speed of minglm4v vs transformers on CPU: prefill latency (image + prompt) and decode
tokens/s, fp32 and bf16, on the same random GLM-4.1V. Two sizes: `113M` (text 768 x 12 layers, vision
384 x 6 blocks), where matrix multiplies dominate, and `1M` (text 128 x 4 layers), where a decode step
is nearly all per-step overhead: Python, dispatch and small ops. Both implementations get the same
weights (shared tensors) and inputs; the outputs are checked to be equal.

    .venv/bin/python benchmarks/bench_generate.py                  # 113M, ~6 minutes on 2 cores
    .venv/bin/python benchmarks/bench_generate.py --config 1M --dtypes float32 --new-tokens 64
    .venv/bin/python benchmarks/bench_generate.py --compare-cache  # + preallocated vs concatenated cache
    .venv/bin/python benchmarks/bench_generate.py --compile        # + generate(compile=True): compile cost

A streamer timestamps every token of one generate(max_new_tokens=1 + N) call:
Prefill = call -> first new token (vision tower, the prompt forward, the first pick).
Decode  = N tokens / (first new token -> last new token).
Times are the process's CPU time, on one thread by default: on a shared machine wall time swung
by 10x from run to run, CPU time by ~5-10%. Each round runs both implementations back to back,
alternating which goes first, and gives one paired ratio; the table reports the median over rounds
of those ratios (pairing cancels slow drift, the median ignores rounds a neighbour disturbed) and,
in brackets, a 95% bootstrap interval for that median. Ratios > 1 mean minglm4v is faster. On a
shared 2-core machine the medians of separate runs still moved by up to +-4%, more than those
intervals say: compare several runs before reading anything into a few percent. The count of ATen
operators each implementation dispatches is printed too; it is the same on every run.
bf16 tokens may differ from transformers' where a random model's top two logits are closer than
bf16 rounding (both are ~2% off their fp32 logits, and equally so).
"""

import argparse
import random
import statistics
import time

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from minglm4v import Glm4vConfig, Glm4vForConditionalGeneration
from minglm4v.model.rope import image_tokens, token_types
from minglm4v.processing.special_tokens import image_block_ids


def make_config(vocab: int, text: dict, vision: dict) -> Glm4vConfig:
    """A random-weight GLM-4.1V; the special tokens sit at the top of the vocabulary, base = vocab - 384."""
    base = vocab - 384
    return Glm4vConfig(
        vision_config=vision, dtype="float32",
        text_config=dict(text, vocab_size=vocab, max_position_embeddings=16384, pad_token_id=base,
                         eos_token_id=[base]),
        image_token_id=base + 14, video_token_id=base + 15, image_start_token_id=base + 10,
        image_end_token_id=base + 11, video_start_token_id=base + 12, video_end_token_id=base + 13)


CONFIGS = {  # name: (config, image grid side in patches)
    "113M": (make_config(16384, dict(hidden_size=768, intermediate_size=2048, num_hidden_layers=12,
                                     num_attention_heads=12, num_key_value_heads=2),
                         dict(depth=6, hidden_size=384, num_heads=6, intermediate_size=1536, out_hidden_size=768,
                              image_size=336)), 24),
    "1M": (make_config(4096, dict(hidden_size=128, intermediate_size=256, num_hidden_layers=4, num_attention_heads=4,
                                  num_key_value_heads=2),
                       dict(depth=1, hidden_size=32, num_heads=2, intermediate_size=64, out_hidden_size=128,
                            image_size=112)), 8),
}


def prompt_inputs(config, grid: int) -> dict:
    """One image with a grid x grid patch grid (grid * 14 pixels a side: grid^2 / 4 image tokens) between
    28 text tokens."""
    gen = torch.Generator().manual_seed(0)
    c = config
    slots = int(image_tokens(torch.tensor([1, grid, grid]), c.vision_config.spatial_merge_size))
    text = torch.randint(0, c.text_config.pad_token_id, (28,), generator=gen).tolist()
    ids = text[:8] + image_block_ids(c, slots) + text[8:]
    input_ids = torch.tensor([ids])
    types = token_types(input_ids, c.image_token_id, c.video_start_token_id, c.video_end_token_id)
    return dict(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), mm_token_type_ids=types,
                pixel_values=torch.randn(grid * grid, c.vision_config.patch_dim, generator=gen),
                image_grid_thw=torch.tensor([[1, grid, grid]]))


def models(config):
    from transformers import Glm4vConfig as HFConfig
    from transformers import Glm4vForConditionalGeneration as HF
    torch.manual_seed(0)
    hf = HF(HFConfig.from_dict(config.to_dict())).eval()
    hf.generation_config.eos_token_id = None  # decode the full N tokens (ours: eos_token_id=[])
    ours = Glm4vForConditionalGeneration(config).eval()
    ours.load_state_dict(hf.state_dict(), assign=True)  # one copy of the weights, shared
    return ours, hf


class Clock:
    """A streamer that only records the CPU time of each put() (the prompt first, then every token)."""

    def __init__(self):
        self.stamps = []

    def put(self, value):
        self.stamps.append(time.process_time())

    def end(self):
        pass


def run(model, inputs, new_tokens, is_hf, streamer=None, **settings):
    settings.update(dict(do_sample=False) if is_hf else dict(eos_token_id=[]))
    return model.generate(**inputs, max_new_tokens=new_tokens, streamer=streamer, **settings)


def measure(contenders: dict, new_tokens: int, rounds: int) -> dict:
    """{name: ([prefill seconds], [decode tokens/s])}, one entry per round; each contender is a
    function(max_new_tokens, streamer). Round r runs the contenders in order when r is even and in
    reverse when r is odd, so going first (or second) favours neither."""
    prefill, decode = {k: [] for k in contenders}, {k: [] for k in contenders}
    for fn in contenders.values():  # warm-up: first calls allocate and pick kernels
        fn(2, None)
    for r in range(rounds):
        for name, fn in list(contenders.items())[::1 if r % 2 == 0 else -1]:
            clock, start = Clock(), time.process_time()
            fn(1 + new_tokens, clock)
            first, last = clock.stamps[1], clock.stamps[-1]
            prefill[name].append(first - start)
            decode[name].append(new_tokens / (last - first))
    return {k: (prefill[k], decode[k]) for k in contenders}


def paired(numerators: list, denominators: list) -> str:
    """The median of the per-round ratios numerator / denominator, with a 95% bootstrap interval for
    that median: 'median [low, high]'."""
    ratios = [a / b for a, b in zip(numerators, denominators)]
    rng = random.Random(0)
    medians = sorted(statistics.median(rng.choices(ratios, k=len(ratios))) for _ in range(2000))
    return f"{statistics.median(ratios):.2f} [{medians[50]:.2f}, {medians[1949]:.2f}]"


class OpCounter(TorchDispatchMode):
    """Counts the ATen operators dispatched inside the `with` block. Unlike time, the count is the same
    on every run; each operator costs a few microseconds of Python and dispatch whatever its size,
    which is most of a decode step's time outside the matmuls."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))


def count_ops(fn, new_tokens: int) -> tuple[int, float]:
    """(operators of the prefill and first pick, operators per decode step) of one contender."""
    counts = []
    for n in (1, 1 + new_tokens):
        with OpCounter() as counter:
            fn(n, None)
        counts.append(counter.count)
    return counts[0], (counts[1] - counts[0]) / new_tokens


class ConcatenatingKVCache:
    """The alternative that --compare-cache measures: grow each layer's keys and values with torch.cat,
    which copies the whole cache at every step."""

    def __init__(self, num_layers: int):
        self.keys, self.values = [None] * num_layers, [None] * num_layers

    @property
    def length(self) -> int:
        return 0 if self.keys[-1] is None else self.keys[-1].shape[2]

    def update(self, layer_idx, k, v):
        if self.keys[layer_idx] is not None:
            k = torch.cat([self.keys[layer_idx], k], dim=2)
            v = torch.cat([self.values[layer_idx], v], dim=2)
        self.keys[layer_idx], self.values[layer_idx] = k, v
        return k, v


def table(rows, rounds: int) -> None:
    print(f"\nmedians over {rounds} rounds; ratio = median of per-round transformers / minglm4v time "
          f"[95% interval]; ops = ATen operators dispatched (ours / HF; the same on every run)")
    print(f"{'dtype':<10}{'batch':>6}{'prefill ms (ours / HF)':>24}{'ratio':>19}{'ops':>13}"
          f"{'decode tok/s (ours / HF)':>27}{'ratio':>19}{'ops per step':>14}{'same tokens':>13}")
    med = statistics.median
    for dtype, batch, r, same, ops in rows:
        (p_ours, d_ours), (p_hf, d_hf) = r["minglm4v"], r["transformers"]
        (op_ours, step_ours), (op_hf, step_hf) = ops["minglm4v"], ops["transformers"]
        print(f"{str(dtype)[6:]:<10}{batch:>6}{f'{med(p_ours) * 1e3:.0f} / {med(p_hf) * 1e3:.0f}':>24}"
              f"{paired(p_hf, p_ours):>19}{f'{op_ours} / {op_hf}':>13}"
              f"{f'{med(d_ours):.1f} / {med(d_hf):.1f}':>27}{paired(d_ours, d_hf):>19}"
              f"{f'{step_ours:.0f} / {step_hf:.0f}':>14}{str(same):>13}")


def compare_compiled(ours, hf, inputs, new_tokens: int, rounds: int) -> None:
    """generate(compile=True) against eager minglm4v and transformers, fp32: the one-time cost of the
    first compiled call, then decode tok/s in alternating rounds."""
    ours.float(), hf.float()
    start, wall = time.process_time(), time.perf_counter()
    compiled_tokens = run(ours, inputs, new_tokens, False, compile=True)
    cpu, wall = time.process_time() - start, time.perf_counter() - wall
    same = torch.equal(compiled_tokens, run(ours, inputs, new_tokens, False))
    contenders = {"compiled": lambda n, clock: run(ours, inputs, n, False, clock, compile=True),
                  "eager": lambda n, clock: run(ours, inputs, n, False, clock),
                  "transformers": lambda n, clock: run(hf, inputs, n, True, clock)}
    r = measure(contenders, new_tokens, rounds)
    tok = {k: statistics.median(v[1]) for k, v in r.items()}
    print(f"\ntorch.compile (fp32, batch {inputs['input_ids'].shape[0]}): first call {wall:.0f} s wall / {cpu:.0f} s "
          f"CPU (compiling), same tokens as eager: {same}\n"
          f"decode tok/s compiled {tok['compiled']:.1f}, eager {tok['eager']:.1f}, transformers "
          f"{tok['transformers']:.1f}; compiled / eager {paired(r['compiled'][1], r['eager'][1])}, "
          f"compiled / transformers {paired(r['compiled'][1], r['transformers'][1])}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", choices=CONFIGS, default="113M")
    p.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    p.add_argument("--batches", nargs="+", type=int, default=[1])
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--threads", type=int, default=1, help="more threads: CPU time then adds up all of them")
    p.add_argument("--compare-cache", action="store_true")
    p.add_argument("--compile", action="store_true", help="also measure generate(compile=True)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    config, grid = CONFIGS[args.config]
    ours, hf = models(config)
    prompt = prompt_inputs(config, grid)
    print(f"{sum(t.numel() for t in ours.parameters()) / 1e6:.1f}M parameters, prompt of "
          f"{prompt['input_ids'].shape[1]} tokens ({grid * grid // 4} image tokens), {args.new_tokens} new tokens, "
          f"{args.threads} threads, torch {torch.__version__}")
    rows = []
    for dtype in (getattr(torch, name) for name in args.dtypes):
        hf.to(dtype)
        # share the weights again: both then read the very same memory, so where the allocator happened
        # to put each model's matrices cannot favour either
        ours.load_state_dict(hf.state_dict(), assign=True)
        for batch in args.batches:
            inputs = batched(prompt, batch)
            mine, theirs = run(ours, inputs, args.new_tokens, False), run(hf, inputs, args.new_tokens, True)
            contenders = {"minglm4v": lambda n, clock: run(ours, inputs, n, False, clock),
                          "transformers": lambda n, clock: run(hf, inputs, n, True, clock)}
            ops = {name: count_ops(fn, args.new_tokens) for name, fn in contenders.items()}
            rows.append((dtype, batch, measure(contenders, args.new_tokens, args.rounds), torch.equal(mine, theirs),
                         ops))
    table(rows, args.rounds)
    if args.compare_cache:
        ours.float()
        long_prompt = {"input_ids": torch.randint(0, config.text_config.pad_token_id, (1, 1024))}
        layers = config.text_config.num_hidden_layers
        r = measure({"concatenate": lambda n, clock: run(ours, long_prompt, n, False, clock,
                                                         cache=ConcatenatingKVCache(layers)),
                     "preallocate": lambda n, clock: run(ours, long_prompt, n, False, clock)},
                    args.new_tokens, args.rounds)
        print(f"\nKV cache, fp32, 1024-token text prompt: decode tok/s concatenate "
              f"{statistics.median(r['concatenate'][1]):.1f}, preallocate (KVCache) "
              f"{statistics.median(r['preallocate'][1]):.1f}, ratio {paired(r['preallocate'][1], r['concatenate'][1])}")
    if args.compile:
        compare_compiled(ours, hf, batched(prompt, args.batches[0]), args.new_tokens, args.rounds)


def batched(inputs: dict, batch: int) -> dict:
    """The same prompt, image included, `batch` times (pixel rows and grids are listed image after image)."""
    return {k: v.repeat(batch, 1) for k, v in inputs.items()}


if __name__ == "__main__":
    main()
