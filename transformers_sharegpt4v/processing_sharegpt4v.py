"""ShareGPT4V processor: LLaMA tokenizer + ShareGPT4V image processor, `<image>` -> 576 image tokens.

Part of the remote-code unit: imports only numpy, transformers, `.image_processing_sharegpt4v` and
`.tokenization_sharegpt4v`.

`tokenization_sharegpt4v` tokenizes each prompt exactly as the original ShareGPT4V / LLaVA-1.5 code did (in
pieces split on "<image>", each with SentencePiece's dummy prefix; see there why) and expands every `<image>` to
`image_seq_length` image tokens. This module adds the rest of a transformers processor around it: kwargs,
image-safe truncation, padding, images, chat templates and labels.

Chat templates (`chat_templates/*.jinja`, saved with the processor): "vicuna_v1" (the default; stage 2 and
evaluation) and "plain" (stage-1 captions). Their `{% generation %}` spans make
`apply_chat_template(..., return_assistant_tokens_mask=True)` return the labels mask of the original code:
for vicuna_v1 the answers and their closing "</s>" (BOS, system, every "USER: ... ASSISTANT:" and the images
ignored); for plain the caption and its newline.
"""

from pathlib import Path
from typing import Any

import numpy as np
from transformers.feature_extraction_utils import BatchFeature
from transformers.processing_utils import MultiModalData, ProcessingKwargs, ProcessorMixin, TextKwargs
from transformers.utils import logging

from .image_processing_sharegpt4v import ShareGPT4VImageProcessor
from .tokenization_sharegpt4v import (
    IMAGE_TOKEN,
    ImageExpansion,
    PieceTokenizer,
    tokenize_like_original,
    tokenizer_is_legacy,
)

logger = logging.get_logger(__name__)

IGNORE_INDEX = -100  # the label of a position the loss ignores (PyTorch cross entropy's default)
PAD_TOKEN = "<pad>"
# llava-hf pads the vocabulary to a multiple of 64 (32000 + <image> + <pad> -> 32064): faster matmuls on GPUs.
VOCAB_MULTIPLE = 64
DEFAULT_CHAT_TEMPLATE = "vicuna_v1"
CHAT_TEMPLATE_NAMES = ("vicuna_v1", "plain")
_UNSUPPORTED_TEXT_KWARGS = (
    "text_pair",
    "text_target",
    "text_pair_target",
    "is_split_into_words",
    "stride",
    "return_overflowing_tokens",
    "sanitize_control_tokens",
)


def read_chat_template(name: str) -> str | None:
    """The bundled chat template `chat_templates/{name}.jinja`, or None when it is not next to this module
    (remote code loaded from a checkpoint, which carries its own templates in `chat_template.jinja` and
    `additional_chat_templates/`)."""
    path = Path(__file__).resolve().parent / "chat_templates" / f"{name}.jinja"
    return path.read_text(encoding="utf-8") if path.is_file() else None


def load_chat_templates() -> dict[str, str] | None:
    """The bundled chat templates as `{"default": vicuna_v1, "vicuna_v1": ..., "plain": ...}`, or None when they
    are not next to this module (`read_chat_template`)."""
    templates = {name: read_chat_template(name) for name in CHAT_TEMPLATE_NAMES}
    if any(template is None for template in templates.values()):
        return None
    return {"default": templates[DEFAULT_CHAT_TEMPLATE], **templates}


class ShareGPT4VTextKwargs(TextKwargs, total=False):
    """Text kwargs of `ShareGPT4VProcessor`, on top of the tokenizer's.

    count_image_as_one (`bool`, defaults to `False`):
        With `truncation` and `max_length`, count each image as one position (as the original code did: it
        truncated to `max_length` ids with the image as one sentinel, then expanded it) instead of
        `image_seq_length` positions.
    """

    count_image_as_one: bool | None


class ShareGPT4VProcessorKwargs(ProcessingKwargs, total=False):
    text_kwargs: ShareGPT4VTextKwargs
    # No defaults beyond transformers'. Declared because transformers < 5.23 reads `_defaults` on this class
    # (TypedDict subclasses do not inherit class attributes).
    _defaults = {}


def _flatten_images(images: Any) -> list:
    """Flatten a (nested) list of images; a single image becomes a one-element list."""
    if isinstance(images, (list, tuple)):
        return [image for item in images for image in _flatten_images(item)]
    return [images]


