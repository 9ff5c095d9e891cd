"""The llava-hf export: transformers' LlavaConfig, and a LlavaProcessor whose chat template gives the original ids
when serving engines tokenize the rendered prompt in one piece. (The key layout: `keys.to_llava_hf_key`.)"""

from __future__ import annotations

import logging
from pathlib import Path

from transformers import LlavaConfig

from .configs import llava_config_from_plugin
from .plan import _Plan
from .tokenizer import (
    IMAGE_TOKEN,
    _default_template,
    _llava_hf_template,
    _shipped_chat_template,
    _whole_string_tokenizer,
    check_whole_string_template,
)

logger = logging.getLogger(__name__)


def llava_hf_config(plan: _Plan) -> LlavaConfig:
    """The export's LlavaConfig, with the image_aspect_ratio SGLang reads."""
    config = llava_config_from_plugin(plan.config)
    # SGLang pads a llava-hf checkpoint's images to square only when config.json says "pad" (vLLM reads
    # do_pad from the processor, saved below from the same setting); "square" is LLaVA's "no padding".
    config.image_aspect_ratio = "pad" if plan.image_processor_kwargs.get("do_pad") else "square"
    return config


def _llava_hf_chat_template(plan: _Plan, tokenizer: object) -> str:
    """The vicuna_v1_llava_hf template, warning when it replaces a custom template or misses the original ids."""
    chat_template = _llava_hf_template(tokenizer)
    if plan.chat_template is not None and _default_template(plan.chat_template) != _shipped_chat_template("vicuna_v1"):
        logger.warning(
            "The source's chat template is not the shipped vicuna_v1 one; the llava-hf export gets the "
            "vicuna_v1_llava_hf template instead (LlavaProcessor tokenizes whole strings: a plugin template "
            "would give other ids). Set processor.chat_template in the export if you need your own."
        )

    problem = check_whole_string_template(
        plan.config, tokenizer, chat_template, sentencepiece_file=plan.sentencepiece_file
    )
    if problem is not None:
        logger.warning(
            "The llava-hf export's chat template does not reproduce the original token ids with this tokenizer "
            "(%s): LlavaProcessor / vLLM / SGLang will feed the model other ids than it was trained on.",
            problem,
        )
    return chat_template


def save_llava_hf_processor(plan: _Plan, out_dir: Path) -> None:
    """LlavaProcessor with LlavaImageProcessor(do_pad=True) and the vicuna_v1_llava_hf template, which serving
    engines apply as is.

    The llava-hf template always replaces the source's: LlavaProcessor (and vLLM / SGLang) tokenize the rendered
    prompt in one piece and add BOS, so only a template written for that (no BOS, the dummy-prefix spaces made
    explicit) gives the ids the model was trained on; the plugin's templates assume its split tokenization."""
    kwargs = dict(plan.image_processor_kwargs)
    # Imported here: without torchvision, importing LlavaImageProcessor logs a fallback warning.
    from transformers import LlavaImageProcessor, LlavaProcessor

    tokenizer = _whole_string_tokenizer(plan.tokenizer)
    chat_template = _llava_hf_chat_template(plan, tokenizer)
    image_processor = LlavaImageProcessor(**kwargs)
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=plan.config.vision_config.patch_size,
        vision_feature_select_strategy=plan.config.vision_feature_select_strategy,
        image_token=IMAGE_TOKEN,
        num_additional_image_tokens=1,
        chat_template=chat_template,
    )
    processor.save_pretrained(out_dir)
    # transformers 5 nests the image processor in processor_config.json; transformers 4.x (which vLLM and
    # SGLang may run on) reads preprocessor_config.json. Write both, with the same settings.
    image_processor.save_pretrained(out_dir)
