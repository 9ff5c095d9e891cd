"""Build a `datasets`-loadable folder (parquet shards, dataset card, report.json, skipped.jsonl) from LLaVA JSON
corpora.

Flow: each JSON file is streamed record by record (reader.py) -> shape and content checks and the duplicate
check run in this process (records.py) -> the distinct image paths of a batch of records go to the image
worker processes (images.py) while the next batch is read -> the records of a checked batch become rows and are
appended to the current parquet shard (pyarrow, set up as `datasets` writes parquet). Nothing grows with
the corpus except the set of seen ids and the per-path check cache. Skipped records are appended to
skipped.jsonl as they come; report.json (plain JSON) holds the numbers.

Everything is written to a hidden folder beside OUT and moved into OUT only when the build is complete: a
build that fails (bad input, Ctrl-C, a crash) leaves OUT as it was, so the same command runs again as is.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import tempfile
import time
from collections import Counter, deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..errors import MissingFileError, UsageError
from . import hub
from .card import write_dataset_card
from .images import ImageChecker
from .layout import DATA_DIR, REPORT_FILE, SKIPPED_FILE, ShardWriter, corpus_features, frozen_gc
from .reader import JSONListReader, MalformedRecord
from .records import (
    SKIP_REASONS,
    InvalidRecord,
    Record,
    check_record,
    conversations_to_messages,
    parse_record,
    source_of,
)
from .stats import CaptionStats

__all__ = ["BuildResult", "build_corpus"]


@dataclass
class BuildResult:
    """What `build_corpus` did; `report` is the content of OUT/report.json (the skipped records are listed in
    OUT/skipped.jsonl)."""

    output_dir: Path
    records_read: int
    records_written: int
    skipped: dict[str, int]
    sources: dict[str, int]
    shards: list[str]
    seconds: float
    report: dict[str, Any] = field(repr=False)

    @classmethod
    def from_report(cls, output_dir: Path, report: dict[str, Any]) -> BuildResult:
        return cls(
            output_dir,
            report["records_read"],
            report["records_written"],
            report["skipped_counts"],
            report["sources"],
            report["shards"],
            report["seconds"],
            report,
        )

    def summary(self) -> str:
        skipped = sum(self.skipped.values())
        reasons = ", ".join(f"{reason} {count:,}" for reason, count in sorted(self.skipped.items()))
        rate = self.records_read / self.seconds if self.seconds else 0.0
        return (
            f"{self.output_dir}: {self.records_written:,} of {self.records_read:,} records kept in "
            f"{len(self.shards)} shard(s), {skipped:,} skipped" + (f" ({reasons})" if reasons else "") + f"; "
            f"{self.seconds:.1f} s, {rate:,.0f} records/s; details in {self.output_dir / REPORT_FILE}"
        )


class _SkipLog:
    """Skipped records, one JSON line per record (`{reason, id, file, index, detail}`), appended to
    OUT/skipped.jsonl as they come (memory stays flat); the first record of each reason is kept for messages."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.counts: Counter[str] = Counter()
        self._first: dict[str, dict[str, Any]] = {}
        self._handle = open(path, "w", encoding="utf-8")

    def add(self, reason: str, record_id: str | None, file: str, index: int, detail: str) -> None:
        entry = {"reason": reason, "id": record_id, "file": file, "index": index, "detail": detail}
        self._handle.write(json.dumps(entry, ensure_ascii=False) + "\n")
        self._first.setdefault(reason, entry)
        self.counts[reason] += 1

    def first(self, reason: str) -> dict[str, Any] | None:
        """The first record skipped for `reason`, as logged."""
        return self._first.get(reason)

    def close(self) -> None:
        self._handle.close()


def _default_command(json_files, image_root, output_dir, embed_images, push_to_hub) -> str:
    words = ["sharegpt4v", "data", "build"]
    for path in json_files:
        words += ["--json", str(path)]
    words += ["--image-root", str(image_root), "--output", str(output_dir)]
    words += ["--embed-images"] if embed_images else []
    words += ["--push", push_to_hub] if push_to_hub else []
    return shlex.join(words)


