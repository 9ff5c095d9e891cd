"""Batched caption generation with one prompt for every image.

What varies from image to image is the image and nothing else: the prompt is the same text, so its token
ids (the chat template around one `<image>`, expanded to `image_seq_length` image tokens) are computed once
and broadcast over the batch. Every row of a batch has the same length, so sorting by prompt length, the
usual cure for padding waste, has nothing left to sort: there is no padding at all and no attention mask
work per image. Per batch the hot loop does: uint8 pixels -> device, one table lookup to normalise them
(the image processor's own table, so the values equal `ShareGPT4VImageProcessor`'s), one `generate` call
(which encodes the images once, before prefill), and one vectorised pass over the generated ids to find
each caption's end. The only per-image Python work is the tokenizer's batch decode.

The KV cache is static on a CPU (and whenever the decode step is compiled): allocated once for prompt +
`max_new_tokens` positions, written in place, and reused (reset) from batch to batch of the same size.
Every caption prompt carries 576 image positions, so a growing cache (`DynamicCache`, which concatenates
each layer's keys and values at every step) copies the whole image prefix of the batch once per generated
token; on a CPU that copy was half of the decode time. On a GPU without `compile` the engine keeps
transformers' default growing cache: a static one attends over all preallocated positions under a mask,
and which is faster there has not been measured. `compile=True` compiles the decode step with
`torch.compile` (CUDA graphs on CUDA); reusing one cache object keeps its addresses fixed, so the graphs
recorded for a batch size are replayed, not recorded again for every batch.
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import asdict, dataclass, replace
from typing import Any

import PIL.Image
import torch
from transformers import GenerationConfig, StaticCache
from transformers.generation import CompileConfig

from ..degenerate import degenerate_rows
from ..dtypes import parse_dtype
from ..errors import UsageError
from .arguments import PRESETS

logger = logging.getLogger(__name__)

__all__ = ["PRESETS", "CaptionEngine", "GenerationSettings", "resolve_dtype"]


@dataclass(frozen=True)
class GenerationSettings:
    """What decides the caption of an image (recorded in run.json). Greedy unless told otherwise."""

    max_new_tokens: int = 500
    num_beams: int = 1
    do_sample: bool = False
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def for_retry(self, repetition_penalty: float, no_repeat_ngram_size: int) -> GenerationSettings:
        """The settings used to regenerate a degenerate caption."""
        return replace(
            self,
            repetition_penalty=max(self.repetition_penalty, repetition_penalty),
            no_repeat_ngram_size=no_repeat_ngram_size,
        )


def resolve_dtype(dtype: str | torch.dtype, device: torch.device) -> torch.dtype:
    """`auto`: bfloat16 on a CUDA device that supports it, float16 on other CUDA devices, float32 elsewhere."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    return parse_dtype(dtype)


