"""Tokenize prompts exactly as the original ShareGPT4V / LLaVA-1.5 code did, `<image>` expanded to image tokens.

Part of the remote-code unit: imports only the standard library (the tokenizer and its `tokenizers` backend
are passed in); `processing_sharegpt4v` imports it.

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
"""

import json
from dataclasses import dataclass
from typing import Any

IMAGE_TOKEN = "<image>"  # the image placeholder of prompts and corpora: the text is split on it
SPIECE_UNDERLINE = "▁"  # SentencePiece's word-start mark (its dummy prefix)
_SMALL_BATCH = 64  # text pieces below which they are encoded one by one (see `PieceTokenizer.encode`)


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


class PieceTokenizer:
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


@dataclass(frozen=True)
class ImageExpansion:
    """How `<image>` is expanded: `image_seq_length` copies of `image_token_id`."""

    image_token: str
    image_token_id: int
    image_seq_length: int


def tokenize_like_original(
    pieces: PieceTokenizer, tokenizer: Any, texts: list[str], image: ImageExpansion, add_special_tokens: bool
) -> list[dict[str, Any]]:
    """Tokenize each text as ShareGPT4V did (see `ShareGPT4VProcessor.tokenize_like_original`)."""
    setup = pieces.setup(tokenizer)
    prefix, suffix = setup.prefix, (setup.suffix if add_special_tokens else [])
    if not setup.legacy and setup.encoder is not None:
        # transformers 4.31 with legacy=False first turned every "▁" of the text into a space.
        texts = [text.replace(SPIECE_UNDERLINE, " ") for text in texts]
    prefix_text = "".join(tokenizer.convert_ids_to_tokens(prefix))
    # A text that starts with the prefix (a chat template's "<s>", tokenized with add_special_tokens=False by
    # apply_chat_template) has it as the BOS the tokenizer adds, not as a special token inside the text (which
    # would change the text after it, see legacy).
    leads = [len(prefix_text) if prefix and text.startswith(prefix_text) else 0 for text in texts]
    split = [text[lead:].split(image.image_token) for text, lead in zip(texts, leads, strict=True)]
    encoded = iter(pieces.encode(tokenizer, [piece for text_pieces in split for piece in text_pieces]))
    results = []
    for lead, text_pieces in zip(leads, split, strict=True):
        head = list(prefix) if lead or add_special_tokens else []
        encodings = [next(encoded) for _ in text_pieces]
        results.append(_join_pieces(head, lead, text_pieces, encodings, suffix, image))
    return results


def _join_pieces(
    head: list[int],
    lead: int,
    text_pieces: list[str],
    encodings: list[tuple[list[int], list[tuple[int, int]]]],
    suffix: list[int],
    image: ImageExpansion,
) -> dict[str, Any]:
    """One text: `head` (BOS), its encoded pieces with `image_seq_length` image tokens between them, `suffix`."""
    width, n_tokens = len(image.image_token), image.image_seq_length
    ids: list[int] = list(head)
    offsets: list[tuple[int, int]] = [(0, lead)] * len(ids)
    image_spans, replacements = [], []
    start, gain = lead, 0  # start of the piece in `text`; characters gained by the expansion so far
    for index, (piece, (piece_ids, piece_offsets)) in enumerate(zip(text_pieces, encodings, strict=True)):
        ids.extend(piece_ids)
        offsets.extend((s + start + gain, e + start + gain) for s, e in piece_offsets)
        start += len(piece)
        if index == len(text_pieces) - 1:
            break
        new_start = start + gain
        offsets.extend((new_start + j * width, new_start + (j + 1) * width) for j in range(n_tokens))
        image_spans.append((len(ids), len(ids) + n_tokens))
        ids.extend([image.image_token_id] * n_tokens)
        replacements.append(
            {
                "type": "image",
                "span": (start, start + width),
                "new_span": (new_start, new_start + width * n_tokens),
                "text": image.image_token,
                "replacement": image.image_token * n_tokens,
            }
        )
        start += width
        gain += width * (n_tokens - 1)
    ids.extend(suffix)
    offsets.extend([(start + gain, start + gain)] * len(suffix))
    return {
        "input_ids": ids,
        "offset_mapping": offsets,
        "image_spans": image_spans,
        "text_replacement_offsets": replacements,
    }


__all__ = [
    "IMAGE_TOKEN",
    "SPIECE_UNDERLINE",
    "ImageExpansion",
    "PieceTokenizer",
    "tokenize_like_original",
    "tokenizer_is_legacy",
]
