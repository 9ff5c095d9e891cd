"""The `sharegpt4v` command. Thin: it picks the subcommand and hands the rest of argv to the module that
implements it, so `sharegpt4v --help` stays fast and each feature keeps its options beside its code.

Each module listed in COMMANDS exposes `add_arguments(parser)` and `run(args) -> int`. Bad input is a
`ValueError` (or `FileNotFoundError`) raised by this package, its message naming the file, record, key or
option at fault: the dispatcher prints it as
`sharegpt4v COMMAND: error: MESSAGE` on stderr and exits with 2 (argparse's code for a usage error).
`SHAREGPT4V_DEBUG=1` lets the exception through with its traceback; so does any error raised inside
another library (transformers, trl, datasets, torch, ...), where the traceback is the useful part.
"""

import argparse
import importlib
import os
import sys

# subcommand -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "convert": ("transformers_sharegpt4v.conversion", "convert a released ShareGPT4V/LLaVA or llava-hf checkpoint"),
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
    parser = argparse.ArgumentParser(prog="sharegpt4v", description="ShareGPT4V on the Hugging Face stack.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        subparsers.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv or argv[0] not in COMMANDS:
        parser.print_help() if not argv or argv[0] in ("-h", "--help") else parser.parse_args(argv)
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    name = argv[0]
    module = importlib.import_module(COMMANDS[name][0])
    sub = argparse.ArgumentParser(prog=f"sharegpt4v {name}", description=COMMANDS[name][1])
    module.add_arguments(sub)
    args = sub.parse_args(argv[1:])
    try:
        return int(module.run(args) or 0)
    except (ValueError, FileNotFoundError) as error:
        if os.environ.get("SHAREGPT4V_DEBUG") or not _raised_here(error):
            raise
        print(f"sharegpt4v {name}: error: {error}", file=sys.stderr)
        return 2


def _raised_here(error: BaseException) -> bool:
    """True when the innermost Python frame of the traceback is this package's code: one of its input checks
    (or a file it opened). Errors from inside transformers, trl, datasets, torch, json, ... keep their
    traceback: they may be bugs, and their context matters."""
    traceback = error.__traceback__
    if traceback is None:
        return False
    while traceback.tb_next is not None:
        traceback = traceback.tb_next
    package = os.path.dirname(os.path.abspath(__file__))
    return os.path.abspath(traceback.tb_frame.f_code.co_filename).startswith(package + os.sep)


if __name__ == "__main__":
    sys.exit(main())
