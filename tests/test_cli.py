"""`python -m minglm4v chat | info | check`, run in-process on the tiny fixture checkpoint with the
fixture tokenizer (data/tokenizer) and default preprocessor configs."""

import json
import math
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers import REPO, TINY, TINY_BF16, chat_model_dir, classify, load_script, write_video
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from minglm4v import Glm4vForConditionalGeneration, cli
from minglm4v.processing.chat_template import parse_boxes, parse_thinking
from minglm4v.processing.processor import Glm4vProcessor
from minglm4v.study.shapes_eval import box_iou


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """What a hub download holds: weights + config, tokenizer files, image and video preprocessor configs."""
    return chat_model_dir(tmp_path_factory.mktemp("tiny-chat"))


@pytest.fixture(scope="module")
def picture(tmp_path_factory):
    path = tmp_path_factory.mktemp("pictures") / "red.png"
    Image.new("RGB", (120, 90), (200, 30, 30)).save(path)
    return path


def run(argv, capsys):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def expected_reply(model_dir, picture, question, new_tokens, **generate_kwargs):
    """Decoded greedy output for the same chat, computed without the CLI."""
    processor = Glm4vProcessor.from_pretrained(model_dir)
    content = [{"type": "image", "image": picture}, {"type": "text", "text": question}]
    inputs = processor(messages=[{"role": "user", "content": content}])
    model = Glm4vForConditionalGeneration.from_pretrained(model_dir)
    out = model.generate(**inputs, max_new_tokens=new_tokens, **generate_kwargs)
    return processor.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)


# ----------------------------------------------------------------------------- chat
def test_chat_streams_the_reply(model_dir, picture, capsys):
    code, out, err = run(["chat", "--model", model_dir, "--image", picture, "What is it?",
                          "--max-new-tokens", 12], capsys)
    assert code == 0
    reply = expected_reply(model_dir, picture, "What is it?", 12)
    assert "<think>" not in reply and len(reply.strip()) > 3  # the random model writes untagged text
    assert out == reply.lstrip() + "\n"


@pytest.mark.parametrize("argv", [["chat", "Hi"], ["eval-shapes", "--pictures", "1"]])
def test_installed_without_a_checkout_the_default_model_asks_for_a_directory(monkeypatch, tmp_path, capsys, argv):
    """Installed from a wheel, minglm4v has no data/ folder beside it: the default model is an error that says
    where the micro model lives and asks for a model directory, instead of a path into site-packages."""
    monkeypatch.setattr(cli, "__file__", str(tmp_path / "site-packages" / "minglm4v" / "cli.py"))
    code, _, err = run(argv, capsys)
    assert code == 1 and err.startswith("error: no model directory given, and the bundled micro model is not at "
                                        "hand: it lives in data/micro-model of a minglm4v source checkout")
    assert "Pass a model directory (--model DIR)" in err and err.count("\n") == 1


def test_chat_default_is_the_bundled_micro_model(capsys):
    """The README's run command: the micro model's thinking names the three shapes of data/images in
    reading order, and its answer gives the yellow square's position words and a box that overlaps the truth."""
    code, out, err = run(["chat", "--image", REPO / "data" / "images" / "shapes.png", "--show-thinking",
                          "Where is the yellow square?"], capsys)
    assert code == 0 and err == ""
    thinking, answer = out.split("\n\n[answer]\n")
    assert re.fullmatch(r"\[thinking\]\n3 shapes: blue triangle top left \[[\d,]+\]; red circle top right \[[\d,]+\]; "
                        r"yellow square bottom center \[[\d,]+\]", thinking)
    assert re.fullmatch(r"bottom center <\|begin_of_box\|>\[\d+,\d+,\d+,\d+\]<\|end_of_box\|>\n", answer)
    scene = load_script("train_micro_model").demo_scene()  # what data/images/shapes.png was drawn from
    (square,) = scene.find("square", "yellow")
    assert box_iou(parse_boxes(answer)[0], square.box_1000(scene.size)) >= 0.5


