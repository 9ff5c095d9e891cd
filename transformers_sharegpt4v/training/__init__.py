"""ShareGPT4V training on TRL's SFTTrainer: stage recipes, the collator (original labels, image-safe
truncation, padding-free packing), the trainable-parameter policy of each stage, checkpoint assembly
(`sharegpt4v init`) and LoRA merging (`sharegpt4v merge-lora`).

Heavy imports (trl, peft) happen when a name is first used, so `import transformers_sharegpt4v.training`
stays cheap.
"""

from .._lazy import lazy_attributes

_NAMES = {
    "ShareGPT4VDataCollator": "collator",
    "attach_images": "collator",
    "drop_overlong": "collator",
    "fits_max_length": "collator",
    "measure_row": "collator",
    "STAGES": "trainable",
    "TrainableReport": "trainable",
    "apply_stage_policy": "trainable",
    "ShareGPT4VArguments": "recipe",
    "STAGE_TEMPLATES": "recipe",
    "STAGE_PAD_TO_SQUARE": "recipe",
    "check_recipe_keys": "recipe",
    "parse_recipe": "recipe",
    "ShareGPT4VTrainer": "trainer",
    "build_trainer": "trainer",
    "load_training_dataset": "trainer",
    "train": "trainer",
    "init_checkpoint": "init_model",
    "merge_lora": "merge",
}

__all__ = sorted(_NAMES)


__getattr__ = lazy_attributes(__name__, {name: "." + module for name, module in _NAMES.items()})
