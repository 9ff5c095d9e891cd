"""The functions the local task YAMLs name (`!function transformers_sharegpt4v.evaluation.lmms_tasks.NAME`):
lmms-eval calls them with a row of the benchmark's dataset. Each delegates to `protocol` / `scoring`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from .protocol import BENCHMARKS, accuracy, circular_accuracy, get_benchmark, mme_cognition, mme_perception
from .scoring import score_row
from .submission import submission_path, write_submission

logger = logging.getLogger(__name__)

__all__ = [
    "accuracy",
    "circular_accuracy",
    "doc_to_target",
    "doc_to_text",
    "doc_to_visual",
    "mme_cognition",
    "mme_perception",
    "seedbench_image_rows",
    "submission",
]


def doc_to_visual(doc: Mapping[str, Any]) -> list:
    """The row's image(s) as RGB PIL images (SEED-Bench rows hold a list)."""
    images = doc["image"]
    images = images if isinstance(images, list) else [images]
    return [image.convert("RGB") for image in images if image is not None]


def doc_to_text(doc: Mapping[str, Any], lmms_eval_specific_kwargs: Mapping[str, Any] | None = None) -> str:
    """The question text of the row, by the protocol of the benchmark named in the task's kwargs."""
    return get_benchmark(_benchmark_name(lmms_eval_specific_kwargs)).prompt_text(doc)


def doc_to_target(doc: Mapping[str, Any]) -> str:
    """The row's reference answer for the logs (test splits scored by a server have none: "")."""
    for key in ("answer", "correct_choice", "answers", "gpt_answer"):
        if doc.get(key) is not None:
            return str(doc[key])
    return ""


def _benchmark_name(kwargs: Mapping[str, Any] | None) -> str:
    if not kwargs or "benchmark" not in kwargs:
        raise ValueError("The task's lmms_eval_specific_kwargs must name its `benchmark` (e.g. mme).")
    return kwargs["benchmark"]


def seedbench_image_rows(dataset: Any) -> Any:
    """SEED-Bench's image questions only (the paper's SEED-I); the video rows are dropped."""
    if "data_type" not in dataset.column_names:
        return dataset
    return dataset.filter(lambda data_type: data_type == "image", input_columns="data_type")


def submission(records: list[Mapping[str, Any]], args: Any = None) -> int:
    """The `submission` metric: writes the benchmark's file to submit (see `submission`) under lmms-eval's
    output path (`--output_path`; the current folder without one), logs where, returns the number of answers."""
    if not records:
        return 0
    benchmark = records[0]["benchmark"]
    path = submission_path(benchmark, getattr(args, "output_path", None))
    count = write_submission(benchmark, records, path)
    logger.warning("%s: %d answers written to %s; submit it to the %s.", benchmark, count, path,
                   get_benchmark(benchmark).scored_by)  # fmt: skip
    return count


def _results(benchmark: str):
    def process(doc: Mapping[str, Any], results: list[str]) -> dict[str, Any]:
        record = score_row(benchmark, doc, results[0])
        return {metric: record for metric in get_benchmark(benchmark).metrics}

    process.__name__ = f"{benchmark}_process_results"
    return process


# one process_results per benchmark: lmms-eval calls it with (doc, results) only
for _name in BENCHMARKS:
    globals()[f"{_name}_process_results"] = _results(_name)
