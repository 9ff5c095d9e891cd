"""`caption_images`: list the source, take this process's share, skip what is done, caption the rest.

Multi-process (`accelerate launch --num_processes N`): every process lists the same source in the same
order, keeps the positions i with i % N == rank (after `limit`), and only then drops the images already in
OUT. Sharing before filtering makes the shares disjoint and independent of timing (a process that starts
late and sees more finished rows still takes exactly its own positions), and their union is the corpus one
process makes. Each process writes its own shards (`data/train-r{rank}-*.parquet`), so no two processes ever write the
same file; errors.jsonl is appended to with O_APPEND, one whole line per write.
"""

from __future__ import annotations

import json
import os
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
from tqdm.auto import tqdm

from .engine import PRESETS, CaptionEngine, GenerationSettings, resolve_dtype
from .loader import IMAGE_EXTENSIONS, ImageSource, list_source, make_loader
from .writer import (
    ERRORS_FILE,
    RUN_FILE,
    SCHEMA,
    ShardWriter,
    append_errors,
    check_run_config,
    list_shards,
    read_done_keys,
    record_retry_settings,
    rewrite_shard,
)

__all__ = ["CaptionSummary", "caption_images", "export_to_json", "load_captioner", "resolve_prompt"]


@dataclass
class CaptionSummary:
    """Counts of one call (summed over processes), and where the output is."""

    output: str
    done: int = 0  # captioned in this run
    skipped: int = 0  # already in OUT before this run
    failed: int = 0  # unreadable images, see errors.jsonl
    degenerate: int = 0  # degenerate captions generated in this run (before any retry)
    retried: int = 0  # captions regenerated with the retry settings (new ones and ones already in OUT)
    fixed: int = 0  # retried captions that are no longer degenerate
    tokens: int = 0  # caption tokens generated (final captions)
    seconds: float = 0.0
    exported: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def images_per_second(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        text = (
            f"caption: {self.done} done, {self.skipped} skipped as already done, {self.failed} failed"
            f"{f' (see {Path(self.output) / ERRORS_FILE})' if self.failed else ''}, {self.degenerate} degenerate"
            f" ({f'{self.retried} retried, {self.fixed} fixed' if self.retried else 'not retried'}), {self.images_per_second:.2f} images/s, "
            f"{self.tokens / self.seconds if self.seconds > 0 else 0.0:.1f} tokens/s, {self.seconds:.1f} s -> {self.output}"
        )
        if self.exported is not None:
            text += f"; exported {self.exported} records to {self.extra.get('export_json')}"
            if self.extra.get("export_left_out"):
                text += f" ({self.extra['export_left_out']} degenerate or empty captions left out)"
        return text


def resolve_prompt(prompt: str | None, preset: str | None) -> tuple[str, int]:
    """(prompt, default max_new_tokens): an explicit prompt wins; otherwise the preset (default: detailed)."""
    if prompt is not None and preset is not None:
        raise ValueError("Pass either --prompt or --preset, not both.")
    if prompt is not None:
        if not prompt.strip():
            raise ValueError("--prompt is empty.")
        return prompt, PRESETS["detailed"][1]
    preset = preset or "detailed"
    if preset not in PRESETS:
        raise ValueError(f"Unknown --preset {preset!r}; choose one of {sorted(PRESETS)}.")
    return PRESETS[preset]


def _model_name(model: str) -> str:
    return str(Path(model).resolve()) if Path(model).is_dir() else model


def load_captioner(
    model: str, dtype: str | torch.dtype = "auto", device: str | torch.device | None = None
) -> tuple[Any, Any]:
    """(model, processor) from a checkpoint folder or Hub id, in eval mode on `device`."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    import transformers_sharegpt4v  # noqa: F401  (registers the Auto classes)

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    torch_dtype = resolve_dtype(dtype, device)
    captioner = AutoModelForImageTextToText.from_pretrained(model, dtype=torch_dtype).to(device).eval()
    processor = AutoProcessor.from_pretrained(model)
    return captioner, processor


class _Captioner:
    """Runs batches through the engine; with a retry setting, degenerate captions are regenerated at once.
    Counts degenerate captions found, retried, and fixed (no longer degenerate after the retry)."""

    def __init__(self, engine: CaptionEngine, settings: GenerationSettings, retry: GenerationSettings | None) -> None:
        self.engine, self.settings, self.retry = engine, settings, retry
        self.found = self.retried = self.fixed = 0

    def __call__(self, pixel_values: torch.Tensor) -> dict[str, list]:
        result = self.engine.generate(pixel_values, self.settings)
        result["retried"] = [False] * pixel_values.shape[0]
        index = [i for i, flag in enumerate(result["degenerate"]) if flag]
        self.found += len(index)
        if self.retry is not None and index:
            again = self.redo(pixel_values[index])
            for j, i in enumerate(index):
                for name, values in again.items():
                    result[name][i] = values[j]
        return result

    def redo(self, pixel_values: torch.Tensor) -> dict[str, list]:
        """Regenerate captions with the retry settings (rows marked `retried`)."""
        result = self.engine.generate(pixel_values, self.retry)
        result["retried"] = [True] * pixel_values.shape[0]
        self.retried += pixel_values.shape[0]
        self.fixed += pixel_values.shape[0] - sum(result["degenerate"])
        return result


def _retry_committed(
    shards: list[Path],
    source: ImageSource,
    captioner: _Captioner,
    image_processor: Any,
    batch_size: int,
    num_workers: int,
    rank: int,
    world: int,
    progress: bool,
) -> None:
    """Regenerate the degenerate, not yet retried rows of committed shards; each shard belongs to one
    process (by a hash of its name) and is rewritten atomically once all its rows are redone."""
    position_of = {key: position for position, key in enumerate(source.keys)}
    for shard in shards:
        if zlib.crc32(shard.name.encode()) % world != rank:
            continue
        table = pq.read_table(shard)
        mask = np.asarray(table.column("degenerate").to_numpy(zero_copy_only=False)) & ~np.asarray(
            table.column("retried").to_numpy(zero_copy_only=False)
        )
        rows = [i for i in np.flatnonzero(mask).tolist() if table.column("image")[i].as_py() in position_of]
        if not rows:
            continue
        keys = [table.column("image")[i].as_py() for i in rows]
        captioner.found += len(keys)
        columns = {name: table.column(name).to_pylist() for name in SCHEMA.names}
        row_of = dict(zip(keys, rows, strict=True))
        loader = make_loader(source, [position_of[k] for k in keys], image_processor, batch_size, num_workers)
        for batch in tqdm(loader, desc=f"retry {shard.name}", disable=not progress, leave=False):
            if batch.keys:
                result = captioner.redo(captioner.engine.pixel_values(batch.pixels, batch.normalized))
                for j, key in enumerate(batch.keys):
                    for name, values in result.items():
                        columns[name][row_of[key]] = values[j]
        rewrite_shard(shard, pa.table(columns, schema=SCHEMA))


def _partial_state() -> Any:
    """accelerate's PartialState; on a machine without CUDA (or with ACCELERATE_USE_CPU=1) it is asked for CPU
    processes explicitly, which is what makes `torchrun` / `accelerate launch --multi_gpu` give several CPU
    ranks (gloo) instead of N independent single-process runs."""
    from accelerate import PartialState

    use_cpu = not torch.cuda.is_available() or os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
    return PartialState(cpu=use_cpu)


def caption_images(
    model: str,
    images: str | os.PathLike,
    output: str | os.PathLike,
    *,
    prompt: str | None = None,
    preset: str | None = None,
    batch_size: int = 16,
    max_new_tokens: int | None = None,
    num_beams: int = 1,
    repetition_penalty: float = 1.0,
    num_workers: int = 4,
    dtype: str = "auto",
    limit: int | None = None,
    export_json: str | os.PathLike | None = None,
    retry_degenerate: bool = False,
    retry_repetition_penalty: float = 1.2,
    retry_no_repeat_ngram_size: int = 6,
    split: str = "train",
    image_column: str | None = None,
    id_column: str | None = None,
    shard_size: int = 1000,
    progress: bool = True,
) -> CaptionSummary:
    """Caption every image of `images` into parquet shards in `output`, resuming where a previous run stopped.

    Args:
        model: checkpoint folder or Hub id of a ShareGPT4V model with its processor.
        images: an image folder (recursive), a text file of image paths, a dataset folder or a Hub dataset id.
        output: the output folder (created; on a re-run, finished images are skipped).
        prompt / preset: the instruction; preset "detailed" (default) is Share-Captioner's prompt.
        batch_size, max_new_tokens, num_beams, repetition_penalty: generation (greedy, one beam by default;
            max_new_tokens defaults to the preset's: 500 detailed, 128 short).
        num_workers: DataLoader processes that decode and preprocess images.
        dtype: auto, float32, bfloat16 or float16.
        limit: caption only the first `limit` images of the source.
        export_json: also write the ShareGPT4V-PT JSON corpus of OUT to this file (after captioning).
        retry_degenerate: regenerate degenerate captions with `retry_repetition_penalty` and
            `retry_no_repeat_ngram_size` (new ones at once, earlier ones from OUT's shards).
        split, image_column, id_column: for dataset sources.
        shard_size: rows per parquet shard.

    Returns a `CaptionSummary`; its `line()` is what the command prints.
    Under `accelerate launch --num_processes N` each process captions its share; the counts are summed.
    """
    state = _partial_state()
    rank, world = state.process_index, state.num_processes
    output = Path(output)
    prompt, default_max_new_tokens = resolve_prompt(prompt, preset)
    settings = GenerationSettings(
        max_new_tokens=max_new_tokens or default_max_new_tokens,
        num_beams=num_beams,
        repetition_penalty=repetition_penalty,
    )
    retry = settings.for_retry(retry_repetition_penalty, retry_no_repeat_ngram_size) if retry_degenerate else None
    if batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {batch_size}.")
    if limit is not None and limit < 0:
        raise ValueError(f"--limit must be >= 0, got {limit}.")

    config = {
        "model": _model_name(str(model)),
        "prompt": prompt,
        "generation": settings.to_dict(),
        "images": os.fspath(images),
        "dtype": str(resolve_dtype(dtype, state.device)).removeprefix("torch."),  # informative, not checked
    }
    if output.exists() and not output.is_dir():
        raise ValueError(f"--output {output} exists and is not a folder.")
    output.mkdir(parents=True, exist_ok=True)
    check_run_config(output, config, is_main=state.is_main_process)
    if retry is not None and state.is_main_process:
        record_retry_settings(output, retry.to_dict())

    with state.main_process_first():  # a Hub dataset is downloaded once
        source = list_source(images, split=split, image_column=image_column, id_column=id_column, exclude=output)
    if len(source) == 0:
        raise ValueError(
            f"No images found in {os.fspath(images)!r} (extensions: jpg, jpeg, png, webp, bmp, gif, tif)."
        )

    captioner_model, processor = load_captioner(str(model), dtype, state.device)
    engine = CaptionEngine(captioner_model, processor, prompt)
    captioner = _Captioner(engine, settings, retry)
    summary = CaptionSummary(output=str(output))
    start = time.perf_counter()

    positions = range(len(source)) if limit is None else range(min(limit, len(source)))
    share = positions[rank::world]
    committed_shards = list_shards(output)  # before this run writes: candidates for --retry-degenerate
    done = read_done_keys(output)
    pending = [p for p in share if source.keys[p] not in done]
    summary.skipped = len(share) - len(pending)
    del done

    writer = ShardWriter(output, prefix=f"r{rank:03d}", shard_size=shard_size)
    show = progress and state.is_local_main_process
    bar = tqdm(
        total=len(pending),
        desc="caption" if world == 1 else f"caption (rank {rank}/{world})",
        unit="img",
        disable=not show,
        smoothing=0.05,
    )
    loader = make_loader(source, pending, processor.image_processor, batch_size, num_workers)
    for batch in loader:
        if batch.failed_keys:
            summary.failed += append_errors(output, batch.failed_keys, batch.errors, source.description)
        if batch.keys:
            result = captioner(engine.pixel_values(batch.pixels, batch.normalized))
            writer.write({"image": batch.keys, **result})
            summary.done += len(batch.keys)
            summary.tokens += sum(result["num_tokens"])
        bar.update(len(batch.keys) + len(batch.failed_keys))
        bar.set_postfix(failed=summary.failed, degenerate=captioner.found, refresh=False)
    bar.close()

    if retry is not None:
        _retry_committed(
            committed_shards, source, captioner, processor.image_processor, batch_size, num_workers, rank, world, show
        )
    summary.seconds = time.perf_counter() - start
    summary.degenerate, summary.retried, summary.fixed = captioner.found, captioner.retried, captioner.fixed

    if world > 1:
        summary = _sum_over_processes(summary, state)
    if export_json is not None:
        state.wait_for_everyone()
        if state.is_main_process:
            summary.exported, summary.extra["export_left_out"] = export_to_json(output, export_json)
            summary.extra["export_json"] = os.fspath(export_json)
        state.wait_for_everyone()
    return summary


def _sum_over_processes(summary: CaptionSummary, state: Any) -> CaptionSummary:
    from accelerate.utils import gather_object

    parts = gather_object([summary])
    total = CaptionSummary(output=summary.output)
    for part in parts:
        for name in ("done", "skipped", "failed", "degenerate", "retried", "fixed", "tokens"):
            setattr(total, name, getattr(total, name) + getattr(part, name))
        total.seconds = max(total.seconds, part.seconds)
    return total


def export_to_json(
    output: str | os.PathLike, path: str | os.PathLike, include_degenerate: bool = False
) -> tuple[int, int]:
    """Write OUT's captions as a ShareGPT4V-PT JSON list to `path` (atomically).

    Records `{"id", "image", "conversations": [{"from": "human", "value": "<image>\\n" + prompt},
    {"from": "gpt", "value": caption}]}` sorted by image; `id` is the image key without its extension.
    Degenerate captions are left out unless `include_degenerate`; empty captions always (a corpus record
    needs an answer). Returns (records written, captions left out).
    """
    output, path = Path(output), Path(path)
    run_file = output / RUN_FILE
    if not run_file.is_file():
        raise ValueError(f"{output} is not a caption folder: {run_file} is missing.")
    prompt = json.loads(run_file.read_text(encoding="utf-8"))["prompt"]
    shards = list_shards(output)
    if not shards:
        raise ValueError(f"{output} has no committed caption shards in {output / 'data'}.")
    table = pa.concat_tables(pq.read_table(shard, columns=["image", "caption", "degenerate"]) for shard in shards)
    total = table.num_rows
    keep = pc.greater(pc.utf8_length(pc.utf8_trim_whitespace(table.column("caption"))), 0)
    if not include_degenerate:
        keep = pc.and_(keep, pc.invert(table.column("degenerate")))
    table = table.filter(keep).sort_by("image")
    human = json.dumps("<image>\n" + prompt, ensure_ascii=False)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write("[")
        for image, caption in zip(table.column("image").to_pylist(), table.column("caption").to_pylist(), strict=True):
            stem, extension = os.path.splitext(image)
            record_id = stem if extension.lower() in IMAGE_EXTENSIONS else image
            handle.write(
                ("," if count else "")
                + f'\n{{"id": {json.dumps(record_id, ensure_ascii=False)}, "image": {json.dumps(image, ensure_ascii=False)}, '
                + f'"conversations": [{{"from": "human", "value": {human}}}, '
                + f'{{"from": "gpt", "value": {json.dumps(caption, ensure_ascii=False)}}}]}}'
            )
            count += 1
        handle.write("\n]\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    return count, total - count
