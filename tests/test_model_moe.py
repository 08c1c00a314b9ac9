"""GLM-4.5V (glm4v_moe) against transformers' Glm4vMoeForConditionalGeneration, on tiny configs that really
route (8 experts in 4 groups, 2 groups allowed, top-3, a random non-zero selection bias, head_dim 24 != 64 / 4,
one dense layer first; norm_topk_prob on and off). Each checkpoint is written by transformers into a temporary
directory and loaded through minglm4v.AutoModelForImageTextToText."""

import dataclasses

import pytest
import torch
from helpers import CASE_NAMES, load_script, model_inputs
from safetensors.torch import load_file, save_file
from torch.testing import assert_close

from minglm4v import AutoModelForImageTextToText, Glm4vMoeConfig, Glm4vMoeForConditionalGeneration
from minglm4v.model.moe import Router

TOL = dict(rtol=1e-5, atol=1e-5)
FIXTURE_SCRIPT = load_script("make_fixtures")  # the oracle cases and weights recipe, reused for MoE
VARIANTS = {"normalised": {}, "unnormalised": dict(norm_topk_prob=False)}


def moe_tiny(**text) -> Glm4vMoeConfig:
    tiny = Glm4vMoeConfig.tiny()
    return dataclasses.replace(tiny, text_config=dataclasses.replace(tiny.text_config, **text))


def write_transformers_checkpoint(config: Glm4vMoeConfig, directory, seed=0):
    """transformers' model of `config` with random weights (experts included, selection bias ~ N(0, 0.3^2)),
    saved by its save_pretrained; returns it."""
    from transformers import Glm4vMoeConfig as HFConfig
    from transformers import Glm4vMoeForConditionalGeneration as HFModel
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    hf = HFModel(HFConfig.from_dict(config.to_dict())).eval()
    FIXTURE_SCRIPT.randomize(hf, gen)
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if ".experts." in name:  # (E, out, in): keep each expert's output O(1)
                p.copy_(torch.randn(p.shape, generator=gen) / p.shape[-1] ** 0.5)
        for name, b in hf.named_buffers():
            if name.endswith("e_score_correction_bias"):
                b.copy_(0.3 * torch.randn(b.shape, generator=gen))
    hf.save_pretrained(directory)
    return hf


@pytest.fixture(scope="module", params=list(VARIANTS))
def pair(request, tmp_path_factory):
    directory = tmp_path_factory.mktemp(f"moe-{request.param}")
    hf = write_transformers_checkpoint(moe_tiny(**VARIANTS[request.param]), directory)
    return AutoModelForImageTextToText.from_pretrained(directory), hf, directory


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """One transformers-written checkpoint (normalised routing), for the slower tests that need only one."""
    directory = tmp_path_factory.mktemp("moe-train")
    write_transformers_checkpoint(moe_tiny(), directory)
    return directory