class CaptionEngine:
    """Captions batches of preprocessed images with `model.generate`, the prompt ids computed once.

    Args:
        model: a ShareGPT4VForCausalLM (or any Llava-style model) in eval mode, on its device.
        processor: its ShareGPT4VProcessor (chat template, tokenizer, image processor).
        prompt: the instruction, the same for every image.
        cache: "auto" (default: static on a CPU or with `compile`, transformers' growing cache otherwise),
            "static" (preallocated, written in place, reused between batches) or "dynamic" (grows by
            concatenation).
        compile: let `generate` compile the decode step with `torch.compile` (needs the static cache; pays
            off over long runs on a GPU: the first batch of each size pays the compile time). Meant for greedy
            decoding: beam search reorders the cache into new tensors, which CUDA graphs cannot replay.
    """

    MAX_CACHES = 2  # static caches kept: the full batch size and the last, smaller batch

    def __init__(self, model: Any, processor: Any, prompt: str, cache: str = "auto", compile: bool = False) -> None:
        if cache not in ("auto", "static", "dynamic"):
            raise UsageError(f"cache must be 'auto', 'static' or 'dynamic', got {cache!r}.")
        if compile and cache == "dynamic":
            raise UsageError("compile=True needs the static cache (torch.compile cannot follow a growing cache).")
        if cache == "auto":
            cache = "static" if compile or model.device.type != "cuda" else "dynamic"
        self.cache = cache
        self.compile = compile
        self._static_caches: dict[tuple[int, int], StaticCache] = {}
        self._warned_beams = False
        # `generate` takes a cache object as `cache` since transformers 5.23, as `past_key_values` before
        forward = inspect.signature(model.forward).parameters
        self._cache_argument = "cache" if "cache" in forward else "past_key_values"
        self.model = model
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.device = model.device
        self.dtype = model.dtype
        self.prompt = prompt
        self.prompt_ids = self._prompt_ids(prompt).to(self.device)
        image_processor = processor.image_processor
        if hasattr(image_processor, "uint8_normalization_table"):
            table = image_processor.uint8_normalization_table()
            self._table = torch.from_numpy(table).to(self.device)  # (3, 256) float32
        else:
            self._table = None
        generation_config = getattr(model, "generation_config", None)
        eos = getattr(generation_config, "eos_token_id", None)
        eos = self.tokenizer.eos_token_id if eos is None else eos
        self.eos_token_ids = torch.tensor(eos if isinstance(eos, list) else [eos], device=self.device)
        pad = self.tokenizer.pad_token_id
        self.pad_token_id = int(self.eos_token_ids[0]) if pad is None else pad

    def _prompt_ids(self, prompt: str) -> torch.Tensor:
        """(1, L) input ids of the chat-formatted prompt with its image tokens, exactly as the processor
        builds them for any single image."""
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
        text = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        placeholder = PIL.Image.new("RGB", (64, 64))
        input_ids = self.processor(images=[placeholder], text=[text], return_tensors="pt")["input_ids"]
        image_token_id = self.model.config.image_token_id
        found = int((input_ids == image_token_id).sum())
        expected = self.model.config.image_seq_length
        if found != expected:
            raise UsageError(
                f"The processor put {found} image tokens (id {image_token_id}) in the prompt, the model expects "
                f"{expected}: processor and model do not belong together."
            )
        return input_ids

    def pixel_values(self, pixels: torch.Tensor, normalized: bool = False) -> torch.Tensor:
        """(n, 3, H, W) uint8 (or already normalised float) -> normalised pixel values on the model's device."""
        pixels = pixels.to(self.device, non_blocking=True)
        if not normalized:
            if self._table is None:
                raise ValueError("uint8 pixels need an image processor with `uint8_normalization_table`.")
            channel = torch.arange(3, device=self.device).view(1, 3, 1, 1)
            pixels = self._table[channel, pixels.long()]
        return pixels.to(self.dtype)

    def generation_config(self, settings: GenerationSettings) -> GenerationConfig:
        config = GenerationConfig(
            max_new_tokens=settings.max_new_tokens,
            num_beams=settings.num_beams,
            do_sample=settings.do_sample,
            repetition_penalty=settings.repetition_penalty,
            no_repeat_ngram_size=settings.no_repeat_ngram_size,
            eos_token_id=self.eos_token_ids.tolist(),
            pad_token_id=self.pad_token_id,
            bos_token_id=self.tokenizer.bos_token_id,
            disable_compile=not self.compile,
        )
        if self.compile and settings.num_beams > 1 and self.device.type == "cuda" and not self._warned_beams:
            self._warned_beams = True
            logger.warning(
                "--compile with --num-beams %d: beam search reorders the KV cache into new tensors every step, "
                "which CUDA graphs cannot replay; the compiled decode step gains little. Greedy decoding is "
                "what --compile is for.",
                settings.num_beams,
            )
        if self.compile:
            # transformers' default is CUDA graphs ("reduce-overhead"), which only exist on CUDA devices
            mode = "reduce-overhead" if self.device.type == "cuda" else "default"
            config.compile_config = CompileConfig(mode=mode)
            config.compile_config._compile_all_devices = True  # transformers compiles by itself only on accelerators
        return config

    def static_cache(self, rows: int, length: int) -> StaticCache:
        """The static cache for `rows` sequences of up to `length` tokens: made once, reset for every batch."""
        key = (rows, length)
        cache = self._static_caches.pop(key, None)
        if cache is None:
            while len(self._static_caches) >= self.MAX_CACHES:  # drop the least recently used
                self._static_caches.pop(next(iter(self._static_caches)))
            cache = StaticCache(config=self.model.config.get_text_config(decoder=True), max_cache_len=length)
        else:
            cache.reset()
        self._static_caches[key] = cache  # most recently used last
        return cache

    @torch.inference_mode()
    def generate(self, pixel_values: torch.Tensor, settings: GenerationSettings) -> dict[str, list]:
        """Caption a batch of images. Returns columns `caption`, `num_tokens` (caption tokens, EOS not
        counted), `finish_reason` ("eos" or "length") and `degenerate` (a loop in the generated ids)."""
        batch = pixel_values.shape[0]
        input_ids = self.prompt_ids.expand(batch, -1)
        extra = {}
        if self.cache == "static":
            rows, length = batch * settings.num_beams, input_ids.shape[1] + settings.max_new_tokens
            extra[self._cache_argument] = self.static_cache(rows, length)
        output = self.model.generate(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            pixel_values=pixel_values,
            generation_config=self.generation_config(settings),
            **extra,
        )
        new_tokens = output[:, input_ids.shape[1] :]
        is_eos = torch.isin(new_tokens, self.eos_token_ids)
        has_eos = is_eos.any(dim=1)
        no_eos_length = torch.full_like(has_eos, new_tokens.shape[1], dtype=torch.long)
        length = torch.where(has_eos, is_eos.int().argmax(dim=1), no_eos_length)
        degenerate = degenerate_rows(new_tokens, length)
        lengths = length.tolist()
        texts = self.tokenizer.batch_decode(
            [row[:n] for row, n in zip(new_tokens.tolist(), lengths, strict=True)], skip_special_tokens=True
        )
        return {
            "caption": [text.strip() for text in texts],
            "num_tokens": lengths,
            "finish_reason": ["eos" if flag else "length" for flag in has_eos.tolist()],
            "degenerate": degenerate.tolist(),
        }
