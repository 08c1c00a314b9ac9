"""Training (minglm4v/training/train.py): frozen parts stay fixed, checkpointing and compiling change nothing,
--bf16 keeps the frozen weights in bf16 and trains like fp32, the output directory is a model transformers
loads, resuming equals an uninterrupted run, and two DDP or FSDP processes equal one process with the same
global batch."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from helpers import REPO, load_hf, model_inputs
from safetensors.torch import load_file
from sft_helpers import make_model_dir, run_train, write_dataset

from minglm4v import Glm4vForConditionalGeneration, cli
from minglm4v.processing.processor import Glm4vProcessor
from minglm4v.training import fsdp, train
from minglm4v.training.data import SFTDataset, collate


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    return make_model_dir(root / "base"), write_dataset(root / "data", 8)


def _weights(directory):
    return load_file(directory / "model.safetensors")


def _losses(directory, kind="loss"):
    records = [json.loads(line) for line in (directory / "train_log.jsonl").read_text().splitlines()]
    return [r[kind] for r in records if kind in r]


@pytest.mark.parametrize("freeze, trained", [
    (None, ("model.language_model.", "lm_head.")),  # default: vision tower, downsample and merger frozen
    ("vision,language", ("model.visual.downsample.", "model.visual.merger.")),
])
def test_frozen_parts_stay_unchanged(setup, tmp_path, freeze, trained):
    base, data = setup
    run_train("--model", str(base), "--data", str(data), "--output-dir", str(tmp_path), "--max-steps", "2",
              "--batch-size", "2", "--lr", "1e-2", *(["--freeze", freeze] if freeze else []))
    before, after = _weights(base), _weights(tmp_path)
    for key in before:
        assert torch.equal(before[key], after[key]) != key.startswith(trained), key
    assert {"tokenizer.json", "preprocessor_config.json"} <= {p.name for p in tmp_path.iterdir()}


def test_gradient_checkpointing_gives_the_same_loss_and_gradients(setup):
    base, data = setup
    processor = Glm4vProcessor.from_pretrained(base)
    batch = collate([SFTDataset(data, processor)[i] for i in range(3)], processor)
    results = []
    for checkpointing in (False, True):
        model = Glm4vForConditionalGeneration.from_pretrained(base).train()
        if checkpointing:
            model.gradient_checkpointing_enable()
        loss = model(**batch).loss
        loss.backward()
        results.append((loss.detach(), {n: p.grad for n, p in model.named_parameters()}))
    (loss0, grads0), (loss1, grads1) = results
    torch.testing.assert_close(loss1, loss0, rtol=0, atol=1e-6)
    for name, grad in grads0.items():
        torch.testing.assert_close(grads1[name], grad, rtol=1e-5, atol=1e-7, msg=name)


def test_compiled_blocks_train_like_eager_ones(setup, tmp_path):
    base, data = setup
    args = ["--model", str(base), "--data", str(data), "--max-steps", "3", "--batch-size", "2", "--lr", "1e-2",
            "--freeze", "none"]
    run_train(*args, "--output-dir", str(tmp_path / "eager"))
    run_train(*args, "--output-dir", str(tmp_path / "compiled"), "--compile")
    # the losses of steps 2 and 3 are those of the updated weights; the weights themselves are not compared:
    # Adam's first steps move a weight whose gradient is ~0 by about +-lr, whichever sign its rounding has
    torch.testing.assert_close(_losses(tmp_path / "compiled"), _losses(tmp_path / "eager"), rtol=1e-5, atol=0)
    # compiling in place adds no `_orig_mod.` to the saved names
    assert _weights(tmp_path / "compiled").keys() == _weights(tmp_path / "eager").keys()
    model = train.prepare_model(cli.parser().parse_args(["train", *args, "--output-dir", "-", "--compile"]),
                                set(), torch.device("cpu"))
    blocks = (*model.model.visual.blocks, *model.model.language_model.layers)
    assert all(block._compiled_call_impl is not None for block in blocks)  # nn.Module.compile's mark: it is on


def test_compiled_layers_train_on_batches_of_changing_length(setup):
    """Batches of three lengths: the third runs the graph compiled for dynamic lengths. (q and k once rotated
    as one tensor and then split crashed there, in the compiled backward's stride check.)"""
    base, data = setup
    args = cli.parser().parse_args(["train", "--model", str(base), "--data", str(data), "--output-dir", "-",
                                    "--freeze", "none", "--compile"])
    torch._dynamo.reset()  # compile afresh: another test's graphs must not be reused
    model = train.prepare_model(args, set(), torch.device("cpu"))
    eager = Glm4vForConditionalGeneration.from_pretrained(base)
    processor = Glm4vProcessor.from_pretrained(base)
    dataset = SFTDataset(data, processor)
    unpadded = collate([dataset[i] for i in range(3)], processor)
    for extra in (0, 3, 7):  # more left padding, a longer batch
        batch = {**unpadded, **{key: F.pad(unpadded[key], (extra, 0), value=value) for key, value in
                                (("input_ids", processor.tokenizer.pad_token_id), ("attention_mask", 0),
                                 ("mm_token_type_ids", 0), ("labels", -100))}}
        model.zero_grad(), eager.zero_grad()
        loss = model(**batch).loss
        loss.backward()
        expected = eager(**batch).loss
        expected.backward()
        torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)
        q_proj = "model.language_model.layers.0.self_attn.q_proj.weight"
        torch.testing.assert_close(model.get_parameter(q_proj).grad, eager.get_parameter(q_proj).grad,
                                   rtol=1e-4, atol=1e-6)


