"""Per-row scoring of each local benchmark: the record a row's answer turns into, which the metrics of
`protocol` aggregate (and `submission` writes out). Kept apart from the lmms-eval glue (`lmms_tasks`) so it is
tested without lmms-eval, except VQA accuracy, which normalizes answers with lmms-eval's copy of the EvalAI
answer processor (the one LLaVA's eval_textvqa.py and submission converters use)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .protocol import OPTION_LETTERS, extract_option_letter, mmbench_options, parse_yes_no, qbench_candidates

__all__ = ["MMBENCH_COLUMNS", "score_row"]


def _mme(doc: Mapping[str, Any], answer: str) -> dict[str, Any]:
    truth = str(doc["answer"]).strip().lower()
    if truth not in ("yes", "no"):
        raise ValueError(f"MME row {doc.get('question_id')!r}: answer must be Yes or No, got {doc['answer']!r}.")
    # question_id is the image's path in MME: the two questions of an image share it (accuracy+ pairs them)
    return {"category": doc["category"], "image_id": doc["question_id"], "correct": parse_yes_no(answer) == truth}


# The MMBench submission's columns, in order: LLaVA's convert_mmbench_for_submission.py writes the question table
# without its hint, category, source, image, comment and l2-category columns, with `prediction` inserted after
# the options. A row's record keeps these columns for `submission`.
MMBENCH_COLUMNS = ("index", "question", "A", "B", "C", "D", "prediction", "answer", "split")


def _mmbench(doc: Mapping[str, Any], answer: str) -> dict[str, Any]:
    letter = extract_option_letter(answer, len(mmbench_options(doc)))
    truth = doc.get("answer")  # the test split has none: its score comes from the server
    row = {key: doc.get(key) for key in MMBENCH_COLUMNS if key in doc}  # what the submission file writes
    return {
        "index": int(doc["index"]),
        "category": doc.get("category"),
        "correct": truth is not None and letter == truth,
        "row": row,
        "prediction": answer,
    }


def answer_processor() -> Any:
    """The EvalAI answer normalization (punctuation, digits, articles, contractions) as lmms-eval ships it."""
    from lmms_eval.tasks._task_utils.vqa_eval_metric import EvalAIAnswerProcessor

    return EvalAIAnswerProcessor()


def vqa_accuracy(answer: str, references: list[str]) -> float:
    """The VQA accuracy of one answer (TextVQA's and VQAv2's rule, as LLaVA's TextVQAAccuracyEvaluator computes
    it): both sides normalized; for each of the references, min(1, matches among the others / 3); the mean."""
    process = answer_processor()
    answer = process(answer)
    references = [process(reference) for reference in references]
    if not references:
        raise ValueError("A VQA accuracy needs reference answers.")
    scores = []
    for i in range(len(references)):
        others = references[:i] + references[i + 1 :]
        scores.append(min(1.0, sum(other == answer for other in others) / 3))
    return sum(scores) / len(scores)


def _gqa(doc: Mapping[str, Any], answer: str) -> dict[str, Any]:
    # convert_gqa_for_eval.py: the answer without trailing dots, lower-cased; GQA's eval.py: exact match
    prediction = answer.rstrip(".").lower()
    qid = doc.get("question_id", doc.get("id"))
    return {"question_id": qid, "prediction": prediction, "correct": prediction == str(doc["answer"]).lower()}


def _textvqa(doc: Mapping[str, Any], answer: str) -> dict[str, Any]:
    return {"question_id": doc["question_id"], "score": vqa_accuracy(answer, list(doc["answers"]))}


def _submitted(doc: Mapping[str, Any], answer: str) -> dict[str, Any]:
    return {"question_id": doc["question_id"], "question": doc.get("question"), "prediction": answer}


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
    "vqav2": _submitted,
    "gqa": _gqa,
    "vizwiz": _submitted,
    "textvqa": _textvqa,
    "llava_bench": _submitted,
    "mmvet": _submitted,
    "mme": _mme,
    "mmbench_en": _mmbench,
    "mmbench_cn": _mmbench,
    "seedbench": _seedbench,
    "scienceqa_img": _scienceqa,
    "qbench": _qbench,
}


def score_row(benchmark: str, doc: Mapping[str, Any], answer: str) -> dict[str, Any]:
    """The scored record of one row: `correct` (bool) or `score` (VQA accuracy) where the row can be scored here,
    `prediction` where the benchmark writes a submission file, plus what the metrics group by."""
    record = _SCORERS[benchmark](doc, answer)
    record["benchmark"] = benchmark
    return record
