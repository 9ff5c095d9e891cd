"""The local tasks: lmms-eval task YAMLs that run a benchmark by the paper's protocol on data on disk.

`write_tasks(DATA, OUT)` writes one `OUT/sharegpt4v_{name}.yaml` per benchmark found in DATA, for
`python -m lmms_eval --include_path OUT --tasks sharegpt4v_mme,...`. DATA holds, per benchmark `name` (see
`protocol.BENCHMARKS`), one of:

- `name.parquet`, or a folder `name/` of parquet files (lmms-eval's local-parquet loading,
  `dataset_path: parquet`);
- a folder `name/` saved by `DatasetDict.save_to_disk` (`dataset_kwargs: {load_from_disk: true}`).

The rows have the columns of the lmms-lab copy of the benchmark on the Hub (e.g. `lmms-lab/MME`), so a copy
made with `datasets` on a machine that reaches the Hub (`load_dataset(...).save_to_disk(...)` or
`.to_parquet(...)`) works as it is. The YAML points at the data by absolute path and names its functions by
module (`!function transformers_sharegpt4v.evaluation.lmms_tasks.doc_to_text`), so it works from any folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from ..errors import UsageError
from .protocol import BENCHMARKS, Benchmark, get_benchmark

__all__ = ["find_data", "task_config", "write_tasks"]

_FUNCTIONS = "transformers_sharegpt4v.evaluation.lmms_tasks"


class _Function(str):
    """A YAML `!function module.name` value."""


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(_Function, lambda dumper, value: dumper.represent_scalar("!function", str(value)))


def find_data(data: str | Path, name: str) -> dict[str, Any]:
    """Where benchmark `name`'s rows are under `data`: `{"parquet": [files]}` or `{"disk": folder, "splits": [...]}`.
    ValueError naming what was looked for when there is nothing."""
    root = Path(data).expanduser().resolve()
    single = root / f"{name}.parquet"
    folder = root / name
    if single.is_file():
        return {"parquet": [str(single)]}
    if (folder / "dataset_dict.json").is_file():
        splits = json.loads((folder / "dataset_dict.json").read_text(encoding="utf-8"))["splits"]
        return {"disk": str(folder), "splits": list(splits)}
    if folder.is_dir():
        files = sorted(str(p) for p in folder.rglob("*.parquet"))
        if files:
            return {"parquet": files}
    raise UsageError(
        f"No data for benchmark {name!r} in {root}: expected {single.name}, a folder {name}/ of parquet files, or "
        f"a folder {name}/ saved by DatasetDict.save_to_disk."
    )


def check_columns(benchmark: Benchmark, location: dict[str, Any]) -> None:
    """UsageError naming the file and the columns missing from `benchmark`'s rows (see `Benchmark.columns`)."""
    if "parquet" in location:
        import pyarrow.parquet

        for path in location["parquet"]:
            _missing(benchmark, path, set(pyarrow.parquet.read_schema(path).names))
    else:
        import datasets

        for split, dataset in datasets.load_from_disk(location["disk"]).items():
            _missing(benchmark, f"{location['disk']} ({split})", set(dataset.column_names))


def _missing(benchmark: Benchmark, where: str, columns: set[str]) -> None:
    missing = [column for column in benchmark.columns if column not in columns]
    if benchmark.name == "gqa" and "question_id" not in columns and "id" not in columns:
        missing.append("id")
    if missing:
        raise UsageError(
            f"{where}: {benchmark.name} rows need the column(s) {', '.join(missing)} (the lmms-lab copy's columns); "
            f"it has {', '.join(sorted(columns))}."
        )


def task_config(benchmark: Benchmark, location: dict[str, Any]) -> dict[str, Any]:
    """The lmms-eval task config of `benchmark` reading the data at `location` (see `find_data`)."""
    split = benchmark.test_split
    if "disk" in location:
        splits = location["splits"]
        if split not in splits:
            if len(splits) != 1:
                raise UsageError(
                    f"{location['disk']} has splits {splits}; {benchmark.name} reads the {split!r} split. Save the "
                    f"{split!r} split (or a single split)."
                )
            split = splits[0]
        source = {"dataset_path": location["disk"], "dataset_kwargs": {"load_from_disk": True}}
    else:
        source = {"dataset_path": "parquet", "dataset_kwargs": {"data_files": {split: location["parquet"]}}}
    config: dict[str, Any] = {
        "task": benchmark.task,
        **source,
        "test_split": split,
        "output_type": "generate_until",
        "doc_to_visual": _Function(f"{_FUNCTIONS}.doc_to_visual"),
        "doc_to_text": _Function(f"{_FUNCTIONS}.doc_to_text"),
        "doc_to_target": _Function(f"{_FUNCTIONS}.doc_to_target"),
        "lmms_eval_specific_kwargs": {"default": {"benchmark": benchmark.name}},
        "generation_kwargs": {
            "max_new_tokens": benchmark.max_new_tokens,
            "temperature": 0,
            "top_p": 1.0,
            "num_beams": 1,
            "do_sample": False,
            "until": [],  # the original loops stop at </s> only (lmms-eval's default would cut at "\n\n")
            "conversation": benchmark.conversation,
            "image_aspect_ratio": "pad" if benchmark.pad else "original",
        },
        "process_results": _Function(f"{_FUNCTIONS}.{benchmark.name}_process_results"),
        "metric_list": [
            {"metric": metric, "aggregation": _Function(f"{_FUNCTIONS}.{metric}"), "higher_is_better": True}
            for metric in benchmark.metrics
        ],
        "metadata": {"version": 1.0, "protocol": benchmark.source},
    }
    if benchmark.name == "seedbench":
        config["process_docs"] = _Function(f"{_FUNCTIONS}.seedbench_image_rows")
    return config


def write_tasks(data: str | Path, out: str | Path, names: list[str] | None = None) -> dict[str, Path]:
    """Write the task YAML of each benchmark in `names` (default: every benchmark that has data under `data`)
    into `out`; returns task name -> YAML path. ValueError when a named benchmark has no data, or none has."""
    if names is None:
        found = {}
        for name in BENCHMARKS:
            try:
                found[name] = find_data(data, name)
            except ValueError:
                continue
        if not found:
            raise UsageError(
                f"No benchmark data in {Path(data).expanduser().resolve()}: expected NAME.parquet or NAME/ for NAME "
                f"in {', '.join(BENCHMARKS)}."
            )
    else:
        found = {get_benchmark(name).name: find_data(data, get_benchmark(name).name) for name in names}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, location in found.items():
        benchmark = BENCHMARKS[name]
        check_columns(benchmark, location)
        path = out / f"{benchmark.task}.yaml"
        text = yaml.dump(task_config(benchmark, location), Dumper=_Dumper, sort_keys=False, allow_unicode=True)
        path.write_text(f"# {benchmark.title}, as the paper ran it: {benchmark.source}\n{text}", encoding="utf-8")
        written[benchmark.task] = path
    return written
