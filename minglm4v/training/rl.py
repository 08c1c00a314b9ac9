"""Reinforcement learning with verifiable rewards: `python -m minglm4v rl --model DIR --data F.jsonl --output-dir OUT`.

GLM-4.1V-Thinking's RL stage (arXiv 2507.01006 §5, "RLCS"): GRPO (grpo.py) on completions sampled by the
model itself and scored by rules (rewards.py), with curriculum and dynamic sampling (rollouts.py). One step:

    1. draw expansion_ratio x batch prompts, weighted by the curriculum   (the same draw on every process)
    2. each process samples G completions for its share of them, scores them, and keeps its share of the
       batch among the groups whose rewards differ
    3. loss over the kept completions, gradients summed over processes, AdamW at a constant learning rate
       (--num-iterations times on the same rollouts: after the first, the ratio moves and the clip acts)
    4. every process updates the pass rates and the expansion ratio from all groups

The model, its LoRA adapters, frozen parts, checkpoints and DDP set-up are the train command's
(train.py, checkpoints.py). Under `torchrun --nproc_per_node N -m minglm4v rl ...` the processes share
the prompts; their gradients are all-reduced by hand rather than by DistributedDataParallel, since a
process may have no group with signal in a step.

    OUT/                  the final model, a complete HF-layout directory (LoRA merged; OUT/adapter/ alone)
    OUT/checkpoint-N/     every --save-every steps, for --resume (with the pass rates and expansion ratio)
    OUT/rl_log.jsonl      per step: mean reward, accuracy (all and per answer type), completion length,
                          clip fraction, KL to the start model, groups drawn and dropped, expansion ratio
    OUT/rollouts.jsonl    one object per sampled completion: step, group, line, completion, reward,
                          advantage, used (false: its group was dropped)
    OUT/pass_rates.jsonl  with --pass-at-k K: the start model's pass rate and pass@K per line

No counterpart in transformers (TRL's `GRPOTrainer` plays this role).
"""

import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from ..model.families import model_class
from ..processing.processor import Glm4vProcessor
from .checkpoints import PASS_RATES, RL_LOG, ROLLOUTS, refuse_to_overwrite, resume, save_checkpoint, save_model
from .grpo import LOSS_TYPES, completion_logprobs, group_advantages, policy_loss, rank_share
from .rollouts import Curriculum, Expansion, group_batch, read_prompts, sample_groups, select_groups
from .train import add_model_arguments, check_model_arguments, distributed, prepare_model, sum_over_ranks


def add_arguments(p) -> None:
    add_model_arguments(p, "JSON Lines prompts with reference answers (see minglm4v/training/rollouts.py)")
    # each process holds the whole model (what the checkpoints ask); no router loss (GLM-4.5V) in RL
    p.set_defaults(lr=1e-5, fsdp=False, router_aux_loss=False)
    p.add_argument("--batch-size", type=int, default=8, help="prompts (groups) per step, all processes together")
    p.add_argument("--group-size", type=int, default=8, help="completions sampled per prompt")
    p.add_argument("--max-new-tokens", type=int, default=128, help="longest completion")
    p.add_argument("--thinking-budget", type=int, help="after this many tokens still thinking, </think><answer> "
                   "is forced (no loss on it); default: 3/4 of --max-new-tokens")
    p.add_argument("--loss-type", default="grpo", choices=LOSS_TYPES,
                   help="grpo: mean over completions of each one's token mean (the paper's); see grpo.py")
    p.add_argument("--epsilon", type=float, default=0.2, help="lower clip of the ratio: 1 - epsilon")
    p.add_argument("--epsilon-high", type=float, default=0.28, help="upper clip of the ratio: 1 + epsilon-high")
    p.add_argument("--beta", type=float, default=0.0, help="weight of the k3 KL to the start model (0: none)")
    p.add_argument("--num-iterations", type=int, default=1, help="updates per batch of rollouts (TRL's mu): "
                   "from the second on, the ratio to the sampling policy moves and the clip acts")
    p.add_argument("--pass-at-k", type=int, default=0, metavar="K", help="before step 1, sample K completions "
                   "per prompt with the start model: pass_rates.jsonl and the curriculum's first rates")
    p.add_argument("--no-curriculum", action="store_true", help="draw prompts uniformly")
    p.add_argument("--no-dynamic-sampling", action="store_true",
                   help="draw exactly --batch-size prompts and train on every group, all-equal ones too")


