"""Config translation: released (original) config + CLIP vision config -> ShareGPT4VConfig, llava-hf / plugin
config <-> ShareGPT4VConfig, the checks that refuse what the plugin cannot represent, and the weights a
config expects."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

from ..configuration_sharegpt4v import ShareGPT4VConfig
from ..errors import UsageError
from ..modeling_sharegpt4v import ShareGPT4VForCausalLM
from ..processing_sharegpt4v import VOCAB_MULTIPLE
from .sources import read_config

# The projector of LLaVA-1.5 / ShareGPT4V: Linear -> GELU -> Linear (`mlp2x_gelu`, docs/reference.md "Architecture").
SUPPORTED_PROJECTOR = "mlp2x_gelu"
# mm_vision_select_feature -> vision_feature_select_strategy: "patch" drops CLS, "cls_patch" keeps it.
SELECT_FEATURE = {"patch": "default", "cls_patch": "full"}
# Fields of an original config that describe the multimodal part, not the LLaMA backbone.
ORIGINAL_NON_TEXT_FIELDS = {
    "architectures",
    "model_type",
    "_name_or_path",
    "transformers_version",
    "torch_dtype",
    "dtype",
    "use_cache",
    "image_aspect_ratio",
    "image_grid_pinpoints",
    "freeze_mm_mlp_adapter",
    "tune_mm_mlp_adapter",
    "tune_vision_tower",
    "tune_entire_model",
    "unfreeze_mm_vision_tower",
    "tokenizer_model_max_length",
    "tokenizer_padding_side",
    "use_mm_proj",
    "vision_tower_lr",
}


def padded_vocab_size(size: int, multiple: int = VOCAB_MULTIPLE) -> int:
    return -(-size // multiple) * multiple


def vision_config_from_folder(folder: Path) -> dict[str, Any]:
    """The CLIP vision config of a vision tower folder (a CLIPVisionModel or a full CLIPModel config)."""
    config = read_config(folder)
    if config.get("model_type") == "clip":
        config = dict(config.get("vision_config") or {})
        config["model_type"] = "clip_vision_model"
    if config.get("model_type") != "clip_vision_model":
        raise UsageError(
            f"{folder}/config.json: model_type {config.get('model_type')!r} is not a CLIP vision tower "
            "('clip_vision_model' or 'clip')."
        )
    return CLIPVisionConfig(
        **{k: v for k, v in config.items() if k not in ("architectures", "transformers_version")}
    ).to_dict()


def text_config_from_original(config: dict[str, Any], vocab_size: int, pad_token_id: int) -> dict[str, Any]:
    """The LLaMA part of an original config (every field that is not mm_* or multimodal training state)."""
    fields = {k: v for k, v in config.items() if not k.startswith("mm_") and k not in ORIGINAL_NON_TEXT_FIELDS}
    if fields.get("rope_scaling") is None:
        fields.pop("rope_scaling", None)  # transformers 4.31 wrote null; LlamaConfig now wants rope_parameters
    fields.update(model_type="llama", vocab_size=vocab_size, pad_token_id=pad_token_id)
    return LlamaConfig(**{k: v for k, v in fields.items() if k != "model_type"}).to_dict()


def check_original_config(config: dict[str, Any], vision: dict[str, Any], folder: Path, vit_folder: Path) -> None:
    """Refuse what the plugin cannot represent exactly, naming the field."""
    where = f"{folder}/config.json"
    projector = config.get("mm_projector_type", "linear")
    if projector != SUPPORTED_PROJECTOR:
        raise UsageError(
            f"{where}: mm_projector_type {projector!r} is not supported; ShareGPT4V and LLaVA-1.5 use "
            f"{SUPPORTED_PROJECTOR!r} (Linear-GELU-Linear), the only projector this model implements."
        )
    feature = config.get("mm_vision_select_feature", "patch")
    if feature not in SELECT_FEATURE:
        raise UsageError(
            f"{where}: mm_vision_select_feature {feature!r} cannot be honoured; supported: {sorted(SELECT_FEATURE)}."
        )
    for flag in ("mm_use_im_start_end", "mm_use_im_patch_token"):
        if config.get(flag):
            raise UsageError(
                f"{where}: {flag} is true; checkpoints that wrap images in <im_start>/<im_end> or <im_patch> tokens "
                "are not supported (ShareGPT4V and LLaVA-1.5 set both to false)."
            )
    aspect = config.get("image_aspect_ratio", "pad")
    if aspect not in ("pad", "square", "resize", None):
        raise UsageError(f"{where}: image_aspect_ratio {aspect!r} is not supported (only 'pad' or 'square').")
    mm_hidden = config.get("mm_hidden_size")
    if mm_hidden is not None and mm_hidden != vision["hidden_size"]:
        raise UsageError(
            f"{where}: mm_hidden_size is {mm_hidden} but the vision tower {vit_folder} has hidden_size "
            f"{vision['hidden_size']}: this projector was trained for a different vision tower."
        )
    layer = config.get("mm_vision_select_layer", -2)
    layers = vision["num_hidden_layers"]
    if not -(layers + 1) <= layer <= layers:
        raise UsageError(f"{where}: mm_vision_select_layer {layer} is out of range for a {layers}-layer vision tower.")


def plugin_config_from_llava(config: dict[str, Any], folder: Path) -> ShareGPT4VConfig:
    """ShareGPT4VConfig from a llava-hf (or plugin) config dict."""
    layer = config.get("vision_feature_layer", -2)
    if not isinstance(layer, int):
        raise UsageError(
            f"{folder}/config.json: vision_feature_layer {layer!r} (several layers) is not supported; ShareGPT4V "
            "uses one layer (-2)."
        )
    text_config = dict(config["text_config"])
    if config.get("pad_token_id") is not None and text_config.get("pad_token_id") is None:
        text_config["pad_token_id"] = config["pad_token_id"]
    return ShareGPT4VConfig(
        vision_config=dict(config["vision_config"]),
        text_config=text_config,
        image_token_id=config.get("image_token_id", config.get("image_token_index", ShareGPT4VConfig.image_token_id)),
        image_seq_length=config.get("image_seq_length", ShareGPT4VConfig.image_seq_length),
        projector_hidden_act=config.get("projector_hidden_act", "gelu"),
        vision_feature_select_strategy=config.get("vision_feature_select_strategy", "default"),
        vision_feature_layer=layer,
        multimodal_projector_bias=config.get("multimodal_projector_bias", True),
        tie_word_embeddings=config.get("tie_word_embeddings", False),
    )


def llava_config_from_plugin(config: ShareGPT4VConfig) -> LlavaConfig:
    """transformers' LlavaConfig with the same architecture as a ShareGPT4VConfig."""
    llava = LlavaConfig(
        vision_config=config.vision_config.to_dict(),
        text_config=config.text_config.to_dict(),
        image_token_index=config.image_token_id,
        image_seq_length=config.image_seq_length,
        projector_hidden_act=config.projector_hidden_act,
        vision_feature_select_strategy=config.vision_feature_select_strategy,
        vision_feature_layer=config.vision_feature_layer,
        multimodal_projector_bias=config.multimodal_projector_bias,
        tie_word_embeddings=config.tie_word_embeddings,
    )
    llava.pad_token_id = config.text_config.pad_token_id
    llava.architectures = ["LlavaForConditionalGeneration"]
    return llava


def expected_weights(config: ShareGPT4VConfig) -> dict[str, tuple[int, ...]]:
    """{plugin key: shape} of a model with this config (built on the meta device: no memory, no init)."""
    with torch.device("meta"):
        model = ShareGPT4VForCausalLM(config)
    return {key: tuple(tensor.shape) for key, tensor in model.state_dict().items()}