def test_chat_thinking_budget_separates_thinking_and_answer(model_dir, picture, capsys):
    argv = ["chat", "--model", model_dir, "--image", picture, "What is it?", "--max-new-tokens", 10,
            "--thinking-budget", 4]
    code, out, _ = run(argv, capsys)
    assert code == 0
    reply = expected_reply(model_dir, picture, "What is it?", 10, thinking_budget=4, thinking_end_ids=[1017, 1018])
    thinking, answer = parse_thinking(reply)
    assert "</think><answer>" in reply and thinking and answer
    assert out.strip() == answer
    code, out, _ = run(argv + ["--show-thinking"], capsys)
    assert out.startswith(f"[thinking]\n{thinking}") and f"\n\n[answer]\n{answer}" in out


def test_chat_seeded_sampling_is_reproducible(model_dir, picture, capsys):
    argv = ["chat", "--model", model_dir, "--image", picture, "Hi", "--max-new-tokens", 8,
            "--temperature", 1.0, "--top-p", 0.9, "--seed"]
    first, second, other = (run(argv + [seed], capsys)[1] for seed in (1, 1, 2))
    assert first == second != other


def test_chat_with_a_video(model_dir, tmp_path, capsys):
    frames = np.stack([np.full((112, 112, 3), shade, dtype=np.uint8) for shade in (0, 80, 160, 240)])
    path = write_video(tmp_path / "clip.mov", frames, fps=2)
    code, out, err = run(["chat", "--model", model_dir, "--video", path, "What happens?", "--max-new-tokens", 6],
                         capsys)
    assert code == 0 and out.strip(), err


@pytest.mark.parametrize("extra, match", [
    (["--top-p", "0.9"], "only apply when sampling"),
    (["--seed", "3"], "only apply when sampling"),
    (["--max-new-tokens", "0"], "--max-new-tokens must be at least 1"),
])
def test_chat_rejects_bad_options(model_dir, picture, capsys, extra, match):
    code, _, err = run(["chat", "--model", model_dir, "--image", picture, "Hi", *extra], capsys)
    assert code == 1 and match in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="tests the message for a machine without CUDA")
def test_chat_on_cuda_without_cuda(model_dir, picture, capsys):
    code, _, err = run(["chat", "--model", model_dir, "--image", picture, "Hi", "--device", "cuda"], capsys)
    assert code == 1 and "CUDA is not available" in err


def test_chat_without_a_model_explains_where_to_get_one(tmp_path, capsys):
    code, _, err = run(["chat", "--model", tmp_path / "nowhere", "Hi"], capsys)
    assert code == 1 and "no model in" in err and "huggingface-cli download" in err


def test_chat_unreadable_image(model_dir, tmp_path, capsys):
    bad = tmp_path / "not-a-picture.png"
    bad.write_text("hello")
    code, _, err = run(["chat", "--model", model_dir, "--image", bad, "Hi"], capsys)
    assert code == 1 and "cannot read image file" in err and "not-a-picture.png" in err


def test_chat_prompt_longer_than_the_model_supports(model_dir, picture, tmp_path, capsys):
    small = tmp_path / "short-context"
    shutil.copytree(model_dir, small)
    config = json.loads((small / "config.json").read_text())
    config["text_config"]["max_position_embeddings"] = 20
    (small / "config.json").write_text(json.dumps(config))
    code, _, err = run(["chat", "--model", small, "--image", picture, "Hi"], capsys)
    assert code == 1 and "but the model supports 20 positions" in err


# ----------------------------------------------------------------------------- the reply printer
@pytest.mark.parametrize("text", [
    "<think>I see a red square.</think><answer>A red square.</answer>",
    "\n<think>Let me look.\nIt is round.</think>\n<answer>\nA circle</answer><|user|>",
    "<think>A</think>B",
    "It was pre-filled.</think><answer>Yes</answer>",
    "<think>cut off while thinking",
    "no tags at all",
    "x <answer>only an answer</answer> trailing",
])
@pytest.mark.parametrize("chunk", [1, 3, 1000])
def test_reply_printer_prints_what_parse_thinking_finds(text, chunk):
    for show in (False, True):
        written = []
        printer = cli.ReplyPrinter(show, written.append)
        for i in range(0, len(text), chunk):  # also splits tags across chunks
            printer(text[i:i + chunk])
        printer.end()
        out = "".join(written)
        thinking, answer = parse_thinking(text.replace("<|user|>", ""))
        if show:
            assert (f"[thinking]\n{thinking}" in out) == bool(thinking)
            assert out.rstrip().endswith(f"[answer]\n{answer}" if answer else thinking)
        else:
            assert out.strip() == answer


