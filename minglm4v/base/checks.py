"""Checks shared by the places where values enter minglm4v (configs, processors, the model, generation, the CLI).

Each raises TypeError (wrong kind of value) or ValueError (right kind, wrong value) with a message
naming the argument, what was expected and what was found. No counterpart in transformers.
"""

import dataclasses
import json
import math
import numbers
import typing
from pathlib import Path

import torch


def read_json(path: Path, expected: str) -> dict:
    """The JSON object in `path`; errors name the file and say what it should hold."""
    try:
        value = json.loads(Path(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({error}); expected {expected}") from error
    if not isinstance(value, dict):
        raise ValueError(f"{path} holds a JSON {type(value).__name__}; expected {expected} (a JSON object)")
    return value


def is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)  # True is an int to Python, not to us


def is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def positive_int(value, name: str) -> int:
    if not is_int(value):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value


def positive_number(value, name: str) -> float:
    if not is_number(value):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value}")
    return value


def field_type_problems(obj, what: str) -> list[str]:
    """One line per dataclass field whose value does not have its annotated type ("128" is not an int,
    nor are 4.5 and True); annotations may be int, float, str, bool, list[int] and `... | None`."""
    return [f"{what}.{f.name} = {getattr(obj, f.name)!r} should be {getattr(f.type, '__name__', f.type)}"
            for f in dataclasses.fields(obj) if not _has_type(getattr(obj, f.name), f.type)]


def _has_type(value, annotation) -> bool:
    optional = type(None) in typing.get_args(annotation)
    if optional:
        annotation = typing.get_args(annotation)[0]
    if value is None:
        return optional
    if annotation == list[int]:
        return isinstance(value, (list, tuple)) and all(map(is_int, value))
    check = {int: is_int, float: is_number}.get(annotation)
    return check(value) if check else isinstance(value, annotation)


def check_integer_tensor(name: str, value) -> None:
    if not isinstance(value, torch.Tensor) or value.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"{name} must be an int64 (or int32) tensor, got "
                        f"{getattr(value, 'dtype', type(value).__name__)}; convert with torch.as_tensor(...).long()")


def check_prompt(input_ids, attention_mask, past: int, max_positions: int, max_new_tokens: int = 0) -> None:
    """What model(...) and generate(...) both require of a prompt: input_ids an integer (batch, length)
    tensor with a token; attention_mask None or 0/1 of shape (batch, past + length) with a 1 among each
    row's new tokens; the `past` cached,
    the new and the `max_new_tokens` still to come within the model's `max_positions`."""
    check_integer_tensor("input_ids", input_ids)
    if input_ids.ndim != 2 or input_ids.numel() == 0:
        raise ValueError(f"input_ids must be (batch, length), got shape {tuple(input_ids.shape)}; a prompt "
                         f"needs at least one token")
    (B, L) = input_ids.shape
    if past + L + max_new_tokens > max_positions:
        coming = f" + max_new_tokens {max_new_tokens}" if max_new_tokens else ""
        raise ValueError(f"{past} cached + {L} new tokens{coming} exceed the model's max_position_embeddings "
                         f"({max_positions}); shorten the prompt (fewer or smaller images)"
                         + (" or lower max_new_tokens" if max_new_tokens else ""))
    if attention_mask is None:
        return
    if not isinstance(attention_mask, torch.Tensor) or tuple(attention_mask.shape) != (B, past + L):
        raise ValueError(f"attention_mask must be a tensor of shape (batch, cached + new tokens) = {(B, past + L)}, "
                         f"got {tuple(getattr(attention_mask, 'shape', ())) or type(attention_mask).__name__}")
    if bool(((attention_mask != 0) & (attention_mask != 1)).any()):  # 0.5 or 2 would shift positions
        raise ValueError(f"attention_mask must hold only 0 (padding) and 1 (token), got the values "
                         f"{sorted(set(attention_mask.unique().tolist()))[:6]}")
    empty = (attention_mask[:, past:] == 0).all(-1).nonzero().flatten().tolist()
    if empty:  # such a row attends to nothing: its logits would be noise
        raise ValueError(f"attention_mask is 0 on every new token of batch row(s) {empty[:6]}: a row needs at least "
                         f"one real token (1); drop empty rows from the batch")
