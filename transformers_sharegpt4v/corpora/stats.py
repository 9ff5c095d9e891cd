"""Caption statistics (the ones the ShareGPT4V paper reports) and degenerate-caption detection.

A caption is the text of one assistant turn. Words per caption count whitespace-separated words (as
`wc -w` does); the vocabulary, the bigrams and the repetition check use normalised words: runs of
letters/digits (inner apostrophes kept), lowercased, so "Dog," and "dog" are one word. Distinct
bigrams are counted through 64-bit hashes kept in numpy arrays (exact up to hash collisions, about one in
10^12 pairs), so counting the 1.2M captions of ShareGPT4V-PT needs a few hundred MB, not tens of GB.

Degenerate caption (the repetition loops Share-Captioner users report): at least `min_words` words, and at
least `min_coverage` of its words lie inside a `phrase_words`-word phrase that occurs `min_repeats` or more
times in it. Ordinary prose almost never repeats a 4-word phrase 3 times over half its length; a loop
("a red car, a red car, a red car, ...", a sentence said again and again) always does.
"""

from __future__ import annotations

import re
from array import array
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["CaptionStats", "DegenerateRule", "corpus_stats", "find_repetition", "words_of"]

_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")


def words_of(text: str) -> list[str]:
    """The lowercased words of `text` (letters/digits, inner apostrophes kept: "it's", "man's")."""
    return _WORD.findall(text.lower())


@dataclass(frozen=True)
class DegenerateRule:
    phrase_words: int = 4
    min_repeats: int = 3
    min_coverage: float = 0.5
    min_words: int = 12

    def describe(self) -> str:
        return (
            f"at least {self.min_words} words, of which at least {self.min_coverage:.0%} lie inside a "
            f"{self.phrase_words}-word phrase repeated {self.min_repeats}+ times"
        )


def find_repetition(words: list[str], rule: DegenerateRule = DegenerateRule()) -> tuple[float, str, int]:
    """(coverage, most repeated phrase, its count) for a caption's words; coverage is the fraction of words
    inside phrases of `rule.phrase_words` words that occur at least `rule.min_repeats` times."""
    n = rule.phrase_words
    if len(words) < n:
        return 0.0, "", 0
    grams = list(zip(*(words[offset:] for offset in range(n)), strict=False))
    counts = Counter(grams)
    phrase, count = counts.most_common(1)[0]
    if count < rule.min_repeats:
        return 0.0, " ".join(phrase), count
    covered = bytearray(len(words))
    for start, gram in enumerate(grams):
        if counts[gram] >= rule.min_repeats:
            covered[start : start + n] = b"\x01" * n
    return sum(covered) / len(words), " ".join(phrase), count


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
        if len(words) >= self.rule.min_words:
            coverage, phrase, count = find_repetition(words, self.rule)
            if coverage >= self.rule.min_coverage:
                self.degenerate.append({"id": record_id, "phrase": phrase, "repeats": count, "coverage": coverage})

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


def corpus_stats(dataset, *, rule: DegenerateRule | None = None, progress: bool = True) -> dict[str, Any]:
    """Caption statistics of a built corpus (folder or Hub repo id), streamed: characters and words per
    caption (mean, median, p95, min, max), vocabulary size, distinct bigrams, and `degenerate_captions`:
    one `{id, phrase, repeats, coverage}` per flagged caption (see `DegenerateRule`)."""
    from tqdm.auto import tqdm

    from .build import frozen_gc
    from .export import load_corpus

    stats = CaptionStats(full=True, rule=rule or DegenerateRule())
    rows = load_corpus(dataset, streaming=True, columns=["id", "messages"])
    with frozen_gc():
        for row in tqdm(rows, desc="caption stats", unit=" records", disable=not progress):
            stats.add_messages(row["id"], row["messages"])
    return {**stats.summary(), "degenerate_captions": stats.degenerate}
