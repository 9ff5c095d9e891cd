"""The paper's benchmarks on lmms-eval: the `sharegpt4v` lmms-eval model (`lmms_eval_model`, registered
through the entry point group `lmms_eval.models`), the paper's protocol per benchmark (`protocol`,
`scoring`), local task YAMLs over data on disk (`tasks`), the report (`report`) and `sharegpt4v eval` (`cli`).

Importing this package does not import lmms-eval: only `lmms_eval_model` and `cli.run` need it
(`pip install "transformers-sharegpt4v[eval]"`).
"""

from .._lazy import lazy_attributes

# Heavy imports (torch, transformers) happen when a name is first used: `sharegpt4v eval --help` stays fast.
_NAMES = {
    "EvalModel": ".model",
    "GenerationRequest": ".model",
    "BENCHMARKS": ".protocol",
    "Benchmark": ".protocol",
    "build_prompt": ".protocol",
    "get_benchmark": ".protocol",
    "format_report": ".report",
    "report_rows": ".report",
    "find_data": ".tasks",
    "write_tasks": ".tasks",
}
__getattr__ = lazy_attributes(__name__, _NAMES)

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
