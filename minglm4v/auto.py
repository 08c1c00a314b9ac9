"""`AutoProcessor`, `AutoTokenizer`, `AutoModelForImageTextToText`: transformers' entry points, for the
GLM-V families minglm4v implements.

Corresponds to transformers' Auto classes, which read a directory's config.json `model_type` and pick
the matching class. Here: "glm4v" (GLM-4.1V-Thinking, GLM-4.6V-Flash) and "glm4v_moe" (GLM-4.5V, GLM-4.6V);
any other model type is refused clearly:

    AutoProcessor.from_pretrained(dir)                 -> Glm4vProcessor (both families process alike)
    AutoTokenizer.from_pretrained(dir)                 -> Glm4vTokenizer
    AutoModelForImageTextToText.from_pretrained(dir)   -> Glm4vForConditionalGeneration or
                                                          Glm4vMoeForConditionalGeneration
"""

from .base.hub import check_model_type, resolve_directory
from .model.families import MODELS
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
        return cls.target_for(check_model_type(directory)).from_pretrained(directory, **kwargs)

    @classmethod
    def target_for(cls, model_type: str | None) -> type:
        return cls.target


class AutoProcessor(_Auto):
    target = Glm4vProcessor


class AutoTokenizer(_Auto):
    target = Glm4vTokenizer


class AutoModelForImageTextToText(_Auto):
    target = Glm4vForConditionalGeneration

    @classmethod
    def target_for(cls, model_type: str | None) -> type:
        return MODELS.get(model_type, cls.target)

    @classmethod
    def from_config(cls, config) -> Glm4vForConditionalGeneration:
        """A randomly initialised model of `config` (a Glm4vConfig or Glm4vMoeConfig), as transformers'
        from_config."""
        return cls.target_for(getattr(config, "model_type", None))(config)
