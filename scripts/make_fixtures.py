"""Write the oracle fixtures in data/fixtures/ with transformers (the reference implementation).

    .venv/bin/python scripts/make_fixtures.py         # deterministic: same tensors on every run

Outputs (see data/fixtures/README.md):
  tiny/                    transformers' save_pretrained of a random tiny GLM-4.1V, fp32, one file
  tiny-bf16-sharded/       the same weights cast to bf16, max_shard_size="300KB" (shards + index)
  cases.safetensors        inputs and transformers' outputs for six prompts, keys 'case/field'

The config is minglm4v's `Glm4vConfig.tiny()` passed through its `to_dict()`, i.e. exactly the
config.json we write. A fresh transformers init has norm weights 1, biases 0 and vision activations
of ~1e-3, which would hide a missing norm or bias; every tensor is therefore redrawn here: norm
weights around 1, biases and position tables clearly non-zero, matrices with std 1/sqrt(fan_in) so
that activations stay O(1) through both towers.

The fixture format (paths, how a case becomes forward() arguments, the hook on transformers' ViT) has its
one home in tests/helpers.py, which the tests read the fixtures with and this script writes them with;
transformers is imported only where it is needed.
"""

import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
from helpers import CASES, FIXTURES, TINY, TINY_BF16, hf_config, hf_vision_features, model_inputs  # noqa: E402

from minglm4v import Glm4vConfig  # noqa: E402
from minglm4v.model.rope import image_tokens, token_types  # noqa: E402
from minglm4v.processing.special_tokens import image_block_ids  # noqa: E402
from minglm4v.processing.tokenizer import left_pad  # noqa: E402

SEED = 0
CFG = Glm4vConfig.tiny()
BOV, EOV, IMG = CFG.video_start_token_id, CFG.video_end_token_id, CFG.image_token_id
PAD = CFG.text_config.pad_token_id
DIGITS = {0: 48, 1: 49}  # stand-ins for the timestamp tokens "0", "1" (any text id works: they are text)


# ----------------------------------------------------------------------------- making the fixtures
def randomize(model: torch.nn.Module, gen: torch.Generator) -> None:
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if "norm" in name and name.endswith("weight"):
                p.copy_(1 + 0.5 * (torch.rand(p.shape, generator=gen) - 0.5))  # in [0.75, 1.25)
            elif name.endswith("bias"):
                p.copy_(0.2 * torch.randn(p.shape, generator=gen))
            elif "embed_tokens" in name or "position_embedding" in name:
                p.copy_(0.5 * torch.randn(p.shape, generator=gen))
            else:  # Linear / Conv weights (out, in, ...): keep each layer's output O(1)
                p.copy_(torch.randn(p.shape, generator=gen) / (p[0].numel() ** 0.5))


def image(h: int, w: int) -> list[int]:
    """The processor's expansion of one image with a patch grid h x w: one slot per 2x2 window."""
    return image_block_ids(CFG, int(image_tokens(torch.tensor([1, h, w]), CFG.vision_config.spatial_merge_size)))


def video(t: int, h: int, w: int) -> list[int]:
    """<|begin_of_video|>, then per temporal group a frame block and its timestamp, <|end_of_video|>."""
    frames = [tok for k in range(t) for tok in image(h, w) + [DIGITS[k]]]
    return [BOV] + frames + [EOV]


def text(gen: torch.Generator, n: int) -> list[int]:
    return torch.randint(0, 1000, (n,), generator=gen).tolist()  # ordinary (non-special) tokens


def make_case(gen, rows: list[list[int]], image_grids=None, video_grids=None) -> dict[str, torch.Tensor]:
    """Left-pad the rows into a batch and add random pixels (uint8 levels), token types and labels."""
    input_ids, attention_mask = left_pad(rows, PAD), left_pad([[1] * len(r) for r in rows], 0)
    case = {"input_ids": input_ids, "attention_mask": attention_mask,
            "mm_token_type_ids": token_types(input_ids, IMG, BOV, EOV)}
    patch_dim = CFG.vision_config.patch_dim
    for pixel_key, grid_key, grids in (("pixel_values", "image_grid_thw", image_grids),
                                       ("pixel_values_videos", "video_grid_thw", video_grids)):
        if grids is not None:
            case[grid_key] = torch.tensor(grids)
            rows = int(case[grid_key].prod(-1).sum())
            case[pixel_key] = torch.randint(0, 256, (rows, patch_dim), generator=gen, dtype=torch.uint8)
    prompt = attention_mask.cumsum(-1) <= 2  # padding and each row's first two tokens: no targets
    case["labels"] = input_ids.masked_fill(prompt | (input_ids == IMG), -100)
    return case


def cases(gen) -> dict[str, dict[str, torch.Tensor]]:
    return {
        "text": make_case(gen, [text(gen, 6)]),
        "image": make_case(gen, [image(4, 6) + text(gen, 2)], image_grids=[[1, 4, 6]]),
        # 10x12 is larger than the 8x8 position table, 4x4 smaller: both resampling directions
        "two_images": make_case(gen, [text(gen, 1) + image(10, 12) + image(4, 4) + text(gen, 1)],
                                image_grids=[[1, 10, 12], [1, 4, 4]]),
        "image_between_text": make_case(gen, [text(gen, 2) + image(6, 4) + text(gen, 2)], image_grids=[[1, 6, 4]]),
        "video": make_case(gen, [text(gen, 1) + video(2, 4, 6) + text(gen, 1)], video_grids=[[2, 4, 6]]),
        # the image row is the shorter one, so its positions must skip the left padding
        "batch": make_case(gen, [text(gen, 1) + image(4, 4) + text(gen, 1), text(gen, 10)],
                           image_grids=[[1, 4, 4]]),
    }


@torch.no_grad()
def expected(model, case) -> dict[str, torch.Tensor]:
    inputs = model_inputs(case)
    out = model(**inputs, labels=case["labels"])
    position_ids, rope_deltas = model.model.get_rope_index(
        case["input_ids"], case["mm_token_type_ids"], case.get("image_grid_thw"), case.get("video_grid_thw"),
        case["attention_mask"])
    result = {"logits": out.logits, "loss": out.loss, "position_ids": position_ids, "rope_deltas": rope_deltas}
    if "image_grid_thw" in case or "video_grid_thw" in case:
        result["vision_features"], result["merged_features"] = hf_vision_features(model, inputs)
    return result


def main(out: Path = FIXTURES) -> None:
    """Write the fixtures into `out` (data/fixtures; the tests regenerate them elsewhere to compare)."""
    from transformers import Glm4vForConditionalGeneration
    torch.manual_seed(SEED)
    gen = torch.Generator().manual_seed(SEED)
    model = Glm4vForConditionalGeneration(hf_config(CFG)).eval()
    randomize(model, gen)
    model.save_pretrained(out / TINY.name)
    tensors = {}
    for name, case in cases(gen).items():
        for field, value in {**case, **expected(model, case)}.items():
            tensors[f"{name}/{field}"] = value.contiguous()
    save_file(tensors, out / CASES.name, metadata={"made_by": "scripts/make_fixtures.py", "seed": str(SEED)})
    model.to(torch.bfloat16).save_pretrained(out / TINY_BF16.name, max_shard_size="300KB")  # last: casts in place
    total = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"wrote {len(tensors)} tensors to {out / CASES.name}; {out} holds {total:,} bytes")


if __name__ == "__main__":
    main()