# ----------------------------------------------------------------------------- info and check
def test_info_counts_parameters_per_component(capsys):
    code, out, _ = run(["info", TINY_BF16], capsys)
    assert code == 0
    model = Glm4vForConditionalGeneration.from_pretrained(TINY)
    parts = {"vision tower": 0, "merger": 0, "language model": 0, "lm_head": 0}
    for name, p in model.named_parameters():
        parts[cli.component(name)] += p.numel()
    for part, count in parts.items():
        assert f"{part:<16}{count:>16,} parameters" in out
    assert f"{sum(parts.values()):>16,} parameters" in out
    assert "BF16 (56 tensors)" in out
    size = sum(p.stat().st_size for p in TINY_BF16.glob("*.safetensors"))
    assert f"{size:,} bytes in 3 safetensors file(s)" in out


def test_check_compares_every_component_with_transformers(capsys):
    code, out, _ = run(["check", TINY], capsys)
    assert code == 0
    for name in ["model.visual.blocks.1", "model.visual.merger", "model.language_model.embed_tokens",
                 "model.language_model.layers.1", "lm_head"]:
        assert f"\n{name} " in out
    assert out.rstrip().endswith("-> OK")


def test_check_reports_a_mismatch(monkeypatch, capsys):
    load = Glm4vForConditionalGeneration.from_pretrained.__func__

    def broken(cls, *args, **kwargs):
        model = load(cls, *args, **kwargs)
        with torch.no_grad():
            model.model.language_model.layers[1].post_mlp_layernorm.weight.mul_(1.5)
        return model
    monkeypatch.setattr(Glm4vForConditionalGeneration, "from_pretrained", classmethod(broken))
    code, out, _ = run(["check", TINY], capsys)
    assert code == 1 and "MISMATCH" in out
    diffs = {line.split()[0]: float(line.split()[-2]) for line in out.splitlines()[1:-1]}
    # the break shows at the layer that has it, not before (where only fp32 rounding differs)
    assert diffs["model.language_model.layers.0"] < 1e-4 and diffs["model.language_model.layers.1"] > 0.1


def test_check_without_transformers_says_how_to_get_it(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "transformers", None)  # makes `import transformers` fail
    code, _, err = run(["check", TINY], capsys)
    assert code == 1 and "pip install transformers" in err


def test_python_dash_m_runs_the_cli():
    result = subprocess.run([sys.executable, "-m", "minglm4v", "info", str(TINY)], capture_output=True, text=True,
                            cwd=REPO, timeout=120)
    assert result.returncode == 0 and "303,072 parameters" in result.stdout


# ---- errors: one line, never a traceback
@pytest.mark.parametrize("extra, message", [
    (["--device", "foo"], "error: --device 'foo' is not a device minglm4v runs on; use cpu, cuda, cuda:N or mps"),
    (["--device", "meta"], "error: --device 'meta' is not a device minglm4v runs on"),
    (["--temperature", "-1"], "error: --temperature must be a finite number >= 0 (0 = greedy), got -1.0"),
    (["--temperature", "nan"], "error: --temperature must be a finite number >= 0 (0 = greedy), got nan"),
    (["--temperature", "0.7", "--top-p", "1.5"], "error: top_p must lie in (0, 1], got 1.5"),
    ([], "error: the model produced NaN or infinite logits at generation step 0"),
    (["--temperature", "0.7", "--seed", "99999999999999999999999"],
     "error: --seed must be a whole number from 0 to 2**64 - 1 (a torch.Generator seed), got 99999999999999999999999"),
    (["--temperature", "0.7", "--seed", "-1"], "error: --seed must be a whole number from 0 to 2**64 - 1"),
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


@given(options=st.lists(st.sampled_from([
    ["--temperature", "-1"], ["--temperature", "nan"], ["--temperature", "0.5"], ["--temperature", "inf"],
    ["--top-p", "1.5"], ["--top-p", "0.5"], ["--top-k", "0"], ["--seed", "1"], ["--max-new-tokens", "0"],
    ["--device", "foo"], ["--device", "meta"], ["--thinking-budget", "-1"], ["--image", "/nonexistent.png"],
]), max_size=3))
def test_fuzz_cli(model_dir, options, capsys):
    argv = ["chat", "--model", str(model_dir), "Hi", "--max-new-tokens", "2"] + sum(options, [])

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
