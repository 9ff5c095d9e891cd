"""Batches for ShareGPT4V training: the original labels, image-safe truncation, padded or padding-free.

Rows are the corpora's: `messages` (TRL's conversational format with `{"type": "image"}` parts), `images`
(one image per image part, in order), optionally `id`. Each row is rendered with the stage's chat template
and tokenized by `ShareGPT4VProcessor.build_labels`, which reproduces the original ShareGPT4V tokenization
and labels ("Prompts and labels" in docs/reference.md): vicuna_v1 supervises each answer and its `</s>`; plain
the caption and its newline; never BOS, the system prompt, user turns, `ASSISTANT:` or image tokens.

Truncation follows the original: `max_length` counts text tokens with each image as ONE token (the original
truncated the ids holding the -200 sentinel, then expanded it), so a sample holds up to
`max_length + n_images * (image_seq_length - 1)` positions. An image span is never cut: the text after the
last image is truncated; a sample whose images do not fit at all is skipped, counted in `skipped`, and
logged with its id.

Padding-free packing (`padding_free=True`) concatenates the batch into one row of shape (1, total) with
`position_ids` restarting at 0 for each sample and no `attention_mask`. transformers then builds a
block-diagonal causal mask from the position ids for sdpa/eager (`masking_utils.find_packed_sequence_indices`)
and varlen flash-attention reads the sequence boundaries from them, so no token attends to another sample.
The first label of every sample is -100 (it would be predicted from the previous sample's last token);
it is BOS, already ignored. The packed batch carries `use_cache=False`: transformers only looks for packed
sequences when there is no KV cache, and a model called in eval mode would otherwise make one.
`return_flash_kwargs=True` also returns `cu_seq_lens_q/k` and `max_length_q/k` (computed on the CPU, as TRL's padding-free collator does, to spare device-to-host syncs); `build_trainer`
does not use it, because LlavaModel passes these kwargs on to the vision tower as well, whose flash
attention would then split the image tokens at the text's boundaries. Flash-attention finds the samples
from `position_ids` without them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..processing_sharegpt4v import IGNORE_INDEX, IMAGE_TOKEN

logger = logging.getLogger(__name__)


def attach_images(messages: list[dict[str, Any]], images: list[Any] | None) -> list[Any]:
    """The images of a row in the order of its `{"type": "image"}` parts; checks the counts match."""
    images = list(images or [])
    parts = sum(
        1
        for message in messages
        if isinstance(message.get("content"), list)
        for part in message["content"]
        if part.get("type") == "image"
    )
    literal = sum(
        (message["content"] if isinstance(message.get("content"), str) else "").count(IMAGE_TOKEN)
        for message in messages
    )
    if parts + literal != len(images):
        raise ValueError(
            f"The row has {parts + literal} image placeholder(s) in `messages` but {len(images)} image(s) in "
            "`images`: every {'type': 'image'} part needs one image, in order."
        )
    return images


@dataclass
class ShareGPT4VDataCollator:
    """Collate corpus rows into model inputs with the original ShareGPT4V labels.

    Args:
        processor: a `ShareGPT4VProcessor`.
        chat_template: "vicuna_v1" (finetune, captioner) or "plain" (pretrain).
        do_pad: pad images to square (finetune, inference) or not (pretrain).
        max_length: text tokens per sample with each image counted as one (the original `model_max_length`);
            None: no truncation.
        padding_free: pack the batch into one row with per-sample `position_ids` (see the module docstring).
        pad_to_multiple_of: padded mode only.
        return_flash_kwargs: padding-free only: also return `cu_seq_lens_q/k`, `max_length_q/k` (only safe
            when the vision tower does not run flash attention; see the module docstring).

    `skipped` counts the samples dropped because their images did not fit in `max_length`.
    """

    processor: Any
    chat_template: str = "vicuna_v1"
    do_pad: bool = True
    max_length: int | None = 2048
    padding_free: bool = False
    pad_to_multiple_of: int | None = None
    return_flash_kwargs: bool = False
    skipped: int = 0

    def encode(self, example: dict[str, Any]) -> dict[str, Any] | None:
        """`input_ids`, `labels` and `pixel_values` of one row, or None (counted) if its images cannot fit."""
        messages = example["messages"]
        images = attach_images(messages, example.get("images"))
        kwargs: dict[str, Any] = {"padding": False, "do_pad": self.do_pad}
        if images:
            kwargs["images"] = [images]
        if self.max_length is not None:
            kwargs.update(truncation=True, max_length=self.max_length, count_image_as_one=True)
        out = self.processor.build_labels(
            [messages], chat_template=self.chat_template, processor_kwargs=kwargs, return_tensors=None
        )
        input_ids, labels = list(out["input_ids"][0]), list(out["labels"][0])
        if self.max_length is not None:
            per_image = self.processor.image_seq_length
            text_length = len(input_ids) - len(images) * (per_image - 1)
            if text_length > self.max_length:
                self.skipped += 1
                logger.warning(
                    "Skipped sample %r: its image(s) end after max_length=%d text tokens, so it cannot be truncated "
                    "without cutting an image (%d skipped so far). Raise max_length.",
                    example.get("id", "?"),
                    self.max_length,
                    self.skipped,
                )
                return None
        encoded = {"input_ids": input_ids, "labels": labels}
        if images:
            encoded["pixel_values"] = torch.as_tensor(np.stack([np.asarray(p) for p in out["pixel_values"]]))
        return encoded

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        encoded = [e for e in (self.encode(example) for example in examples) if e is not None]
        if not encoded:
            ids = [str(example.get("id", "?")) for example in examples]
            raise ValueError(
                f"Every sample of the batch was skipped (ids {ids}): their images do not fit in max_length="
                f"{self.max_length} text tokens. Raise max_length, or filter the dataset with `drop_overlong`."
            )
        batch = self.pack(encoded) if self.padding_free else self.pad(encoded)
        pixel_values = [e["pixel_values"] for e in encoded if "pixel_values" in e]
        if pixel_values:
            batch["pixel_values"] = torch.cat(pixel_values)
        return batch

    def pad(self, encoded: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """Right-pad to the longest sample (rounded up to `pad_to_multiple_of`); labels -100 on padding."""
        length = max(len(e["input_ids"]) for e in encoded)
        if self.pad_to_multiple_of:
            length = -(-length // self.pad_to_multiple_of) * self.pad_to_multiple_of
        pad_id = self.processor.tokenizer.pad_token_id
        if pad_id is None:
            raise ValueError(
                "The tokenizer has no pad token: call `ShareGPT4VProcessor.prepare_tokenizer(tokenizer)`."
            )
        input_ids = torch.full((len(encoded), length), pad_id, dtype=torch.long)
        labels = torch.full((len(encoded), length), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((len(encoded), length), dtype=torch.long)
        for row, e in enumerate(encoded):
            n = len(e["input_ids"])
            input_ids[row, :n] = torch.tensor(e["input_ids"])
            labels[row, :n] = torch.tensor(e["labels"])
            attention_mask[row, :n] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}

    def pack(self, encoded: list[dict[str, Any]]) -> dict[str, Any]:
        """One row: samples back to back, `position_ids` restarting at 0, first label of each sample -100."""
        lengths = [len(e["input_ids"]) for e in encoded]
        input_ids = torch.tensor([i for e in encoded for i in e["input_ids"]], dtype=torch.long)[None]
        labels = torch.tensor([t for e in encoded for t in e["labels"]], dtype=torch.long)[None]
        position_ids = torch.cat([torch.arange(n) for n in lengths])[None]
        labels[position_ids == 0] = IGNORE_INDEX
        # use_cache=False: with a KV cache transformers does not look for packed sequences in position_ids
        # (it would let the samples attend to each other); TRL's trainer sets it too.
        batch: dict[str, Any] = {
            "input_ids": input_ids,
            "labels": labels,
            "position_ids": position_ids,
            "use_cache": False,
        }
        if self.return_flash_kwargs:
            cu_seq_lens = torch.tensor([0, *np.cumsum(lengths)], dtype=torch.int32)
            batch["cu_seq_lens_q"] = batch["cu_seq_lens_k"] = cu_seq_lens
            batch["max_length_q"] = batch["max_length_k"] = max(lengths)
        return batch


def measure_row(
    processor: Any, messages: list[dict[str, Any]], chat_template: str, max_length: int | None
) -> tuple[int, bool]:
    """(modality length, fits) of a row, from its text alone (no image is decoded).

    The modality length is the number of positions after truncation, negative for a text-only row, as the
    original's `modality_lengths` (so `group_by_length` puts text-only rows in batches of their own). `fits`
    says whether the row's images end within `max_length` text tokens (images counted as one), i.e. whether
    it can be truncated without cutting an image.
    """
    text = processor.apply_chat_template(messages, chat_template=chat_template)
    sample = processor.tokenize_like_original([text])[0]
    spans, per_image = sample["image_spans"], processor.image_seq_length
    text_length = len(sample["input_ids"]) - len(spans) * (per_image - 1)
    fits = not spans or max_length is None or spans[-1][1] - len(spans) * (per_image - 1) <= max_length
    kept_text = text_length if max_length is None else min(text_length, max_length)
    length = kept_text + len(spans) * (per_image - 1)
    return (length if spans else -length), fits


def drop_overlong(
    dataset: Any,
    processor: Any,
    chat_template: str,
    max_length: int | None,
    num_proc: int | None = None,
    add_lengths: bool = False,
):
    """`dataset` without the rows whose images cannot fit in `max_length` text tokens (logged with the count).

    With `add_lengths`, also adds the `length` column (modality length, see `measure_row`) that
    `train_sampling_strategy: group_by_length` reads: the original's "group by modality length".
    """
    if max_length is None and not add_lengths:
        return dataset
    before = len(dataset)

    def measure(messages):
        length, fits = measure_row(processor, messages, chat_template, max_length)
        return {"length": length, "_fits": fits}

    measured = dataset.map(
        measure,
        input_columns=["messages"],
        num_proc=num_proc,
        desc=f"Measuring samples (max_length={max_length} text tokens)",
    )
    kept = measured.filter(lambda fits: fits, input_columns=["_fits"]).remove_columns("_fits")
    if not add_lengths:
        kept = kept.remove_columns("length")
    dropped = before - len(kept)
    if dropped:
        logger.warning(
            "Skipped %d of %d samples: their images end after max_length=%d text tokens (an image is never cut).",
            dropped,
            before,
            max_length,
        )
    return kept


__all__ = [
    "IGNORE_INDEX",
    "ShareGPT4VDataCollator",
    "attach_images",
    "drop_overlong",
    "measure_row",
]
