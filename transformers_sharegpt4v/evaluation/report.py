"""The report of an evaluation run: each task's metrics from lmms-eval's results next to the number the
paper reports for ShareGPT4V-7B on that benchmark (where it reports one on the same split)."""

from __future__ import annotations

from typing import Any

from .protocol import get_benchmark

__all__ = ["report_rows", "format_report"]


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
                }
            )
    return rows


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