def _check(args, world: int) -> set[str]:
    frozen = check_model_arguments(args)
    for name in ("batch_size", "group_size", "max_new_tokens", "num_iterations"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.group_size < 2:
        raise ValueError("--group-size must be at least 2: advantages compare completions within a group")
    if args.batch_size % world:
        raise ValueError(f"--batch-size {args.batch_size} must be a multiple of the {world} processes")
    if args.thinking_budget is None:
        args.thinking_budget = args.max_new_tokens * 3 // 4
    if not 0 <= args.thinking_budget < args.max_new_tokens:
        raise ValueError(f"--thinking-budget must be in [0, --max-new-tokens), got {args.thinking_budget}")
    if not (0 <= args.epsilon < 1 and args.epsilon_high >= 0 and args.beta >= 0 and args.pass_at_k >= 0):
        raise ValueError("--epsilon must be in [0, 1); --epsilon-high, --beta and --pass-at-k must be >= 0")
    return frozen


def run(args) -> int:
    with distributed(args.device) as (rank, world, device):
        return _rl(args, _check(args, world), rank, world, device)


def _rl(args, frozen, rank, world, device) -> int:
    output = Path(args.output_dir)
    refuse_to_overwrite(output, args.resume)
    processor = Glm4vProcessor.from_pretrained(args.model)
    prompts = read_prompts(args.data)
    if len(prompts) < world:
        raise ValueError(f"{args.data} holds {len(prompts)} prompt(s) for {world} processes; each needs one")
    model = prepare_model(args, frozen, device)
    reference = None
    if args.beta:  # the start model, fixed: what the KL term keeps the policy near
        reference = model_class(args.model).from_pretrained(args.model, dtype=torch.float32,
                                                            device_map=device).eval().requires_grad_(False)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=args.lr, weight_decay=args.weight_decay)
    # a constant learning rate; the scheduler only keeps the checkpoint format of the train command
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    curriculum, expansion = Curriculum(len(prompts)), Expansion()
    torch.manual_seed(args.seed + rank)  # LoRA dropout masks differ per rank
    start = 0
    if args.resume:
        start, extra = resume(model, optimizer, scheduler, args, rank)
        curriculum.rates, expansion.ratio = extra["rates"].numpy().copy(), extra["expansion"]
    if rank == 0:
        output.mkdir(parents=True, exist_ok=True)
        print(f"{len(prompts)} prompts, {sum(p.numel() for p in trainable):,} trainable parameters, {world} "
              f"process(es), {args.batch_size} groups of {args.group_size} per step", flush=True)
    if args.pass_at_k and not args.resume:
        curriculum.rates = pass_rates(model, processor, prompts, args, rank, world, output)
    logs = [(output / name).open("a") for name in (RL_LOG, ROLLOUTS)] if rank == 0 else None
    bar = tqdm(total=args.max_steps, initial=start, disable=rank != 0, desc="rl")
    for step in range(start, args.max_steps):
        record, rows = rl_step(model, reference, optimizer, trainable, processor, prompts, curriculum, expansion,
                               args, step, rank, world)
        bar.set_postfix(reward=f"{record['reward']:.3f}", acc=f"{record['accuracy']:.3f}",
                        len=f"{record['completion_length']:.0f}")
        bar.update()
        if logs:
            logs[0].write(json.dumps(record) + "\n")
            logs[1].writelines(json.dumps(row) + "\n" for row in rows)
            for log in logs:
                log.flush()
        if args.save_every and (step + 1) % args.save_every == 0:
            save_checkpoint(model, optimizer, scheduler, step + 1, args,
                            extra={"rates": torch.from_numpy(curriculum.rates.copy()), "expansion": expansion.ratio})
    bar.close()
    if rank == 0:
        save_model(model, output, Path(args.model))
        for log in logs:
            log.close()
        print(f"saved {output}", flush=True)
    return 0


