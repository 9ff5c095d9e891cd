"""Captioning at scale: the Share-Captioner workflow, batched, resumable exactly once, multi-process.

    from transformers_sharegpt4v.captioning import caption_images
    summary = caption_images("path/to/captioner", "path/to/images", "captions/", preset="detailed")
    print(summary.line())

Pieces: `loader` (sources and DataLoader workers), `engine` (batched generation with one prompt),
`writer` (atomic parquet shards, run.json, errors.jsonl), `degenerate` (the repetition-loop rule, shared with
`sharegpt4v data stats`: `transformers_sharegpt4v.degenerate`), `run` (`caption_images`, `export_to_json`),
`cli` (`sharegpt4v caption`).
"""

from .degenerate import find_repetition, is_degenerate
from .engine import PRESETS, CaptionEngine, GenerationSettings
from .loader import ImageSource, list_source
from .run import CaptionSummary, JSONExport, caption_images, check_model_format, export_to_json, load_captioner

__all__ = [
    "PRESETS",
    "CaptionEngine",
    "CaptionSummary",
    "GenerationSettings",
    "ImageSource",
    "JSONExport",
    "caption_images",
    "check_model_format",
    "export_to_json",
    "find_repetition",
    "is_degenerate",
    "list_source",
    "load_captioner",
]
