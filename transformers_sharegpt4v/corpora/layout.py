"""The layout of a built corpus folder, shared by build, card, export, hub and stats (a leaf module: it
imports no other module of corpora/, so they all import it at module level without cycles).

    OUT/data/train-XXXXX-of-YYYYY.parquet   the rows (`corpus_features()`), written by `ShardWriter`
    OUT/README.md                           the dataset card (card.py)
    OUT/report.json                         the build's numbers, plain JSON (`read_report`)
    OUT/skipped.jsonl                       one line per skipped record: {reason, id, file, index, detail}
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

__all__ = [
    "DATA_DIR",
    "REPORT_FILE",
    "SHARD_PATTERN",
    "SKIPPED_FILE",
    "ShardWriter",
    "corpus_features",
    "frozen_gc",
    "is_save_to_disk_folder",
    "open_parquet_writer",
    "read_report",
]

DATA_DIR = "data"
REPORT_FILE = "report.json"
SKIPPED_FILE = "skipped.jsonl"
SHARD_PATTERN = "train-{index:05d}-of-{total:05d}.parquet"


def corpus_features():
    """The `datasets.Features` of a corpus: id, images (list of Image), messages (TRL format), source."""
    from datasets import Features, Image, List, Value

    return Features(
        {
            "id": Value("string"),
            "images": List(Image()),
            "messages": List(
                {"role": Value("string"), "content": List({"type": Value("string"), "text": Value("string")})}
            ),
            "source": Value("string"),
        }
    )


def is_save_to_disk_folder(path: str | os.PathLike) -> bool:
    """Whether `path` is a folder written by `Dataset.save_to_disk` or `DatasetDict.save_to_disk`: the files
    `datasets.load_from_disk` itself looks for (state.json, dataset_dict.json)."""
    path = Path(path)
    return path.is_dir() and ((path / "state.json").is_file() or (path / "dataset_dict.json").is_file())


def read_report(output_dir: str | os.PathLike) -> dict[str, Any] | None:
    """OUT/report.json (the skipped records are in OUT/skipped.jsonl), or None when there is none."""
    path = Path(output_dir) / REPORT_FILE
    if not path.is_file():
        return None
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


@contextlib.contextmanager
def frozen_gc() -> Iterator[None]:
    """Keep the objects that exist now (torch, transformers, datasets: ~10^6 of them) out of the cyclic
    garbage collector's full passes while millions of small records are allocated; that alone doubles the
    build's throughput. Unfrozen afterwards unless the caller had frozen objects already."""
    already = gc.get_freeze_count() > 0
    gc.freeze()
    try:
        yield
    finally:
        if not already:
            gc.unfreeze()


def open_parquet_writer(path: str | os.PathLike, features) -> pq.ParquetWriter:
    """A pyarrow ParquetWriter set up as `datasets` sets up its own (feature metadata in the schema,
    content-defined chunking so re-uploads of similar shards deduplicate on the Hub, page index)."""
    from datasets import arrow_writer, config

    # Per-column compression/encoding as `datasets` chooses them (image bytes stored plain, uncompressed).
    column_options = getattr(arrow_writer, "get_parquet_column_options", lambda *_: {})
    writer = pq.ParquetWriter(
        str(path),
        features.arrow_schema,
        use_content_defined_chunking=config.DEFAULT_CDC_OPTIONS,
        write_page_index=True,
        **column_options(features, features.arrow_schema),
    )
    writer.add_key_value_metadata({"content_defined_chunking": json.dumps(config.DEFAULT_CDC_OPTIONS)})
    return writer


class ShardWriter:
    """Appends rows to parquet shards of about `max_shard_bytes` (uncompressed), a row group at a time;
    shards get their final `train-XXXXX-of-YYYYY.parquet` names in `close()`."""

    def __init__(self, data_dir: Path, features, rows_per_group: int, max_shard_bytes: int) -> None:
        self.data_dir = data_dir
        self.features = features
        self.rows_per_group = rows_per_group
        self.max_shard_bytes = max_shard_bytes
        self.paths: list[Path] = []
        self._writer = None
        self._rows: list[dict[str, Any]] = []
        self._shard_bytes = 0
        self.rows_written = 0
        self.num_bytes = 0  # uncompressed Arrow bytes written, as `datasets` counts them
        self.schema = features.arrow_schema  # carries the features as metadata: Image columns stay Image

    def add(self, row: dict[str, Any], size: int) -> None:
        self._rows.append(row)
        self._shard_bytes += size
        if len(self._rows) >= self.rows_per_group:
            self._flush()
        if self._shard_bytes >= self.max_shard_bytes:
            self._finish_shard()

    def _flush(self) -> None:
        if not self._rows:
            return
        if self._writer is None:
            path = self.data_dir / f"train-{len(self.paths):05d}.parquet.partial"
            self.paths.append(path)
            self._writer = open_parquet_writer(path, self.features)
        table = pa.Table.from_pylist(self._rows, schema=self.schema)
        self._writer.write_table(table, row_group_size=self.rows_per_group)
        self.num_bytes += table.nbytes
        self.rows_written += len(self._rows)
        self._rows = []

    def _finish_shard(self) -> None:
        self._flush()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._shard_bytes = 0

    def close(self) -> list[str]:
        self._finish_shard()
        names = []
        for index, path in enumerate(self.paths):
            name = SHARD_PATTERN.format(index=index, total=len(self.paths))
            path.rename(self.data_dir / name)
            names.append(f"{DATA_DIR}/{name}")
        return names
