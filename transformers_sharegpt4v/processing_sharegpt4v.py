"""ShareGPT4V processor: LLaMA tokenizer + ShareGPT4V image processor, `<image>` -> 576 image tokens.

Part of the remote-code unit: imports only numpy, transformers and `.image_processing_sharegpt4v`.

Why the processor tokenizes text itself instead of calling the tokenizer on the whole prompt: the released
ShareGPT4V models (and LLaVA-1.5) were trained on prompts tokenized in pieces. The original code splits the
prompt on "<image>", tokenizes every piece on its own with the slow SentencePiece LLaMA tokenizer of
transformers 4.31 (BOS kept only on the first piece) and puts the sentinel id -200 between the pieces. Every
piece gets SentencePiece's dummy prefix "▁", and so does every stretch of text after a special token such as
"</s>" when the tokenizer says `legacy: true`. So the prompt " USER: <image>\\nWhat" became [..., "▁USER", ":",
"▁", -200, "▁", "<0x0A>", "What"]: a lone "▁" before and after the image. With `legacy: false` (the released
ShareGPT4V, Vicuna and llava-hf tokenizers), 4.31 gave the text after a special token the dummy prefix and then
removed it from its first piece ("</s>USER" -> "</s>", "US", "ER"; a piece missing from the vocabulary without
its "▁" becomes <unk>). A fast tokenizer on the whole string gives different ids (no "▁" around "<image>", and
after "</s>" either "▁USER" or "USER"). Here each piece is tokenized exactly like the original, following the
tokenizer's `legacy` setting (`tokenizer_is_legacy`), and the sentinel is replaced by `image_seq_length` copies
of the `<image>` token id. A chat template's leading "<s>" counts as the BOS the tokenizer adds, not as text.

Chat templates (`chat_templates/*.jinja`, saved with the processor): "vicuna_v1" (the default; stage 2 and
evaluation) and "plain" (stage-1 captions). Their `{% generation %}` spans make
`apply_chat_template(..., return_assistant_tokens_mask=True)` return the labels mask of the original code:
for vicuna_v1 the answers and their closing "</s>" (BOS, system, every "USER: ... ASSISTANT:" and the images
ignored); for plain the caption and its newline.
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from transformers.feature_extraction_utils import BatchFeature
from transformers.processing_utils import MultiModalData, ProcessingKwargs, ProcessorMixin, TextKwargs
from transformers.utils import logging

from .image_processing_sharegpt4v import ShareGPT4VImageProcessor

logger = logging.get_logger(__name__)

IGNORE_INDEX = -100
SPIECE_UNDERLINE = "▁"
_SMALL_BATCH = 64  # text pieces below which they are encoded one by one (see `_encode_pieces`)
DEFAULT_CHAT_TEMPLATE = "vicuna_v1"
CHAT_TEMPLATE_NAMES = ("vicuna_v1", "plain")
_UNSUPPORTED_TEXT_KWARGS = ("text_pair", "text_target", "text_pair_target", "is_split_into_words", "stride")


def load_chat_templates() -> dict[str, str] | None:
    """The bundled chat templates as `{"default": vicuna_v1, "vicuna_v1": ..., "plain": ...}`.

    None when the template files are not next to this module (remote code loaded from a checkpoint, which
    carries its own templates in `chat_template.jinja` and `chat_templates/`).
    """
    folder = Path(__file__).resolve().parent / "chat_templates"
    if not all((folder / f"{name}.jinja").is_file() for name in CHAT_TEMPLATE_NAMES):
        return None
    templates = {name: (folder / f"{name}.jinja").read_text(encoding="utf-8") for name in CHAT_TEMPLATE_NAMES}
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


def _metaspace_of(pre_tokenizer: dict | None) -> dict | None:
    """The Metaspace pre-tokenizer inside a tokenizer.json pre-tokenizer spec, if any."""
    if not pre_tokenizer:
        return None
    if pre_tokenizer.get("type") == "Metaspace":
        return pre_tokenizer
    for child in pre_tokenizer.get("pretokenizers") or []:
        if child.get("type") == "Metaspace":
            return child
    return None


def _sentencepiece_segment_encoder(tokenizer: Any) -> Any | None:
    """A copy of the tokenizer's `tokenizers` backend that encodes text like the slow SentencePiece tokenizer.

    SentencePiece prepends its dummy "▁" to every text it encodes (also one that starts with a space, and
    every stretch after a special token, which the slow tokenizer encoded separately), then maps spaces to
    "▁". The fast Metaspace pipeline skips the prefix after a special token and when the text starts with a
    space. The copy gets SentencePiece's behaviour as normalizers (Prepend "▁", spaces -> "▁"), no
    post-processor (no BOS/EOS), and the same model, vocabulary and added tokens. Returns None for a
    tokenizer that is not SentencePiece-based (no Metaspace / Prepend("▁") step).
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    spec = json.loads(backend.to_str())
    normalizer = spec.get("normalizer") or {}
    normalizers = normalizer.get("normalizers", [normalizer] if normalizer else [])
    metaspace = _metaspace_of(spec.get("pre_tokenizer"))
    has_prepend = any(n.get("type") == "Prepend" for n in normalizers)
    if metaspace is None and not has_prepend:
        return None
    replacement = metaspace["replacement"] if metaspace else "▁"
    add_prefix = has_prepend or metaspace.get("prepend_scheme", "always") != "never"

    def is_sentencepiece_step(n: dict) -> bool:
        replaces_space = n.get("type") == "Replace" and n.get("pattern", {}).get("String") == " "
        return n.get("type") == "Prepend" or replaces_space

    kept = [n for n in normalizers if not is_sentencepiece_step(n)]
    kept += [{"type": "Prepend", "prepend": replacement}] if add_prefix else []
    kept += [{"type": "Replace", "pattern": {"String": " "}, "content": replacement}]
    spec["normalizer"] = {"type": "Sequence", "normalizers": kept}
    if metaspace is not None:
        # Spaces are already "▁" and the prefix is added: keep only Metaspace's optional split into words.
        metaspace.update(prepend_scheme="never")
        if not metaspace.get("split", False) and spec["pre_tokenizer"] is metaspace:
            spec["pre_tokenizer"] = None
    spec["post_processor"] = None
    return type(backend).from_str(json.dumps(spec))


