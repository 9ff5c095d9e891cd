"""Per-row scoring of each local benchmark: the record a row's answer turns into, which the metrics of
`protocol` aggregate. Kept apart from the lmms-eval glue (`lmms_tasks`) so it is tested without lmms-eval."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .protocol import OPTION_LETTERS, extract_option_letter, mmbench_options, parse_yes_no, qbench_candidates

__all__ = ["score_row"]


def _mme(doc: Mapping[str, Any], answer: str) -> dict[str, Any]:
    truth = str(doc["answer"]).strip().lower()
    if truth not in ("yes", "no"):
        raise ValueError(f"MME row {doc.get('question_id')!r}: answer must be Yes or No, got {doc['answer']!r}.")
    # question_id is the image's path in MME: the two questions of an image share it (accuracy+ pairs them)
    return {"category": doc["category"], "image_id": doc["question_id"], "correct": parse_yes_no(answer) == truth}


def _mmbench(doc: Mapping[str, Any], answer: str) -> dict[str, Any]:
    letter = extract_option_letter(answer, len(mmbench_options(doc)))
    return {"index": int(doc["index"]), "category": doc.get("category"), "correct": letter == doc["answer"]}


def _seedbench(doc: Mapping[str, Any], answer: str) -> dict[str, Any]:
    return {"question_id": doc["question_id"], "correct": extract_option_letter(answer, 4) == doc["answer"]}


def _scienceqa(doc: Mapping[str, Any], answer: str) -> dict[str, Any]:
    truth = OPTION_LETTERS[int(doc["answer"])]
    return {"correct": extract_option_letter(answer, len(doc["choices"])) == truth}


def _qbench(doc: Mapping[str, Any], answer: str) -> dict[str, Any]:
    candidates = qbench_candidates(doc)
    truth = str(doc["correct_choice"]).strip()
    if truth not in OPTION_LETTERS[: len(candidates)]:
        # the original JSON stores the correct candidate's text, the HF copy its letter
        if truth not in candidates:
            raise ValueError(f"Q-Bench row: correct_choice {truth!r} is neither a letter nor a candidate.")
        truth = OPTION_LETTERS[candidates.index(truth)]
    letter = extract_option_letter(answer, len(candidates))
    if letter is None and answer.strip().rstrip(".").lower() in [c.lower() for c in candidates]:
        letter = OPTION_LETTERS[[c.lower() for c in candidates].index(answer.strip().rstrip(".").lower())]
    return {"correct": letter == truth}


_SCORERS = {
    "mme": _mme,
    "mmbench_en": _mmbench,
    "mmbench_cn": _mmbench,
    "seedbench": _seedbench,
    "scienceqa_img": _scienceqa,
    "qbench": _qbench,
}


def score_row(benchmark: str, doc: Mapping[str, Any], answer: str) -> dict[str, Any]:
    """The scored record of one row: always `correct` (bool), plus what the benchmark's metrics group by."""
    return _SCORERS[benchmark](doc, answer)
