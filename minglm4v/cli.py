"""The command line: `python -m minglm4v chat | info | check | train | rl | plan | eval-shapes` (or `minglm4v`).

    chat  [--model DIR] [--image PATH ...|--video PATH] QUESTION   stream the model's reply; the
          thinking (<think>...</think>) is shown only with --show-thinking, the answer always
    info  DIR    config summary, parameters per component, dtype, bytes on disk
    check DIR    run minglm4v and transformers on the same checkpoint and input and print the
                 largest difference after every component (compare.py; the tool for real 9B weights)
    train --model DIR --data FILE.jsonl --output-dir OUT   fine-tune (see minglm4v/training/train.py)
    rl    --model DIR --data FILE.jsonl --output-dir OUT   reinforce with rewards (minglm4v/training/rl.py)
    plan  --preset glm41v-9b | --model DIR [--lora-rank R --bf16 --fsdp N ...]   the memory a training
          run needs per GPU (minglm4v/training/plan.py)
    eval-shapes [DIR] [--renderer shapes|varied|other]   accuracy per question kind on fresh shapes-world
                 pictures (minglm4v.study.shapes_eval)

DIR is an HF-layout model directory: config.json, safetensors, tokenizer files and
preprocessor_config.json (a GLM-4.1V-9B-Thinking download works unchanged). Without --model, chat
(and eval-shapes without DIR) uses the bundled micro model in data/micro-model of a source checkout;
an installed package has none and asks for a directory. No counterpart in transformers.
"""

import argparse
import math
import os
import sys
from pathlib import Path

import torch

from .generation.streaming import TextStreamer
from .model.config_moe import Glm4vMoeConfig
from .model.families import model_class as family
from .model.glm4v import COMPONENTS, component
from .model.moe import idle_expert_parameters
from .model.weights import SkipRandomInit, checkpoint_files, checkpoint_tensors
from .processing import special_tokens as st
from .processing.chat_template import parse_thinking
from .processing.processor import Glm4vProcessor
from .processing.video import load_video
from .study.compare import compare_checkpoint, table
from .study.shapes_eval import EVAL_SEED, RENDERERS
from .study.shapes_eval import main as eval_shapes
from .training import plan, rl, train


class CliError(Exception):
    """A problem with the user's input: printed as one line, no traceback."""


def write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()  # the reply streams token by token


# ----------------------------------------------------------------------------- chat
class ReplyPrinter:
    """Receives streamed text and prints it in two sections, split at the thinking tags (single
    tokens, so a chunk holds a tag whole or, at worst, its start). Text before the first tag is held
    back: it is thinking if `</think>` follows (a prompt that pre-filled `<think>`), dropped if
    `<think>` or `<answer>` follows, and the answer if no tag ever comes."""

    OPENS = {st.THINK: "think", st.END_THINK: "answer", st.ANSWER: "answer", st.END_ANSWER: "done"}
    CLOSES = {st.END_THINK: "think", st.END_ANSWER: "answer"}

    def __init__(self, show_thinking: bool, write):
        self.show_thinking, self.write = show_thinking, write
        self.section, self.pending, self.text, self.fresh = None, "", "", True

    def __call__(self, text: str) -> None:
        self.text += text
        self.pending += text
        while hits := [(self.pending.find(tag), tag) for tag in self.OPENS if tag in self.pending]:
            at, tag = min(hits)
            if self.section is not None:
                self._out(self.pending[:at])
            elif tag in self.CLOSES:
                self._enter(self.CLOSES[tag])
                self._out(self.pending[:at])
            self.pending = self.pending[at + len(tag):]
            self._enter(self.OPENS[tag])
        if self.section is not None:  # hold back only what could be the start of a tag
            keep = max((k for tag in self.OPENS for k in range(1, len(tag)) if self.pending.endswith(tag[:k])),
                       default=0)
            self._out(self.pending[:len(self.pending) - keep])
            self.pending = self.pending[len(self.pending) - keep:]

    def end(self) -> None:
        if self.section is None:
            self._enter("answer")
        self._out(self.pending)
        self.pending = ""
        self.write("\n")

    def _enter(self, section: str) -> None:
        if section in ("think", "answer") and section != self.section:
            if self.show_thinking:
                self.write(("\n\n" if self.section else "") + ("[thinking]\n" if section == "think" else "[answer]\n"))
            self.fresh = True
        self.section = section

    def _out(self, text: str) -> None:
        if self.section == "answer" or self.section == "think" and self.show_thinking:
            text = text.lstrip() if self.fresh else text
            if text:
                self.write(text)
                self.fresh = False