@dataclass(frozen=True)
class _TokenizerSetup:
    encoder: Any  # SentencePiece-style segment encoder (a `tokenizers.Tokenizer`), or None
    prefix: list[int]  # ids the tokenizer adds before a text (BOS)
    suffix: list[int]  # ... and after it
    legacy: bool  # the tokenizer's `legacy` setting, as transformers 4.31 read it
    added_ids: frozenset  # ids of the added tokens, on which the text is split before SentencePiece runs
    vocab: dict
    unk_id: int | None


def tokenizer_is_legacy(tokenizer: Any) -> bool:
    """The tokenizer's `legacy` setting as transformers 4.31 read it (None, i.e. unset, meant True).

    The saved `tokenizer_config.json` says it; `tokenizer.legacy` is what transformers 5 loaded from it (a
    LlamaTokenizer without the key defaults to False there; checkpoints saved by this plugin always have it).
    """
    legacy = getattr(tokenizer, "legacy", tokenizer.init_kwargs.get("legacy"))
    return True if legacy is None else bool(legacy)


def _strip_prefix_after_special(encoding: Any, text: str, setup: _TokenizerSetup) -> tuple[list, list]:
    """Ids and offsets of a piece as transformers 4.31's slow LlamaTokenizer gave them with `legacy=False`.

    That version split the text on added tokens and SentencePiece-encoded each stretch with its dummy prefix "▁";
    for a stretch that follows an added token (and does not start with a space) it then removed the "▁" from the
    stretch's first piece: "</s>USER" -> "</s>", "▁US", "ER" -> "</s>", "US", "ER". The stripped piece is looked up
    as a string (a lone "▁" disappears; a piece missing from the vocabulary becomes <unk>). The encoding given
    here has the prefix on every stretch (the legacy behaviour), so only that removal is left to do.
    """
    ids, tokens, offsets = encoding.ids, encoding.tokens, encoding.offsets
    out_ids, out_offsets = [], []
    for index, (token_id, token, offset) in enumerate(zip(ids, tokens, offsets, strict=True)):
        follows_special = index > 0 and ids[index - 1] in setup.added_ids and token_id not in setup.added_ids
        if follows_special and token.startswith(SPIECE_UNDERLINE):
            if not text[offsets[index - 1][1] :].startswith(" "):
                if len(token) == 1:
                    continue
                token_id = setup.vocab.get(token[1:], setup.unk_id)
        out_ids.append(token_id)
        out_offsets.append(tuple(offset))
    return out_ids, out_offsets


