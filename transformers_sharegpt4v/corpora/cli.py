"""`sharegpt4v data build|export|stats|push`: caption corpora as Hub datasets.

Light to import, and none of the actions imports torch (pyarrow, datasets and huggingface_hub do the work).

    sharegpt4v data build --json share-captioner_coco_lcs_sam_1246k_1107.json --image-root data \\
        --output sharegpt4v-pt [--embed-images] [--push user/sharegpt4v-pt]
    sharegpt4v data export sharegpt4v-pt --to-json roundtrip.json
    sharegpt4v data stats sharegpt4v-pt [--report stats.json]
    sharegpt4v data push sharegpt4v-pt user/sharegpt4v-pt
"""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..arguments import Action, positional
from ..degenerate import MAX_PERIOD, MIN_REPEATS, MIN_SPAN
from ..errors import MissingFileError, UsageError, looks_like_hub_id
from ..files import atomic_write

__all__ = ["ACTIONS", "BuildArguments", "ExportArguments", "PushArguments", "StatsArguments"]


@dataclass
class BuildArguments:
    """`sharegpt4v data build`."""

    json: list[str] = field(metadata={"help": "corpus JSON (repeatable)", "metavar": "FILE"})
    image_root: str = field(metadata={"help": "folder holding coco/, sam/, llava/, ...", "metavar": "DIR"})
    output: str = field(metadata={"help": "dataset folder to write", "metavar": "OUT"})
    embed_images: bool = field(default=False, metadata={"help": "store image bytes in the shards"})
    push: str | None = field(
        default=None, metadata={"help": "then upload to this Hub dataset repo", "metavar": "REPO_ID"}
    )
    private: bool = field(default=False, metadata={"help": "create the Hub repo private (with --push)"})
    num_workers: int | None = field(default=None, metadata={"help": "image-check processes (default: all cores)"})
    shard_size_mb: int = field(
        default=500, metadata={"help": "uncompressed MB per shard", "metavar": "MB", "deprecated": ["--shard-size"]}
    )
    overwrite: bool = field(
        default=False, metadata={"help": "replace data/, README.md, report.json, skipped.jsonl in OUT"}
    )


@dataclass
class ExportArguments:
    """`sharegpt4v data export`."""

    dataset: str = positional("dataset folder (or Hub repo id)", "OUT")
    to_json: str = field(metadata={"help": "JSON file to write", "metavar": "FILE", "deprecated": ["--json"]})
    image_root: str | None = field(
        default=None, metadata={"help": "data root (default: the one in OUT/report.json)", "metavar": "DIR"}
    )
    indent: int | None = field(default=None, metadata={"help": "indent the JSON (default: one record per line)"})


@dataclass
class StatsArguments:
    """`sharegpt4v data stats`."""

    dataset: str = positional("dataset folder, caption folder or Hub repo id", "OUT")
    show: int = field(default=20, metadata={"help": "degenerate captions to print (all go to --report)"})
    report: str | None = field(
        default=None,
        metadata={
            "help": "write everything as JSON to this file (default: OUT/stats.json)",
            "metavar": "FILE",
            "deprecated": ["--output"],
        },
    )
    min_repeats: int = field(
        default=MIN_REPEATS, metadata={"help": "degenerate rule: times in a row the phrase comes back"}
    )
    min_span: int = field(
        default=MIN_SPAN, metadata={"help": "degenerate rule: words and marks the loop covers, at least"}
    )
    max_period: int = field(
        default=MAX_PERIOD, metadata={"help": "degenerate rule: words and marks per phrase, at most"}
    )


@dataclass
class PushArguments:
    """`sharegpt4v data push`."""

    dataset: str = positional("dataset folder from `sharegpt4v data build`", "OUT")
    repo_id: str = positional("Hub dataset repo, e.g. user/sharegpt4v-cap100k", "REPO_ID")
    private: bool = field(default=False, metadata={"help": "create the repo private"})
    token: str | None = field(default=None, metadata={"help": "Hub token (default: the logged-in one)"})


def _build(args: BuildArguments) -> int:
    from ..hub import hub_errors
    from .build import build_corpus

    command = shlex.join(["sharegpt4v", "data", *sys.argv[2:]]) if sys.argv[1:2] == ["data"] else None
    with hub_errors(f"Pushing {args.output} to {args.push}"):
        result = build_corpus(
            args.json,
            args.image_root,
            args.output,
            embed_images=args.embed_images,
            num_workers=args.num_workers,
            max_shard_bytes=args.shard_size_mb * 2**20,
            overwrite=args.overwrite,
            push_to_hub=args.push,
            private=args.private or None,
            command=command,
            require_records=True,
        )
    print(result.summary())
    if args.push:
        print(f"pushed to {args.push}")
    return 0


def _export(args: ExportArguments) -> int:
    from .export import export_corpus

    _check_dataset_argument(args.dataset, "export")
    count = export_corpus(args.dataset, args.to_json, image_root=args.image_root, indent=args.indent)
    print(f"{args.to_json}: {count:,} records exported from {args.dataset}")
    return 0