DOWNLOAD = "`huggingface-cli download zai-org/GLM-4.1V-9B-Thinking --local-dir DIR`"


def _model_dir(path) -> Path:
    """The model directory given, or (None) the bundled micro model."""
    directory = _bundled_model() if path is None else Path(path)
    if not (directory / "config.json").is_file():
        raise CliError(f"no model in {directory} (no config.json): give the directory of a downloaded "
                       f"checkpoint, e.g. {DOWNLOAD}")
    return directory


def _bundled_model() -> Path:
    """data/micro-model of the source checkout this package runs from. The micro model ships with the
    repository, not inside the package: installed from a wheel, there is none, and the error says so."""
    checkout = Path(__file__).resolve().parents[1]
    directory = checkout / "data" / "micro-model"
    if not ((checkout / "pyproject.toml").is_file() and (directory / "config.json").is_file()):
        raise CliError("no model directory given, and the bundled micro model is not at hand: it lives in "
                       "data/micro-model of a minglm4v source checkout (made by scripts/train_micro_model.py), "
                       f"not in an installed package. Pass a model directory (--model DIR), e.g. from {DOWNLOAD}")
    return directory


def _device_and_dtype(device: str, dtype: str):
    available = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    try:
        parsed = torch.device(device)
    except RuntimeError:
        parsed = torch.device("meta")  # not a device name at all
    if parsed.type not in available:
        raise CliError(f"--device {device!r} is not a device minglm4v runs on; use cpu, cuda, cuda:N or mps")
    if not available[parsed.type]:
        raise CliError(f"--device {device}: {parsed.type.upper()} is not available in this PyTorch; use --device cpu")
    return parsed, None if dtype == "auto" else getattr(torch, dtype)


def chat(args) -> int:
    if args.max_new_tokens is not None and args.max_new_tokens < 1:
        raise CliError(f"--max-new-tokens must be at least 1, got {args.max_new_tokens}")
    if not (math.isfinite(args.temperature) and args.temperature >= 0):
        raise CliError(f"--temperature must be a finite number >= 0 (0 = greedy), got {args.temperature}")
    if args.temperature == 0 and (args.top_p is not None or args.top_k is not None or args.seed is not None):
        raise CliError("--top-p, --top-k and --seed only apply when sampling; add --temperature T (> 0)")
    if args.seed is not None and not 0 <= args.seed < 2**64:
        raise CliError(f"--seed must be a whole number from 0 to 2**64 - 1 (a torch.Generator seed), got {args.seed}")
    directory = _model_dir(args.model)
    device, dtype = _device_and_dtype(args.device, args.dtype)
    processor = Glm4vProcessor.from_pretrained(directory)
    content = [{"type": "image", "image": path} for path in args.image or []]
    video_kwargs = {}
    if args.video:
        frames, video_kwargs = load_video(args.video)
        content.append({"type": "video", "video": frames})
    inputs = processor(messages=[{"role": "user", "content": content + [{"type": "text", "text": args.question}]}],
                       **video_kwargs)
    model = family(directory).from_pretrained(directory, dtype=dtype, device_map=device)  # 4.1V or 4.5V
    limit, length = model.config.text_config.max_position_embeddings, inputs["input_ids"].shape[1]
    if length >= limit:
        raise CliError(f"the prompt is {length} tokens but the model supports {limit} positions "
                       f"(max_position_embeddings); use fewer or smaller images, a shorter video or question")
    new_tokens = min(args.max_new_tokens or limit, limit - length)  # default: as many as fit
    if args.max_new_tokens is not None and new_tokens < args.max_new_tokens:
        print(f"note: only {new_tokens} new tokens fit after the {length}-token prompt", file=sys.stderr)
    tokenizer = processor.tokenizer
    printer = ReplyPrinter(args.show_thinking, write)
    sampling = dict(do_sample=True, temperature=args.temperature, top_p=args.top_p, top_k=args.top_k,
                    generator=torch.Generator(device).manual_seed(args.seed) if args.seed is not None else None)
    budget = {}
    if args.thinking_budget is not None:
        budget = dict(thinking_budget=args.thinking_budget,
                      thinking_end_ids=tokenizer.convert_tokens_to_ids([st.END_THINK, st.ANSWER]))
    model.generate(**{k: v.to(device) for k, v in inputs.items() if isinstance(v, torch.Tensor)},
                   max_new_tokens=new_tokens, streamer=TextStreamer(tokenizer, on_text=printer),
                   suppress_tokens=tokenizer.ids_without_text(model.config.text_config.vocab_size),
                   **(sampling if args.temperature > 0 else {}), **budget)
    printer.end()
    thinking, answer = parse_thinking(printer.text)
    if not answer and st.END_THINK not in printer.text:
        print(f"note: the reply stopped while still thinking ({new_tokens} tokens); raise --max-new-tokens "
              f"or cap the thinking with --thinking-budget N (or see it with --show-thinking)", file=sys.stderr)
    return 0


