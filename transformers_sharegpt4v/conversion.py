"""Convert checkpoints between the three layouts a ShareGPT4V model comes in.

- **original**: the released ShareGPT4V-7B/13B and LLaVA-1.5 checkpoints (config `model_type` "share4v" or
  "llava" with `mm_*` fields, pickled `pytorch_model-*.bin` shards or safetensors, keys `model.layers.*` +
  `model.mm_projector.{0,2}.*`, a LLaMA SentencePiece tokenizer without `<image>`, and the vision tower in a
  SEPARATE folder/repo named by `mm_vision_tower`: a CLIP config + `vision_model.*` weights).
- **llava-hf**: transformers' `LlavaForConditionalGeneration` (model_type "llava" with `text_config` /
  `vision_config`), in the Hub layout (`language_model.model.*`, `vision_tower.vision_model.*`,
  `multi_modal_projector.*`) or the transformers-5 layout (`model.language_model.*`, ...).
- **sharegpt4v**: this plugin (model_type "sharegpt4v"; the transformers-5 llava key layout, plus the
  remote-code files so that `trust_remote_code=True` loads it without the plugin installed).

`convert_checkpoint(src, dst, to="sharegpt4v" | "llava-hf")` reads any of them and writes the requested
one: safetensors shards, config, processor (pad-to-square on, as the original inference code does),
chat template, generation config and a model card. Tensors are streamed: one source shard is open (memory
mapped) at a time and every output tensor is written to disk as soon as it is computed, so the peak memory
is about one source shard plus the largest tensor, not the model.

New vocabulary rows. The released tokenizer has no `<image>` token; like transformers' llava-hf
conversion we append `<image>` and `<pad>` and pad the vocabulary to a multiple of 64 (32000 -> 32064).
The new rows of `embed_tokens` and `lm_head` are set to the MEAN of the original rows (deterministic, no
noise). Why: the `<image>` embedding row is never used (the projected image features replace it) and the
`<pad>` row only sits under masked positions, so logits for every original id are unchanged; and a
`lm_head` row equal to the mean of the others gives a logit equal to the mean of the original logits,
which can never exceed their maximum, so greedy decoding picks exactly the tokens the original model
picks. (Sampling gives the new ids a small probability; they are special tokens and get skipped on decode.)
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import re
import shutil
import struct
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from huggingface_hub import HfApi, snapshot_download
from safetensors import safe_open
from tqdm.auto import tqdm
from transformers import (
    AddedToken,
    AutoProcessor,
    CLIPVisionConfig,
    GenerationConfig,
    LlamaConfig,
    LlavaConfig,
)
from transformers.utils.hub import convert_file_size_to_int

from .configuration_sharegpt4v import ShareGPT4VConfig
from .errors import UsageError
from .hub import read_license, write_model_card
from .image_processing_sharegpt4v import ShareGPT4VImageProcessor
from .llama_tokenizer import (
    IMAGE_SENTINEL,
    SENTENCEPIECE_FILE,
    after_special_split,
    load_llama_tokenizer,
    original_prompt_ids,
)
from .modeling_sharegpt4v import ShareGPT4VForCausalLM
from .processing_sharegpt4v import ShareGPT4VProcessor, tokenizer_is_legacy

logger = logging.getLogger(__name__)

TargetFormat = Literal["sharegpt4v", "llava-hf"]
SourceFormat = Literal["original", "llava-hf", "sharegpt4v"]

# The remote-code unit (README.md, "Architecture"): copied into every plugin checkpoint.
REMOTE_CODE_FILES = (
    "configuration_sharegpt4v.py",
    "modeling_sharegpt4v.py",
    "image_processing_sharegpt4v.py",
    "processing_sharegpt4v.py",
)
IMAGE_TOKEN = "<image>"
PAD_TOKEN = "<pad>"
VOCAB_MULTIPLE = 64
DEFAULT_MAX_SHARD_SIZE = 5 * 1024**3

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

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}
# safetensors header names of the dtypes a checkpoint may hold.
_SAFETENSORS_DTYPE = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}


# ----------------------------------------------------------------------------------------------------------
# Resolving sources (local folders or Hub ids)
# ----------------------------------------------------------------------------------------------------------


def resolve_checkpoint(name_or_path: str | os.PathLike, what: str = "checkpoint") -> Path:
    """A local folder, or the snapshot folder of a Hub repo id (offline: only what is already cached)."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise UsageError(f"{what} {str(name_or_path)!r} is a file; pass the checkpoint FOLDER (with config.json).")
    name = str(name_or_path)
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", name) or name.startswith((".", "/")):
        raise UsageError(f"{what} {name!r} is neither an existing folder nor a Hub repo id (owner/name).")

    # Only what a conversion reads: no TF/Flax/ONNX weights, and no pickles when safetensors exist
    # (openai/clip-vit-large-patch14-336 ships both).
    ignore = ["*.msgpack", "*.h5", "*.ot", "*.onnx", "flax_*", "tf_*", "*.pt", "*.pth", "*.gguf"]
    try:
        files = HfApi().list_repo_files(name)
    except Exception:  # offline or unreachable: snapshot_download below says so (or uses the cache)
        files = []
    if any(f.endswith(".safetensors") for f in files):
        ignore.append("*.bin")
    try:
        return Path(snapshot_download(name, ignore_patterns=ignore))
    except Exception as error:  # offline cache miss, unknown repo, network error: all mean "not available"
        offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
        hint = (
            "HF_HUB_OFFLINE is set, so only repos already in the local cache resolve"
            if offline
            else "the Hub could not be reached or the repo does not exist"
        )
        raise UsageError(
            f"{what} {name!r} is not a local folder and could not be fetched from the Hub: {hint} "
            f"({type(error).__name__}: {error}). Download it first (`hf download {name} --local-dir DIR`) and "
            f"pass the folder."
        ) from error


