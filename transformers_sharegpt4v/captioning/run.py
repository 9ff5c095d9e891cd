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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
from tqdm.auto import tqdm

from ..errors import UsageError
from .engine import PRESETS, CaptionEngine, GenerationSettings, resolve_dtype
from .loader import IMAGE_EXTENSIONS, ImageSource, list_source, make_loader, relative_inside, source_root
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

__all__ = [
    "CaptionSummary",
    "JSONExport",
    "caption_images",
    "check_model_format",
    "export_to_json",
    "default_num_workers",
    "load_captioner",
    "resolve_prompt",
]


@dataclass
class CaptionSummary:
    """Counts of one call (summed over processes), and where the output is."""

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
            if self.extra.get("export_image_root"):
                text += f" (build it with --image-root {self.extra['export_image_root']})"
        return text


def resolve_prompt(prompt: str | None, preset: str | None) -> tuple[str, int]:
    """(prompt, default max_new_tokens): an explicit prompt wins; otherwise the preset (default: detailed)."""
    if prompt is not None and preset is not None:
        raise UsageError("Pass either --prompt or --preset, not both.")
    if prompt is not None:
        if not prompt.strip():
            raise UsageError("--prompt is empty: give the instruction, or leave it out for --preset detailed.")
        return prompt, PRESETS["detailed"][1]
    preset = preset or "detailed"
    if preset not in PRESETS:
        raise UsageError(f"Unknown --preset {preset!r}; choose one of {sorted(PRESETS)}.")
    return PRESETS[preset]


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
    num_workers: int | None = None,
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
    compile: bool = False,
    cache: str = "auto",
) -> CaptionSummary:
    """Caption every image of `images` into parquet shards in `output`, resuming where a previous run stopped.

    Args:
        model: checkpoint folder or Hub id of a ShareGPT4V model with its processor.
        images: an image folder (recursive), a text file of image paths, a dataset folder or a Hub dataset id.
        output: the output folder (created; on a re-run, finished images are skipped).
        prompt / preset: the instruction; preset "detailed" (default) is Share-Captioner's prompt.
        batch_size, max_new_tokens, num_beams, repetition_penalty: generation (greedy, one beam by default;
            max_new_tokens defaults to the preset's: 500 detailed, 128 short).
        num_workers: DataLoader processes that decode and preprocess images (default: `default_num_workers()`).
        dtype: auto, float32, bfloat16 or float16.
        limit: caption only the first `limit` images of the source.
        export_json: also write the ShareGPT4V-PT JSON corpus of OUT to this file (after captioning).
        retry_degenerate: regenerate degenerate captions with `retry_repetition_penalty` and
            `retry_no_repeat_ngram_size` (new ones at once, earlier ones from OUT's shards).
        split, image_column, id_column: for dataset sources.
        shard_size: rows per parquet shard.
        compile: compile the decode step with `torch.compile` (worth it on a GPU for long runs).
        cache: KV cache, "auto" (static on a CPU or with `compile`, else transformers' growing cache),
            "static" or "dynamic" (see `CaptionEngine`).

    Returns a `CaptionSummary`; its `line()` is what the command prints.
    Under `accelerate launch --num_processes N` each process captions its share; the counts are summed.
    """
    # Every check of the input, and loading the model, come before anything is written to OUT: bad input
    # leaves OUT as it was, and the corrected command then runs as if it were the first.
    state = _partial_state()
    rank, world = state.process_index, state.num_processes
    output = Path(output)
    prompt, default_max_new_tokens = resolve_prompt(prompt, preset)
    if batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {batch_size}.")
    if limit is not None and limit < 0:
        raise UsageError(f"--limit must be >= 0, got {limit}.")
    if num_workers is not None and num_workers < 0:
        raise UsageError(f"--num-workers must be >= 0, got {num_workers}.")
    num_workers = default_num_workers() if num_workers is None else num_workers
    if compile and cache == "dynamic":
        raise UsageError(
            "--compile needs the static cache (torch.compile cannot follow a growing cache): drop --cache dynamic."
        )
    if output.exists() and not output.is_dir():
        raise UsageError(f"--output {output} exists and is not a folder: choose a folder.")
    from ..hub import check_model_argument

    check_model_argument(str(model), "--model", "a checkpoint folder (model + processor; see `sharegpt4v convert`)")
    check_model_format(str(model))
    settings = GenerationSettings(
        max_new_tokens=max_new_tokens or default_max_new_tokens,
        num_beams=num_beams,
        repetition_penalty=repetition_penalty,
    )
    retry = settings.for_retry(retry_repetition_penalty, retry_no_repeat_ngram_size) if retry_degenerate else None

    config = {
        "model": _model_name(str(model)),
        "prompt": prompt,
        "generation": settings.to_dict(),
        "images": os.fspath(images),
        "image_root": source_root(images, exclude=output),  # what the keys are relative to (export)
        "dtype": str(resolve_dtype(dtype, state.device)).removeprefix("torch."),  # informative, not checked
    }
    if config["image_root"] is None:  # a dataset source: how to find its images again (export)
        config["dataset"] = {"split": split, "image_column": image_column, "id_column": id_column}
    if output.is_dir():
        check_run_config(output, config, is_main=False)  # compare only: a changed setting is refused now

    with state.main_process_first():  # a Hub dataset is downloaded once
        source = list_source(images, split=split, image_column=image_column, id_column=id_column, exclude=output)
    if len(source) == 0:
        extensions = ", ".join(sorted(extension.lstrip(".") for extension in IMAGE_EXTENSIONS))
        raise UsageError(f"No images found in {os.fspath(images)!r} (extensions: {extensions}): check --images.")

    try:
        captioner_model, processor = _load_checked(str(model), dtype, state.device)  # format checked above
    except OSError as error:  # transformers' "no weights / no processor file / not a valid repo" errors
        raise UsageError(f"--model {model} could not be loaded: {str(error).splitlines()[0]}") from error
    engine = CaptionEngine(captioner_model, processor, prompt, cache=cache, compile=compile)
    output.mkdir(parents=True, exist_ok=True)
    check_run_config(output, config, is_main=state.is_main_process)
    if retry is not None and state.is_main_process:
        record_retry_settings(output, retry.to_dict())
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
    # no DataLoader (and no worker processes) when there is nothing to caption, as on a finished run's resume
    loader = make_loader(source, pending, processor.image_processor, batch_size, num_workers) if pending else []
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
            exported = export_to_json(output, export_json)
            summary.exported, summary.extra["export_left_out"] = exported.records, exported.left_out
            summary.extra["export_json"] = os.fspath(export_json)
            summary.extra["export_image_root"] = exported.image_root
        # no barrier after the export: the other ranks are done, and a long export (or its error) on the
        # main process must not hold them until the process group times out
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


