"""The model side of evaluation, free of lmms-eval: a plugin checkpoint that answers prompts the way the
original evaluation loops did (`generate`) and scores continuations (`loglikelihood`).

`lmms_eval_model.ShareGPT4VLmms` adapts it to lmms-eval's request objects; tests call it directly.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from typing import Any

import PIL.Image
import torch

from ..dtypes import parse_dtype
from .cache import ReservedCache
from .compat import hide_broken_torchvision
from .prefix import (
    SharedPrefix,
    batch_cache,
    image_digests,
    plan_batches,
    prefix_cache,
    shared_inputs,
    split_prefix,
)
from .protocol import build_prompt

hide_broken_torchvision()  # before this module's users load transformers' processors (see `compat`)

logger = logging.getLogger(__name__)

__all__ = ["EvalModel", "GenerationRequest", "resolve_eval_dtype"]

# generation options a task may set (lmms-eval's task YAML `generation_kwargs`, or --gen_kwargs)
_GENERATE_KEYS = ("max_new_tokens", "temperature", "top_p", "num_beams", "do_sample", "repetition_penalty")
# ... and the ones this adapter reads itself
_PROTOCOL_KEYS = ("until", "conversation", "image_aspect_ratio")


def resolve_eval_dtype(dtype: str | torch.dtype, device: torch.device) -> torch.dtype:
    """`auto`: float16 on CUDA (the paper evaluated in fp16), float32 elsewhere."""
    if dtype == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    return parse_dtype(dtype)


@dataclass
class GenerationRequest:
    """One question: its text (the task's context), its images and the task's generation options."""

    question: str
    images: list[PIL.Image.Image]
    options: dict[str, Any] = field(default_factory=dict)


class EvalModel:
    """A ShareGPT4V checkpoint evaluated as in the paper.

    Args:
        model: a `ShareGPT4VForCausalLM` in eval mode.
        processor: its `ShareGPT4VProcessor` (tokenizes like the original, pads images to square or not).
        batch_size: questions per `generate` call (left-padded). 1 is how the original loops ran.
        share_prefix: questions about the same image prefill their common prefix (system prompt and image) once
            (see `prefix`); the answers are the same, the work less. Greedy and sampled decoding; beam search
            always runs the plain path.
    """

    def __init__(self, model: Any, processor: Any, batch_size: int = 1, share_prefix: bool = True) -> None:
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size}.")
        self.model = model
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.batch_size = int(batch_size)
        self.share_prefix = bool(share_prefix)
        self._warned: set[str] = set()

    @classmethod
    def from_pretrained(
        cls,
        path: str,
        dtype: str | torch.dtype = "auto",
        device: str | None = None,
        batch_size: int = 1,
        share_prefix: bool = True,
    ) -> EvalModel:
        """Load a plugin checkpoint folder or Hub id; a released (unconverted) checkpoint is refused with the
        `sharegpt4v convert` command that fixes it."""
        from ..captioning import load_captioner

        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        model, processor = load_captioner(path, resolve_eval_dtype(dtype, device), device)
        return cls(model, processor, batch_size=batch_size, share_prefix=share_prefix)

    # ------------------------------------------------------------------------------------------ inputs

    def prompt(self, question: str, num_images: int, conversation: str = "vicuna_v1") -> str:
        """The prompt string of a question (see `protocol.build_prompt`); text-only questions get no image."""
        return build_prompt(question, num_images, conversation)

    def encode(self, prompts: list[str], images: list[list[PIL.Image.Image]], pad: bool = True) -> Any:
        """Model inputs of a batch of prompts (left-padded) and their images, on the model's device and dtype."""
        flat = [image.convert("RGB") for sample in images for image in sample]
        inputs = self.processor(
            text=prompts,
            images=flat or None,
            padding=len(prompts) > 1,
            padding_side="left",
            do_pad=pad,
            return_tensors="pt",
        )
        inputs = inputs.to(self.model.device)
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        return inputs

    def _split_options(self, options: dict[str, Any]) -> tuple[dict[str, Any], list[str], str, bool]:
        """(generate kwargs, stop strings, conversation, pad) from a task's generation options."""
        options = dict(options or {})
        until = options.pop("until", None) or []
        until = [until] if isinstance(until, str) else list(until)
        conversation = options.pop("conversation", "vicuna_v1")
        aspect = options.pop("image_aspect_ratio", "pad")
        if aspect not in ("pad", "original"):
            raise ValueError(f"image_aspect_ratio must be 'pad' or 'original', got {aspect!r}.")
        kwargs = {"max_new_tokens": 128, "do_sample": False, "num_beams": 1}
        for key, value in options.items():
            if key in _GENERATE_KEYS:
                kwargs[key] = value
            elif key not in self._warned:
                self._warned.add(key)
                logger.warning("Generation option %r is not used by the ShareGPT4V evaluator; ignored.", key)
        temperature = float(kwargs.pop("temperature", 0) or 0)
        top_p = kwargs.pop("top_p", None)
        if temperature > 0:  # the original loops: do_sample = temperature > 0
            kwargs.update(do_sample=True, temperature=temperature, **({"top_p": top_p} if top_p else {}))
        else:
            kwargs["do_sample"] = False
        kwargs["max_new_tokens"] = int(kwargs["max_new_tokens"])
        kwargs["num_beams"] = int(kwargs["num_beams"])
        return kwargs, until, conversation, aspect == "pad"

    # ------------------------------------------------------------------------------------------ generate

    @torch.inference_mode()
    def generate(self, requests: list[GenerationRequest]) -> list[str]:
        """The answer to each request, greedy unless its options say otherwise: decoded without special
        tokens, stripped, cut at the first stop string of `until`. Requests are batched by identical options
        (and by image when prefixes are shared, else longest prompt first) and answered in their original order."""
        answers: list[str | None] = [None] * len(requests)
        groups: dict[str, list[int]] = {}
        pixels: dict[tuple[bool, str], tuple[torch.Tensor, str]] = {}  # an image's pixels, for all the groups
        for index, request in enumerate(requests):
            groups.setdefault(repr(sorted((request.options or {}).items(), key=str)), []).append(index)
        for indices in groups.values():
            kwargs, until, conversation, pad = self._split_options(requests[indices[0]].options)
            prompts = {i: self.prompt(requests[i].question, len(requests[i].images), conversation) for i in indices}
            texts: dict[int, str] = {}
            if self.share_prefix and kwargs["num_beams"] == 1:
                texts = self._generate_shared(prompts, requests, kwargs, pad, pixels)
            rest = {i: prompt for i, prompt in prompts.items() if i not in texts}
            texts.update(self._generate_padded(rest, requests, kwargs, pad))
            for i, text in texts.items():
                answers[i] = _cut(text, until).strip()
        return answers  # type: ignore[return-value]

    def _decode_new(self, output: torch.Tensor, prompt_length: int) -> list[str]:
        return self.tokenizer.batch_decode(output[:, prompt_length:], skip_special_tokens=True)

    def _generate_padded(
        self, prompts: dict[int, str], requests: list[GenerationRequest], kwargs: dict[str, Any], pad: bool
    ) -> dict[int, str]:
        """Left-padded batches, longest prompt first; each prompt prefilled whole."""
        texts: dict[int, str] = {}
        order = sorted(prompts, key=lambda i: -len(prompts[i]))
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            inputs = self.encode([prompts[i] for i in batch], [requests[i].images for i in batch], pad)
            extra = {}
            if kwargs["num_beams"] == 1:  # a cache that decodes without copying itself (see `cache`)
                extra["cache"] = ReservedCache(self.model.config, room=kwargs["max_new_tokens"])
            output = self.model.generate(
                **inputs, pad_token_id=self.tokenizer.pad_token_id, use_cache=True, **extra, **kwargs
            )
            texts.update(zip(batch, self._decode_new(output, inputs["input_ids"].shape[1]), strict=True))
        return texts

    def _generate_shared(
        self,
        prompts: dict[int, str],
        requests: list[GenerationRequest],
        kwargs: dict[str, Any],
        pad: bool,
        pixels: dict[tuple[bool, str], tuple[torch.Tensor, str]],
    ) -> dict[int, str]:
        """The prompts with an image, batched by prefix, each prefix prefilled once (the cache of a batch's last
        prefix carries over to the next batch when that starts with the same prefix). Prompts without an image
        are left out (the caller answers them on the padded path)."""
        encoded, prefixes = self._encode_shared(prompts, requests, pad, pixels)
        texts: dict[int, str] = {}
        carried: dict[Any, list] = {}
        batches = plan_batches(prefixes, self.batch_size)
        for number, batch in enumerate(batches):
            length = prefixes[batch[0]].length
            first = {prefixes[i].key: i for i in reversed(batch)}  # one question of each prefix
            states = {key: carried[key] for key in first if key in carried}
            missing = [key for key in first if key not in states]
            for key in missing:  # one at a time: a prefix of ~600 positions fills the matmuls on its own
                item = encoded[first[key]]
                states[key] = prefix_cache(self.model, item["input_ids"][:, :length], item["pixel_values"])
            input_ids, attention_mask = shared_inputs([encoded[i] for i in batch], length, self.tokenizer.pad_token_id)
            room = input_ids.shape[1] - length + kwargs["max_new_tokens"]
            cache = batch_cache([states[prefixes[i].key] for i in batch], self.model.config, room)
            output = self.model.generate(
                input_ids=input_ids,
                attention_mask=attention_mask,
                cache=cache,
                pad_token_id=self.tokenizer.pad_token_id,
                use_cache=True,
                **kwargs,
            )
            texts.update(zip(batch, self._decode_new(output, input_ids.shape[1]), strict=True))
            last = prefixes[batch[-1]].key
            following = batches[number + 1][0] if number + 1 < len(batches) else None
            carried = {last: states[last]} if following is not None and prefixes[following].key == last else {}
        return texts

    def _encode_shared(
        self,
        prompts: dict[int, str],
        requests: list[GenerationRequest],
        pad: bool,
        pixels: dict[tuple[bool, str], tuple[torch.Tensor, str]],
    ) -> tuple[dict[int, dict[str, torch.Tensor]], dict[int, SharedPrefix]]:
        """The ids and pixel values of each prompt with an image (what `encode` gives for the prompt alone) and
        its shared prefix. An image asked about several times is preprocessed once: `pixels` holds its pixel
        values and their digest (which names them in the prefix's key: two images the preprocessing maps to the
        same pixels share a prefix), found by the padding and the digest of the image's RGB pixels."""
        encoded: dict[int, dict[str, torch.Tensor]] = {}
        prefixes: dict[int, SharedPrefix] = {}
        for i, prompt in prompts.items():
            images = [image.convert("RGB") for image in requests[i].images]
            if not images:
                continue
            keys = [(pad, digest) for digest in image_digests(images)]
            for key, image in zip(keys, images, strict=True):
                if key not in pixels:
                    values = self.processor.image_processor(image, do_pad=pad, return_tensors="pt")["pixel_values"]
                    digest = hashlib.sha1(values.numpy().tobytes()).hexdigest()
                    pixels[key] = values.to(self.model.device, self.model.dtype), digest
            (sample,) = self.processor.tokenize_like_original([prompt])
            input_ids = torch.tensor([sample["input_ids"]], device=self.model.device)
            values = [pixels[key][0] for key in keys]
            encoded[i] = {"input_ids": input_ids, "pixel_values": values[0] if len(values) == 1 else torch.cat(values)}
            prefix = split_prefix(input_ids, tuple(pixels[key][1] for key in keys), self.model.config.image_token_id)
            if prefix is not None:
                prefixes[i] = prefix
        return encoded, prefixes

    # ------------------------------------------------------------------------------------------ loglikelihood

    @torch.inference_mode()
    def loglikelihood(
        self, question: str, continuation: str, images: list[PIL.Image.Image], options: dict[str, Any] | None = None
    ) -> tuple[float, bool]:
        """(sum of the log-probabilities of `continuation`'s tokens after the prompt of `question`, whether greedy
        decoding would produce exactly those tokens). The continuation's tokens are those the prompt + continuation
        string has beyond the prompt's own tokens (the processor tokenizes the text after the image in one piece)."""
        _, _, conversation, pad = self._split_options(options or {})
        prompt = self.prompt(question, len(images), conversation)
        context_ids = self.encode([prompt], [images], pad)["input_ids"][0]
        inputs = self.encode([prompt + continuation], [images], pad)
        full_ids = inputs["input_ids"][0]
        start = _common_prefix(context_ids, full_ids)
        if start == len(full_ids):
            raise ValueError(f"The continuation {continuation!r} adds no token to the prompt.")
        logits = self.model(**inputs).logits[0, start - 1 : -1].float()
        targets = full_ids[start:]
        logprobs = torch.log_softmax(logits, dim=-1).gather(-1, targets[:, None])[:, 0]
        greedy = bool((logits.argmax(dim=-1) == targets).all())
        return float(logprobs.sum()), greedy


def _common_prefix(a: torch.Tensor, b: torch.Tensor) -> int:
    n = min(len(a), len(b))
    differ = (a[:n] != b[:n]).nonzero()
    return int(differ[0]) if len(differ) else n


def _cut(text: str, until: list[str]) -> str:
    """`text` up to the first occurrence of any stop string."""
    for stop in until:
        if stop:
            text = text.split(stop, 1)[0]
    return text
