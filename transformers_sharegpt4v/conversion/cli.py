"""`sharegpt4v convert SRC DST [--vision-tower VIT] [--to sharegpt4v|llava-hf] [--dtype ...]`.

The options of `convert_checkpoint` (convert.py). This module imports nothing heavy, so that
`sharegpt4v convert --help` answers at once; the conversion code (torch, transformers) loads in `run`.
"""

from __future__ import annotations

import argparse

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", help="checkpoint folder or Hub id: released ShareGPT4V/LLaVA-1.5, llava-hf or plugin")
    parser.add_argument("dst", help="output folder")
    parser.add_argument(
        "--vision-tower",
        default=None,
        metavar="VIT",
        help="vision tower folder or Hub id for released checkpoints (default: the config's mm_vision_tower)",
    )
    parser.add_argument("--to", choices=["sharegpt4v", "llava-hf"], default="sharegpt4v", help="output format")
    parser.add_argument(
        "--dtype",
        choices=["auto", "float32", "float16", "bfloat16"],
        default="auto",
        help="weights dtype (auto: keep)",
    )
    parser.add_argument("--max-shard-size", default="5GB", help="largest safetensors shard (default 5GB)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")


def run(args: argparse.Namespace) -> int:
    from .convert import convert_checkpoint

    dst = convert_checkpoint(
        args.src,
        args.dst,
        to=args.to,
        vision_tower=args.vision_tower,
        dtype=args.dtype,
        max_shard_size=args.max_shard_size,
        overwrite=args.overwrite,
    )
    files = sorted(p.name for p in dst.iterdir())
    weights = sum(p.stat().st_size for p in dst.glob("*.safetensors"))
    print(f"Converted {args.src} -> {dst} ({args.to}): {weights / 1e9:.2f} GB of safetensors, {len(files)} files.")
    return 0
