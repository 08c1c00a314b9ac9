"""`AutoProcessor`, `AutoTokenizer`, `AutoModelForImageTextToText`: transformers' entry points, for the
one model family minglm4v implements.

Corresponds to transformers' Auto classes, which read a directory's config.json `model_type` and pick
the matching class. Here there is one family (GLM-4.1V-Thinking, `model_type` "glm4v"), so they check
that the directory holds it and hand over to our classes; any other model type is refused clearly:

    AutoProcessor.from_pretrained(dir)                 -> Glm4vProcessor
    AutoTokenizer.from_pretrained(dir)                 -> Glm4vTokenizer
    AutoModelForImageTextToText.from_pretrained(dir)   -> Glm4vForConditionalGeneration
"""

from .base.hub import check_model_type, resolve_directory
from .model.glm4v import Glm4vForConditionalGeneration
from .processing.processor import Glm4vProcessor
from .processing.tokenizer import Glm4vTokenizer


class _Auto:
    target: type

    def __init__(self, *args, **kwargs):
        raise TypeError(f"{type(self).__name__} is not built directly; use {type(self).__name__}.from_pretrained(dir) "
                        f"(it returns a {self.target.__name__})")

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        directory = resolve_directory(pretrained_model_name_or_path, kwargs.get("revision"), kwargs.get("cache_dir"))
        check_model_type(directory)
        return cls.target.from_pretrained(directory, **kwargs)


class AutoProcessor(_Auto):
    target = Glm4vProcessor


class AutoTokenizer(_Auto):
    target = Glm4vTokenizer


class AutoModelForImageTextToText(_Auto):
    target = Glm4vForConditionalGeneration

    @classmethod
    def from_config(cls, config) -> Glm4vForConditionalGeneration:
        """A randomly initialised model of `config` (a Glm4vConfig), as transformers' from_config."""
        return Glm4vForConditionalGeneration(config)
