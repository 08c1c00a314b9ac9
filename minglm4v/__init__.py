"""minglm4v: GLM-4.1V-Thinking from scratch, numerically identical to transformers."""

from .config import Glm4vConfig, TextConfig, VisionConfig
from .model import Glm4vForConditionalGeneration, Glm4vOutput

__all__ = ["Glm4vConfig", "TextConfig", "VisionConfig", "Glm4vForConditionalGeneration", "Glm4vOutput"]
