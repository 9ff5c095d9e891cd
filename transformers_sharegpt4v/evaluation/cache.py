"""A key/value cache that decodes without copying itself at every step.

transformers' `DynamicCache` grows by `torch.cat`: each decoding step copies the whole cache of every layer to
append one position. An evaluation prompt holds about 620 positions (576 of them the image) and a short answer a
few, so a step spends more time copying the cache than attending over it: 31% of a step at batch 8 on the CPU
(docs/benchmarks.md), and on a GPU one copy of the full cache per layer per step. `ReservedCache` allocates the
room the generation will need once (prompt + `max_new_tokens`, known before `generate` starts), writes each new
position in place and hands attention a view of the filled part: the keys and values attention sees are the
same values, in the same order, as `DynamicCache`'s, so the outputs are identical.

Beam search's reordering gathers into the buffer in place. Anything else that replaces the states
(`batch_select_indices`, `batch_repeat_interleave`) leaves the layer with a tensor of its own; the next `update`
copies it into a new reserved buffer, so every cache operation of `DynamicLayer` stays valid.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers import DynamicCache
from transformers.cache_utils import Cache, DynamicLayer

__all__ = ["ReservedCache", "ReservedLayer"]


class ReservedLayer(DynamicLayer):
    """A `DynamicLayer` that writes new positions into a buffer with `room` free positions beyond what it holds
    (reserved at the first `update`, and again whenever the room runs out: at least as many as it holds, so
    that growth stays amortised)."""

    def __init__(self, room: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.room = int(room)
        self._key_buffer: torch.Tensor | None = None
        self._value_buffer: torch.Tensor | None = None

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        start = self.get_seq_length()
        end = start + key_states.shape[-2]
        if not self._owns_states(key_states, end):
            self._reserve(key_states, value_states, start, end)
        self._key_buffer[..., start:end, :] = key_states
        self._value_buffer[..., start:end, :] = value_states
        self.keys = self._key_buffer[..., :end, :]
        self.values = self._value_buffer[..., :end, :]
        return self.keys, self.values

    def _owns_states(self, key_states: torch.Tensor, end: int) -> bool:
        """Whether the held states are the start of this layer's buffer and `end` positions fit in it."""
        buffer = self._key_buffer
        if buffer is None or end > buffer.shape[-2] or buffer.shape[:2] != key_states.shape[:2]:
            return False
        if buffer.dtype != key_states.dtype or buffer.device != key_states.device:
            return False
        return self.keys.numel() == 0 or self.keys.data_ptr() == buffer.data_ptr()

    def _reserve(self, key_states: torch.Tensor, value_states: torch.Tensor, start: int, end: int) -> None:
        """New buffers of `end + max(room, end)` positions (`end + room` the first time), holding the current
        states."""
        length = end + (self.room if self._key_buffer is None else max(self.room, end))
        keys, values = (
            key_states.new_empty(_shape(key_states, length)),
            value_states.new_empty(_shape(value_states, length)),
        )
        if start:
            keys[..., :start, :] = self.keys
            values[..., :start, :] = self.values
        self._key_buffer, self._value_buffer = keys, values

    def fill(self, keys: Sequence[torch.Tensor], values: Sequence[torch.Tensor]) -> None:
        """Start this (empty) layer from per-row states, each (keys, values) pair of batch 1 and one length: row
        r of the layer is `keys[r]`, `values[r]`, copied once into a buffer with `room` free positions (where
        `update` with their concatenation would copy them twice)."""
        if self.get_seq_length():
            raise ValueError("ReservedLayer.fill starts an empty layer; this one holds states already.")
        key_shapes, value_shapes = {tuple(k.shape) for k in keys}, {tuple(v.shape) for v in values}
        if (
            not keys
            or len(keys) != len(values)
            or len(key_shapes) != 1
            or len(value_shapes) != 1
            or keys[0].shape[0] != 1
            or keys[0].shape[:-1] != values[0].shape[:-1]
        ):
            raise ValueError(
                f"ReservedLayer.fill takes as many keys as values, each of one shape with batch 1 and one length; "
                f"got {len(keys)} keys of shapes {sorted(key_shapes)} and {len(values)} values of shapes "
                f"{sorted(value_shapes)}."
            )
        self.lazy_initialization(keys[0], values[0])
        length = keys[0].shape[-2]
        self._key_buffer = keys[0].new_empty((len(keys), *_shape(keys[0], length + self.room)[1:]))
        self._value_buffer = values[0].new_empty((len(values), *_shape(values[0], length + self.room)[1:]))
        for row, (row_keys, row_values) in enumerate(zip(keys, values, strict=True)):
            self._key_buffer[row, ..., :length, :] = row_keys[0]
            self._value_buffer[row, ..., :length, :] = row_values[0]
        self.keys = self._key_buffer[..., :length, :]
        self.values = self._value_buffer[..., :length, :]

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        end = self.get_seq_length()
        if end == 0 or not self._owns_states(self.keys, end):
            super().reorder_cache(beam_idx)
            return
        beam_idx = beam_idx.to(self.keys.device)
        self._key_buffer[..., :end, :] = self.keys.index_select(0, beam_idx)
        self._value_buffer[..., :end, :] = self.values.index_select(0, beam_idx)

    def reset(self) -> None:
        self._key_buffer = self._value_buffer = None
        super().reset()


def _shape(states: torch.Tensor, length: int) -> tuple[int, ...]:
    return (*states.shape[:-2], length, states.shape[-1])


class ReservedCache(DynamicCache):
    """A `DynamicCache` of `ReservedLayer`s, one a decoder layer of `config`, each with `room` free positions
    beyond its first contents. `states`: (keys, values) a layer to start from, as `DynamicCache`'s
    `ddp_cache_data`.

    Pass it to `generate` as `cache=ReservedCache(model.config, room=max_new_tokens)` (the prefill reserves
    the prompt's length and the room), or built with `from_rows` from the prefilled prefixes of a batch's rows
    with `room=question_length + max_new_tokens`."""

    def __init__(
        self, config: Any, room: int, states: Sequence[tuple[torch.Tensor, torch.Tensor]] | None = None
    ) -> None:
        text_config = config.get_text_config(decoder=True)
        layer_types = getattr(text_config, "layer_types", None) or ["full_attention"]
        if any(kind != "full_attention" for kind in layer_types):
            raise ValueError(f"ReservedCache holds full-attention layers only; this model has {set(layer_types)}.")
        Cache.__init__(self, layers=[ReservedLayer(room) for _ in range(text_config.num_hidden_layers)])
        if states is not None:
            self._check_layers(len(states))
            for layer, (keys, values) in zip(self.layers, states, strict=True):
                layer.update(keys, values)

    @classmethod
    def from_rows(
        cls, config: Any, room: int, rows: Sequence[Sequence[tuple[torch.Tensor, torch.Tensor]]]
    ) -> ReservedCache:
        """A cache whose row r holds `rows[r]` ((keys, values) a layer, batch 1, one length for all rows), each
        copied once, straight into the reserved buffers (`ReservedLayer.fill`)."""
        cache = cls(config, room=room)
        cache._check_layers(len(rows[0]))
        for number, layer in enumerate(cache.layers):
            layer.fill([row[number][0] for row in rows], [row[number][1] for row in rows])
        return cache

    def _check_layers(self, count: int) -> None:
        if count != len(self.layers):
            raise ValueError(f"ReservedCache got states for {count} layers; the model has {len(self.layers)}.")
