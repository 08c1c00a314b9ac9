"""Supervised fine-tuning data: JSON Lines conversations -> token ids, labels and pixels.

The format is the one GLM-4.1V users already have from LLaMA-Factory, ms-swift and the official GLM-V
repository, one conversation per line:

    {"messages": [{"role": "user", "content": "<image>What is this?"},
                  {"role": "assistant", "content": "<think>...</think><answer>A cat.</answer>"}],
     "images": ["cat.png"]}

One "<image>" per entry of "images", in order ("<video>" and "videos" likewise; a video is a file
that PyAV can read); paths are relative to the JSON Lines file. Every line is checked when the
file is opened, and a bad line raises `DataError` naming the file and line: nothing is skipped.

Rendering (`encode`): the prompt is exactly what inference sees, the chat template with a generation
prompt (`...<|assistant|>\\n`), run through `Glm4vProcessor`; the target is the last assistant turn
followed by `<|user|>`, tokenised on its own as the model generates it.

    input_ids = prompt ids (P) + target ids (T)        labels = -100 x P + target ids

Choices, with their precedents:
- Only the last assistant turn carries loss; earlier assistant turns stay in the prompt with their
  answer alone (`parse_thinking(content)[1]`), which is how the official demos feed history back.
  This is ms-swift's `loss_scale='last_round'` for thinking models, which drops earlier thinking the
  same way; training on answer-only turns would teach the model to skip thinking.
- The turn ends with `<|user|>`: it is what GLM-4.1V itself emits after `</answer>` (one of the
  generation stop ids), what follows an assistant turn in the template, and the suffix of ms-swift's
  GLM-4 templates. LLaMA-Factory appends `<|endoftext|>` instead; both are stop ids at inference.

`collate` left-pads encoded examples into a batch: input_ids, attention_mask, mm_token_type_ids,
labels (B, L) int64, plus pixel_values (N, 1176) / image_grid_thw (images, 3) and the video pair.
A batch may mix image and video conversations: the model tells their <|image|> slots apart by
mm_token_type_ids (transformers 5.24's forward refuses such a batch: it counts every <|image|> token
as an image slot and as a video slot).
No counterpart in transformers (LLaMA-Factory's `SupervisedDatasetProcessor` plays this role).
"""

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..processing import special_tokens as st
from ..processing.chat_template import ROLES, parse_thinking
from ..processing.processor import Glm4vProcessor
from ..processing.tokenizer import left_pad

KEYS = ("messages", "images", "videos")
PLACEHOLDERS = {"<image>": "images", "<video>": "videos"}
_SPLIT = re.compile("(<image>|<video>)")


class DataError(ValueError):
    """A problem with one line of a training file: `path:line: what is wrong, how to fix it`."""

    def __init__(self, path, line: int, message: str):
        super().__init__(f"{path}:{line}: {message}")


@dataclass
class Conversation:
    """One checked line: chat-template messages (pictures as items) and the target text."""
    path: Path
    line: int
    messages: list[dict]  # the prompt: every message before the last assistant turn
    target: str  # the last assistant turn + <|user|>, the end of turn the model writes
    images: list[Path] = field(default_factory=list)
    videos: list[Path] = field(default_factory=list)