class JSONExport(NamedTuple):
    """What `export_to_json` wrote: `records` kept, `left_out` (degenerate or empty captions), and the
    `image_root` the records' `image` paths are relative to (pass it to `sharegpt4v data build --image-root`;
    for a dataset source, the folder the images were written to)."""

    records: int
    left_out: int
    image_root: str | None


def _recorded_root(config: dict[str, Any]) -> str | None:
    """The source root of a caption folder: recorded in run.json, or (older folders) worked out from
    `images` as it was given."""
    if "image_root" in config:
        return config["image_root"]
    return source_root(config["images"]) if config.get("images") else None


def _export_paths(keys: list[str], source: str | None, image_root: str | None) -> tuple[list[str], str | None]:
    """(each key as a path relative to the export's image root, that root). The root is `image_root` if
    given, else the source root when every image lies inside it, else the deepest folder holding them all."""
    if source is None and any(not os.path.isabs(key) for key in keys):
        if image_root is None:
            return keys, None  # a dataset source: the keys are row ids
        raise ValueError("The captions come from a dataset source (keys are row ids, not paths): no image root.")
    absolute = [key if os.path.isabs(key) else os.path.normpath(os.path.join(source, key)) for key in keys]
    if image_root is not None:
        root = os.path.abspath(image_root)
    elif source is not None and all(relative_inside(path, source) for path in absolute):
        root = source
    else:
        root = os.path.commonpath([os.path.dirname(path) for path in absolute]) if absolute else source
    paths = []
    for key, path in zip(keys, absolute, strict=True):
        relative = relative_inside(path, root)
        if relative is None:
            raise ValueError(f"Image {key!r} is not inside the image root {root!r}; pass another image root.")
        paths.append(relative)
    return paths, root


_FORMAT_EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp", "TIFF": ".tif"}


def _image_file_name(key: str, original_path: str | None, data: Callable[[], bytes]) -> str:
    """A file name for a dataset row's image: the row id with anything but letters, digits, `.`, `-` and `_`
    replaced, plus a short hash of the id whenever that changed it or it is long (so two ids never share a
    file), and the image's extension (the id's, else the original file's, else the one of the format of the
    bytes, which `data()` reads only then)."""
    import hashlib
    import re

    name = re.sub(r"[^\w.-]", "_", key).lstrip(".")
    if name != key or len(name) > 100:
        stem, suffix = os.path.splitext(name)
        suffix = suffix if suffix.lower() in IMAGE_EXTENSIONS else ""
        name = f"{stem[:100]}-{hashlib.sha1(key.encode('utf-8')).hexdigest()[:10]}{suffix}"
    if Path(name).suffix.lower() in IMAGE_EXTENSIONS:
        return name
    suffix = Path(original_path or "").suffix.lower()
    if suffix not in IMAGE_EXTENSIONS:
        import io

        import PIL.Image

        with PIL.Image.open(io.BytesIO(data())) as image:
            suffix = _FORMAT_EXTENSIONS.get(image.format or "", ".img")
    return name + suffix


