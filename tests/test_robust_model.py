"""Bad arguments to forward, generate and the CLI: a TypeError/ValueError naming the argument (one
`error:` line from the CLI, never a traceback), never a silently wrong result such as NaN logits
turned into token 0."""

import shutil
import subprocess
import sys

import pytest
import torch
from helpers import REPO, TINY, chat_model_dir, load_ours, model_inputs
from safetensors.torch import load_file, save_file

from minglm4v import cli

IDS = torch.tensor([[5, 6, 7, 8]])


@pytest.fixture(scope="module")
def nan_model_dir(tmp_path_factory):
    """The tiny checkpoint with one NaN in the final norm, plus tokenizer and preprocessor files."""
    directory = chat_model_dir(tmp_path_factory.mktemp("nan-model"))
    state = load_file(TINY / "model.safetensors")
    state["model.language_model.norm.weight"][3] = float("nan")
    save_file(state, directory / "model.safetensors")
    return directory


# ---- forward
@pytest.mark.parametrize("dtype", [torch.int16, torch.int8, torch.uint8, torch.bool])
def test_input_ids_of_a_small_integer_dtype(ours_tiny, dtype):
    with pytest.raises(TypeError, match=rf"input_ids must be an int64 \(or int32\) tensor, got {dtype}"):
        ours_tiny(IDS.to(dtype))


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(input_ids=torch.zeros(1, 0, dtype=torch.long)), ValueError, r"got shape \(1, 0\); a prompt needs at least"),
    (dict(attention_mask=torch.tensor([[1, 1, 2, 1]])), ValueError, r"only 0 \(padding\) and 1 \(token\), got the "
                                                                    r"values \[1, 2\]"),
    (dict(attention_mask=torch.tensor([[1, 0.5, 1, 1]])), ValueError, r"got the values \[0.5, 1.0\]"),
    (dict(position_ids=torch.arange(3)[None]), ValueError,
     r"position_ids must have shape \(3, batch, length\) = \(3, 1, 4\) or \(batch, length\) = \(1, 4\), got \(1, 3\)"),
    (dict(position_ids=torch.zeros(1, 4)), TypeError, r"position_ids must be an int64 \(or int32\) tensor"),
    (dict(labels=torch.tensor([[5, 6, 7]])), ValueError, r"labels must have the shape of input_ids \(1, 4\), got "
                                                         r"\(1, 3\)"),
    (dict(labels=torch.tensor([[5, 6, 7, 1024]])), ValueError, r"labels must be token ids in \[0, 1024\) or -100 "
                                                               r"\(no target\), got values from 5 to 1024"),
    (dict(labels=torch.tensor([[5, -100, -100, -100]])), ValueError, "labels have no target"),
    (dict(labels=torch.tensor([[5.0, 6, 7, 8]])), TypeError, "labels must be an int64"),
    (dict(logits_to_keep=1.5), ValueError, r"logits_to_keep must be an int >= 0 \(0 = every position\), got 1.5"),
    (dict(logits_to_keep=-1), ValueError, "logits_to_keep must be an int >= 0"),
])
def test_forward_arguments(ours_tiny, kwargs, error, message):
    with pytest.raises(error, match=message):
        ours_tiny(**{"input_ids": IDS, **kwargs})


def test_labels_without_targets_in_one_row_are_fine(ours_tiny):
    labels = torch.tensor([[5, -100, -100, -100], [5, 6, 7, 8]])
    loss = ours_tiny(IDS.repeat(2, 1), labels=labels).loss
    assert torch.isfinite(loss)


def test_prompt_longer_than_max_position_embeddings(ours_tiny):
    with pytest.raises(ValueError, match=r"0 cached \+ 1025 new tokens exceed the model's max_position_embeddings "
                                         r"\(1024\)"):
        ours_tiny(torch.ones(1, 1025, dtype=torch.long))


@pytest.fixture(scope="module")
def image_inputs(oracle_cases):
    return model_inputs(oracle_cases["image"])  # grid [1, 4, 6]


@pytest.mark.parametrize("grid, error, message", [
    ([[1, 4, 6]], TypeError, r"image_grid_thw must be an int64 \(or int32\) tensor, got list"),
    (torch.tensor([[1.0, 4, 6]]), TypeError, r"image_grid_thw must be an int64"),
    (torch.tensor([[0, 4, 6]]), ValueError, r"image_grid_thw must hold \[t, h, w\] >= 1 per image, got "
                                            r"\[\[0, 4, 6\]\]"),
    (torch.tensor([[1, -4, -6]]), ValueError, r"image_grid_thw must hold \[t, h, w\] >= 1"),
])
def test_image_grid_values(ours_tiny, image_inputs, grid, error, message):
    with pytest.raises(error, match=message):
        ours_tiny(image_inputs["input_ids"], pixel_values=image_inputs["pixel_values"], image_grid_thw=grid)


