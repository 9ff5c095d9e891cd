"""Write a built corpus (local folder or Hub dataset) back to the LLaVA/ShareGPT4V JSON list, streaming."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..errors import UsageError
from ..files import atomic_write, relative_inside
from .layout import frozen_gc, read_report
from .records import messages_to_conversations

__all__ = ["export_corpus", "iter_corpus_rows", "load_corpus", "record_from_row", "write_json_list"]


def load_corpus(dataset: str | os.PathLike, *, streaming: bool = True, decode_images: bool = True, columns=None):
    """`load_dataset(dataset, split="train")` for a folder built by `build_corpus` or a Hub repo id;
    `decode_images=False` gives `{"path", "bytes"}` dicts instead of PIL images."""
    from datasets import Image, List, load_dataset

    kwargs = {"columns": list(columns)} if columns is not None else {}
    ds = load_dataset(str(dataset), split="train", streaming=streaming, **kwargs)
    if not decode_images and (columns is None or "images" in columns):
        ds = ds.cast_column("images", List(Image(decode=False)))
    return ds


def iter_corpus_rows(dataset: str | os.PathLike, **kwargs: Any) -> Iterator[dict[str, Any]]:
    """The rows of a corpus, streamed (images as `{"path", "bytes"}` unless `decode_images=True`)."""
    kwargs.setdefault("decode_images", False)
    yield from load_corpus(dataset, streaming=True, **kwargs)


def _relative_path(path: str, image_root: str | None, record_id: str) -> str:
    if not os.path.isabs(path):
        return path  # embedded images keep their path under the data root
    if image_root is None:
        raise UsageError(
            f"Record {record_id!r} references the absolute image path {path!r} and no image root is known: "
            "pass --image-root with the folder the corpus was built from."
        )
    relative = relative_inside(path, image_root)
    if relative is None:
        raise UsageError(f"Record {record_id!r}: image {path!r} is not under the image root {image_root!r}.")
    return relative


def record_from_row(row: dict[str, Any], image_root: str | None = None) -> dict[str, Any]:
    """A dataset row -> the LLaVA JSON record it came from (`image` a string when there is one image)."""
    record: dict[str, Any] = {"id": row["id"]}
    paths = [_relative_path(image["path"], image_root, row["id"]) for image in row["images"]]
    if len(paths) == 1:
        record["image"] = paths[0]
    elif paths:
        record["image"] = paths
    try:
        record["conversations"] = messages_to_conversations(row["messages"])
    except ValueError as error:
        raise UsageError(f"Record {row['id']!r}: {error}") from error
    return record


def write_json_list(path: str | os.PathLike, records: Iterable[dict[str, Any]], *, indent: int | None = None) -> int:
    """Write `records` as one JSON list (one record per line, or indented), streaming, atomically: into a
    hidden temporary file beside `path`, flushed and fsynced, then `os.replace`d over `path`. A failure on the
    way (or a kill) leaves any previous `path` untouched and no temporary file behind (except after a kill).
    Returns the number of records."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with atomic_write(path) as handle:
        handle.write("[")
        for record in records:
            text = json.dumps(record, ensure_ascii=False, indent=indent)
            if indent is not None:
                text = text.replace("\n", "\n" + " " * indent)
            handle.write(("," if count else "") + ("\n" + " " * indent if indent is not None else "\n") + text)
            count += 1
        handle.write("\n]\n")
    return count


def export_corpus(
    dataset: str | os.PathLike,
    json_path: str | os.PathLike,
    *,
    image_root: str | os.PathLike | None = None,
    indent: int | None = None,
    progress: bool = True,
) -> int:
    """Write the rows of `dataset` (a folder from `build_corpus` or a Hub repo id) to `json_path` as one
    LLaVA JSON list; returns the number of records. Image paths come back relative to the data root (for
    folders built without --embed-images, the root recorded in report.json unless `image_root` is given)."""
    if image_root is None and Path(dataset).is_dir():
        report = read_report(dataset)
        image_root = report["image_root"] if report else None
    root = os.path.abspath(image_root) if image_root is not None else None
    rows = tqdm(iter_corpus_rows(dataset), desc="export corpus", unit=" records", disable=not progress)
    with frozen_gc():
        return write_json_list(json_path, (record_from_row(row, root) for row in rows), indent=indent)
