"""Root pytest configuration: offline, single-threaded (reproducible) runs for tests and notebooks."""
import os

# Inherited by the nbval kernels too: no hub calls, and the same thread count everywhere so
# printed numbers in notebooks are bit-identical from run to run.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_configure(config):
    # nbval opens --nbval-sanitize-with relative to the cwd; anchor it at the repo root instead.
    if getattr(config.option, "nbval_sanitize_with", None) is None:
        config.option.nbval_sanitize_with = str(config.rootpath / "tests" / "nbval_sanitize.cfg")
