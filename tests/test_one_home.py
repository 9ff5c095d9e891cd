"""Each rule the package applies in several places has one home, and every place reads it from there."""

from __future__ import annotations

import pytest
import torch

import transformers_sharegpt4v
from transformers_sharegpt4v import tokenization_sharegpt4v
from transformers_sharegpt4v.corpora import records
from transformers_sharegpt4v.dtypes import DTYPE_CHOICES, parse_dtype
from transformers_sharegpt4v.errors import UsageError
from transformers_sharegpt4v.processing_sharegpt4v import (
    IGNORE_INDEX,
    IMAGE_TOKEN,
    VOCAB_MULTIPLE,
    load_chat_templates,
    read_chat_template,
)


@pytest.mark.parametrize(
    "name, expected",
    [
        ("float32", torch.float32),
        ("fp32", torch.float32),
        ("float16", torch.float16),
        ("fp16", torch.float16),
        ("bfloat16", torch.bfloat16),
        ("bf16", torch.bfloat16),
        (torch.float16, torch.float16),
        ("auto", None),
        (None, None),
    ],
)
def test_parse_dtype(name, expected):
    assert parse_dtype(name) is expected


def test_parse_dtype_refuses_other_names_with_the_accepted_ones():
    with pytest.raises(UsageError, match="'float8' is not one of auto, bf16, bfloat16"):
        parse_dtype("float8")
    assert all(choice == "auto" or parse_dtype(choice) is not None for choice in DTYPE_CHOICES)


def test_the_image_token_and_its_neighbours_have_one_home():
    from transformers_sharegpt4v.conversion import configs, tokenizer
    from transformers_sharegpt4v.training import collator

    assert (
        IMAGE_TOKEN == tokenization_sharegpt4v.IMAGE_TOKEN == records.IMAGE_TAG == tokenizer.IMAGE_TOKEN == "<image>"
    )
    assert collator.IGNORE_INDEX == IGNORE_INDEX == -100
    assert configs.VOCAB_MULTIPLE == VOCAB_MULTIPLE == 64 and configs.padded_vocab_size(32002) == 32064


def test_projector_keys_of_every_layout():
    from transformers_sharegpt4v.conversion.keys import projector_key, rename_original_llm_key

    assert projector_key("model.mm_projector.0.weight") == "linear_1.weight"
    assert projector_key("mm_projector.2.bias") == "linear_2.bias"
    assert projector_key("model.multi_modal_projector.linear_2.weight") == "linear_2.weight"
    assert projector_key("linear_1.bias") == "linear_1.bias"
    assert projector_key("model.mm_projector.1.weight") is None  # the GELU has no weights
    assert projector_key("model.mm_projector.0.scale") is None
    assert rename_original_llm_key("model.mm_projector.2.weight") == "model.multi_modal_projector.linear_2.weight"


def test_bundled_chat_templates_are_read_in_one_place():
    templates = load_chat_templates()
    assert templates["default"] == templates["vicuna_v1"] == read_chat_template("vicuna_v1")
    assert templates["plain"] == read_chat_template("plain")
    assert read_chat_template("vicuna_v1_llava_hf") is not None and read_chat_template("no_such") is None


def test_the_remote_code_file_list_has_one_home():
    from transformers_sharegpt4v.conversion.convert import REMOTE_CODE_FILES

    modules = transformers_sharegpt4v.REMOTE_CODE_MODULES
    assert REMOTE_CODE_FILES == tuple(f"{module}.py" for module in modules)
    assert transformers_sharegpt4v._UNIT == tuple(f"transformers_sharegpt4v.{module}" for module in modules)
