"""The files to submit for the benchmarks the paper did not score locally: VQAv2 test-dev and VizWiz test
(EvalAI), MMBench / MMBench-CN test (the MMBench server), LLaVA-Bench and MM-Vet (a GPT-4 judge). Each is the
format the original conversion scripts write (LLaVA's `scripts/convert_*_for_submission.py`,
`convert_mmvet_for_eval.py`, and `model_vqa.py`'s answers file for LLaVA-Bench's `eval_gpt_review_bench.py`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["SUBMISSION_FILES", "submission_path", "write_submission"]

SUBMISSION_FILES: dict[str, str] = {
    "vqav2": "vqav2_testdev_submission.json",
    "vizwiz": "vizwiz_test_submission.json",
    "mmbench_en": "mmbench_en_submission.xlsx",
    "mmbench_cn": "mmbench_cn_submission.xlsx",
    "llava_bench": "llava_bench_answers.jsonl",
    "mmvet": "mmvet_results.json",
}


def submission_path(benchmark: str, output: str | os.PathLike | None) -> Path:
    """Where `benchmark`'s file goes: OUTPUT/submissions/NAME (the current folder when there is no output)."""
    return Path(output or ".").expanduser().resolve() / "submissions" / SUBMISSION_FILES[benchmark]


def write_submission(benchmark: str, records: Iterable[Mapping[str, Any]], path: str | os.PathLike) -> int:
    """Write the scored records (`scoring.score_row`) of `benchmark` as its submission file; the row count."""
    records = list(records)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if benchmark in ("vqav2", "vizwiz"):
        from .scoring import answer_processor

        process = answer_processor()
        key = "question_id" if benchmark == "vqav2" else "image"  # VizWiz's question_id is the image file name
        rows = [
            {
                key: _int_or_str(r["question_id"]) if benchmark == "vqav2" else r["question_id"],
                "answer": process(r["prediction"]),
            }
            for r in records
        ]
        path.write_text(json.dumps(rows), encoding="utf-8")
    elif benchmark == "mmvet":
        path.write_text(json.dumps({str(r["question_id"]): r["prediction"] for r in records}, ensure_ascii=False))
    elif benchmark == "llava_bench":
        with open(path, "w", encoding="utf-8") as handle:
            for r in records:
                line = {
                    "question_id": _int_or_str(r["question_id"]),
                    "prompt": r.get("question"),
                    "text": r["prediction"],
                    "model_id": "sharegpt4v",
                    "metadata": {},
                }
                handle.write(json.dumps(line, ensure_ascii=False) + "\n")
    elif benchmark in ("mmbench_en", "mmbench_cn"):
        import pandas

        from .scoring import MMBENCH_COLUMNS

        table = pandas.DataFrame([{**r["row"], "prediction": r["prediction"]} for r in records])
        table = table[[column for column in MMBENCH_COLUMNS if column in table.columns]]
        table.to_excel(path, index=False, engine="openpyxl")
    else:
        raise ValueError(f"{benchmark} has no submission file; those that do: {', '.join(SUBMISSION_FILES)}.")
    return len(records)


def _int_or_str(value: Any) -> Any:
    try:
        return int(value)
    except (TypeError, ValueError):
        return value
