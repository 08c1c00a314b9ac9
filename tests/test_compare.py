"""minglm4v.study.compare beyond what the CLI tests cover: the hooks' bookkeeping and its errors."""

import pytest
import torch

from minglm4v import Glm4vConfig, Glm4vForConditionalGeneration, create_fake_text_inputs
from minglm4v.study.compare import Difference, component_names, component_outputs, differences


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return Glm4vForConditionalGeneration(Glm4vConfig.tiny()).eval()


def test_text_only_pass_records_the_language_stages_in_flow_order_and_removes_its_hooks(model):
    names = component_names(model.config)
    outputs = component_outputs(model, names[::-1], create_fake_text_inputs(model.config, seq_len=5))
    assert list(outputs) == [n for n in names[::-1] if not n.startswith("model.visual.")]
    assert not any(m._forward_hooks for m in model.modules())


def test_hooks_are_removed_when_the_forward_pass_fails(model):
    with pytest.raises(Exception):
        component_outputs(model, component_names(model.config), {"input_ids": torch.tensor([[5000]])})
    assert not any(m._forward_hooks for m in model.modules())


def test_differences_refuse_shape_mismatches_and_stages_that_ran_on_one_side():
    a = {"x": torch.zeros(2, 3), "y": torch.ones(2)}
    with pytest.raises(ValueError, match=r"x: output shapes differ, ours \(2, 3\) vs reference \(3, 2\)"):
        differences(a, {"x": torch.zeros(3, 2), "y": torch.ones(2)})
    with pytest.raises(ValueError, match="y ran in our model but not in the reference"):
        differences(a, {"x": torch.zeros(2, 3)})
    rows = differences(a, {"x": torch.full((2, 3), 0.5), "y": 2 * torch.ones(2)})
    assert rows == [Difference("x", (2, 3), 0.5, 0.5), Difference("y", (2,), 1.0, 2.0)]
    assert [r.relative for r in rows] == [1.0, 0.5]
    assert Difference("z", (1,), 0.0, 0.0).relative == 0.0
