"""examples/quickstart.py runs, and the tiny checkpoint it builds (`testing_utils.write_tiny_checkpoint`) is a
faithful one: its tokenizer adds BOS like LLaMA's, so the llava-hf export of it reproduces the original token ids
(convert would warn otherwise)."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "examples" / "quickstart.py"


def test_quickstart_runs_and_writes_under_outputs(tmp_path):
    result = subprocess.run(
        [sys.executable, str(QUICKSTART)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"},
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1].startswith("quickstart done: model outputs/tiny-sharegpt4v")
    assert (tmp_path / "outputs" / "tiny-sharegpt4v" / "config.json").is_file()


def test_quickstart_checkpoint_exports_to_llava_hf_with_the_original_ids(tmp_path):
    from transformers import AutoTokenizer

    from transformers_sharegpt4v import ShareGPT4VConfig
    from transformers_sharegpt4v.conversion import (
        _llava_hf_template,
        _whole_string_tokenizer,
        check_whole_string_template,
    )
    from transformers_sharegpt4v.testing_utils import write_tiny_checkpoint

    folder = write_tiny_checkpoint(tmp_path / "tiny")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert tokenizer("A chat")["input_ids"][0] == tokenizer.bos_token_id
    config = ShareGPT4VConfig.from_pretrained(folder)
    whole = _whole_string_tokenizer(tokenizer)  # what the llava-hf export ships, for the tokenizer's `legacy`
    assert check_whole_string_template(config, whole, _llava_hf_template(whole)) is None
