"""The conversion plan of a source: the target ShareGPT4VConfig, the weight files and their key maps, the
tokenizer (with `<image>` and `<pad>` added for released checkpoints), the image processor settings, the
generation config and the provenance written into the model card."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import AddedToken, AutoProcessor, GenerationConfig, LlamaConfig

from ..configuration_sharegpt4v import ShareGPT4VConfig
from ..errors import UsageError
from ..llama_tokenizer import SENTENCEPIECE_FILE, load_llama_tokenizer
from ..processing_sharegpt4v import IMAGE_TOKEN, PAD_TOKEN
from .configs import (
    SELECT_FEATURE,
    check_original_config,
    padded_vocab_size,
    plugin_config_from_llava,
    text_config_from_original,
    vision_config_from_folder,
)
from .keys import DROP, rename_llava_key, rename_original_llm_key, rename_vision_tower_key
from .sources import resolve_checkpoint
from .weights import list_weight_files


@dataclass
class _Source:
    """One folder of weights and how its keys map to plugin keys."""

    folder: Path
    rename: Callable[[str], str | None]
    files: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class _Plan:
    config: ShareGPT4VConfig
    sources: list[_Source]
    new_vocab_rows: int = 0  # rows appended to embed_tokens / lm_head (mean-initialised)
    tokenizer: Any = None
    image_processor_kwargs: dict[str, Any] = field(default_factory=dict)
    generation_config: Any = None
    chat_template: str | dict[str, str] | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    sentencepiece_file: Path | None = None  # the source's tokenizer.model: the export's independent id check


def _read_preprocessor(folder: Path) -> dict[str, Any]:
    """The CLIP preprocessing settings of a folder (preprocessor_config.json, or the image processor nested
    in processor_config.json as transformers 5 writes it)."""
    path = folder / "preprocessor_config.json"
    if path.is_file():
        data = json.loads(path.read_text(encoding="utf-8"))
    elif (folder / "processor_config.json").is_file():
        data = json.loads((folder / "processor_config.json").read_text(encoding="utf-8")).get("image_processor", {})
    else:
        return {}
    kwargs: dict[str, Any] = {}
    for name in (
        "image_mean",
        "image_std",
        "rescale_factor",
        "do_normalize",
        "do_rescale",
        "do_convert_rgb",
        "do_pad",
    ):
        if name in data:
            kwargs[name] = data[name]
    size = data.get("size")
    if isinstance(size, dict):
        kwargs["size"] = size
    elif isinstance(size, int):
        kwargs["size"] = {"shortest_edge": size}
    crop = data.get("crop_size")
    if isinstance(crop, dict):
        kwargs["crop_size"] = crop
    elif isinstance(crop, int):
        kwargs["crop_size"] = {"height": crop, "width": crop}
    return kwargs


def _generation_config(folder: Path, tokenizer: Any) -> Any:
    if (folder / "generation_config.json").is_file():
        generation = GenerationConfig.from_pretrained(folder)
    else:
        generation = GenerationConfig(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    generation.pad_token_id = tokenizer.pad_token_id
    return generation


def _plan_original(folder: Path, config: dict[str, Any], vision_tower: str | None) -> _Plan:
    vit_name = vision_tower or config.get("mm_vision_tower")
    if not vit_name:
        raise UsageError(f"{folder}/config.json has no mm_vision_tower; pass the vision tower with --vision-tower.")
    vit_folder = resolve_checkpoint(vit_name, "vision tower")
    vision = vision_config_from_folder(vit_folder)
    check_original_config(config, vision, folder, vit_folder)

    # `config=`: the LLaMA tokenizer without transformers parsing the share4v config.json (and warning about it).
    tokenizer = load_llama_tokenizer(folder, config=LlamaConfig())
    vocab = config.get("vocab_size", 32000)
    if len(tokenizer) != vocab:
        raise UsageError(
            f"{folder}: the tokenizer has {len(tokenizer)} tokens but config.json vocab_size is {vocab}; expected the "
            "released LLaMA tokenizer (no <image> token) with one row per token."
        )
    if IMAGE_TOKEN in tokenizer.get_vocab():
        raise UsageError(
            f"{folder}: the tokenizer already has {IMAGE_TOKEN}; this is not a released original checkpoint."
        )
    tokenizer.add_tokens([AddedToken(IMAGE_TOKEN, special=True, normalized=False)], special_tokens=True)
    tokenizer.add_special_tokens({"pad_token": PAD_TOKEN})
    image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    new_vocab = padded_vocab_size(len(tokenizer))

    strategy = SELECT_FEATURE[config.get("mm_vision_select_feature", "patch")]
    patches = (vision["image_size"] // vision["patch_size"]) ** 2
    plugin_config = ShareGPT4VConfig(
        vision_config=vision,
        text_config=text_config_from_original(config, new_vocab, tokenizer.pad_token_id),
        image_token_id=image_token_id,
        image_seq_length=patches + (1 if strategy == "full" else 0),
        projector_hidden_act="gelu",
        vision_feature_select_strategy=strategy,
        vision_feature_layer=config.get("mm_vision_select_layer", -2),
        multimodal_projector_bias=True,
        tie_word_embeddings=config.get("tie_word_embeddings", False),
    )
    aspect = config.get("image_aspect_ratio", "pad")
    plugin_config.image_aspect_ratio = aspect
    image_kwargs = _read_preprocessor(vit_folder)
    image_kwargs["do_pad"] = aspect == "pad"
    llm = _Source(folder, rename_original_llm_key)
    sources = [llm]
    llm.files = list_weight_files(folder)
    embedded_vit = any(k.startswith("model.vision_tower.vision_tower.") for keys in llm.files.values() for k in keys)
    if not embedded_vit:
        sources.append(_Source(vit_folder, rename_vision_tower_key, list_weight_files(vit_folder)))
    sentencepiece_file = folder / SENTENCEPIECE_FILE
    return _Plan(
        sentencepiece_file=sentencepiece_file if sentencepiece_file.is_file() else None,
        config=plugin_config,
        sources=sources,
        new_vocab_rows=new_vocab - vocab,
        tokenizer=tokenizer,
        image_processor_kwargs=image_kwargs,
        generation_config=_generation_config(folder, tokenizer),
        provenance={"base_model": str(config.get("_name_or_path") or folder.name), "vision_tower": str(vit_name)},
    )


def _plan_llava(folder: Path, config: dict[str, Any]) -> _Plan:
    plugin_config = plugin_config_from_llava(config, folder)
    plugin_config.image_aspect_ratio = config.get("image_aspect_ratio", "pad")
    tokenizer = load_llama_tokenizer(folder)  # `legacy` as its tokenizer_config.json says (unset: true, as 4.31)
    if tokenizer.convert_tokens_to_ids(IMAGE_TOKEN) != plugin_config.image_token_id:
        raise UsageError(
            f"{folder}: the tokenizer maps {IMAGE_TOKEN} to {tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)} but "
            f"config.json says image_token_id {plugin_config.image_token_id}."
        )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.unk_token
    image_kwargs = _read_preprocessor(folder)
    chat_template = None
    if config.get("model_type") == "sharegpt4v":
        # A plugin checkpoint keeps its own settings (e.g. do_pad=False after stage 1) and chat templates.

        image_kwargs.setdefault("do_pad", True)
        chat_template = AutoProcessor.from_pretrained(folder).chat_template
    else:
        # llava-hf folders ship a plain CLIP processor (no pad); the original model saw padded squares.
        image_kwargs["do_pad"] = True
    return _Plan(
        config=plugin_config,
        sources=[_Source(folder, rename_llava_key, list_weight_files(folder))],
        tokenizer=tokenizer,
        image_processor_kwargs=image_kwargs,
        generation_config=_generation_config(folder, tokenizer),
        chat_template=chat_template,
        provenance={"base_model": str(config.get("_name_or_path") or folder.name)},
    )


def _check_keys(plan: _Plan, expected: dict[str, tuple[int, ...]]) -> None:
    """Every expected weight comes from exactly one source key and no source key is left unused."""
    seen: dict[str, str] = {}
    for source in plan.sources:
        for file_name, keys in source.files.items():
            for key in keys:
                try:
                    target = source.rename(key)
                except ValueError as error:
                    raise UsageError(f"{source.folder / file_name}: {error}") from None
                if target is DROP:
                    continue
                if target not in expected:
                    raise UsageError(
                        f"{source.folder / file_name}: extra weight {key!r} (-> {target!r}) does not exist in a model "
                        "with this config; refusing to drop it silently."
                    )
                if target in seen:
                    raise UsageError(f"weight {target!r} comes from both {seen[target]} and {key!r}.")
                seen[target] = key
    missing = sorted(set(expected) - set(seen))
    if missing:
        folders = ", ".join(str(s.folder) for s in plan.sources)
        raise UsageError(
            f"{len(missing)} weight(s) missing from {folders}: {', '.join(missing[:8])}"
            + (" ..." if len(missing) > 8 else "")
        )
