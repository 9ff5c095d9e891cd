"""The `sharegpt4v` command. Thin: it picks the subcommand and hands the rest of argv to the module that
implements it, and each feature keeps its options beside its code.

Each module listed in COMMANDS exposes `add_arguments(parser)` and `run(args) -> int`, and is light to import:
torch, transformers, trl and datasets are imported inside `run`, so `--help` of every command answers at once
and the `data` commands never load torch. Bad input is a `UsageError` (errors.py), raised by the commands'
input checks with a message naming the file, record, flag or value at fault and the fix: the dispatcher prints
it as `sharegpt4v COMMAND: error: MESSAGE` on stderr and exits with 2 (argparse's code for a usage error).
`SHAREGPT4V_DEBUG=1` lets it through with its traceback. Any other exception (from transformers, trl,
datasets, torch, ... or a bug of ours) keeps its traceback: there, the context is the useful part.
"""

import argparse
import importlib
import os
import sys

from . import __version__
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
    module = importlib.import_module(COMMANDS[name][0])
    sub = argparse.ArgumentParser(prog=f"sharegpt4v {name}", description=COMMANDS[name][1])
    module.add_arguments(sub)
    args = sub.parse_args(argv[1:])
    try:
        return int(module.run(args) or 0)
    except UsageError as error:
        if os.environ.get("SHAREGPT4V_DEBUG", "") not in ("", "0"):
            raise
        print(f"sharegpt4v {name}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