def _flatten_images(images: Any) -> list:
    """Flatten a (nested) list of images; a single image becomes a one-element list."""
    if isinstance(images, (list, tuple)):
        return [image for item in images for image in _flatten_images(item)]
    return [images]


class _PieceTokenizer:
    """Encodes text pieces like the original: SentencePiece per piece, the tokenizer's `legacy` rule after special
    tokens. Holds the segment encoder built from the tokenizer (rebuilt when the tokenizer changes)."""

    def __init__(self) -> None:
        self._cache: tuple[Any, _TokenizerSetup] | None = None

    def setup(self, tokenizer: Any) -> _TokenizerSetup:
        """How this tokenizer encodes text pieces like the original (rebuilt when tokens are added).

        The special ids are read from what the tokenizer does (`tokenizer("a")` vs. without special tokens), as
        the original code did (it kept BOS if `tokenizer(chunk)` started with it): transformers 5 does not keep
        `add_bos_token` across save/load, the backend's post-processor does.
        """
        backend = getattr(tokenizer, "backend_tokenizer", None)
        key = (id(backend), len(tokenizer), None if backend is None else backend.post_processor.__repr__())
        if self._cache is None or self._cache[0] != key:
            with_special = tokenizer.encode("a", add_special_tokens=True)
            plain = tokenizer.encode("a", add_special_tokens=False)
            start = next(
                (i for i in range(len(with_special) - len(plain) + 1) if with_special[i : i + len(plain)] == plain), 0
            )
            encoder = _sentencepiece_segment_encoder(tokenizer)
            setup = _TokenizerSetup(
                encoder=encoder,
                prefix=with_special[:start],
                suffix=with_special[start + len(plain) :],
                legacy=tokenizer_is_legacy(tokenizer),
                added_ids=frozenset(tokenizer.added_tokens_decoder),
                vocab=encoder.get_vocab() if encoder is not None else {},
                unk_id=tokenizer.unk_token_id,
            )
            self._cache = (key, setup)
        return self._cache[1]

    def encode(self, tokenizer: Any, pieces: list[str]) -> list[tuple[list[int], list[tuple[int, int]]]]:
        """Token ids and character offsets of each text piece, each tokenized on its own without BOS/EOS."""
        setup = self.setup(tokenizer)
        if setup.encoder is not None:
            # `encode_batch` wakes the tokenizers thread pool: 20x slower than plain `encode` for the few short
            # pieces of one sample, and far worse on a loaded machine (training collators call this per sample).
            if len(pieces) <= _SMALL_BATCH:
                encodings = [setup.encoder.encode(piece, add_special_tokens=False) for piece in pieces]
            else:
                encodings = setup.encoder.encode_batch(pieces, add_special_tokens=False)
            if setup.legacy:
                return [(list(e.ids), [tuple(o) for o in e.offsets]) for e in encodings]
            return [_strip_prefix_after_special(e, piece, setup) for e, piece in zip(encodings, pieces, strict=True)]
        # Not a SentencePiece tokenizer: the original's "tokenizer(piece)" is the tokenizer on its own.
        with_offsets = getattr(tokenizer, "backend", None) == "tokenizers"
        out = tokenizer(pieces, add_special_tokens=False, return_offsets_mapping=with_offsets)
        offsets = out["offset_mapping"] if with_offsets else [[(0, 0)] * len(ids) for ids in out["input_ids"]]
        return [(list(ids), [tuple(o) for o in offs]) for ids, offs in zip(out["input_ids"], offsets, strict=True)]


