"""The degenerate-caption rule of `sharegpt4v caption`: the package's one rule, `transformers_sharegpt4v.degenerate`
(also used by `sharegpt4v data stats`), re-exported here."""

from ..degenerate import (
    MAX_PERIOD,
    MIN_REPEATS,
    MIN_SPAN,
    DegenerateRule,
    degenerate_rows,
    find_repetition,
    find_text_repetition,
    is_degenerate,
    text_units,
)

__all__ = [
    "MAX_PERIOD",
    "MIN_REPEATS",
    "MIN_SPAN",
    "DegenerateRule",
    "degenerate_rows",
    "find_repetition",
    "find_text_repetition",
    "is_degenerate",
    "text_units",
]
