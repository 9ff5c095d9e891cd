"""`sharegpt4v eval`: run the paper's benchmarks on local data through lmms-eval and report them next to the
paper's ShareGPT4V-7B numbers.

    sharegpt4v eval --model ShareGPT4V-7B --data eval_data/ --output runs/eval        # every benchmark found
    sharegpt4v eval --model ShareGPT4V-7B --data eval_data/ --tasks paper --output runs/eval  # the paper's table
    sharegpt4v eval --model ShareGPT4V-7B --data eval_data/ --tasks mme,gqa --output runs/eval --limit 20
    sharegpt4v eval --model ... --data eval_data/ --output runs/eval --tasks-only   # then lmms-eval's own CLI:
    python -m lmms_eval --model sharegpt4v --model_args pretrained=ShareGPT4V-7B \\
        --include_path runs/eval/tasks --tasks sharegpt4v_mme --batch_size 1

OUT gets `tasks/` (the task YAMLs), `results.json` (lmms-eval's results), `samples/TASK.jsonl` (each row's
answer and score), `submissions/` (the files to submit for benchmarks scored by a GPT-4 judge or an evaluation
server: LLaVA-Bench, MM-Vet, VQAv2, VizWiz, MMBench), `report.md` (the markdown table beside the paper's
ShareGPT4V-7B numbers) and `report.txt`. Any failure exits non-zero with one line (lmms-eval's own CLI exits 0
when a run fails). Needs `pip install "transformers-sharegpt4v[eval]"`.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..dtypes import DTYPE_CHOICES
from ..errors import UsageError
from .protocol import BENCHMARKS, PAPER_TASKS


@dataclass
class EvalArguments:
    """`sharegpt4v eval --model CKPT --data DIR --output DIR [--tasks paper|mme,gqa,...]`."""

    model: str = field(metadata={"help": "plugin checkpoint folder or Hub id (convert released ones)"})
    data: str = field(
        metadata={
            "help": "folder holding NAME.parquet, NAME/ (parquet files) or NAME/ (DatasetDict.save_to_disk) per "
            "benchmark"
        }
    )
    output: str = field(metadata={"help": "output folder (task YAMLs, results, samples, report)"})
    tasks: str | None = field(
        default=None,
        metadata={
            "help": "'paper' (the paper's table) or comma-separated benchmarks (default: every one with data): "
            + ", ".join(BENCHMARKS)
        },
    )
    limit: int | None = field(default=None, metadata={"help": "only the first N rows of each task (a smoke test)"})
    batch_size: int = field(default=1, metadata={"help": "questions per generate call (1: as the paper)"})
    dtype: str = field(default="auto", metadata={"help": "weights dtype", "choices": list(DTYPE_CHOICES)})
    device: str | None = field(default=None, metadata={"help": "default: cuda if available, else cpu"})
    max_new_tokens: int | None = field(
        default=None,
        metadata={"help": "override every task's token budget (a smoke test; the paper's budgets are the defaults)"},
    )
    share_prefix: bool = field(
        default=True,
        metadata={
            "help": "questions about the same image prefill the system prompt and image once (same answers); "
            "--no-share-prefix prefills every prompt whole"
        },
    )
    tasks_only: bool = field(
        default=False, metadata={"help": "write the task YAMLs and print the lmms-eval command; run nothing"}
    )


ARGUMENTS = EvalArguments


def model_args(args: EvalArguments) -> str:
    """lmms-eval's `--model_args` string of the run (it parses "key=value,..." strings)."""
    return f"pretrained={args.model},dtype={args.dtype},share_prefix={str(args.share_prefix).lower()}"


def lmms_eval_command(args: EvalArguments, tasks_dir: Path, tasks: list[str]) -> str:
    """The `python -m lmms_eval` command line that runs the same evaluation."""
    parts = ["python", "-m", "lmms_eval", "--model", "sharegpt4v", "--model_args", model_args(args)]
    parts += ["--device", args.device] if args.device else []
    parts += ["--include_path", str(tasks_dir), "--tasks", ",".join(tasks), "--batch_size", str(args.batch_size)]
    if args.limit is not None:
        parts += ["--limit", str(args.limit)]
    if args.max_new_tokens is not None:
        parts += ["--gen_kwargs", f"max_new_tokens={args.max_new_tokens}"]
    parts += ["--output_path", str(Path(args.output) / "lmms_eval"), "--log_samples"]
    return shlex.join(parts)