def _check_output(output_dir: Path, overwrite: bool) -> None:
    """Refuse an OUT that would be clobbered; nothing is written here."""
    if output_dir.exists() and not output_dir.is_dir():
        raise UsageError(f"--output {output_dir} exists and is not a folder: choose a folder.")
    if output_dir.is_dir() and any(output_dir.iterdir()) and not overwrite:
        raise UsageError(
            f"Output folder {output_dir} is not empty. Choose a new folder, or pass --overwrite to replace its "
            "data/, README.md, report.json and skipped.jsonl."
        )


def _check_json_list(path: str | os.PathLike) -> None:
    """Read up to the first record, so that a file that is not a JSON list fails before anything starts."""
    elements = iter(JSONListReader(path))
    try:
        next(elements, None)
    finally:
        elements.close()


@contextlib.contextmanager
def _staging_beside(final: Path) -> Iterator[Path]:
    """A hidden temporary folder beside `final` to build into; on an error (or Ctrl-C) it is removed, with the
    folders made for it, so that nothing is left behind."""
    created = _first_missing_ancestor(final.parent)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.build-", dir=final.parent))
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        raise


def _first_missing_ancestor(path: Path) -> Path | None:
    """The outermost folder of `path` (itself included) that does not exist yet, or None."""
    missing = None
    while not path.exists() and path != path.parent:
        missing, path = path, path.parent
    return missing


def _commit(staging: Path, output_dir: Path) -> None:
    """Move a finished build from `staging` into OUT, replacing the data/, README.md, report.json and
    skipped.jsonl it held."""
    if not output_dir.exists():
        staging.rename(output_dir)
        return
    for name in (DATA_DIR, "README.md", REPORT_FILE, SKIPPED_FILE):
        old = output_dir / name
        shutil.rmtree(old) if old.is_dir() else old.unlink(missing_ok=True)
    for item in staging.iterdir():
        item.rename(output_dir / item.name)
    staging.rmdir()


def _nothing_usable(json_files: Sequence, builder: _Builder, image_root: str | os.PathLike) -> UsageError:
    names = ", ".join(str(path) for path in json_files)
    if builder.records_read == 0:
        return UsageError(f"{names}: the JSON list is empty, so there is nothing to build. Nothing was written.")
    counts = builder.skips.counts
    reasons = ", ".join(f"{reason} {count:,}" for reason, count in counts.most_common())
    reason = counts.most_common(1)[0][0]
    first = builder.skips.first(reason) or {}
    fix = (
        f"The records' image paths are relative to --image-root ({image_root}): give the folder that holds "
        "coco/, sam/, llava/, ..."
        if reason == "missing_image"
        else "Fix the records (the README lists what makes a record unusable)"
    )
    return UsageError(
        f"no record of {names} was usable: all {builder.records_read:,} skipped ({reasons}; first: record "
        f"{first.get('id')!r}, {reason}: {first.get('detail')}). {fix}, then run the command again. Nothing was "
        "written."
    )


