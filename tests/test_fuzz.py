"""Property-based tests (hypothesis): random and malformed images, processor settings, chat messages,
token ids, model and generate arguments, CLI options and corrupted checkpoints.

The contract for every case: either success with consistent shapes and finite values, or one of the
documented exceptions (TypeError, ValueError, FileNotFoundError, OSError) whose message names the
culprit. `classify` sorts a case into ok / clear (a documented error naming the culprit) / unclear
(any other exception, or a documented one that names nothing) / silent (success with a wrong or
non-finite result, or with an input that should have been refused); the tests require ok or clear.

CI runs the "ci" profile (tests/conftest.py: few examples, derandomized). A bigger local run, which
also tallies the outcomes per area into a JSON-lines file:
    MINGLM4V_FUZZ_TALLY=/tmp/tally.jsonl pytest tests/test_fuzz.py --hypothesis-profile=fuzz
"""

import json
import math
import os
import shutil
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import REPO, TINY, TINY_BF16, chat_model_dir
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from minglm4v import Glm4vConfig, Glm4vForConditionalGeneration, cli
from minglm4v.processing.image import Glm4vImageProcessor
from minglm4v.processing.processor import Glm4vProcessor
from minglm4v.processing.tokenizer import Glm4vTokenizer
from minglm4v.processing.video import Glm4vVideoProcessor

DOCUMENTED = (TypeError, ValueError, FileNotFoundError, OSError)
TALLY = os.environ.get("MINGLM4V_FUZZ_TALLY")
TYPED_CONTROL = ["<|assistant|>", "<|user|>", "<|begin_of_video|>", "<|end_of_video|>", "<|image|>", "[gMASK]"]


def classify(area, call, check, culprits):
    """Run `call()`; on success `check(result)` returns None or what is silently wrong. Asserts ok or
    clear (or, with MINGLM4V_FUZZ_TALLY set, only records the outcome)."""
    try:
        problem = check(call())
        outcome, detail = ("silent", problem) if problem else ("ok", "")
    except DOCUMENTED as error:
        message = str(error).lower()
        named = any(c.lower() in message for c in culprits)
        outcome, detail = ("clear" if named else "unclear"), f"{type(error).__name__}: {error}"
    except Exception as error:  # noqa: BLE001 - anything else is what the contract forbids
        outcome, detail = "unclear", f"{type(error).__name__}: {error}"
    if TALLY:
        with open(TALLY, "a") as f:
            f.write(json.dumps({"area": area, "outcome": outcome, "detail": detail[:300]}) + "\n")
    else:
        assert outcome in ("ok", "clear"), f"{outcome}: {detail}"


def finite(t: torch.Tensor) -> bool:
    return bool(torch.isfinite(t).all())


@pytest.fixture(scope="module")
def tokenizer():
    return Glm4vTokenizer.from_pretrained(REPO / "data" / "tokenizer")


@pytest.fixture(scope="module")
def model():
    return Glm4vForConditionalGeneration.from_pretrained(TINY)


# ----------------------------------------------------------------------------- images
MODES = ["1", "L", "P", "RGB", "RGBA", "CMYK", "YCbCr", "LAB", "HSV", "I", "F", "I;16", "LA", "PA", "RGBX"]
numpy_images = hnp.arrays(st.sampled_from([np.uint8, np.float32, np.int16, np.bool_]),
                          hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=40))
pil_images = st.builds(lambda mode, w, h: Image.new(mode, (w, h)), st.sampled_from(MODES),
                       st.integers(0, 60), st.integers(0, 60))
files = st.tuples(st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff"]), st.binary(max_size=300))


def check_pixels(out, key="pixel_values", grid_key="image_grid_thw", patch=14, frames=2, merge=2):
    rows, grid = out[key], out[grid_key]
    if not finite(rows):
        return "non-finite pixel values"
    if rows.shape[1] != 3 * frames * patch ** 2 or int(grid.prod(-1).sum()) != rows.shape[0] or \
            bool((grid[:, 1:] % merge).any()):
        return f"inconsistent rows {tuple(rows.shape)} and grid {grid.tolist()}"


@given(image=st.one_of(numpy_images, numpy_images.map(torch.from_numpy), pil_images))
def test_fuzz_images(image):
    culprits = ("image", "uint8", "dtype", "shape", "size", "aspect ratio", "mode")
    if isinstance(image, torch.Tensor) and image.ndim == 3:
        image = image.permute(2, 0, 1) if image.shape[-1] in (1, 3, 4) else image
    classify("images", lambda: Glm4vImageProcessor()(image), check_pixels, culprits)


@given(content=files, exif=st.booleans())
def test_fuzz_image_files(content, exif):
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "picture.png"
        if exif:  # a real picture whose EXIF block is random bytes
            Image.new("RGB", (30, 20), (9, 99, 199)).save(path, exif=content[1])
        else:
            path.write_bytes(content[0] + content[1])
        classify("images", lambda: Glm4vImageProcessor()(path), check_pixels, ("picture.png",))


# ----------------------------------------------------------------------------- processor settings
SETTINGS = ["min_pixels", "max_pixels", "patch_size", "temporal_patch_size", "merge_size", "image_mean", "image_std"]
values = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=4), st.booleans(), st.none(),
                   st.lists(st.floats(-2, 2), max_size=4))
