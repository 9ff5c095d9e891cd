"""Streaming a plan's weights into safetensors shards: renamed, checked against the expected shapes, vocabulary
rows appended, cast, and written one tensor at a time (one source shard open at once)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..errors import UsageError
from .keys import DROP
from .plan import _Plan
from .weights import _tensor_nbytes, open_weight_file, write_safetensors_streaming

# One tensor for write_safetensors_streaming: (name, shape, dtype, a function producing it).
Entry = tuple[str, tuple[int, ...], torch.dtype, Callable[[], torch.Tensor]]
# The matrices that get the new vocabulary rows (mean-initialised: see the package docstring).
VOCAB_KEYS = {"model.language_model.embed_tokens.weight", "lm_head.weight"}


def _pad_vocab_rows(tensor: torch.Tensor, rows: int) -> torch.Tensor:
    """Append `rows` copies of the mean row (computed in float32) to an embedding / lm_head matrix."""
    mean = tensor.mean(dim=0, keepdim=True, dtype=torch.float32).to(tensor.dtype)  # no float32 copy of the matrix
    return torch.cat([tensor, mean.expand(rows, -1)], dim=0)


def _file_entries(
    plan: _Plan,
    expected: dict[str, tuple[int, ...]],
    rename: Callable[[str], str | None],
    path: Path,
    tensors: Any,
    dtype: torch.dtype | None,
    name_for_target: Callable[[str], str],
) -> Iterator[tuple[Entry, int]]:
    """(entry, output bytes) for every weight of one open source file, checked against its expected shape."""
    for key in tensors.keys():
        target = rename(key)
        if target is DROP:
            continue
        tensor = tensors[key]
        shape = tuple(tensor.shape)
        rows = plan.new_vocab_rows if target in VOCAB_KEYS else 0
        out_shape = (shape[0] + rows, *shape[1:]) if rows else shape
        if out_shape != expected[target]:
            raise UsageError(_shape_error(path, key, shape, expected[target], rows, plan.config))
        out_dtype = dtype if (dtype is not None and tensor.is_floating_point()) else tensor.dtype

        def produce(tensors=tensors, key=key, rows=rows, out_dtype=out_dtype) -> torch.Tensor:
            value = tensors[key]
            if rows:
                value = _pad_vocab_rows(value, rows)
            return value.to(out_dtype)

        yield (name_for_target(target), out_shape, out_dtype, produce), _tensor_nbytes(out_shape, out_dtype)


def _stream_weights(
    plan: _Plan,
    expected: dict[str, tuple[int, ...]],
    out_dir: Path,
    dtype: torch.dtype | None,
    max_shard_size: int,
    name_for_target: Callable[[str], str],
) -> tuple[dict[str, str], int]:
    """Write every weight to safetensors shards in `out_dir`; returns (weight_map, total bytes)."""
    shards: list[tuple[str, list[str]]] = []  # (temporary file name, its tensor names)
    total = 0
    progress = tqdm(total=len(expected), desc="Converting weights", unit="tensor")

    def flush(entries: list[Entry]) -> None:
        if not entries:
            return
        name = f"shard-{len(shards):05d}.safetensors.partial"
        write_safetensors_streaming(out_dir / name, entries)
        shards.append((name, [entry[0] for entry in entries]))
        progress.update(len(entries))

    for source in plan.sources:
        for file_name in source.files:
            path = source.folder / file_name
            with open_weight_file(path) as tensors:
                entries: list[Entry] = []
                size = 0
                for entry, nbytes in _file_entries(
                    plan, expected, source.rename, path, tensors, dtype, name_for_target
                ):
                    if entries and size + nbytes > max_shard_size:
                        flush(entries)
                        entries, size = [], 0
                    entries.append(entry)
                    size += nbytes
                    total += nbytes
                flush(entries)
    progress.close()
    return _name_shards(out_dir, shards, total), total


def _name_shards(out_dir: Path, shards: list[tuple[str, list[str]]], total: int) -> dict[str, str]:
    """Give the written shards their final names: model.safetensors for one shard, model-0000i-of-0000n.safetensors
    + index otherwise. Returns the weight map."""
    count = len(shards)
    weight_map: dict[str, str] = {}
    for i, (name, keys) in enumerate(shards):
        final = "model.safetensors" if count == 1 else f"model-{i + 1:05d}-of-{count:05d}.safetensors"
        (out_dir / name).rename(out_dir / final)
        weight_map.update(dict.fromkeys(keys, final))
    if count > 1:
        index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
        (out_dir / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    return weight_map


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


def _first_llm_dtype(plan: _Plan) -> torch.dtype:
    """The dtype the LLM weights are stored in (the whole converted model uses it unless --dtype says otherwise)."""
    source = plan.sources[0]
    for file_name, keys in source.files.items():
        for key in keys:
            if key.endswith("embed_tokens.weight"):
                with open_weight_file(source.folder / file_name) as tensors:
                    return tensors[key].dtype
    return torch.float32
