"""The one reading of a dtype name, for every API and command that takes one (`--dtype`, recipes, `dtype=`).

"float32"/"fp32", "float16"/"fp16", "bfloat16"/"bf16", or a `torch.dtype` as it is; "auto" (and None) leaves
the choice to the caller, whose rule for it differs (conversion keeps the stored dtype, captioning and
evaluation pick one for the device). A leaf module: torch is imported only when a name is parsed, so the
commands' argument parsers can import `DTYPE_CHOICES` for free.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import UsageError

if TYPE_CHECKING:
    import torch

__all__ = ["DTYPE_CHOICES", "DTYPE_NAMES", "parse_dtype"]

# name -> the torch attribute it means
DTYPE_NAMES = {
    "float32": "float32",
    "fp32": "float32",
    "float16": "float16",
    "fp16": "float16",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
}
# what a command's --dtype offers
DTYPE_CHOICES = ("auto", "float32", "float16", "bfloat16")


def parse_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    """The torch dtype a name means (a `torch.dtype` is returned as it is); None for None and "auto". Raises
    `UsageError` (a `ValueError`) for any other name, listing the accepted ones."""
    if dtype is None or dtype == "auto":
        return None
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPE_NAMES:
        raise UsageError(f"dtype {dtype!r} is not one of auto, {', '.join(sorted(DTYPE_NAMES))}.")
    return getattr(torch, DTYPE_NAMES[dtype])
