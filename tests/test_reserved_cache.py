"""`evaluation.cache.ReservedCache`: the cache that decodes by writing in place. It must hold what
transformers' own `DynamicLayer` holds after every cache operation, and `generate` must give the same output
with it as with the default `DynamicCache`."""

import pytest
import torch
from conftest import FIXTURE_IMAGES
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from transformers_sharegpt4v.evaluation.cache import ReservedCache, ReservedLayer


def _states(batch: int, length: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(batch, 2, length, 4, generator=generator) for _ in range(2))


def _same(reserved: ReservedLayer, dynamic: DynamicLayer) -> None:
    assert reserved.get_seq_length() == dynamic.get_seq_length()
    assert torch.equal(reserved.keys, dynamic.keys) and torch.equal(reserved.values, dynamic.values)


def test_reserved_layer_holds_what_a_dynamic_layer_holds():
    """The same operations on both, in the order generation uses them: prefill, decoding past the reserved
    room, crop, beam reordering, batch selection and repetition; the held states equal after each."""
    reserved, dynamic = ReservedLayer(room=3), DynamicLayer()
    seed = iter(range(100))

    def update(batch: int, length: int) -> None:
        keys, values = _states(batch, length, next(seed))
        returned = reserved.update(keys, values)
        expected = dynamic.update(keys, values)
        assert all(torch.equal(a, b) for a, b in zip(returned, expected, strict=True))
        _same(reserved, dynamic)

    update(3, 5)  # prefill
    for _ in range(6):  # one position a step: the room of 3 runs out and the buffer grows
        update(3, 1)
    for layer in (reserved, dynamic):
        layer.crop(-2)
    _same(reserved, dynamic)
    update(3, 1)
    beams = torch.tensor([2, 2, 0])
    for layer in (reserved, dynamic):
        layer.reorder_cache(beams)
    _same(reserved, dynamic)
    update(3, 1)
    for layer in (reserved, dynamic):
        layer.batch_select_indices(torch.tensor([0, 2]))
    _same(reserved, dynamic)
    update(2, 2)
    for layer in (reserved, dynamic):
        layer.batch_repeat_interleave(2)
    _same(reserved, dynamic)
    update(4, 1)
    for layer in (reserved, dynamic):
        layer.reset()
    update(1, 3)  # a reset layer starts again from nothing


def test_reserved_layer_decodes_in_place_within_its_room():
    """Within the reserved room the states stay in one buffer (no copy a step); `DynamicLayer` reallocates."""
    reserved, dynamic = ReservedLayer(room=8), DynamicLayer()
    for layer in (reserved, dynamic):
        layer.update(*_states(2, 10, 0))
    start, dynamic_start = reserved.keys.data_ptr(), dynamic.keys.data_ptr()
    for step in range(8):
        for layer in (reserved, dynamic):
            layer.update(*_states(2, 1, step + 1))
        assert reserved.keys.data_ptr() == start and reserved.values.shape[-2] == 11 + step
    assert dynamic.keys.data_ptr() != dynamic_start
    reserved.update(*_states(2, 1, 99))  # one past the room: a new, larger buffer
    assert reserved.keys.data_ptr() != start and reserved.get_seq_length() == 19


def _image_batch(processor) -> dict:
    from PIL import Image

    photos = [Image.open(FIXTURE_IMAGES / name) for name in ("coco_dog_000000319154.jpg", "waterview.jpg")]
    prompts = ["USER: <image>\nWhat is it? ASSISTANT:", "USER: <image>\nDescribe the picture in detail. ASSISTANT:"]
    return processor(text=prompts, images=photos, padding=True, padding_side="left", return_tensors="pt")