# ----------------------------------------------------------------------------- info
def info(args) -> int:
    directory = _model_dir(args.dir)
    model_class = family(directory)
    config = model_class.config_class.from_pretrained(directory)
    t, v = config.text_config, config.vision_config
    counts, dtypes, skipped = dict.fromkeys(COMPONENTS, 0), {}, 0
    files = checkpoint_files(directory) if list(directory.glob("*.safetensors")) else []
    if files:
        tensors = checkpoint_tensors(files)
    else:  # a config.json alone (e.g. the full-size model's): count the parameters it defines, on meta
        with torch.device("meta"), SkipRandomInit():
            model = model_class(config)
        tensors = {key: (tuple(p.shape), "none") for key, p in model.named_parameters()}
    for key, (shape, dtype) in tensors.items():
        if model_class.skipped_key(key, config):
            skipped += 1
            continue
        part = component(key)
        counts[part] = counts.get(part, 0) + torch.Size(shape).numel()
        dtypes[dtype] = dtypes.get(dtype, 0) + 1
    write(f"model      {directory} ({config.model_type})\n"
          f"text       {t.num_hidden_layers} layers, hidden {t.hidden_size}, {t.num_attention_heads} heads "
          f"({t.num_key_value_heads} kv) of {t.head_dim}, mlp {t.intermediate_size}, vocab {t.vocab_size}, "
          f"max positions {t.max_position_embeddings}, mrope {t.mrope_section}\n")
    if isinstance(config, Glm4vMoeConfig):
        write(f"experts    {t.n_routed_experts} routed of width {t.moe_intermediate_size}, {t.num_experts_per_tok} "
              f"per token (from {t.topk_group} of {t.n_group} groups) + {t.n_shared_experts} shared, "
              f"from layer {t.first_k_dense_replace} on\n")
    write(f"vision     {v.depth} blocks, hidden {v.hidden_size}, {v.num_heads} heads, patch {v.patch_size}, "
          f"merge {v.spatial_merge_size}x{v.spatial_merge_size}, out {v.out_hidden_size}\n"
          f"eos        {t.eos_token_id}, pad {t.pad_token_id}, image token {config.image_token_id}\n")
    for name, count in counts.items():
        write(f"  {name:<16}{count:>16,} parameters\n")
    total = sum(counts.values())
    write(f"  {'total':<16}{total:>16,} parameters\n")
    if isinstance(config, Glm4vMoeConfig):  # a token skips the routed experts it did not choose
        write(f"  {'active/token':<16}{total - idle_expert_parameters(t):>16,} parameters (all but the "
              f"{t.n_routed_experts - t.num_experts_per_tok} unchosen experts of each MoE layer)\n")
    if skipped:
        write(f"skipped    {skipped} tensors after the last layer (the multi-token-prediction layer: not loaded)\n")
    if not files:
        write("weights    none: counted from config.json\n")
        return 0
    write(f"dtype      {', '.join(f'{d} ({n} tensors)' for d, n in sorted(dtypes.items()))}\n"
          f"on disk    {sum(p.stat().st_size for p in files):,} bytes in {len(files)} safetensors file(s)\n")
    return 0


