"""ShareGPT4V training on TRL's SFTTrainer: stage recipes, the collator (original labels, image-safe
truncation, padding-free packing), the trainable-parameter policy of each stage, checkpoint assembly
(`sharegpt4v init`) and LoRA merging (`sharegpt4v merge-lora`).

Heavy imports (trl, peft) happen when a name is first used, so `import transformers_sharegpt4v.training`
stays cheap.
"""

from .._lazy import lazy_attributes, names_by_module

_NAMES = names_by_module(
    {
        ".collator": ("ShareGPT4VDataCollator", "attach_images", "drop_overlong", "measure_row"),
        ".trainable": ("STAGES", "TrainableReport", "apply_stage_policy"),
        ".recipe": (
            "ShareGPT4VArguments",
            "STAGE_TEMPLATES",
            "STAGE_PAD_TO_SQUARE",
            "check_recipe_keys",
            "parse_recipe",
        ),
        ".trainer": ("ShareGPT4VTrainer", "build_trainer", "load_training_dataset", "train"),
        ".init_model": ("init_checkpoint",),
        ".merge": ("merge_lora",),
    }
)

__all__ = sorted(_NAMES)


__getattr__ = lazy_attributes(__name__, _NAMES)
