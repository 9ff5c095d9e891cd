"""ShareGPT4V model configuration.

Part of the remote-code unit: imports only transformers (and the other three unit files, relatively).
Defaults describe the released ShareGPT4V-7B: CLIP ViT-L/14 at 336 px, a 2-layer GELU MLP projector and
Vicuna-7B v1.5, with the `<image>` token appended to the LLaMA vocabulary as llava-hf does (id 32000,
vocabulary padded to 32064).
"""

from typing import Literal

import transformers
from transformers import AutoConfig, PreTrainedConfig

MIN_TRANSFORMERS = "5.20"  # SubConfigSpec (here) and PilBackend (image processor) appeared in 5.20

try:
    from transformers.configuration_utils import SubConfigSpec
except ImportError as error:  # the first unit file a Hub user's transformers imports
    raise ImportError(
        f"ShareGPT4V checkpoints need transformers>={MIN_TRANSFORMERS} (this is {transformers.__version__}): "
        f"pip install -U 'transformers>={MIN_TRANSFORMERS}'"
    ) from error

# Every Auto class that can load a saved checkpoint, written into its config.json so that
# `trust_remote_code=True` finds the code without the plugin installed.
MODEL_AUTO_MAP = {
    "AutoConfig": "configuration_sharegpt4v.ShareGPT4VConfig",
    "AutoModel": "modeling_sharegpt4v.ShareGPT4VModel",
    "AutoModelForCausalLM": "modeling_sharegpt4v.ShareGPT4VForCausalLM",
    "AutoModelForImageTextToText": "modeling_sharegpt4v.ShareGPT4VForCausalLM",
}


class ShareGPT4VConfig(PreTrainedConfig):
    r"""
    Configuration of a ShareGPT4V model: `vision_config` (CLIP vision) -> projector -> `text_config` (Llama).

    Args:
        vision_config: CLIP vision config (dict or config); default ViT-L/14 at 336 px.
        text_config: language model config (dict or config, any `AutoModel` decoder); default Vicuna-7B v1.5.
        image_token_id: id of the image placeholder token; each image fills `image_seq_length` of them.
            `image_token_index` (LlavaConfig's name) is the same field.
        image_seq_length: tokens per image; must equal what the vision tower yields (576 for 336/14).
        projector_hidden_act: activation between the two projector layers (exact GELU in the original).
        vision_feature_select_strategy: "default" drops the CLS token, "full" keeps it.
        vision_feature_layer: hidden state of the vision tower fed to the projector (-2: the penultimate), or a
            list of them, concatenated along the features as Llava does (the projector's input grows with it).
        multimodal_projector_bias: whether the projector's linear layers have a bias (True in the original).
        tie_word_embeddings: share `lm_head` with the input embeddings (False in the original); as in Llava, True
            also when `text_config` ties them.

    Example:
        >>> from transformers_sharegpt4v import ShareGPT4VConfig, ShareGPT4VForCausalLM
        >>> config = ShareGPT4VConfig()  # ShareGPT4V-7B
        >>> config.image_seq_length
        576
    """

    model_type = "sharegpt4v"
    # LlavaConfig stores `image_token_index` and maps `image_token_id` to it; here it is the other way round,
    # so that both names read and write the one field, in the constructor and in a loaded config.json too.
    attribute_map = {"image_token_index": "image_token_id"}
    sub_configs_defaults = {
        "vision_config": SubConfigSpec(
            config_class=AutoConfig,
            model_type="clip_vision_model",
            init_kwargs={
                "hidden_size": 1024,
                "intermediate_size": 4096,
                "num_hidden_layers": 24,
                "num_attention_heads": 16,
                "image_size": 336,
                "patch_size": 14,
                "projection_dim": 768,
            },
        ),
        "text_config": SubConfigSpec(
            config_class=AutoConfig,
            model_type="llama",
            init_kwargs={
                "vocab_size": 32064,
                "max_position_embeddings": 4096,
                "rms_norm_eps": 1e-5,
                "pad_token_id": 0,
            },
        ),
    }

    vision_config: dict | PreTrainedConfig | None = None
    text_config: dict | PreTrainedConfig | None = None
    image_token_id: int = 32000
    image_seq_length: int = 576
    projector_hidden_act: str = "gelu"
    vision_feature_select_strategy: Literal["default", "full"] = "default"
    vision_feature_layer: int | list[int] = -2
    multimodal_projector_bias: bool = True
    tie_word_embeddings: bool = False

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        if getattr(self, "auto_map", None) is None:
            self.auto_map = dict(MODEL_AUTO_MAP)
        # As LlavaConfig: a text config that ties its embeddings ties the model's (llava-hf configs of such LLMs
        # say so only there, and their checkpoints have no lm_head.weight).
        if not self.tie_word_embeddings and getattr(self.text_config, "tie_word_embeddings", False):
            self.tie_word_embeddings = True
        if isinstance(self.vision_feature_layer, tuple):  # saved as a JSON list: keep the round trip equal
            self.vision_feature_layer = list(self.vision_feature_layer)
        self.validate_image_geometry()

    def validate_image_geometry(self) -> None:
        """Raise if `image_seq_length` disagrees with the vision tower's patch grid or a feature layer is out of range."""
        vision = self.vision_config
        if self.vision_feature_select_strategy not in ("default", "full"):
            raise ValueError(
                f"vision_feature_select_strategy must be 'default' or 'full', got {self.vision_feature_select_strategy!r}"
            )
        if not _is_index(self.image_seq_length):
            raise ValueError(f"image_seq_length must be an int, got {self.image_seq_length!r}.")
        patches = (vision.image_size // vision.patch_size) ** 2
        expected = patches + (1 if self.vision_feature_select_strategy == "full" else 0)
        if self.image_seq_length != expected:
            raise ValueError(
                f"image_seq_length={self.image_seq_length} does not match the vision tower: image_size "
                f"{vision.image_size} / patch_size {vision.patch_size} gives {patches} patches, so "
                f"{expected} image tokens with vision_feature_select_strategy={self.vision_feature_select_strategy!r}."
            )
        layers = vision.num_hidden_layers
        chosen = self.vision_feature_layer
        if _is_index(chosen):
            if chosen == 0:
                # transformers reads a single layer index as `output_hidden_states`, where 0 means "none" (in a
                # list, 0 selects the patch embeddings, as in Llava).
                raise ValueError(
                    "vision_feature_layer=0 (the patch embeddings) is not supported: transformers treats it as "
                    f"'no hidden states'. Use a layer in 1..{layers} or -{layers}..-1 (or [0] as a list)."
                )
            indices = [chosen]
        elif isinstance(chosen, list) and chosen and all(_is_index(index) for index in chosen):
            indices = chosen
        else:
            raise ValueError(
                f"vision_feature_layer must be a hidden-state index (int) or a non-empty list of them, got {chosen!r}."
            )
        if any(not -(layers + 1) <= index <= layers for index in indices):
            raise ValueError(
                f"vision_feature_layer={chosen} is out of range for a vision tower with "
                f"{layers} layers (hidden states -{layers + 1}..{layers})."
            )


def _is_index(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


__all__ = ["ShareGPT4VConfig"]
