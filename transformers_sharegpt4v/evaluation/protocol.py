"""How the paper evaluated ShareGPT4V-7B, benchmark by benchmark: prompt, conversation template, image
preprocessing, token budget, answer parsing and score. Pure functions of a benchmark row (the column names
of the lmms-lab datasets that lmms-eval reads); no lmms-eval import, so the protocol is tested on its own.

The paper ran LLaVA-1.5's evaluation loops (ShareGPT4V repo `scripts/sharegpt4v/eval/*.sh` calling
`share4v/eval/model_vqa_loader.py`, `model_vqa_mmbench.py`, `model_vqa_science.py`, `model_vqa.py` and LLaVA's
`model_vqa_qbench.py`); see docs/reference.md, "Evaluation". What those loops do, and so what this module
reproduces:

- prompt = SYSTEM + " USER: <image>\\n" + QUESTION + " ASSISTANT:", the question text taken verbatim (the
  loops never strip it: Q-Bench's ends with a newline). Greedy decoding, the answer decoded without special
  tokens and stripped.
- conversation `vicuna_v1` everywhere but Q-Bench, which runs `share4v_v1` (same format, a system prompt
  that says "a curious human").
- images padded to a square of the mean colour (`process_images`, image_aspect_ratio "pad") for the
  `model_vqa_loader` / MMBench loops; `model_vqa` (LLaVA-Bench, MM-Vet), ScienceQA and Q-Bench call the CLIP
  processor on the opened image directly: no padding.
- max_new_tokens: 128 for `model_vqa_loader` (MME, SEED, VQA-style), 1024 for MMBench, ScienceQA, Q-Bench,
  LLaVA-Bench and MM-Vet.

Where lmms-eval's own task of the same benchmark prompts differently (MMBench joins hint, question and
options with spaces; Q-Bench uses another instruction; SEED and MMBench skip the padding), the tasks here
follow the paper instead.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from ..errors import UsageError
from ..tokenization_sharegpt4v import IMAGE_TOKEN

__all__ = [
    "BENCHMARKS",
    "CONVERSATION_SYSTEMS",
    "PAPER_TASKS",
    "Benchmark",
    "build_prompt",
    "extract_option_letter",
    "get_benchmark",
    "mme_score",
    "parse_yes_no",
]

CONVERSATION_SYSTEMS: dict[str, str] = {
    # share4v/conversation.py: conv_vicuna_v1 (the processor's "vicuna_v1" chat template has the same text)
    "vicuna_v1": "A chat between a curious user and an artificial intelligence assistant. The assistant gives "
    "helpful, detailed, and polite answers to the user's questions.",
    # conv_share4v_v1: the Q-Bench script's --conv-mode
    "share4v_v1": "A chat between a curious human and an artificial intelligence assistant. The assistant gives "
    "helpful, detailed, and polite answers to the human's questions.",
}

SHORT_ANSWER = "Answer the question using a single word or phrase."
OPTION_LETTER = "Answer with the option's letter from the given choices directly."
OPTION_LETTER_CN = "请直接回答选项字母。"
UNANSWERABLE = "When the provided information is insufficient, respond with 'Unanswerable'."
OCR_REFERENCE = "Reference OCR token: "
OPTION_LETTERS = "ABCDEFGHIJ"


def build_prompt(question: str, num_images: int = 1, conversation: str = "vicuna_v1") -> str:
    """The evaluation prompt of the original loops: `{system} USER: <image>\\n{question} ASSISTANT:`.

    `question` is used verbatim (no strip); one `<image>\\n` per image goes in front of it, as the loops put
    it (a question that already holds `num_images` placeholders is left as it is). No BOS: the processor
    adds it when it tokenizes.
    """
    if conversation not in CONVERSATION_SYSTEMS:
        raise ValueError(
            f"Unknown conversation {conversation!r}; the evaluation templates are {sorted(CONVERSATION_SYSTEMS)}."
        )
    present = question.count(IMAGE_TOKEN)
    if present and present != num_images:
        raise ValueError(
            f"The question holds {present} {IMAGE_TOKEN!r} placeholder(s) but {num_images} image(s) came with it."
        )
    if not present:
        question = f"{IMAGE_TOKEN}\n" * num_images + question
    return f"{CONVERSATION_SYSTEMS[conversation]} USER: {question} ASSISTANT:"


def _is_missing(value: Any) -> bool:
    """model_vqa_mmbench.py's `is_none`: None, NaN and the strings 'nan' / 'none' (any case) mean absent."""
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and value.strip().lower() in ("nan", "none")


