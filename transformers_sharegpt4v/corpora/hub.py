"""Upload a built corpus to the Hugging Face Hub (dataset repo): parquet shards, dataset card, report.json,
skipped.jsonl.

The Hub cannot follow local paths, so a corpus built without --embed-images is embedded on the way: each
shard is rewritten with the image bytes (`path` becomes the path under the data root) into a temporary
folder inside the corpus folder, and those shards are uploaded. One commit holds the shards, the card and
the report, and removes shards of an earlier push that this one does not replace.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from ..errors import UsageError
from ..files import relative_inside
from ..hub import open_hub_repo
from .card import render_dataset_card
from .layout import DATA_DIR, REPORT_FILE, SKIPPED_FILE, corpus_features, open_parquet_writer, read_report

__all__ = ["push_corpus"]


def _path_under_root(path: str, image_root: str) -> str:
    """The row's image path relative to the image root the corpus was built from; an image outside it is an
    error (the corpus folder no longer matches its report.json), never guessed from the file's base name."""
    relative = relative_inside(path, image_root)
    if relative is None:
        raise UsageError(
            f"Image {path!r} is not under the image root {image_root!r} recorded in {REPORT_FILE}: rebuild the corpus."
        )
    return relative


def _embed_shard(source: Path, target: Path, image_root: str) -> None:
    writer = open_parquet_writer(target, corpus_features())
    for batch in pq.ParquetFile(source).iter_batches(batch_size=100):
        table = pa.Table.from_batches([batch])
        images = []
        for row_images in table.column("images").to_pylist():
            embedded = []
            for image in row_images:
                path, data = image["path"], image["bytes"]
                if data is None:
                    data = Path(path).read_bytes()
                    path = _path_under_root(path, image_root)
                embedded.append({"path": path, "bytes": data})
            images.append(embedded)
        index = table.schema.get_field_index("images")
        table = table.set_column(index, "images", pa.array(images, type=table.schema.field("images").type))
        writer.write_table(table)
    writer.close()


def push_corpus(
    output_dir: str | os.PathLike,
    repo_id: str,
    *,
    private: bool | None = None,
    token: str | None = None,
    commit_message: str | None = None,
    progress: bool = True,
) -> str:
    """Upload the corpus folder `output_dir` (from `build_corpus`) to the dataset repo `repo_id`, creating
    it if needed, with the images embedded; returns the repo URL. `load_dataset(repo_id, split="train")`
    then gives the same rows (images as bytes)."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    output_dir = Path(output_dir)
    report = read_report(output_dir)
    if report is None:
        raise UsageError(f"{output_dir} has no {REPORT_FILE}: build it first with `sharegpt4v data build`.")
    shards = [output_dir / name for name in report["shards"]]
    missing = [str(path) for path in shards if not path.is_file()]
    if missing:
        raise UsageError(f"{output_dir} is incomplete: shard(s) {missing} are missing; rebuild the corpus.")

    api, url = open_hub_repo(repo_id, "dataset", private=private, token=token)  # before the images are embedded
    staging = output_dir / ".hub-upload"
    try:
        if not report["embed_images"]:
            (staging / DATA_DIR).mkdir(parents=True, exist_ok=True)
            for shard in tqdm(shards, desc="embed images", unit=" shard", disable=not progress):
                _embed_shard(shard, staging / DATA_DIR / shard.name, report["image_root"])
            shards = [staging / DATA_DIR / shard.name for shard in shards]
        card = render_dataset_card(report, embedded=True, repo_id=repo_id)
        uploaded = {f"{DATA_DIR}/{shard.name}" for shard in shards}
        stale = [
            name
            for name in api.list_repo_files(repo_id, repo_type="dataset")
            if name.startswith(f"{DATA_DIR}/") and name not in uploaded
        ]
        operations = [CommitOperationAdd(f"{DATA_DIR}/{shard.name}", str(shard)) for shard in shards]
        operations += [
            CommitOperationAdd("README.md", card.encode("utf-8")),
            *[CommitOperationAdd(name, str(output_dir / name)) for name in (REPORT_FILE, SKIPPED_FILE)],
            *[CommitOperationDelete(name) for name in stale],
        ]
        api.create_commit(
            repo_id,
            operations,
            repo_type="dataset",
            commit_message=commit_message or f"Upload ShareGPT4V corpus ({report['records_written']:,} records)",
        )
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return url
