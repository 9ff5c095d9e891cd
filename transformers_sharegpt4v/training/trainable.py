"""Which parameters each ShareGPT4V stage trains ("Training recipe" in docs/reference.md).

- `pretrain` (stage 1): the whole LLM (embeddings, decoder, norm, `lm_head`), the projector, and the vision
  encoder layers with index >= `vision_trainable_from_layer` (12 for ViT-L/14: its second half). The vision
  embeddings and the pre/post layer norms stay frozen.
- `finetune` (stage 2) and `captioner`: the LLM and the projector; the vision tower is frozen.

A vision layer past `vision_feature_layer` (with -2 on a 24-layer ViT: layer 23, and `post_layernorm`) never
reaches the projector, so it gets no gradient. It is frozen here rather than left "trainable" (the original
marked it trainable; AdamW leaves a parameter without a gradient untouched, so the weights end the same), is
not counted as trained, and the report says so. Freezing it also spares DDP an unused-parameter search.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Literal

from torch import nn

logger = logging.getLogger(__name__)

Stage = Literal["pretrain", "finetune", "captioner"]
STAGES: tuple[str, ...] = ("pretrain", "finetune", "captioner")


@dataclass
class TrainableReport:
    """What `apply_stage_policy` left trainable: parameter counts per part and notes for the log."""

    stage: str
    trainable_parameters: int = 0
    frozen_parameters: int = 0
    trainable_vision_layers: list[int] = field(default_factory=list)
    unused_vision_layers: list[int] = field(default_factory=list)
    per_part: dict[str, tuple[int, int]] = field(default_factory=dict)  # part -> (trainable, total)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        total = self.trainable_parameters + self.frozen_parameters
        parts = ", ".join(f"{name} {t:,}/{n:,}" for name, (t, n) in self.per_part.items())
        lines = [
            f"stage {self.stage}: {self.trainable_parameters:,} of {total:,} parameters trainable "
            f"({100 * self.trainable_parameters / max(total, 1):.1f}%): {parts}"
        ]
        return "\n".join(lines + self.notes)


def _vision_layers(model: nn.Module) -> nn.ModuleList:
    encoder = getattr(_vision_tower(model), "encoder", None)
    if encoder is None:  # CLIPVisionModel wraps a CLIPVisionTransformer as `vision_model`
        encoder = _vision_tower(model).vision_model.encoder
    return encoder.layers


def _vision_tower(model: nn.Module) -> nn.Module:
    return _backbone(model).vision_tower


def _backbone(model: nn.Module) -> nn.Module:
    return model.model if hasattr(model, "lm_head") else model


def used_vision_layers(num_layers: int, vision_feature_layer: int | list[int]) -> int:
    """How many encoder layers feed the projector: hidden state k is the output of layer k-1 (0 = embeddings)."""
    layers = vision_feature_layer if isinstance(vision_feature_layer, list) else [vision_feature_layer]
    indices = [layer if layer >= 0 else num_layers + 1 + layer for layer in layers]
    return max(indices)


def apply_stage_policy(
    model: nn.Module, stage: Stage, vision_trainable_from_layer: int | None = None
) -> TrainableReport:
    """Set `requires_grad` on every parameter of a `ShareGPT4VForCausalLM` for `stage`; return what it did.

    `vision_trainable_from_layer` only applies to `pretrain` (default 12, the second half of ViT-L/14); a
    negative value, or one past the last layer, trains no vision layer.
    """
    if stage not in STAGES:
        raise ValueError(f"Unknown stage {stage!r}: choose one of {', '.join(STAGES)}.")
    layers = _vision_layers(model)
    used = used_vision_layers(len(layers), _backbone(model).config.vision_feature_layer)
    start = _first_trained_vision_layer(stage, vision_trainable_from_layer, len(layers))
    trainable_layers = list(range(start, min(used, len(layers))))
    _set_trainable(model, [layers[index] for index in trainable_layers])
    return _report(model, stage, trainable_layers, list(range(used, len(layers))))


def _first_trained_vision_layer(stage: str, vision_trainable_from_layer: int | None, num_layers: int) -> int:
    """The first vision layer `stage` trains (`num_layers`: none), warning about a setting that does not apply."""
    if stage != "pretrain":
        if vision_trainable_from_layer is not None:
            logger.warning(
                "vision_trainable_from_layer=%s is ignored: stage %r keeps the vision tower frozen.",
                vision_trainable_from_layer,
                stage,
            )
        return num_layers
    start = 12 if vision_trainable_from_layer is None else vision_trainable_from_layer
    if not 0 <= start < num_layers:
        logger.warning(
            "vision_trainable_from_layer=%s is outside 0..%d: no vision layer is trained.", start, num_layers - 1
        )
        return num_layers
    return start


def _set_trainable(model: nn.Module, vision_layers: list[nn.Module]) -> None:
    """Freeze everything, then unfreeze the LLM, the projector, `lm_head` and the given vision layers."""
    backbone = _backbone(model)
    model.requires_grad_(False)
    backbone.language_model.requires_grad_(True)
    backbone.multi_modal_projector.requires_grad_(True)
    if hasattr(model, "lm_head"):
        model.lm_head.requires_grad_(True)
    for layer in vision_layers:
        layer.requires_grad_(True)


def _parts(model: nn.Module) -> dict[str, nn.Module]:
    """The parts the report counts: vision, projector, llm and (with a head) lm_head."""
    backbone = _backbone(model)
    parts = {
        "vision": _vision_tower(model),
        "projector": backbone.multi_modal_projector,
        "llm": backbone.language_model,
    }
    if hasattr(model, "lm_head"):
        parts["lm_head"] = model.lm_head
    return parts


def _report(model: nn.Module, stage: str, trainable_layers: list[int], unused_layers: list[int]) -> TrainableReport:
    """Count what is trainable, per part, and note what happens to the vision tower."""
    report = TrainableReport(stage=stage, trainable_vision_layers=trainable_layers, unused_vision_layers=unused_layers)
    for param in model.parameters():
        if param.requires_grad:
            report.trainable_parameters += param.numel()
        else:
            report.frozen_parameters += param.numel()
    for part, module in _parts(model).items():
        params = list(module.parameters())
        report.per_part[part] = (sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params))
    if trainable_layers:
        report.notes.append(
            f"vision encoder layers {trainable_layers[0]}..{trainable_layers[-1]} trained; embeddings, "
            "pre_layrnorm, post_layernorm and earlier layers frozen"
        )
    if stage == "pretrain" and unused_layers:
        report.notes.append(
            f"vision layers {unused_layers} come after vision_feature_layer="
            f"{_backbone(model).config.vision_feature_layer} and get no gradient: kept frozen, not counted as trained"
        )
    elif stage != "pretrain":
        report.notes.append("vision tower frozen")
    return report


__all__ = ["STAGES", "Stage", "TrainableReport", "apply_stage_policy", "used_vision_layers"]