# ---------------------------------------------------------------------------------------------- prompts


def mme_question(doc: Mapping[str, Any]) -> str:
    """MME: the question without its "Please answer yes or no." (one or two spaces before it), then the short
    answer instruction on its own line: the text of LLaVA's `llava_mme.jsonl` (its `convert_answer_to_mme.py`
    maps answers back by re-adding exactly that sentence)."""
    question = re.sub(r"\s*Please answer yes or no\.\s*$", "", doc["question"].strip())
    return f"{question}\n{SHORT_ANSWER}"


def short_answer_question(doc: Mapping[str, Any]) -> str:
    """VQAv2, GQA (LLaVA's `llava_vqav2_mscoco_test-dev2015.jsonl`, `llava_gqa_testdev_balanced.jsonl`): the
    question as the dataset has it, then the short answer instruction on its own line."""
    return f"{doc['question']}\n{SHORT_ANSWER}"


def vizwiz_question(doc: Mapping[str, Any]) -> str:
    """VizWiz (LLaVA's `vizwiz/llava_test.jsonl`): the question, the 'Unanswerable' instruction, then the short
    answer instruction, each on its own line."""
    return f"{doc['question']}\n{UNANSWERABLE}\n{SHORT_ANSWER}"


def textvqa_question(doc: Mapping[str, Any]) -> str:
    """TextVQA (LLaVA's `llava_textvqa_val_v051_ocr.jsonl`): the question with its first letter upper-cased (the
    dataset's questions are lower case; `str.capitalize`, as lmms-eval's textvqa task does), then
    "Reference OCR token: " and the row's OCR tokens joined by ", " on their own line (left out when the row
    has none), then the short answer instruction."""
    question = str(doc["question"]).capitalize()
    tokens = [str(token) for token in (doc.get("ocr_tokens") or [])]
    if tokens:
        question += f"\n{OCR_REFERENCE}{', '.join(tokens)}"
    return f"{question}\n{SHORT_ANSWER}"


def open_question(doc: Mapping[str, Any]) -> str:
    """LLaVA-Bench (in the wild) and MM-Vet (LLaVA's `model_vqa.py` on `questions.jsonl` / `llava-mm-vet.jsonl`):
    the question as it is, no instruction."""
    return str(doc["question"])


def mmbench_options(doc: Mapping[str, Any]) -> list[str]:
    """The options A, B, C, ... of an MMBench row, up to the first absent one (`get_options`)."""
    options = []
    for letter in "ABCD":
        value = doc.get(letter)
        if _is_missing(value):
            break
        options.append(str(value))
    return options


def mmbench_question(doc: Mapping[str, Any], lang: str = "en") -> str:
    """MMBench (model_vqa_mmbench.py with --single-pred-prompt): "{hint}\\n" when there is a hint, the question,
    one "\\n{letter}. {option}" per option, then the letter instruction (Chinese for MMBench-CN)."""
    if lang not in ("en", "cn"):
        raise ValueError(f"MMBench lang must be 'en' or 'cn', got {lang!r}.")
    question = doc["question"]
    if not _is_missing(doc.get("hint")):
        question = f"{doc['hint']}\n{question}"
    for letter, option in zip(OPTION_LETTERS, mmbench_options(doc), strict=False):
        question += f"\n{letter}. {option}"
    return question + "\n" + (OPTION_LETTER_CN if lang == "cn" else OPTION_LETTER)


def seed_question(doc: Mapping[str, Any]) -> str:
    """SEED-Bench image questions (LLaVA's `llava-seed-bench.jsonl`): the question, "A. ..." to "D. ..." lines and
    the letter instruction."""
    lines = [doc["question"]] + [f"{letter}. {doc[f'choice_{letter.lower()}']}" for letter in "ABCD"]
    return "\n".join(lines + [OPTION_LETTER])


