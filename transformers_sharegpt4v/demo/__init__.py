"""`sharegpt4v demo`: ShareGPT4V in miniature, end to end on a CPU (see `pipeline.py`)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class DemoArguments:
    """`sharegpt4v demo [--fast]`."""

    output: str = field(
        default="outputs/sharegpt4v-demo",
        metadata={
            "help": "where everything is written (default: outputs/sharegpt4v-demo, which .gitignore covers)",
            "metavar": "DIR",
        },
    )
    seed: int = field(default=0, metadata={"help": "seed of the world and of the first run"})
    num_seeds: int | None = field(default=None, metadata={"help": "training seeds per variant (default 3)"})
    jobs: int | None = field(default=None, metadata={"help": "training processes at once (default 2)"})
    fast: bool = field(
        default=False,
        metadata={
            "help": "a few steps on a few scenes: checks that every step runs (about a minute); its scores mean nothing"
        },
    )
    progress: bool = field(default=True, metadata={"help": "progress bars (--no-progress: none)"})


ARGUMENTS = DemoArguments


def run(args: DemoArguments) -> int:
    import sys

    from .pipeline import run_demo, settings_from_args, start_line, summary_line

    settings = settings_from_args(args)
    print(start_line(settings), file=sys.stderr, flush=True)
    numbers = run_demo(settings)
    print(summary_line(numbers))
    return 0


__all__ = ["ARGUMENTS", "DemoArguments", "run"]
