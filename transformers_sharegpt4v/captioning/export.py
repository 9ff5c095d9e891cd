"""`export_to_json`: a caption folder as a ShareGPT4V-PT JSON corpus, ready for `sharegpt4v data build`.

Paths are made relative to one image root (the one the summary line names); a dataset source's images are
written beside the JSON, bytes unchanged, so that the corpus has files to point at.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from ..files import atomic_write, relative_inside
from ..tokenization_sharegpt4v import IMAGE_TOKEN
from .loader import IMAGE_EXTENSIONS, list_source
from .writer import RUN_FILE, list_shards

__all__ = ["JSONExport", "export_to_json"]


class JSONExport(NamedTuple):
    """What `export_to_json` wrote: `records` kept, `left_out` (degenerate or empty captions), and the
    `image_root` the records' `image` paths are relative to (pass it to `sharegpt4v data build --image-root`;
    for a dataset source, the folder the images were written to)."""

    records: int
    left_out: int
    image_root: str | None


def _recorded_root(config: dict[str, Any]) -> str | None:
    """The source root of a caption folder, as run.json records it."""
    return config.get("image_root")


def _export_paths(keys: list[str], source: str | None, image_root: str | None) -> tuple[list[str], str | None]:
    """(each key as a path relative to the export's image root, that root). The root is `image_root` if
    given, else the source root when every image lies inside it, else the deepest folder holding them all."""
    if source is None and any(not os.path.isabs(key) for key in keys):
        if image_root is None:
            return keys, None  # a dataset source: the keys are row ids
        raise ValueError("The captions come from a dataset source (keys are row ids, not paths): no image root.")
    absolute = [key if os.path.isabs(key) else os.path.normpath(os.path.join(source, key)) for key in keys]
    if image_root is not None:
        root = os.path.abspath(image_root)
    elif source is not None and all(relative_inside(path, source) for path in absolute):
        root = source
    else:
        root = os.path.commonpath([os.path.dirname(path) for path in absolute]) if absolute else source
    paths = []
    for key, path in zip(keys, absolute, strict=True):
        relative = relative_inside(path, root)
        if relative is None:
            raise ValueError(f"Image {key!r} is not inside the image root {root!r}; pass another image root.")
        paths.append(relative)
    return paths, root


_FORMAT_EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp", "TIFF": ".tif"}


def _image_file_name(key: str, original_path: str | None, data: Callable[[], bytes]) -> str:
    """A file name for a dataset row's image: the row id with anything but letters, digits, `.`, `-` and `_`
    replaced, plus a short hash of the id whenever that changed it or it is long (so two ids never share a
    file), and the image's extension (the id's, else the original file's, else the one of the format of the
    bytes, which `data()` reads only then)."""
    import hashlib
    import re

    name = re.sub(r"[^\w.-]", "_", key).lstrip(".")
    if name != key or len(name) > 100:
        stem, suffix = os.path.splitext(name)
        suffix = suffix if suffix.lower() in IMAGE_EXTENSIONS else ""
        name = f"{stem[:100]}-{hashlib.sha1(key.encode('utf-8')).hexdigest()[:10]}{suffix}"
    if Path(name).suffix.lower() in IMAGE_EXTENSIONS:
        return name
    suffix = Path(original_path or "").suffix.lower()
    if suffix not in IMAGE_EXTENSIONS:
        import io

        import PIL.Image

        with PIL.Image.open(io.BytesIO(data())) as image:
            suffix = _FORMAT_EXTENSIONS.get(image.format or "", ".img")
    return name + suffix


def _write_dataset_images(config: dict[str, Any], keys: list[str], folder: Path) -> list[str]:
    """Write the images of the captioned rows of a dataset source into `folder`, bytes unchanged (no
    re-encoding), and return their file names (the records' `image` paths relative to `folder`). Names are
    checked for clashes (also ignoring case, as some file systems do) before anything is written; a file
    already there is rewritten unless it holds the same bytes."""
    options = config.get("dataset") or {}
    source = list_source(
        config["images"],
        split=options.get("split", "train"),
        image_column=options.get("image_column"),
        id_column=options.get("id_column"),
    )
    row_of = {key: int(locator) for key, locator in zip(source.keys, source.locators, strict=True)}
    missing = [key for key in keys if key not in row_of]
    if missing:
        raise ValueError(
            f"{len(missing)} captioned row(s) are no longer in the dataset {config['images']!r} "
            f"(first: {missing[0]!r}): it changed since captioning."
        )

    def raw_image(key: str) -> dict[str, Any]:
        return source.dataset[row_of[key]][source.image_column]

    def image_bytes(raw: dict[str, Any]) -> bytes:
        return raw.get("bytes") or Path(raw["path"]).read_bytes()

    names = []
    for key in keys:  # names first: a clash must stop the export before it writes
        raw = raw_image(key)
        names.append(_image_file_name(key, raw.get("path"), lambda raw=raw: image_bytes(raw)))
    by_folded: dict[str, str] = {}
    for key, name in zip(keys, names, strict=True):
        other = by_folded.setdefault(name.casefold(), key)
        if other != key:
            raise ValueError(f"Dataset rows {other!r} and {key!r} map to the same image file name {name!r}.")
    folder.mkdir(parents=True, exist_ok=True)
    for key, name in tqdm(list(zip(keys, names, strict=True)), desc="export images", unit="img",
                          disable=len(keys) < 1000):  # fmt: skip
        data = image_bytes(raw_image(key))
        target = folder / name
        if target.is_file() and target.stat().st_size == len(data) and target.read_bytes() == data:
            continue
        with atomic_write(target, "wb", fsync=False) as handle:  # thousands of files, each can be written again
            handle.write(data)
    return names


def export_to_json(
    output: str | os.PathLike,
    path: str | os.PathLike,
    include_degenerate: bool = False,
    image_root: str | os.PathLike | None = None,
) -> JSONExport:
    """Write OUT's captions as a ShareGPT4V-PT JSON list to `path` (atomically), ready for
    `sharegpt4v data build --json PATH --image-root ROOT` with the returned `image_root` as ROOT.

    Records `{"id", "image", "conversations": [{"from": "human", "value": "<image>\\n" + prompt},
    {"from": "gpt", "value": caption}]}` sorted by image. `image` is the image's path relative to the image
    root: `image_root` if given, else the source's root (the `--images` folder, or the folder of the text file
    of paths) when every image lies inside it, else the deepest folder that holds them all. `id` is that
    path, extension included, so `cat.jpg` and `cat.png` stay two records. A dataset source's images are
    written, bytes unchanged, to the folder `<path stem>_images` beside `path`, named by row id (the record's
    `id` is the row id), which is then the image root. Degenerate captions are left out unless
    `include_degenerate`; empty captions always (a corpus record needs an answer).
    """
    from ..corpora.export import write_json_list

    output, path = Path(output), Path(path)
    run_file = output / RUN_FILE
    if not run_file.is_file():
        raise ValueError(f"{output} is not a caption folder: {run_file} is missing.")
    config = json.loads(run_file.read_text(encoding="utf-8"))
    shards = list_shards(output)
    if not shards:
        raise ValueError(f"{output} has no committed caption shards in {output / 'data'}.")
    table = pa.concat_tables(pq.read_table(shard, columns=["image", "caption", "degenerate"]) for shard in shards)
    total = table.num_rows
    keep = pc.greater(pc.utf8_length(pc.utf8_trim_whitespace(table.column("caption"))), 0)
    if not include_degenerate:
        keep = pc.and_(keep, pc.invert(table.column("degenerate")))
    table = table.filter(keep)
    keys = table.column("image").to_pylist()
    if _recorded_root(config) is None and image_root is None and "dataset" in config:
        root = path.with_name(path.stem + "_images")
        images = _write_dataset_images(config, keys, root)
        ids = keys  # the dataset's row ids
        root = str(root.resolve())
    else:
        images, root = _export_paths(keys, _recorded_root(config), image_root)
        ids = images
    captions = table.column("caption").to_pylist()
    if len(set(images)) != len(images):
        raise ValueError(f"{output}: two captioned images map to the same path under the image root {root!r}.")
    human = IMAGE_TOKEN + "\n" + config["prompt"]
    records = (
        {
            "id": ids[index],
            "image": image,
            "conversations": [{"from": "human", "value": human}, {"from": "gpt", "value": captions[index]}],
        }
        for index, image in sorted(enumerate(images), key=lambda item: item[1])
    )
    count = write_json_list(path, records)
    return JSONExport(count, total - count, root)
