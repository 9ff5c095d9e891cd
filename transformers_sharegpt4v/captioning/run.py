"""`caption_images`: list the source, take this process's share, skip what is done, caption the rest.

Multi-process (`accelerate launch --num_processes N`): every process lists the same source in the same
order, keeps the positions i with i % N == rank (after `limit`), and only then drops the images already in
OUT. Sharing before filtering makes the shares disjoint and independent of timing (a process that starts
late and sees more finished rows still takes exactly its own positions), and their union is the corpus one
process makes. Each process writes its own shards (`data/train-r{rank}-*.parquet`), so no two processes ever write the
same file; errors.jsonl is appended to with O_APPEND, one whole line per write.
"""

from __future__ import annotations

import os
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from tqdm.auto import tqdm

from ..errors import UsageError
from .arguments import CaptionArguments
from .engine import CaptionEngine, GenerationSettings, resolve_dtype
from .export import JSONExport, export_to_json
from .loader import IMAGE_EXTENSIONS, ImageSource, list_source, make_loader, source_root
from .writer import (
    ERRORS_FILE,
    SCHEMA,
    ShardWriter,
    append_errors,
    check_run_config,
    list_shards,
    read_done_keys,
    record_retry_settings,
    rewrite_shard,
)

__all__ = [
    "CaptionSummary",
    "caption_images",
    "check_model_format",
    "default_num_workers",
    "load_captioner",
]


@dataclass
class CaptionSummary:
    """Counts of one call (summed over processes), where the output is, and what `--export-json` wrote."""

    output: str
    done: int = 0  # captioned in this run
    skipped: int = 0  # already in OUT before this run
    failed: int = 0  # unreadable images, see errors.jsonl
    # degenerate captions met in this run: new ones (counted before their retry) plus, with
    # --retry-degenerate, the not-yet-retried degenerate rows of earlier runs picked up from OUT
    degenerate: int = 0
    retried: int = 0  # captions regenerated with the retry settings (new ones and ones already in OUT)
    fixed: int = 0  # retried captions that are no longer degenerate
    tokens: int = 0  # caption tokens generated (final captions)
    seconds: float = 0.0
    export: JSONExport | None = None  # what `export_json` wrote (main process only)
    export_json: str | None = None  # the file it wrote

    @property
    def exported(self) -> int | None:
        """Records written to `export_json` (None: no export)."""
        return None if self.export is None else self.export.records

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
        if self.export is not None:
            text += f"; exported {self.export.records} records to {self.export_json}"
            if self.export.left_out:
                text += f" ({self.export.left_out} degenerate or empty captions left out)"
            if self.export.image_root:
                text += f" (build it with --image-root {self.export.image_root})"
        return text


def _model_name(model: str) -> str:
    return str(Path(model).resolve()) if Path(model).is_dir() else model


def check_model_format(model: str) -> None:
    """Refuse a released (original-format) ShareGPT4V / LLaVA-1.5 checkpoint, which transformers cannot load:
    it must be converted first. Anything else (including a config that cannot be read here) is left to
    `from_pretrained` to judge."""
    from transformers import PretrainedConfig

    from ..conversion import detect_source_format

    try:
        config, _ = PretrainedConfig.get_config_dict(model)
    except Exception:  # noqa: BLE001 - unreadable or unreachable: from_pretrained says why
        return
    try:
        source_format = detect_source_format(config, model)
    except ValueError:
        return
    if source_format == "original":
        model = str(model).rstrip("/")
        name = f"{model}-converted" if Path(model).is_dir() else Path(model).name  # Hub id: its name
        raise UsageError(
            f"--model {model!r} is a released ShareGPT4V checkpoint (model_type {config.get('model_type')!r}, "
            f"original format), which transformers cannot load: run `sharegpt4v convert {model} {name}` first "
            f"and pass the converted folder (`--model {name}`)."
        )


def load_captioner(
    model: str, dtype: str | torch.dtype = "auto", device: str | torch.device | None = None
) -> tuple[Any, Any]:
    """(model, processor) from a checkpoint folder or Hub id, in eval mode on `device`; a released checkpoint
    is refused with the command that converts it (`check_model_format`)."""
    check_model_format(model)
    return _load_checked(model, dtype, device)


def _load_checked(model: str, dtype: str | torch.dtype, device: str | torch.device | None) -> tuple[Any, Any]:
    """`load_captioner` once `check_model_format` has passed."""
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