def read_config(folder: Path) -> dict[str, Any]:
    path = folder / "config.json"
    if not path.is_file():
        raise UsageError(f"{folder} has no config.json: it is not a transformers checkpoint folder.")
    return json.loads(path.read_text(encoding="utf-8"))


def detect_source_format(config: dict[str, Any], folder: Path | str = "SRC") -> SourceFormat:
    """Tell an original ShareGPT4V/LLaVA-1.5, a llava-hf and a plugin checkpoint apart by their config."""
    model_type = config.get("model_type")
    if model_type == "sharegpt4v":
        return "sharegpt4v"
    if model_type in ("share4v", "llava", "llava_llama") and any(k.startswith("mm_") for k in config):
        return "original"
    if model_type == "llava" and "text_config" in config:
        return "llava-hf"
    raise UsageError(
        f"{folder}/config.json: model_type {model_type!r} is not a checkpoint this converter knows. Expected a "
        "released ShareGPT4V/LLaVA-1.5 checkpoint (model_type 'share4v' or 'llava' with mm_* fields), a llava-hf "
        "checkpoint (model_type 'llava' with text_config/vision_config) or a plugin checkpoint ('sharegpt4v')."
    )


# ----------------------------------------------------------------------------------------------------------
# Reading weights shard by shard
# ----------------------------------------------------------------------------------------------------------


def list_weight_files(folder: Path) -> dict[str, list[str]]:
    """{file name: [tensor names]} of a checkpoint folder, without loading a tensor when an index exists.

    Prefers safetensors (`model.safetensors[.index.json]`) to pickles (`pytorch_model[-*].bin[.index.json]`).
    """
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index = folder / index_name
        if index.is_file():
            weight_map: dict[str, str] = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            files: dict[str, list[str]] = {}
            for key, file_name in weight_map.items():
                files.setdefault(file_name, []).append(key)
            for file_name in files:
                if not (folder / file_name).is_file():
                    raise UsageError(f"{index} lists {file_name}, which is missing from {folder}.")
            return files
    if (folder / "model.safetensors").is_file():
        with safe_open(folder / "model.safetensors", framework="pt") as handle:
            return {"model.safetensors": list(handle.keys())}
    if (folder / "pytorch_model.bin").is_file():
        with open_weight_file(folder / "pytorch_model.bin") as tensors:
            return {"pytorch_model.bin": list(tensors.keys())}
    raise UsageError(
        f"{folder} holds no weights: expected model.safetensors[.index.json] or pytorch_model[-*].bin[.index.json]."
    )