@pytest.mark.parametrize("bad", [[float("nan")], [float("inf")], [float("inf"), float("-inf")]])
def test_non_finite_pixels(ours_tiny, image_inputs, bad):
    pixels = image_inputs["pixel_values"].clone()
    pixels[3, 7:7 + len(bad)] = torch.tensor(bad)
    with pytest.raises(ValueError, match="pixel_values holds NaN or infinite values"):
        ours_tiny(image_inputs["input_ids"], pixel_values=pixels, image_grid_thw=image_inputs["image_grid_thw"])


def test_finite_pixels_whose_sum_overflows_are_not_called_non_finite(ours_tiny, image_inputs):
    pixels = image_inputs["pixel_values"].clone()
    pixels[3, 7:9] = 3e38  # finite, but their float32 sum is inf: the quick test fails, the exact one passes
    out = ours_tiny(image_inputs["input_ids"], pixel_values=pixels, image_grid_thw=image_inputs["image_grid_thw"])
    assert out.logits.shape[:2] == image_inputs["input_ids"].shape


# ---- generate
@pytest.mark.parametrize("kwargs, error, message", [
    (dict(input_ids=torch.zeros(1, 0, dtype=torch.long)), ValueError, r"got shape \(1, 0\); a prompt needs at least"),
    (dict(attention_mask=torch.tensor([[2, 1, 1, 1]])), ValueError, r"only 0 \(padding\) and 1 \(token\)"),
    (dict(attention_mask=torch.tensor([[0.5, 1, 1, 1]])), ValueError, r"only 0 \(padding\) and 1 \(token\)"),
    (dict(do_sample=True, temperature="0.7"), TypeError, "temperature must be a finite number, got str '0.7'"),
    (dict(do_sample=True, temperature=float("nan")), TypeError, "temperature must be a finite number, got float nan"),
    (dict(do_sample=True, top_p="0.9"), TypeError, "top_p must be a finite number, got str"),
    (dict(repetition_penalty=float("inf")), TypeError, "repetition_penalty must be a finite number"),
    (dict(do_sample=True, top_k=2.0), ValueError, r"top_k must be a positive int \(or None\), got 2.0"),
    (dict(max_new_tokens=True), ValueError, "max_new_tokens must be a positive int, got True"),
])
def test_generate_arguments(ours_tiny, kwargs, error, message):
    with pytest.raises(error, match=message):
        ours_tiny.generate(**{"input_ids": IDS, "max_new_tokens": 2, **kwargs})


def test_generate_without_a_usable_pad_id():
    model = load_ours(TINY)
    model.config.text_config.pad_token_id = None
    with pytest.raises(ValueError, match=r"text_config.pad_token_id must be a token id in \[0, 1024\) .*got None"):
        model.generate(IDS, max_new_tokens=2)


@pytest.mark.parametrize("do_sample", [False, True])
def test_nan_logits_stop_generation_with_likely_causes(nan_model_dir, do_sample):
    model = load_ours(nan_model_dir)
    with pytest.raises(ValueError, match=r"the model produced NaN or infinite logits at generation step 0; likely "
                                         r"causes: NaN/inf weights in the checkpoint, NaN/inf pixel values"):
        model.generate(IDS, max_new_tokens=2, do_sample=do_sample)


# ---- the command line
def run(argv, capsys):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("extra, message", [
    (["--device", "foo"], "error: --device 'foo' is not a device minglm4v runs on; use cpu, cuda, cuda:N or mps"),
    (["--device", "meta"], "error: --device 'meta' is not a device minglm4v runs on"),
    (["--temperature", "-1"], "error: --temperature must be a finite number >= 0 (0 = greedy), got -1.0"),
    (["--temperature", "nan"], "error: --temperature must be a finite number >= 0 (0 = greedy), got nan"),
    (["--temperature", "0.7", "--top-p", "1.5"], "error: top_p must lie in (0, 1], got 1.5"),
    ([], "error: the model produced NaN or infinite logits at generation step 0"),
])
def test_cli_errors_are_one_line(nan_model_dir, capsys, extra, message):
    code, out, err = run(["chat", "--model", nan_model_dir, "Hi", "--max-new-tokens", 2, *extra], capsys)
    assert code == 1 and err.startswith(message) and "Traceback" not in err and err.count("\n") == 1


def test_cli_corrupt_checkpoint(nan_model_dir, tmp_path, capsys):
    shutil.copytree(nan_model_dir, tmp_path / "model")
    (tmp_path / "model" / "model.safetensors").write_bytes(b"\0" * 7)
    for command in ("info", "chat"):
        code, _, err = run([command, tmp_path / "model"] if command == "info" else
                           ["chat", "--model", tmp_path / "model", "Hi"], capsys)
        assert code == 1 and err.startswith("error: ") and "model.safetensors is not a readable safetensors" in err


def test_cli_output_pipe_closed_is_quiet():
    process = subprocess.Popen([sys.executable, "-m", "minglm4v", "info", str(TINY)], cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()  # the reader is gone before the first line, like `| head -0`
    assert process.wait(timeout=120) == 1
    assert process.stderr.read() == b""