def read_jsonl(path) -> list[Conversation]:
    """Parse and check every line of a JSON Lines file (blank lines aside); raises DataError."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"training data file {path} does not exist")
    conversations = []
    for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if text.strip():
            conversations.append(parse_line(path, number, text))
    if not conversations:
        raise DataError(path, 1, "the file holds no conversations; write one JSON object per line")
    return conversations


def parse_line(path: Path, number: int, text: str) -> Conversation:
    def fail(message):
        return DataError(path, number, message)
    try:
        record = json.loads(text)
    except json.JSONDecodeError as error:
        raise fail(f"invalid JSON ({error.msg} at column {error.colno})") from None
    if not isinstance(record, dict) or not isinstance(record.get("messages"), list) or not record["messages"]:
        raise fail('expected an object with a non-empty "messages" list, e.g. {"messages": [{"role": "user", '
                   '"content": "<image>Question?"}, {"role": "assistant", "content": "Answer"}], "images": ["a.png"]}')
    unknown = sorted(set(record) - set(KEYS))
    if unknown:
        raise fail(f"unknown key(s) {unknown}; a line has only {list(KEYS)}")
    media = {}
    for kind in ("images", "videos"):
        files = record.get(kind, [])
        if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
            raise fail(f'"{kind}" must be a list of file paths (relative to {path.parent}), got {files!r}')
        media[kind] = [path.parent / f for f in files]
        missing = [str(f) for f in media[kind] if not f.is_file()]
        if missing:
            raise fail(f"{kind[:-1]} file(s) not found: {missing} (paths are relative to the data file)")
    if media["images"] and media["videos"]:
        raise fail("a conversation has either images or videos, not both (video frames share the image token)")
    messages = record["messages"]
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            raise fail(f'message {i} must be {{"role": ..., "content": "text"}}, got {message!r}')
        if message.get("role") not in ROLES:
            raise fail(f"message {i} has unknown role {message.get('role')!r}; expected one of {ROLES}")
        if message["role"] != "user" and _SPLIT.search(message["content"]):
            raise fail(f"message {i} ({message['role']}) has an <image>/<video> placeholder; only user "
                       "messages can show pictures")
    for placeholder, kind in PLACEHOLDERS.items():
        count = sum(m["content"].count(placeholder) for m in messages)
        if count != len(media[kind]):
            raise fail(f"{count} {placeholder} placeholder(s) in the messages but {len(media[kind])} {kind}; "
                       f"write one {placeholder} per entry of \"{kind}\", in order")
    if messages[-1]["role"] != "assistant" or not any(m["role"] == "user" for m in messages):
        raise fail("a conversation must have a user message and end with the assistant turn to learn")
    files = iter(media["images"] + media["videos"])  # one kind at most, in placeholder order
    prompt = [_template_message(m, files) for m in messages[:-1]]
    return Conversation(path, number, prompt, messages[-1]["content"] + st.USER,
                        media["images"], media["videos"])


def _template_message(message: dict, files) -> dict:
    """A JSON Lines message -> a chat-template message (pictures as items with their file; history
    answer-only)."""
    role, content = message["role"], message["content"]
    if role == "assistant":
        return {"role": role, "content": parse_thinking(content)[1]}
    if role == "system":
        return {"role": role, "content": content}
    items = [{"type": piece[1:-1], "path": str(next(files))} if piece in PLACEHOLDERS
             else {"type": "text", "text": piece} for piece in _SPLIT.split(content) if piece]
    return {"role": role, "content": items}


def encode_prompt(conversation: Conversation, processor: Glm4vProcessor) -> dict:
    """The processor's inputs (1, P) for the prompt of a Conversation; unreadable pictures raise DataError."""
    try:  # the processor renders the prompt with the generation prompt and reads the pictures or clips
        return processor(messages=conversation.messages)
    except (OSError, ValueError) as error:
        kind = "videos" if conversation.videos else "images"
        raise DataError(conversation.path, conversation.line, f"cannot process its {kind}: {error}") from error


def encode(conversation: Conversation, processor: Glm4vProcessor) -> dict:
    """A Conversation -> {"input_ids", "labels": lists of P + T ints, pixel tensors and grids}."""
    inputs = encode_prompt(conversation, processor)
    target = processor.tokenizer.encode(conversation.target)
    encoded = {k: v for k, v in inputs.items() if k not in ("input_ids", "attention_mask", "mm_token_type_ids")}
    prompt_ids = inputs["input_ids"][0].tolist()
    return {**encoded, "input_ids": prompt_ids + target, "labels": [-100] * len(prompt_ids) + target}


class SFTDataset(torch.utils.data.Dataset):
    """Checked conversations of one file; items are encoded on access (pictures and clips read
    lazily), and one longer than `max_length` tokens (the model's max_position_embeddings) raises
    DataError. Videos need the model's video processor config."""

    def __init__(self, path, processor: Glm4vProcessor, max_length: int | None = None):
        self.conversations = read_jsonl(path)
        self.processor, self.max_length = processor, max_length
        video = next((c for c in self.conversations if c.videos), None)
        if video and processor.video_processor is None:
            raise DataError(video.path, video.line, "the conversation has a video, but the model's processor "
                            "reads none: its directory lacks video_preprocessor_config.json (GLM-4.1V checkpoints "
                            "ship one); copy it there, or write the defaults with "
                            "minglm4v.Glm4vVideoProcessor().save_pretrained(DIR)")

    def __len__(self) -> int:
        return len(self.conversations)

    def __getitem__(self, index: int) -> dict:
        conversation = self.conversations[index]
        item = encode(conversation, self.processor)
        if self.max_length and len(item["input_ids"]) > self.max_length:
            raise DataError(conversation.path, conversation.line,
                            f"the conversation is {len(item['input_ids'])} tokens long, more than the model's "
                            f"{self.max_length} positions; shorten it or use smaller pictures")
        return item


def collate(examples: list[dict], processor: Glm4vProcessor) -> dict:
    """Left-pad encoded examples into one batch (see the module docstring for the fields)."""
    input_ids = left_pad([e["input_ids"] for e in examples], processor.tokenizer.pad_token_id)
    batch = {
        "input_ids": input_ids,
        "attention_mask": left_pad([[1] * len(e["input_ids"]) for e in examples], 0),
        "mm_token_type_ids": processor.mm_token_type_ids(input_ids),
        "labels": left_pad([e["labels"] for e in examples], -100),
    }
    for pixels, grid in (("pixel_values", "image_grid_thw"), ("pixel_values_videos", "video_grid_thw")):
        with_media = [e for e in examples if pixels in e]
        if with_media:
            batch[pixels] = torch.cat([e[pixels] for e in with_media])
            batch[grid] = torch.cat([e[grid] for e in with_media])
    return batch
