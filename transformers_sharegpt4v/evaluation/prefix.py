"""Questions about the same image share the prefill of their common prefix.

Every evaluation prompt starts `{system} USER: <image>` (576 image positions) and only then holds the question:
about 95% of a prompt's prefill is that prefix, and benchmarks ask several questions about one image (MME two,
MMBench's circular rounds four, VQAv2 about three, GQA about thirty). The prefix of a question is its ids up to
its last image token; two questions share it when those ids and their pixel values are equal. The prefix is
prefilled once (vision tower included), its key/value cache copied to each question of the batch, and
`generate` runs on the rest:

    ids            = prefix ids | pads | question ids        (pads in the middle, attention mask 0)
    position ids   = cumulative attention mask - 1          (what `generate` derives: the pads take no position)

so each question sees the same keys, values and positions as when its whole prompt is prefilled alone; the
answers are those of the unshared path (tests/test_evaluation.py compares them on every local task).
"""

from __future__ import annotations

import hashlib
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import PIL.Image
import torch

from .cache import ReservedCache

__all__ = [
    "SharedPrefix",
    "batch_cache",
    "image_digests",
    "plan_batches",
    "prefix_cache",
    "shared_inputs",
    "split_prefix",
]


@dataclass(frozen=True)
class SharedPrefix:
    """A question's prompt split at its last image token: `key` names the prefix (its ids and a digest of the
    pixels), `length` its number of positions."""

    key: tuple[Any, ...]
    length: int


def image_digests(images: Sequence[PIL.Image.Image]) -> tuple[str, ...]:
    """A digest of each image's size and pixels (images in RGB): equal digests, equal preprocessed pixels."""
    return tuple(hashlib.sha1(f"{image.size}".encode() + image.tobytes()).hexdigest() for image in images)


def split_prefix(input_ids: torch.Tensor, pixels_key: Hashable, image_token_id: int) -> SharedPrefix | None:
    """The shared prefix of one encoded prompt (`input_ids` of shape (1, L)); None when it has no image.
    `pixels_key` names its pixel values: equal keys for equal pixels (`image_digests` and the preprocessing)."""
    positions = (input_ids[0] == image_token_id).nonzero()
    if len(positions) == 0:
        return None
    length = int(positions.max()) + 1
    return SharedPrefix((tuple(input_ids[0, :length].tolist()), pixels_key), length)


def plan_batches(prefixes: dict[int, SharedPrefix], batch_size: int) -> list[list[int]]:
    """Batches of question indices: questions of one prefix next to each other (so that a batch prefills each
    prefix once), at most `batch_size` a batch, one prefix length a batch (the question ids start at the same
    position in every row)."""
    order = sorted(prefixes, key=lambda i: (prefixes[i].length, prefixes[i].key, i))
    batches: list[list[int]] = []
    for index in order:
        if batches and len(batches[-1]) < batch_size and prefixes[batches[-1][0]].length == prefixes[index].length:
            batches[-1].append(index)
        else:
            batches.append([index])
    return batches


def prefix_cache(model: Any, prefix_ids: torch.Tensor, pixel_values: torch.Tensor) -> list[tuple[torch.Tensor, ...]]:
    """Prefill the prefixes `prefix_ids` (U, P) with their images; the cache as one (keys, values) pair a layer,
    each of shape (U, heads, P, head_dim)."""
    output = model(input_ids=prefix_ids, pixel_values=pixel_values, use_cache=True, logits_to_keep=1)
    return [(keys, values) for keys, values, *_ in output.cache]


def batch_cache(rows: Sequence[list[tuple[torch.Tensor, ...]]], config: Any, room: int = 0) -> ReservedCache:
    """A cache whose row r is the prefix cache `rows[r]` (one (keys, values) pair a layer, batch 1), with `room`
    positions reserved beyond the prefix for the question and the answer (see `cache.ReservedCache`); each row is
    copied once, straight into the reserved buffer."""
    return ReservedCache.from_rows(config, room, rows)


def shared_inputs(encoded: Sequence[Any], length: int, pad_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`input_ids` and `attention_mask` of a batch whose rows share a prefix of `length` positions: each row's
    prefix, then pads, then its question ids (see the module docstring)."""
    tails = [item["input_ids"][0, length:] for item in encoded]
    width = max(len(tail) for tail in tails)
    rows, masks = [], []
    for item, tail in zip(encoded, tails, strict=True):
        head = item["input_ids"][0, :length]
        pads = width - len(tail)
        rows.append(torch.cat([head, head.new_full((pads,), pad_token_id), tail]))
        masks.append(torch.cat([torch.ones_like(head), head.new_zeros(pads), torch.ones_like(tail)]))
    return torch.stack(rows), torch.stack(masks)