def _write_dataset_images(config: dict[str, Any], keys: list[str], folder: Path) -> list[str]:
    """Write the images of the captioned rows of a dataset source into `folder`, bytes unchanged (no
    re-encoding), and return their file names (the records' `image` paths relative to `folder`). Names are
    checked for clashes (also ignoring case, as some file systems do) before anything is written; a file
    already there is rewritten unless it holds the same bytes."""
    options = config.get("dataset") or {}
    source = list_source(
        config["images"],
        split=options.get("split", "train"),
        image_column=options.get("image_column"),
        id_column=options.get("id_column"),
    )
    row_of = {key: int(locator) for key, locator in zip(source.keys, source.locators, strict=True)}
    missing = [key for key in keys if key not in row_of]
    if missing:
        raise ValueError(
            f"{len(missing)} captioned row(s) are no longer in the dataset {config['images']!r} "
            f"(first: {missing[0]!r}): it changed since captioning."
        )

    def raw_image(key: str) -> dict[str, Any]:
        return source.dataset[row_of[key]][source.image_column]

    def image_bytes(raw: dict[str, Any]) -> bytes:
        return raw.get("bytes") or Path(raw["path"]).read_bytes()

    names = []
    for key in keys:  # names first: a clash must stop the export before it writes
        raw = raw_image(key)
        names.append(_image_file_name(key, raw.get("path"), lambda raw=raw: image_bytes(raw)))
    by_folded: dict[str, str] = {}
    for key, name in zip(keys, names, strict=True):
        other = by_folded.setdefault(name.casefold(), key)
        if other != key:
            raise ValueError(f"Dataset rows {other!r} and {key!r} map to the same image file name {name!r}.")
    folder.mkdir(parents=True, exist_ok=True)
    for key, name in tqdm(list(zip(keys, names, strict=True)), desc="export images", unit="img",
                          disable=len(keys) < 1000):  # fmt: skip
        data = image_bytes(raw_image(key))
        target = folder / name
        if target.is_file() and target.stat().st_size == len(data) and target.read_bytes() == data:
            continue
        temporary = target.with_name(f".{name}.tmp")
        temporary.write_bytes(data)
        os.replace(temporary, target)
    return names


def export_to_json(
    output: str | os.PathLike,
    path: str | os.PathLike,
    include_degenerate: bool = False,
    image_root: str | os.PathLike | None = None,
) -> JSONExport:
    """Write OUT's captions as a ShareGPT4V-PT JSON list to `path` (atomically), ready for
    `sharegpt4v data build --json PATH --image-root ROOT` with the returned `image_root` as ROOT.

    Records `{"id", "image", "conversations": [{"from": "human", "value": "<image>\\n" + prompt},
    {"from": "gpt", "value": caption}]}` sorted by image. `image` is the image's path relative to the image
    root: `image_root` if given, else the source's root (the `--images` folder, or the folder of the text file
    of paths) when every image lies inside it, else the deepest folder that holds them all. `id` is that
    path, extension included, so `cat.jpg` and `cat.png` stay two records. A dataset source's images are
    written, bytes unchanged, to the folder `<path stem>_images` beside `path`, named by row id (the record's
    `id` is the row id), which is then the image root. Degenerate captions are left out unless
    `include_degenerate`; empty captions always (a corpus record needs an answer).
    """
    from ..corpora.export import write_json_list

    output, path = Path(output), Path(path)
    run_file = output / RUN_FILE
    if not run_file.is_file():
        raise ValueError(f"{output} is not a caption folder: {run_file} is missing.")
    config = json.loads(run_file.read_text(encoding="utf-8"))
    shards = list_shards(output)
    if not shards:
        raise ValueError(f"{output} has no committed caption shards in {output / 'data'}.")
    table = pa.concat_tables(pq.read_table(shard, columns=["image", "caption", "degenerate"]) for shard in shards)
    total = table.num_rows
    keep = pc.greater(pc.utf8_length(pc.utf8_trim_whitespace(table.column("caption"))), 0)
    if not include_degenerate:
        keep = pc.and_(keep, pc.invert(table.column("degenerate")))
    table = table.filter(keep)
    keys = table.column("image").to_pylist()
    if _recorded_root(config) is None and image_root is None and "dataset" in config:
        root = path.with_name(path.stem + "_images")
        images = _write_dataset_images(config, keys, root)
        ids = keys  # the dataset's row ids
        root = str(root.resolve())
    else:
        images, root = _export_paths(keys, _recorded_root(config), image_root)
        ids = images
    captions = table.column("caption").to_pylist()
    if len(set(images)) != len(images):
        raise ValueError(f"{output}: two captioned images map to the same path under the image root {root!r}.")
    human = "<image>\n" + config["prompt"]
    records = (
        {
            "id": ids[index],
            "image": image,
            "conversations": [{"from": "human", "value": human}, {"from": "gpt", "value": captions[index]}],
        }
        for index, image in sorted(enumerate(images), key=lambda item: item[1])
    )
    count = write_json_list(path, records)
    return JSONExport(count, total - count, root)
