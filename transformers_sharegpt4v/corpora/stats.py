"""Caption statistics (the ones the ShareGPT4V paper reports) and degenerate-caption detection.

A caption is the text of one assistant turn. Words per caption count whitespace-separated words (as
`wc -w` does); the vocabulary and the bigrams use normalised words: runs of
letters/digits (inner apostrophes kept), lowercased, so "Dog," and "dog" are one word. Distinct
bigrams are counted through 64-bit hashes kept in numpy arrays (exact up to hash collisions, about one in
10^12 pairs), so counting the 1.2M captions of ShareGPT4V-PT needs a few hundred MB, not tens of GB.

Degenerate captions (the repetition loops Share-Captioner users report) are found with the package's one
rule, `transformers_sharegpt4v.degenerate` (the one `sharegpt4v caption` flags its captions with): a phrase
of up to 64 words or punctuation marks repeated 3+ times in a row, the loop covering at least 16 of them.
"""

from __future__ import annotations

import os
import re
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..degenerate import DegenerateRule, find_repetition, find_text_repetition
from .export import load_corpus
from .layout import frozen_gc

__all__ = ["CaptionStats", "DegenerateRule", "caption_folder_shards", "corpus_stats", "find_repetition", "words_of"]

_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")


def words_of(text: str) -> list[str]:
    """The lowercased words of `text` (letters/digits, inner apostrophes kept: "it's", "man's")."""
    return _WORD.findall(text.lower())


def _phrase(units: list[str]) -> str:
    """Units joined as text: words separated by spaces, punctuation marks attached to what precedes them."""
    return re.sub(r" (?=[^\w\s])", "", " ".join(units))


def _summary(values: np.ndarray) -> dict[str, float]:
    if values.size == 0:
        return {"mean": 0.0, "median": 0.0, "p95": 0.0, "min": 0, "max": 0}
    return {
        "mean": float(values.mean()),
        "median": float(np.median(values)),
        "p95": float(np.percentile(values, 95)),
        "min": int(values.min()),
        "max": int(values.max()),
    }


@dataclass
class CaptionStats:
    """Accumulates caption statistics one caption at a time. `full=False` keeps only lengths (cheap: what
    the dataset card shows); `full=True` adds vocabulary, distinct bigrams and degenerate captions."""

    full: bool = True
    rule: DegenerateRule = field(default_factory=DegenerateRule)
    _chars: array = field(default_factory=lambda: array("q"))
    _words: array = field(default_factory=lambda: array("q"))
    _vocabulary: set[str] = field(default_factory=set)
    _bigram_hashes: list[np.ndarray] = field(default_factory=list)
    _pending_hashes: list[int] = field(default_factory=list)
    degenerate: list[dict[str, Any]] = field(default_factory=list)

    def add(self, record_id: str, text: str) -> None:
        self._chars.append(len(text))
        self._words.append(len(text.split()))
        if not self.full:
            return
        words = words_of(text)
        self._vocabulary.update(words)
        self._pending_hashes.extend(map(hash, zip(words, words[1:], strict=False)))
        if len(self._pending_hashes) > 4_000_000:
            self._compact()
        found = find_text_repetition(text, self.rule)
        if found is not None:
            loop, units = found
            self.degenerate.append(
                {
                    "id": record_id,
                    "phrase": _phrase(units[loop.start : loop.start + loop.period]),
                    "repeats": round(loop.repeats, 2),
                    "coverage": loop.span / len(units),
                }
            )

    def _compact(self) -> None:
        arrays = [*self._bigram_hashes, np.array(self._pending_hashes, dtype=np.int64)]
        self._bigram_hashes = [np.unique(np.concatenate(arrays))]
        self._pending_hashes = []

    def add_messages(self, record_id: str, messages: list[dict[str, Any]]) -> None:
        """Add every assistant turn of a TRL conversation as a caption."""
        for message in messages:
            if message["role"] == "assistant":
                content = message["content"]
                text = content if isinstance(content, str) else "".join(p.get("text") or "" for p in content)
                self.add(record_id, text)

    def summary(self) -> dict[str, Any]:
        result: dict[str, Any] = {
            "captions": len(self._chars),
            "characters": _summary(np.frombuffer(self._chars, dtype=np.int64)),
            "words": _summary(np.frombuffer(self._words, dtype=np.int64)),
        }
        if self.full:
            self._compact()
            result["vocabulary"] = len(self._vocabulary)
            result["distinct_bigrams"] = int(self._bigram_hashes[0].size)
            result["degenerate_rule"] = self.rule.describe()
            result["degenerate"] = len(self.degenerate)
        return result


def caption_folder_shards(folder: str | os.PathLike) -> list[Path] | None:
    """The parquet shards of a `sharegpt4v caption` output folder (run.json beside data/*.parquet, a `caption`
    column), or None when `folder` is not one."""
    folder = Path(folder)
    if not (folder / "run.json").is_file():
        return None
    return sorted(p for p in (folder / "data").glob("*.parquet") if not p.name.startswith("."))


def _caption_rows(shards: list[Path]):
    """(image, caption) of every row of a caption folder, a record batch at a time."""
    import pyarrow.parquet as pq

    for shard in shards:
        for batch in pq.ParquetFile(shard).iter_batches(columns=["image", "caption"], batch_size=4096):
            yield from zip(batch.column(0).to_pylist(), batch.column(1).to_pylist(), strict=True)


def corpus_stats(dataset, *, rule: DegenerateRule | None = None, progress: bool = True) -> dict[str, Any]:
    """Caption statistics of a built corpus (folder or Hub repo id), streamed: characters and words per
    caption (mean, median, p95, min, max), vocabulary size, distinct bigrams, and `degenerate_captions`:
    one `{id, phrase, repeats, coverage}` per flagged caption (`transformers_sharegpt4v.degenerate`: the
    phrase, how many times in a row it comes back, and the share of the caption's units the loop covers).
    A `sharegpt4v caption` output folder works too: its captions are counted, with the image as id."""
    from tqdm.auto import tqdm

    stats = CaptionStats(full=True, rule=rule or DegenerateRule())
    shards = caption_folder_shards(dataset) if Path(dataset).is_dir() else None
    with frozen_gc():
        if shards is not None:
            for image, caption in tqdm(
                _caption_rows(shards), desc="caption stats", unit=" captions", disable=not progress
            ):
                stats.add(image, caption)
        else:
            rows = load_corpus(dataset, streaming=True, columns=["id", "messages"])
            for row in tqdm(rows, desc="caption stats", unit=" records", disable=not progress):
                stats.add_messages(row["id"], row["messages"])
    return {**stats.summary(), "degenerate_captions": stats.degenerate}
