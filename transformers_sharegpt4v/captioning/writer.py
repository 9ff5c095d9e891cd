"""The output folder: parquet shards committed atomically, run.json, errors.jsonl.

Layout of OUT:
    run.json                      model, prompt, generation settings (written once, checked on every re-run)
    README.md                     short dataset card (`load_dataset(OUT, split="train")` reads the shards)
    data/train-{prefix}-{n:06d}.parquet   shards: image, caption, num_tokens, finish_reason, degenerate, retried
    errors.jsonl                  one line per image that could not be read (append-only log)

Exactly once. The committed shards ARE the record of finished images: an image is done if and only if a
row with its key is in a shard, so no second file can disagree with the rows after a crash. Each process
keeps one open shard; after every batch the shard is rewritten whole to a hidden temporary file in the same
folder, flushed and fsynced, then `os.replace`d over the previous version. `os.replace` is atomic, so after
a `kill -9` at any instant each shard is either its previous or its new version, never half-written, and
the only thing lost is the batch being generated. A shard is closed at `rows_per_shard` rows and a new one
started; a re-run never appends to an old shard, it starts new ones after the highest existing number.
Leftover temporary files (hidden, `.tmp` suffix) are never read and are removed on the next start.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import UsageError
from ..files import atomic_write

__all__ = [
    "SCHEMA",
    "ShardWriter",
    "append_errors",
    "check_run_config",
    "list_shards",
    "record_retry_settings",
    "read_done_keys",
    "rewrite_shard",
]

SCHEMA = pa.schema(
    [
        ("image", pa.string()),
        ("caption", pa.string()),
        ("num_tokens", pa.int32()),
        ("finish_reason", pa.string()),
        ("degenerate", pa.bool_()),
        ("retried", pa.bool_()),
    ]
)

DATA_DIR = "data"
RUN_FILE = "run.json"
ERRORS_FILE = "errors.jsonl"
# No `configs` YAML on purpose: with it, `load_dataset` caches by file pattern and returns stale rows
# after a resume; without it, data files are resolved with their mtimes and the shard names
# (`train-...parquet`) put them, and only them, in the train split.
CARD = """# Captions

Written by `sharegpt4v caption` (transformers-sharegpt4v). Model, prompt and generation settings are in
`run.json`; images that could not be read are listed in `errors.jsonl`.

```python
from datasets import load_dataset
captions = load_dataset("path/to/this/folder", split="train")
```

`sharegpt4v data stats path/to/this/folder` gives caption statistics and lists degenerate captions.
"""
# Settings that change what a caption is: a different value on an existing OUT is refused.
FROZEN_KEYS = ("model", "prompt", "generation")


def _fsync_write(path: Path, text: str) -> None:
    with atomic_write(path) as handle:
        handle.write(text)


def check_run_config(output: str | os.PathLike, config: dict[str, Any], is_main: bool = True) -> None:
    """Write OUT/run.json on the first run; on a re-run refuse settings that differ from the recorded ones
    once OUT holds captions (a run.json without any committed shard is replaced: there is nothing to mix).
    With `is_main=False` only compare (other processes, or a check before anything is written).

    Raises UsageError naming each changed setting, its recorded and its new value.
    """
    output = Path(output)
    path = output / RUN_FILE
    if path.is_file():
        recorded = json.loads(path.read_text(encoding="utf-8"))
        changed = [
            f"{key}: recorded {recorded.get(key)!r}, now {config.get(key)!r}"
            for key in FROZEN_KEYS
            if recorded.get(key) != config.get(key)
        ]
        if changed and list_shards(output):
            raise UsageError(
                f"{output} already holds captions made with other settings ({'; '.join(changed)}). Mixing them "
                f"would make one corpus of two kinds of captions. Re-run with the recorded settings (see {path}) "
                "to resume, or pass a new --output folder."
            )
        if not changed:
            return
    if is_main:
        (output / DATA_DIR).mkdir(parents=True, exist_ok=True)
        _fsync_write(path, json.dumps(config, indent=2, sort_keys=True) + "\n")
        if not (output / "README.md").exists():
            _fsync_write(output / "README.md", CARD)


def record_retry_settings(output: str | os.PathLike, settings: dict[str, Any]) -> None:
    """Add the generation settings of `--retry-degenerate` to run.json the first time they are used
    (rows regenerated with them have `retried=True`)."""
    path = Path(output) / RUN_FILE
    config = json.loads(path.read_text(encoding="utf-8"))
    if "retry_generation" not in config:
        config["retry_generation"] = settings
        _fsync_write(path, json.dumps(config, indent=2, sort_keys=True) + "\n")


def list_shards(output: str | os.PathLike) -> list[Path]:
    """Committed shards of OUT, sorted by name (temporary files excluded)."""
    folder = Path(output) / DATA_DIR
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*.parquet") if not p.name.startswith("."))


def read_done_keys(output: str | os.PathLike) -> set[str]:
    """Keys of every image with a committed row in OUT."""
    done: set[str] = set()
    for shard in list_shards(output):
        done.update(pq.read_table(shard, columns=["image"]).column("image").to_pylist())
    return done


def rewrite_shard(path: Path, table: pa.Table) -> None:
    """Replace shard `path` by `table` atomically (temporary file, fsync, os.replace)."""
    with atomic_write(path, "wb", sync_dir=True) as handle:
        pq.write_table(table.cast(SCHEMA), handle, compression="zstd")


class ShardWriter:
    """Commits rows of one process to `OUT/data/train-{prefix}-{n:06d}.parquet`, one atomic rewrite per batch."""

    def __init__(self, output: str | os.PathLike, prefix: str, rows_per_shard: int = 1000) -> None:
        self.folder = Path(output) / DATA_DIR
        self.folder.mkdir(parents=True, exist_ok=True)
        self.prefix = prefix = f"train-{prefix}"
        self.rows_per_shard = rows_per_shard
        for stale in self.folder.glob(f".{prefix}-*.tmp"):  # left by a killed run of this prefix
            stale.unlink(missing_ok=True)
        pattern = re.compile(rf"^{re.escape(prefix)}-(\d+)\.parquet$")
        numbers = [int(m.group(1)) for p in self.folder.iterdir() if (m := pattern.match(p.name))]
        self.next_number = max(numbers, default=-1) + 1
        self._rows: list[pa.RecordBatch] = []
        self._count = 0
        self._path: Path | None = None
        self.rows_written = 0

    def write(self, columns: dict[str, list]) -> None:
        """Append one batch of rows (a dict of equal-length columns) and commit it."""
        batch = pa.record_batch(columns, schema=SCHEMA)
        if batch.num_rows == 0:
            return
        if self._path is None or self._count >= self.rows_per_shard:
            self._path = self.folder / f"{self.prefix}-{self.next_number:06d}.parquet"
            self.next_number += 1
            self._rows, self._count = [], 0
        self._rows.append(batch)
        self._count += batch.num_rows
        rewrite_shard(self._path, pa.Table.from_batches(self._rows, schema=SCHEMA))
        self.rows_written += batch.num_rows


def append_errors(output: str | os.PathLike, keys: Iterable[str], errors: Iterable[str], source: str) -> int:
    """Append one JSON line per unreadable image to OUT/errors.jsonl (O_APPEND: safe across processes)."""
    lines = [
        json.dumps(
            {
                "image": key,
                "error": error,
                "source": source,
                "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
        )
        + "\n"
        for key, error in zip(keys, errors, strict=True)
    ]
    if not lines:
        return 0
    fd = os.open(Path(output) / ERRORS_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        for line in lines:  # one write per line: each line lands whole even with several writers
            os.write(fd, line.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    return len(lines)