def _tokenize_texts(
    processor: "ShareGPT4VProcessor", texts: list[str], add_special_tokens: bool
) -> list[dict[str, Any]]:
    """`ShareGPT4VProcessor.tokenize_like_original`."""
    setup = processor._pieces.setup(processor.tokenizer)
    prefix, suffix = setup.prefix, (setup.suffix if add_special_tokens else [])
    if not setup.legacy and setup.encoder is not None:
        # transformers 4.31 with legacy=False first turned every "▁" of the text into a space.
        texts = [text.replace(SPIECE_UNDERLINE, " ") for text in texts]
    prefix_text = "".join(processor.tokenizer.convert_ids_to_tokens(prefix))
    # A text that starts with the prefix (a chat template's "<s>", tokenized with add_special_tokens=False by
    # apply_chat_template) has it as the BOS the tokenizer adds, not as a special token inside the text (which
    # would change the text after it, see legacy).
    leads = [len(prefix_text) if prefix and text.startswith(prefix_text) else 0 for text in texts]
    split = [text[lead:].split(processor.image_token) for text, lead in zip(texts, leads, strict=True)]
    encoded = iter(processor._pieces.encode(processor.tokenizer, [piece for pieces in split for piece in pieces]))
    width, n_tokens = len(processor.image_token), processor.image_seq_length
    results = []
    for lead, pieces in zip(leads, split, strict=True):
        ids: list[int] = list(prefix) if lead or add_special_tokens else []
        offsets: list[tuple[int, int]] = [(0, lead)] * len(ids)
        image_spans, replacements = [], []
        start, gain = lead, 0  # start of the piece in `text`; characters gained by the expansion so far
        for index, piece in enumerate(pieces):
            piece_ids, piece_offsets = next(encoded)
            ids.extend(piece_ids)
            offsets.extend((s + start + gain, e + start + gain) for s, e in piece_offsets)
            start += len(piece)
            if index == len(pieces) - 1:
                break
            new_start = start + gain
            offsets.extend((new_start + j * width, new_start + (j + 1) * width) for j in range(n_tokens))
            image_spans.append((len(ids), len(ids) + n_tokens))
            ids.extend([processor.image_token_id] * n_tokens)
            replacements.append(
                {
                    "type": "image",
                    "span": (start, start + width),
                    "new_span": (new_start, new_start + width * n_tokens),
                    "text": processor.image_token,
                    "replacement": processor.image_token * n_tokens,
                }
            )
            start += width
            gain += width * (n_tokens - 1)
        ids.extend(suffix)
        offsets.extend([(start + gain, start + gain)] * len(suffix))
        results.append(
            {
                "input_ids": ids,
                "offset_mapping": offsets,
                "image_spans": image_spans,
                "text_replacement_offsets": replacements,
            }
        )
    return results


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
        image_token: str = "<image>",
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
        self._pieces = _PieceTokenizer()

    # ------------------------------------------------------------------ construction helpers

    @staticmethod
    def prepare_tokenizer(tokenizer: Any, image_token: str = "<image>", pad_token: str = "<pad>") -> int:
        """Add the image token, and a pad token if there is none, as special tokens (as llava-hf does).

        For the LLaMA vocabulary this gives `<image>` = 32000 and `<pad>` = 32001. Returns the number of tokens
        added; resize the model's embeddings to `len(tokenizer)` afterwards (a multiple of 64 is customary).
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
        return _tokenize_texts(self, texts, add_special_tokens)

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
        text_kwargs = merged["text_kwargs"]
        for key in _UNSUPPORTED_TEXT_KWARGS + ("return_overflowing_tokens", "sanitize_control_tokens"):
            if text_kwargs.get(key):
                raise ValueError(f"ShareGPT4VProcessor does not support `{key}`.")
        flat_images = _check_image_counts(texts, images, self.image_token)

        add_special_tokens = text_kwargs.get("add_special_tokens") is not False  # None means the default, True
        samples = self.tokenize_like_original(texts, add_special_tokens=add_special_tokens)
        for sample in samples:
            sample["attention_mask"] = [1] * len(sample["input_ids"])

        max_length = _truncate(samples, text_kwargs, self.tokenizer)

        padding = text_kwargs.get("padding", False)
        if padding not in (None, False, "do_not_pad"):
            _pad(
                samples,
                padding,
                max_length,
                text_kwargs.get("pad_to_multiple_of"),
                text_kwargs.get("padding_side") or self.tokenizer.padding_side,
                self.tokenizer.pad_token_id,
            )
        return_tensors = text_kwargs.get("return_tensors")
        if return_tensors is not None and len({len(s["input_ids"]) for s in samples}) > 1:
            raise ValueError(
                "The samples have different lengths; pass `padding=True` to return tensors "
                f"(lengths: {[len(s['input_ids']) for s in samples]})."
            )

        data = self._text_outputs(samples, merged)
        if flat_images:
            data.update(self.image_processor(flat_images, **merged["images_kwargs"]))
        return BatchFeature(data, tensor_type=return_tensors, skip_tensor_conversion=self.skip_tensor_conversion)

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

__all__ = ["ShareGPT4VProcessor", "IGNORE_INDEX", "load_chat_templates"]
