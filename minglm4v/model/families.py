"""Which class builds which model: config.json's `model_type` -> the model class and its config class.

Corresponds to transformers' auto mappings, for the two families minglm4v implements:
    "glm4v"      GLM-4.1V-Thinking, GLM-4.6V-Flash   Glm4vForConditionalGeneration     (glm4v.py)
    "glm4v_moe"  GLM-4.5V, GLM-4.6V                  Glm4vMoeForConditionalGeneration  (glm4v_moe.py)
Any other model_type is refused by name (base/hub.py `check_model_type`).
"""

from pathlib import Path

from ..base.hub import check_model_type
from .glm4v import Glm4vForConditionalGeneration
from .glm4v_moe import Glm4vMoeForConditionalGeneration

MODELS = {cls.config_class.model_type: cls for cls in (Glm4vForConditionalGeneration, Glm4vMoeForConditionalGeneration)}


def model_class(directory: Path) -> type:
    """The class of the model in `directory` (GLM-4.1V's when its config.json names no model_type)."""
    return MODELS[check_model_type(Path(directory)) or "glm4v"]


def load_config(directory: Path):
    """The config of the model in `directory`, of the class its model_type names."""
    return model_class(directory).config_class.from_pretrained(Path(directory))