@pytest.fixture(scope="module")
def moe_cases():
    return FIXTURE_SCRIPT.cases(torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name", CASE_NAMES)
def test_logits_loss_and_rope_index(name, pair, moe_cases):
    ours, hf, _ = pair
    case = moe_cases[name]
    inputs = model_inputs(case)
    assert isinstance(ours, Glm4vMoeForConditionalGeneration)
    with torch.no_grad():
        got, want = ours(**inputs, labels=case["labels"]), hf(**inputs, labels=case["labels"])
    real = case["attention_mask"].bool()
    assert got.logits.abs().mean() > 0.1
    assert_close(got.logits[real], want.logits[real], **TOL)
    assert_close(got.loss, want.loss, **TOL)
    args = (case["input_ids"], case["mm_token_type_ids"], case.get("image_grid_thw"), case.get("video_grid_thw"),
            case["attention_mask"])
    positions, deltas = ours.get_rope_index(*args)
    hf_positions, hf_deltas = hf.model.get_rope_index(*args)
    assert torch.equal(positions[:, real], hf_positions[:, real]) and torch.equal(deltas, hf_deltas)


def routed(model, router_class, inputs):
    """The experts each router chose, per MoE layer: [(N, k) sorted]."""
    chosen = []
    hooks = [m.register_forward_hook(lambda mod, args, out: chosen.append(out[2].sort(-1).values))
             for m in model.modules() if isinstance(m, router_class)]
    try:
        with torch.no_grad():
            model(**inputs)
    finally:
        for hook in hooks:
            hook.remove()
    return chosen


@pytest.mark.parametrize("name", ["image", "video"])
def test_the_same_experts_are_chosen(name, pair, moe_cases):
    from transformers.models.glm4v_moe.modeling_glm4v_moe import Glm4vMoeTextTopkRouter
    ours, hf, _ = pair
    inputs = model_inputs(moe_cases[name])
    mine, theirs = routed(ours, Router, inputs), routed(hf, Glm4vMoeTextTopkRouter, inputs)
    assert len(mine) == len(theirs) == 2  # layers 1 and 2; layer 0 is dense
    for a, b in zip(mine, theirs, strict=True):
        assert torch.equal(a, b)
    assert len(torch.cat(mine).unique()) > 3  # tokens chose different experts: the routing is exercised


@pytest.mark.parametrize("name", ["image", "video", "batch"])
def test_greedy_generation_is_token_identical(name, pair, moe_cases):
    ours, hf, _ = pair
    inputs = model_inputs(moe_cases[name])
    mine = ours.generate(**inputs, max_new_tokens=12)
    theirs = hf.generate(**inputs, max_new_tokens=12, do_sample=False)
    assert torch.equal(mine, theirs)


def test_bf16_equals_transformers(pair, moe_cases):
    """Both load the checkpoint in bf16 with the router kept in fp32; the logits agree bit for bit."""
    from transformers import Glm4vMoeForConditionalGeneration as HFModel
    _, _, directory = pair
    ours = AutoModelForImageTextToText.from_pretrained(directory, dtype=torch.bfloat16)
    hf = HFModel.from_pretrained(directory, dtype=torch.bfloat16).eval()
    routers = [m for m in ours.modules() if isinstance(m, Router)]
    assert {m.weight.dtype for m in routers} | {m.e_score_correction_bias.dtype for m in routers} == {torch.float32}
    assert ours.model.language_model.embed_tokens.weight.dtype == torch.bfloat16
    for name in ("image", "video", "batch"):
        case = moe_cases[name]
        real = case["attention_mask"].bool()
        with torch.no_grad():
            got, want = ours(**model_inputs(case)).logits, hf(**model_inputs(case)).logits
        assert got.dtype == torch.bfloat16 and torch.equal(got[real], want[real]), name


def test_our_save_loads_in_transformers_and_back(pair, tmp_path, moe_cases):
    from transformers import Glm4vMoeForConditionalGeneration as HFModel
    ours, hf, directory = pair
    ours.save_pretrained(tmp_path, max_shard_size="200KB")
    assert len(list(tmp_path.glob("model-*.safetensors"))) > 1
    stored = {k: v for f in sorted(tmp_path.glob("*.safetensors")) for k, v in load_file(f).items()}
    assert "model.language_model.layers.1.mlp.experts.7.down_proj.weight" in stored  # the hub's layout
    assert stored.keys() == {k for f in directory.glob("*.safetensors") for k in load_file(f)}
    again = HFModel.from_pretrained(tmp_path).eval()
    for (k, a), (_, b) in zip(sorted(again.state_dict().items()), sorted(hf.state_dict().items()), strict=True):
        assert torch.equal(a, b), k
    back = AutoModelForImageTextToText.from_pretrained(tmp_path)
    assert all(torch.equal(v, ours.state_dict()[k]) for k, v in back.state_dict().items())


def test_the_mtp_layer_of_hub_checkpoints_is_skipped(pair, tmp_path, moe_cases):
    """Hub checkpoints carry one more layer after the last (multi-token prediction); add one to the
    checkpoint as layer 3 of 3: both libraries load the model without it and give the same logits."""
    from transformers import Glm4vMoeForConditionalGeneration as HFModel
    ours, _, directory = pair
    tensors = load_file(directory / "model.safetensors")
    extra = {k.replace("layers.2.", "layers.3."): v.clone() for k, v in tensors.items() if ".layers.2." in k}
    extra["model.language_model.layers.3.eh_proj.weight"] = torch.zeros(64, 128)
    save_file({**tensors, **extra}, tmp_path / "model.safetensors", metadata={"format": "pt"})
    (tmp_path / "config.json").write_text((directory / "config.json").read_text())
    loaded = AutoModelForImageTextToText.from_pretrained(tmp_path)
    assert len(loaded.model.language_model.layers) == 3
    inputs = model_inputs(moe_cases["image"])
    with torch.no_grad():
        assert torch.equal(loaded(**inputs).logits, ours(**inputs).logits)
        assert_close(loaded(**inputs).logits, HFModel.from_pretrained(tmp_path).eval()(**inputs).logits, **TOL)


def test_dense_and_moe_classes_refuse_each_other(pair, tmp_path):
    from minglm4v import Glm4vConfig, Glm4vForConditionalGeneration
    _, _, directory = pair
    with pytest.raises(ValueError, match="holds a 'glm4v_moe' model, not 'glm4v'; load it with Auto"):
        Glm4vForConditionalGeneration.from_pretrained(directory)
    with pytest.raises(TypeError, match="Glm4vForConditionalGeneration is built from a Glm4vConfig, got a Glm4vMoe"):
        Glm4vForConditionalGeneration(Glm4vMoeConfig.tiny())
    assert isinstance(AutoModelForImageTextToText.from_config(Glm4vMoeConfig.tiny()), Glm4vMoeForConditionalGeneration)
    assert type(AutoModelForImageTextToText.from_config(Glm4vConfig.tiny())) is Glm4vForConditionalGeneration


def test_full_size_parameter_count_equals_transformers():
    """GLM-4.5V on the meta device: the same parameter names, shapes and count as transformers (107.7 B)."""
    from transformers import Glm4vMoeConfig as HFConfig
    from transformers import Glm4vMoeForConditionalGeneration as HFModel
    config = Glm4vMoeConfig.glm45v()
    with torch.device("meta"):
        ours, hf = Glm4vMoeForConditionalGeneration(config), HFModel(HFConfig.from_dict(config.to_dict()))
    count = sum(p.numel() for p in ours.parameters())
    assert count == sum(p.numel() for p in hf.parameters()) == 107_710_927_360


def test_info_prints_total_and_active_parameters(pair, tmp_path, capsys):
    """`python -m minglm4v info`: GLM-4.5V's config.json alone is counted on meta (total as transformers',
    active = all but the 120 unchosen experts of each of the 45 MoE layers); a checkpoint is counted from
    its tensors, without the MTP layer."""
    from minglm4v import cli
    Glm4vMoeConfig.glm45v().save_pretrained(tmp_path)
    assert cli.main(["info", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "107,710,927,360 parameters" in out and "weights    none: counted from config.json" in out
    assert f"{107_710_927_360 - 45 * 120 * 3 * 4096 * 1408:>16,} parameters (all but the 120 unchosen" in out
    assert "experts    128 routed of width 1408, 8 per token (from 1 of 1 groups) + 1 shared, from layer 1" in out
    ours, _, directory = pair
    assert cli.main(["info", str(directory)]) == 0
    total = sum(t.numel() for t in ours.state_dict().values())  # a checkpoint also holds the bias buffers
    assert f"{'total':<16}{total:>16,} parameters" in capsys.readouterr().out


def test_router_aux_loss_equals_transformers(pair, moe_cases):
    ours, hf, _ = pair
    case = moe_cases["batch"]  # left padding: the mask leaves the pads out of the balance
    inputs = model_inputs(case)
    with torch.no_grad():
        got = ours(**inputs, labels=case["labels"], output_router_logits=True)
        want = hf(**inputs, labels=case["labels"], output_router_logits=True)
        plain = ours(**inputs, labels=case["labels"])
    assert_close(got.aux_loss, want.aux_loss, **TOL)
    assert_close(got.loss, want.loss, **TOL)
    coef = ours.config.text_config.router_aux_loss_coef
    assert_close(got.loss, plain.loss + coef * got.aux_loss, **TOL) and plain.aux_loss is None


def training_dir(directory, tmp_path):
    """A model directory `minglm4v train` takes: the checkpoint, the fixture tokenizer, both processors; and
    4 one-picture conversations."""
    import shutil

    from helpers import REPO
    from sft_helpers import write_dataset

    from minglm4v.processing.image import Glm4vImageProcessor
    from minglm4v.processing.video import Glm4vVideoProcessor
    base = tmp_path / "base"
    shutil.copytree(directory, base)
    for path in (REPO / "data" / "tokenizer").iterdir():
        shutil.copy(path, base / path.name)
    Glm4vImageProcessor().save_pretrained(base)
    Glm4vVideoProcessor().save_pretrained(base)
    return base, write_dataset(tmp_path / "data", 4)


def train_log(directory, key="loss"):
    import json
    return torch.tensor([r[key] for r in map(json.loads, (directory / "train_log.jsonl").read_text().splitlines())
                         if key in r])


@pytest.mark.parametrize("extra", [["--freeze", "vision,merger"],
                                   ["--lora-rank", "4", "--freeze", "none", "--bf16", "--router-aux-loss"],
                                   ["--freeze", "none", "--bf16"]])
def test_train_on_a_moe_model(checkpoint, tmp_path, moe_cases, extra):
    """`minglm4v train` on GLM-4.5V's architecture, full and LoRA (experts and shared experts included);
    the output loads in transformers with equal logits, its router stored in fp32."""
    from sft_helpers import run_train
    from transformers import Glm4vMoeForConditionalGeneration as HFModel
    directory = checkpoint
    base, data = training_dir(directory, tmp_path)
    run_train("--model", str(base), "--data", str(data), "--output-dir", str(tmp_path / "out"), "--max-steps", "2",
              "--batch-size", "2", "--lr", "1e-2", *extra)
    losses = train_log(tmp_path / "out")
    assert len(losses) == 2 and bool(losses.isfinite().all())
    stored = load_file(tmp_path / "out" / "model.safetensors")
    assert stored["model.language_model.layers.1.mlp.gate.weight"].dtype == torch.float32
    inputs = model_inputs(moe_cases["image"])
    with torch.no_grad():
        ours = AutoModelForImageTextToText.from_pretrained(tmp_path / "out")(**inputs).logits
        theirs = HFModel.from_pretrained(tmp_path / "out").eval()(**inputs).logits
        original = HFModel.from_pretrained(directory).eval()(**inputs).logits
    assert_close(ours, theirs, **TOL)
    assert (ours - original).abs().max() > 1e-3  # training changed the model
    expert = "model.language_model.layers.2.mlp.experts.0.up_proj.weight"
    assert not torch.equal(stored[expert], load_file(directory / "model.safetensors")[expert])  # experts trained


@pytest.mark.parametrize("parallel", [[], ["--fsdp"]])
def test_two_processes_train_a_moe_model_like_one(checkpoint, tmp_path, parallel):
    """DDP and FSDP need a gradient for every parameter on every rank, also for experts no token of the
    rank chose (dispatch runs them on no rows in training): 2 processes x 2 conversations = 1 x 4."""
    import os
    import subprocess
    import sys

    from helpers import REPO
    from sft_helpers import run_train
    base, data = training_dir(checkpoint, tmp_path)
    args = ["--model", str(base), "--data", str(data), "--max-steps", "2", "--lr", "1e-3", "--freeze", "none"]
    run_train(*args, "--output-dir", str(tmp_path / "one"), "--batch-size", "4")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
                    "minglm4v", "train", *args, "--output-dir", str(tmp_path / "two"), "--batch-size", "2",
                    *parallel], env=env, check=True, capture_output=True, timeout=180)
    assert_close(train_log(tmp_path / "two"), train_log(tmp_path / "one"), rtol=1e-4, atol=0)


def test_check_compares_every_component_with_transformers(pair, capsys):
    """`python -m minglm4v check DIR` on a GLM-4.5V checkpoint: both libraries' GLM-4.5V classes, stage by stage."""
    from minglm4v import cli
    _, _, directory = pair
    assert cli.main(["check", str(directory)]) == 0
    out = capsys.readouterr().out
    for name in ("model.visual.merger", "model.language_model.layers.0", "model.language_model.layers.2", "lm_head"):
        assert f"\n{name} " in out
    assert out.rstrip().endswith("-> OK")
