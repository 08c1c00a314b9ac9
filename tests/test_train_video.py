"""Training on videos: a JSON Lines line with "videos" encodes to the prompt inference builds for the
same clip, batches (also next to image conversations), trains end to end with the loss transformers
computes, and a missing or unreadable clip is an error naming the file and line."""

import json
import re

import numpy as np
import pytest
import torch
from helpers import load_hf, write_video
from safetensors.torch import load_file
from sft_helpers import COLOURS, make_model_dir, run_train, write_dataset

from minglm4v import Glm4vForConditionalGeneration, cli
from minglm4v.processing.processor import Glm4vProcessor
from minglm4v.processing.special_tokens import image_block
from minglm4v.processing.video import load_video
from minglm4v.training.data import DataError, SFTDataset, collate
from minglm4v.training.train import step_indices

ANSWER = "<think>A {} square slides to the right.</think><answer>the {} square</answer>"
# 8 frames at 4 fps: 2 s -> 4 frames sampled at 2 fps (0, 2, 4, 6) -> 2 temporal groups starting at 0 s
# and 1 s, each 56x56 = 4x4 patches -> 2x2 merged = 4 <|image|> tokens
PROMPT = ("[gMASK]<sop><|user|>\n<|begin_of_video|>" + image_block(4) + "0" + image_block(4) + "1"
          + "<|end_of_video|>What moves?<|assistant|>\n")


def clip(colour: str, count: int = 8) -> np.ndarray:
    """`count` frames (T, 56, 56, 3) of a square sliding right on white."""
    frames = np.full((count, 56, 56, 3), 255, np.uint8)
    for t in range(count):
        frames[t, 18:38, 2 * t:20 + 2 * t] = COLOURS[colour]
    return frames


def line(video: str, colour: str = "red") -> str:
    return json.dumps({"messages": [{"role": "user", "content": "<video>What moves?"},
                                    {"role": "assistant", "content": ANSWER.format(colour, colour)}],
                       "videos": [video]})


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(model dir, processor, a file of 3 one-clip conversations: clip i has one colour and 2 + i temporal
    groups, so that batches need padding)."""
    root = tmp_path_factory.mktemp("video")
    model = make_model_dir(root / "model")
    for i, colour in enumerate(COLOURS):
        write_video(root / f"clip{i}.mp4", clip(colour, 8 + 4 * i), fps=4)
    data = root / "videos.jsonl"
    data.write_text("".join(line(f"clip{i}.mp4", c) + "\n" for i, c in enumerate(COLOURS)))
    return model, Glm4vProcessor.from_pretrained(model), data


def test_a_video_conversation_encodes_as_inference_prompts(setup):
    model, processor, data = setup
    item = SFTDataset(data, processor)[0]
    video = data.parent / "clip0.mp4"
    inference = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "video", "path": str(video)}, {"type": "text", "text": "What moves?"}]}],
        tokenize=True, return_dict=True)
    prompt = inference["input_ids"][0].tolist()
    ids, labels, n = item["input_ids"], item["labels"], len(prompt)
    assert processor.tokenizer.decode(prompt) == PROMPT
    assert ids[:n] == prompt and labels[:n] == [-100] * n
    assert labels[n:] == ids[n:] and processor.tokenizer.decode(ids[n:]) == ANSWER.format("red", "red") + "<|user|>"
    frames, metadata = load_video(video)
    expected = processor.video_processor(frames, **metadata)
    assert torch.equal(item["pixel_values_videos"], expected["pixel_values_videos"])
    assert item["video_grid_thw"].tolist() == [[2, 4, 4]] and "pixel_values" not in item


def test_a_batch_may_mix_video_and_image_conversations(setup, tmp_path):
    """transformers refuses such a batch (it counts video frames' <|image|> tokens as image slots too), so
    the check is that each row's loss is its own: the batch loss is the token-weighted mean of the
    one-conversation losses (and those equal transformers', tested below for videos and in
    test_model_oracle.py for images)."""
    model, processor, data = setup
    video = SFTDataset(data, processor)[0]
    image = SFTDataset(write_dataset(tmp_path, 1), processor)[0]
    batch = collate([video, image], processor)
    assert batch["video_grid_thw"].tolist() == [[2, 4, 4]] and batch["image_grid_thw"].tolist() == [[1, 8, 8]]
    assert batch["mm_token_type_ids"].eq(2).sum() == 8 and batch["mm_token_type_ids"].eq(1).sum() == 16
    ours = Glm4vForConditionalGeneration.from_pretrained(model)
    with torch.no_grad():
        (mixed, mixed_n), *alone = [(ours(**b).loss, int(b["labels"][:, 1:].ne(-100).sum()))
                                    for b in (batch, collate([video], processor), collate([image], processor))]
    torch.testing.assert_close(mixed, sum(loss * n for loss, n in alone) / mixed_n, rtol=1e-6, atol=0)


def test_training_on_videos_takes_the_loss_transformers_computes(setup, tmp_path):
    model, processor, data = setup
    run_train("--model", str(model), "--data", str(data), "--output-dir", str(tmp_path), "--max-steps", "2",
              "--batch-size", "2", "--lr", "1e-2", "--freeze", "none")
    log = [json.loads(text) for text in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    items = [SFTDataset(data, processor)[i] for i in step_indices(3, 0, 2, seed=0)]
    first = collate(items, processor)
    assert first["video_grid_thw"].tolist() == [[4, 4, 4], [2, 4, 4]] and first["attention_mask"].eq(0).any()
    assert torch.equal(first["pixel_values_videos"], torch.cat([i["pixel_values_videos"] for i in items]))
    with torch.no_grad():
        ours = Glm4vForConditionalGeneration.from_pretrained(model)(**first).loss
        theirs = load_hf(model)(**first).loss
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    assert len(log) == 2 and all(np.isfinite(r["loss"]) for r in log)
    assert log[0]["loss"] == pytest.approx(ours.item(), rel=1e-6)  # step 1's loss is the base model's
    before, after = load_file(model / "model.safetensors"), load_file(tmp_path / "model.safetensors")
    changed = {key.split(".")[1] for key in before if not torch.equal(before[key], after[key])}
    assert changed >= {"visual", "language_model"}  # the clips' gradients reached the vision tower


def test_an_unreadable_video_is_reported_with_its_line(setup, tmp_path, capsys):
    model, _, _ = setup
    write_video(tmp_path / "good.mp4", clip("blue"), fps=4)
    (tmp_path / "broken.mp4").write_bytes(np.random.default_rng(0).bytes(2000))
    data = tmp_path / "data.jsonl"
    data.write_text(line("good.mp4") + "\n" + line("broken.mp4") + "\n")
    argv = ["train", "--model", str(model), "--data", str(data), "--output-dir", str(tmp_path / "out"),
            "--max-steps", "1", "--batch-size", "2"]
    assert cli.main(argv) == 1
    assert f"error: {data}:2: cannot process its videos: cannot read video file {tmp_path / 'broken.mp4'}" \
        in capsys.readouterr().err


def test_a_video_needs_the_model_s_video_processor(setup, tmp_path):
    model, _, data = setup
    bare = make_model_dir(tmp_path)
    (bare / "video_preprocessor_config.json").unlink()
    with pytest.raises(DataError, match=re.escape(f"{data}:1: the conversation has a video, but the model's "
                                                  "processor reads none: its directory lacks video_preprocessor")):
        SFTDataset(data, Glm4vProcessor.from_pretrained(bare))
