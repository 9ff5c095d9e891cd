"""The dataset card (README.md) of a built corpus: YAML header that `datasets` and the Hub read (configs /
data_files, features), then counts per source, caption length statistics, skipped records and the command."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from huggingface_hub import DatasetCard, DatasetCardData

from ..files import atomic_write
from .layout import corpus_features

__all__ = ["render_dataset_card", "write_dataset_card"]

_COLUMNS = [
    ("id", "string", "the record's id in the source JSON"),
    ("images", "list of Image", "the record's images (empty for text-only records)"),
    ("messages", "list of {role, content}", 'TRL conversational format; `<image>` tags are `{"type": "image"}` parts'),
    ("source", "string", "top folder of the image under the data root (coco, sam, llava, ...); `text` if none"),
]


def _yaml_header(report: dict[str, Any], hub: bool) -> DatasetCardData:
    """`configs` only on the Hub card. In a local folder, a `configs` section makes `load_dataset(folder)`
    key its cache by the card alone (datasets 5.x): another folder of the same name, or this folder rebuilt,
    would load the rows cached the first time. Without it the shards are found by their `train-` names
    and the cache is keyed by their modification times."""
    from datasets import DatasetInfo

    info = DatasetInfo(features=corpus_features())._to_yaml_dict()
    info["splits"] = [{"name": "train", "num_bytes": report["num_bytes"], "num_examples": report["records_written"]}]
    info["dataset_size"] = report["num_bytes"]
    configs = [{"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*.parquet"}]}]
    return DatasetCardData(
        configs=configs if hub else None,
        dataset_info=info,
        task_categories=["image-text-to-text"],
        tags=["sharegpt4v", "llava", "image-captioning", "trl"],
    )


def _length_rows(stats: dict[str, Any]) -> list[str]:
    rows = ["| per caption | mean | median | p95 | min | max |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for name in ("characters", "words"):
        s = stats[name]
        rows.append(
            f"| {name} | {s['mean']:,.1f} | {s['median']:,.1f} | {s['p95']:,.1f} | {s['min']:,} | {s['max']:,} |"
        )
    return rows


def _skipped_rows(report: dict[str, Any]) -> list[str]:
    if not report["skipped_counts"]:
        return ["None."]
    return ["| reason | records | meaning |", "| --- | ---: | --- |"] + [
        f"| `{reason}` | {count:,} | {report['skip_reasons'].get(reason, '')} |"
        for reason, count in report["skipped_counts"].items()
    ]


def render_dataset_card(report: dict[str, Any], embedded: bool | None = None, repo_id: str | None = None) -> str:
    """The card text for a build report (the content of `report.json`)."""
    embedded = report["embed_images"] if embedded is None else embedded
    names = ", ".join(f"`{os.path.basename(item['file'])}`" for item in report["inputs"])
    where = repo_id or "path/to/this/folder"
    lines = [
        f"# ShareGPT4V corpus from {names}",
        "",
        f"{report['records_written']:,} of {report['records_read']:,} records of the LLaVA/ShareGPT4V JSON kept "
        f"({report['records_skipped']:,} skipped, listed by id in `skipped.jsonl`), built by "
        "transformers-sharegpt4v (`sharegpt4v data build`).",
        "",
        "```python",
        "from datasets import load_dataset",
        "",
        f'dataset = load_dataset("{where}", split="train")  # streaming=True works too',
        "```",
        "",
        "`trl sft` takes it as `dataset_name`; `sharegpt4v data export` writes the LLaVA JSON back.",
        "",
        "## Columns",
        "",
        "| column | type | content |",
        "| --- | --- | --- |",
        *[f"| `{name}` | {kind} | {text} |" for name, kind, text in _COLUMNS],
        "",
        "Images: "
        + (
            "embedded in the parquet shards (the `path` field keeps the path under the data root)."
            if embedded
            else f"referenced by absolute path under `{report['image_root']}`: the rows load on a machine that "
            "has the images there; `sharegpt4v data push` embeds them for the Hub."
        ),
        "",
        "## Records per source",
        "",
        "| source | records | share |",
        "| --- | ---: | ---: |",
        *[
            f"| {source} | {count:,} | {count / max(report['records_written'], 1):.1%} |"
            for source, count in report["sources"].items()
        ],
        "",
        f"## Caption length ({report['caption_stats']['captions']:,} assistant turns)",
        "",
        *_length_rows(report["caption_stats"]),
        "",
        "Words are whitespace-separated (as `wc -w` counts them). `sharegpt4v data stats` adds the vocabulary "
        "size, distinct bigrams and degenerate (repeated-phrase) captions.",
        "",
        "## Skipped records",
        "",
    ]
    lines += _skipped_rows(report)
    lines += ["", "## How it was built", "", "```bash", report["command"], "```", ""]
    card = DatasetCard(f"---\n{_yaml_header(report, hub=repo_id is not None).to_yaml()}\n---\n\n" + "\n".join(lines))
    return str(card)


def write_dataset_card(folder: str | os.PathLike, report: dict[str, Any], **kwargs: Any) -> Path:
    path = Path(folder) / "README.md"
    with atomic_write(path) as handle:
        handle.write(render_dataset_card(report, **kwargs))
    return path
