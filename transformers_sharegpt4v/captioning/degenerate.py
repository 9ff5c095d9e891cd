"""Degenerate-caption detection: a phrase repeated over and over ("a dog, a dog, a dog, ...").

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
words ("treetetween intelligenceERusytreetetween ..."). `is_degenerate(text)` applies it to a caption's
words and punctuation marks, for captions from elsewhere.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["MAX_PERIOD", "MIN_REPEATS", "MIN_SPAN", "degenerate_rows", "find_repetition", "is_degenerate"]

MIN_REPEATS = 3
MIN_SPAN = 16
MAX_PERIOD = 64

# Words, and every other non-space character on its own ("%%%%" is four units).
_UNIT = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def _longest_true_run(mask: np.ndarray) -> tuple[int, int]:
    """(length, start) of the longest run of True in a 1-D bool array; (0, 0) when there is none."""
    if not mask.any():
        return 0, 0
    padded = np.concatenate(([False], mask, [False])).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    starts, ends = edges[0::2], edges[1::2]
    best = int(np.argmax(ends - starts))
    return int(ends[best] - starts[best]), int(starts[best])


def find_repetition(
    units: Sequence, min_repeats: int = MIN_REPEATS, min_span: int = MIN_SPAN, max_period: int = MAX_PERIOD
) -> tuple[int, int, float] | None:
    """(start, period, repeats) of the longest loop in `units` (token ids, words, ...), or None.

    `units[start:start + period]` is the repeated phrase; `repeats` may be fractional when the last
    repetition is cut off.
    """
    if len(units) < max(min_span, 2):
        return None
    _, ids = np.unique(np.asarray([str(unit) for unit in units]), return_inverse=True)
    best, best_span = None, 0
    for period in range(1, min(max_period, len(ids) // min_repeats) + 1):
        run, start = _longest_true_run(ids[:-period] == ids[period:])
        span = run + period
        if span >= max(min_repeats * period, min_span) and span > best_span:
            best, best_span = (start, period, span / period), span
    return best


def is_degenerate(
    text: str, min_repeats: int = MIN_REPEATS, min_span: int = MIN_SPAN, max_period: int = MAX_PERIOD
) -> bool:
    """True if the words and punctuation marks of `text` (lowercased) contain a loop (see the module doc)."""
    units = _UNIT.findall(text.lower())
    return find_repetition(units, min_repeats, min_span, max_period) is not None


def degenerate_rows(
    ids: torch.Tensor,
    lengths: torch.Tensor,
    min_repeats: int = MIN_REPEATS,
    min_span: int = MIN_SPAN,
    max_period: int = MAX_PERIOD,
) -> torch.Tensor:
    """(batch,) bool: which rows of generated ids `ids` (batch, T) contain a loop within their first
    `lengths[b]` tokens. One vectorised pass per period for the whole batch."""
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
