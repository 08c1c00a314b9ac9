"""LoRA (minglm4v/training/lora.py): identity at initialisation, merge/unmerge, and PEFT as the oracle for the
forward pass and for the saved adapter."""

import copy

import pytest
import torch
from helpers import TINY, load_hf, model_inputs

from minglm4v.training import lora

R, ALPHA = 4, 8.0


def _logits(model, inputs):
    with torch.no_grad():
        return model(**inputs).logits


@pytest.fixture(scope="module")
def inputs(oracle_cases):
    return model_inputs(oracle_cases["image"])


@pytest.fixture()
def adapted(ours_tiny):
    """A copy of the tiny model with LoRA on every linear layer but lm_head, and B made non-zero."""
    model = copy.deepcopy(ours_tiny)
    torch.manual_seed(0)
    lora.inject(model, lora.select_targets(model, "all-linear"), R, ALPHA)
    for layer in lora.lora_layers(model).values():
        torch.nn.init.normal_(layer.lora_B.weight, std=0.02)
    return model


def test_all_linear_skips_only_lm_head(ours_tiny):
    linear = [n for n, m in ours_tiny.named_modules() if isinstance(m, torch.nn.Linear)]
    assert lora.select_targets(ours_tiny, "all-linear") == [n for n in linear if n != "lm_head"]
    assert lora.select_targets(ours_tiny, "q_proj,v_proj")[:2] == ["model.language_model.layers.0.self_attn.q_proj",
                                                                   "model.language_model.layers.0.self_attn.v_proj"]
    with pytest.raises(ValueError, match="match no trainable nn.Linear"):
        lora.select_targets(ours_tiny, "query")


def test_fresh_adapter_changes_nothing(ours_tiny, inputs):
    model = copy.deepcopy(ours_tiny)
    lora.inject(model, lora.select_targets(model, "all-linear"), R, ALPHA)
    assert torch.equal(_logits(model, inputs), _logits(ours_tiny, inputs))  # B = 0: exactly the base model
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)


def test_merge_equals_the_unmerged_forward_and_unmerge_restores(adapted, inputs):
    layer = next(iter(lora.lora_layers(adapted).values()))
    before, unmerged = layer.base_layer.weight.clone(), _logits(adapted, inputs)
    for m in lora.lora_layers(adapted).values():
        m.merge()
    torch.testing.assert_close(_logits(adapted, inputs), unmerged, rtol=1e-5, atol=1e-5)
    state = lora.merged_state_dict(adapted)  # already merged: the weights as they are
    assert torch.equal(state[layer_key(adapted, layer)], layer.base_layer.weight)
    for m in lora.lora_layers(adapted).values():
        m.unmerge()
    torch.testing.assert_close(layer.base_layer.weight, before, rtol=0, atol=1e-7)
    torch.testing.assert_close(_logits(adapted, inputs), unmerged, rtol=1e-5, atol=1e-5)


def layer_key(model, layer) -> str:
    return next(p for p, m in lora.lora_layers(model).items() if m is layer) + ".weight"


def _peft_model(adapted):
    """PEFT's LoRA on transformers' model of the same checkpoint, with our A and B copied in."""
    from peft import LoraConfig, get_peft_model
    targets = list(lora.lora_layers(adapted))
    peft_model = get_peft_model(load_hf(TINY), LoraConfig(r=R, lora_alpha=ALPHA, target_modules=targets))
    with torch.no_grad():
        for path, layer in lora.lora_layers(adapted).items():
            theirs = peft_model.base_model.model.get_submodule(path)
            theirs.lora_A["default"].weight.copy_(layer.lora_A.weight)
            theirs.lora_B["default"].weight.copy_(layer.lora_B.weight)
    return peft_model.eval()


def test_forward_equals_peft(adapted, inputs):
    ours = _logits(adapted, inputs)
    assert (ours - _logits(load_hf(TINY), inputs)).abs().max() > 1e-3  # the adapter really changes the output
    torch.testing.assert_close(ours, _logits(_peft_model(adapted), inputs), rtol=1e-5, atol=1e-5)


def test_saved_adapter_loads_in_peft_and_in_minglm4v(adapted, ours_tiny, inputs, tmp_path):
    from peft import PeftModel
    lora.save_adapter(adapted, tmp_path, str(TINY))
    peft_model = PeftModel.from_pretrained(load_hf(TINY), tmp_path).eval()
    expected = _logits(adapted, inputs)
    torch.testing.assert_close(_logits(peft_model, inputs), expected, rtol=1e-5, atol=1e-5)
    reloaded = copy.deepcopy(ours_tiny)
    lora.load_adapter(reloaded, tmp_path)
    assert torch.equal(_logits(reloaded, inputs), expected)


def test_a_damaged_adapter_file_is_named(adapted, ours_tiny, tmp_path):
    """load_adapter reads with the package's one safetensors reader, which refuses a truncated file by name."""
    lora.save_adapter(adapted, tmp_path)
    weights = tmp_path / lora.WEIGHTS
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(OSError, match=rf"{weights} is not a readable safetensors file .*; it is damaged or truncated"):
        lora.load_adapter(copy.deepcopy(ours_tiny), tmp_path)
