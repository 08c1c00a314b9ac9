"""benchmarks/gpu_check.py cannot rot: its --dry-run runs every check's code on tiny configs on the CPU."""

import os
import subprocess
import sys

from helpers import REPO

SCRIPT = REPO / "benchmarks" / "gpu_check.py"
ENV = {**os.environ, "PYTHONPATH": str(REPO), "CUDA_VISIBLE_DEVICES": ""}


def test_dry_run_fills_every_row_of_the_table():
    result = subprocess.run([sys.executable, str(SCRIPT), "--dry-run"], env=ENV, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = result.stdout.splitlines()[1:]
    assert [r.split("  ")[0] for r in rows] == [
        "parity: micro model bf16 vs fp32 CPU", "prefill tokens/s (tiny, random bf16)",
        "decode tokens/s (tiny, random bf16)", "decode vs bandwidth bound", "LoRA r8 step, 1 GPU, 1 x 64",
        "FSDP full fine-tune step, 2 x 1 x 64"]
    assert "top-1 agree" in rows[0] and "plan" in rows[-1]


def test_without_cuda_it_asks_for_the_dry_run():
    result = subprocess.run([sys.executable, str(SCRIPT)], env=ENV, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "run with --dry-run" in result.stderr
