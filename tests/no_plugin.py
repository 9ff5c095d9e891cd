"""Run code the way a machine without the plugin would: `transformers_sharegpt4v` cannot be imported.

A `sitecustomize.py` first on PYTHONPATH puts an import blocker at the front of `sys.meta_path` in every
interpreter the subprocess starts, console scripts (`trl sft`, `sharegpt4v`) included; an editable install's
finder, which sits behind it, is never asked. Scripts run through `run_without_plugin` first prove that the
import fails (a test that could import the plugin would prove nothing) and end by checking that nothing
loaded it on the way.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

BLOCKER = """
import sys


class _BlockPlugin:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "transformers_sharegpt4v":
            raise ImportError(f"{name} is blocked in this test (no plugin on this machine)")
        return None


sys.meta_path.insert(0, _BlockPlugin())
"""

PROOF = """
import sys
try:
    import transformers_sharegpt4v  # noqa: F401
except ImportError:
    pass
else:
    raise SystemExit("the plugin is importable: the test would prove nothing")
"""

EPILOGUE = '\nassert "transformers_sharegpt4v" not in sys.modules, "something imported the plugin"\n'


def blocker_dir(folder: str | os.PathLike) -> Path:
    """`folder/no_plugin/sitecustomize.py` (created once); put the returned folder on PYTHONPATH."""
    path = Path(folder) / "no_plugin"
    path.mkdir(parents=True, exist_ok=True)
    (path / "sitecustomize.py").write_text(BLOCKER)
    return path


def no_plugin_env(folder: str | os.PathLike, **extra: str) -> dict[str, str]:
    """This process's environment, offline, one thread, with the blocker as the only PYTHONPATH entry and
    a private `HF_MODULES_CACHE` (where transformers copies remote code) under `folder`."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(
        PYTHONPATH=str(blocker_dir(folder)),
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        OMP_NUM_THREADS="1",
        HF_MODULES_CACHE=str(Path(folder) / "hf_modules"),
    )
    env.update(extra)
    return env


def script(code: str) -> str:
    """`code` (dedented) between the proof that the plugin cannot be imported and the check that nothing did."""
    return PROOF + textwrap.dedent(code) + EPILOGUE


def run_without_plugin(
    code_or_argv: str | Sequence[str],
    cwd: str | os.PathLike,
    *,
    timeout: float = 600,
    check: bool = True,
    **extra_env: str,
) -> subprocess.CompletedProcess:
    """Run python code (a string, wrapped by `script`) or an argv (a sequence) without the plugin, in `cwd`.
    With `check` (default) a non-zero exit fails the test with the end of stderr."""
    argv = [sys.executable, "-c", script(code_or_argv)] if isinstance(code_or_argv, str) else list(code_or_argv)
    result = subprocess.run(
        argv, cwd=cwd, env=no_plugin_env(cwd, **extra_env), capture_output=True, text=True, timeout=timeout
    )
    if check:
        assert result.returncode == 0, f"exit {result.returncode}\n{result.stderr[-5000:]}"
    return result
