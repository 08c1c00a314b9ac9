"""12 · micro model: a streamer that counts tokens; splitting a reply by hand."""

import re


class CountingStreamer:
    """Exercise 1: `generate` calls put(prompt ids) first, then put(new token ids) each step,
    then end()."""

    def __init__(self):
        self.tokens, self.ended, self._seen_prompt = 0, False, False

    def put(self, token_ids):
        if self._seen_prompt:
            self.tokens += token_ids.numel()
        self._seen_prompt = True

    def end(self):
        self.ended = True


def split_reply(text):
    """Exercise 2: (thinking, answer), "" for a missing part; text outside the tags dropped, and
    an unclosed tag runs to the end (a reply cut off by max_new_tokens)."""
    thinking, answer = "", text
    if "<think>" in text or "</think>" in text:
        thinking, _, answer = text.partition("</think>")
        thinking = thinking.split("<think>")[-1]
    if "<answer>" in answer:
        answer = re.split(r"</answer>", answer.split("<answer>", 1)[1])[0]
    return thinking.strip(), answer.strip()
