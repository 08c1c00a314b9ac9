"""Streaming decoded text while `generate` runs: a callback streamer and an iterator variant.

Corresponds to transformers' `TextStreamer` / `TextIteratorStreamer`, and works with either
`minglm4v.generation.decoding.generate` or transformers' `generate`: both call `put(ids)` with the prompt
(1, L) first, then with each new token (1,), and `end()` when done. Batch size 1 only.

Byte-level BPE splits a multi-byte character (an emoji, most CJK) over several tokens, and decoding
a prefix of them yields U+FFFD. So text is decoded from all tokens since the last newline and only
handed on once it no longer ends in U+FFFD; `end()` flushes whatever is left.

    streamer = TextStreamer(tokenizer)                      # prints as it goes
    for text in stream_generate(model, tokenizer, ids):     # or iterate instead
        ...
"""

import queue
import threading

import torch

REPLACEMENT = "\ufffd"  # what decoding an incomplete UTF-8 sequence produces


class TextStreamer:
    """Decodes tokens as they arrive and passes each new piece of text to `on_text` (default: print)."""

    def __init__(self, tokenizer, on_text=None, skip_prompt: bool = True, skip_special_tokens: bool = True):
        if not callable(getattr(tokenizer, "decode", None)):
            raise TypeError(f"tokenizer must have a .decode(ids, skip_special_tokens=...) method, got "
                            f"{type(tokenizer).__name__}")
        self.tokenizer, self.skip_prompt, self.skip_special_tokens = tokenizer, skip_prompt, skip_special_tokens
        self.on_text = on_text or (lambda text: print(text, end="", flush=True))
        self.pending: list[int] = []  # tokens since the last newline
        self.emitted = 0  # characters of their decoded text already passed on
        self.seen_prompt = False

    def put(self, token_ids) -> None:
        ids = torch.as_tensor(token_ids)
        if ids.ndim == 2:
            if ids.shape[0] != 1:
                raise ValueError(f"TextStreamer streams one sequence, got a batch of {ids.shape[0]}; "
                                 f"generate one prompt at a time or drop the streamer")
            ids = ids[0]
        if not self.seen_prompt:
            self.seen_prompt = True
            if self.skip_prompt:
                return
        self.pending.extend(ids.reshape(-1).tolist())
        text = self.tokenizer.decode(self.pending, skip_special_tokens=self.skip_special_tokens)
        if text.endswith(REPLACEMENT):
            return  # wait for the rest of the character's bytes
        self._emit(text[self.emitted:])
        self.emitted = len(text)
        if text.endswith("\n"):  # why: keeps re-decoding short; byte-level BPE needs no context across lines
            self.pending, self.emitted = [], 0

    def end(self) -> None:
        text = self.tokenizer.decode(self.pending, skip_special_tokens=self.skip_special_tokens)
        self._emit(text[self.emitted:])
        self.pending, self.emitted, self.seen_prompt = [], 0, False
        self._finish()

    def _emit(self, text: str) -> None:
        if text:
            self.on_text(text)

    def _finish(self) -> None:
        pass


class TextIteratorStreamer(TextStreamer):
    """The same, but iterable: run `generate` in another thread and `for text in streamer` here.
    An exception passed to `fail` (stream_generate does this) is re-raised by the iterator, so a
    failed generation ends the loop with its error instead of hanging until `timeout`."""

    _DONE = object()

    def __init__(self, tokenizer, skip_prompt: bool = True, skip_special_tokens: bool = True,
                 timeout: float | None = None):
        self.queue: queue.Queue = queue.Queue()
        self.timeout = timeout
        super().__init__(tokenizer, self.queue.put, skip_prompt, skip_special_tokens)

    def _finish(self) -> None:
        self.queue.put(self._DONE)

    def fail(self, error: BaseException) -> None:
        self.queue.put(error)

    def __iter__(self):
        return self

    def __next__(self) -> str:
        item = self.queue.get(timeout=self.timeout)
        if item is self._DONE:
            raise StopIteration
        if isinstance(item, BaseException):
            raise item
        return item


def stream_generate(model, tokenizer, input_ids, skip_special_tokens: bool = True, **generate_kwargs):
    """Yield the decoded new text of `model.generate(input_ids, **generate_kwargs)` piece by piece."""
    streamer = TextIteratorStreamer(tokenizer, skip_special_tokens=skip_special_tokens)

    def run():
        try:
            model.generate(input_ids, streamer=streamer, **generate_kwargs)
        except BaseException as error:  # handed to the consumer, who re-raises it
            streamer.fail(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    yield from streamer
    thread.join()
