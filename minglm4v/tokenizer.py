"""GLM-4 byte-level BPE tokenizer: a thin wrapper around `tokenizers.Tokenizer`.

Corresponds to transformers' `PreTrainedTokenizerFast` as configured by the GLM-4.1V hub files
(tokenizer.json + tokenizer_config.json): same ids, same decoded strings. Special tokens are looked
up by their text, so the real 151k-token checkpoint tokenizer and the 1022-token fixture in
data/tokenizer/ both work.

    tok("a cat", return_tensors="pt") -> {"input_ids": (B, L) int64, "attention_mask": (B, L) int64}

Padding is always on the left: generation appends to the right end of every row.
"""
import json
from pathlib import Path

import torch
from tokenizers import Tokenizer

from .chat_template import apply_chat_template

# A Thinking-model turn ends when the model starts the next role (or emits end-of-text).
END_OF_TURN_TOKENS = ("<|endoftext|>", "<|user|>", "<|observation|>")


def _token_text(value) -> str:
    # tokenizer_config.json stores special tokens either as text or as an AddedToken dict.
    return value["content"] if isinstance(value, dict) else value


class Glm4vTokenizer:
    def __init__(self, tokenizer: Tokenizer, eos_token: str = "<|endoftext|>", pad_token: str | None = None):
        self.tokenizer = tokenizer
        self.eos_token = eos_token
        self.pad_token = pad_token or eos_token

    @classmethod
    def from_pretrained(cls, directory) -> "Glm4vTokenizer":
        directory = Path(directory)
        if not (directory / "tokenizer.json").is_file():
            raise FileNotFoundError(f"no tokenizer.json in {directory}; expected a GLM-4.1V checkpoint or "
                                    "tokenizer folder (data/tokenizer/ is built by scripts/make_tokenizer.py)")
        config_path = directory / "tokenizer_config.json"
        config = json.loads(config_path.read_text()) if config_path.is_file() else {}
        eos = _token_text(config.get("eos_token", "<|endoftext|>"))
        pad = config.get("pad_token")
        return cls(Tokenizer.from_file(str(directory / "tokenizer.json")), eos, pad and _token_text(pad))

    # ---- vocabulary -------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        """Size of the BPE vocabulary without added tokens (transformers' `vocab_size`)."""
        return self.tokenizer.get_vocab_size(with_added_tokens=False)

    def __len__(self) -> int:
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    def convert_tokens_to_ids(self, tokens: str | list[str]) -> int | list[int]:
        if isinstance(tokens, list):
            return [self.convert_tokens_to_ids(t) for t in tokens]
        token_id = self.tokenizer.token_to_id(tokens)
        if token_id is None:
            raise ValueError(f"token {tokens!r} is not in the vocabulary; GLM-4.1V special tokens look "
                             "like '<|image|>', '<think>', '[gMASK]'")
        return token_id

    def convert_ids_to_tokens(self, ids: int | list[int]) -> str | list[str]:
        if isinstance(ids, list):
            return [self.convert_ids_to_tokens(i) for i in ids]
        token = self.tokenizer.id_to_token(ids)
        if token is None:
            raise ValueError(f"token id {ids} is outside the vocabulary [0, {len(self)})")
        return token

    @property
    def pad_token_id(self) -> int:
        return self.convert_tokens_to_ids(self.pad_token)

    @property
    def eos_token_id(self) -> int:
        return self.convert_tokens_to_ids(self.eos_token)

    @property
    def eos_token_ids(self) -> list[int]:
        """Ids that end an assistant turn during generation: <|endoftext|>, <|user|>, <|observation|>."""
        return self.convert_tokens_to_ids(list(END_OF_TURN_TOKENS))

    @property
    def image_token_id(self) -> int:
        return self.convert_tokens_to_ids("<|image|>")

    @property
    def video_token_id(self) -> int:
        return self.convert_tokens_to_ids("<|video|>")

    @property
    def begin_of_image_id(self) -> int:
        return self.convert_tokens_to_ids("<|begin_of_image|>")

    @property
    def end_of_image_id(self) -> int:
        return self.convert_tokens_to_ids("<|end_of_image|>")

    @property
    def begin_of_video_id(self) -> int:
        return self.convert_tokens_to_ids("<|begin_of_video|>")

    @property
    def end_of_video_id(self) -> int:
        return self.convert_tokens_to_ids("<|end_of_video|>")

    # ---- text <-> ids -----------------------------------------------------------------------
    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        """Ids of `text`. Special-token text such as "<|image|>" becomes its single id.

        add_special_tokens only matters for a tokenizer.json with a post-processor; prompts from
        the chat template already start with [gMASK]<sop>.
        """
        if not isinstance(text, str):
            raise TypeError(f"encode expects a string, got {type(text).__name__}")
        return self.tokenizer.encode(text, add_special_tokens=add_special_tokens).ids

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        """Text of a 1-D id sequence. <think>, <answer>, box tags are not special: always kept."""
        if isinstance(ids, torch.Tensor):
            if ids.dim() != 1:
                raise ValueError(f"decode expects one sequence (1-D), got shape {tuple(ids.shape)}; "
                                 "use batch_decode for a batch")
            ids = ids.tolist()
        return self.tokenizer.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def batch_decode(self, sequences, skip_special_tokens: bool = False) -> list[str]:
        return [self.decode(ids, skip_special_tokens=skip_special_tokens) for ids in sequences]

    def __call__(self, text: str | list[str], padding: bool = True, return_tensors: str | None = "pt") -> dict:
        """Tokenise one text or a batch; pad on the left with the pad id (mask 0 on padding).

        return_tensors="pt" gives (B, L) int64 tensors; None gives lists of lists.
        """
        texts = [text] if isinstance(text, str) else text
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            raise TypeError("text must be a string or a non-empty list of strings")
        if return_tensors not in ("pt", None):
            raise ValueError(f"return_tensors must be 'pt' or None, got {return_tensors!r}")
        rows = [self.encode(t) for t in texts]
        longest = max(len(r) for r in rows)
        if padding:
            masks = [[0] * (longest - len(r)) + [1] * len(r) for r in rows]
            rows = [[self.pad_token_id] * (longest - len(r)) + r for r in rows]
        else:
            if return_tensors == "pt" and any(len(r) != longest for r in rows):
                raise ValueError(f"texts tokenise to different lengths {[len(r) for r in rows]}; "
                                 "pass padding=True to left-pad them into one tensor")
            masks = [[1] * len(r) for r in rows]
        if return_tensors == "pt":
            return {"input_ids": torch.tensor(rows, dtype=torch.long),
                    "attention_mask": torch.tensor(masks, dtype=torch.long)}
        return {"input_ids": rows, "attention_mask": masks}

    def apply_chat_template(self, messages: list[dict], add_generation_prompt: bool = True,
                            tokenize: bool = False) -> str | list[int]:
        """The official GLM-4.1V prompt text for `messages` (see chat_template.py), or its ids."""
        prompt = apply_chat_template(messages, add_generation_prompt=add_generation_prompt)
        return self.encode(prompt) if tokenize else prompt
