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

The package, one job a module (each imports only the ones above it):

- `sources.py`: a local folder or Hub id, its config.json, which layout it is;
- `weights.py`: reading weight files shard by shard, writing safetensors one tensor at a time;
- `keys.py`: the key maps between the layouts;
- `configs.py`: config translation and the checks of an original config;
- `tokenizer.py`: added tokens, the shipped chat templates, the llava-hf whole-string template and its check;
- `plan.py`: what a conversion of one source reads and writes (config, weight files, tokenizer, processor);
- `stream.py`: the plan's weights -> safetensors shards;
- `llava_hf.py`: the llava-hf export's config and processor;
- `convert.py`: `convert_checkpoint`;
- `cli.py`: the `sharegpt4v convert` options (imports nothing heavy).

The names are imported lazily from their modules (`from transformers_sharegpt4v.conversion import X`), so that
importing `cli.py` does not load torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_attributes, lazy_dir, names_by_module

if TYPE_CHECKING:
    from .convert import convert_checkpoint
    from .sources import detect_source_format, resolve_checkpoint
    from .tokenizer import check_whole_string_template
    from .weights import list_weight_files, write_safetensors_streaming

_MODULES: dict[str, tuple[str, ...]] = {
    "sources": ("SourceFormat", "resolve_checkpoint", "read_config", "detect_source_format"),
    "weights": (
        "list_weight_files",
        "open_weight_file",
        "write_safetensors_streaming",
        "_SAFETENSORS_DTYPE",
        "_SafetensorsShard",
        "_tensor_nbytes",
    ),
    "keys": (
        "DROP",
        "PROJECTOR_LAYERS",
        "CLIP_VISION_MODULES",
        "projector_key",
        "rename_original_llm_key",
        "rename_vision_tower_key",
        "rename_llava_key",
        "to_llava_hf_key",
    ),
    "configs": (
        "VOCAB_MULTIPLE",
        "SUPPORTED_PROJECTOR",
        "SELECT_FEATURE",
        "ORIGINAL_NON_TEXT_FIELDS",
        "padded_vocab_size",
        "vision_config_from_folder",
        "text_config_from_original",
        "check_original_config",
        "plugin_config_from_llava",
        "llava_config_from_plugin",
        "expected_weights",
    ),
    "tokenizer": (
        "check_whole_string_template",
        "_shipped_chat_template",
        "_default_template",
        "_TURN_START",
        "_PROBE_MESSAGES",
        "_whole_string_tokenizer",
        "_llava_hf_template",
    ),
    "plan": (
        "_Source",
        "_Plan",
        "_read_preprocessor",
        "_generation_config",
        "_plan_original",
        "_plan_llava",
        "_check_keys",
    ),
    "stream": ("_pad_vocab_rows", "_stream_weights", "_shape_error", "_first_llm_dtype"),
    "llava_hf": ("llava_hf_config", "save_llava_hf_processor"),
    "convert": (
        "TargetFormat",
        "REMOTE_CODE_FILES",
        "DEFAULT_MAX_SHARD_SIZE",
        "convert_checkpoint",
        "_save_processor",
    ),
}
_NAMES = names_by_module({f".{module}": names for module, names in _MODULES.items()})
__getattr__ = lazy_attributes(__name__, _NAMES)
__dir__ = lazy_dir(__name__, _NAMES)


__all__ = [
    "check_whole_string_template",
    "convert_checkpoint",
    "detect_source_format",
    "list_weight_files",
    "resolve_checkpoint",
    "write_safetensors_streaming",
]
