"""`sharegpt4v demo`: ShareGPT4V in miniature, end to end on a CPU (see `pipeline.py`)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--output",
        default="outputs/sharegpt4v-demo",
        metavar="DIR",
        help="where everything is written (default: outputs/sharegpt4v-demo, which .gitignore covers)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the world and of the first run")
    parser.add_argument("--num-seeds", type=int, default=None, help="training seeds per variant (default 3)")
    parser.add_argument("--jobs", type=int, default=None, help="training processes at once (default 2)")
    parser.add_argument(
        "--fast",
        action="store_true",
        help="a few steps on a few scenes: checks that every step runs (about a minute); its scores mean nothing",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    import sys

    from .pipeline import run_demo, settings_from_args, start_line, summary_line

    settings = settings_from_args(args)
    print(start_line(settings), file=sys.stderr, flush=True)
    numbers = run_demo(settings)
    print(summary_line(numbers))
    return 0


__all__ = ["add_arguments", "run"]
