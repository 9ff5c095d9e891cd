"""Where the images come from, and the DataLoader that decodes and preprocesses them in worker processes.

A source is listed once, up front, as a deterministic list of `(key, locator)` pairs: the key is what the
output's `image` column holds (the path relative to SRC, or the dataset row id) and the locator is how a
worker finds the pixels (a file path, or a row index of the dataset). Everything downstream (the share of
each process, resume, export) works on keys.

Sources:
- an image folder, searched recursively (hidden files and folders skipped, symlinks followed);
- a text file with one image path per line (relative paths are relative to the file's folder; an absolute
  path inside that folder gets the relative key, so the output stays movable and exports as a training
  corpus whose image root is the list file's folder);
- a dataset with an image column: a folder written by `Dataset.save_to_disk`, a folder of data files that
  `datasets.load_dataset` reads (parquet, arrow, ...), or a Hub id.

Workers return uint8 pixels (a quarter of the bytes of float32 through the worker pipe) and the engine
normalises them on the model's device with the image processor's own lookup table, which gives exactly the
values `ShareGPT4VImageProcessor` computes. A file that cannot be read becomes an error entry of its batch,
never an exception that would stop the run.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import torch
from torch.utils.data import DataLoader, Dataset

# The processor module's strict decode (one copy of it in the package).
from ..corpora.layout import is_save_to_disk_folder
from ..errors import UsageError
from ..files import relative_inside
from ..image_processing_sharegpt4v import load_image_bytes, load_image_file

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageSource",
    "CaptionBatch",
    "decode_image",
    "list_source",
    "make_loader",
    "source_root",
]

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
_DATA_FILE_EXTENSIONS = (".parquet", ".arrow")


@dataclass
class ImageSource:
    """A listed source: `keys[i]` is written to the output, `locators[i]` is what a worker opens."""

    kind: str  # "folder", "list" or "dataset"
    description: str  # what the user passed, recorded in run.json
    keys: list[str]
    locators: list[Any]  # file paths (folder/list) or row indices (dataset)
    dataset: Any = None  # the datasets.Dataset for kind == "dataset"
    image_column: str | None = None
    duplicates: int = 0  # repeated keys dropped while listing

    def __len__(self) -> int:
        return len(self.keys)


def _list_folder(root: Path, exclude: Path | None) -> tuple[list[str], list[str]]:
    keys = []
    for directory, subdirs, files in os.walk(root, followlinks=True):
        subdirs[:] = sorted(
            d
            for d in subdirs
            if not d.startswith(".") and (exclude is None or Path(directory, d).resolve() != exclude)
        )
        for name in files:
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                keys.append(Path(directory, name).relative_to(root).as_posix())
    keys.sort()
    return keys, [str(root / key) for key in keys]


def _key_under(path: str, folder: Path) -> str | None:
    """`path` relative to `folder` (posix), if it lies inside it (as written, or with symlinks resolved)."""
    return relative_inside(path, folder) or relative_inside(os.path.realpath(path), folder.resolve())


def _list_text_file(path: Path) -> tuple[list[str], list[str], int]:
    keys, seen, duplicates = [], set(), 0
    folder = path.parent
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            entry = line.strip()
            if not entry or entry.startswith("#"):
                continue
            if os.path.isabs(entry):
                key = _key_under(entry, folder) or os.path.normpath(entry)
            else:
                key = posixpath.normpath(entry.replace(os.sep, "/"))
            if key in seen:
                duplicates += 1
                continue
            seen.add(key)
            keys.append(key)
    return keys, [str(folder / key) for key in keys], duplicates


def source_root(source: str | os.PathLike, exclude: str | os.PathLike | None = None) -> str | None:
    """The absolute folder that the keys of a file source are relative to (the image folder, or the folder
    of a text file of paths); None for a dataset source, whose keys are row ids."""
    path = Path(source)
    if path.is_file():
        return str(path.parent.resolve())
    excluded = Path(exclude).resolve() if exclude is not None else None
    if path.is_dir() and not _is_dataset_folder(path, excluded):
        return str(path.resolve())
    return None


def _is_dataset_folder(path: Path, exclude: Path | None = None) -> bool:
    """A `save_to_disk` folder, or a folder whose data files are parquet/arrow (not an image folder).
    Files under `exclude` (the caption output, if it lies inside the folder) do not count."""
    if is_save_to_disk_folder(path):
        return True
    for pattern in ("*", "*/*"):
        for file in path.glob(pattern):
            if file.suffix in _DATA_FILE_EXTENSIONS and (exclude is None or exclude not in file.resolve().parents):
                return True
    return False


def _load_dataset(spec: str, split: str) -> Any:
    import datasets

    path = Path(spec)
    if is_save_to_disk_folder(path):
        loaded = datasets.load_from_disk(str(path))
    elif path.is_dir():
        loaded = datasets.load_dataset(str(path.resolve()), split=split)
    else:
        loaded = _load_hub_dataset(spec, split)
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise UsageError(
                f"Dataset {spec!r} has no split {split!r}; its splits are {sorted(loaded)}. Pass --split."
            )
        loaded = loaded[split]
    return loaded


def _load_hub_dataset(spec: str, split: str) -> Any:
    """`load_dataset(spec)` for a Hub id; an id that cannot be found or fetched is bad input (UsageError)."""
    import datasets
    from datasets.exceptions import DatasetNotFoundError

    from ..hub import explain_hub_error

    try:
        return datasets.load_dataset(spec, split=split)
    except Exception as error:
        reason = explain_hub_error(error)
        if reason is None and not isinstance(error, DatasetNotFoundError):
            raise
        raise UsageError(
            f"Image source {spec!r} is not a local folder or file, and it could not be loaded as a Hub dataset: "
            f"{reason or str(error).splitlines()[0]}"
        ) from error


def _dataset_columns(
    dataset: Any, spec: str, image_column: str | None, id_column: str | None
) -> tuple[str, str | None]:
    import datasets

    features = dataset.features
    if image_column is None:
        image_columns = [name for name, feature in features.items() if isinstance(feature, datasets.Image)]
        image_column = image_columns[0] if image_columns else ("image" if "image" in features else None)
    if image_column is None or image_column not in features:
        raise UsageError(
            f"Dataset {spec!r} has no image column{f' {image_column!r}' if image_column else ''}; its columns are "
            f"{sorted(features)}. Pass --image-column NAME."
        )
    if id_column is None:
        id_column = "id" if "id" in features else None
    elif id_column not in features:
        raise UsageError(f"Dataset {spec!r} has no column {id_column!r} for --id-column; columns: {sorted(features)}.")
    return image_column, id_column


def list_source(
    source: str | os.PathLike,
    *,
    split: str = "train",
    image_column: str | None = None,
    id_column: str | None = None,
    exclude: str | os.PathLike | None = None,
) -> ImageSource:
    """List the images of `source` (folder, text file of paths, dataset folder or Hub id) in a fixed order.

    Dataset rows are keyed by `id_column` (default: the "id" column if there is one, else the row index).
    `exclude` is a folder not to descend into (the output folder when it lies inside the image folder).
    """
    spec = os.fspath(source)
    path = Path(spec)
    exclude = Path(exclude).resolve() if exclude is not None else None
    if path.is_file():
        keys, locators, duplicates = _list_text_file(path)
        return ImageSource("list", spec, keys, locators, duplicates=duplicates)
    if path.is_dir() and not _is_dataset_folder(path, exclude):
        keys, locators = _list_folder(path, exclude)
        return ImageSource("folder", spec, keys, locators)
    if not path.exists() and (spec.startswith((".", "/")) or spec.count("/") > 1):
        raise UsageError(
            f"Image source {spec!r} does not exist. Pass an image folder, a text file of image paths, a dataset "
            "folder or a Hub dataset id."
        )
    import datasets

    dataset = _load_dataset(spec, split)
    image_column, id_column = _dataset_columns(dataset, spec, image_column, id_column)
    if id_column is None:
        ids = [str(index) for index in range(len(dataset))]
    else:
        ids = [str(value) for value in dataset.select_columns([id_column])[id_column]]
    dataset = dataset.select_columns([image_column]).cast_column(image_column, datasets.Image(decode=False))
    keys, locators, seen, duplicates = [], [], set(), 0
    for index, key in enumerate(ids):
        if key in seen:
            duplicates += 1
            continue
        seen.add(key)
        keys.append(key)
        locators.append(index)
    return ImageSource(
        "dataset", spec, keys, locators, dataset=dataset, image_column=image_column, duplicates=duplicates
    )


def decode_image(data: str | bytes | dict | None, key: str = "?") -> PIL.Image.Image:
    """Fully decode an image from a path, bytes, or a datasets `{"bytes", "path"}` dict, strictly, with the
    image processor module's own strict decode (`load_image_file` for paths): a truncated file raises even
    if `PIL.ImageFile.LOAD_TRUNCATED_IMAGES` was switched on by someone else. `key` names the image in errors."""
    if isinstance(data, dict):
        if data.get("bytes") is not None:
            data = data["bytes"]
        elif data.get("path"):
            data = data["path"]
        else:
            data = None
    if data is None:
        raise ValueError(f"Dataset row {key!r} has neither image bytes nor an image path (its image is empty).")
    if isinstance(data, (str, os.PathLike)):
        return load_image_file(data)
    return load_image_bytes(data, key)


@dataclass
class CaptionBatch:
    """What a worker hands over: the images that decoded, and those that did not."""

    keys: list[str]  # images in `pixels`, in order
    pixels: torch.Tensor  # (n, 3, H, W) uint8 on the fast path, float32 otherwise
    failed_keys: list[str]
    errors: list[str]  # "ExceptionType: message", aligned with failed_keys
    normalized: bool  # True when `pixels` is already the processor's float output

    def pin_memory(self) -> CaptionBatch:
        """Called by the DataLoader's pin-memory thread on CUDA machines."""
        self.pixels = self.pixels.pin_memory()
        return self