class _SafetensorsShard:
    """Dict-like, lazy view of a safetensors file (each tensor memory mapped on access)."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle

    def keys(self) -> list[str]:
        return list(self.handle.keys())

    def __getitem__(self, key: str) -> torch.Tensor:
        return self.handle.get_tensor(key)


@contextmanager
def open_weight_file(path: Path) -> Iterator[Any]:
    """Open one weight file lazily: safetensors with `safe_open`, pickles with `torch.load(weights_only=True)`.

    Pickles are memory mapped (`mmap=True`) when they are in the zip format torch has written since 1.6, so
    only the tensors actually read become resident.
    """
    if path.suffix == ".safetensors":
        with safe_open(path, framework="pt") as handle:
            yield _SafetensorsShard(handle)
        return
    mmap = zipfile.is_zipfile(path)
    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as error:
        raise UsageError(
            f"{path} could not be read with torch.load(weights_only=True): {error}. Only plain tensor state dicts "
            "are accepted (no arbitrary pickled objects)."
        ) from error
    if not isinstance(state_dict, dict):
        raise UsageError(f"{path} does not hold a state dict (got {type(state_dict).__name__}).")
    try:
        yield state_dict
    finally:
        state_dict.clear()


# ----------------------------------------------------------------------------------------------------------
# Writing safetensors shards one tensor at a time
# ----------------------------------------------------------------------------------------------------------


def _tensor_nbytes(shape: tuple[int, ...], dtype: torch.dtype) -> int:
    return math.prod(shape) * torch.empty((), dtype=dtype).element_size()


def write_safetensors_streaming(
    path: Path, entries: list[tuple[str, tuple[int, ...], torch.dtype, Callable[[], torch.Tensor]]]
) -> None:
    """Write a safetensors file whose tensors are produced one at a time by `entries[i][3]()`.

    `safetensors.torch.save_file` needs every tensor of the file alive at once; here only the one being
    written is. The format: 8-byte little-endian header length, a JSON header {name: {dtype, shape,
    data_offsets}} padded with spaces to a multiple of 8, then the raw little-endian tensor bytes in order.
    """
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, shape, dtype, _ in entries:
        size = _tensor_nbytes(shape, dtype)
        header[name] = {
            "dtype": _SAFETENSORS_DTYPE[dtype],
            "shape": list(shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    header_bytes = json.dumps(header, separators=(",", ":")).encode("utf-8")
    header_bytes += b" " * (-len(header_bytes) % 8)
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", len(header_bytes)))
        handle.write(header_bytes)
        for name, shape, dtype, produce in entries:
            tensor = produce()
            if tuple(tensor.shape) != tuple(shape) or tensor.dtype != dtype:
                raise RuntimeError(f"internal error: {name} produced {tuple(tensor.shape)} {tensor.dtype}")
            handle.write(memoryview(tensor.contiguous().reshape(-1).view(torch.uint8).numpy()))
            del tensor


# ----------------------------------------------------------------------------------------------------------
# Key mapping
# ----------------------------------------------------------------------------------------------------------

DROP = None  # a rename result meaning "known, not a model weight" (e.g. rotary inv_freq buffers)


def rename_original_llm_key(key: str) -> str | None:
    """Released ShareGPT4V/LLaVA-1.5 LLM checkpoint key -> plugin key (None: drop; raises on unknown)."""
    if key.endswith(("rotary_emb.inv_freq", "embeddings.position_ids")):  # buffers older transformers saved
        return DROP
    projector = re.fullmatch(r"model\.mm_projector\.(\d+)\.(weight|bias)", key)
    if projector:
        index = {"0": "linear_1", "2": "linear_2"}.get(projector.group(1))
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


# ----------------------------------------------------------------------------------------------------------
# Configs
# ----------------------------------------------------------------------------------------------------------


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
        image_token_id=config.get("image_token_id", config.get("image_token_index", 32000)),
        image_seq_length=config.get("image_seq_length", 576),
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


# ----------------------------------------------------------------------------------------------------------
# The conversion plan
# ----------------------------------------------------------------------------------------------------------


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


def _pad_vocab_rows(tensor: torch.Tensor, rows: int) -> torch.Tensor:
    """Append `rows` copies of the mean row (computed in float32) to an embedding / lm_head matrix."""
    mean = tensor.mean(dim=0, keepdim=True, dtype=torch.float32).to(tensor.dtype)  # no float32 copy of the matrix
    return torch.cat([tensor, mean.expand(rows, -1)], dim=0)


def _stream_weights(
    plan: _Plan,
    expected: dict[str, tuple[int, ...]],
    out_dir: Path,
    dtype: torch.dtype | None,
    max_shard_size: int,
    name_for_target: Callable[[str], str],
) -> tuple[dict[str, str], int]:
    """Write every weight to safetensors shards in `out_dir`; returns (weight_map, total bytes)."""
    vocab_keys = {"model.language_model.embed_tokens.weight", "lm_head.weight"}
    weight_map: dict[str, str] = {}
    shard_files: list[str] = []
    total = 0
    progress = tqdm(total=len(expected), desc="Converting weights", unit="tensor")

    def flush(entries: list) -> None:
        if not entries:
            return
        name = f"shard-{len(shard_files):05d}.safetensors.partial"
        write_safetensors_streaming(out_dir / name, entries)
        shard_files.append(name)
        for entry in entries:
            weight_map[entry[0]] = name
        progress.update(len(entries))

    for source in plan.sources:
        for file_name in source.files:
            path = source.folder / file_name
            with open_weight_file(path) as tensors:
                entries: list = []
                size = 0
                for key in tensors.keys():
                    target = source.rename(key)
                    if target is DROP:
                        continue
                    tensor = tensors[key]
                    shape = tuple(tensor.shape)
                    rows = plan.new_vocab_rows if target in vocab_keys else 0
                    out_shape = (shape[0] + rows, *shape[1:]) if rows else shape
                    if out_shape != expected[target]:
                        raise UsageError(_shape_error(path, key, shape, expected[target], rows, plan.config))
                    out_dtype = dtype if (dtype is not None and tensor.is_floating_point()) else tensor.dtype
                    nbytes = _tensor_nbytes(out_shape, out_dtype)
                    if entries and size + nbytes > max_shard_size:
                        flush(entries)
                        entries, size = [], 0

                    def produce(tensors=tensors, key=key, rows=rows, out_dtype=out_dtype) -> torch.Tensor:
                        value = tensors[key]
                        if rows:
                            value = _pad_vocab_rows(value, rows)
                        return value.to(out_dtype)

                    entries.append((name_for_target(target), out_shape, out_dtype, produce))
                    size += nbytes
                    total += nbytes
                flush(entries)
    progress.close()

    # Final names: model.safetensors for one shard, model-0000i-of-0000n.safetensors + index otherwise.
    count = len(shard_files)
    final = {
        name: "model.safetensors" if count == 1 else f"model-{i + 1:05d}-of-{count:05d}.safetensors"
        for i, name in enumerate(shard_files)
    }
    for old, new in final.items():
        (out_dir / old).rename(out_dir / new)
    weight_map = {key: final[name] for key, name in weight_map.items()}
    if count > 1:
        index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
        (out_dir / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    return weight_map, total


def _shape_error(
    path: Path, key: str, shape: tuple[int, ...], expected: tuple[int, ...], rows: int, config: Any
) -> str:
    message = f"{path}: weight {key!r} has shape {list(shape)}, expected {list((expected[0] - rows, *expected[1:]))}"
    if "mm_projector" in key or "multi_modal_projector" in key:
        message += (
            f" (vision hidden {config.vision_config.hidden_size} -> language hidden {config.text_config.hidden_size}): "
            "the projector does not fit this language model / vision tower, e.g. a 7B projector with a 13B LLM."
        )
    elif "vision" in key:
        message += ": the vision tower weights do not match its config.json."
    else:
        message += ": the weights do not match config.json."
    return message


def _resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    if dtype is None or dtype == "auto":
        return None
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in _DTYPES:
        raise UsageError(f"dtype {dtype!r} is not one of auto, {', '.join(sorted(_DTYPES))}.")
    return _DTYPES[dtype]


def _first_llm_dtype(plan: _Plan) -> torch.dtype:
    """The dtype the LLM weights are stored in (the whole converted model uses it unless --dtype says otherwise)."""
    source = plan.sources[0]
    for file_name, keys in source.files.items():
        for key in keys:
            if key.endswith("embed_tokens.weight"):
                with open_weight_file(source.folder / file_name) as tensors:
                    return tensors[key].dtype
    return torch.float32


def _shipped_chat_template(name: str) -> str:
    """A chat template shipped with the package (chat_templates/{name}.jinja)."""
    path = Path(__file__).with_name("chat_templates") / f"{name}.jinja"
    if not path.is_file():
        raise ValueError(f"{path} is missing: reinstall transformers-sharegpt4v (the package data is incomplete).")
    return path.read_text(encoding="utf-8")


def _default_template(chat_template: str | dict[str, str]) -> str | None:
    return chat_template.get("default") if isinstance(chat_template, dict) else chat_template


# A conversation with what the dummy prefix affects: text after an image, after "</s>", digits and unicode.
_TURN_START = "USER:"  # what vicuna_v1 puts right after each "</s>"
_PROBE_MESSAGES = [
    {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is in  the 2 images? 日本語 ✓"}]},
    {"role": "assistant", "content": [{"type": "text", "text": "A dog, 3 cats — 0.5 m²."}]},
    {"role": "user", "content": [{"type": "text", "text": " And then?"}]},
]


def _whole_string_tokenizer(tokenizer: Any) -> Any:
    """A copy of the LLaMA tokenizer for the llava-hf export, with the pipeline vicuna_v1_llava_hf is written for.

    The template spells out SentencePiece's per-piece dummy prefix as spaces, which fits the Metaspace
    pre-tokenizer (transformers >= 4.41 tokenizer.json; it adds "▁" only at the start of the text). The legacy
    tokenizer.json of older llava-hf repos prepends "▁" to every piece between special tokens with a normalizer,
    which would double those spaces: it is rewritten to the Metaspace form (same vocabulary and merges). With
    `legacy: false`, "USER" after "</s>" gets the pieces transformers 4.31 gave it (`after_special_split`). The
    copy carries no chat templates of its own (the plugin's would be saved as additional_chat_templates).
    """
    out = copy.copy(tokenizer)
    out.chat_template = None
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return out
    spec = json.loads(backend.to_str())
    normalizer = spec.get("normalizer") or {}
    steps = normalizer.get("normalizers", []) if normalizer.get("type") == "Sequence" else [normalizer]
    prepend = [step for step in steps if step.get("type") == "Prepend" and step.get("prepend") == "▁"]
    if prepend and spec.get("pre_tokenizer") is None:
        kept = [step for step in steps if step not in prepend]
        spec["normalizer"] = {"type": "Sequence", "normalizers": kept} if kept else None
        spec["pre_tokenizer"] = {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": False}
        out._tokenizer = type(backend).from_str(json.dumps(spec))
    if not tokenizer_is_legacy(tokenizer):
        split = after_special_split(out, _TURN_START)
        if split is not None:
            spec = json.loads(out._tokenizer.to_str())
            spec["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [split, spec["pre_tokenizer"]]}
            out._tokenizer = type(backend).from_str(json.dumps(spec))
    return out


def _llava_hf_template(tokenizer: Any) -> str:
    """The shipped vicuna_v1_llava_hf template, with the tokenizer's `legacy` setting written in."""
    template = _shipped_chat_template("vicuna_v1_llava_hf")
    if tokenizer_is_legacy(tokenizer):
        return template
    line = "{%- set legacy = true -%}"
    if template.count(line) != 1:
        raise RuntimeError(f"vicuna_v1_llava_hf.jinja should have one line {line!r}")
    return template.replace(line, "{%- set legacy = false -%}")


def check_whole_string_template(
    config: ShareGPT4VConfig,
    tokenizer: Any,
    chat_template: str,
    messages: list[dict] | None = None,
    sentencepiece_file: str | Path | None = None,
) -> str | None:
    """None if `chat_template` rendered and tokenized in one piece by `tokenizer` (with BOS, as LlavaProcessor and
    serving engines do) gives the ids ShareGPT4V was trained on for `messages` (default: a probe conversation),
    else a description of the first difference.

    The original ids: the vicuna_v1 prompt tokenized as transformers 4.31 did it, computed independently with
    sentencepiece on `sentencepiece_file` (`original_prompt_ids`); without that file (a llava-hf source ships
    only tokenizer.json), with the plugin processor's split tokenization (docs/reference.md, "Prompts and labels").
    """
    messages = _PROBE_MESSAGES if messages is None else messages
    reference = ShareGPT4VProcessor.from_model_config(
        config,
        tokenizer,
        image_processor=ShareGPT4VImageProcessor(),
        chat_template=_shipped_chat_template("vicuna_v1"),
    )
    prompt = reference.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    if sentencepiece_file is not None:
        prompt = prompt.removeprefix(tokenizer.bos_token or "")
        original = original_prompt_ids(sentencepiece_file, prompt, tokenizer_is_legacy(tokenizer), IMAGE_TOKEN)
        image = [config.image_token_id] * config.image_seq_length
        expected = [i for token in original for i in (image if token == IMAGE_SENTINEL else [token])]
    else:
        expected = reference.tokenize_like_original([prompt])[0]["input_ids"]
    text = tokenizer.apply_chat_template(
        messages, chat_template=chat_template, add_generation_prompt=True, tokenize=False
    )
    got = tokenizer(text.replace(IMAGE_TOKEN, IMAGE_TOKEN * config.image_seq_length))["input_ids"]
    if got == expected:
        return None
    index = next(
        (i for i, (a, b) in enumerate(zip(got, expected, strict=False)) if a != b), min(len(got), len(expected))
    )
    return (
        f"the template's text {text!r} tokenizes to {tokenizer.convert_ids_to_tokens(got[index : index + 4])} at "
        f"position {index} where the original has {tokenizer.convert_ids_to_tokens(expected[index : index + 4])}"
    )


def _save_processor(plan: _Plan, out_dir: Path, to: TargetFormat) -> None:
    """Plugin: ShareGPT4VProcessor (its chat templates: vicuna_v1 default, plain). llava-hf: LlavaProcessor with
    LlavaImageProcessor(do_pad=True) and the vicuna_v1_llava_hf template, which serving engines apply as is.

    The llava-hf template always replaces the source's: LlavaProcessor (and vLLM / SGLang) tokenize the rendered
    prompt in one piece and add BOS, so only a template written for that (no BOS, the dummy-prefix spaces made
    explicit) gives the ids the model was trained on; the plugin's templates assume its split tokenization."""
    kwargs = dict(plan.image_processor_kwargs)
    if to == "llava-hf":
        # Imported here: without torchvision, importing LlavaImageProcessor logs a fallback warning.
        from transformers import LlavaImageProcessor, LlavaProcessor

        tokenizer = _whole_string_tokenizer(plan.tokenizer)
        chat_template = _llava_hf_template(tokenizer)
        if plan.chat_template is not None and _default_template(plan.chat_template) != _shipped_chat_template(
            "vicuna_v1"
        ):
            logger.warning(
                "The source's chat template is not the shipped vicuna_v1 one; the llava-hf export gets the "
                "vicuna_v1_llava_hf template instead (LlavaProcessor tokenizes whole strings: a plugin template "
                "would give other ids). Set processor.chat_template in the export if you need your own."
            )

        problem = check_whole_string_template(
            plan.config, tokenizer, chat_template, sentencepiece_file=plan.sentencepiece_file
        )
        if problem is not None:
            logger.warning(
                "The llava-hf export's chat template does not reproduce the original token ids with this tokenizer "
                "(%s): LlavaProcessor / vLLM / SGLang will feed the model other ids than it was trained on.",
                problem,
            )
        image_processor = LlavaImageProcessor(**kwargs)
        processor = LlavaProcessor(
            image_processor=image_processor,
            tokenizer=tokenizer,
            patch_size=plan.config.vision_config.patch_size,
            vision_feature_select_strategy=plan.config.vision_feature_select_strategy,
            image_token=IMAGE_TOKEN,
            num_additional_image_tokens=1,
            chat_template=chat_template,
        )
    else:
        image_processor = ShareGPT4VImageProcessor(**kwargs)
        processor = ShareGPT4VProcessor.from_model_config(
            plan.config, plan.tokenizer, image_processor=image_processor, chat_template=plan.chat_template
        )
    processor.save_pretrained(out_dir)
    if to == "llava-hf":
        # transformers 5 nests the image processor in processor_config.json; transformers 4.x (which vLLM and
        # SGLang may run on) reads preprocessor_config.json. Write both, with the same settings.
        image_processor.save_pretrained(out_dir)


def convert_checkpoint(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    to: TargetFormat = "sharegpt4v",
    vision_tower: str | os.PathLike | None = None,
    dtype: str | torch.dtype | None = None,
    max_shard_size: int | str = DEFAULT_MAX_SHARD_SIZE,
    overwrite: bool = False,
) -> Path:
    """Convert a released ShareGPT4V/LLaVA-1.5, llava-hf or plugin checkpoint into a plugin or llava-hf one.

    Args:
        src: checkpoint folder or Hub repo id (original, llava-hf or plugin; detected from config.json).
        dst: output folder (must not exist or be empty unless `overwrite`).
        to: "sharegpt4v" (plugin checkpoint, loadable with `trust_remote_code=True`) or "llava-hf"
            (`LlavaForConditionalGeneration`, for vLLM / SGLang / plain transformers).
        vision_tower: for original checkpoints, the vision tower folder or Hub id (default: config's
            `mm_vision_tower`).
        dtype: "float32" / "float16" / "bfloat16"; None or "auto" keeps the dtype of the LLM weights.
        max_shard_size: bytes (or "5GB") per output safetensors shard.
        overwrite: replace a non-empty `dst`.

    Returns:
        The output folder.
    """
    to = to.replace("_", "-") if isinstance(to, str) else to
    if to not in ("sharegpt4v", "llava-hf"):
        raise UsageError(f"to={to!r}: choose 'sharegpt4v' or 'llava-hf'.")
    if isinstance(max_shard_size, str):
        max_shard_size = convert_file_size_to_int(max_shard_size)
    dst = Path(dst).expanduser()
    if dst.exists() and any(dst.iterdir()) and not overwrite:
        raise UsageError(
            f"output folder {dst} exists and is not empty; choose another folder or pass --overwrite to replace it."
        )
    folder = resolve_checkpoint(src, "SRC")
    config = read_config(folder)
    kind = detect_source_format(config, folder)
    if kind == "original":
        plan = _plan_original(folder, config, None if vision_tower is None else str(vision_tower))
    else:
        if vision_tower is not None:
            raise UsageError(f"--vision-tower applies to original checkpoints only; {folder} is a {kind} checkpoint.")
        plan = _plan_llava(folder, config)

    plan.provenance.update(source=str(src), source_format=kind, license=read_license(folder))
    if not Path(str(src)).expanduser().exists():  # a Hub id: that repo is the base model
        plan.provenance["base_model"] = str(src)

    expected = expected_weights(plan.config)
    _check_keys(plan, expected)
    target_dtype = _resolve_dtype(dtype)
    stored_dtype = target_dtype or _first_llm_dtype(plan)
    if target_dtype is None and kind == "original":
        target_dtype = stored_dtype  # one dtype for LLM and vision tower, as the original code runs them

    dst.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{dst.name}.partial-", dir=dst.parent))
    try:
        name_for_target = to_llava_hf_key if to == "llava-hf" else (lambda key: key)
        weight_map, total = _stream_weights(plan, expected, work, target_dtype, int(max_shard_size), name_for_target)
        out_config = llava_config_from_plugin(plan.config) if to == "llava-hf" else plan.config
        if to == "llava-hf":
            # SGLang pads a llava-hf checkpoint's images to square only when config.json says "pad" (vLLM reads
            # do_pad from the processor, saved below from the same setting); "square" is LLaVA's "no padding".
            out_config.image_aspect_ratio = "pad" if plan.image_processor_kwargs.get("do_pad") else "square"
        if to == "sharegpt4v":
            out_config.architectures = ["ShareGPT4VForCausalLM"]
        out_config.dtype = stored_dtype
        out_config.save_pretrained(work)
        if to == "sharegpt4v":
            package = Path(__file__).parent
            for name in REMOTE_CODE_FILES:
                if (package / name).is_file():
                    shutil.copy2(package / name, work / name)
        plan.generation_config.save_pretrained(work)
        _save_processor(plan, work, to)

        provenance = dict(plan.provenance, new_vocab_rows=plan.new_vocab_rows)
        write_model_card(work, to=to, provenance=provenance, config=out_config, name=dst.name)
        if dst.exists():
            shutil.rmtree(dst)
        work.rename(dst)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    shards = len(set(weight_map.values()))
    logger.info(
        "Converted %s (%s) -> %s (%s): %d tensors, %.2f GB in %d shard(s).",
        src,
        kind,
        dst,
        to,
        len(weight_map),
        total / 1e9,
        shards,
    )
    return dst


__all__ = [
    "check_whole_string_template",
    "convert_checkpoint",
    "detect_source_format",
    "list_weight_files",
    "resolve_checkpoint",
    "write_safetensors_streaming",
]
