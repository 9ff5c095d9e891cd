"""Key maps: released ShareGPT4V/LLaVA-1.5, CLIP, llava-hf and plugin weight names -> plugin names, and plugin
names -> the llava-hf Hub layout. A rename returns DROP (None) for what is known but not a model weight and
raises `UsageError` on anything it does not know."""

from __future__ import annotations

import re

from ..errors import UsageError

DROP = None  # a rename result meaning "known, not a model weight" (e.g. rotary inv_freq buffers)
# LLaVA-1.5's `mlp2x_gelu` projector is nn.Sequential(Linear, GELU, Linear): its layers 0 and 2 are Llava's
# `linear_1` and `linear_2`.
PROJECTOR_LAYERS = {"0": "linear_1", "2": "linear_2"}


def projector_key(key: str) -> str | None:
    """`linear_{1,2}.{weight,bias}` for a projector weight saved by LLaVA-1.5 (`[...]mm_projector.{0,2}.*`) or
    by Llava (`[...]multi_modal_projector.linear_{1,2}.*`, or without prefix); None for any other key."""
    tail = key.split("mm_projector.")[-1] if "mm_projector." in key else key.split("multi_modal_projector.")[-1]
    index, _, kind = tail.partition(".")
    layer = PROJECTOR_LAYERS.get(index, index if index in PROJECTOR_LAYERS.values() else None)
    return None if layer is None or kind not in ("weight", "bias") else f"{layer}.{kind}"


def rename_original_llm_key(key: str) -> str | None:
    """Released ShareGPT4V/LLaVA-1.5 LLM checkpoint key -> plugin key (None: drop; raises on unknown)."""
    if key.endswith(("rotary_emb.inv_freq", "embeddings.position_ids")):  # buffers older transformers saved
        return DROP
    projector = re.fullmatch(r"model\.mm_projector\.(\d+)\.(weight|bias)", key)
    if projector:
        index = PROJECTOR_LAYERS.get(projector.group(1))
        if index is None:
            raise UsageError(
                f"weight {key!r}: mm_projector layer {projector.group(1)} is not part of a 'mlp2x_gelu' projector "
                "(layers 0 and 2 only); this projector type is not supported."
            )
        return f"model.multi_modal_projector.{index}.{projector.group(2)}"
    if key.startswith("model.vision_tower.vision_tower.vision_model."):
        return "model.vision_tower." + key[len("model.vision_tower.vision_tower.vision_model.") :]
    if key.startswith("model."):
        return "model.language_model." + key[len("model.") :]
    if key == "lm_head.weight":
        return key
    raise UsageError(f"unexpected weight {key!r} in the LLM checkpoint (not a LLaMA or mm_projector weight).")


# CLIPVisionModel's own modules. transformers >= 5.24 saves them as they are (`embeddings.*`, ...); older
# versions (and the released ShareGPT4V vision towers) under a `vision_model.` prefix.
CLIP_VISION_MODULES = ("embeddings.", "pre_layrnorm.", "encoder.", "post_layernorm.")


def rename_vision_tower_key(key: str) -> str | None:
    """Key of a CLIP checkpoint (CLIPVisionModel of any transformers version, or a full CLIPModel) -> plugin key
    (None: not needed)."""
    if key.startswith(("text_model.", "visual_projection.", "text_projection.")) or key == "logit_scale":
        return DROP  # the text half of a full CLIPModel (e.g. openai/clip-vit-large-patch14-336)
    name = key[len("vision_model.") :] if key.startswith("vision_model.") else key
    if not name.startswith(CLIP_VISION_MODULES):
        raise UsageError(
            f"unexpected weight {key!r} in the vision tower checkpoint (expected CLIP vision weights: "
            "vision_model.*, or embeddings.* / encoder.* / pre_layrnorm.* / post_layernorm.*)."
        )
    if name.endswith("position_ids"):
        return DROP
    return "model.vision_tower." + name


def rename_llava_key(key: str) -> str | None:
    """llava-hf key (Hub or transformers-5 layout) or plugin key -> plugin key."""
    if key.endswith(("rotary_emb.inv_freq", "position_ids")):
        return DROP
    for old, new in (
        ("language_model.lm_head.", "lm_head."),
        ("language_model.model.", "model.language_model."),
        ("vision_tower.vision_model.", "model.vision_tower."),  # transformers 4.x / Hub layout
        ("model.vision_tower.vision_model.", "model.vision_tower."),
        ("vision_tower.", "model.vision_tower."),  # what transformers 5 `save_pretrained` writes
        ("multi_modal_projector.", "model.multi_modal_projector."),
    ):
        if key.startswith(old):
            return new + key[len(old) :]
    if key.startswith(("model.language_model.", "model.vision_tower.", "model.multi_modal_projector.", "lm_head.")):
        return key
    raise UsageError(f"unexpected weight {key!r} in the llava checkpoint.")


def to_llava_hf_key(key: str) -> str:
    """Plugin key -> the llava-hf Hub layout (what `llava-hf/llava-1.5-7b-hf` ships; vLLM, SGLang and every
    transformers version load it)."""
    for new, old in (
        ("lm_head.", "language_model.lm_head."),
        ("model.language_model.", "language_model.model."),
        ("model.vision_tower.", "vision_tower.vision_model."),
        ("model.multi_modal_projector.", "multi_modal_projector."),
    ):
        if key.startswith(new):
            return old + key[len(new) :]
    raise ValueError(f"internal error: no llava-hf name for {key!r}")
