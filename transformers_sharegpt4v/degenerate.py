"""Degenerate-caption detection: a phrase repeated over and over ("a dog, a dog, a dog, ...").

The one rule of the package: `sharegpt4v caption` flags its captions with it (on the generated token ids)
and `sharegpt4v data stats` flags corpus captions with it (on their words). This module needs numpy only;
torch is imported by `degenerate_rows` alone.

Greedy and beam decoding of captioning models fall into loops: the same word, clause or sentence comes
back verbatim until `max_new_tokens` cuts it. A loop is a *period*: a phrase of p units repeated r times
in a row is a stretch where u[i] == u[i + p] for (r - 1) * p consecutive positions (the last repetition
may be cut short). The rule, the same for token ids and for text:

    degenerate  <=>  for some period p in 1..max_period, the longest stretch with u[i] == u[i + p]
                     covers  run + p >= max(min_repeats * p, min_span)  units.

So a phrase must come back at least `min_repeats` (3) times in a row and the loop must cover at least
`min_span` (16) units: "very very", a sentence said twice, or "a a" are language; a clause said three
times in a row, or one token sixteen times, is a loop.

The engine applies the rule to the generated token ids of a whole batch at once (`degenerate_rows`: one
comparison per period for all rows, on the model's device), which also catches loops that are not whole
words ("treetetween intelligenceERusytreetetween ..."). `is_degenerate(text)` / `find_text_repetition(text)`
apply it to a caption's words and punctuation marks (`text_units`), for captions from elsewhere.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = [
    "MAX_PERIOD",
    "MIN_REPEATS",
    "MIN_SPAN",
    "DegenerateRule",
    "Repetition",
    "degenerate_rows",
    "find_repetition",
    "find_text_repetition",
    "is_degenerate",
    "text_units",
]

MIN_REPEATS = 3
MIN_SPAN = 16
MAX_PERIOD = 64

# Words, and every other non-space character on its own ("%%%%" is four units).
_UNIT = re.compile(r"\w+|[^\w\s]", re.UNICODE)


@dataclass(frozen=True)
class DegenerateRule:
    """The parameters of the rule (see the module doc)."""

    min_repeats: int = MIN_REPEATS
    min_span: int = MIN_SPAN
    max_period: int = MAX_PERIOD

    def __post_init__(self) -> None:
        if self.min_repeats < 2 or self.min_span < 2 or self.max_period < 1:
            raise ValueError(f"Degenerate rule needs min_repeats >= 2, min_span >= 2 and max_period >= 1; got {self}.")

    def describe(self) -> str:
        return (
            f"a phrase of 1 to {self.max_period} words or marks repeated {self.min_repeats}+ times in a row, "
            f"the loop covering at least {self.min_span} of them"
        )


@dataclass(frozen=True)
class Repetition:
    """The longest loop found: `units[start:start + period]` repeated `repeats` times (fractional when the
    last repetition is cut off), covering `span` units."""

    start: int
    period: int
    repeats: float
    span: int


def text_units(text: str) -> list[str]:
    """The units the rule counts in a text: lowercased words, and each other non-space character alone."""
    return _UNIT.findall(text.lower())


def find_repetition(
    units: Sequence, min_repeats: int = MIN_REPEATS, min_span: int = MIN_SPAN, max_period: int = MAX_PERIOD
) -> tuple[int, int, float] | None:
    """(start, period, repeats) of the longest loop in `units` (token ids, words, ...), or None.

    `units[start:start + period]` is the repeated phrase; `repeats` may be fractional when the last
    repetition is cut off.
    """
    found = _find(units, DegenerateRule(min_repeats, min_span, max_period))
    return None if found is None else (found.start, found.period, found.repeats)


def _find(units: Sequence, rule: DegenerateRule) -> Repetition | None:
    """All periods at once: row p - 1 of a (periods, n) matrix says where u[i] == u[i + p]; the longest run of
    True per row is found with a running maximum of the last False position (no Python loop per period)."""
    import numpy as np  # here, not at the top: `sharegpt4v data --help` reads this module's defaults

    n = len(units)
    periods = min(rule.max_period, n // rule.min_repeats)
    if n < max(rule.min_span, 2) or periods < 1:
        return None
    _, ids = np.unique(np.asarray([str(unit) for unit in units]), return_inverse=True)
    ids = ids.reshape(-1).astype(np.int64)
    padded = np.concatenate((ids, np.full(periods, -1, dtype=np.int64)))  # -1 equals no unit
    shifted = np.lib.stride_tricks.sliding_window_view(padded, n)[1 : periods + 1]  # row p - 1: u[i + p]
    equal = shifted == ids[None, :]
    index = np.arange(n)
    last_break = np.maximum.accumulate(np.where(equal, -1, index[None, :]), axis=1)
    run_ending_at = np.where(equal, index[None, :] - last_break, 0)  # length of the True run ending at i
    ends = run_ending_at.argmax(axis=1)  # the end of the first longest run of each period
    runs = run_ending_at[np.arange(periods), ends]
    period_of = np.arange(1, periods + 1)
    spans = runs + period_of
    spans = np.where(spans >= np.maximum(rule.min_repeats * period_of, rule.min_span), spans, 0)
    best = int(spans.argmax())  # the longest loop; the shortest period among equally long ones
    if spans[best] == 0:
        return None
    period, span = best + 1, int(spans[best])
    return Repetition(int(ends[best] - runs[best] + 1), period, span / period, span)


def find_text_repetition(text: str, rule: DegenerateRule | None = None) -> tuple[Repetition, list[str]] | None:
    """(the longest loop, the text's units) for a caption, or None when it has no loop."""
    units = text_units(text)
    found = _find(units, rule or DegenerateRule())
    return None if found is None else (found, units)


def is_degenerate(
    text: str, min_repeats: int = MIN_REPEATS, min_span: int = MIN_SPAN, max_period: int = MAX_PERIOD
) -> bool:
    """True if the words and punctuation marks of `text` (lowercased) contain a loop (see the module doc)."""
    return find_text_repetition(text, DegenerateRule(min_repeats, min_span, max_period)) is not None


def degenerate_rows(
    ids: torch.Tensor,
    lengths: torch.Tensor,
    min_repeats: int = MIN_REPEATS,
    min_span: int = MIN_SPAN,
    max_period: int = MAX_PERIOD,
) -> torch.Tensor:
    """(batch,) bool: which rows of generated ids `ids` (batch, T) contain a loop within their first
    `lengths[b]` tokens. One vectorised pass per period for the whole batch."""
    import torch

    batch, total = ids.shape
    flags = torch.zeros(batch, dtype=torch.bool, device=ids.device)
    if total < 2:
        return flags
    positions = torch.arange(total, device=ids.device)
    for period in range(1, min(max_period, total // min_repeats) + 1):
        width = total - period
        # position i compares token i with token i + period, both inside the caption
        equal = (ids[:, :width] == ids[:, period:]) & (positions[period:] < lengths[:, None])
        index = positions[:width].expand(batch, width)
        last_break = torch.where(equal, torch.full_like(index, -1), index).cummax(dim=1).values
        run = (index - last_break).masked_fill(~equal, 0).max(dim=1).values
        flags |= run + period >= max(min_repeats * period, min_span)
    return flags