def scienceqa_question(doc: Mapping[str, Any]) -> str:
    """ScienceQA-IMG (LLaVA-1.5's `llava_test_CQM-A.json` + --single-pred-prompt): "Context: {hint}\\n" when there
    is a hint, the question, "A. ..." lines, the letter instruction. model_vqa_science.py strips the question."""
    context = f"Context: {doc['hint']}\n" if doc.get("hint") else ""
    options = "\n".join(f"{letter}. {choice}" for letter, choice in zip(OPTION_LETTERS, doc["choices"], strict=False))
    return f"{context}{doc['question']}\n{options}".strip() + f"\n{OPTION_LETTER}"


def qbench_candidates(doc: Mapping[str, Any]) -> list[str]:
    """Q-Bench's candidates: `candidates` (the original JSON) or option0..option3 without "N/A" (the HF copy)."""
    if doc.get("candidates") is not None:
        return [str(c) for c in doc["candidates"]]
    return [str(doc[f"option{i}"]) for i in range(4) if doc.get(f"option{i}") not in (None, "N/A")]


def qbench_question(doc: Mapping[str, Any]) -> str:
    """Q-Bench (LLaVA's model_vqa_qbench.py, --lang en): the question, "\\nChoose between one of the options as
    follows:\\n", one "{letter}. {candidate}\\n" per candidate. It ends with a newline, kept: the loop does not
    strip, so the prompt reads "...D. blurry\\n ASSISTANT:"."""
    message = doc["question"] + "\nChoose between one of the options as follows:\n"
    for letter, candidate in zip("ABCD", qbench_candidates(doc), strict=False):
        message += f"{letter}. {candidate}\n"
    return message


# ---------------------------------------------------------------------------------------------- answers


def parse_yes_no(answer: str) -> str:
    """MME's eval_tool rule: "yes"/"no" if the lower-cased answer is that word, else whichever of the two appears
    in its first four characters ("yes" first), else "other"."""
    answer = answer.lower()
    if answer in ("yes", "no"):
        return answer
    prefix = answer[:4]
    if "yes" in prefix:
        return "yes"
    if "no" in prefix:
        return "no"
    return "other"


def extract_option_letter(answer: str, num_options: int) -> str | None:
    """The option letter of an answer, by LLaVA's ScienceQA rule (eval_science_qa.py): the answer is a letter,
    or starts with "X. ", or says "The answer is X." exactly once. None when it does none of these."""
    letters = OPTION_LETTERS[:num_options]
    answer = answer.strip()
    if len(answer) == 1 and answer in letters:
        return answer
    if len(answer) >= 3 and answer[0] in letters and answer[1:3] == ". ":
        return answer[0]
    found = re.findall(r"The answer is ([A-Z]).", answer)
    if len(found) == 1 and found[0] in letters:
        return found[0]
    return None


# ---------------------------------------------------------------------------------------------- scores

MME_PERCEPTION = (
    "existence",
    "count",
    "position",
    "color",
    "posters",
    "celebrity",
    "scene",
    "landmark",
    "artwork",
    "OCR",
)
MME_COGNITION = ("commonsense_reasoning", "numerical_calculation", "text_translation", "code_reasoning")


def mme_score(records: Iterable[Mapping[str, Any]], categories: Iterable[str]) -> float:
    """MME's score (eval_tool/calculation.py) summed over `categories`: per category 100 x accuracy over its
    questions + 100 x accuracy+ (the share of images whose questions are all right). Each record has
    `category`, `image_id` (the image a question pair shares) and `correct`. Categories without records add 0."""
    wanted = set(categories)
    per_image: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
    for record in records:
        if record["category"] in wanted:
            per_image[record["category"]][str(record["image_id"])].append(bool(record["correct"]))
    total = 0.0
    for images in per_image.values():
        answers = [ok for oks in images.values() for ok in oks]
        accuracy = sum(answers) / len(answers)
        accuracy_plus = sum(all(oks) for oks in images.values()) / len(images)
        total += 100 * accuracy + 100 * accuracy_plus
    return total


def mme_perception(records: Iterable[Mapping[str, Any]]) -> float:
    return mme_score(records, MME_PERCEPTION)


def mme_cognition(records: Iterable[Mapping[str, Any]]) -> float:
    return mme_score(records, MME_COGNITION)


