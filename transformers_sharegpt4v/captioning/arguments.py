"""The options of `sharegpt4v caption` and of `caption_images`: one dataclass, light to import (no torch).

sharegpt4v caption --model ShareGPT4V-7B --images images/ --output captions/ --preset detailed
sharegpt4v caption --config caption.yaml --batch-size 32      # defaults < YAML < flags
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ..dtypes import DTYPE_CHOICES
from ..errors import UsageError

__all__ = ["PRESETS", "CaptionArguments"]

# preset -> (prompt, default max_new_tokens)
PRESETS: dict[str, tuple[str, int]] = {
    # Share-Captioner's prompt and its max length (docs/reference.md, "Share-Captioner").
    "detailed": ("Analyze the image in a comprehensive and detailed manner.", 500),
    # One of LLaVA's brief-description prompts; 128 is the evaluation budget for short answers.
    "short": ("Describe the image concisely.", 128),
}
CACHES = ("auto", "static", "dynamic")


@dataclass
class CaptionArguments:
    """Everything `sharegpt4v caption` takes; `caption_images(CaptionArguments(...))` runs it from Python."""

    model: str = field(
        metadata={
            "help": "plugin checkpoint folder or Hub id (model + processor); convert released ShareGPT4V "
            "checkpoints first with `sharegpt4v convert SRC DST`"
        }
    )
    images: str | os.PathLike = field(
        metadata={
            "help": "image folder (searched recursively), text file of image paths, dataset folder or Hub dataset id"
        }
    )
    output: str | os.PathLike = field(metadata={"help": "output folder; re-running the same command resumes"})
    prompt: str | None = field(default=None, metadata={"help": "instruction given with every image (or --preset)"})
    preset: str | None = field(
        default=None,
        metadata={
            "help": "detailed (default): Share-Captioner's prompt, 500 new tokens; short: a brief caption, 128",
            "choices": list(PRESETS),
        },
    )
    batch_size: int = field(default=16, metadata={"help": "images per generate call"})
    max_new_tokens: int | None = field(default=None, metadata={"help": "default: the preset's"})
    num_beams: int = field(default=1, metadata={"help": "1 (default) is greedy"})
    repetition_penalty: float = field(default=1.0, metadata={"help": "generation's repetition penalty"})
    num_workers: int | None = field(
        default=None,
        metadata={
            "help": "image decoding/preprocessing processes (default: 4, or fewer on a machine with fewer cores)"
        },
    )
    dtype: str = field(default="auto", metadata={"help": "weights dtype", "choices": list(DTYPE_CHOICES)})
    compile: bool = field(
        default=False,
        metadata={"help": "torch.compile the decode step (GPU, long runs: each new batch size compiles once)"},
    )
    cache: str = field(
        default="auto",
        metadata={
            "help": "KV cache: auto = static on a CPU or with --compile, else transformers' growing cache",
            "choices": list(CACHES),
        },
    )
    limit: int | None = field(default=None, metadata={"help": "caption only the first N images of the source"})
    export_json: str | os.PathLike | None = field(
        default=None, metadata={"help": "also write OUT as a ShareGPT4V-PT JSON corpus", "metavar": "FILE"}
    )
    retry_degenerate: bool = field(
        default=False,
        metadata={
            "help": "regenerate captions that loop (a phrase over and over) with a repetition penalty and n-gram ban"
        },  # fmt: skip
    )
    retry_repetition_penalty: float = field(default=1.2, metadata={"help": "repetition penalty of the retry"})
    retry_no_repeat_ngram_size: int = field(default=6, metadata={"help": "n-gram ban of the retry"})
    split: str = field(default="train", metadata={"help": "dataset split (dataset sources)"})
    image_column: str | None = field(
        default=None, metadata={"help": "image column (dataset sources; default: detected)"}
    )
    id_column: str | None = field(
        default=None, metadata={"help": "id column (dataset sources; default: 'id' or row index)"}
    )
    rows_per_shard: int = field(
        default=1000, metadata={"help": "rows per parquet shard", "metavar": "ROWS", "deprecated": ["--shard-size"]}
    )
    progress: bool = field(default=True, metadata={"help": "no progress bar"})

    def check(self) -> None:
        """Refuse bad values (one `UsageError` naming the flag) before anything is loaded or written."""
        for name, value in (("batch_size", self.batch_size), ("rows_per_shard", self.rows_per_shard)):
            if value < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be >= 1, got {value}.")
        for name, value in (("limit", self.limit), ("num_workers", self.num_workers)):
            if value is not None and value < 0:
                raise UsageError(f"--{name.replace('_', '-')} must be >= 0, got {value}.")
        if self.compile and self.cache == "dynamic":
            raise UsageError(
                "--compile needs the static cache (torch.compile cannot follow a growing cache): drop --cache dynamic."
            )
        self.resolve_prompt()

    def resolve_prompt(self) -> tuple[str, int]:
        """(prompt, default max_new_tokens): an explicit prompt wins; otherwise the preset (default: detailed)."""
        if self.prompt is not None and self.preset is not None:
            raise UsageError("Pass either --prompt or --preset, not both.")
        if self.prompt is not None:
            if not self.prompt.strip():
                raise UsageError("--prompt is empty: give the instruction, or leave it out for --preset detailed.")
            return self.prompt, PRESETS["detailed"][1]
        preset = self.preset or "detailed"
        if preset not in PRESETS:
            raise UsageError(f"Unknown --preset {preset!r}; choose one of {sorted(PRESETS)}.")
        return PRESETS[preset]