def test_lora_output_loads_in_transformers_with_equal_logits(setup, tmp_path, oracle_cases):
    base, data = setup
    run_train("--model", str(base), "--data", str(data), "--output-dir", str(tmp_path), "--max-steps", "2",
              "--batch-size", "2", "--lr", "1e-2", "--lora-rank", "4", "--freeze", "none", "--bf16")
    inputs = model_inputs(oracle_cases["image"])
    with torch.no_grad():
        ours = Glm4vForConditionalGeneration.from_pretrained(tmp_path)(**inputs).logits
        theirs = load_hf(tmp_path)(**inputs).logits
        original = load_hf(base)(**inputs).logits
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    assert (ours - original).abs().max() > 1e-3  # the merged adapter really changed the model
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()


@pytest.mark.parametrize("extra", [[], ["--lora-rank", "4", "--freeze", "none", "--gradient-checkpointing"]])
def test_bf16_keeps_frozen_weights_in_bf16_and_trains_like_fp32(setup, tmp_path, extra):
    base, data = setup
    args = ["--model", str(base), "--data", str(data), "--max-steps", "3", "--batch-size", "2", "--lr", "1e-3", *extra]
    run_train(*args, "--output-dir", str(tmp_path / "fp32"))
    run_train(*args, "--output-dir", str(tmp_path / "bf16"), "--bf16")
    # bf16 keeps 8 bits of mantissa: the losses agree to a few parts in 1e3 (measured: <= 1.1e-3)
    torch.testing.assert_close(_losses(tmp_path / "bf16"), _losses(tmp_path / "fp32"), rtol=5e-3, atol=0)
    options = cli.parser().parse_args(["train", *args, "--output-dir", "-", "--bf16"])
    model = train.prepare_model(options, train._check(options), torch.device("cpu"))
    dtypes = {(p.requires_grad, p.dtype) for p in model.parameters()}
    assert dtypes == {(True, torch.float32), (False, torch.bfloat16)}  # fp32 masters over a bf16 frozen base


def test_resume_equals_an_uninterrupted_run(setup, tmp_path):
    base, data = setup
    args = ["--model", str(base), "--data", str(data), "--max-steps", "4", "--batch-size", "2",
            "--save-every", "2", "--lr", "1e-2", "--lora-rank", "2", "--lora-dropout", "0.1"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    run_train(*args, "--output-dir", str(straight))
    # a run interrupted after step 2 leaves exactly checkpoint-2 (training is deterministic)
    shutil.copytree(straight / "checkpoint-2", resumed / "checkpoint-2")
    with pytest.raises(ValueError, match="already holds checkpoints"):
        run_train(*args, "--output-dir", str(resumed))
    run_train(*args, "--output-dir", str(resumed), "--resume")
    assert _losses(resumed) == _losses(straight)[2:]
    a, b = _weights(straight), _weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_two_ddp_processes_equal_one_with_the_same_global_batch(setup, tmp_path):
    base, data = setup
    args = ["--model", str(base), "--data", str(data), "--max-steps", "3", "--lr", "1e-3", "--freeze", "none",
            "--grad-accum", "2", "--eval-data", str(data)]
    run_train(*args, "--output-dir", str(tmp_path / "one"), "--batch-size", "2")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                    "-m", "minglm4v", "train", *args, "--output-dir", str(tmp_path / "two"), "--batch-size", "1"],
                   env=env, check=True, capture_output=True, timeout=120)
    torch.testing.assert_close(_losses(tmp_path / "two"), _losses(tmp_path / "one"), rtol=1e-6, atol=0)
    torch.testing.assert_close(_losses(tmp_path / "two", "eval_loss"), _losses(tmp_path / "one", "eval_loss"),
                               rtol=1e-6, atol=0)
    one, two = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    for key in one:
        # why not the key biases: adding b to every key adds q.b to all of a query's scores, which softmax
        # ignores, so their gradient is rounding noise, and Adam turns noise of either sign into full steps
        if not key.endswith("k_proj.bias"):
            torch.testing.assert_close(two[key], one[key], rtol=0, atol=1e-6, msg=key)


def _torchrun(*argv, processes=2):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                           str(processes), "-m", "minglm4v", "train", *argv], env=env, capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 0, f"torchrun exited {done.returncode}:\n{done.stderr[-4000:]}"


