"""The report of an evaluation run: each task's metrics from lmms-eval's results next to the number the
paper reports for ShareGPT4V-7B on that benchmark (where it reports one on the same split)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .protocol import get_benchmark
from .submission import SUBMISSION_FILES

__all__ = ["format_markdown", "format_report", "report_rows"]


def report_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per task and metric: task, benchmark, metric, value, paper (None when not comparable), samples.

    `results` is what `lmms_eval.evaluator.simple_evaluate` returns (metrics under `results[task]` as
    "metric,filter", sample counts under `n-samples`)."""
    rows = []
    for task, metrics in results.get("results", {}).items():
        try:
            benchmark = get_benchmark(task)
        except ValueError:
            benchmark = None
        samples = results.get("n-samples", {}).get(task, {})
        for key, value in metrics.items():
            if "," not in key or "_stderr" in key.split(",")[0] or not isinstance(value, (int, float)):
                continue
            metric = key.split(",")[0]
            rows.append(
                {
                    "task": task,
                    "benchmark": benchmark.title if benchmark else task,
                    "metric": metric,
                    "value": float(value),
                    "paper": benchmark.metrics.get(metric) if benchmark else None,
                    "samples": samples.get("effective", samples.get("original")),
                    "total": samples.get("original"),
                    "scored_by": benchmark.scored_by if benchmark else "local",
                    "note": _note(benchmark, metric),
                }
            )
    return rows


def _note(benchmark: Any, metric: str) -> str:
    if benchmark is None:
        return ""
    if metric == "submission":
        return f"submit submissions/{SUBMISSION_FILES[benchmark.name]} to the {benchmark.scored_by}"
    if benchmark.submits:  # MMBench dev, scored here: the paper's number is the test split's
        return "dev split scored here; the paper reports the test split (server)"
    return ""


def format_markdown(rows: list[dict[str, Any]], submissions: str | Path | None = None) -> str:
    """The markdown table of `report_rows`, beside the paper's ShareGPT4V-7B numbers. A `submission` row's value is
    the number of answers written: its score comes from the judge or server that the note names."""
    lines = [
        "| benchmark | metric | this run | paper (ShareGPT4V-7B) | samples | scored by / to do |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    for row in rows:
        paper = f"{row['paper']:.1f}" if row["paper"] is not None else "-"
        samples = "?" if row["samples"] is None else str(row["samples"])
        if row["total"] is not None and row["samples"] is not None and row["samples"] < row["total"]:
            samples += f" of {row['total']}"
        if row["metric"] == "submission":
            value = f"{int(row['value'])} answers"
            note = row["note"]
            if submissions is not None:
                note = note.replace("submissions/", f"{Path(submissions)}/", 1)
        else:
            value, note = f"{row['value']:.2f}", row["note"] or "local"
        lines.append(f"| {row['benchmark']} | {row['metric']} | {value} | {paper} | {samples} | {note} |")
    return "\n".join(lines)


def format_report(rows: list[dict[str, Any]]) -> str:
    """A plain-text table of `report_rows`; a run on part of a benchmark (`--limit`) says so."""
    header = f"{'task':<26} {'metric':<18} {'value':>9} {'paper 7B':>9} {'samples':>9}"
    lines = [header, "-" * len(header)]
    for row in rows:
        paper = f"{row['paper']:.1f}" if row["paper"] is not None else "-"
        samples = "?" if row["samples"] is None else str(row["samples"])
        if row["total"] is not None and row["samples"] is not None and row["samples"] < row["total"]:
            samples += f"/{row['total']}"
        lines.append(f"{row['task']:<26} {row['metric']:<18} {row['value']:>9.2f} {paper:>9} {samples:>9}")
    return "\n".join(lines)