def _retry_committed(run: _Run, shards: list[Path]) -> None:
    """Regenerate the degenerate, not yet retried rows of committed shards; each shard belongs to one
    process (by a hash of its name) and is rewritten atomically once all its rows are redone."""
    position_of = {key: position for position, key in enumerate(run.source.keys)}
    captioner, rank, world = run.captioner, run.state.process_index, run.state.num_processes
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
        loader = run.loader([position_of[k] for k in keys])
        for batch in tqdm(loader, desc=f"retry {shard.name}", disable=not run.show_progress, leave=False):
            if batch.keys:
                result = captioner.redo(run.engine.pixel_values(batch.pixels, batch.normalized))
                for j, key in enumerate(batch.keys):
                    for name, values in result.items():
                        columns[name][row_of[key]] = values[j]
        rewrite_shard(shard, pa.table(columns, schema=SCHEMA))


def default_num_workers() -> int:
    """Image decoding processes when none are asked for: 4, but never more than the cores this process may use
    minus one for generation (at least 1): more workers than cores only compete with the model, and the
    DataLoader warns about it."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(4, cores - 1))


def _partial_state() -> Any:
    """accelerate's PartialState; on a machine without CUDA (or with ACCELERATE_USE_CPU=1) it is asked for CPU
    processes explicitly, which is what makes `torchrun` / `accelerate launch --multi_gpu` give several CPU
    ranks (gloo) instead of N independent single-process runs."""
    from accelerate import PartialState

    use_cpu = not torch.cuda.is_available() or os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
    return PartialState(cpu=use_cpu)


@dataclass
class _Run:
    """One call's prepared pieces: what to caption, with what, into where."""

    args: CaptionArguments
    output: Path
    source: ImageSource
    engine: CaptionEngine
    captioner: _Captioner
    num_workers: int
    state: Any

    def loader(self, positions: list[int]) -> Any:
        image_processor = self.engine.processor.image_processor
        return make_loader(self.source, positions, image_processor, self.args.batch_size, self.num_workers)

    @property
    def show_progress(self) -> bool:
        return self.args.progress and self.state.is_local_main_process


def caption_images(
    args: CaptionArguments | str,
    images: str | os.PathLike | None = None,
    output: str | os.PathLike | None = None,
    **options: Any,
) -> CaptionSummary:
    """Caption every image of `args.images` into parquet shards in `args.output`, resuming where a previous run
    stopped. `args` is a `CaptionArguments` (the options of `sharegpt4v caption`, documented there), or the
    model, with `images`, `output` and any other field as keywords:
    `caption_images("captioner", "images/", "captions/", preset="short")`.

    Returns a `CaptionSummary`; its `line()` is what the command prints.
    Under `accelerate launch --num_processes N` each process captions its share; the counts are summed.
    """
    if not isinstance(args, CaptionArguments):
        args = CaptionArguments(model=args, images=images, output=output, **options)
    elif images is not None or output is not None or options:
        raise TypeError("caption_images(args): give a CaptionArguments alone, or the model, images, output, ...")
    # Every check of the input, and loading the model, come before anything is written to OUT: bad input
    # leaves OUT as it was, and the corrected command then runs as if it were the first.
    run = _prepare(args, _partial_state())
    start = time.perf_counter()
    committed = list_shards(run.output)  # before this run writes: candidates for --retry-degenerate
    summary = _caption_share(run)
    if run.captioner.retry is not None:
        _retry_committed(run, committed)
    summary.seconds = time.perf_counter() - start
    captioner = run.captioner
    summary.degenerate, summary.retried, summary.fixed = captioner.found, captioner.retried, captioner.fixed
    if run.state.num_processes > 1:
        summary = _sum_over_processes(summary, run.state)
    if args.export_json is not None:
        run.state.wait_for_everyone()
        if run.state.is_main_process:
            summary.export = export_to_json(run.output, args.export_json)
            summary.export_json = os.fspath(args.export_json)
        # no barrier after the export: the other ranks are done, and a long export (or its error) on the
        # main process must not hold them until the process group times out
    return summary


