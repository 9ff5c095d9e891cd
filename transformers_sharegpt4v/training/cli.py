"""`sharegpt4v train --config RECIPE.yaml [--key value ...]`: train a ShareGPT4V stage on TRL's SFTTrainer.

A recipe holds the keys `trl sft` takes (ScriptArguments, SFTConfig, ModelConfig) plus ShareGPT4V's
(`stage`, `vision_trainable_from_layer`, ...); see `recipe.py`. Unknown keys are errors. Examples:

    sharegpt4v train --config examples/recipes/tiny_finetune.yaml --max_steps 2
    accelerate launch --config_file examples/accelerate/zero3.yaml --num_machines 2 ... \
        -m transformers_sharegpt4v.training.cli --config examples/recipes/pretrain.yaml

`--help` is short and answers at once; `--help-all` lists every key with its default (it loads trl, torch and
transformers to do so, which takes a few seconds).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from ..errors import MissingFileError, UsageError, looks_like_hub_id

USAGE = "sharegpt4v train --config RECIPE.yaml [--key value ...]"

# The keys `recipe.ShareGPT4VArguments` adds to trl's (listed here so that `--help` need not import trl;
# tests/test_cli.py checks that the two agree).
SHAREGPT4V_KEYS = ("stage", "vision_trainable_from_layer", "chat_template_name", "pad_to_square", "log_throughput")

HELP = f"""usage: {USAGE}

Train a ShareGPT4V stage (pretrain, finetune, captioner) on TRL's SFTTrainer.

options:
  --config RECIPE.yaml  the recipe: YAML with the keys `trl sft` takes (ScriptArguments, SFTConfig,
                        ModelConfig: model_name_or_path, dataset_name, output_dir, learning_rate, ...) plus
                        ShareGPT4V's: {", ".join(SHAREGPT4V_KEYS[:3])},
                        {", ".join(SHAREGPT4V_KEYS[3:])}
  --KEY VALUE           override a key of the recipe (defaults < recipe < flags), e.g. --max_steps 10
  --help-all            list every key with its default and help (loads trl: takes a few seconds)
  -h, --help            show this message

An unknown key, in the recipe or on the command line, is an error that names it. Recipes of the paper's two
stages and tiny CPU ones: examples/recipes/. Example:
  sharegpt4v train --config examples/recipes/tiny_finetune.yaml --max_steps 2
"""


def print_all_keys() -> None:
    """The recipe parser's own help: every key of every dataclass, with `--config` said first."""
    from .recipe import make_parser

    parser = make_parser()
    parser.usage = USAGE
    parser.description = (
        "--config RECIPE.yaml reads the recipe; every key below may be set in it or given as a flag, which "
        "overrides it (defaults < recipe < flags)."
    )
    parser.print_help()


def run_argv(argv: list[str]) -> int:
    """The whole argv goes to the recipe parser (TrlParser, see recipe.py), which knows every key; the
    dispatcher's argparse would stop at the first `--key` it does not know."""
    argv = list(argv)
    if argv and argv[0] in ("-h", "--help"):
        print(HELP, end="")
        return 0
    if argv and argv[0] == "--help-all":
        print_all_keys()
        return 0
    if not argv:
        raise UsageError(f"give a recipe: {USAGE} (--help says more).")
    _check_config_flag(argv)
    from .recipe import parse_recipe

    script_args, training_args, model_args, ours = parse_recipe(argv)
    _check_inputs(argv, script_args, model_args)
    from .trainer import train

    _log_to_stderr(logging.INFO if training_args.should_log else logging.WARNING)
    trainer = train(script_args, training_args, model_args, ours)
    losses = [entry["train_loss"] for entry in trainer.state.log_history if "train_loss" in entry]
    loss = f", train loss {losses[-1]:.4f}" if losses else ""
    skipped = trainer.data_collator.skipped
    trainer.accelerator.print(
        f"Trained stage {ours.stage}: {trainer.state.global_step} steps{loss}, {skipped} sample(s) skipped by the "
        f"collator, final model in {training_args.output_dir}."
    )
    return 0


def _check_config_flag(argv: list[str]) -> None:
    if "--config" not in argv:
        return
    position = argv.index("--config")
    if position + 1 >= len(argv) or argv[position + 1].startswith("--"):
        raise UsageError("--config needs a value: --config RECIPE.yaml.")
    path = Path(argv[position + 1])
    if not path.is_file():
        raise MissingFileError(f"--config {path}: no such recipe file (examples/recipes/ holds the shipped ones).")


def _where(key: str, argv: list[str]) -> str:
    """How the user gave `key`: as a flag, or in the recipe."""
    if f"--{key}" in argv or any(arg.startswith(f"--{key}=") for arg in argv):
        return f"--{key}"
    recipe = argv[argv.index("--config") + 1] if "--config" in argv else None
    return f"{key} (in {recipe})" if recipe else key


def _check_inputs(argv: list[str], script_args, model_args) -> None:
    """The model and the dataset exist, before the trainer loads anything."""
    from ..hub import check_model_argument

    if model_args.model_name_or_path is None:
        raise UsageError("The recipe has no model_name_or_path: set it (`sharegpt4v init` or `convert` make one).")
    check_model_argument(
        str(model_args.model_name_or_path),
        _where("model_name_or_path", argv),
        "a checkpoint folder (`sharegpt4v init` or `sharegpt4v convert` make one)",
    )
    dataset = script_args.dataset_name
    if dataset is None:
        raise UsageError("The recipe has no dataset_name: set it to a `sharegpt4v data build` folder or a Hub id.")
    if not Path(dataset).exists() and not looks_like_hub_id(str(dataset)):
        raise MissingFileError(
            f"{_where('dataset_name', argv)} {dataset}: no such folder; give a `sharegpt4v data build` folder or a "
            "Hub dataset id (owner/name)."
        )


def _log_to_stderr(level: int) -> None:
    """Show this package's log lines (stage policy, packing, skipped samples) at the trainer's log level."""
    package = logging.getLogger("transformers_sharegpt4v")
    if not package.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("[sharegpt4v] %(message)s"))
        package.addHandler(handler)
    package.setLevel(level)


def main(argv: list[str] | None = None) -> int:
    from ..cli import main as sharegpt4v

    return sharegpt4v(["train", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
