"""lmms-eval model `sharegpt4v`: a plugin checkpoint behind lmms-eval's simple-model API.

    python -m lmms_eval --model sharegpt4v --model_args pretrained=ShareGPT4V-7B --tasks mme --batch_size 1

A simple model (`is_simple = True`): lmms-eval hands it each question as text (the task's `doc_to_text`)
plus the row's images, and the model wraps it in the paper's prompt, `{system} USER: <image>\\n{question}
ASSISTANT:` (see `protocol.build_prompt`). That is how the original loops worked, and it keeps the question
verbatim; a chat model would receive messages and rebuild the text through a chat template, which strips it.
Registered through the entry point group `lmms_eval.models` (`registry.manifests`).

Per-task options the adapter reads from the task's `generation_kwargs` (the local tasks set them):
`conversation` ("vicuna_v1" or "share4v_v1"), `image_aspect_ratio` ("pad", the default, or "original" for
plain CLIP preprocessing) and `until` (stop strings); `max_new_tokens`, `temperature`, `top_p`, `num_beams`,
`do_sample`, `repetition_penalty` go to `generate`.
"""

from __future__ import annotations

import hashlib
from typing import Any

from lmms_eval.api.instance import Instance
from lmms_eval.api.model import lmms
from tqdm import tqdm

from .model import EvalModel, GenerationRequest  # importing it hides a torchvision that cannot load (`compat`)

__all__ = ["ShareGPT4VLmms"]


