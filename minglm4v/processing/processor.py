"""Glm4vProcessor: prompt text + pictures/videos -> everything the model's forward takes.

Corresponds to transformers' `Glm4vProcessor` (same `input_ids`, `attention_mask`,
`mm_token_type_ids` for the same tokenizer and pixels). Steps:

1. (optional) render `messages` with the chat template (`apply_chat_template(..., tokenize=True,
   return_dict=True)` or `processor(messages=...)`); each image/video item leaves one
   `<|image|>` / `<|video|>` placeholder and its picture/clip is collected in order: the object
   itself, or a file under "path" / "url" (a local path or file:// URL; http(s) is refused).
2. run the image (or video) processor: pixel rows and a [t, gh, gw] grid per image (video).
3. expand each placeholder to as many tokens as the vision tower will produce for it:
     image:  <|image|>                ->  <|image|> x (t·gh·gw / merge_size²)
     video:  <|video|>                ->  for each temporal group k:
             <|begin_of_image|> <|image|> x (gh·gw / merge_size²) <|end_of_image|> str(second_k)
   Videos reuse the *image* token for their frames, so the model tells them apart only by
   `mm_token_type_ids` (0 text, 1 image token, 2 image token inside <|begin_of_video|>…<|end_of_video|>).
4. tokenise and left-pad the batch.

Output (B = prompts, L = longest expanded prompt): input_ids, attention_mask, mm_token_type_ids
(B, L) int64; with images pixel_values (N, 1176) float32 and image_grid_thw (num_images, 3) int64;
with videos pixel_values_videos (N, 1176) and video_grid_thw (num_videos, 3); all in a BatchFeature.
"""
import re
import urllib.parse
import urllib.request
from pathlib import Path

import torch

from ..base.hub import check_kwargs, check_model_type, resolve_directory
from ..model.rope import image_tokens, token_types
from . import special_tokens as st
from .chat_template import apply_chat_template, content_item_type
from .feature import BatchFeature
from .image import Glm4vImageProcessor
from .tokenizer import Glm4vTokenizer
from .video import Glm4vVideoProcessor, load_video, video_processor_for

_PLACEHOLDER = re.compile(re.escape(st.IMAGE) + "|" + re.escape(st.VIDEO))


def _count_mismatch(kind: str, token: str, in_text: int, passed: int) -> ValueError:
    return ValueError(
        f"the text has {in_text} {token} placeholder(s) but {passed} {kind}(s) were passed; put one "
        f"<|begin_of_{kind}|>{token}<|end_of_{kind}|> in the text per {kind}, in the order of the {kind}s "
        f"(processor.apply_chat_template does this for {{'type': '{kind}'}} items)")


