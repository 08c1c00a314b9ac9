"""Fixtures shared by the test modules, each built once per session: the stored oracle cases and the tiny
fixture checkpoint (loaded by minglm4v and by transformers), the fixture tokenizer and a processor around
it, the bundled micro model, and the hypothesis profiles of the property-based tests."""

import pytest
import torch
from helpers import MICRO, REPO, TINY, chat_model_dir, load_cases, load_hf, load_ours, model_inputs
from hypothesis import HealthCheck, settings
from safetensors.torch import load_file, save_file

from minglm4v.processing.image import Glm4vImageProcessor
from minglm4v.processing.processor import Glm4vProcessor
from minglm4v.processing.tokenizer import Glm4vTokenizer
from minglm4v.processing.video import Glm4vVideoProcessor


@pytest.fixture(scope="session")
def oracle_cases() -> dict[str, dict[str, torch.Tensor]]:
    return load_cases()


@pytest.fixture(scope="session")
def image_inputs(oracle_cases):
    return model_inputs(oracle_cases["image"])  # grid [1, 4, 6]: 24 patch rows, 6 <|image|> slots


@pytest.fixture(scope="session")
def video_inputs(oracle_cases):
    return model_inputs(oracle_cases["video"])  # grid [2, 4, 6]: 48 patch rows, 2 x 6 slots


@pytest.fixture(scope="session")
def ours_tiny():
    return load_ours(TINY)


@pytest.fixture(scope="session")
def hf_tiny():
    return load_hf(TINY)


@pytest.fixture(scope="session")
def nan_model_dir(tmp_path_factory):
    """The tiny checkpoint with one NaN in the final norm, plus tokenizer and preprocessor files."""
    directory = chat_model_dir(tmp_path_factory.mktemp("nan-model"))
    state = load_file(TINY / "model.safetensors")
    state["model.language_model.norm.weight"][3] = float("nan")
    save_file(state, directory / "model.safetensors")
    return directory


@pytest.fixture(scope="session")
def tokenizer():
    """The fixture tokenizer (data/tokenizer, 1,022 tokens, the real special tokens)."""
    return Glm4vTokenizer.from_pretrained(REPO / "data" / "tokenizer")


@pytest.fixture(scope="session")
def processor(tokenizer):
    """The fixture tokenizer with the default image and video processors (the checkpoint's settings)."""
    return Glm4vProcessor(Glm4vImageProcessor(), tokenizer, Glm4vVideoProcessor())


@pytest.fixture(scope="session")
def micro():
    """The bundled micro model (data/micro-model), in eval mode, and its processor."""
    return load_ours(MICRO).eval(), Glm4vProcessor.from_pretrained(MICRO)


# Property-based tests (test_fuzz_* in the module test files): a small, reproducible budget by default (CI);
# run a big local search with `pytest tests -k fuzz --hypothesis-profile=fuzz`.
_HEALTH = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much]
settings.register_profile("ci", max_examples=25, deadline=None, derandomize=True, database=None,
                          suppress_health_check=_HEALTH)
settings.register_profile("fuzz", max_examples=400, deadline=None, derandomize=True, database=None,
                          suppress_health_check=_HEALTH)
settings.load_profile("ci")
