"""The tokenizer side of a conversion: the added tokens, the shipped chat templates, and the llava-hf export's
whole-string tokenizer and template with the check that they give the ids ShareGPT4V was trained on. (Loading
LLaMA tokenizers and the original ids: ../llama_tokenizer.py.)"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from ..configuration_sharegpt4v import ShareGPT4VConfig
from ..image_processing_sharegpt4v import ShareGPT4VImageProcessor
from ..llama_tokenizer import IMAGE_SENTINEL, after_special_split, original_prompt_ids
from ..processing_sharegpt4v import (
    IMAGE_TOKEN,
    ShareGPT4VProcessor,
    read_chat_template,
    tokenizer_is_legacy,
)


def _shipped_chat_template(name: str) -> str:
    """A chat template shipped with the package (chat_templates/{name}.jinja)."""
    template = read_chat_template(name)
    if template is None:
        raise ValueError(
            f"chat_templates/{name}.jinja is missing: reinstall transformers-sharegpt4v (the package data is "
            "incomplete)."
        )
    return template


def _default_template(chat_template: str | dict[str, str]) -> str | None:
    return chat_template.get("default") if isinstance(chat_template, dict) else chat_template


# A conversation with what the dummy prefix affects: text after an image, after "</s>", digits and unicode.
_TURN_START = "USER:"  # what vicuna_v1 puts right after each "</s>"
_PROBE_MESSAGES = [
    {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is in  the 2 images? 日本語 ✓"}]},
    {"role": "assistant", "content": [{"type": "text", "text": "A dog, 3 cats — 0.5 m²."}]},
    {"role": "user", "content": [{"type": "text", "text": " And then?"}]},
]


def _whole_string_tokenizer(tokenizer: Any) -> Any:
    """A copy of the LLaMA tokenizer for the llava-hf export, with the pipeline vicuna_v1_llava_hf is written for.

    The template spells out SentencePiece's per-piece dummy prefix as spaces, which fits the Metaspace
    pre-tokenizer (transformers >= 4.41 tokenizer.json; it adds "▁" only at the start of the text). The legacy
    tokenizer.json of older llava-hf repos prepends "▁" to every piece between special tokens with a normalizer,
    which would double those spaces: it is rewritten to the Metaspace form (same vocabulary and merges). With
    `legacy: false`, "USER" after "</s>" gets the pieces transformers 4.31 gave it (`after_special_split`). The
    copy carries no chat templates of its own (the plugin's would be saved as additional_chat_templates).
    """
    out = copy.copy(tokenizer)
    out.chat_template = None
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return out
    spec = json.loads(backend.to_str())
    normalizer = spec.get("normalizer") or {}
    steps = normalizer.get("normalizers", []) if normalizer.get("type") == "Sequence" else [normalizer]
    prepend = [step for step in steps if step.get("type") == "Prepend" and step.get("prepend") == "▁"]
    if prepend and spec.get("pre_tokenizer") is None:
        kept = [step for step in steps if step not in prepend]
        spec["normalizer"] = {"type": "Sequence", "normalizers": kept} if kept else None
        spec["pre_tokenizer"] = {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": False}
        out._tokenizer = type(backend).from_str(json.dumps(spec))
    if not tokenizer_is_legacy(tokenizer):
        split = after_special_split(out, _TURN_START)
        if split is not None:
            spec = json.loads(out._tokenizer.to_str())
            spec["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [split, spec["pre_tokenizer"]]}
            out._tokenizer = type(backend).from_str(json.dumps(spec))
    return out


def _llava_hf_template(tokenizer: Any) -> str:
    """The shipped vicuna_v1_llava_hf template, with the tokenizer's `legacy` setting written in."""
    template = _shipped_chat_template("vicuna_v1_llava_hf")
    if tokenizer_is_legacy(tokenizer):
        return template
    line = "{%- set legacy = true -%}"
    if template.count(line) != 1:
        raise RuntimeError(f"vicuna_v1_llava_hf.jinja should have one line {line!r}")
    return template.replace(line, "{%- set legacy = false -%}")


def check_whole_string_template(
    config: ShareGPT4VConfig,
    tokenizer: Any,
    chat_template: str,
    messages: list[dict] | None = None,
    sentencepiece_file: str | Path | None = None,
) -> str | None:
    """None if `chat_template` rendered and tokenized in one piece by `tokenizer` (with BOS, as LlavaProcessor and
    serving engines do) gives the ids ShareGPT4V was trained on for `messages` (default: a probe conversation),
    else a description of the first difference.

    The original ids: the vicuna_v1 prompt tokenized as transformers 4.31 did it, computed independently with
    sentencepiece on `sentencepiece_file` (`original_prompt_ids`); without that file (a llava-hf source ships
    only tokenizer.json), with the plugin processor's split tokenization (docs/reference.md, "Prompts and labels").
    """
    messages = _PROBE_MESSAGES if messages is None else messages
    reference = ShareGPT4VProcessor.from_model_config(
        config,
        tokenizer,
        image_processor=ShareGPT4VImageProcessor(),
        chat_template=_shipped_chat_template("vicuna_v1"),
    )
    prompt = reference.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    if sentencepiece_file is not None:
        prompt = prompt.removeprefix(tokenizer.bos_token or "")
        original = original_prompt_ids(sentencepiece_file, prompt, tokenizer_is_legacy(tokenizer), IMAGE_TOKEN)
        image = [config.image_token_id] * config.image_seq_length
        expected = [i for token in original for i in (image if token == IMAGE_SENTINEL else [token])]
    else:
        expected = reference.tokenize_like_original([prompt])[0]["input_ids"]
    text = tokenizer.apply_chat_template(
        messages, chat_template=chat_template, add_generation_prompt=True, tokenize=False
    )
    got = tokenizer(text.replace(IMAGE_TOKEN, IMAGE_TOKEN * config.image_seq_length))["input_ids"]
    if got == expected:
        return None
    index = next(
        (i for i, (a, b) in enumerate(zip(got, expected, strict=False)) if a != b), min(len(got), len(expected))
    )
    return (
        f"the template's text {text!r} tokenizes to {tokenizer.convert_ids_to_tokens(got[index : index + 4])} at "
        f"position {index} where the original has {tokenizer.convert_ids_to_tokens(expected[index : index + 4])}"
    )
