"""Training data (minglm4v/training/data.py): the JSON Lines format, the labels and the batch layout."""

import json

import pytest
import torch
from sft_helpers import make_model_dir, picture, write_dataset

from minglm4v.processing.special_tokens import image_block
from minglm4v.training.data import DataError, SFTDataset, collate, read_jsonl

IMAGE = image_block(16)  # 112x112: 8x8 patches / 2x2 merge


def _file(tmp_path, *lines: str):
    picture("red", 0).save(tmp_path / "a.png")
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


GOOD = json.dumps({"messages": [{"role": "user", "content": "<image>Hi?"},
                                {"role": "assistant", "content": "Hello"}], "images": ["a.png"]})


@pytest.mark.parametrize("line, message", [
    ('{"messages": [', "invalid JSON"),
    (json.dumps({"messages": [{"role": "bot", "content": "x"}]}), "unknown role 'bot'"),
    (json.dumps({"messages": [{"role": "user", "content": "<image><image>Hi"}, {"role": "assistant", "content": "A"}],
                 "images": ["a.png"]}), "2 <image> placeholder(s) in the messages but 1 images"),
    (json.dumps({"messages": [{"role": "user", "content": "<image>Hi"}, {"role": "assistant", "content": "A"}],
                 "images": ["missing.png"]}), "image file(s) not found"),
    (json.dumps({"messages": [{"role": "user", "content": "<video>Hi"}, {"role": "assistant", "content": "A"}],
                 "videos": ["missing.mp4"]}), "video file(s) not found"),
    (json.dumps({"messages": [{"role": "user", "content": "<image><video>Hi"}, {"role": "assistant", "content": "A"}],
                 "images": ["a.png"], "videos": ["a.png"]}), "either images or videos, not both"),
    (json.dumps({"messages": [{"role": "user", "content": "<video>Hi"}, {"role": "assistant", "content": "A"}]}),
     "1 <video> placeholder(s) in the messages but 0 videos"),
    (json.dumps({"messages": [{"role": "user", "content": "Hi"}]}), "end with the assistant turn"),
    (json.dumps({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "A"}],
                 "image": ["a.png"]}), "unknown key(s) ['image']"),
    (json.dumps({"messages": []}), 'non-empty "messages" list'),
])
def test_bad_lines_are_reported_with_file_and_line(tmp_path, line, message):
    path = _file(tmp_path, GOOD, "", line, GOOD)  # the bad line is line 3 (blank lines are counted)
    with pytest.raises(DataError) as error:
        read_jsonl(path)
    assert str(error.value).startswith(f"{path}:3: ") and message in str(error.value)


def test_labels_cover_only_the_last_assistant_turn(tmp_path, processor):
    path = _file(tmp_path, json.dumps({"images": ["a.png"], "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "<image>Colour?"},
        {"role": "assistant", "content": "<think>It is red.</think><answer>red</answer>"},
        {"role": "user", "content": "Sure?"},
        {"role": "assistant", "content": "<think>Yes.</think><answer>yes</answer>"}]}))
    item = SFTDataset(path, processor)[0]
    ids, labels = item["input_ids"], item["labels"]
    prompt = [i for i, label in zip(ids, labels) if label == -100]
    target = [label for label in labels if label != -100]
    decode = processor.tokenizer.decode
    # the earlier assistant turn keeps only its answer; the prompt ends as inference's does
    assert decode(prompt) == ("[gMASK]<sop><|system|>\nBe brief.<|user|>\n" + IMAGE + "Colour?<|assistant|>\nred"
                              "<|user|>\nSure?<|assistant|>\n")
    assert decode(target) == "<think>Yes.</think><answer>yes</answer><|user|>"
    assert labels[:len(prompt)] == [-100] * len(prompt) and ids[len(prompt):] == target
    assert item["image_grid_thw"].tolist() == [[1, 8, 8]] and item["pixel_values"].shape == (64, 1176)


def test_collate_pads_on_the_left(tmp_path, processor):
    data = SFTDataset(write_dataset(tmp_path, 3), processor)
    items = [data[0], data[1]]  # "red" and "green" answers: different lengths
    batch = collate(items, processor)
    width = max(len(i["input_ids"]) for i in items)
    short = min(items, key=lambda i: len(i["input_ids"]))
    pad = width - len(short["input_ids"])
    row = [len(i["input_ids"]) for i in items].index(len(short["input_ids"]))
    assert pad > 0 and batch["input_ids"].shape == (2, width)
    assert batch["attention_mask"][row].tolist() == [0] * pad + [1] * len(short["input_ids"])
    assert batch["labels"][row].tolist() == [-100] * pad + short["labels"]
    assert batch["input_ids"][row, :pad].eq(processor.tokenizer.pad_token_id).all()
    assert batch["mm_token_type_ids"].sum() == 32 and batch["image_grid_thw"].tolist() == [[1, 8, 8]] * 2
    assert torch.equal(batch["pixel_values"], torch.cat([items[0]["pixel_values"], items[1]["pixel_values"]]))


def test_train_command_reports_bad_data_with_its_line(tmp_path, capsys):
    from minglm4v import cli
    model = make_model_dir(tmp_path / "model")
    path = _file(tmp_path, GOOD, GOOD.replace('"a.png"', '"gone.png"'))
    assert cli.main(["train", "--model", str(model), "--data", str(path), "--output-dir", str(tmp_path / "out")]) == 1
    assert f"error: {path}:2: image file(s) not found" in capsys.readouterr().err


def test_too_long_conversation_is_an_error(tmp_path, processor):
    with pytest.raises(DataError, match=r":1: the conversation is \d+ tokens long, more than the model's 20"):
        SFTDataset(_file(tmp_path, GOOD), processor, max_length=20)[0]


def test_unreadable_picture_is_reported_with_its_line(tmp_path, processor):
    path = _file(tmp_path, GOOD)
    (tmp_path / "a.png").write_bytes(b"not a picture")
    with pytest.raises(DataError, match=r"bad.jsonl:1: cannot process its images"):
        SFTDataset(path, processor)[0]
