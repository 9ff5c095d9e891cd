"""Training recipes: YAML files with the keys `trl sft` takes plus ShareGPT4V's own, parsed strictly.

A recipe is parsed by TRL's `TrlParser` over four dataclasses, in this order of precedence: dataclass
defaults < the `--config` YAML < `--key value` flags. The dataclasses are TRL's `ScriptArguments`
(`dataset_name`, splits), `SFTConfig` (every `TrainingArguments` key plus `max_length`, `padding_free`, ...),
`ModelConfig` (`model_name_or_path`, `dtype`, `attn_implementation`, `use_peft`, `lora_*`) and
`ShareGPT4VArguments` below. Unlike `trl sft`, an unknown key is an error that names it, in the YAML
(`fail_with_unknown_args=True`) as on the command line.

Two `SFTConfig` keys mean what the original ShareGPT4V code meant by them:
- `max_length` counts TEXT tokens, with each `<image>` as one token, as the original `model_max_length` did;
  every image then adds 575 positions. An over-long sample is cut in its text after the last image, or
  skipped (counted, with a warning) when even that cannot fit.
- `padding_free: true` packs the samples of a batch into one row with per-sample `position_ids`. TRL
  refuses padding-free for image datasets, so this collator does the packing and TRL sees `False`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from trl import ModelConfig, ScriptArguments, SFTConfig, TrlParser

from ..errors import MissingFileError, UsageError
from .trainable import STAGES

# The chat template and image padding each stage uses when the recipe does not say (docs/reference.md,
# "Training recipe").
STAGE_TEMPLATES = {"pretrain": "plain", "finetune": "vicuna_v1", "captioner": "vicuna_v1"}
STAGE_PAD_TO_SQUARE = {"pretrain": False, "finetune": True, "captioner": True}


@dataclass
class ShareGPT4VArguments:
    """ShareGPT4V's own recipe keys (the rest are `trl sft`'s)."""

    stage: str = field(
        default="finetune",
        metadata={
            "help": "Which stage to train: pretrain (plain template, no pad, LLM + projector + vision layers >= "
            "vision_trainable_from_layer), finetune or captioner (vicuna_v1, pad to square, vision frozen).",
            "choices": list(STAGES),
        },
    )
    vision_trainable_from_layer: int | None = field(
        default=None,
        metadata={"help": "pretrain only: first trainable vision encoder layer (default 12: ViT-L/14's 2nd half)."},
    )
    chat_template_name: str | None = field(
        default=None,
        metadata={
            "help": "Override the stage's template: vicuna_v1 or plain.",
            "choices": [None, "vicuna_v1", "plain"],
        },
    )
    pad_to_square: bool | None = field(
        default=None,
        metadata={"help": "Override the stage's image padding (pretrain: false; finetune, captioner: true)."},
    )
    log_throughput: bool = field(
        default=True,
        metadata={"help": "Log samples/s and tokens/s (real tokens, image positions included) at each log step."},
    )

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise UsageError(f"stage={self.stage!r} is not a ShareGPT4V stage: choose one of {', '.join(STAGES)}.")

    @property
    def template(self) -> str:
        return self.chat_template_name or STAGE_TEMPLATES[self.stage]

    @property
    def do_pad(self) -> bool:
        return STAGE_PAD_TO_SQUARE[self.stage] if self.pad_to_square is None else self.pad_to_square


RECIPE_DATACLASSES = (ScriptArguments, SFTConfig, ModelConfig, ShareGPT4VArguments)


def make_parser(prog: str = "sharegpt4v train") -> TrlParser:
    """The strict recipe parser (defaults < `--config` YAML < `--key value` flags)."""
    return TrlParser(RECIPE_DATACLASSES, prog=prog)


def recipe_keys(parser: TrlParser | None = None) -> set[str]:
    """Every key a recipe may set (the dests of the parser's options)."""
    parser = parser or make_parser()
    return {action.dest for action in parser._actions if action.dest != "help"}


def check_recipe_keys(config_path: str | Path, parser: TrlParser | None = None) -> dict:
    """Load a recipe YAML and raise `UsageError` naming every key no dataclass knows; return the mapping."""
    import yaml

    path = Path(config_path)
    if not path.is_file():
        raise MissingFileError(f"Recipe not found: {str(path)!r}.")
    recipe = yaml.safe_load(path.read_text())
    if not isinstance(recipe, dict):
        raise UsageError(f"Recipe {str(path)!r} must be a YAML mapping of keys to values.")
    unknown = sorted(set(recipe) - recipe_keys(parser) - {"env"})
    if unknown:
        raise UsageError(
            f"Unknown key(s) in recipe {str(path)!r}: {', '.join(unknown)}. A recipe takes the keys of trl's "
            "ScriptArguments, SFTConfig and ModelConfig plus ShareGPT4V's (stage, vision_trainable_from_layer, "
            "chat_template_name, pad_to_square, log_throughput): fix the spelling or remove the key."
        )
    return recipe


def parse_recipe(
    argv: Sequence[str],
) -> tuple[ScriptArguments, SFTConfig, ModelConfig, ShareGPT4VArguments]:
    """Parse `--config RECIPE.yaml [--key value ...]` into the four argument dataclasses.

    Raises `UsageError` (a ValueError) naming the recipe and the key when the YAML or the flags hold an unknown key.
    """
    argv = list(argv)
    parser = make_parser()
    config_path = None
    if "--config" in argv:
        config_path = argv[argv.index("--config") + 1]
        check_recipe_keys(config_path, parser)
    flags = {arg[2:].split("=")[0].replace("-", "_") for arg in argv if arg.startswith("--")} - {"config"}
    unknown = sorted(flags - recipe_keys(parser))
    if unknown:
        raise UsageError(f"Unknown option(s) on the command line: {', '.join('--' + k for k in unknown)}.")
    script_args, training_args, model_args, ours = parser.parse_args_and_config(args=argv, fail_with_unknown_args=True)
    _check_types(training_args, config_path)
    return script_args, training_args, model_args, ours


def _check_types(training_args: SFTConfig, config_path: str | None) -> None:
    # YAML 1.1 reads `2e-5` (no dot) as a string; TrlParser passes YAML values through untouched.
    for key in ("learning_rate", "weight_decay", "warmup_steps", "num_train_epochs"):
        value = getattr(training_args, key, None)
        if isinstance(value, str):
            raise UsageError(
                f"{key}={value!r} in recipe {config_path!r} is a string, not a number: YAML reads `2e-5` as text, "
                "write `2.0e-5`."
            )
        if value is not None and not math.isfinite(float(value)):
            raise UsageError(f"{key}={value!r} in recipe {config_path!r} is not a finite number.")


__all__ = [
    "RECIPE_DATACLASSES",
    "STAGE_PAD_TO_SQUARE",
    "STAGE_TEMPLATES",
    "ShareGPT4VArguments",
    "check_recipe_keys",
    "make_parser",
    "parse_recipe",
    "recipe_keys",
]
