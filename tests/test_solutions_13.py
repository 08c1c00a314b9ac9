"""The solutions to notebook 13's exercises (notebooks/solutions/ex13_reference_check.py), checked
against transformers on the tiny fixture."""

import sys

import pytest
import torch
from helpers import REPO, TINY

from minglm4v import Glm4vConfig, Glm4vForConditionalGeneration
from minglm4v.study.compare import check_inputs, compare_checkpoint, component_names, component_outputs, differences

sys.path.insert(0, str(REPO / "notebooks"))
from solutions import ex13_reference_check as ex13  # noqa: E402


@pytest.fixture(scope="module")
def oracle():
    """The fixture's input and transformers' outputs for the finer stages."""
    import transformers

    reference = transformers.Glm4vForConditionalGeneration.from_pretrained(TINY).eval()
    inputs = check_inputs(reference.config)
    names = ex13.finer_names(reference.config)
    return inputs, names, component_outputs(reference, names, inputs)


def broken(part: str):
    model = Glm4vForConditionalGeneration.from_pretrained(TINY)
    with torch.no_grad():
        model.get_submodule(part).weight.mul_(1.5)
    return model


def test_first_mismatch_names_the_broken_stage(oracle):
    inputs, names, theirs = oracle
    model = Glm4vForConditionalGeneration.from_pretrained(TINY)
    assert ex13.first_mismatch(differences(component_outputs(model, names, inputs), theirs)) is None
    for part, stage in [("model.language_model.layers.1.post_mlp_layernorm", "model.language_model.layers.1"),
                        ("model.visual.blocks.1.norm2", "model.visual.blocks.1.mlp")]:
        rows = differences(component_outputs(broken(part), names, inputs), theirs)
        assert ex13.first_mismatch(rows) == stage


def test_finer_names_in_flow_order_and_the_norm_break_is_after_both_halves(oracle):
    inputs, names, theirs = oracle
    assert names[3:7] == ["model.visual.blocks.0.attn", "model.visual.blocks.0.mlp", "model.visual.blocks.0",
                          "model.visual.blocks.1.attn"]
    assert names[-8:] == ["model.language_model.layers.0.self_attn", "model.language_model.layers.0.mlp",
                          "model.language_model.layers.0", "model.language_model.layers.1.self_attn",
                          "model.language_model.layers.1.mlp", "model.language_model.layers.1",
                          "model.language_model.norm", "lm_head"]
    assert len(names) == 13 + 2 * 4
    rows = differences(component_outputs(broken("model.language_model.layers.1.post_mlp_layernorm"),
                                         names, inputs), theirs)
    relative = {row.name: row.relative for row in rows}
    # post_mlp_layernorm scales the MLP's output after the hook on `mlp` has seen it
    assert relative["model.language_model.layers.1.mlp"] < 1e-5 < relative["model.language_model.layers.1"]


def test_bf16_stages_are_all_bit_identical_unlike_float32():
    assert ex13.bf16_exact_stages(TINY) == component_names(Glm4vConfig.tiny())
    rows, _ = compare_checkpoint(TINY)
    assert any(row.max_diff > 0 for row in rows)  # float32 differs in the last bits somewhere
