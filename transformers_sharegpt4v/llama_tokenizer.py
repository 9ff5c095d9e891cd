"""Loading LLaMA / Vicuna SentencePiece tokenizers so that they give the ids the original models were trained on.

Every LLaMA tokenizer that enters the project goes through `load_llama_tokenizer`: the released ShareGPT4V and
LLaVA-1.5 checkpoints and Vicuna folders ship a SentencePiece `tokenizer.model` and no `tokenizer.json`, and
transformers 5 builds the fast tokenizer's BPE merges from such a file in the order of the piece ids. LLaMA's
whitespace-only pieces ("▁▁" .. 16 x "▁") have low ids but the score -1e9 (SentencePiece merges them last), so
that order merges "▁▁" first: "Hello  world" becomes "▁Hello", "▁▁", "world" instead of SentencePiece's
"▁Hello", "▁", "▁world". `score_ordered_merges` orders the merges by score as SentencePiece does (the order of
the tokenizer.json files transformers 4.x wrote for LLaMA, e.g. in llava-hf repos), and the tokenizer saved
with a converted checkpoint carries them, so vLLM/SGLang and transformers read the right merges from
`tokenizer.json` alone.

The tokenizer's `legacy` setting (transformers 4.31 read an unset one as True) is kept in `init_kwargs`, so
that `save_pretrained` writes it: `ShareGPT4VProcessor` follows it (see docs/reference.md, "Prompts and labels").
"""

import functools
import json
import re
from pathlib import Path
from typing import Any

from tokenizers.models import BPE
from transformers import AutoTokenizer

from .tokenization_sharegpt4v import IMAGE_TOKEN, SPIECE_UNDERLINE

__all__ = [
    "after_special_split",
    "load_llama_tokenizer",
    "original_ids",
    "original_prompt_ids",
    "read_legacy_setting",
    "score_ordered_merges",
]

SENTENCEPIECE_FILE = "tokenizer.model"
IMAGE_SENTINEL = -200  # the original code's id for the image position
_SPECIALS = ("<s>", "</s>", "<unk>")  # the released tokenizer's special tokens (no <image>: the original splits)


@functools.lru_cache(maxsize=4)
def _sentencepiece(model_file: str | Path, processor_class: Any) -> Any:
    return processor_class(model_file=str(model_file))


def score_ordered_merges(model_file: str | Path) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """The vocabulary and BPE merges of a SentencePiece BPE model, merges ordered as SentencePiece applies them.

    A merge (left, right) is ranked by the score of the piece it makes (highest first); merges making the same
    piece, or pieces of the same score, follow the ids of left then right. Control, unknown, unused and byte
    pieces are never the result of a merge.
    """
    from sentencepiece import SentencePieceProcessor

    processor = SentencePieceProcessor(model_file=str(model_file))
    vocab = {processor.id_to_piece(i): i for i in range(processor.get_piece_size())}
    special = (processor.is_control, processor.is_unknown, processor.is_unused, processor.is_byte)
    ranked = []
    for piece, piece_id in vocab.items():
        if any(check(piece_id) for check in special):
            continue
        score = processor.get_score(piece_id)
        for cut in range(1, len(piece)):
            left, right = piece[:cut], piece[cut:]
            if left in vocab and right in vocab:
                ranked.append((-score, vocab[left], vocab[right], left, right))
    ranked.sort()
    return vocab, [(left, right) for *_, left, right in ranked]


def read_legacy_setting(folder: str | Path) -> bool:
    """`legacy` of the folder's tokenizer_config.json as transformers 4.31 read it: absent or null means True."""
    path = Path(folder) / "tokenizer_config.json"
    config = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    legacy = config.get("legacy")
    return True if legacy is None else bool(legacy)


def load_llama_tokenizer(name_or_folder: str | Path, **kwargs: Any) -> Any:
    """A LLaMA tokenizer with SentencePiece's merge order and the `legacy` setting of its tokenizer_config.json.

    `name_or_folder` is a local folder or a Hub repo id (its tokenizer files are downloaded, or read from the
    cache with HF_HUB_OFFLINE=1). Where it has a `tokenizer.json`, transformers reads its merges as they are;
    where it has only a SentencePiece `tokenizer.model`, the merges are rebuilt in score order (see the module
    docstring). `kwargs` go to `AutoTokenizer.from_pretrained`.
    """
    folder = Path(name_or_folder)
    if not folder.is_dir():
        from huggingface_hub import snapshot_download

        patterns = ["tokenizer*", "special_tokens_map.json", "added_tokens.json", "config.json"]
        folder = Path(snapshot_download(str(name_or_folder), allow_patterns=patterns))
    tokenizer = AutoTokenizer.from_pretrained(folder, **kwargs)
    model_file = folder / SENTENCEPIECE_FILE
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if model_file.is_file() and not (folder / "tokenizer.json").is_file() and backend is not None:
        vocab, merges = score_ordered_merges(model_file)
        old = json.loads(backend.to_str())["model"]
        backend.model = BPE(
            vocab=vocab,
            merges=merges,
            unk_token=old.get("unk_token"),
            fuse_unk=old.get("fuse_unk", True),
            byte_fallback=old.get("byte_fallback", True),
            dropout=None,
        )
    # transformers 5 keeps `legacy` as an attribute (LlamaTokenizer) and writes it back to tokenizer_config.json
    # from there; init_kwargs serves tokenizer classes without the attribute.
    legacy = read_legacy_setting(folder)
    tokenizer.legacy = legacy
    tokenizer.init_kwargs["legacy"] = legacy
    return tokenizer


