"""The rl command (minglm4v/training/rl.py, rollouts.py) on the bundled micro model, with pictures drawn here
by PIL (not by minglm4v.study.shapes) and hand-written answers: every logged reward and advantage can be
recomputed from rollouts.jsonl, the output loads in transformers, resuming equals an uninterrupted run,
two gloo processes share the prompts, padding rows are never sampled, forced tokens carry no loss, and
every bad input is a one-line error."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers import MICRO, REPO, load_hf
from PIL import Image, ImageDraw
from safetensors.torch import load_file

from minglm4v import Glm4vForConditionalGeneration, Glm4vProcessor, cli
from minglm4v.processing import special_tokens as st
from minglm4v.training import rl
from minglm4v.training.grpo import completion_logprobs, group_advantages
from minglm4v.training.rewards import reward
from minglm4v.training.rollouts import (
    Curriculum,
    Expansion,
    group_batch,
    prompt_example,
    read_prompts,
    sample_groups,
    select_groups,
)

FILLS = {"red": (205, 45, 35), "blue": (35, 75, 205), "green": (45, 160, 70)}  # shades the micro model never saw


def box(x1, y1, x2, y2, size):
    return st.BEGIN_OF_BOX + f"[{','.join(str(round(v / size * 1000)) for v in (x1, y1, x2, y2))}]" + st.END_OF_BOX


def write_data(directory, pictures=4):
    """Per picture (one to three discs in a row, 140 px): a count, a colour and a position question; the
    position one is scored by continuous IoU, so its groups nearly always carry signal."""
    directory.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(pictures):
        image, colour, count = Image.new("RGB", (140, 140), "white"), list(FILLS)[i % 3], 1 + i % 3
        pen = ImageDraw.Draw(image)
        for k in range(count):
            pen.ellipse([10 + 42 * k, 20, 40 + 42 * k, 50], fill=FILLS[colour])
        image.save(directory / f"disc{i}.png")
        ask = [{"role": "user", "content": f"<image>{text}"} for text in
               ("How many shapes are there?", "What color is the circle?" if count == 1 else "Is there a red circle?",
                f"Where is the {colour} circle?")]
        lines += [{"messages": [ask[0]], "images": [f"disc{i}.png"], "answer": str(count)},
                  {"messages": [ask[1]], "images": [f"disc{i}.png"],
                   "answer": colour if count == 1 else ("yes" if colour == "red" else "no")},
                  {"messages": [ask[2]], "images": [f"disc{i}.png"], "answer": f"top left {box(10, 20, 41, 51, 140)}",
                   "verifier": "iou"}]
    path = directory / "rl.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_data(tmp_path_factory.mktemp("rl-data"))


def run_rl(*argv):
    return rl.run(cli.parser().parse_args(["rl", *argv]))


def records(directory, name="rl_log.jsonl"):
    return [json.loads(line) for line in (directory / name).read_text().splitlines()]


ARGS = ["--batch-size", "2", "--group-size", "4", "--max-new-tokens", "64", "--lr", "1e-3"]


def test_rl_end_to_end_every_reward_can_be_audited(data, tmp_path):
    run_rl("--model", str(MICRO), "--data", str(data), "--output-dir", str(tmp_path), "--max-steps", "2", *ARGS)
    log, rows = records(tmp_path), records(tmp_path, "rollouts.jsonl")
    assert [r["step"] for r in log] == [1, 2]
    assert set(log[0]) >= {"reward", "accuracy", "accuracy_by_type", "completion_length", "clip_fraction", "kl",
                           "groups", "groups_dropped", "expansion_ratio"}
    assert len(rows) == 4 * sum(r["groups"] for r in log)
    lines = {p.conversation.line: p for p in read_prompts(data)}
    for step in (1, 2):
        groups = {}
        for row in rows:
            if row["step"] == step:
                groups.setdefault(row["group"], []).append(row)
        assert len(groups) == log[step - 1]["groups"]
        assert sum(not g[0]["used"] for g in groups.values()) == log[step - 1]["groups_dropped"]
        assert log[step - 1]["reward"] == pytest.approx(np.mean([r["reward"] for r in rows if r["step"] == step]))
        for group in groups.values():
            prompt = lines[group[0]["line"]]
            # the audit: each logged reward is the rule's reward of the logged completion
            assert [r["reward"] for r in group] == [reward(r["completion"], prompt.answer, prompt.verifier).reward
                                                    for r in group]
            expected = group_advantages(torch.tensor([[r["reward"] for r in group]]))[0].tolist()
            assert [r["advantage"] for r in group] == pytest.approx(expected, abs=1e-6)
            assert all(r["completion"].startswith(st.THINK) or r["reward"] == 0 for r in group)
    assert any(r["used"] for r in rows)  # some group had signal, so the weights moved
    inputs = Glm4vProcessor.from_pretrained(tmp_path)(
        messages=[{"role": "user", "content": [{"type": "image", "path": str(data.parent / "disc0.png")},
                                               {"type": "text", "text": "How many shapes are there?"}]}])
    with torch.no_grad():
        ours = Glm4vForConditionalGeneration.from_pretrained(tmp_path)(**inputs).logits
        theirs = load_hf(tmp_path)(**inputs).logits
        start = Glm4vForConditionalGeneration.from_pretrained(MICRO)(**inputs).logits
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    assert (ours - start).abs().max() > 1e-4


def test_pass_at_k_measures_the_start_model_and_seeds_the_curriculum(data, tmp_path):
    run_rl("--model", str(MICRO), "--data", str(data), "--output-dir", str(tmp_path), "--max-steps", "1", *ARGS,
           "--pass-at-k", "3")
    rates = records(tmp_path, "pass_rates.jsonl")
    assert [r["line"] for r in rates] == list(range(1, 13))
    assert all(r["pass_rate"] in (0, 1 / 3, 2 / 3, 1) and r["pass@3"] == (r["pass_rate"] > 0) for r in rates)
    assert {r["answer_type"] for r in rates} == {"exact", "iou"}
    assert records(tmp_path)[0]["tiers"]["unseen"] == 0  # every prompt has its start rate


def test_resume_equals_an_uninterrupted_run(data, tmp_path):
    args = ["--model", str(MICRO), "--data", str(data), "--max-steps", "4", "--save-every", "2", *ARGS,
            "--lora-rank", "2", "--loss-type", "dapo", "--beta", "0.1", "--num-iterations", "2"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    run_rl(*args, "--output-dir", str(straight))
    shutil.copytree(straight / "checkpoint-2", resumed / "checkpoint-2")
    with pytest.raises(ValueError, match="already holds checkpoints"):
        run_rl(*args, "--output-dir", str(resumed))
    run_rl(*args, "--output-dir", str(resumed), "--resume")
    def drop_time(log):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in log]
    assert drop_time(records(resumed)) == drop_time(records(straight))[2:]
    assert records(resumed, "rollouts.jsonl") == [r for r in records(straight, "rollouts.jsonl") if r["step"] > 2]
    assert any(r["kl"] > 0 for r in records(straight)[1:])  # beta > 0 and the weights moved: a KL to the start
    assert any(r["clip_fraction"] > 0 for r in records(straight))  # the second pass over a batch clips
    a, b = load_file(straight / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_two_gloo_processes_share_the_prompts(data, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                    "-m", "minglm4v", "rl", "--model", str(MICRO), "--data", str(data), "--output-dir", str(tmp_path),
                    "--max-steps", "2", *ARGS, "--no-dynamic-sampling"], env=env, check=True, capture_output=True,
                   timeout=300)
    log, rows = records(tmp_path), records(tmp_path, "rollouts.jsonl")
    assert [r["groups"] for r in log] == [2, 2]  # one prompt per process, both logged by rank 0
    assert len(rows) == 2 * 2 * 4 and all(r["used"] for r in rows)
    assert (tmp_path / "model.safetensors").is_file()
    one = tmp_path / "one.jsonl"
    one.write_text(data.read_text().splitlines()[0].replace("disc0.png", str(data.parent / "disc0.png")) + "\n")
    for extra, message in (([], "holds 1 prompt(s) for 2 processes"),
                           (["--batch-size", "3"], "--batch-size 3 must be a multiple of the 2 processes")):
        failed = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                                 "2", "-m", "minglm4v", "rl", "--model", str(MICRO), "--data", str(one),
                                 "--output-dir", str(tmp_path / "out"), *extra], env=env, capture_output=True,
                                text=True, timeout=300)
        assert failed.returncode != 0 and message in failed.stderr


# ----------------------------------------------------------------------------- rollouts
def test_rows_without_text_are_never_sampled(micro, data):
    """Padding rows made the most likely tokens: rollouts still hold only ids the tokenizer can decode."""
    model, processor = micro
    loud = Glm4vForConditionalGeneration.from_pretrained(MICRO).eval()
    with torch.no_grad():
        loud.lm_head.weight[len(processor.tokenizer):] = 5 * loud.lm_head.weight.abs().max()
    prompts = read_prompts(data)[:2]
    rollouts = sample_groups(loud, processor, prompts, 4, 16, 12, torch.Generator().manual_seed(0))
    assert int(rollouts.completion_ids.max()) < len(processor.tokenizer)
    assert len(rollouts.texts) == 8


def test_the_loss_forward_sees_what_generation_saw(micro, tmp_path):
    """Prompts of different lengths (left padding) and completions of different lengths (right padding) in
    one batch: at every completion token, the forward that scores it (grpo.completion_logprobs' inputs)
    ranks first the very token greedy generation chose there."""
    model, processor = micro
    lines = []
    for i, (size, question) in enumerate([(224, "How many shapes are there?"), (112, "Where is the red circle?"),
                                          (168, "Is there a blue square in this picture?")]):
        image = Image.new("RGB", (size, size), "white")
        ImageDraw.Draw(image).ellipse([10, 10, 10 + size // 3, 10 + size // 3], fill=FILLS["red"])
        image.save(tmp_path / f"v{i}.png")
        lines.append({"messages": [{"role": "user", "content": f"<image>{question}"}], "images": [f"v{i}.png"],
                      "answer": "1"})
    (tmp_path / "v.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    batch = group_batch([prompt_example(p, processor) for p in read_prompts(tmp_path / "v.jsonl")], 1, processor, "cpu")
    assert len(set(batch["attention_mask"].sum(1).tolist())) > 1  # the prompts are padded
    completion = model.generate(**batch, max_new_tokens=48)[:, batch["input_ids"].shape[1]:]
    ends = torch.isin(completion, torch.tensor(model.config.text_config.eos_token_id))
    mask = (torch.arange(completion.shape[1]) <= ends.int().argmax(1)[:, None]).long()
    assert len(set(mask.sum(1).tolist())) > 1  # so are the completions
    with torch.no_grad():
        logp = completion_logprobs(model, batch, completion, mask)
        logits = model(torch.cat([batch["input_ids"], completion], 1),
                       attention_mask=torch.cat([batch["attention_mask"], mask], 1),
                       mm_token_type_ids=torch.cat([batch["mm_token_type_ids"], torch.zeros_like(completion)], 1),
                       pixel_values=batch["pixel_values"], image_grid_thw=batch["image_grid_thw"],
                       logits_to_keep=completion.shape[1] + 1).logits[:, :-1]
    assert bool(((logits.argmax(-1) == completion) | (mask == 0)).all())
    torch.testing.assert_close(logp, logits.log_softmax(-1).gather(-1, completion[..., None])[..., 0])


def test_forced_answer_tokens_carry_no_loss(micro, data):
    model, processor = micro
    rollouts = sample_groups(model, processor, read_prompts(data)[:2], 4, 24, 3, torch.Generator().manual_seed(0))
    end_ids = processor.tokenizer.convert_tokens_to_ids([st.END_THINK, st.ANSWER])
    assert rollouts.completion_ids[:, 3:5].tolist() == [end_ids] * 8  # thinking never ends within 3 tokens
    assert rollouts.mask[:, 3:5].sum() == 0 and rollouts.mask[:, :3].all()
    assert all(text.count(st.END_THINK) == 1 for text in rollouts.texts)


def test_curriculum_weights_prompts_neither_always_nor_never_solved():
    curriculum = Curriculum(5, momentum=0.5, floor=0.05)
    for index, rate in enumerate([0.0, 1.0, 0.5, 0.75]):
        curriculum.update(index, rate)
    assert curriculum.weights().tolist() == [0.05, 0.05, 1.0, 0.75, 1.0]  # the last one is unseen
    curriculum.update(3, 0.25)
    assert curriculum.rates[3] == 0.5  # EMA: half the old rate, half the new
    assert curriculum.tiers() == {"never": 1, "sometimes": 2, "always": 1, "unseen": 1}
    counts = np.bincount([i for s in range(2000) for i in curriculum.sample(np.random.default_rng(s), 1)], minlength=5)
    assert counts[:2].sum() < 0.04 * counts.sum() and counts[2] > 8 * counts[0]


def test_expansion_ratio_and_group_selection():
    expansion = Expansion(momentum=0.5, limit=4.0)
    expansion.update(0.5)  # half the groups had no signal: draw twice as many
    assert expansion.ratio == 1.5 and expansion.prompts_for(8) == 12
    expansion.update(1.0)
    assert expansion.ratio == 2.75  # all without signal: the cap
    rewards = torch.tensor([[1, 1, 1, 1], [1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0], [1, 1, 1, 0.5]])
    assert select_groups(rewards, 2) == [2, 1]  # half right first; the all-equal groups never
    assert select_groups(rewards, 9) == [2, 1, 4]


# ----------------------------------------------------------------------------- errors
def bad_line(directory, line, name="bad.jsonl"):
    path = directory / name
    good = {"messages": [{"role": "user", "content": "<image>How many?"}], "images": ["disc0.png"], "answer": "1"}
    path.write_text(json.dumps(good) + "\n" + (line if isinstance(line, str) else json.dumps(line)) + "\n")
    return path


@pytest.mark.parametrize("line, message", [
    ({"messages": [{"role": "user", "content": "<image>How many?"}], "images": ["disc0.png"]},
     'bad.jsonl:2: no "answer"'),
    ({"messages": [{"role": "user", "content": "<image>How many?"}], "images": ["disc0.png"], "answer": "1",
      "verifier": "llm-judge"}, "bad.jsonl:2: unknown \"verifier\" 'llm-judge'"),
    ({"messages": [{"role": "user", "content": "<image>How many?"}, {"role": "assistant", "content": "1"}],
      "images": ["disc0.png"], "answer": "1"}, "bad.jsonl:2: the last message must be the user's"),
    ({"messages": [{"role": "user", "content": "<image>How many?"}], "images": ["missing.png"], "answer": "1"},
     "bad.jsonl:2: image file(s) not found"),
    ({"messages": [{"role": "user", "content": "<image>How many?"}], "images": ["broken.png"], "answer": "1"},
     "bad.jsonl:2: cannot read image"),
    ("{not json", "bad.jsonl:2: invalid JSON"),
])
def test_bad_lines_stop_with_file_and_line(data, tmp_path, capsys, line, message):
    (data.parent / "broken.png").write_bytes(b"not a picture")
    path = bad_line(data.parent, line)
    argv = ["rl", "--model", str(MICRO), "--data", str(path), "--output-dir", str(tmp_path / "out"), "--max-steps", "1",
            "--batch-size", "2", "--group-size", "2", "--max-new-tokens", "8", "--no-curriculum"]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.mark.parametrize("extra, message", [
    (["--group-size", "1"], "--group-size must be at least 2"),
    (["--batch-size", "0"], "--batch-size must be at least 1"),
    (["--max-new-tokens", "8", "--thinking-budget", "8"], "--thinking-budget must be in [0, --max-new-tokens)"),
    (["--epsilon", "1.5"], "--epsilon must be in [0, 1)"),
    (["--beta", "-1"], "--beta"),
    (["--seed", "-3"], "--seed must be a whole number from 0 to 2**63 - 1"),
    (["--lora-targets", "q_proj"], "need --lora-rank"),
])
def test_bad_options_are_clear_errors(data, tmp_path, capsys, extra, message):
    argv = ["rl", "--model", str(MICRO), "--data", str(data), "--output-dir", str(tmp_path / "out"), *extra]
    assert cli.main(argv) == 1
    assert message in capsys.readouterr().err