class _Builder:
    """The state of one build, shared by validation (while reading) and writing (once images are checked)."""

    def __init__(self, output_dir: Path, checker: ImageChecker, embed_images: bool, max_shard_bytes: int) -> None:
        self.checker = checker
        self.embed_images = embed_images
        self.skips = _SkipLog(output_dir / SKIPPED_FILE)
        self.writer = ShardWriter(
            output_dir / DATA_DIR, corpus_features(), 100 if embed_images else 1000, max_shard_bytes
        )
        self.sources: Counter[str] = Counter()
        self.caption_stats = CaptionStats(full=False)
        self.seen_ids: set[str] = set()
        self.inputs: list[dict[str, Any]] = []
        self.records_read = 0

    def validate(self, obj: Any, file: str, index: int) -> Record | None:
        """The record if it passes every check that needs no image file, else None (skipped and logged)."""
        try:
            if isinstance(obj, MalformedRecord):
                raise InvalidRecord("malformed_json", obj.error)
            record = parse_record(obj)
            if record.id in self.seen_ids:
                raise InvalidRecord(
                    "duplicate_id", f"id {record.id!r} was seen before (only the first record of an id is considered)"
                )
            self.seen_ids.add(record.id)
            check_record(record)
        except InvalidRecord as invalid:
            record_id = obj.id if isinstance(obj, MalformedRecord) else _id_of(obj)
            self.skips.add(invalid.reason, record_id, file, index, invalid.detail)
            return None
        self.checker.submit(record.images)
        return record

    def write(self, batch: list[tuple[Record, str, int]]) -> None:
        """Write the records of `batch` whose images all passed their checks; skip and log the others."""
        for record, file, index in batch:
            failure = next(filter(None, map(self.checker.result, record.images)), None)
            if failure is not None:
                self.skips.add(failure[0], record.id, file, index, failure[1])
                continue
            row, size = self._row(record)
            self.writer.add(row, size)
            self.sources[row["source"]] += 1
            for turn in record.conversations[1::2]:
                self.caption_stats.add(record.id, turn["value"])

    def _row(self, record: Record) -> tuple[dict[str, Any], int]:
        images, size = [], sum(len(turn["value"]) for turn in record.conversations)
        for path in record.images:
            full_path = self.checker.full_path(path)
            if self.embed_images:
                data = Path(full_path).read_bytes()
                images.append({"path": path, "bytes": data})
                size += len(data)
            else:
                images.append({"path": full_path, "bytes": None})
        messages = conversations_to_messages(record.conversations)
        return {"id": record.id, "images": images, "messages": messages, "source": source_of(record.images)}, size

    def read(self, json_file: str | os.PathLike, batch_size: int, bar: tqdm) -> None:
        """Validate the records of one file; write them a batch behind, so that the image checks of a batch run
        in the workers while the next batch is read."""
        file, reader = str(json_file), JSONListReader(json_file)
        pending: deque[list[tuple[Record, str, int]]] = deque()
        batch: list[tuple[Record, str, int]] = []
        count, done_before = 0, bar.n
        for index, obj in reader:
            count += 1
            record = self.validate(obj, file, index)
            if record is None:
                continue
            batch.append((record, file, index))
            if len(batch) >= batch_size:
                pending.append(batch)
                batch = []
                if len(pending) > 1:
                    self.write(pending.popleft())
                bar.update(done_before + reader.bytes_read - bar.n)
                bar.set_postfix(kept=self.writer.rows_written, skipped=sum(self.skips.counts.values()), refresh=False)
        for remaining in (*pending, batch):
            self.write(remaining)
        bar.update(done_before + reader.bytes_read - bar.n)
        self.records_read += count
        self.inputs.append(
            {"file": file, "records": count}
            | ({"text_after_list": reader.trailing_text} if reader.trailing_text else {})
            | ({"unterminated": True} if reader.unterminated else {})
        )

    def report(self, command: str, shards: list[str], seconds: float) -> dict[str, Any]:
        return {
            "command": command,
            "inputs": self.inputs,
            "image_root": self.checker.root,
            "embed_images": self.embed_images,
            "records_read": self.records_read,
            "records_written": self.writer.rows_written,
            "num_bytes": self.writer.num_bytes,
            "records_skipped": sum(self.skips.counts.values()),
            "image_files_checked": self.checker.files_checked,
            "image_worker_crashes": self.checker.workers_restarted,
            "sources": dict(self.sources.most_common()),
            "skipped_counts": dict(sorted(self.skips.counts.items())),
            "skip_reasons": SKIP_REASONS,
            "caption_stats": self.caption_stats.summary(),
            "shards": shards,
            "seconds": round(seconds, 2),
        }


def _check_inputs(json_files, image_root, output_dir: Path, overwrite: bool) -> list:
    """The corpus files as a list, after the checks that need no output: files exist and are JSON lists, the
    image root is a folder, OUT may be written. Raises UsageError / MissingFileError."""
    json_files = [json_files] if isinstance(json_files, (str, os.PathLike)) else list(json_files)
    if not json_files:
        raise UsageError("No JSON corpus given: pass at least one --json FILE.")
    for path in json_files:
        if not Path(path).is_file():
            raise MissingFileError(f"Corpus file {path} does not exist: check --json.")
    if not Path(image_root).is_dir():
        raise MissingFileError(
            f"Image root {image_root} is not a folder: pass the folder that holds coco/, sam/, ... as --image-root."
        )
    _check_output(output_dir, overwrite)
    for path in json_files:
        _check_json_list(path)
    return json_files