class Glm4vProcessor:
    def __init__(self, image_processor: Glm4vImageProcessor, tokenizer: Glm4vTokenizer,
                 video_processor: Glm4vVideoProcessor | None = None):
        self.image_processor = image_processor
        self.tokenizer = tokenizer
        self.video_processor = video_processor

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *, revision=None, cache_dir=None,
                        **kwargs) -> "Glm4vProcessor":
        """Tokenizer + preprocessor_config.json (+ video_preprocessor_config.json if present), from a
        directory or a cached hub id (see hub.py)."""
        check_kwargs(kwargs, "Glm4vProcessor.from_pretrained")
        directory = resolve_directory(pretrained_model_name_or_path, revision, cache_dir)
        check_model_type(directory)
        return cls(Glm4vImageProcessor.from_pretrained(directory), Glm4vTokenizer.from_pretrained(directory),
                   video_processor_for(directory))

    def save_pretrained(self, save_directory) -> None:
        """The tokenizer files and the preprocessor config(s), as in a hub checkpoint."""
        self.tokenizer.save_pretrained(save_directory)
        self.image_processor.save_pretrained(save_directory)
        if self.video_processor is not None:
            self.video_processor.save_pretrained(save_directory)

    def __call__(self, text: str | list[str] | None = None, images=None, videos=None,
                 messages: list | None = None, padding: bool = True, return_tensors: str = "pt",
                 **video_kwargs) -> BatchFeature:
        """Prompt(s) with placeholders + images (or videos) -> model inputs (see module docstring).

        text: one prompt or a batch; `images`/`videos` are matched to the placeholders in order
        across the whole batch. messages: one conversation (list of message dicts) or a batch of
        them, instead of text/images/videos. video_kwargs (fps, duration, sample_frames) go to
        the video processor.
        """
        if return_tensors != "pt":
            raise ValueError(f"only return_tensors='pt' is supported, got {return_tensors!r}")
        if messages is not None:
            if text is not None or images is not None or videos is not None:
                raise ValueError("pass either messages (pictures inside their items) or text with "
                                 "images/videos, not both")
            return self._encode_messages(messages, True, padding=padding, return_tensors=return_tensors,
                                         **video_kwargs)
        texts = [text] if isinstance(text, str) else text
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            raise TypeError("text must be a prompt string or a non-empty list of them (or pass messages=...)")
        if not all(texts):
            raise ValueError(f"text {texts.index('')} of the batch is empty, and a prompt needs at least one token; "
                             f"write the prompt, or let processor(messages=...) build it with the chat template")

        n_image_slots = sum(t.count(st.IMAGE) for t in texts)
        n_video_slots = sum(t.count(st.VIDEO) for t in texts)
        if (images is not None or n_image_slots) and (videos is not None or n_video_slots):
            raise ValueError(
                "images and videos in one call are not supported: video frames use the same <|image|> "
                "token as images, so the model (like transformers 5.24, whose image/video feature count "
                "check then fails) cannot tell which features go where; the official demos forbid "
                "mixing too. Process image prompts and video prompts in separate calls.")

        # After the check above only one modality is in play; it decides what replaces the placeholders.
        out = BatchFeature()
        if videos is not None or n_video_slots:
            kind, token, slots = "video", st.VIDEO, n_video_slots
            replacements = self._process_videos(videos, out, video_kwargs) if videos is not None else []
        else:
            kind, token, slots = "image", st.IMAGE, n_image_slots
            _check_no_video_span(texts)
            replacements = self._process_images(images, out) if images is not None else []
        if len(replacements) != slots:
            raise _count_mismatch(kind, token, slots, len(replacements))

        pending = iter(replacements)  # placeholders are consumed in reading order across the batch
        expanded = [_PLACEHOLDER.sub(lambda _: next(pending), t) for t in texts]
        encoded = self.tokenizer(expanded, padding=padding, return_tensors="pt", add_special_tokens=False)
        encoded["mm_token_type_ids"] = self.mm_token_type_ids(encoded["input_ids"])
        return BatchFeature(**encoded, **out)

    def _process_images(self, images, out: BatchFeature) -> list[str]:
        """Pixel rows into `out`; returns the token string that replaces each image's placeholder."""
        out.update(self.image_processor(images, return_tensors="pt"))
        per_image = image_tokens(out["image_grid_thw"], self.image_processor.merge_size)
        return [st.IMAGE * n for n in per_image.tolist()]

    def _process_videos(self, videos, out: BatchFeature, video_kwargs: dict) -> list[str]:
        """Pixel rows into `out`; returns the token string that replaces each video's placeholder."""
        if self.video_processor is None:
            raise ValueError("this processor has no video processor; build it with "
                             "video_processor=Glm4vVideoProcessor() to pass videos")
        processed = self.video_processor(videos, return_tensors="pt", **video_kwargs)
        out["pixel_values_videos"] = processed["pixel_values_videos"]
        out["video_grid_thw"] = processed["video_grid_thw"]
        return [self._video_tokens(grid, seconds)
                for grid, seconds in zip(out["video_grid_thw"].tolist(), processed["timestamps"])]

    def _video_tokens(self, grid_thw: list[int], seconds: list[int]) -> str:
        _, height, width = grid_thw
        block = st.image_block(int(image_tokens(torch.tensor([1, height, width]), self.video_processor.merge_size)))
        # Each temporal group is written like a small image followed by its time ("3" for GLM-4.1V,
        # "3.0 seconds" for GLM-4.6V), which is how the model knows when a frame was taken.
        return "".join(block + self.video_processor.timestamp_text(s) for s in seconds)

    def mm_token_type_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(B, L) ids -> (B, L) 0 text, 1 <|image|> of an image, 2 <|image|> inside a video span."""
        tok = self.tokenizer
        return token_types(input_ids, tok.image_token_id, tok.begin_of_video_id, tok.end_of_video_id)

    @staticmethod
    def _render(messages: list, add_generation_prompt: bool = True):
        """Chat-template text per conversation + the pictures and clips of their items, in order, and
        the frame rate and duration of each clip read from a file ({} for clips given as frames)."""
        conversations = _conversations(messages)
        texts = [apply_chat_template(c, add_generation_prompt=add_generation_prompt) for c in conversations]
        images, videos, clips = [], [], []
        for message in (m for c in conversations for m in c):
            for item in message["content"] if isinstance(message["content"], list) else []:
                kind = content_item_type(item)
                if kind == "image":
                    images.append(_item_source(item, kind))
                elif kind == "video":
                    frames, metadata = _video_of(_item_source(item, kind))
                    videos.append(frames)
                    clips.append(metadata)
        return texts, images or None, videos or None, clips

    def apply_chat_template(self, conversation: list, add_generation_prompt: bool = True, tokenize: bool = False,
                            return_dict: bool = False, return_tensors: str | None = None, **kwargs):
        """One conversation (or a batch of them) -> prompt text, its ids, or all model inputs.

        tokenize=False: the prompt string (a list of them for a batch). tokenize=True: the left-padded
        input_ids (B, L), or with return_dict=True a BatchFeature of everything forward/generate take
        (pixels included). Images and videos come from the items ('image' / 'video': the thing itself,
        'path', or 'url': a local path or file:// URL). kwargs (fps, duration, sample_frames) go to
        the video processor; a clip read from a file brings its own fps and duration.
        """
        if return_tensors not in ("pt", None):
            raise ValueError(f"only return_tensors='pt' (or None) is supported, got {return_tensors!r}")
        if not tokenize:
            if return_dict:
                raise ValueError("return_dict=True needs tokenize=True (the dict holds token ids and pixels)")
            texts = [apply_chat_template(c, add_generation_prompt) for c in _conversations(conversation)]
            return texts[0] if _is_one_conversation(conversation) else texts
        inputs = self._encode_messages(conversation, add_generation_prompt, **kwargs)
        return inputs if return_dict else inputs["input_ids"]

    def _encode_messages(self, messages: list, add_generation_prompt: bool, **kwargs) -> BatchFeature:
        texts, images, videos, clips = self._render(messages, add_generation_prompt)
        if any(clips):  # clips read from files bring their own frame rate and duration
            for key in ("fps", "duration"):
                kwargs[key] = [clip.get(key, kwargs.get(key)) for clip in clips]
        return self(text=texts, images=images, videos=videos, **kwargs)

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)

    def batch_decode(self, sequences, skip_special_tokens: bool = False) -> list[str]:
        return self.tokenizer.batch_decode(sequences, skip_special_tokens=skip_special_tokens)


def _is_one_conversation(messages: list) -> bool:
    if not isinstance(messages, (list, tuple)):
        raise TypeError(f"messages must be a list of message dicts (one conversation) or a list of such "
                        f"lists (a batch), got {type(messages).__name__}")
    return not all(isinstance(m, (list, tuple)) for m in messages) or not messages  # else a batch


def _conversations(messages: list) -> list:
    return [messages] if _is_one_conversation(messages) else messages


def _item_source(item: dict, kind: str):
    """The picture or clip of a content item: under `kind`, "path" or "url" (a path or file:// URL)."""
    key = next((k for k in (kind, "path", "url") if k in item), None)
    if key is None:
        raise ValueError(f"{kind} item {item!r} has no {kind!r}, 'path' or 'url' field; put the {kind} itself "
                         f"under {kind!r}, or its file under 'path', e.g. {{'type': '{kind}', 'path': 'a.png'}}")
    source = item[key]
    if not isinstance(source, str) or "://" not in source:
        return source
    url = urllib.parse.urlparse(source)
    if url.scheme == "file":
        return urllib.request.url2pathname(url.path)
    raise ValueError(f"{kind} URL {source!r}: minglm4v reads only local files and never uses the network; "
                     f"download it first and pass {{'type': '{kind}', 'path': 'local/file'}} (or a file:// URL)")


def _video_of(source):
    """A clip's frames and, for a file, its {"fps", "duration"}; frames given directly have none."""
    if isinstance(source, (str, Path)):
        return load_video(source)
    return source, {}
def _check_no_video_span(texts: list[str]) -> None:
    """Without a video, a video span would make the <|image|> tokens inside it count as video frames."""
    for marker in (st.BEGIN_OF_VIDEO, st.END_OF_VIDEO):
        if any(marker in t for t in texts):
            raise ValueError(f"the text has {marker} but no video is passed; {st.IMAGE} tokens after it would be "
                             f"read as video frames. Remove it, or pass the video with a {st.VIDEO} placeholder")
