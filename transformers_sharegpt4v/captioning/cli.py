"""`sharegpt4v caption`: caption images at scale (batched, resumable exactly once, multi-process).

sharegpt4v convert Lin-Chen/ShareGPT4V-7B ShareGPT4V-7B    # a released checkpoint: convert it once
sharegpt4v caption --model ShareGPT4V-7B --images images/ --output captions/ --preset detailed
accelerate launch --num_processes 8 -m transformers_sharegpt4v.cli caption --model ... --output captions/
"""

from __future__ import annotations

import argparse

# The names of engine.PRESETS (importing the engine would load torch before `--help` could answer).
PRESET_NAMES = ("detailed", "short")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `sharegpt4v caption`."""
    parser.add_argument(
        "--model",
        required=True,
        help="plugin checkpoint folder or Hub id (model + processor); convert released ShareGPT4V checkpoints "
        "first with `sharegpt4v convert SRC DST`",
    )
    parser.add_argument(
        "--images",
        required=True,
        help="image folder (searched recursively), text file of image paths, dataset folder or Hub dataset id",
    )
    parser.add_argument("--output", required=True, help="output folder; re-running the same command resumes")
    prompt = parser.add_mutually_exclusive_group()
    prompt.add_argument("--prompt", help="instruction given with every image")
    prompt.add_argument(
        "--preset",
        choices=PRESET_NAMES,
        help="detailed (default): Share-Captioner's prompt, 500 new tokens; short: a brief caption, 128",
    )
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=None, help="default: the preset's")
    parser.add_argument("--num-beams", type=int, default=1, help="1 (default) is greedy")
    parser.add_argument("--repetition-penalty", type=float, default=1.0)
    parser.add_argument(
        "--num-workers",
        type=int,
        default=None,
        help="image decoding/preprocessing processes (default: 4, or fewer on a machine with fewer cores)",
    )
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    parser.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the decode step (GPU, long runs: each new batch size compiles once)",
    )
    parser.add_argument(
        "--cache",
        default="auto",
        choices=["auto", "static", "dynamic"],
        help="KV cache: auto = static on a CPU or with --compile, else transformers' growing cache",
    )
    parser.add_argument("--limit", type=int, default=None, help="caption only the first N images of the source")
    parser.add_argument("--export-json", metavar="FILE", help="also write OUT as a ShareGPT4V-PT JSON corpus")
    parser.add_argument(
        "--retry-degenerate",
        action="store_true",
        help="regenerate captions that loop (a phrase over and over) with a repetition penalty and n-gram ban",
    )
    parser.add_argument("--retry-repetition-penalty", type=float, default=1.2)
    parser.add_argument("--retry-no-repeat-ngram-size", type=int, default=6)
    parser.add_argument("--split", default="train", help="dataset split (dataset sources)")
    parser.add_argument("--image-column", default=None, help="image column (dataset sources; default: detected)")
    parser.add_argument("--id-column", default=None, help="id column (dataset sources; default: 'id' or row index)")
    parser.add_argument("--shard-size", type=int, default=1000, help="rows per parquet shard")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Caption and print the one-line summary (unreadable images do not fail the run: see errors.jsonl)."""
    from .run import caption_images

    summary = caption_images(
        args.model,
        args.images,
        args.output,
        prompt=args.prompt,
        preset=args.preset,
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
        num_beams=args.num_beams,
        repetition_penalty=args.repetition_penalty,
        num_workers=args.num_workers,
        dtype=args.dtype,
        compile=args.compile,
        cache=args.cache,
        limit=args.limit,
        export_json=args.export_json,
        retry_degenerate=args.retry_degenerate,
        retry_repetition_penalty=args.retry_repetition_penalty,
        retry_no_repeat_ngram_size=args.retry_no_repeat_ngram_size,
        split=args.split,
        image_column=args.image_column,
        id_column=args.id_column,
        shard_size=args.shard_size,
        progress=not args.no_progress,
    )
    from .run import _partial_state

    if _partial_state().is_main_process:
        print(summary.line())
    return 0