def _prepare(args: CaptionArguments, state: Any) -> _Run:
    """Check every input, list the images and load the model; only then create OUT and record the run."""
    args.check()
    prompt, default_max_new_tokens = args.resolve_prompt()
    output = Path(args.output)
    if output.exists() and not output.is_dir():
        raise UsageError(f"--output {output} exists and is not a folder: choose a folder.")
    from ..hub import check_model_argument

    check_model_argument(
        str(args.model), "--model", "a checkpoint folder (model + processor; see `sharegpt4v convert`)"
    )
    check_model_format(str(args.model))
    settings = GenerationSettings(
        max_new_tokens=args.max_new_tokens or default_max_new_tokens,
        num_beams=args.num_beams,
        repetition_penalty=args.repetition_penalty,
    )
    retry = None
    if args.retry_degenerate:
        retry = settings.for_retry(args.retry_repetition_penalty, args.retry_no_repeat_ngram_size)
    config = _run_config(args, prompt, settings, state)
    if output.is_dir():
        check_run_config(output, config, is_main=False)  # compare only: a changed setting is refused now
    source = _list_images(args, state)
    engine = _load_engine(args, prompt, state)
    output.mkdir(parents=True, exist_ok=True)
    check_run_config(output, config, is_main=state.is_main_process)
    if retry is not None and state.is_main_process:
        record_retry_settings(output, retry.to_dict())
    num_workers = default_num_workers() if args.num_workers is None else args.num_workers
    return _Run(args, output, source, engine, _Captioner(engine, settings, retry), num_workers, state)


def _run_config(args: CaptionArguments, prompt: str, settings: GenerationSettings, state: Any) -> dict[str, Any]:
    """What run.json records: a later run on the same OUT must agree on model, prompt and generation."""
    config = {
        "model": _model_name(str(args.model)),
        "prompt": prompt,
        "generation": settings.to_dict(),
        "images": os.fspath(args.images),
        "image_root": source_root(args.images, exclude=args.output),  # what the keys are relative to (export)
        "dtype": str(resolve_dtype(args.dtype, state.device)).removeprefix("torch."),  # informative, not checked
    }
    if config["image_root"] is None:  # a dataset source: how to find its images again (export)
        config["dataset"] = {"split": args.split, "image_column": args.image_column, "id_column": args.id_column}
    return config


def _list_images(args: CaptionArguments, state: Any) -> ImageSource:
    with state.main_process_first():  # a Hub dataset is downloaded once
        source = list_source(
            args.images, split=args.split, image_column=args.image_column, id_column=args.id_column,
            exclude=Path(args.output),
        )  # fmt: skip
    if len(source) == 0:
        extensions = ", ".join(sorted(extension.lstrip(".") for extension in IMAGE_EXTENSIONS))
        raise UsageError(f"No images found in {os.fspath(args.images)!r} (extensions: {extensions}): check --images.")
    return source


def _load_engine(args: CaptionArguments, prompt: str, state: Any) -> CaptionEngine:
    try:
        model, processor = _load_checked(str(args.model), args.dtype, state.device)  # format checked before
    except OSError as error:  # transformers' "no weights / no processor file / not a valid repo" errors
        raise UsageError(f"--model {args.model} could not be loaded: {str(error).splitlines()[0]}") from error
    return CaptionEngine(model, processor, prompt, cache=args.cache, compile=args.compile)


def _caption_share(run: _Run) -> CaptionSummary:
    """Caption this process's share of the images that OUT does not hold yet, committing a shard per batch."""
    args, source, rank, world = run.args, run.source, run.state.process_index, run.state.num_processes
    summary = CaptionSummary(output=str(run.output))
    positions = range(len(source)) if args.limit is None else range(min(args.limit, len(source)))
    share = positions[rank::world]
    done = read_done_keys(run.output)
    pending = [p for p in share if source.keys[p] not in done]
    summary.skipped = len(share) - len(pending)
    del done
    writer = ShardWriter(run.output, prefix=f"r{rank:03d}", rows_per_shard=args.rows_per_shard)
    description = "caption" if world == 1 else f"caption (rank {rank}/{world})"
    bar = tqdm(total=len(pending), desc=description, unit="img", disable=not run.show_progress, smoothing=0.05)
    # no DataLoader (and no worker processes) when there is nothing to caption, as on a finished run's resume
    for batch in run.loader(pending) if pending else []:
        if batch.failed_keys:
            summary.failed += append_errors(run.output, batch.failed_keys, batch.errors, source.description)
        if batch.keys:
            result = run.captioner(run.engine.pixel_values(batch.pixels, batch.normalized))
            writer.write({"image": batch.keys, **result})
            summary.done += len(batch.keys)
            summary.tokens += sum(result["num_tokens"])
        bar.update(len(batch.keys) + len(batch.failed_keys))
        bar.set_postfix(failed=summary.failed, degenerate=run.captioner.found, refresh=False)
    bar.close()
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