# ----------------------------------------------------------------------------- check
def check(args) -> int:
    directory = _model_dir(args.dir)
    device, dtype = _device_and_dtype(args.device, args.dtype)
    rows, logits = compare_checkpoint(directory, dtype=dtype, device=device)
    write(table(rows) + f"{logits}\n")
    return 0 if logits.ok else 1


# ----------------------------------------------------------------------------- entry point
def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m minglm4v", description="GLM-4.1V-Thinking from scratch")
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("chat", help="ask a question about images or a video, stream the reply")
    c.add_argument("question")
    c.add_argument("--model", help="model directory (default: the bundled micro model of a source checkout)")
    media = c.add_mutually_exclusive_group()
    media.add_argument("--image", action="append", metavar="PATH", help="an image file (repeat for several)")
    media.add_argument("--video", metavar="PATH", help="a video file (needs PyAV: pip install av)")
    c.add_argument("--max-new-tokens", type=int, default=None,
                   help="cap on generated tokens (default: as many as fit in max_position_embeddings)")
    c.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default); > 0 samples")
    c.add_argument("--top-p", type=float)
    c.add_argument("--top-k", type=int)
    c.add_argument("--seed", type=int, help="makes sampling reproducible")
    c.add_argument("--thinking-budget", type=int, metavar="N", help="after N tokens of thinking, make it answer")
    c.add_argument("--show-thinking", action="store_true", help="print the thinking as well as the answer")
    sub.add_parser("info", help="summarise a model directory").add_argument("dir")
    train.add_arguments(sub.add_parser("train", help="fine-tune on JSON Lines conversations (full or LoRA)"))
    rl.add_arguments(sub.add_parser("rl", help="reinforce with rule-based rewards (GRPO) on prompts with answers"))
    plan.add_arguments(sub.add_parser("plan", help="the memory a training run needs per GPU, before it runs"))
    k = sub.add_parser("check", help="compare minglm4v with transformers on a checkpoint")
    k.add_argument("dir")
    e = sub.add_parser("eval-shapes", help="score a model on fresh pictures of the shapes world")
    e.add_argument("dir", nargs="?", help="model directory (default: the bundled micro model of a source checkout)")
    e.add_argument("--pictures", type=int, default=500)
    e.add_argument("--seed", type=int, default=EVAL_SEED, help="never one used to make training data")
    e.add_argument("--renderer", default="shapes", choices=list(RENDERERS),
                   help="who draws the pictures: the training world (default), it with more variation, "
                        "or an independent renderer (transfer)")
    for command in (c, k):
        command.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
        command.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"],
                             help="auto = as stored in the checkpoint")
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command == "eval-shapes":
            return eval_shapes(_model_dir(args.dir), args.pictures, args.seed, renderer=args.renderer)
        return {"chat": chat, "info": info, "check": check, "train": train.run, "rl": rl.run,
                "plan": plan.run}[args.command](args)
    except BrokenPipeError:  # the reader went away (`| head`): stop quietly, and keep Python's exit flush quiet too
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (CliError, ValueError, TypeError, OSError, ImportError) as error:  # bad input, never a traceback
        print(f"error: {error}", file=sys.stderr)
        return 1
