"""Session fixtures for the model oracle tests: the stored cases and the tiny fixture checkpoint
loaded by minglm4v and by transformers (each loaded once per test session)."""

import pytest
import torch

from helpers import TINY, load_cases, load_hf, load_ours


@pytest.fixture(scope="session")
def oracle_cases() -> dict[str, dict[str, torch.Tensor]]:
    return load_cases()


@pytest.fixture(scope="session")
def ours_tiny():
    return load_ours(TINY)


@pytest.fixture(scope="session")
def hf_tiny():
    return load_hf(TINY)