class ShareGPT4VLmms(lmms):
    """lmms-eval adapter of `EvalModel`.

    Model args (`--model_args key=value,...`): `pretrained` (plugin checkpoint folder or Hub id), `device`
    (default: cuda if available, else cpu), `dtype` (auto = float16 on CUDA as in the paper, float32 on
    CPU), `batch_size` (also lmms-eval's `--batch_size`), `share_prefix` (default true: questions about one
    image prefill the image once; `share_prefix=false` prefills every prompt whole).
    """

    is_simple = True

    def __init__(
        self,
        pretrained: str | None = None,
        device: str | None = None,
        dtype: str = "auto",
        batch_size: int | str = 1,
        share_prefix: bool | str = True,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        if kwargs:
            raise ValueError(
                f"Unknown model_args for sharegpt4v: {sorted(kwargs)}; it takes pretrained, device, dtype, "
                "batch_size and share_prefix."
            )
        if not pretrained:
            raise ValueError("sharegpt4v needs --model_args pretrained=CHECKPOINT (a plugin checkpoint folder).")
        self.evaluator = EvalModel.from_pretrained(
            pretrained, dtype=dtype, device=device, batch_size=int(batch_size), share_prefix=_flag(share_prefix)
        )
        self.pretrained = pretrained

    @classmethod
    def from_evaluator(cls, evaluator: EvalModel, name: str = "in-memory") -> ShareGPT4VLmms:
        """The adapter around an already loaded `EvalModel` (e.g. to pass to `simple_evaluate(model=...)`)."""
        adapter = cls.__new__(cls)
        lmms.__init__(adapter)
        adapter.evaluator, adapter.pretrained = evaluator, name
        return adapter

    @property
    def model(self) -> Any:
        return self.evaluator.model

    @property
    def tokenizer(self) -> Any:
        return self.evaluator.tokenizer

    @property
    def batch_size(self) -> int:
        return self.evaluator.batch_size

    def _doc(self, task: str, split: str, doc_id: int) -> Any:
        return self.task_dict[task][split][doc_id]

    def _images(self, doc_to_visual: Any, task: str, split: str, doc_id: int) -> list:
        visuals = doc_to_visual(self._doc(task, split, doc_id)) if doc_to_visual is not None else []
        return [v for v in (visuals or []) if v is not None]

    def _request(self, request: Instance) -> GenerationRequest:
        context, gen_kwargs, doc_to_visual, doc_id, task, split = request.args
        return GenerationRequest(context, self._images(doc_to_visual, task, split, doc_id), gen_kwargs)

    def generate_until(self, requests: list[Instance]) -> list[str]:
        """Answers in chunks of 8 batches. Questions about one image are put next to each other (see `_order`),
        so that they land in one chunk and share their prefix; a chunk's images are decoded when it runs, so that
        a task of 100,000 questions never holds more than a chunk's images."""
        answers: list[str] = [""] * len(requests)
        order = self._order(requests)
        progress = tqdm(total=len(requests), disable=self.rank != 0, desc="sharegpt4v answering")
        chunk = max(self.batch_size, 1) * 8
        for start in range(0, len(order), chunk):
            part = order[start : start + chunk]
            replies = self.evaluator.generate([self._request(requests[i]) for i in part])
            for index, answer in zip(part, replies, strict=True):
                answers[index] = answer
            progress.update(len(part))
        progress.close()
        for request, answer in zip(requests, answers, strict=True):
            self.cache_hook.add_partial("generate_until", request.args[:2], answer)
        return answers

    def _order(self, requests: list[Instance]) -> list[int]:
        """lmms-eval's order, but each question about an image already seen moved up behind the first question
        about it (MMBench lists its circular rounds far apart). Images are told apart by their stored bytes,
        read without decoding; a request whose bytes cannot be read keeps its place."""
        first: dict[str, int] = {}
        tables: dict[tuple[str, str], Any] = {}  # (task, split) -> its rows undecoded and image columns, or None
        keys = []
        for index, request in enumerate(requests):
            doc_id, task, split = request.args[3:6]
            if (task, split) not in tables:
                tables[task, split] = _raw_image_rows(self.task_dict.get(task, {}).get(split))
            digest = _stored_image_digest(tables[task, split], doc_id)
            keys.append((index if digest is None else first.setdefault(digest, index), index))
        return sorted(range(len(requests)), key=keys.__getitem__)

    def loglikelihood(self, requests: list[Instance]) -> list[tuple[float, bool]]:
        results = []
        for request in tqdm(requests, disable=self.rank != 0, desc="sharegpt4v scoring"):
            context, target, doc_to_visual, doc_id, task, split = request.args
            continuation = target if isinstance(target, str) else target(self._doc(task, split, doc_id))
            if isinstance(continuation, list):  # doc_to_target may return the list of right answers
                continuation = continuation[0]
            images = self._images(doc_to_visual, task, split, doc_id)
            results.append(self.evaluator.loglikelihood(context, str(continuation), images))
        return results

    def generate_until_multi_round(self, requests: list[Instance]) -> list[str]:
        raise NotImplementedError(
            "sharegpt4v answers single-turn questions (generate_until) and scores continuations (loglikelihood); "
            "multi-round tasks are not supported."
        )


def _flag(value: bool | str) -> bool:
    """A boolean model arg (lmms-eval passes `key=value` strings through as they are, or cast)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"share_prefix must be true or false, got {value!r}.")


def _raw_image_rows(dataset: Any) -> tuple[Any, list[str]] | None:
    """`dataset` in arrow format (rows not decoded) and its image columns; None when it is not a `datasets`
    dataset or has no image column."""
    try:
        import datasets
    except ImportError:
        return None
    if not isinstance(dataset, datasets.Dataset):
        return None
    columns = [
        name
        for name, feature in dataset.features.items()
        if isinstance(feature, datasets.Image) or isinstance(getattr(feature, "feature", None), datasets.Image)
    ]
    return (dataset.with_format("arrow"), columns) if columns else None


def _stored_image_digest(table: tuple[Any, list[str]] | None, doc_id: int) -> str | None:
    """A digest of the stored bytes of row `doc_id`'s image columns (`table` from `_raw_image_rows`)."""
    if table is None:
        return None
    rows, columns = table
    digest = hashlib.sha1()
    try:
        for column in columns:
            _feed(digest, rows[doc_id].column(column).to_pylist())
    except (IndexError, KeyError, TypeError, ValueError):  # ordering is an optimisation: never fail a run on it
        return None
    return digest.hexdigest()


def _feed(digest: Any, value: Any) -> None:
    """Hash a stored image cell (`{"bytes", "path"}`, or lists of them) by its bytes."""
    if isinstance(value, bytes):
        digest.update(value)
    elif isinstance(value, dict):
        for key in sorted(value):
            _feed(digest, value[key])
    elif isinstance(value, list):
        for item in value:
            _feed(digest, item)
    else:
        digest.update(repr(value).encode())
