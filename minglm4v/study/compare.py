"""Module-by-module comparison of minglm4v with the reference (transformers) on one input.

No transformers counterpart: this is how the port is checked *against* transformers. Both models
name their modules after the checkpoint keys, so one list of names addresses both; a forward hook
on each module records its output, and a table of largest differences shows where they part.

    names  = component_names(config)                 ['model.visual.patch_embed', ..., 'lm_head']
    ours   = component_outputs(model, names, inputs) {name: output (fp32, on the CPU)}
    theirs = component_outputs(reference, names, inputs)
    rows   = differences(ours, theirs)               [Difference(name, shape, max_diff, max_ref)]
    logits = LogitsCheck.of(ours, theirs, dtype)     relative difference and next token -> .ok

`compare_checkpoint(directory)` runs all of it on an HF-layout directory with one model in memory
at a time (the 9B model needs ~20 GB in bf16, not ~40). `python -m minglm4v check` prints it;
notebooks/13_reference_check.ipynb builds it step by step.
"""

from dataclasses import dataclass
from typing import NamedTuple

import torch

from ..model.config import Glm4vConfig
from ..model.families import model_class
from ..model.rope import image_tokens, token_types
from ..processing import special_tokens as st


def component_names(config: Glm4vConfig) -> list[str]:
    """Every stage of a forward pass, in the order the data flows through them."""
    v, t = config.vision_config, config.text_config
    return (["model.visual.patch_embed", "model.visual.post_conv_layernorm", "model.visual.embeddings"]
            + [f"model.visual.blocks.{i}" for i in range(v.depth)]
            + ["model.visual.post_layernorm", "model.visual.downsample", "model.visual.merger",
               "model.language_model.embed_tokens"]
            + [f"model.language_model.layers.{i}" for i in range(t.num_hidden_layers)]
            + ["model.language_model.norm", "lm_head"])


def make_check_inputs(config: Glm4vConfig) -> dict:
    """A 112x112 colour ramp (8x8 patches -> 16 image tokens) between a few text tokens."""
    from PIL import Image

    from ..processing.image import Glm4vImageProcessor
    ramp = torch.linspace(0, 255, 112).to(torch.uint8)
    pixels = torch.stack([ramp[:, None].expand(112, 112), ramp[None, :].expand(112, 112),
                          ramp.flip(0)[:, None].expand(112, 112)], dim=-1)
    image = Glm4vImageProcessor()(Image.fromarray(pixels.numpy()))
    slots = int(image_tokens(image["image_grid_thw"], config.vision_config.spatial_merge_size).sum())
    ids = [11, 12, 13] + st.image_block_ids(config, slots) + [14, 15, 16]
    input_ids = torch.tensor([ids])
    types = token_types(input_ids, config.image_token_id, config.video_start_token_id, config.video_end_token_id)
    return dict(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), mm_token_type_ids=types, **image)


def component_outputs(model, names: list[str], inputs: dict) -> dict[str, torch.Tensor]:
    """{module name: its output (fp32, on the CPU)} for one forward pass, captured with hooks."""
    outputs = {}

    def keep(name):
        def hook(module, args, out):  # some transformers layers return (hidden, ...) tuples
            outputs.setdefault(name, (out[0] if isinstance(out, tuple) else out).detach().float().cpu())
        return hook
    hooks = [model.get_submodule(name).register_forward_hook(keep(name)) for name in names]
    try:
        with torch.no_grad():
            model(**inputs)
    finally:
        for hook in hooks:
            hook.remove()
    return {name: outputs[name] for name in names if name in outputs}  # flow order; unused ones left out


class Difference(NamedTuple):
    name: str
    shape: tuple[int, ...]
    max_diff: float  # max |ours - reference|
    max_ref: float  # max |reference|: the scale the difference is measured against

    @property
    def relative(self) -> float:
        return self.max_diff / self.max_ref if self.max_ref else self.max_diff


def differences(ours: dict, theirs: dict) -> list[Difference]:
    """One row per module (in the order of `ours`); a shape mismatch is an error, not a row."""
    rows = []
    for name, a in ours.items():
        if name not in theirs:
            raise ValueError(f"{name} ran in our model but not in the reference: the two forward passes differ")
        b = theirs[name]
        if b.shape == (*a.shape, 1, 1):  # transformers' downsample keeps the Conv2d's 1x1 output grid
            b = b.reshape(a.shape)
        if a.shape != b.shape:
            raise ValueError(f"{name}: output shapes differ, ours {tuple(a.shape)} vs reference {tuple(b.shape)}")
        rows.append(Difference(name, tuple(a.shape), (a - b).abs().max().item(), b.abs().max().item()))
    return rows


def table(rows: list[Difference]) -> str:
    """The rows as fixed-width text, differences in scientific notation."""
    lines = [f"{'component':<36}{'shape':>18}{'max |ours - transformers|':>28}{'max |transformers|':>20}"]
    lines += [f"{r.name:<36}{str(r.shape):>18}{r.max_diff:>28.3e}{r.max_ref:>20.3e}" for r in rows]
    return "\n".join(lines) + "\n"


@dataclass
class LogitsCheck:
    """The verdict: logits close relative to their size, and the same next token."""
    relative: float
    tolerance: float
    same_next: bool
    dtype: torch.dtype

    @classmethod
    def of(cls, ours: dict, theirs: dict, dtype: torch.dtype) -> "LogitsCheck":
        a, b = ours["lm_head"], theirs["lm_head"]
        relative = ((a - b).abs().max() / b.abs().max()).item()
        tolerance = 1e-4 if dtype == torch.float32 else 5e-2  # bf16 keeps ~3 significant digits
        return cls(relative, tolerance, torch.equal(a[0, -1].argmax(), b[0, -1].argmax()), dtype)

    @property
    def ok(self) -> bool:
        return self.relative <= self.tolerance and self.same_next

    def __str__(self) -> str:
        return (f"logits: relative difference {self.relative:.2e} (tolerance {self.tolerance:.0e} in "
                f"{str(self.dtype)[6:]}), same next token: {self.same_next} -> {'OK' if self.ok else 'MISMATCH'}")


def compare_checkpoint(directory, dtype=None, device="cpu", inputs=None, names=None):
    """Run minglm4v, then transformers, on one checkpoint and input -> (rows, LogitsCheck).

    dtype None keeps the stored one; inputs default to `make_check_inputs`; names to `component_names`."""
    try:
        import transformers
    except ImportError:
        raise ImportError("the comparison runs transformers, which is not installed: "
                          "pip install transformers") from None
    # one model at a time, so that checking the 9B model needs the memory of one copy, not two
    model = model_class(directory).from_pretrained(directory, dtype=dtype, device_map=device)  # 4.1V or 4.5V
    dtype = next(model.parameters()).dtype
    inputs = make_check_inputs(model.config) if inputs is None else inputs
    inputs = {k: x.to(device) for k, x in inputs.items() if isinstance(x, torch.Tensor)}
    names = component_names(model.config) if names is None else names
    ours = component_outputs(model, names, inputs)
    reference = getattr(transformers, type(model).__name__)  # transformers' class of the same name
    del model
    model = reference.from_pretrained(directory, dtype=dtype).to(device).eval()
    theirs = component_outputs(model, names, inputs)
    del model
    return differences(ours, theirs), LogitsCheck.of(ours, theirs, dtype)
