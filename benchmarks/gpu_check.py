"""One command for a CUDA machine (a few minutes, safe to run blind): is minglm4v right and fast on GPUs?

    .venv/bin/python benchmarks/gpu_check.py             # on a CUDA machine (every visible GPU)
    .venv/bin/python benchmarks/gpu_check.py --dry-run   # the same code paths on tiny configs, on CPU

    parity    the micro model (data/micro-model) in bf16 on the GPU against fp32 on the CPU: the largest
              logit difference and how often the top-1 tokens agree
    prefill   the full-size GLM-4.1V-9B architecture with random bf16 weights: tokens/s of a 2048-token
              prompt, minglm4v and transformers on the same weights
    decode    tokens/s of 64 greedy tokens after a 128-token prompt, both; and minglm4v's as a fraction
              of the memory-bandwidth bound (every decoder weight read once per token, at the bandwidth
              a device-to-device copy reaches)
    LoRA      one GPU: a training step (train.configure, train.train_step, AdamW) of the 9B with LoRA
              rank 8, --bf16, gradient checkpointing, batch 1 x 2048: peak memory against `plan`
    FSDP      every visible GPU under torchrun (nccl): the 9B sharded by fsdp.shard, a full fine-tune
              when `plan` says it fits in 90 % of a GPU, LoRA otherwise: peak memory against `plan`

Each check that fails prints its error in its row; the others still run. Prints one table.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from minglm4v import Glm4vConfig, Glm4vForConditionalGeneration  # noqa: E402
from minglm4v.training import fsdp, plan, train  # noqa: E402

GIB = 2**30


def sizes(dry: bool) -> dict:
    if dry:
        return dict(config=Glm4vConfig.tiny(), name="tiny", prefill=64, prompt=16, new=8, seq=64)
    return dict(config=Glm4vConfig(), name="9B", prefill=2048, prompt=128, new=64, seq=2048)


def timed(fn, device, repeats: int = 3) -> float:
    """Best wall time of `repeats` calls after a warm-up call."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        began = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - began)
    return best


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak(device) -> float | None:
    return torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None


# ----------------------------------------------------------------------------- the checks
@torch.no_grad()
def parity(device) -> list:
    import random

    from minglm4v.processing.processor import Glm4vProcessor
    from minglm4v.study.shapes import random_scene
    directory = REPO / "data" / "micro-model"
    processor = Glm4vProcessor.from_pretrained(directory)
    picture = random_scene(random.Random(0)).image()
    inputs = processor(messages=[{"role": "user", "content": [{"type": "image", "image": picture},
                                                              {"type": "text", "text": "How many shapes are there?"}]}])
    inputs = {k: v for k, v in inputs.items() if isinstance(v, torch.Tensor)}
    reference = Glm4vForConditionalGeneration.from_pretrained(directory, dtype=torch.float32)(**inputs).logits
    model = Glm4vForConditionalGeneration.from_pretrained(directory, dtype=torch.bfloat16, device_map=device)
    logits = model(**{k: v.to(device) for k, v in inputs.items()}).logits.float().cpu()
    agree = (logits.argmax(-1) == reference.argmax(-1)).float().mean().item()
    return ["parity: micro model bf16 vs fp32 CPU", f"max |dlogit| {(logits - reference).abs().max():.3f}",
            f"of max |logit| {reference.abs().max():.1f}", f"top-1 agree {agree:.1%}"]


def random_model(config, device) -> Glm4vForConditionalGeneration:
    """Built on the meta device and then allocated in bf16 (never a fp32 copy of the 9B)."""
    with torch.device("meta"):
        model = Glm4vForConditionalGeneration(config).to(torch.bfloat16)
    fill_random(model.to_empty(device=device))
    return model.eval()


@torch.no_grad()
def fill_random(model) -> None:
    """Matrices ~ N(0, 0.02) (small, so 40 random layers keep the hidden states finite), norm weights 1,
    biases 0. Works on FSDP's sharded parameters too."""
    torch.manual_seed(0)
    for name, p in model.named_parameters():
        p.normal_(0, 0.02) if p.ndim > 1 else p.zero_() if name.endswith("bias") else p.fill_(1.0)


def transformers_twin(model, device):
    from transformers import Glm4vConfig as HFConfig
    from transformers import Glm4vForConditionalGeneration as HF
    with torch.device(device):  # fp32 first (40 GB for the 9B): built in bf16, transformers' lm_head gets fp32 input
        twin = HF(HFConfig.from_dict(model.config.to_dict())).to(torch.bfloat16)
    twin.load_state_dict(model.state_dict())
    return twin.eval()