def _check(args: EvalArguments) -> list[str] | None:
    for name in ("limit", "batch_size", "max_new_tokens"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be a positive integer, got {value}.")
    if args.tasks is None:
        return None
    names = [name.strip() for name in args.tasks.split(",") if name.strip()]
    if not names:
        raise UsageError("--tasks is empty; name benchmarks such as mme,qbench, or paper.")
    expanded: list[str] = []
    for name in names:
        for item in PAPER_TASKS if name == "paper" else (name,):
            if item not in expanded:
                expanded.append(item)
    return expanded


def check_model_path(model: str) -> None:
    """UsageError (one line) unless `model` is a checkpoint folder or a reachable Hub id (`hub.check_model_argument`,
    the rule every command applies), or when it is a released checkpoint transformers cannot load (with the
    convert command); lmms-eval's model_args also cannot carry ',' or '='."""
    from ..captioning import check_model_format
    from ..hub import check_model_argument

    if "," in model or "=" in model:
        raise UsageError(f"--model {model!r}: lmms-eval's model_args cannot carry ',' or '=' in a path; rename it.")
    check_model_argument(model, "--model", "a plugin checkpoint folder")
    check_model_format(model)


def run(args: EvalArguments) -> int:
    """Write the tasks, evaluate, write results/samples/report and print the report."""
    from .tasks import write_tasks

    names = _check(args)
    check_model_path(args.model)
    output = Path(args.output)
    written = write_tasks(args.data, output / "tasks", names)
    command = lmms_eval_command(args, (output / "tasks").resolve(), list(written))
    if args.tasks_only:
        print(f"Wrote {len(written)} task(s) to {output / 'tasks'}. Run them with lmms-eval:\n{command}")
        return 0
    try:
        results = evaluate(args, output / "tasks", list(written))
    except (UsageError, KeyboardInterrupt):
        raise
    except Exception as error:  # one line, non-zero: lmms-eval's own CLI would print a traceback and exit 0
        if os.environ.get("SHAREGPT4V_DEBUG"):
            raise
        message = " ".join(str(error).split()) or "no message"
        print(f"sharegpt4v eval: error: the lmms-eval run failed: {type(error).__name__}: {message}", file=sys.stderr)
        return 1
    missing = [task for task in written if task not in results.get("results", {})]
    if missing:
        print(f"sharegpt4v eval: error: lmms-eval returned no results for {', '.join(missing)}.", file=sys.stderr)
        return 1
    return write_outputs(results, output, command)


def evaluate(args: EvalArguments, tasks_dir: Path, tasks: list[str]) -> dict[str, Any]:
    """lmms-eval's `simple_evaluate` with `--model sharegpt4v` (found through its entry point) on `tasks`."""
    from .compat import hide_broken_torchvision

    hide_broken_torchvision()  # see `compat`: before lmms-eval and the model import transformers' processors
    try:
        from lmms_eval.evaluator import simple_evaluate
        from lmms_eval.tasks import TaskManager
    except ImportError as error:
        raise UsageError(
            f"sharegpt4v eval runs on lmms-eval, which does not import here ({error}). Install it with "
            '`pip install "transformers-sharegpt4v[eval]"`.'
        ) from error
    results = simple_evaluate(
        model="sharegpt4v",
        model_args=model_args(args),
        tasks=tasks,
        batch_size=args.batch_size,
        device=args.device,
        limit=args.limit,
        gen_kwargs=f"max_new_tokens={args.max_new_tokens}" if args.max_new_tokens else None,
        task_manager=TaskManager("WARNING", include_path=str(tasks_dir), model_name="sharegpt4v"),
        log_samples=True,
        bootstrap_iters=0,
        verbosity="WARNING",
        # the `submission` metric writes OUTPUT/submissions/ (lmms-eval hands these args to aggregations)
        cli_args=_lmms_eval_cli_args(Path(args.output).resolve()),
    )
    if not results or not results.get("results"):
        raise RuntimeError("lmms-eval returned no results (see its log above).")
    return results


def _lmms_eval_cli_args(output: Path) -> argparse.Namespace:
    """The arguments lmms-eval's CLI would pass with `--output_path output` (its defaults for the rest: the
    evaluator reads several of them)."""
    from lmms_eval.__main__ import parse_eval_args

    argv = sys.argv
    try:
        sys.argv = ["lmms_eval", "--output_path", str(output)]
        return parse_eval_args()[1]
    finally:
        sys.argv = argv


def write_outputs(results: dict[str, Any], output: Path, command: str) -> int:
    """results.json, samples/TASK.jsonl, report.txt under `output`; print the report."""
    from .report import format_markdown, format_report, report_rows

    samples = results.pop("samples", {}) or {}
    (output / "samples").mkdir(parents=True, exist_ok=True)
    for task, rows in samples.items():
        with open(output / "samples" / f"{task}.jsonl", "w", encoding="utf-8") as handle:
            for row in rows:
                record = {
                    "doc_id": row.get("doc_id"),
                    "question": (row.get("arguments") or [None])[0],
                    "answer": (row.get("filtered_resps") or [None])[0],
                    "target": row.get("target"),
                }
                scored = next((row[k] for k in row if isinstance(row.get(k), dict) and "correct" in row[k]), None)
                if scored is not None:
                    record["correct"] = scored["correct"]
                handle.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
    (output / "results.json").write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")
    rows = report_rows(results)
    report = format_report(rows)
    (output / "report.txt").write_text(f"{report}\n\nSame run with lmms-eval's CLI:\n{command}\n", encoding="utf-8")
    (output / "report.md").write_text(format_markdown(rows, output / "submissions") + "\n", encoding="utf-8")
    print(report)
    for row in rows:
        if row["metric"] == "submission":
            print(f"{row['benchmark']}: {row['note']}")
    print(
        f"Wrote {output / 'results.json'}, {output / 'report.md'} and samples/ for {len(results['results'])} task(s)."
    )
    return 0
