"""minglm4v: GLM-4.1V-Thinking from scratch, numerically identical to transformers.

The public names mirror transformers', so code written for it runs with only the import changed:

    from minglm4v import AutoProcessor, Glm4vForConditionalGeneration
"""

from .auto import AutoModelForImageTextToText, AutoProcessor, AutoTokenizer
from .generation.streaming import TextIteratorStreamer, TextStreamer
from .model.config import Glm4vConfig, TextConfig, VisionConfig
from .model.config_moe import Glm4vMoeConfig
from .model.glm4v import Glm4vForConditionalGeneration, Glm4vOutput
from .model.glm4v_moe import Glm4vMoeForConditionalGeneration
from .processing.feature import BatchFeature
from .processing.image import Glm4vImageProcessor
from .processing.processor import Glm4vProcessor
from .processing.tokenizer import Glm4vTokenizer
from .processing.video import Glm4vVideoProcessor
from .study.fake_inputs import create_fake_image_inputs, create_fake_text_inputs, create_multimodal_inputs

__all__ = ["AutoModelForImageTextToText", "AutoProcessor", "AutoTokenizer", "BatchFeature", "Glm4vConfig",
           "Glm4vForConditionalGeneration", "Glm4vImageProcessor", "Glm4vMoeConfig",
           "Glm4vMoeForConditionalGeneration", "Glm4vOutput", "Glm4vProcessor",
           "Glm4vTokenizer", "Glm4vVideoProcessor", "TextConfig", "TextIteratorStreamer", "TextStreamer",
           "VisionConfig", "create_fake_image_inputs", "create_fake_text_inputs", "create_multimodal_inputs"]