def _truncation_length(sample: dict[str, Any], max_length: int, count_image_as_one: bool) -> int:
    """Number of tokens to keep: at most `max_length` counted positions, but never cutting or dropping an image."""
    ids = sample["input_ids"]
    cost = np.ones(len(ids), dtype=np.int64)
    if count_image_as_one:
        for start, end in sample["image_spans"]:
            cost[start + 1 : end] = 0
    keep = int(np.searchsorted(np.cumsum(cost), max_length, side="right"))
    for start, end in sample["image_spans"]:
        if keep < end:
            if start > 0 and keep < start:
                logger.warning_once(
                    f"max_length={max_length} ends before an image: the text is kept up to the end of the last "
                    "image instead, so the sequence is longer than max_length (images are never cut)."
                )
            keep = end
    return keep


def _check_image_counts(texts: list[str], images: Any, image_token: str) -> list:
    """Flat list of images after checking that every text has one `<image>` per image passed for it."""
    counts = [text.count(image_token) for text in texts]
    if images is None:
        for index, count in enumerate(counts):
            if count:
                raise ValueError(
                    f"Sample {index}: the text has {count} {image_token!r} placeholder(s) but 0 images "
                    "were passed. Pass `images` (one per placeholder), or remove the placeholders."
                )
        return []
    nested = (
        isinstance(images, (list, tuple))
        and len(images) == len(texts)
        and all(isinstance(item, (list, tuple)) for item in images)
    )
    if nested:
        for index, (count, sample_images) in enumerate(zip(counts, images, strict=True)):
            n_images = len(_flatten_images(sample_images))
            if count != n_images:
                raise ValueError(
                    f"Sample {index}: the text has {count} {image_token!r} placeholder(s) but {n_images} "
                    "image(s) were passed for it. Put one placeholder in the text per image."
                )
        return _flatten_images(images)
    flat = _flatten_images(images)
    if sum(counts) != len(flat):
        where = "Sample 0" if len(texts) == 1 else f"Samples 0..{len(texts) - 1} (per sample: {counts})"
        raise ValueError(
            f"{where}: the text has {sum(counts)} {image_token!r} placeholder(s) in total but "
            f"{len(flat)} image(s) were passed. Put one placeholder in the text per image (or pass the images "
            "as one list per sample)."
        )
    return flat


