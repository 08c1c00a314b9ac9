"""minglm4v: GLM-4.1V-Thinking from scratch, numerically identical to transformers.

The public names mirror transformers', so code written for it runs with only the import changed:

    from minglm4v import AutoProcessor, Glm4vForConditionalGeneration
"""

from .auto import AutoModelForImageTextToText, AutoProcessor, AutoTokenizer
from .config import Glm4vConfig, TextConfig, VisionConfig
from .fake_inputs import create_fake_image_inputs, create_fake_text_inputs, create_multimodal_inputs
from .feature import BatchFeature
from .image_processing import Glm4vImageProcessor
from .model import Glm4vForConditionalGeneration, Glm4vOutput
from .processor import Glm4vProcessor
from .streaming import TextIteratorStreamer, TextStreamer
from .tokenizer import Glm4vTokenizer
from .video_processing import Glm4vVideoProcessor

__all__ = ["AutoModelForImageTextToText", "AutoProcessor", "AutoTokenizer", "BatchFeature", "Glm4vConfig",
           "Glm4vForConditionalGeneration", "Glm4vImageProcessor", "Glm4vOutput", "Glm4vProcessor",
           "Glm4vTokenizer", "Glm4vVideoProcessor", "TextConfig", "TextIteratorStreamer", "TextStreamer",
           "VisionConfig", "create_fake_image_inputs", "create_fake_text_inputs", "create_multimodal_inputs"]