@torch.no_grad()
def speed(size, device) -> list[list]:
    model = random_model(size["config"], device)
    twin = transformers_twin(model, device)
    vocab = size["config"].text_config.vocab_size
    prompt = torch.randint(0, vocab // 2, (1, size["prefill"]), device=device)
    rows, times = [], {}
    for name, m in (("minglm4v", model), ("transformers", twin)):
        times[name, "prefill"] = timed(lambda m=m: m(input_ids=prompt, logits_to_keep=1), device)
    short = prompt[:, :size["prompt"]]
    times["minglm4v", "decode"] = timed(lambda: model.generate(short, max_new_tokens=size["new"], eos_token_id=[]),
                                        device, repeats=2)
    times["transformers", "decode"] = timed(lambda: twin.generate(
        short, max_new_tokens=size["new"], min_new_tokens=size["new"], do_sample=False), device, repeats=2)
    same = (model(input_ids=short).logits - twin(input_ids=short).logits).abs().max().item()
    for kind, tokens in (("prefill", size["prefill"]), ("decode", size["new"])):
        ours, theirs = tokens / times["minglm4v", kind], tokens / times["transformers", kind]
        rows.append([f"{kind} tokens/s ({size['name']}, random bf16)", f"{ours:,.0f}", f"transformers {theirs:,.0f}",
                     f"ratio {ours / theirs:.2f}"])
    step_bytes = 2 * sum(p.numel() for n, p in model.named_parameters() if not n.startswith("model.visual."))
    bound = bandwidth(device) / step_bytes
    rows.append(["decode vs bandwidth bound", f"{size['new'] / times['minglm4v', 'decode']:,.0f} tok/s",
                 f"bound {bound:,.0f} tok/s", f"{size['new'] / times['minglm4v', 'decode'] / bound:.0%} "
                                              f"(logits equal to {same:.2g})"])
    return rows


def bandwidth(device) -> float:
    """Bytes/s a device-to-device copy of 1 GiB reaches (read + write)."""
    source = torch.empty(GIB // 4 if device.type == "cpu" else GIB, dtype=torch.uint8, device=device)
    target = torch.empty_like(source)
    return 2 * source.numel() / timed(lambda: target.copy_(source), device)


def training_step(model, config, batch: int, seq: int, device, world: int = 1):
    """Two steps as `train` takes them (the second with the optimizer state in place); (loss, peak bytes)."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-5)
    ids = torch.randint(0, config.text_config.vocab_size // 2, (batch, seq))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(2):
        loss, _ = train.train_step(model, [batch], world, True, device)
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return loss, peak(device)


def lora(size, device) -> list:
    config, seq = size["config"], size["seq"]
    model = random_model(config, device).train()
    train.configure(model, plan.train_options(8, True), plan.FROZEN)
    model.gradient_checkpointing_enable()
    loss, measured = training_step(model, config, 1, seq, device)
    planned = plan.estimate(config, 8, True, True, 1, seq)["per GPU"]
    return row(f"LoRA r8 step, 1 GPU, 1 x {seq}", loss, measured, planned)


def row(name, loss, measured, planned) -> list:
    return [name, f"loss {loss:.3f}", f"peak {measured / GIB:.2f} GiB" if measured else "peak n/a on CPU",
            f"plan {planned / GIB:.2f} GiB" + (f" ({planned / measured:.2f}x)" if measured else "")]


def fsdp_check(dry: bool) -> list:
    world = 2 if dry else torch.cuda.device_count()
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                             str(world), __file__, "--fsdp-worker", *(["--dry-run"] if dry else [])],
                            env=env, capture_output=True, text=True, timeout=400)
    if result.returncode:
        raise RuntimeError(result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "torchrun failed")
    return json.loads(result.stdout.strip().splitlines()[-1])


def fsdp_worker(dry: bool) -> None:
    """One rank of the FSDP check (under torchrun)."""
    size = sizes(dry)
    config, seq = size["config"], size["seq"]
    world = int(os.environ["WORLD_SIZE"])
    device = torch.device("cpu") if dry else torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    torch.distributed.init_process_group("gloo" if dry else "nccl")  # also for a single GPU (world 1)
    rank = torch.distributed.get_rank()
    budget = 0.9 * (torch.cuda.get_device_properties(device).total_memory if device.type == "cuda" else 2**62)
    rank_lora = 0 if plan.estimate(config, 0, True, True, 1, seq, world)["per GPU"] < budget else 8
    with torch.device("meta"):
        model = Glm4vForConditionalGeneration(config)
    train.configure(model, plan.train_options(rank_lora, True), plan.FROZEN)
    fsdp.shard(model, bf16=True)
    fill_random(model.to_empty(device=device))
    model.train().gradient_checkpointing_enable()
    loss, measured = training_step(model, config, 1, seq, device, world)
    peaks = [None] * world
    torch.distributed.all_gather_object(peaks, measured)
    planned = plan.estimate(config, rank_lora, True, True, 1, seq, world)["per GPU"]
    if rank == 0:
        kind = f"LoRA r{rank_lora}" if rank_lora else "full fine-tune"
        print(json.dumps(row(f"FSDP {kind} step, {world} x 1 x {seq}", loss,
                             max(peaks) if peaks[0] is not None else None, planned)))
    torch.distributed.destroy_process_group()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dry-run", action="store_true", help="tiny configs on the CPU (what the tests run)")
    p.add_argument("--fsdp-worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.fsdp_worker:
        return fsdp_worker(args.dry_run) or 0
    if not args.dry_run and not torch.cuda.is_available():
        print("no CUDA device: run with --dry-run to exercise the checks on the CPU", file=sys.stderr)
        return 1
    device, size = torch.device("cpu" if args.dry_run else "cuda"), sizes(args.dry_run)
    rows = []
    for name, check in (("parity", lambda: [parity(device)]), ("speed", lambda: speed(size, device)),
                        ("LoRA", lambda: [lora(size, device)]), ("FSDP", lambda: [fsdp_check(args.dry_run)])):
        began = time.perf_counter()
        try:
            found = check()
        except Exception as error:  # noqa: BLE001 -- one failing check must not hide the others' rows
            found = [[name, "failed", f"{type(error).__name__}: {error}"[:120], ""]]
        rows += [[*r, f"{time.perf_counter() - began:.0f} s"] for r in found]
        if device.type == "cuda":
            torch.cuda.empty_cache()
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    print(f"gpu_check on {torch.cuda.get_device_name() if device.type == 'cuda' else 'CPU (dry run)'}, "
          f"torch {torch.__version__}")
    for r in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip())
    return 1 if any(r[1] == "failed" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
