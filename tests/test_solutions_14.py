"""The exercise solutions of notebook 14 (training and fine-tuning) give the package's values."""

import sys

import torch
from helpers import REPO
from torch import nn

from minglm4v import Glm4vConfig, Glm4vForConditionalGeneration
from minglm4v.study.fake_inputs import create_multimodal_inputs
from minglm4v.training import lora

sys.path.insert(0, str(REPO / "notebooks"))
from solutions import ex14_training  # noqa: E402

TINY_CFG = Glm4vConfig.tiny()


def language_model(path):
    return path.startswith("model.language_model.")


@torch.no_grad()
def test_14_masked_loss_equals_the_models_loss():
    torch.manual_seed(0)
    model = Glm4vForConditionalGeneration(TINY_CFG)
    inputs = create_multimodal_inputs(TINY_CFG, num_images=1, text_length=12, height=56, width=56)
    labels = inputs["input_ids"].masked_fill(torch.arange(inputs["input_ids"].shape[1]) < 10, -100)
    out = model(**inputs, labels=labels)
    loss = ex14_training.masked_loss(out.logits, labels)
    torch.testing.assert_close(loss, out.loss)
    assert loss != ex14_training.masked_loss(out.logits, inputs["input_ids"])  # the mask matters


def test_14_lora_update_is_what_merge_adds():
    torch.manual_seed(0)
    base = nn.Linear(6, 5)
    layer = lora.LoRALinear(base, rank=2, alpha=4)
    nn.init.normal_(layer.lora_B.weight)  # B starts at zero: give it something to add
    x = torch.randn(3, 6)
    with torch.no_grad():
        wrapped = layer(x)
        merged = base.weight + ex14_training.lora_update(layer.lora_A.weight, layer.lora_B.weight, 4)
        layer.merge()
    torch.testing.assert_close(base.weight, merged)
    torch.testing.assert_close(nn.functional.linear(x, merged, base.bias), wrapped)


def test_14_lora_parameter_count_equals_the_trainable_count():
    for names, rank in (("all-linear", 8), ("q_proj,v_proj", 4)):
        model = Glm4vForConditionalGeneration(TINY_CFG)
        targets = lora.select_targets(model, names, language_model)
        count = ex14_training.lora_parameter_count(model, targets, rank)
        lora.inject(model, targets, rank, alpha=2 * rank)
        assert count == sum(p.numel() for p in model.parameters() if p.requires_grad) > 0