def test_two_fsdp_processes_equal_one_with_the_same_global_batch(setup, tmp_path):
    base, data = setup
    args = ["--model", str(base), "--data", str(data), "--max-steps", "3", "--lr", "1e-3", "--freeze", "none",
            "--eval-data", str(data)]
    run_train(*args, "--output-dir", str(tmp_path / "one"), "--batch-size", "4")
    _torchrun(*args, "--output-dir", str(tmp_path / "two"), "--batch-size", "2", "--fsdp")
    # measured: losses 8e-8 apart (relative), weights 5e-6 (the k_proj biases, whose gradient is noise: 7e-5)
    torch.testing.assert_close(_losses(tmp_path / "two"), _losses(tmp_path / "one"), rtol=1e-4, atol=0)
    torch.testing.assert_close(_losses(tmp_path / "two", "eval_loss"), _losses(tmp_path / "one", "eval_loss"),
                               rtol=1e-4, atol=0)
    one, two = _weights(tmp_path / "one"), _weights(tmp_path / "two")  # two: gathered and written by rank 0
    assert one.keys() == two.keys()
    for key in one:
        torch.testing.assert_close(two[key], one[key], rtol=0, atol=1e-3, msg=key)


def test_fsdp_lora_bf16_checkpointing_resumes_and_loads_in_transformers(setup, tmp_path, oracle_cases):
    base, data = setup
    args = ["--model", str(base), "--data", str(data), "--max-steps", "4", "--lr", "1e-2", "--lora-rank", "4",
            "--freeze", "none", "--gradient-checkpointing", "--bf16", "--save-every", "2"]
    fsdp_args = [*args, "--batch-size", "2", "--fsdp"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    run_train(*args, "--output-dir", str(tmp_path / "one"), "--batch-size", "4")
    _torchrun(*fsdp_args, "--output-dir", str(straight))
    assert (straight / "checkpoint-2" / "sharded" / ".metadata").is_file()  # torch.distributed.checkpoint's
    shutil.copytree(straight / "checkpoint-2", resumed / "checkpoint-2")
    _torchrun(*fsdp_args, "--output-dir", str(resumed), "--resume")
    assert _losses(resumed) == _losses(straight)[2:]
    a, b = _weights(straight), _weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    # FSDP's bf16 policy computes with every weight in bf16 (the adapters too), autocast only the products
    torch.testing.assert_close(_losses(straight), _losses(tmp_path / "one"), rtol=2e-3, atol=0)
    inputs = model_inputs(oracle_cases["image"])
    with torch.no_grad():
        ours = Glm4vForConditionalGeneration.from_pretrained(straight)(**inputs).logits
        theirs = load_hf(straight)(**inputs).logits
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    assert (straight / "adapter" / "adapter_model.safetensors").is_file()


def test_fsdp_refuses_data_that_mixes_media_kinds(setup):
    base, data = setup
    mixed = data.parent / "mixed.jsonl"
    text_only = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}
    mixed.write_text(data.read_text() + json.dumps(text_only) + "\n")
    processor = Glm4vProcessor.from_pretrained(base)
    fsdp.check_same_media(SFTDataset(data, processor), None)  # all with images: fine
    with pytest.raises(ValueError, match="same kinds of media"):
        fsdp.check_same_media(SFTDataset(data, processor), SFTDataset(mixed, processor))


@pytest.mark.parametrize("extra, message", [
    (["--freeze", "vision,eyes"], "unknown part(s) ['eyes']"),
    (["--freeze", "vision,merger,language"], "leaves nothing to train"),
    (["--lora-targets", "q_proj"], "need --lora-rank"),
    (["--grad-accum", "0"], "--grad-accum must be at least 1"),
    (["--seed", "-1"], "--seed must be a whole number from 0 to 2**63 - 1, got -1"),
    (["--seed", str(2**64)], "--seed must be a whole number from 0 to 2**63 - 1"),
    (["--eval-every", "5"], "--eval-every needs --eval-data"),
    (["--lora-rank", "4", "--lora-targets", "query"], "match no trainable nn.Linear"),
    (["--fsdp"], "start them with `torchrun --nproc_per_node N"),
    (["--fsdp", "--compile"], "--fsdp and --compile together"),
])
def test_bad_options_are_clear_errors(setup, tmp_path, capsys, extra, message):
    from minglm4v import cli
    base, data = setup
    argv = ["train", "--model", str(base), "--data", str(data), "--output-dir", str(tmp_path / "out"), *extra]
    assert cli.main(argv) == 1
    assert message in capsys.readouterr().err


def test_training_an_earlier_output_keeps_its_own_log(setup, tmp_path):
    base, data = setup
    first, second = tmp_path / "first", tmp_path / "second"
    run_train("--model", str(base), "--data", str(data), "--output-dir", str(first), "--max-steps", "2",
              "--batch-size", "2")
    run_train("--model", str(first), "--data", str(data), "--output-dir", str(second), "--max-steps", "1",
              "--batch-size", "2")
    assert len(_losses(first)) == 2 and len(_losses(second)) == 1  # not the base's log copied over it
