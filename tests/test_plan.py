"""`python -m minglm4v plan` (minglm4v/training/plan.py): its lines, its arithmetic, its errors, and its estimate
against the measured peak memory of real training runs (benchmarks/bench_memory.py, the smallest configs)."""

import sys
import tempfile
from pathlib import Path

import pytest
from helpers import REPO

from minglm4v import Glm4vConfig, cli
from minglm4v.training import plan

sys.path.insert(0, str(REPO / "benchmarks"))
import bench_memory  # noqa: E402

PARAMETERS_9B = 10_292_777_472  # GLM-4.1V-9B-Thinking, as transformers counts it (test_model_oracle)
GIB = 2**30


def test_plan_prints_one_line_per_part_and_the_total_last(capsys):
    assert cli.main(["plan", "--preset", "glm41v-9b", "--lora-rank", "8", "--bf16", "--gradient-checkpointing"]) == 0
    lines = capsys.readouterr().out.splitlines()
    names = [line.split(":")[0] for line in lines[1:]]
    assert names == ["weights", "gradients", "optimizer state (AdamW)", "activations without checkpointing",
                     "activations with checkpointing", "per GPU"]
    values = [float(line.split()[-2]) for line in lines[1:]]
    assert lines[-1] == f"per GPU: {values[-1]:.2f} GiB"
    assert values[-1] == pytest.approx(values[0] + values[2] + max(values[1], values[4]), abs=0.02)  # checkpointing
    assert 19.1 < values[0] < 19.5  # the 9B's weights in bf16 (19.17 GiB) + fp32 adapters + their bf16 copies


def test_plan_arithmetic_full_fine_tune_and_fsdp():
    config = Glm4vConfig()
    one = plan.estimate(config, 0, False, False, 1, 1024)
    assert one["weights"] == 4 * PARAMETERS_9B  # every weight fp32
    trainable = one["gradients"] / 4  # language model + lm_head (vision tower and merger frozen)
    assert 8.5e9 < trainable < 9.5e9 and one["optimizer state (AdamW)"] == 8 * trainable
    eight = plan.estimate(config, 0, True, True, 1, 1024, shards=8)
    assert eight["gradients"] == one["gradients"] / 8 and eight["optimizer state (AdamW)"] == 8 * trainable / 8
    assert eight["activations with checkpointing"] < eight["activations without checkpointing"]
    # twice the tokens, twice the activations (per token: measured, so exactly linear)
    two = plan.estimate(config, 0, False, False, 2, 1024)
    assert two["activations without checkpointing"] == pytest.approx(2 * one["activations without checkpointing"])


@pytest.mark.parametrize("argv, message", [
    (["--preset", "glm41v-9b", "--batch-size", "0"], "--batch-size must be at least 1"),
    (["--preset", "glm41v-9b", "--fsdp", "0"], "--fsdp must be at least 1"),
    (["--model", "/nonexistent"], "config.json"),
])
def test_plan_bad_options_are_clear_errors(capsys, argv, message):
    assert cli.main(["plan", *argv]) == 1
    assert message in capsys.readouterr().err


def test_plan_is_within_15_percent_of_measured_peaks():
    with tempfile.TemporaryDirectory() as root:
        for name, options, batch, seq_len, measured, planned in bench_memory.rows(bench_memory.QUICK, Path(root)):
            assert 0.85 < planned / measured < 1.15, (name, options, measured / GIB, planned / GIB)
