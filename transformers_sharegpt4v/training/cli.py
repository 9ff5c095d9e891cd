"""`sharegpt4v train --config RECIPE.yaml [--key value ...]`: train a ShareGPT4V stage on TRL's SFTTrainer.

A recipe holds the keys `trl sft` takes (ScriptArguments, SFTConfig, ModelConfig) plus ShareGPT4V's
(`stage`, `vision_trainable_from_layer`, ...); see `recipe.py`. Unknown keys are errors. Examples:

    sharegpt4v train --config examples/recipes/tiny_finetune.yaml --max_steps 2
    accelerate launch --config_file examples/accelerate/zero3.yaml --num_machines 2 ... \
        -m transformers_sharegpt4v.training.cli --config examples/recipes/pretrain.yaml
"""

from __future__ import annotations

import argparse
import logging
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # Every argument goes to the recipe parser (TrlParser), which knows the keys; argparse would stop at the
    # first `--key` it does not know. So this parser treats nothing as an option ('-' is not a prefix).
    parser.prefix_chars = "\0"
    parser.usage = "sharegpt4v train --config RECIPE.yaml [--key value ...]  (--help lists every key)"
    parser.add_argument("argv", nargs=argparse.REMAINDER, help="--config RECIPE.yaml and --key value overrides")


def run(args: argparse.Namespace) -> int:
    from .recipe import make_parser, parse_recipe

    argv = list(args.argv or [])
    if not argv or argv[0] in ("-h", "--help"):
        make_parser().print_help()
        return 0 if argv else 2
    from .trainer import train

    script_args, training_args, model_args, ours = parse_recipe(argv)
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


def _log_to_stderr(level: int) -> None:
    """Show this package's log lines (stage policy, packing, skipped samples) at the trainer's log level."""
    package = logging.getLogger("transformers_sharegpt4v")
    if not package.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("[sharegpt4v] %(message)s"))
        package.addHandler(handler)
    package.setLevel(level)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sharegpt4v train", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