# sizes stay small enough that even code without the pixel-budget checks cannot allocate gigabytes
sizes = {"min_pixels": 200_000, "max_pixels": 200_000, "patch_size": 64, "merge_size": 8, "temporal_patch_size": 4}
setting = st.sampled_from(SETTINGS).flatmap(
    lambda key: st.tuples(st.just(key), st.one_of(values, st.integers(-3, sizes.get(key, 3)))))


def settings_problem(kwargs, out):
    made = Glm4vImageProcessor(**kwargs)
    pixels = int(out["image_grid_thw"].prod()) * made.patch_size ** 2 * made.temporal_patch_size
    if not made.min_pixels <= made.max_pixels:
        return f"accepted min_pixels {made.min_pixels} > max_pixels {made.max_pixels}"
    if pixels > made.max_pixels and made.max_pixels >= 2 * (made.patch_size * made.merge_size) ** 2:
        return f"{pixels} pixels over max_pixels {made.max_pixels}"
    return check_pixels(out, patch=made.patch_size, frames=made.temporal_patch_size, merge=made.merge_size)


@given(kwargs=st.lists(setting, max_size=3).map(dict))
def test_fuzz_processor_settings(kwargs):
    picture = np.full((30, 40, 3), 128, np.uint8)
    classify("processor settings", lambda: Glm4vImageProcessor(**kwargs)(picture),
             lambda out: settings_problem(kwargs, out), SETTINGS)


@given(fps=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-2, 60), st.text(max_size=3)),
       sample=st.booleans())
def test_fuzz_video_fps(fps, sample):
    video = np.zeros((6, 28, 28, 3), np.uint8)

    def check(out):
        if not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
            return f"accepted fps {fps!r}"
        return check_pixels(out, "pixel_values_videos", "video_grid_thw")
    classify("video", lambda: Glm4vVideoProcessor()(video, fps=fps, sample_frames=sample), check, ("fps",))


# ----------------------------------------------------------------------------- chat messages
text_pieces = st.lists(st.one_of(st.text(max_size=6), st.sampled_from(TYPED_CONTROL), st.just("\ud800")), max_size=3)
texts = text_pieces.map("".join)
items = st.one_of(st.builds(lambda t: {"type": "text", "text": t}, st.one_of(texts, st.integers(), st.none())),
                  st.just({"type": "image", "image": np.zeros((28, 28, 3), np.uint8)}),
                  st.just({"type": "image"}), st.just({"type": "audio"}), st.none(), texts)
message = st.fixed_dictionaries({"role": st.sampled_from(["user", "system", "assistant", "tool", None])},
                                optional={"content": st.one_of(texts, st.lists(items, max_size=3), st.none())})
conversations = st.one_of(st.lists(message, max_size=3), message, st.lists(st.lists(message, max_size=2), max_size=2),
                          st.none(), texts, st.lists(st.none(), max_size=2))


