"""Checks shared by the places where values enter minglm4v (configs, processors, generation, the CLI).

Each raises TypeError (wrong kind of value) or ValueError (right kind, wrong value) with a message
naming the argument, what was expected and what was found. No counterpart in transformers.
"""

import json
import math
import numbers
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