class _ImageDataset(Dataset):
    """Decodes and preprocesses one image per `__getitem__` (runs in DataLoader workers)."""

    def __init__(self, source: ImageSource, positions: Sequence[int], image_processor: Any) -> None:
        self.source = source
        self.positions = list(positions)
        self.image_processor = image_processor
        # ShareGPT4V's processor hands over uint8 pixels (the engine normalizes them on the device)
        self.fast = _is_sharegpt4v_processor(image_processor)

    def __len__(self) -> int:
        return len(self.positions)

    def _raw(self, position: int) -> Any:
        locator = self.source.locators[position]
        if self.source.kind == "dataset":
            return self.source.dataset[int(locator)][self.source.image_column]
        return locator

    def __getitem__(self, index: int) -> tuple[str, np.ndarray | None, str | None]:
        position = self.positions[index]
        key = self.source.keys[position]
        try:
            image = decode_image(self._raw(position), key)
            if self.fast:
                return key, self.image_processor.uint8_pixels(image), None
            pixels = self.image_processor(images=image.convert("RGB"), return_tensors="np")["pixel_values"][0]
            return key, np.asarray(pixels, dtype=np.float32), None
        except Exception as error:  # noqa: BLE001 - any unreadable image is recorded, never fatal
            message = str(error).splitlines()[0] if str(error) else ""
            return key, None, f"{type(error).__name__}: {message}"