def typed_text(value) -> str:
    """All text the user typed anywhere in `value` (message contents and text items)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return typed_text(value.get("content")) + typed_text(value.get("text"))
    return "".join(typed_text(v) for v in value) if isinstance(value, list) else ""


@given(messages=conversations)
def test_fuzz_messages(tokenizer, messages):
    processor = Glm4vProcessor(Glm4vImageProcessor(), tokenizer)

    def check(out):
        if any(token in typed_text(messages) for token in TYPED_CONTROL):
            return "a control token typed in message text was accepted"
        if out["input_ids"].ndim != 2 or out["mm_token_type_ids"].shape != out["input_ids"].shape:
            return "inconsistent shapes"
    culprits = ("message", "content", "role", "item", "text", "type", "control token", "image", "placeholder",
                "unicode", "string")
    classify("messages", lambda: processor(messages=messages), check, culprits)


# ----------------------------------------------------------------------------- token ids
id_items = st.one_of(st.integers(-2**40, 2**40), st.integers(0, 1030), st.floats(), st.none())
ids = st.one_of(st.none(), st.text(max_size=3), st.integers(), st.lists(id_items, max_size=4))


@given(token_ids=ids)
def test_fuzz_decode(tokenizer, token_ids):
    def check(text):
        bad = [i for i in token_ids if not isinstance(i, int) or not 0 <= i < len(tokenizer)]
        return f"decoded ids {bad} the tokenizer does not have" if bad else None
    classify("token ids", lambda: tokenizer.decode(token_ids), check, ("token id", "decode"))


# ----------------------------------------------------------------------------- forward and generate
dtypes = st.sampled_from([torch.int64, torch.int64, torch.int32, torch.int16, torch.uint8, torch.bool, torch.float32])


@st.composite
def forward_args(draw):
    B, L = draw(st.integers(0, 2)), draw(st.integers(0, 5))
    args = {"input_ids": torch.tensor(draw(st.lists(st.integers(-2, 1030), min_size=B * L, max_size=B * L)),
                                      dtype=torch.long).reshape(B, L).to(draw(dtypes))}
    if draw(st.booleans()):
        shape = draw(st.sampled_from([(B, L), (B, max(L - 1, 0)), (L,)]))
        args["attention_mask"] = torch.tensor(draw(st.sampled_from([1, 1, 0, 2, 0.5])), dtype=torch.float).expand(shape)
    if draw(st.booleans()):
        shape = draw(st.sampled_from([(B, L), (B, L), (B, L + 1)]))
        args["labels"] = torch.tensor(draw(st.sampled_from([-100, 0, 5, 1023, 1024, -1]))).expand(shape).clone()
    if draw(st.booleans()):
        args["logits_to_keep"] = draw(st.sampled_from([0, 1, 2, -1, 1.5, 99]))
    if draw(st.booleans()):
        args["position_ids"] = torch.zeros(draw(st.sampled_from([(3, B, L), (B, L), (2, B, L)])), dtype=torch.long)
    return args


def forward_problem(args, out, vocab):
    B, L = args["input_ids"].shape
    mask, labels, keep = args.get("attention_mask"), args.get("labels"), args.get("logits_to_keep", 0)
    if mask is not None and bool(((mask != 0) & (mask != 1)).any()):
        return f"accepted attention_mask values {mask.unique().tolist()}"
    if keep < 0:
        return f"accepted logits_to_keep {keep}"
    if tuple(out.logits.shape) != (B, min(keep, L) if keep else L, vocab) or not finite(out.logits):
        return f"logits {tuple(out.logits.shape)} finite={finite(out.logits)}"
    if labels is not None and not finite(out.loss):
        return f"loss {out.loss}"


@given(args=forward_args())
def test_fuzz_forward(model, args):
    culprits = ("input_ids", "attention_mask", "labels", "logits_to_keep", "position_ids")
    classify("forward", lambda: model(**args), lambda out: forward_problem(args, out, 1024), culprits)


numbers = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-2, 5), st.text(max_size=3), st.none())


@given(kwargs=st.fixed_dictionaries({}, optional={
    "max_new_tokens": st.one_of(st.integers(-1, 3), st.just(2.0), st.just(True)), "do_sample": st.booleans(),
    "temperature": numbers, "top_k": numbers, "top_p": numbers, "repetition_penalty": numbers}))
def test_fuzz_generate(model, kwargs):
    prompt = torch.tensor([[5, 6, 7]])
    kwargs.setdefault("max_new_tokens", 2)

    def check(out):
        t = kwargs.get("temperature", 1.0)
        if kwargs.get("do_sample") and not (isinstance(t, (int, float)) and math.isfinite(t) and t > 0):
            return f"sampled with temperature {t!r}"
        new = out.shape[1] - prompt.shape[1]
        if not 1 <= new <= kwargs["max_new_tokens"] or out.min() < 0 or out.max() >= 1024:
            return f"output {out.tolist()}"
    culprits = tuple(kwargs) + ("do_sample",)
    classify("generate", lambda: model.generate(prompt, **kwargs), check, culprits)


# ----------------------------------------------------------------------------- the command line
@given(options=st.lists(st.sampled_from([
    ["--temperature", "-1"], ["--temperature", "nan"], ["--temperature", "0.5"], ["--temperature", "inf"],
    ["--top-p", "1.5"], ["--top-p", "0.5"], ["--top-k", "0"], ["--seed", "1"], ["--max-new-tokens", "0"],
    ["--device", "foo"], ["--device", "meta"], ["--thinking-budget", "-1"], ["--image", "/nonexistent.png"],
]), max_size=3))
def test_fuzz_cli(cli_model_dir, options, capsys):
    argv = ["chat", "--model", str(cli_model_dir), "Hi", "--max-new-tokens", "2"] + sum(options, [])

    def call():
        code = cli.main(argv)
        return code, *capsys.readouterr()

    def check(result):
        code, out, err = result
        if code != 0 and not (err.startswith("error: ") and err.count("\n") == 1):
            raise AssertionError(f"exit {code} without one error line: {err!r}")
        temperatures = [float(o[1]) for o in options if o[0] == "--temperature"]
        if code == 0 and temperatures and not (math.isfinite(temperatures[-1]) and temperatures[-1] >= 0):
            return f"exit 0 with --temperature {temperatures[-1]}"
    classify("cli", call, check, ("",))  # the CLI's contract is its exit code and one error line


@pytest.fixture(scope="module")
def cli_model_dir(tmp_path_factory):
    return chat_model_dir(tmp_path_factory.mktemp("cli-model"))


# ----------------------------------------------------------------------------- checkpoints
RAW = (TINY / "model.safetensors").read_bytes()
HEADER_END = 8 + struct.unpack("<Q", RAW[:8])[0]
corruptions = st.one_of(  # (what, where, value): small to print, unlike the damaged file itself
    st.tuples(st.just("truncate"), st.integers(0, len(RAW) - 1), st.just(0)),
    st.tuples(st.just("length"), st.just(0), st.integers(0, 2**64 - 1)),
    st.tuples(st.just("junk tail"), st.just(0), st.integers(1, 2**64 - 1)),
    st.tuples(st.sampled_from(["header byte"]), st.integers(8, HEADER_END - 1), st.integers(0, 255)),
    st.tuples(st.sampled_from(["data byte"]), st.integers(HEADER_END, len(RAW) - 1), st.integers(0, 255)))


def corrupt(what, where, value) -> bytes:
    if what == "truncate":
        return RAW[:where]
    if what == "length":
        return struct.pack("<Q", value) + RAW[8:]
    if what == "junk tail":
        return RAW + struct.pack("<Q", value)
    return RAW[:where] + bytes([value]) + RAW[where + 1:]


@given(corruption=corruptions)
def test_fuzz_corrupted_safetensors(corruption):
    with tempfile.TemporaryDirectory() as directory:
        shutil.copy(TINY / "config.json", directory)
        (Path(directory) / "model.safetensors").write_bytes(corrupt(*corruption))
        # a changed data byte may load (safetensors has no checksum); a changed header must be noticed
        classify("checkpoints", lambda: Glm4vForConditionalGeneration.from_pretrained(directory),
                 lambda model: None, ("model.safetensors", "does not fit its config.json"))


shard_names = st.sampled_from(["../outside.safetensors", "/tmp/../outside.safetensors", "", ".", "sub/../../x",
                               "model-00001-of-00003.safetensors", "missing.safetensors", 3])


@given(name=shard_names, key=st.sampled_from(["lm_head.weight", "model.visual.post_layernorm.weight"]))
def test_fuzz_index_paths(name, key):
    with tempfile.TemporaryDirectory() as root:
        directory = Path(root) / "model"
        shutil.copytree(TINY_BF16, directory)
        shutil.copy(sorted(directory.glob("model-*.safetensors"))[-1], Path(root) / "outside.safetensors")  # bait
        index = json.loads((directory / "model.safetensors.index.json").read_text())
        index["weight_map"][key] = name
        (directory / "model.safetensors.index.json").write_text(json.dumps(index))

        def check(model):
            if isinstance(name, str) and (".." in name or name.startswith("/")):
                return f"read the shard {name!r} from outside the model directory"
        classify("checkpoints", lambda: Glm4vForConditionalGeneration.from_pretrained(directory), check,
                 ("model.safetensors.index.json", "weight_map", str(name), key))


CONFIG_KEYS = [("text_config", k) for k in ("hidden_size", "num_hidden_layers", "num_attention_heads",
                                            "rms_norm_eps", "hidden_act", "pad_token_id", "vocab_size")] + \
              [("vision_config", k) for k in ("patch_size", "num_heads", "depth", "spatial_merge_size")]
json_values = st.one_of(st.integers(-2, 70), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=4),
                        st.booleans(), st.none(), st.lists(st.integers(0, 3), max_size=2), st.just("gelu"))


def config_value_invalid(key, value):
    if key == "hidden_act":
        return value != "silu"
    if key == "rms_norm_eps":
        return not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
                    and value > 0)
    if key == "pad_token_id":
        return value is not None and (type(value) is not int or not 0 <= value < 1024)  # None: the first eos id
    return type(value) is not int or value < 1


@given(where=st.sampled_from(CONFIG_KEYS), value=json_values)
def test_fuzz_config_values(where, value):
    section, key = where
    config = json.loads((TINY / "config.json").read_text())
    config[section][key] = value

    def check(made):
        if config_value_invalid(key, value):
            return f"accepted {section}.{key} = {value!r}"
        with torch.device("meta"):
            Glm4vForConditionalGeneration(made)  # a config that is accepted must build a model
    classify("config", lambda: Glm4vConfig.from_dict(config), check, (key, "config"))
