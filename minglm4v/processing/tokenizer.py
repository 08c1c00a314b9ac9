"""GLM-4 byte-level BPE tokenizer: a thin wrapper around `tokenizers.Tokenizer`.

Corresponds to transformers' `PreTrainedTokenizerFast` as configured by the GLM-4.1V hub files
(tokenizer.json + tokenizer_config.json): same ids, same decoded strings, and `save_pretrained` writes
files transformers' `AutoTokenizer` loads. Special tokens are looked up by their text, so the real
151k-token checkpoint tokenizer and the 1022-token fixture in data/tokenizer/ both work.

    tok("a cat", return_tensors="pt") -> BatchFeature(input_ids (B, L) int64, attention_mask (B, L) int64)

Padding is always on the left (`left_pad`): generation appends to the right end of every row.
"""
import json
from collections.abc import Iterable
from pathlib import Path

import torch
from tokenizers import Tokenizer

from ..base.checks import is_int, read_json
from ..base.hub import check_kwargs, resolve_directory
from . import special_tokens as st
from .chat_template import CHAT_TEMPLATE_JINJA, apply_chat_template
from .feature import BatchFeature


def _token_text(value) -> str:
    # tokenizer_config.json stores special tokens either as text or as an AddedToken dict.
    return value["content"] if isinstance(value, dict) else value


def left_pad(rows: list[list[int]], value: int) -> torch.Tensor:
    """Rows of different lengths -> one (B, longest) int64 tensor, `value` in front of the shorter rows.
    The attention mask of a batch is `left_pad([[1] * len(r) for r in rows], 0)`."""
    longest = max(len(r) for r in rows)
    return torch.tensor([[value] * (longest - len(r)) + list(r) for r in rows], dtype=torch.long)


def default_config(tokenizer: Tokenizer) -> dict:
    """tokenizer_config.json for a GLM-4.1V vocabulary, in the layout of the hub checkpoint."""
    def entry(token, special):
        return {"content": token, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False,
                "special": special}
    return {
        "added_tokens_decoder": {str(i): entry(t.content, t.special)
                                 for i, t in sorted(tokenizer.get_added_tokens_decoder().items())},
        "additional_special_tokens": list(st.SPECIAL[1:]),
        "chat_template": CHAT_TEMPLATE_JINJA,
        "clean_up_tokenization_spaces": False,
        "do_lower_case": False,
        "eos_token": st.ENDOFTEXT,
        "extra_special_tokens": {},
        "model_input_names": ["input_ids", "attention_mask"],
        "model_max_length": 65536,
        "pad_token": st.ENDOFTEXT,
        "padding_side": "left",
        "remove_space": False,
        "tokenizer_class": "PreTrainedTokenizerFast",
    }