def accuracy(records: Iterable[Mapping[str, Any]]) -> float:
    """Percentage of records with `correct`, or the mean `score` x 100 (VQA accuracy) where records have one."""
    records = list(records)
    values = [float(r["score"]) if "score" in r else float(bool(r["correct"])) for r in records]
    return 100.0 * sum(values) / len(values) if values else 0.0


def circular_accuracy(records: Iterable[Mapping[str, Any]]) -> float:
    """MMBench's CircularEval: a question counts only if every circular copy of it is right. The MMBench files
    hold the copies as rows whose `index` differs by multiples of 1,000,000 (the options rotated)."""
    groups: dict[int, list[bool]] = defaultdict(list)
    for record in records:
        groups[int(record["index"]) % 1_000_000].append(bool(record["correct"]))
    return 100.0 * sum(all(oks) for oks in groups.values()) / len(groups) if groups else 0.0


# ---------------------------------------------------------------------------------------------- benchmarks


@dataclass(frozen=True)
class Benchmark:
    """One benchmark as the paper ran it.

    name: the lmms-eval task name is `sharegpt4v_{name}`. question: row -> question text. conversation: the
    template's system prompt. pad: pad images to a square (image_aspect_ratio "pad"). max_new_tokens: the
    loop's budget. metrics: metric -> the ShareGPT4V-7B number the paper reports (None: not reported on this
    split; the metric `submission` counts the answers written to the file that `scored_by` scores). source: the
    original script the protocol follows. test_split: the split name of the lmms-lab dataset. columns: the
    columns a row must have. question_kwargs: keyword arguments of `question`. scored_by: "local", or the judge
    or server that turns the submission file into the paper's number. needs: what a run needs besides the model.
    """

    name: str
    title: str
    question: Any
    metrics: dict[str, float | None]
    source: str
    test_split: str = "test"
    conversation: str = "vicuna_v1"
    pad: bool = True
    max_new_tokens: int = 128
    columns: tuple[str, ...] = ()
    question_kwargs: dict[str, Any] = field(default_factory=dict)
    scored_by: str = "local"
    needs: str = ""

    @property
    def task(self) -> str:
        return f"sharegpt4v_{self.name}"

    @property
    def submits(self) -> bool:
        """Whether the run writes a file to submit to a judge or a server (`submission` metric)."""
        return "submission" in self.metrics

    def prompt_text(self, doc: Mapping[str, Any]) -> str:
        """The question text of a row (what lmms-eval calls the context)."""
        return self.question(doc, **self.question_kwargs)


_QUESTIONS = {
    f.__name__: f
    for f in (
        mme_question,
        short_answer_question,
        vizwiz_question,
        textvqa_question,
        open_question,
        mmbench_question,
        seed_question,
        scienceqa_question,
        qbench_question,
    )
}


def _read_benchmarks(path: Path) -> dict[str, Benchmark]:
    """The benchmark table `benchmarks.yaml` as `Benchmark` records; an unknown field or question function is
    an error naming the benchmark."""
    known = {f.name for f in fields(Benchmark)} - {"name"}
    benchmarks = {}
    for name, entry in yaml.safe_load(path.read_text(encoding="utf-8")).items():
        problems = [f"unknown field {key!r}" for key in sorted(set(entry) - known)]
        if entry.get("question") not in _QUESTIONS:
            problems.append(f"`question` is not one of {sorted(_QUESTIONS)}")
        if problems:
            raise ValueError(f"{path} [{name}]: " + "; ".join(problems))
        entry = {**entry, "question": _QUESTIONS[entry["question"]], "columns": tuple(entry.get("columns", ()))}
        benchmarks[name] = Benchmark(name, **entry)
    return benchmarks


BENCHMARKS: dict[str, Benchmark] = _read_benchmarks(Path(__file__).with_name("benchmarks.yaml"))

# `--tasks paper`: the benchmarks of the paper's table (docs/reference.md, "The paper's numbers")
PAPER_TASKS: tuple[str, ...] = tuple(BENCHMARKS)


def get_benchmark(name: str) -> Benchmark:
    """The benchmark `name` (with or without the `sharegpt4v_` prefix); ValueError naming the known ones."""
    key = name.removeprefix("sharegpt4v_")
    if key not in BENCHMARKS:
        raise UsageError(f"Unknown benchmark {name!r}; the local tasks are: {', '.join(BENCHMARKS)} (or paper).")
    return BENCHMARKS[key]
