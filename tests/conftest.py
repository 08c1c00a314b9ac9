"""Session fixtures for the model oracle tests: the stored cases and the tiny fixture checkpoint
loaded by minglm4v and by transformers (each loaded once per test session)."""

import pytest
import torch
from helpers import TINY, load_cases, load_hf, load_ours
from hypothesis import HealthCheck, settings


@pytest.fixture(scope="session")
def oracle_cases() -> dict[str, dict[str, torch.Tensor]]:
    return load_cases()


@pytest.fixture(scope="session")
def ours_tiny():
    return load_ours(TINY)


@pytest.fixture(scope="session")
def hf_tiny():
    return load_hf(TINY)


# Property-based tests (test_fuzz.py): a small, reproducible budget by default (CI); run a big local
# search with `pytest tests/test_fuzz.py --hypothesis-profile=fuzz`.
_HEALTH = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much]
settings.register_profile("ci", max_examples=25, deadline=None, derandomize=True, database=None,
                          suppress_health_check=_HEALTH)
settings.register_profile("fuzz", max_examples=400, deadline=None, derandomize=True, database=None,
                          suppress_health_check=_HEALTH)
settings.load_profile("ci")
