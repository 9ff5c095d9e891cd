"""The functions the local task YAMLs name (`!function transformers_sharegpt4v.evaluation.lmms_tasks.NAME`):
lmms-eval calls them with a row of the benchmark's dataset. Each delegates to `protocol` / `scoring`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .protocol import accuracy, circular_accuracy, get_benchmark, mme_cognition, mme_perception
from .scoring import score_row

__all__ = [
    "accuracy",
    "circular_accuracy",
    "doc_to_text",
    "doc_to_visual",
    "mme_cognition",
    "mme_perception",
    "seedbench_image_rows",
]


def doc_to_visual(doc: Mapping[str, Any]) -> list:
    """The row's image(s) as RGB PIL images (SEED-Bench rows hold a list)."""
    images = doc["image"]
    images = images if isinstance(images, list) else [images]
    return [image.convert("RGB") for image in images if image is not None]


def doc_to_text(doc: Mapping[str, Any], lmms_eval_specific_kwargs: Mapping[str, Any] | None = None) -> str:
    """The question text of the row, by the protocol of the benchmark named in the task's kwargs."""
    if not lmms_eval_specific_kwargs or "benchmark" not in lmms_eval_specific_kwargs:
        raise ValueError("The task's lmms_eval_specific_kwargs must name its `benchmark` (e.g. mme).")
    return get_benchmark(lmms_eval_specific_kwargs["benchmark"]).prompt_text(doc)


def seedbench_image_rows(dataset: Any) -> Any:
    """SEED-Bench's image questions only (the paper's SEED-I); the video rows are dropped."""
    if "data_type" not in dataset.column_names:
        return dataset
    return dataset.filter(lambda data_type: data_type == "image", input_columns="data_type")


def _results(benchmark: str, metrics: tuple[str, ...]):
    def process_results(doc: Mapping[str, Any], results: list[str]) -> dict[str, Any]:
        record = score_row(benchmark, doc, results[0])
        return {metric: record for metric in metrics}

    process_results.__name__ = f"{benchmark}_process_results"
    return process_results


mme_process_results = _results("mme", ("mme_perception", "mme_cognition"))
mmbench_en_process_results = _results("mmbench_en", ("accuracy", "circular_accuracy"))
mmbench_cn_process_results = _results("mmbench_cn", ("accuracy", "circular_accuracy"))
seedbench_process_results = _results("seedbench", ("accuracy",))
scienceqa_img_process_results = _results("scienceqa_img", ("accuracy",))
qbench_process_results = _results("qbench", ("accuracy",))
