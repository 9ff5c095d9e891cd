"""`sdpa_varlen`: padding-free attention for the CPU (and any device without flash-attention).

With `padding_free`, a batch is one row of packed samples. transformers' sdpa/eager paths then build a
block-diagonal causal mask of shape (total, total) from the position ids: exact, but quadratic in the
PACKED length, so a pack of 8 samples costs more attention time and memory than the padded batch it
replaces. Varlen flash-attention avoids that on CUDA. `sdpa_varlen` does the same on any device: it
splits the row at the positions where `position_ids` restart at 0 and runs PyTorch's causal
`scaled_dot_product_attention` on each sample, so the cost is the sum of the samples' own squares and no
mask is materialized. It is registered with transformers' `AttentionInterface` (and a mask function that
skips mask creation when there is no padding), so the model code is unchanged; with a padding mask or a
KV cache it is plain sdpa.

Used by `build_trainer` for the language model when `padding_free` is on and the model runs sdpa. It is
not written into saved configs (they keep `sdpa`), so checkpoints load without the plugin.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, causal_mask_function, sdpa_mask

NAME = "sdpa_varlen"


def sample_boundaries(position_ids: torch.Tensor, length: int) -> list[tuple[int, int]]:
    """(start, end) of each packed sample in a row: a sample starts where the position id is 0."""
    starts = (position_ids.reshape(-1) == 0).nonzero().flatten().tolist()
    if not starts or starts[0] != 0:
        starts = [0, *starts]
    return list(zip(starts, [*starts[1:], length], strict=True))


def sdpa_varlen_attention_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Causal attention per packed sample; plain sdpa when there is a mask, a cache, or batch > 1."""
    position_ids = kwargs.get("position_ids")
    packed = (
        attention_mask is None
        and position_ids is not None
        and query.shape[0] == 1
        and query.shape[2] == key.shape[2] == position_ids.shape[-1]
    )
    if not packed:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout, scaling, **kwargs)
    groups = getattr(module, "num_key_value_groups", 1)
    if groups > 1:
        key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    dropout = dropout if module.training else 0.0
    pieces = [
        torch.nn.functional.scaled_dot_product_attention(
            query[:, :, start:end],
            key[:, :, start:end],
            value[:, :, start:end],
            dropout_p=dropout,
            scale=scaling,
            is_causal=True,
        )
        for start, end in sample_boundaries(position_ids, query.shape[2])
    ]
    return torch.cat(pieces, dim=2).transpose(1, 2).contiguous(), None


def sdpa_varlen_mask(
    batch_size: int,
    q_length: int,
    kv_length: int,
    q_offset: int = 0,
    kv_offset: int = 0,
    mask_function=causal_mask_function,
    attention_mask: torch.Tensor | None = None,
    **kwargs: Any,
):
    """No mask for an unpadded, cache-free forward (the attention splits the samples); sdpa's otherwise."""
    if attention_mask is None and q_length == kv_length and not q_offset and not kv_offset:
        return None
    return sdpa_mask(batch_size, q_length, kv_length, q_offset, kv_offset, mask_function, attention_mask, **kwargs)


def register_sdpa_varlen() -> str:
    """Register `sdpa_varlen` with transformers (idempotent); returns its name."""
    AttentionInterface.register(NAME, sdpa_varlen_attention_forward)
    AttentionMaskInterface.register(NAME, sdpa_varlen_mask)
    return NAME


def use_sdpa_varlen(model: torch.nn.Module) -> bool:
    """Switch the language model of a ShareGPT4V model from sdpa to `sdpa_varlen`; False if it is not on sdpa."""
    backbone = model.model if hasattr(model, "lm_head") else model
    language_model = backbone.language_model
    if language_model.config._attn_implementation != "sdpa":
        return False
    register_sdpa_varlen()
    language_model.set_attn_implementation(NAME)
    return True


__all__ = ["NAME", "register_sdpa_varlen", "sample_boundaries", "sdpa_varlen_attention_forward", "use_sdpa_varlen"]
