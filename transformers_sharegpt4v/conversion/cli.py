"""`sharegpt4v convert SRC DST [--vision-tower VIT] [--to sharegpt4v|llava-hf] [--dtype ...]`.

The options of `convert_checkpoint` (convert.py) as one dataclass. This module imports nothing heavy, so that
`sharegpt4v convert --help` answers at once; the conversion code (torch, transformers) loads in `run`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..arguments import positional

__all__ = ["ARGUMENTS", "ConvertArguments", "run"]


@dataclass
class ConvertArguments:
    """`sharegpt4v convert`."""

    src: str = positional("checkpoint folder or Hub id: released ShareGPT4V/LLaVA-1.5, llava-hf or plugin")
    dst: str = positional("output folder")
    vision_tower: str | None = field(
        default=None,
        metadata={
            "help": "vision tower folder or Hub id for released checkpoints (default: the config's mm_vision_tower)",
            "metavar": "VIT",
        },
    )
    to: str = field(default="sharegpt4v", metadata={"help": "output format", "choices": ["sharegpt4v", "llava-hf"]})
    dtype: str = field(
        default="auto",
        metadata={"help": "weights dtype (auto: keep)", "choices": ["auto", "float32", "float16", "bfloat16"]},
    )
    max_shard_size: str = field(default="5GB", metadata={"help": "largest safetensors shard (default 5GB)"})
    overwrite: bool = field(default=False, metadata={"help": "replace a non-empty output folder"})


ARGUMENTS = ConvertArguments


def run(args: ConvertArguments) -> int:
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
