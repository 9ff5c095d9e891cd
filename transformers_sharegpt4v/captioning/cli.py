"""`sharegpt4v caption`: caption images at scale (batched, resumable exactly once, multi-process).

sharegpt4v convert Lin-Chen/ShareGPT4V-7B ShareGPT4V-7B    # a released checkpoint: convert it once
sharegpt4v caption --model ShareGPT4V-7B --images images/ --output captions/ --preset detailed
accelerate launch --num_processes 8 -m transformers_sharegpt4v.cli caption --model ... --output captions/

The options are the fields of `CaptionArguments` (arguments.py), parsed by `transformers_sharegpt4v.arguments`
(defaults < `--config FILE.yaml` < flags).
"""

from __future__ import annotations

from .arguments import CaptionArguments

__all__ = ["ARGUMENTS", "run"]

ARGUMENTS = CaptionArguments


def run(args: CaptionArguments) -> int:
    """Caption and print the one-line summary (unreadable images do not fail the run: see errors.jsonl)."""
    from .run import _partial_state, caption_images

    summary = caption_images(args)
    if _partial_state().is_main_process:
        print(summary.line())
    return 0
