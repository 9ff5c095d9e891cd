"""Weight files: reading released / llava-hf / plugin shards one at a time (safetensors memory mapped, pickles
through `torch.load(weights_only=True)`), and writing safetensors shards one tensor at a time."""

from __future__ import annotations

import json
import math
import struct
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from ..errors import UsageError

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
