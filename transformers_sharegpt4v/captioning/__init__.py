"""Captioning at scale: the Share-Captioner workflow, batched, resumable exactly once, multi-process.

    from transformers_sharegpt4v.captioning import caption_images
    summary = caption_images("path/to/captioner", "path/to/images", "captions/", preset="detailed")
    print(summary.line())

    # or with every option of `sharegpt4v caption` in one dataclass
    from transformers_sharegpt4v.captioning import CaptionArguments
    summary = caption_images(CaptionArguments(model="captioner", images="images/", output="captions/"))

Pieces: `arguments` (`CaptionArguments`, the options), `loader` (sources and DataLoader workers), `engine`
(batched generation with one prompt), `writer` (atomic parquet shards, run.json, errors.jsonl), `run`
(`caption_images`), `export` (`export_to_json`), `cli` (`sharegpt4v caption`). The repetition-loop rule (shared with `sharegpt4v data stats`) is
`transformers_sharegpt4v.degenerate`.
"""

from .._lazy import lazy_attributes

# Heavy imports (torch, transformers, pyarrow) happen when a name is first used: `sharegpt4v caption --help`
# and the light modules of this package (cli.py) cost nothing to import.
_NAMES = {
    "find_repetition": "degenerate",  # transformers_sharegpt4v.degenerate, the package's one rule
    "is_degenerate": "degenerate",
    "PRESETS": "engine",
    "CaptionEngine": "engine",
    "GenerationSettings": "engine",
    "ImageSource": "loader",
    "list_source": "loader",
    "CaptionArguments": "arguments",
    "CaptionSummary": "run",
    "JSONExport": "export",
    "caption_images": "run",
    "check_model_format": "run",
    "export_to_json": "export",
    "load_captioner": "run",
}

__all__ = sorted(_NAMES)


__getattr__ = lazy_attributes(
    __name__, {name: (".." if module == "degenerate" else ".") + module for name, module in _NAMES.items()}
)
