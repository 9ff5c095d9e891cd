"""`sharegpt4v data build|export|stats|push`: caption corpora as Hub datasets.

Light to import, and none of the actions imports torch (pyarrow, datasets and huggingface_hub do the work).

    sharegpt4v data build --json share-captioner_coco_lcs_sam_1246k_1107.json --image-root data \\
        --output sharegpt4v-pt [--embed-images] [--push user/sharegpt4v-pt]
    sharegpt4v data export sharegpt4v-pt --json roundtrip.json
    sharegpt4v data stats sharegpt4v-pt
    sharegpt4v data push sharegpt4v-pt user/sharegpt4v-pt
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from ..degenerate import MAX_PERIOD, MIN_REPEATS, MIN_SPAN
from ..errors import MissingFileError, UsageError, looks_like_hub_id

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    build = commands.add_parser(
        "build",
        help="validate LLaVA/ShareGPT4V JSON corpora and write a dataset folder",
        description="Validate LLaVA/ShareGPT4V JSON corpora (records and image files) and write a dataset folder "
        "that `datasets.load_dataset(OUT)` and `trl sft` read: data/*.parquet, README.md (dataset card) and "
        "report.json (counts) and skipped.jsonl (every skipped record, with its id and why). Bad records are skipped and reported; the "
        "build fails, writing nothing, when no record at all is usable.",
    )
    build.add_argument("--json", action="append", required=True, metavar="FILE", help="corpus JSON (repeatable)")
    build.add_argument("--image-root", required=True, metavar="DIR", help="folder holding coco/, sam/, llava/, ...")
    build.add_argument("--output", required=True, metavar="OUT", help="dataset folder to write")
    build.add_argument("--embed-images", action="store_true", help="store image bytes in the shards")
    build.add_argument("--push", metavar="REPO_ID", help="then upload to this Hub dataset repo")
    build.add_argument("--private", action="store_true", help="create the Hub repo private (with --push)")
    build.add_argument("--num-workers", type=int, default=None, help="image-check processes (default: all cores)")
    build.add_argument("--shard-size", type=int, default=500, metavar="MB", help="uncompressed MB per shard")
    build.add_argument(
        "--overwrite", action="store_true", help="replace data/, README.md, report.json, skipped.jsonl in OUT"
    )

    _add_export_stats_push(commands)


def _add_export_stats_push(commands) -> None:
    export = commands.add_parser(
        "export",
        help="write a built corpus back to the LLaVA JSON list",
        description="Write the rows of a corpus built by `sharegpt4v data build` (folder or Hub dataset) back to "
        "one LLaVA/ShareGPT4V JSON list, image paths relative to the data root.",
    )
    export.add_argument("dataset", metavar="OUT", help="dataset folder (or Hub repo id)")
    export.add_argument("--json", required=True, metavar="FILE", help="JSON file to write")
    export.add_argument("--image-root", metavar="DIR", help="data root (default: the one in OUT/report.json)")
    export.add_argument("--indent", type=int, default=None, help="indent the JSON (default: one record per line)")

    stats = commands.add_parser(
        "stats",
        help="caption statistics and degenerate captions of a built corpus",
        description="Characters and words per caption (mean, median, p95, max), vocabulary, distinct bigrams and "
        "degenerate captions (a phrase repeated over and over) of a corpus built by `sharegpt4v data build` "
        "(folder or Hub dataset) or of a `sharegpt4v caption` output folder.",
    )
    stats.add_argument("dataset", metavar="OUT", help="dataset folder, caption folder or Hub repo id")
    stats.add_argument("--show", type=int, default=20, help="degenerate captions to print (all go to --output)")
    stats.add_argument("--output", metavar="FILE", help="write everything as JSON (default: OUT/stats.json)")
    stats.add_argument(
        "--min-repeats", type=int, default=MIN_REPEATS, help="degenerate rule: times in a row the phrase comes back"
    )
    stats.add_argument(
        "--min-span", type=int, default=MIN_SPAN, help="degenerate rule: words and marks the loop covers, at least"
    )
    stats.add_argument(
        "--max-period", type=int, default=MAX_PERIOD, help="degenerate rule: words and marks per phrase, at most"
    )

    push = commands.add_parser(
        "push",
        help="upload a built corpus (images embedded) to a Hub dataset repo",
        description="Upload a folder built by `sharegpt4v data build` to a Hub dataset repo, with the image bytes "
        "embedded in the shards, its dataset card and report.json.",
    )
    push.add_argument("dataset", metavar="OUT", help="dataset folder from `sharegpt4v data build`")
    push.add_argument("repo_id", metavar="REPO_ID", help="Hub dataset repo, e.g. user/sharegpt4v-cap100k")
    push.add_argument("--private", action="store_true", help="create the repo private")
    push.add_argument("--token", default=None, help="Hub token (default: the logged-in one)")


def _build(args: argparse.Namespace) -> int:
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
            max_shard_bytes=args.shard_size * 2**20,
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


def _export(args: argparse.Namespace) -> int:
    from .export import export_corpus

    _check_dataset_argument(args.dataset, "export")
    count = export_corpus(args.dataset, args.json, image_root=args.image_root, indent=args.indent)
    print(f"{args.json}: {count:,} records exported from {args.dataset}")
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


def _stats(args: argparse.Namespace) -> int:
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
        Path(args.output)
        if args.output
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
        out.write_text(json.dumps(stats, indent=2, ensure_ascii=False), encoding="utf-8")
        print(f"written to {out}")
    return 0


def _push(args: argparse.Namespace) -> int:
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


def run(args: argparse.Namespace) -> int:
    _keep_datasets_off_torch()
    return {"build": _build, "export": _export, "stats": _stats, "push": _push}[args.data_command](args)
