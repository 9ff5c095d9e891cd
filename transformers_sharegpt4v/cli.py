"""The `sharegpt4v` command. Thin: it picks the subcommand and hands the rest of argv to the module that
implements it, and each feature keeps its options beside its code.

A module listed in COMMANDS is light to import (torch, transformers, trl and datasets are imported inside
its `run`, so `--help` of every command answers at once and the `data` commands never load torch) and
exposes one of:
- `ARGUMENTS`, the dataclass of its options, and `run(args: ARGUMENTS) -> int`: the options are parsed by
  `arguments.parse_arguments` (defaults < `--config FILE.yaml` < flags), as `sharegpt4v caption`;
- `ACTIONS`, `{name: arguments.Action(dataclass, run, help)}`, for a command with actions (`sharegpt4v data`);
- `run_argv(argv) -> int` for a command that parses its argv itself (`sharegpt4v train`, TRL's parser).

Bad input is a `UsageError` (errors.py), raised by the commands' input checks with a message naming the
file, record, flag or value at fault and the fix: the dispatcher prints it as `sharegpt4v COMMAND: error:
MESSAGE` on stderr and exits with 2 (argparse's code for a usage error). `SHAREGPT4V_DEBUG=1` lets it through
with its traceback. Any other exception (from transformers, trl, datasets, torch, ... or a bug of ours) keeps
its traceback: there, the context is the useful part.
"""

import argparse
import importlib
import os
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

from . import __version__
from .arguments import parse_arguments
from .errors import UsageError

# subcommand -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "convert": (
        "transformers_sharegpt4v.conversion.cli",
        "convert a released ShareGPT4V/LLaVA or llava-hf checkpoint",
    ),
    "push": ("transformers_sharegpt4v.hub", "upload a checkpoint folder (weights, code, processor, card) to the Hub"),
    "data": ("transformers_sharegpt4v.corpora.cli", "build, validate, export, inspect and push caption corpora"),
    "caption": ("transformers_sharegpt4v.captioning.cli", "caption images at scale (batched, resumable)"),
    "init": ("transformers_sharegpt4v.training.init_model", "assemble a new checkpoint from a CLIP and a Llama"),
    "train": ("transformers_sharegpt4v.training.cli", "train a stage (pretrain, finetune, captioner) on TRL"),
    "merge-lora": ("transformers_sharegpt4v.training.merge", "merge a LoRA adapter into a full checkpoint"),
    "demo": ("transformers_sharegpt4v.demo", "ShareGPT4V in miniature, end to end on a CPU"),
    "eval": ("transformers_sharegpt4v.evaluation.cli", "run the paper's benchmarks on local data through lmms-eval"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sharegpt4v",
        description="ShareGPT4V on the Hugging Face stack.",
        epilog="`sharegpt4v COMMAND --help` shows the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        subparsers.add_parser(name, help=help_text, add_help=False)
    return parser


def _parse_action(prog: str, description: str, actions: dict, argv: list[str]) -> tuple[Callable[[Any], int], Any]:
    """(run, options) of `COMMAND ACTION [options]`; `COMMAND --help` lists the actions."""
    if not argv or argv[0] not in actions:
        parser = argparse.ArgumentParser(prog=prog, description=description)
        choices = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
        for name, action in actions.items():
            choices.add_parser(name, help=action.help, add_help=False)
        parser.parse_args(argv)  # --help, or a missing / unknown action: argparse prints and exits
    action = actions[argv[0]]
    return action.run, parse_arguments(action.arguments, argv[1:], f"{prog} {argv[0]}", action.description)


def _parse(name: str, module: ModuleType, argv: list[str]) -> tuple[Callable[[Any], int], Any]:
    """(the function that runs the command, what it takes) for `sharegpt4v NAME argv`."""
    prog, description = f"sharegpt4v {name}", COMMANDS[name][1]
    if hasattr(module, "ACTIONS"):
        return _parse_action(prog, description, module.ACTIONS, argv)
    if hasattr(module, "ARGUMENTS"):
        return module.run, parse_arguments(module.ARGUMENTS, argv, prog, description)
    return module.run_argv, argv


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv:
        parser.print_help()
        return 0
    if argv[0] not in COMMANDS:
        parser.parse_args(argv)  # --help, --version or an unknown command: argparse prints and exits
        return 2
    name = argv[0]
    try:
        run, args = _parse(name, importlib.import_module(COMMANDS[name][0]), argv[1:])
        return int(run(args) or 0)
    except UsageError as error:
        if os.environ.get("SHAREGPT4V_DEBUG", "") not in ("", "0"):
            raise
        print(f"sharegpt4v {name}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