def rl_step(model, reference, optimizer, trainable, processor, prompts, curriculum, expansion, args, step: int,
            rank: int, world: int) -> tuple[dict, list[dict]]:
    """One GRPO step (see the module docstring); returns the rl_log record and the rollouts' rows."""
    began, G = time.perf_counter(), args.group_size
    rng = np.random.default_rng([args.seed, step])
    wanted = args.batch_size if args.no_dynamic_sampling else expansion.prompts_for(args.batch_size)
    drawn = curriculum.sample(rng, -(-wanted // world) * world)  # the same on every process
    mine = drawn[rank::world]
    generator = torch.Generator(next(model.parameters()).device).manual_seed(
        int(np.random.default_rng([args.seed, step, rank]).integers(2**62)))
    model.eval()
    rollouts = sample_groups(model, processor, [prompts[i] for i in mine], G, args.max_new_tokens,
                             args.thinking_budget, generator)
    model.train()
    advantages = group_advantages(rollouts.rewards)
    quota = args.batch_size // world
    kept = list(range(len(mine)))[:quota] if args.no_dynamic_sampling else select_groups(rollouts.rewards, quota)
    rows = [i * G + g for i in kept for g in range(G)]
    ids, mask = rollouts.completion_ids[rows], rollouts.mask[rows]
    suppress = torch.tensor(processor.tokenizer.ids_without_text(model.config.text_config.vocab_size),
                            dtype=torch.long, device=ids.device)
    batch = group_batch([rollouts.examples[i] for i in kept], G, processor, ids.device) if rows else None
    clipped, kl = _update(model, reference, optimizer, trainable, batch, ids, mask, advantages.flatten()[rows],
                          suppress, args, world)
    groups = _gather(_summaries(rollouts, mine, advantages, kept))
    record = {"step": step + 1, **_rewards_summary(groups), "clip_fraction": clipped, "kl": kl, "groups": len(groups),
              "groups_dropped": sum(not g["used"] for g in groups),
              "expansion_ratio": expansion.ratio}
    if not args.no_curriculum:
        for g in groups:
            curriculum.update(g["index"], float(np.mean(g["correct"])))
    expansion.update(sum(len(set(g["rewards"])) == 1 for g in groups) / len(groups))
    record.update(tiers=curriculum.tiers(), seconds=time.perf_counter() - began)
    rows = [{"step": step + 1, "group": j, "line": g["line"], "completion": text, "reward": r, "advantage": a,
             "used": g["used"]} for j, g in enumerate(groups)
            for text, r, a in zip(g["texts"], g["rewards"], g["advantages"])]
    return record, rows


def _update(model, reference, optimizer, trainable, batch, ids, mask, advantages, suppress, args,
            world: int) -> tuple[float, float]:
    """--num-iterations optimizer steps on this process's kept completions (ids, mask (B, C), advantages
    (B,); B may be 0), gradients summed over the processes. Returns the mean clip fraction and KL."""
    sequences, tokens = sum_over_ranks(len(ids), int(mask.sum()))
    clipped = kl = 0.0
    old_logp = ref_logp = None
    for _ in range(args.num_iterations if sequences else 0):  # no group anywhere had signal: no update
        stats = {"clip_fraction": 0.0, "kl": 0.0}
        if len(ids):
            with torch.autocast(ids.device.type, dtype=torch.bfloat16, enabled=args.bf16):
                logp = completion_logprobs(model, batch, ids, mask, suppress)
                if reference is not None and ref_logp is None:
                    with torch.no_grad():
                        ref_logp = completion_logprobs(reference, batch, ids, mask, suppress)
            # the policy that sampled: these very weights on the first pass (ratio 1), then held fixed
            old_logp = logp.detach() if old_logp is None else old_logp
            loss, stats = policy_loss(logp, old_logp, advantages.to(logp.device), mask, loss_type=args.loss_type,
                                      epsilon_low=args.epsilon, epsilon_high=args.epsilon_high, beta=args.beta,
                                      ref_logp=ref_logp, max_completion_length=args.max_new_tokens,
                                      active_tokens=tokens)
            (loss * rank_share(args.loss_type, len(ids), sequences, world)).backward()
        _all_reduce_gradients(trainable, world)
        torch.nn.utils.clip_grad_norm_(trainable, args.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        shares = sum_over_ranks(stats["clip_fraction"] * int(mask.sum()), stats["kl"] * int(mask.sum()))
        clipped += shares[0] / max(tokens, 1) / args.num_iterations
        kl += shares[1] / max(tokens, 1) / args.num_iterations
    return clipped, kl


def pass_rates(model, processor, prompts, args, rank: int, world: int, output: Path) -> np.ndarray:
    """The start model's pass rate (share of right completions) and pass@K of every prompt, K = --pass-at-k:
    written to OUT/pass_rates.jsonl, and returned as the curriculum's first rates."""
    model.eval()
    mine, summaries = list(range(rank, len(prompts), world)), []
    for start in tqdm(range(0, len(mine), args.batch_size), disable=rank != 0, desc=f"pass@{args.pass_at_k}"):
        chunk = mine[start:start + args.batch_size]
        generator = torch.Generator(next(model.parameters()).device).manual_seed(
            int(np.random.default_rng([args.seed, rank, start, 1]).integers(2**62)))
        rollouts = sample_groups(model, processor, [prompts[i] for i in chunk], args.pass_at_k,
                                 args.max_new_tokens, args.thinking_budget, generator)
        summaries += _summaries(rollouts, chunk, torch.zeros_like(rollouts.rewards), [])
    model.train()
    groups = sorted(_gather(summaries), key=lambda g: g["index"])
    rates = np.array([float(np.mean(g["correct"])) for g in groups])
    if rank == 0:
        with (output / PASS_RATES).open("w") as f:
            f.writelines(json.dumps({"line": g["line"], "answer_type": g["type"], "pass_rate": rate,
                                     f"pass@{args.pass_at_k}": any(g["correct"])}) + "\n"
                         for g, rate in zip(groups, rates))
        print(f"start model: pass rate {rates.mean():.3f}, pass@{args.pass_at_k} {(rates > 0).mean():.3f}, "
              f"never solved {(rates == 0).mean():.3f}, always {(rates == 1).mean():.3f}", flush=True)
    return rates


# ----------------------------------------------------------------------------- bookkeeping across processes
def _summaries(rollouts, indices: list[int], advantages, kept: list[int]) -> list[dict]:
    """Plain-Python facts of each group (what the logs, the curriculum and the other processes need)."""
    G = rollouts.rewards.shape[1]
    return [{"index": index, "line": p.conversation.line, "type": p.answer_type,
             "texts": rollouts.texts[i * G:(i + 1) * G], "lengths": rollouts.lengths[i * G:(i + 1) * G],
             "rewards": rollouts.rewards[i].tolist(), "correct": rollouts.correct[i].tolist(),
             "advantages": advantages[i].tolist(), "used": i in kept}
            for i, (index, p) in enumerate(zip(indices, rollouts.prompts))]


def _rewards_summary(groups: list[dict]) -> dict:
    """Mean reward, accuracy overall and per answer type, mean completion length (tokens) of all groups."""
    by_type = {}
    for g in groups:
        by_type.setdefault(g["type"], []).extend(g["correct"])
    return {"reward": float(np.mean([r for g in groups for r in g["rewards"]])),
            "accuracy": float(np.mean([c for g in groups for c in g["correct"]])),
            "accuracy_by_type": {t: float(np.mean(c)) for t, c in sorted(by_type.items())},
            "completion_length": float(np.mean([n for g in groups for n in g["lengths"]]))}


def _gather(items: list) -> list:
    """Every process's list, concatenated in rank order (the list itself on one process)."""
    if not dist.is_initialized():
        return items
    everyone = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, items)
    return [item for part in everyone for item in part]


def _all_reduce_gradients(parameters, world: int) -> None:
    """Sum each gradient over the processes (a process without a group this step adds zeros)."""
    if world == 1:
        return
    for p in parameters:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad)
