"""transformers-sharegpt4v: ShareGPT4V vision-language models on the Hugging Face stack.

Importing this package registers ShareGPT4V with transformers' Auto classes, so that
`AutoConfig`, `AutoModel`, `AutoModelForCausalLM`, `AutoModelForImageTextToText`,
`AutoImageProcessor` and `AutoProcessor` load plugin checkpoints without `trust_remote_code`.
"""

from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForImageTextToText,
    AutoProcessor,
)

from .configuration_sharegpt4v import ShareGPT4VConfig
from .image_processing_sharegpt4v import ShareGPT4VImageProcessor
from .modeling_sharegpt4v import (
    ShareGPT4VForCausalLM,
    ShareGPT4VModel,
    ShareGPT4VPreTrainedModel,
    default_attn_implementation,
)
from .processing_sharegpt4v import ShareGPT4VProcessor

__version__ = "0.1.0"

AutoConfig.register(ShareGPT4VConfig.model_type, ShareGPT4VConfig, exist_ok=True)
AutoModel.register(ShareGPT4VConfig, ShareGPT4VModel, exist_ok=True)
AutoModelForCausalLM.register(ShareGPT4VConfig, ShareGPT4VForCausalLM, exist_ok=True)
AutoModelForImageTextToText.register(ShareGPT4VConfig, ShareGPT4VForCausalLM, exist_ok=True)
AutoImageProcessor.register(ShareGPT4VConfig, image_processor_classes={"pil": ShareGPT4VImageProcessor}, exist_ok=True)
AutoProcessor.register(ShareGPT4VConfig, ShareGPT4VProcessor, exist_ok=True)

__all__ = [
    "ShareGPT4VConfig",
    "ShareGPT4VForCausalLM",
    "ShareGPT4VImageProcessor",
    "ShareGPT4VModel",
    "ShareGPT4VPreTrainedModel",
    "ShareGPT4VProcessor",
    "default_attn_implementation",
]