@pytest.mark.parametrize("num_beams", [1, 2])
def test_generate_with_a_reserved_cache_equals_the_default_cache(tiny_model, llama_tokenizer_dir, num_beams):
    """A left-padded batch of two images: the same ids and the same scores as `generate` with its own
    `DynamicCache` (greedy, and beam search, which reorders the cache every step)."""
    from transformers import LlamaTokenizer

    from transformers_sharegpt4v import ShareGPT4VProcessor

    tokenizer = LlamaTokenizer.from_pretrained(llama_tokenizer_dir)
    ShareGPT4VProcessor.prepare_tokenizer(tokenizer)
    processor = ShareGPT4VProcessor.from_model_config(tiny_model.config, tokenizer)
    inputs = _image_batch(processor)
    assert (inputs["attention_mask"] == 0).any()
    options = dict(max_new_tokens=6, min_new_tokens=6, do_sample=False, num_beams=num_beams)
    options.update(output_scores=True, return_dict_in_generate=True, pad_token_id=tokenizer.pad_token_id)
    default = tiny_model.generate(**inputs, **options)
    room = 2  # fewer than the new tokens: the buffers grow once during decoding
    reserved = tiny_model.generate(**inputs, cache=ReservedCache(tiny_model.config, room=room), **options)
    assert torch.equal(reserved.sequences, default.sequences)
    for ours, theirs in zip(reserved.scores, default.scores, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_reserved_cache_from_states_and_its_errors(tiny_config):
    layers = tiny_config.text_config.num_hidden_layers
    states = [_states(2, 7, layer) for layer in range(layers)]
    cache = ReservedCache(tiny_config, room=4, states=states)
    reference = DynamicCache(ddp_cache_data=states, config=tiny_config)
    assert isinstance(cache, DynamicCache) and cache.get_seq_length() == 7
    for ours, theirs in zip(cache.layers, reference.layers, strict=True):
        _same(ours, theirs)
    with pytest.raises(ValueError, match=f"states for 1 layers; the model has {layers}"):
        ReservedCache(tiny_config, room=4, states=states[:1])
    rows = [[(keys[row : row + 1], values[row : row + 1]) for keys, values in states] for row in range(2)]
    from_rows = ReservedCache.from_rows(tiny_config, 4, rows)  # each row copied straight into the buffers
    for ours, theirs in zip(from_rows.layers, reference.layers, strict=True):
        _same(ours, theirs)
    with pytest.raises(ValueError, match=f"states for 1 layers; the model has {layers}"):
        ReservedCache.from_rows(tiny_config, 4, [row[:1] for row in rows])
    tiny_config.text_config.layer_types = ["sliding_attention"] * layers
    with pytest.raises(ValueError, match="full-attention layers only"):
        ReservedCache(tiny_config, room=4)


def test_fill_holds_the_rows_concatenated_and_decodes_in_place():
    """`fill` from batch-1 rows holds what a `DynamicLayer` holds after an update with their concatenation
    (rows repeated, as questions sharing a prefix repeat it), then decodes into the same buffer; its errors."""
    rows = [_states(1, 5, seed) for seed in (0, 1, 0)]
    reserved, dynamic = ReservedLayer(room=2), DynamicLayer()
    reserved.fill([k for k, _ in rows], [v for _, v in rows])
    dynamic.update(torch.cat([k for k, _ in rows]), torch.cat([v for _, v in rows]))
    _same(reserved, dynamic)
    assert reserved.keys.data_ptr() != rows[0][0].data_ptr()  # copies: the rows stay the prefix's own
    buffer = reserved.keys.data_ptr()
    for seed in (7, 8):  # the room of 2: written in place
        keys, values = _states(3, 1, seed)
        reserved.update(keys, values)
        dynamic.update(keys, values)
        _same(reserved, dynamic)
        assert reserved.keys.data_ptr() == buffer
    with pytest.raises(ValueError, match="empty layer"):
        reserved.fill([k for k, _ in rows], [v for _, v in rows])
    with pytest.raises(ValueError, match="batch 1 and one length"):
        ReservedLayer(room=2).fill([rows[0][0], _states(1, 6, 3)[0]], [rows[0][1], rows[1][1]])
    with pytest.raises(ValueError, match="batch 1 and one length"):
        ReservedLayer(room=2).fill([_states(2, 5, 4)[0]], [_states(2, 5, 4)[1]])
