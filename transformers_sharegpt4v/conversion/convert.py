"""`convert_checkpoint`: read a source, plan, check, stream the weights, write config, code, processor and model
card into a temporary folder, then move it into place."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Literal

import torch
from transformers.utils.hub import convert_file_size_to_int

from .. import REMOTE_CODE_MODULES
from ..dtypes import parse_dtype
from ..errors import UsageError
from ..hub import read_license, write_model_card
from ..image_processing_sharegpt4v import ShareGPT4VImageProcessor
from ..processing_sharegpt4v import ShareGPT4VProcessor
from .configs import expected_weights
from .keys import to_llava_hf_key
from .llava_hf import llava_hf_config, save_llava_hf_processor
from .plan import _check_keys, _Plan, _plan_llava, _plan_original
from .sources import detect_source_format, read_config, resolve_checkpoint
from .stream import _first_llm_dtype, _stream_weights

logger = logging.getLogger(__name__)

TargetFormat = Literal["sharegpt4v", "llava-hf"]

# The remote-code unit (README.md, "Architecture"): copied into every plugin checkpoint.
REMOTE_CODE_FILES = tuple(f"{module}.py" for module in REMOTE_CODE_MODULES)
DEFAULT_MAX_SHARD_SIZE = 5 * 1024**3


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
    max_shard_size, dst = _check_arguments(to, max_shard_size, dst, overwrite)
    folder = resolve_checkpoint(src, "SRC")
    config = read_config(folder)
    kind = detect_source_format(config, folder)
    plan = _make_plan(folder, config, kind, vision_tower)
    plan.provenance.update(source=str(src), source_format=kind, license=read_license(folder))
    if not Path(str(src)).expanduser().exists():  # a Hub id: that repo is the base model
        plan.provenance["base_model"] = str(src)

    expected = expected_weights(plan.config)
    _check_keys(plan, expected)
    target_dtype = parse_dtype(dtype)
    stored_dtype = target_dtype or _first_llm_dtype(plan)
    if target_dtype is None and kind == "original":
        target_dtype = stored_dtype  # one dtype for LLM and vision tower, as the original code runs them

    weight_map, total = _write_checkpoint(plan, expected, dst, to, target_dtype, stored_dtype, int(max_shard_size))
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


def _check_arguments(to: str, max_shard_size: int | str, dst: str | os.PathLike, overwrite: bool) -> tuple[int, Path]:
    """Refuse a bad `to` and a non-empty `dst` (unless `overwrite`) before reading anything; (bytes, dst)."""
    if to not in ("sharegpt4v", "llava-hf"):
        raise UsageError(f"to={to!r}: choose 'sharegpt4v' or 'llava-hf'.")
    if isinstance(max_shard_size, str):
        max_shard_size = convert_file_size_to_int(max_shard_size)
    dst = Path(dst).expanduser()
    if dst.exists() and any(dst.iterdir()) and not overwrite:
        raise UsageError(
            f"output folder {dst} exists and is not empty; choose another folder or pass --overwrite to replace it."
        )
    return max_shard_size, dst


def _make_plan(folder: Path, config: dict[str, Any], kind: str, vision_tower: str | os.PathLike | None) -> _Plan:
    if kind == "original":
        return _plan_original(folder, config, None if vision_tower is None else str(vision_tower))
    if vision_tower is not None:
        raise UsageError(f"--vision-tower applies to original checkpoints only; {folder} is a {kind} checkpoint.")
    return _plan_llava(folder, config)


def _write_checkpoint(
    plan: _Plan,
    expected: dict[str, tuple[int, ...]],
    dst: Path,
    to: TargetFormat,
    target_dtype: torch.dtype | None,
    stored_dtype: torch.dtype,
    max_shard_size: int,
) -> tuple[dict[str, str], int]:
    """Write the whole checkpoint into a temporary folder beside `dst`, then move it into place (nothing is left
    behind on failure); returns (weight_map, total bytes)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{dst.name}.partial-", dir=dst.parent))
    try:
        name_for_target = to_llava_hf_key if to == "llava-hf" else (lambda key: key)
        weight_map, total = _stream_weights(plan, expected, work, target_dtype, max_shard_size, name_for_target)
        out_config = llava_hf_config(plan) if to == "llava-hf" else plan.config
        if to == "sharegpt4v":
            out_config.architectures = ["ShareGPT4VForCausalLM"]
        out_config.dtype = stored_dtype
        out_config.save_pretrained(work)
        if to == "sharegpt4v":
            _copy_remote_code(work)
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
    return weight_map, total


def _copy_remote_code(out_dir: Path) -> None:
    """The remote-code files, so that `trust_remote_code=True` loads the checkpoint without the plugin."""
    package = Path(__file__).parent.parent
    for name in REMOTE_CODE_FILES:
        if (package / name).is_file():
            shutil.copy2(package / name, out_dir / name)


def _save_processor(plan: _Plan, out_dir: Path, to: TargetFormat) -> None:
    """Plugin: ShareGPT4VProcessor (its chat templates: vicuna_v1 default, plain). llava-hf: LlavaProcessor with
    the vicuna_v1_llava_hf template (`llava_hf.save_llava_hf_processor`)."""
    if to == "llava-hf":
        save_llava_hf_processor(plan, out_dir)
        return
    image_processor = ShareGPT4VImageProcessor(**dict(plan.image_processor_kwargs))
    processor = ShareGPT4VProcessor.from_model_config(
        plan.config, plan.tokenizer, image_processor=image_processor, chat_template=plan.chat_template
    )
    processor.save_pretrained(out_dir)