class Glm4vTokenizer:
    def __init__(self, tokenizer: Tokenizer, eos_token: str = st.ENDOFTEXT, pad_token: str | None = None,
                 config: dict | None = None):
        self.tokenizer = tokenizer
        self.eos_token = eos_token
        self.pad_token = pad_token or eos_token
        self.config = config if config is not None else default_config(tokenizer)  # written by save_pretrained

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *, revision=None, cache_dir=None,
                        **kwargs) -> "Glm4vTokenizer":
        """tokenizer.json (+ tokenizer_config.json) from a directory or a cached hub id (see hub.py)."""
        check_kwargs(kwargs, "Glm4vTokenizer.from_pretrained")
        directory = resolve_directory(pretrained_model_name_or_path, revision, cache_dir)
        if not (directory / "tokenizer.json").is_file():
            raise FileNotFoundError(f"no tokenizer.json in {directory}; expected a GLM-4.1V checkpoint or "
                                    "tokenizer folder (data/tokenizer/ is built by scripts/make_tokenizer.py)")
        config_path = directory / "tokenizer_config.json"
        config = read_json(config_path, "a tokenizer config such as {'eos_token': ...}") \
            if config_path.is_file() else None
        eos = _token_text((config or {}).get("eos_token", st.ENDOFTEXT))
        pad = (config or {}).get("pad_token")
        try:
            tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        except Exception as error:  # the tokenizers library raises a bare Exception for a bad file
            raise ValueError(f"{directory / 'tokenizer.json'} is not a valid tokenizer file ({error}); expected "
                             f"the tokenizer.json of a GLM-4.1V checkpoint") from error
        return cls(tokenizer, eos, pad and _token_text(pad), config)

    def save_pretrained(self, save_directory) -> list[Path]:
        """tokenizer.json, tokenizer_config.json and special_tokens_map.json, the hub checkpoint's layout
        (transformers' AutoTokenizer loads it). Returns the paths written."""
        directory = Path(save_directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save(str(directory / "tokenizer.json"))
        config = {**self.config, "eos_token": self.eos_token, "pad_token": self.pad_token, "padding_side": "left"}
        entry = {"lstrip": False, "normalized": False, "rstrip": False, "single_word": False}
        special_map = {"additional_special_tokens": config.get("additional_special_tokens", list(st.SPECIAL[1:])),
                       "eos_token": {"content": self.eos_token, **entry},
                       "pad_token": {"content": self.pad_token, **entry}}
        for name, content in (("tokenizer_config.json", config), ("special_tokens_map.json", special_map)):
            (directory / name).write_text(json.dumps(content, indent=2, ensure_ascii=False) + "\n")
        return [directory / name for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")]

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
        if not isinstance(tokens, str):
            raise TypeError(f"convert_tokens_to_ids expects a token string (or a list of them) such as '<|image|>', "
                            f"got {type(tokens).__name__} {tokens!r}; ids go to tokens with convert_ids_to_tokens")
        token_id = self.tokenizer.token_to_id(tokens)
        if token_id is None:
            raise ValueError(f"token {tokens!r} is not in the vocabulary; GLM-4.1V special tokens look "
                             "like '<|image|>', '<think>', '[gMASK]'")
        return token_id

    def convert_ids_to_tokens(self, ids: int | list[int]) -> str | list[str]:
        if isinstance(ids, list):
            return [self.convert_ids_to_tokens(i) for i in ids]
        if not is_int(ids):
            raise TypeError(f"convert_ids_to_tokens expects a token id (an int, or a list of them), got "
                            f"{type(ids).__name__} {ids!r}; tokens go to ids with convert_tokens_to_ids")
        return self.tokenizer.id_to_token(self._checked_ids([ids])[0])

    def ids_without_text(self, vocab_size: int) -> list[int]:
        """The ids of a model's vocabulary (`vocab_size` rows) that this tokenizer has no text for: checkpoints
        pad their embedding rows (the micro model has 1,040 rows for 1,034 tokens), and a sampled padding row
        could not be decoded. Pass them to generate(suppress_tokens=...)."""
        return list(range(len(self), vocab_size))

    @property
    def pad_token_id(self) -> int:
        return self.convert_tokens_to_ids(self.pad_token)

    @property
    def eos_token_id(self) -> int:
        return self.convert_tokens_to_ids(self.eos_token)

    @property
    def eos_token_ids(self) -> list[int]:
        """Ids that end an assistant turn during generation: <|endoftext|>, <|user|>, <|observation|>."""
        return self.convert_tokens_to_ids(list(st.END_OF_TURN))

    @property
    def image_token_id(self) -> int:
        return self.convert_tokens_to_ids(st.IMAGE)

    @property
    def video_token_id(self) -> int:
        return self.convert_tokens_to_ids(st.VIDEO)

    @property
    def begin_of_image_id(self) -> int:
        return self.convert_tokens_to_ids(st.BEGIN_OF_IMAGE)

    @property
    def end_of_image_id(self) -> int:
        return self.convert_tokens_to_ids(st.END_OF_IMAGE)

    @property
    def begin_of_video_id(self) -> int:
        return self.convert_tokens_to_ids(st.BEGIN_OF_VIDEO)

    @property
    def end_of_video_id(self) -> int:
        return self.convert_tokens_to_ids(st.END_OF_VIDEO)

    # ---- text <-> ids -----------------------------------------------------------------------
    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        """Ids of `text`. Special-token text such as "<|image|>" becomes its single id.

        add_special_tokens only matters for a tokenizer.json with a post-processor; prompts from
        the chat template already start with [gMASK]<sop>.
        """
        if not isinstance(text, str):
            raise TypeError(f"encode expects a string, got {type(text).__name__}")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as error:
            raise ValueError(f"text is not valid Unicode: {error.object[error.start:error.end]!r} at position "
                             f"{error.start} is an unpaired surrogate (a broken character, often from a bad "
                             f"decode); fix the text, e.g. text.encode('utf-8', 'replace').decode()") from error
        return self.tokenizer.encode(text, add_special_tokens=add_special_tokens).ids

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        """Text of a 1-D id sequence. <think>, <answer>, box tags are not special: always kept."""
        if isinstance(ids, torch.Tensor):
            if ids.dim() != 1:
                raise ValueError(f"decode expects one sequence (1-D), got shape {tuple(ids.shape)}; "
                                 "use batch_decode for a batch")
            ids = ids.tolist()
        return self.tokenizer.decode(self._checked_ids(ids), skip_special_tokens=skip_special_tokens)

    def _checked_ids(self, ids) -> list[int]:
        """Ids as a list of ints the tokenizer has text for (the model's vocab may be larger: padding rows)."""
        if isinstance(ids, (str, bytes)) or not isinstance(ids, Iterable):
            raise TypeError(f"decode expects a sequence of token ids, got {type(ids).__name__}")
        ids = list(ids)
        bad = [i for i in ids if not is_int(i) or not 0 <= i < len(self)]
        if bad:
            raise ValueError(f"token id {bad[0]!r} is outside the vocabulary [0, {len(self)}) of this tokenizer "
                             f"({len(bad)} such id(s)); a model's vocab_size may be larger, but those ids have no text")
        return [int(i) for i in ids]

    def batch_decode(self, sequences, skip_special_tokens: bool = False) -> list[str]:
        return [self.decode(ids, skip_special_tokens=skip_special_tokens) for ids in sequences]

    def __call__(self, text: str | list[str], padding: bool = True, return_tensors: str | None = "pt",
                 add_special_tokens: bool = True, **kwargs) -> BatchFeature:
        """Tokenise one text or a batch; pad on the left with the pad id (mask 0 on padding).

        return_tensors="pt" gives (B, L) int64 tensors; None gives lists of lists. add_special_tokens
        as in `encode` (transformers' default, True). Text is taken
        literally: a placeholder such as "<image>" is ordinary text, not an image slot (the processor
        expands images into their <|image|> slots; see Glm4vProcessor.apply_chat_template).
        """
        _check_call_kwargs(kwargs)
        texts = [text] if isinstance(text, str) else text
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            raise TypeError("text must be a string or a non-empty list of strings")
        if return_tensors not in ("pt", None):
            raise ValueError(f"return_tensors must be 'pt' or None, got {return_tensors!r}")
        rows = [self.encode(t, add_special_tokens) for t in texts]
        if not padding and return_tensors == "pt" and len({len(r) for r in rows}) > 1:
            raise ValueError(f"texts tokenise to different lengths {[len(r) for r in rows]}; "
                             "pass padding=True to left-pad them into one tensor")
        if return_tensors is None and not padding:
            return BatchFeature(input_ids=rows, attention_mask=[[1] * len(r) for r in rows])
        ids, mask = left_pad(rows, self.pad_token_id), left_pad([[1] * len(r) for r in rows], 0)
        if return_tensors is None:
            return BatchFeature(input_ids=ids.tolist(), attention_mask=mask.tolist())
        return BatchFeature(input_ids=ids, attention_mask=mask)

    def apply_chat_template(self, messages: list[dict], add_generation_prompt: bool = True, tokenize: bool = False,
                            return_dict: bool = False, return_tensors: str | None = None):
        """The official GLM-4.1V prompt text for `messages` (see chat_template.py), or its ids: a list,
        (1, L) tensors with return_tensors="pt", or a BatchFeature with return_dict=True. Images in
        the messages become bare placeholders here; the processor expands them and adds pixels."""
        prompt = apply_chat_template(messages, add_generation_prompt=add_generation_prompt)
        if not tokenize:
            return prompt
        if return_dict or return_tensors is not None:
            encoded = self(prompt, return_tensors=return_tensors, add_special_tokens=False)
            return encoded if return_dict else encoded["input_ids"]
        return self.encode(prompt)


def _check_call_kwargs(kwargs: dict) -> None:
    # transformers' defaults that are also ours; any other value would change the result
    ours = {"padding_side": "left", "truncation": False, "return_attention_mask": True}
    for key, value in kwargs.items():
        if key not in ours:
            raise TypeError(f"Glm4vTokenizer() got an unexpected argument {key!r}; it takes text, padding and "
                            f"return_tensors ({sorted(ours)} only with their default values)")
        if value not in (ours[key], None):
            raise ValueError(f"Glm4vTokenizer() supports only {key}={ours[key]!r}, got {value!r}")