def _pad(
    samples: list[dict[str, Any]],
    padding: Any,
    max_length: int | None,
    multiple: int | None,
    side: str,
    pad_id: int | None,
) -> None:
    """Pad `input_ids`, `attention_mask` and `offset_mapping` of every sample in place."""
    lengths = [len(s["input_ids"]) for s in samples]
    if padding in (True, "longest"):
        target = max(lengths)
    elif padding == "max_length":
        if max_length is None:
            raise ValueError("padding='max_length' needs `max_length`.")
        target = max(max_length, max(lengths))  # images are never cut, so a sample can exceed max_length
    else:
        raise ValueError(f"padding must be True, False, 'longest', 'max_length' or 'do_not_pad'; got {padding!r}.")
    if multiple:
        target = -(-target // multiple) * multiple
    if side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', got {side!r}.")
    if pad_id is None and any(length != target for length in lengths):
        raise ValueError(
            "The tokenizer has no pad token, so the batch cannot be padded. Set `tokenizer.pad_token` or call "
            "`ShareGPT4VProcessor.prepare_tokenizer(tokenizer)`."
        )
    for sample in samples:
        n = target - len(sample["input_ids"])
        if n == 0:
            continue
        fill = {"input_ids": [pad_id] * n, "attention_mask": [0] * n, "offset_mapping": [(0, 0)] * n}
        for key, values in fill.items():
            sample[key] = values + sample[key] if side == "left" else sample[key] + values


def _truncate(samples: list[dict[str, Any]], text_kwargs: dict[str, Any], tokenizer: Any) -> int | None:
    """Truncate the samples in place as `truncation` / `max_length` ask (images are never cut); returns the
    max_length in force (the tokenizer's model_max_length when truncating without one)."""
    truncation = text_kwargs.get("truncation", False)
    max_length = text_kwargs.get("max_length")
    if max_length is None and truncation not in (None, False, "do_not_truncate"):
        # As the tokenizer does: truncate to its model_max_length unless that is the "no limit" sentinel.
        model_max_length = getattr(tokenizer, "model_max_length", None)
        max_length = model_max_length if model_max_length is not None and model_max_length < 10**9 else None
    if truncation not in (None, False, "do_not_truncate") and max_length is not None:
        if tokenizer.truncation_side != "right":
            raise ValueError(
                "ShareGPT4VProcessor truncates only on the right (the images are at the start of the prompt); "
                f"the tokenizer has truncation_side={tokenizer.truncation_side!r}."
            )
        count_image_as_one = bool(text_kwargs.get("count_image_as_one", False))
        for sample in samples:
            keep = _truncation_length(sample, max_length, count_image_as_one)
            for key in ("input_ids", "attention_mask", "offset_mapping"):
                sample[key] = sample[key][:keep]

    return max_length


def _refuse_unsupported(text_kwargs: dict[str, Any]) -> None:
    for key in _UNSUPPORTED_TEXT_KWARGS:
        if text_kwargs.get(key):
            raise ValueError(f"ShareGPT4VProcessor does not support `{key}`.")


def _truncate_and_pad(samples: list[dict[str, Any]], text_kwargs: dict[str, Any], tokenizer: Any) -> None:
    """Truncate and pad the samples in place as `text_kwargs` ask; refuse ragged samples for tensors."""
    max_length = _truncate(samples, text_kwargs, tokenizer)
    padding = text_kwargs.get("padding", False)
    if padding not in (None, False, "do_not_pad"):
        _pad(
            samples,
            padding,
            max_length,
            text_kwargs.get("pad_to_multiple_of"),
            text_kwargs.get("padding_side") or tokenizer.padding_side,
            tokenizer.pad_token_id,
        )
    if text_kwargs.get("return_tensors") is not None and len({len(s["input_ids"]) for s in samples}) > 1:
        raise ValueError(
            "The samples have different lengths; pass `padding=True` to return tensors "
            f"(lengths: {[len(s['input_ids']) for s in samples]})."
        )


def _texts_of(text: Any) -> list[str]:
    """`text` of `__call__` as a list of strings, or a ValueError saying what is wrong."""
    if text is None:
        raise ValueError(
            "ShareGPT4VProcessor needs `text` with one '<image>' per image. For pixel values alone, call "
            "`processor.image_processor(images)`."
        )
    texts = [text] if isinstance(text, str) else list(text)
    for index, sample in enumerate(texts):
        if not isinstance(sample, str):
            raise ValueError(f"Sample {index}: `text` must be a string or a list of strings, got {type(sample)}.")
    return texts


class ShareGPT4VProcessor(ProcessorMixin):
    r"""
    Processor of ShareGPT4V: a LLaMA tokenizer with an `<image>` token and a `ShareGPT4VImageProcessor`.

    `__call__(images, text)` tokenizes each text exactly as the original ShareGPT4V / LLaVA-1.5 code did (see the
    module docstring) and replaces each `<image>` with `image_seq_length` image tokens. Padding (left or right),
    image-safe truncation, `apply_chat_template` (templates "vicuna_v1", the default, and "plain"), assistant
    masks and `build_labels` for training.

    Args:
        image_processor: a `ShareGPT4VImageProcessor` (pad to square + CLIP 336 preprocessing).
        tokenizer: a LLaMA tokenizer that has the `<image>` token (see `prepare_tokenizer`).
        chat_template: a template string, or a dict of named templates with a "default"; None loads the bundled
            {"default": vicuna_v1, "vicuna_v1", "plain"}.
        image_token: the image placeholder in prompts.
        image_seq_length: image tokens per image; the model's `config.image_seq_length` (576 for CLIP 336/14).

    Example:
        >>> processor = AutoProcessor.from_pretrained("path/to/sharegpt4v-7b")
        >>> messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe it."}]}]
        >>> prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
        >>> inputs = processor(images=[image], text=prompt, return_tensors="pt")
    """

    valid_processor_kwargs = ShareGPT4VProcessorKwargs

    def __init__(
        self,
        image_processor=None,
        tokenizer=None,
        chat_template=None,
        image_token: str = IMAGE_TOKEN,
        image_seq_length: int = 576,
    ):
        if chat_template is None:
            chat_template = load_chat_templates()
        super().__init__(image_processor, tokenizer, chat_template=chat_template)
        self.image_token = image_token
        self.image_seq_length = int(image_seq_length)
        if self.image_seq_length < 1:
            raise ValueError(f"image_seq_length must be a positive integer, got {image_seq_length}.")
        image_token_id = tokenizer.convert_tokens_to_ids(image_token)
        if image_token_id is None or image_token not in tokenizer.get_vocab():
            raise ValueError(
                f"The tokenizer has no {image_token!r} token. Add it (and a pad token) with "
                "`ShareGPT4VProcessor.prepare_tokenizer(tokenizer)`, then resize the model's embeddings to "
                "`len(tokenizer)` (llava-hf checkpoints already have it: id 32000)."
            )
        self.image_token_id = image_token_id
        self._pieces = PieceTokenizer()

    # ------------------------------------------------------------------ construction helpers

    @staticmethod
    def prepare_tokenizer(tokenizer: Any, image_token: str = IMAGE_TOKEN, pad_token: str = PAD_TOKEN) -> int:
        """Add the image token, and a pad token if there is none, as special tokens (as llava-hf does).

        For the LLaMA vocabulary this gives `<image>` = 32000 and `<pad>` = 32001. Returns the number of tokens
        added; resize the model's embeddings to `len(tokenizer)` afterwards (a multiple of `VOCAB_MULTIPLE`).
        """
        added = 0
        if image_token not in tokenizer.get_vocab():
            added += tokenizer.add_tokens([image_token], special_tokens=True)
        if tokenizer.pad_token is None:
            added += tokenizer.add_special_tokens({"pad_token": pad_token})
        return added

    @classmethod
    def from_model_config(
        cls,
        config: Any,
        tokenizer: Any,
        image_processor: ShareGPT4VImageProcessor | None = None,
        chat_template: str | dict[str, str] | None = None,
    ) -> "ShareGPT4VProcessor":
        """Build the processor of a model: `image_seq_length` from `config`, image token id checked against it.

        `config` is a `ShareGPT4VConfig`; `image_processor` defaults to `ShareGPT4VImageProcessor()` at the vision
        tower's image size.
        """
        if image_processor is None:
            size = config.vision_config.image_size
            image_processor = ShareGPT4VImageProcessor(
                size={"shortest_edge": size}, crop_size={"height": size, "width": size}
            )
        processor = cls(
            image_processor=image_processor,
            tokenizer=tokenizer,
            chat_template=chat_template,
            image_seq_length=config.image_seq_length,
        )
        if processor.image_token_id != config.image_token_id:
            raise ValueError(
                f"The tokenizer's {processor.image_token!r} id is {processor.image_token_id} but the model config "
                f"has image_token_id={config.image_token_id}. Use the tokenizer saved with the model."
            )
        return processor

    # ------------------------------------------------------------------ tokenization

    def tokenize_like_original(self, texts: list[str], add_special_tokens: bool = True) -> list[dict[str, Any]]:
        """Tokenize each text as ShareGPT4V did, with every `<image>` expanded to `image_seq_length` tokens.

        Returns one dict per text: `input_ids`, `offset_mapping` (character spans in the text with every
        placeholder expanded to `image_seq_length` placeholders, as transformers' processors count them),
        `image_spans` (token index ranges of the images) and `text_replacement_offsets`.
        With `add_special_tokens`, the tokens the tokenizer adds around a text (BOS for LLaMA) are added, except a
        prefix the text already starts with (a chat template's "<s>"), so BOS is never doubled.
        """
        image = ImageExpansion(self.image_token, self.image_token_id, self.image_seq_length)
        return tokenize_like_original(self._pieces, self.tokenizer, texts, image, add_special_tokens)

    def __call__(self, images: Any = None, text: str | list[str] | None = None, **kwargs: Any) -> BatchFeature:
        """Tokenize `text` like the original ShareGPT4V code and preprocess `images`.

        Args:
            images: images for the `<image>` placeholders, in order: a flat list, or one list per text (PIL images,
                arrays, tensors or file paths, as `ShareGPT4VImageProcessor` takes them).
            text: a prompt or a list of prompts, each with one `<image>` per image.
            **kwargs: `padding` (True/"longest"/"max_length"), `padding_side` ("left" for batched generation),
                `pad_to_multiple_of`, `truncation` + `max_length` (images are never cut: only text after the last
                image is dropped), `count_image_as_one`, `add_special_tokens`, `return_tensors`,
                `return_attention_mask`, `return_offsets_mapping`, `return_mm_token_type_ids`,
                `return_text_replacement_offsets`, and image processor kwargs.

        Returns:
            `BatchFeature` with `input_ids`, `attention_mask` and, with images, `pixel_values` (N, 3, 336, 336).
        """
        texts = _texts_of(text)
        merged = self._merge_kwargs(
            ShareGPT4VProcessorKwargs, tokenizer_init_kwargs=self.tokenizer.init_kwargs, **kwargs
        )
        _refuse_unsupported(merged["text_kwargs"])
        flat_images = _check_image_counts(texts, images, self.image_token)
        samples = self._tokenize(texts, merged["text_kwargs"])
        data = self._text_outputs(samples, merged)
        if flat_images:
            data.update(self.image_processor(flat_images, **merged["images_kwargs"]))
        return_tensors = merged["text_kwargs"].get("return_tensors")
        return BatchFeature(data, tensor_type=return_tensors, skip_tensor_conversion=self.skip_tensor_conversion)

    def _tokenize(self, texts: list[str], text_kwargs: dict[str, Any]) -> list[dict[str, Any]]:
        """The one step that differs from transformers' processors: `tokenize_like_original`, then the
        truncation (never cutting an image) and padding the kwargs ask for."""
        add_special_tokens = text_kwargs.get("add_special_tokens") is not False  # None means the default, True
        samples = self.tokenize_like_original(texts, add_special_tokens=add_special_tokens)
        for sample in samples:
            sample["attention_mask"] = [1] * len(sample["input_ids"])
        _truncate_and_pad(samples, text_kwargs, self.tokenizer)
        return samples

    def _text_outputs(self, samples: list[dict[str, Any]], merged: dict[str, Any]) -> dict[str, Any]:
        """The text fields of `__call__`'s output that the kwargs ask for."""
        text_kwargs = merged["text_kwargs"]
        data: dict[str, Any] = {"input_ids": [s["input_ids"] for s in samples]}
        if text_kwargs.get("return_attention_mask", True) is not False:
            data["attention_mask"] = [s["attention_mask"] for s in samples]
        if text_kwargs.get("return_offsets_mapping"):
            data["offset_mapping"] = [s["offset_mapping"] for s in samples]
        if merged.get("return_text_replacement_offsets") or text_kwargs.get("return_text_replacement_offsets"):
            data["text_replacement_offsets"] = [s["text_replacement_offsets"] for s in samples]
        if merged.get("return_mm_token_type_ids") or text_kwargs.get("return_mm_token_type_ids"):
            data["mm_token_type_ids"] = self.create_mm_token_type_ids(data["input_ids"])
        return data

    # ------------------------------------------------------------------ chat templates and labels

    def build_labels(
        self,
        conversation: list[dict[str, Any]] | list[list[dict[str, Any]]],
        chat_template: str | None = None,
        processor_kwargs: dict[str, Any] | None = None,
        return_tensors: str = "pt",
    ) -> BatchFeature:
        """Training inputs of one or more conversations, with the labels of the original ShareGPT4V code.

        Renders the conversation(s) with `chat_template` ("vicuna_v1" by default, "plain" for stage 1), tokenizes
        like the original and returns `input_ids`, `attention_mask`, `pixel_values` (if any image) and `labels`:
        the token id where the template marks a supervised span, `-100` elsewhere (BOS, system, user turns,
        "ASSISTANT:", image tokens, padding). Images come from the `{"type": "image", "image": ...}` parts.
        `processor_kwargs` go to `__call__` (e.g. `{"padding": True, "max_length": 2048, "truncation": True}`).
        """
        kwargs = {"padding": True, "padding_side": "right", **(processor_kwargs or {})}
        out = self.apply_chat_template(
            conversation,
            chat_template=chat_template,
            tokenize=True,
            return_dict=True,
            return_assistant_tokens_mask=True,
            return_tensors=return_tensors,
            processor_kwargs=kwargs,
        )
        input_ids = np.asarray(out["input_ids"])
        keep = (np.asarray(out.pop("assistant_masks")) == 1) & (np.asarray(out["attention_mask"]) == 1)
        out["labels"] = np.where(keep, input_ids, IGNORE_INDEX).tolist()
        out.convert_to_tensors(tensor_type=return_tensors)
        return out

    def _get_num_multimodal_tokens(self, image_sizes: list | None = None, **kwargs: Any) -> MultiModalData:
        """Image tokens per image (always `image_seq_length`: every image is resized to the same square)."""
        if image_sizes is None:
            return MultiModalData()
        return MultiModalData(
            num_image_tokens=[self.image_seq_length] * len(image_sizes), num_image_patches=[1] * len(image_sizes)
        )


ShareGPT4VProcessor.register_for_auto_class("AutoProcessor")

__all__ = [
    "IGNORE_INDEX",
    "IMAGE_TOKEN",
    "PAD_TOKEN",
    "VOCAB_MULTIPLE",
    "ShareGPT4VProcessor",
    "load_chat_templates",
    "read_chat_template",
    "tokenizer_is_legacy",
]