def _is_sharegpt4v_processor(image_processor: Any) -> bool:
    return all(hasattr(image_processor, name) for name in ("uint8_pixels", "uint8_normalization_table"))


def _collate(items: list[tuple[str, np.ndarray | None, str | None]]) -> CaptionBatch:
    good = [(key, pixels) for key, pixels, error in items if error is None]
    bad = [(key, error) for key, _, error in items if error is not None]
    if good:
        pixels = torch.from_numpy(np.stack([p for _, p in good]))
    else:
        pixels = torch.empty(0, dtype=torch.uint8)
    return CaptionBatch(
        keys=[k for k, _ in good],
        pixels=pixels,
        failed_keys=[k for k, _ in bad],
        errors=[e for _, e in bad],
        normalized=bool(good) and pixels.dtype != torch.uint8,
    )


def make_loader(
    source: ImageSource, positions: Sequence[int], image_processor: Any, batch_size: int, num_workers: int
) -> DataLoader:
    """DataLoader over `source` rows `positions` (in that order), yielding `CaptionBatch`es; decoding and
    preprocessing run in `num_workers` processes (0: in this process) ahead of generation."""
    return DataLoader(
        _ImageDataset(source, positions, image_processor),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=_collate,
        pin_memory=torch.cuda.is_available(),
        prefetch_factor=4 if num_workers > 0 else None,
        persistent_workers=False,
    )
