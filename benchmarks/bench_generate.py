"""Generation speed of minglm4v vs transformers on CPU: prefill latency (image + prompt) and decode
tokens/s, fp32 and bf16, on the same ~113M-parameter random GLM-4.1V (text 768 x 12 layers, vision
384 x 6 blocks). Both get the same weights (shared tensors) and inputs; the fp32 outputs are checked
to be equal.

    .venv/bin/python benchmarks/bench_generate.py                 # ~6 minutes on 2 cores
    .venv/bin/python benchmarks/bench_generate.py --compare-cache # + concatenating vs preallocated KV cache

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

from minglm4v import Glm4vConfig, Glm4vForConditionalGeneration, generation
from minglm4v.special_tokens import image_block_ids

CONFIG = Glm4vConfig(
    vision_config=dict(depth=6, hidden_size=384, num_heads=6, intermediate_size=1536, out_hidden_size=768,
                       image_size=336),
    text_config=dict(vocab_size=16384, hidden_size=768, intermediate_size=2048, num_hidden_layers=12,
                     num_attention_heads=12, num_key_value_heads=2, max_position_embeddings=4096,
                     pad_token_id=16000, eos_token_id=[16000]),
    image_token_id=16014, video_token_id=16015, image_start_token_id=16010, image_end_token_id=16011,
    video_start_token_id=16012, video_end_token_id=16013, dtype="float32")


def prompt_inputs(grid: int = 24) -> dict:
    """One image with a grid x grid patch grid (336 x 336 pixels: 144 image tokens) between text."""
    gen = torch.Generator().manual_seed(0)
    c = CONFIG
    slots = grid * grid // 4
    text = torch.randint(0, 16000, (28,), generator=gen).tolist()
    ids = text[:8] + image_block_ids(c, slots) + text[8:]
    input_ids = torch.tensor([ids])
    return dict(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                mm_token_type_ids=(input_ids == c.image_token_id).long(),
                pixel_values=torch.randn(grid * grid, c.vision_config.patch_dim, generator=gen),
                image_grid_thw=torch.tensor([[1, grid, grid]]))


def models():
    from transformers import Glm4vConfig as HFConfig
    from transformers import Glm4vForConditionalGeneration as HF
    torch.manual_seed(0)
    hf = HF(HFConfig.from_dict(CONFIG.to_dict())).eval()
    hf.generation_config.eos_token_id = None  # decode the full N tokens (ours: eos_token_id=[])
    ours = Glm4vForConditionalGeneration(CONFIG).eval()
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


def run(model, inputs, new_tokens, is_hf, streamer=None):
    settings = dict(do_sample=False) if is_hf else dict(eos_token_id=[])
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


class PreallocatedKVCache:
    """The alternative to generation.KVCache that --compare-cache measures: one buffer per layer for
    the whole sequence, written in place, read back as a view."""

    def __init__(self, num_layers: int, capacity: int = 4096):
        self.keys, self.values, self.capacity, self.length = [None] * num_layers, [None] * num_layers, capacity, 0

    def update(self, layer_idx, k, v):
        if self.keys[layer_idx] is None:
            shape = (*k.shape[:2], self.capacity, k.shape[3])
            self.keys[layer_idx], self.values[layer_idx] = k.new_empty(shape), v.new_empty(shape)
        end = self.length + k.shape[2]
        self.keys[layer_idx][:, :, self.length:end] = k
        self.values[layer_idx][:, :, self.length:end] = v
        out = self.keys[layer_idx][:, :, :end], self.values[layer_idx][:, :, :end]
        if layer_idx == len(self.keys) - 1:
            self.length = end
        return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--threads", type=int, default=1, help="more threads: CPU time then adds up all of them")
    p.add_argument("--compare-cache", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    ours, hf = models()
    inputs = prompt_inputs()
    print(f"{sum(t.numel() for t in ours.parameters()) / 1e6:.1f}M parameters, prompt of "
          f"{inputs['input_ids'].shape[1]} tokens (144 image tokens), {args.new_tokens} new tokens, "
          f"{args.threads} threads, torch {torch.__version__}")
    rows = []
    for dtype in (torch.float32, torch.bfloat16):
        hf.to(dtype)
        # share the weights again: both then read the very same memory, so where the allocator happened
        # to put each model's matrices cannot favour either
        ours.load_state_dict(hf.state_dict(), assign=True)
        mine, theirs = run(ours, inputs, args.new_tokens, False), run(hf, inputs, args.new_tokens, True)
        same = torch.equal(mine, theirs)
        contenders = {"minglm4v": lambda n, clock: run(ours, inputs, n, False, clock),
                      "transformers": lambda n, clock: run(hf, inputs, n, True, clock)}
        ops = {name: count_ops(fn, args.new_tokens) for name, fn in contenders.items()}
        rows.append((dtype, measure(contenders, args.new_tokens, args.rounds), same, ops))
    print(f"\nmedians over {args.rounds} rounds; ratio = median of per-round transformers / minglm4v time "
          f"[95% interval]; ops = ATen operators dispatched (ours / HF; the same on every run)")
    print(f"{'dtype':<10}{'prefill ms (ours / HF)':>24}{'ratio':>19}{'ops':>13}{'decode tok/s (ours / HF)':>27}"
          f"{'ratio':>19}{'ops per step':>14}{'same tokens':>13}")
    for dtype, r, same, ops in rows:
        (p_ours, d_ours), (p_hf, d_hf) = r["minglm4v"], r["transformers"]
        (op_ours, step_ours), (op_hf, step_hf) = ops["minglm4v"], ops["transformers"]
        med = statistics.median
        print(f"{str(dtype)[6:]:<10}{f'{med(p_ours) * 1e3:.0f} / {med(p_hf) * 1e3:.0f}':>24}{paired(p_hf, p_ours):>19}"
              f"{f'{op_ours} / {op_hf}':>13}{f'{med(d_ours):.1f} / {med(d_hf):.1f}':>27}{paired(d_ours, d_hf):>19}"
              f"{f'{step_ours:.0f} / {step_hf:.0f}':>14}{str(same):>13}")
    if args.compare_cache:
        ours.float()
        long_prompt = {"input_ids": torch.randint(0, 16000, (1, 1024))}
        default = generation.KVCache

        def with_cache(cache_class):
            def fn(n, clock):
                generation.KVCache = cache_class
                try:
                    return run(ours, long_prompt, n, False, clock)
                finally:
                    generation.KVCache = default
            return fn
        r = measure({"concatenate": with_cache(default), "preallocate": with_cache(PreallocatedKVCache)},
                    args.new_tokens, args.rounds)
        print(f"\nKV cache, fp32, 1024-token text prompt: decode tok/s concatenate "
              f"{statistics.median(r['concatenate'][1]):.1f}, preallocate {statistics.median(r['preallocate'][1]):.1f}, "
              f"ratio {paired(r['preallocate'][1], r['concatenate'][1])}")


if __name__ == "__main__":
    main()