@dataclass(frozen=True)
class _Settings:
    """How `build_corpus` builds (its keyword arguments of the same names)."""

    embed_images: bool
    num_workers: int | None
    max_shard_bytes: int
    batch_size: int
    progress: bool
    require_records: bool


def _build_into(
    staging: Path, json_files: list, image_root: str | os.PathLike, command: str, started: float, settings: _Settings
) -> tuple[list[str], dict[str, Any]]:
    """Read, check and write every record into `staging` (shards, skipped.jsonl, report.json, card);
    returns (shard names, report)."""
    (staging / DATA_DIR).mkdir()
    total_bytes = sum(Path(path).stat().st_size for path in json_files)
    bar = tqdm(total=total_bytes, unit="B", unit_scale=True, desc="build corpus", disable=not settings.progress)
    with frozen_gc(), ImageChecker(image_root, settings.num_workers) as checker:
        builder = _Builder(staging, checker, settings.embed_images, settings.max_shard_bytes)
        try:
            for json_file in json_files:
                builder.read(json_file, settings.batch_size, bar)
            shards = builder.writer.close()
            bar.close()
            if settings.require_records and builder.writer.rows_written == 0:
                raise _nothing_usable(json_files, builder, image_root)
            report = builder.report(command, shards, time.perf_counter() - started)
            _write_report(staging / REPORT_FILE, report)
        finally:
            builder.skips.close()
            bar.close()
    write_dataset_card(staging, report)
    return shards, report


def build_corpus(
    json_files: str | os.PathLike | Sequence[str | os.PathLike],
    image_root: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    embed_images: bool = False,
    num_workers: int | None = None,
    max_shard_bytes: int = 500 * 2**20,
    batch_size: int = 2000,
    overwrite: bool = False,
    push_to_hub: str | None = None,
    private: bool | None = None,
    command: str | None = None,
    progress: bool = True,
    require_records: bool = False,
) -> BuildResult:
    """Convert LLaVA/ShareGPT4V JSON corpora into a dataset folder `output_dir` that
    `datasets.load_dataset(output_dir, split="train")` and `trl sft` load directly.

    Bad records are skipped, counted in `output_dir/report.json` and listed in `output_dir/skipped.jsonl` (see
    `SKIP_REASONS`). Without `embed_images` rows reference the image files by absolute path (valid on this
    machine); with it the bytes are stored in the shards (what the Hub needs; `push_to_hub` embeds them anyway).

    The build is written beside `output_dir` and moved into it at the end, so an error leaves `output_dir` as
    it was. Bad input (a missing file, a file that is not a JSON list, a non-empty `output_dir` without
    `overwrite`) raises `UsageError`; so does a build that keeps no record when `require_records` (the
    command line's choice: nothing is written then, and the message says what the records lacked).
    """
    started = time.perf_counter()
    output_dir = Path(output_dir)
    json_files = _check_inputs(json_files, image_root, output_dir, overwrite)
    command = command or _default_command(json_files, image_root, output_dir, embed_images, push_to_hub)
    settings = _Settings(embed_images, num_workers, max_shard_bytes, batch_size, progress, require_records)
    final = output_dir.resolve()  # `.` has no name to put beside it
    with _staging_beside(final) as staging:
        _, report = _build_into(staging, json_files, image_root, command, started, settings)
        _commit(staging, final)
    result = BuildResult.from_report(output_dir, report)
    if push_to_hub:
        hub.push_corpus(output_dir, push_to_hub, private=private)
    return result


def _id_of(obj: Any) -> str | None:
    record_id = obj.get("id") if isinstance(obj, dict) else None
    return None if record_id is None or isinstance(record_id, (dict, list)) else str(record_id)


def _write_report(path: Path, report: dict[str, Any]) -> None:
    """report.json: the build's numbers (the skipped records themselves are in skipped.jsonl)."""
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2, ensure_ascii=False)
        handle.write("\n")
