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
    CPU), `batch_size` (also lmms-eval's `--batch_size`).
    """

    is_simple = True

    def __init__(
        self,
        pretrained: str | None = None,
        device: str | None = None,
        dtype: str = "auto",
        batch_size: int | str = 1,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        if kwargs:
            raise ValueError(
                f"Unknown model_args for sharegpt4v: {sorted(kwargs)}; it takes pretrained, device, dtype and "
                "batch_size."
            )
        if not pretrained:
            raise ValueError("sharegpt4v needs --model_args pretrained=CHECKPOINT (a plugin checkpoint folder).")
        self.evaluator = EvalModel.from_pretrained(pretrained, dtype=dtype, device=device, batch_size=int(batch_size))
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

    def generate_until(self, requests: list[Instance]) -> list[str]:
        batch = []
        for request in requests:
            context, gen_kwargs, doc_to_visual, doc_id, task, split = request.args
            batch.append(GenerationRequest(context, self._images(doc_to_visual, task, split, doc_id), gen_kwargs))
        answers = []
        progress = tqdm(total=len(batch), disable=self.rank != 0, desc="sharegpt4v answering")
        # one evaluator call per chunk keeps the progress bar moving; batches form inside each chunk
        chunk = max(self.batch_size, 1) * 8
        for start in range(0, len(batch), chunk):
            answers += self.evaluator.generate(batch[start : start + chunk])
            progress.update(len(batch[start : start + chunk]))
        progress.close()
        for request, answer in zip(requests, answers, strict=True):
            self.cache_hook.add_partial("generate_until", request.args[:2], answer)
        return answers

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