def original_ids(model_file: str | Path, text: str, legacy: bool, specials: tuple[str, ...] = _SPECIALS) -> list[int]:
    """The ids transformers 4.31's slow `LlamaTokenizer` gave for `text` (with BOS), re-stated on sentencepiece.

    An independent computation of what the original code fed its model (it does not use `tokenizers` nor this
    plugin's processor): the text is split on the special tokens, each stretch SentencePiece-encoded; with
    `legacy=False` every "▁" of the text becomes a space first, and a stretch that follows a special token (and
    does not start with a space) loses the "▁" of its first piece, looked up again as a string.
    """
    from sentencepiece import SentencePieceProcessor

    processor = _sentencepiece(model_file, SentencePieceProcessor)
    if not legacy:
        text = SPIECE_UNDERLINE + text.replace(SPIECE_UNDERLINE, " ")
    ids = [processor.bos_id()]
    pattern = "(" + "|".join(re.escape(s) for s in sorted(specials, key=len, reverse=True)) + ")"
    for stretch in re.split(pattern, text):
        if not stretch:
            continue
        if stretch in specials:
            ids.append(processor.piece_to_id(stretch))
            continue
        is_first = not legacy and stretch.startswith(SPIECE_UNDERLINE)
        if is_first:
            stretch = stretch[1:]
        pieces = processor.encode(stretch, out_type=str)
        strip = not legacy and not is_first and not stretch.startswith(" ")
        if strip and pieces and pieces[0].startswith(SPIECE_UNDERLINE):
            pieces = ([pieces[0][1:]] if len(pieces[0]) > 1 else []) + pieces[1:]
        ids.extend(processor.piece_to_id(piece) for piece in pieces)
    return ids


def original_prompt_ids(
    model_file: str | Path, prompt: str, legacy: bool, image_token: str = IMAGE_TOKEN
) -> list[int]:
    """The original `tokenizer_image_token`: the prompt split on `image_token`, each piece tokenized with BOS by
    `original_ids`, BOS kept on the first only, the sentinel `IMAGE_SENTINEL` (-200) between the pieces."""
    ids: list[int] = []
    for index, piece in enumerate(prompt.split(image_token)):
        piece_ids = original_ids(model_file, piece, legacy)
        ids.extend(piece_ids if index == 0 else [IMAGE_SENTINEL, *piece_ids[1:]])
    return ids


def after_special_split(tokenizer: Any, word: str) -> dict | None:
    """A `Split` pre-tokenizer that makes a whole-string tokenizer give `word`, right after a special token, the
    pieces transformers 4.31 gave it with `legacy=False` (None if it already does).

    4.31 encoded the word with SentencePiece's "▁" and removed it from the first piece ("USER" -> "▁US", "ER" ->
    "US", "ER"); a Metaspace tokenizer (prepend_scheme "first") encodes it without the "▁" ("USER"), which can
    split differently. Isolating that first piece at the start of a stretch (regex `\\A`, so only at the start of
    the text or right after a special token) restores the original split. `tokenizer` is the whole-string one.
    """
    eos = tokenizer.eos_token
    with_prefix = tokenizer.convert_ids_to_tokens(tokenizer.encode(word, add_special_tokens=False))
    if not with_prefix or not with_prefix[0].startswith(SPIECE_UNDERLINE) or len(with_prefix[0]) == 1:
        return None
    stripped = [with_prefix[0][1:], *with_prefix[1:]]
    after = tokenizer.convert_ids_to_tokens(tokenizer.encode(eos + word, add_special_tokens=False))[1:]
    if after == stripped:
        return None
    first = stripped[0]
    return {
        "type": "Split",
        "pattern": {"Regex": r"\A" + re.escape(first) + "(?=" + re.escape(word[len(first) :]) + ")"},
        "behavior": "Isolated",
        "invert": False,
    }
