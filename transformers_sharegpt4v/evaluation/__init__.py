"""The paper's benchmarks on lmms-eval: the `sharegpt4v` lmms-eval model (`lmms_eval_model`, registered
through the entry point group `lmms_eval.models`), the paper's protocol per benchmark (`protocol`,
`scoring`), local task YAMLs over data on disk (`tasks`), the report (`report`) and `sharegpt4v eval` (`cli`).

Importing this package does not import lmms-eval: only `lmms_eval_model` and `cli.run` need it
(`pip install "transformers-sharegpt4v[eval]"`).
"""

from .model import EvalModel, GenerationRequest
from .protocol import BENCHMARKS, Benchmark, build_prompt, get_benchmark
from .report import format_report, report_rows
from .tasks import find_data, write_tasks

__all__ = [
    "BENCHMARKS",
    "Benchmark",
    "EvalModel",
    "GenerationRequest",
    "build_prompt",
    "find_data",
    "format_report",
    "get_benchmark",
    "report_rows",
    "write_tasks",
]
