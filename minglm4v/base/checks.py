"""Checks shared by the places where values enter minglm4v (configs, processors, generation, the CLI).

Each raises TypeError (wrong kind of value) or ValueError (right kind, wrong value) with a message
naming the argument, what was expected and what was found. No counterpart in transformers.
"""

import dataclasses
import json
import math
import numbers
import typing
from pathlib import Path


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