def _check_dataset_argument(dataset: str, action: str) -> None:
    """A DATASET that is neither a local path nor shaped like a Hub id ("name" or "owner/name") is a
    missing folder: say so instead of letting `datasets` look for it on the Hub. A local folder must hold
    a built corpus (parquet shards with `messages`); `stats` also reads a caption folder."""
    from .stats import caption_folder_shards

    path = Path(dataset)
    if not path.exists():
        if looks_like_hub_id(dataset):
            return
        raise MissingFileError(f"{dataset} does not exist: give a corpus folder or a Hub dataset id (owner/name).")
    if not path.is_dir():
        raise UsageError(f"{dataset} is a file: give the corpus folder that `sharegpt4v data build` wrote.")
    if caption_folder_shards(path) is not None:
        if action == "stats":
            return
        raise UsageError(
            f"{dataset} is a `sharegpt4v caption` output folder, not a built corpus: export it with the caption "
            "command's --export-json FILE, then `sharegpt4v data build --json FILE ...`."
        )
    shards = sorted(p for p in [*path.glob("*.parquet"), *path.glob("*/*.parquet")] if not p.name.startswith("."))
    if not shards:
        raise UsageError(f"{dataset} holds no parquet shards: build it first with `sharegpt4v data build`.")
    import pyarrow.parquet as pq

    columns = pq.read_schema(shards[0]).names
    if "messages" not in columns or "id" not in columns:
        raise UsageError(
            f"{dataset} is not a corpus built by `sharegpt4v data build`: its rows have the columns {columns}, "
            "not id, images, messages, source."
        )


def _stats(args: StatsArguments) -> int:
    from .stats import DegenerateRule, corpus_stats

    _check_dataset_argument(args.dataset, "stats")
    if args.min_repeats < 2 or args.min_span < 2 or args.max_period < 1:
        raise UsageError(
            f"the degenerate rule needs --min-repeats >= 2, --min-span >= 2 and --max-period >= 1; got "
            f"{args.min_repeats}, {args.min_span} and {args.max_period}."
        )
    rule = DegenerateRule(args.min_repeats, args.min_span, args.max_period)
    stats = corpus_stats(args.dataset, rule=rule)
    out = (
        Path(args.report)
        if args.report
        else Path(args.dataset) / "stats.json"
        if Path(args.dataset).is_dir()
        else None
    )
    print(f"captions            {stats['captions']:,}")
    for name in ("characters", "words"):
        s = stats[name]
        print(
            f"{name + '/caption':<19} mean {s['mean']:,.1f}  median {s['median']:,.1f}  p95 {s['p95']:,.1f}  max {s['max']:,}"
        )
    print(f"vocabulary          {stats['vocabulary']:,} words")
    print(f"distinct bigrams    {stats['distinct_bigrams']:,}")
    flagged = stats["degenerate_captions"]
    share = len(flagged) / max(stats["captions"], 1)
    print(f"degenerate          {len(flagged):,} ({share:.2%}): {stats['degenerate_rule']}")
    for item in flagged[: args.show]:
        print(f"  {item['id']}: {item['phrase']!r} x{item['repeats']:g} ({item['coverage']:.0%} of the caption)")
    if len(flagged) > args.show:
        print(f"  ... {len(flagged) - args.show:,} more" + (f" in {out}" if out else ""))
    if out is not None:
        with atomic_write(out) as handle:
            handle.write(json.dumps(stats, indent=2, ensure_ascii=False))
        print(f"written to {out}")
    return 0


def _push(args: PushArguments) -> int:
    from ..hub import hub_errors
    from .hub import push_corpus

    if not Path(args.dataset).is_dir():
        raise MissingFileError(f"{args.dataset} is not a folder: give the folder `sharegpt4v data build` wrote.")
    with hub_errors(f"Pushing {args.dataset} to {args.repo_id}"):
        url = push_corpus(args.dataset, args.repo_id, private=args.private or None, token=args.token)
    print(f"{args.dataset} pushed to {url}")
    return 0


def _keep_datasets_off_torch() -> None:
    """`datasets` imports torch for every streamed dataset when torch is installed (to share a counter with
    DataLoader workers); the data commands stream rows but never use torch, so this process tells datasets
    that torch is absent (the Python API is left as it is)."""
    import datasets.config

    datasets.config.TORCH_AVAILABLE = False


def _without_torch(action: Callable[[Any], int]) -> Callable[[Any], int]:
    def run(args: Any) -> int:
        _keep_datasets_off_torch()
        return action(args)

    return run


ACTIONS = {
    "build": Action(
        BuildArguments,
        _without_torch(_build),
        "validate LLaVA/ShareGPT4V JSON corpora and write a dataset folder",
        "Validate LLaVA/ShareGPT4V JSON corpora (records and image files) and write a dataset folder that "
        "`datasets.load_dataset(OUT)` and `trl sft` read: data/*.parquet, README.md (dataset card) and "
        "report.json (counts) and skipped.jsonl (every skipped record, with its id and why). Bad records are "
        "skipped and reported; the build fails, writing nothing, when no record at all is usable.",
    ),
    "export": Action(
        ExportArguments,
        _without_torch(_export),
        "write a built corpus back to the LLaVA JSON list",
        "Write the rows of a corpus built by `sharegpt4v data build` (folder or Hub dataset) back to one "
        "LLaVA/ShareGPT4V JSON list, image paths relative to the data root.",
    ),
    "stats": Action(
        StatsArguments,
        _without_torch(_stats),
        "caption statistics and degenerate captions of a built corpus",
        "Characters and words per caption (mean, median, p95, max), vocabulary, distinct bigrams and "
        "degenerate captions (a phrase repeated over and over) of a corpus built by `sharegpt4v data build` "
        "(folder or Hub dataset) or of a `sharegpt4v caption` output folder.",
    ),
    "push": Action(
        PushArguments,
        _without_torch(_push),
        "upload a built corpus (images embedded) to a Hub dataset repo",
        "Upload a folder built by `sharegpt4v data build` to a Hub dataset repo, with the image bytes embedded "
        "in the shards, its dataset card and report.json.",
    ),
}
