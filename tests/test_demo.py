"""`sharegpt4v demo --fast`: the whole miniature runs end to end (world, corpora, init, both stages through
recipes, reload with remote code, captioning engine, QA, report). The fast configuration trains a few
steps only, so it checks the plumbing and the report, not the learning (the full run does that)."""

import json
import os
import subprocess
import sys

import pytest
from PIL import Image

from transformers_sharegpt4v.demo.pipeline import DemoSettings, _recipe
from transformers_sharegpt4v.training.recipe import check_recipe_keys


def test_demo_recipes_are_valid_training_recipes(tmp_path):
    import yaml

    settings = DemoSettings(output=tmp_path)
    for stage in ("pretrain", "finetune"):
        path = tmp_path / f"{stage}.yaml"
        path.write_text(yaml.safe_dump(_recipe(settings, stage, tmp_path / "m", tmp_path / "d", tmp_path / "o", 0)))
        assert check_recipe_keys(path)["stage"] == stage


def test_fast_demo_end_to_end(tmp_path):
    out = tmp_path / "demo"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "transformers_sharegpt4v.cli", "demo", "--output", str(out), "--fast", "--no-progress"],
        capture_output=True, text=True, env=env, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    summary = result.stdout.strip().splitlines()[-1]
    assert summary.startswith("demo: caption F1 detailed") and "report" in summary

    numbers = json.loads((out / "results.json").read_text())
    settings = numbers["settings"]
    for variant in ("short", "detailed"):
        (run,) = numbers["results"][variant]
        assert 0.0 <= run["caption_f1"] <= 1.0 and 0.0 <= run["qa_accuracy"] <= 1.0
        assert len(run["captions"]) == settings["n_test"]
        # the final model is a checkpoint a Hub user could load: code files and auto_map travel with it
        model_dir = out / "runs" / "seed0" / variant / "finetune"
        assert {"modeling_sharegpt4v.py", "processing_sharegpt4v.py"} <= {p.name for p in model_dir.iterdir()}
        assert "AutoModelForCausalLM" in json.loads((model_dir / "config.json").read_text())["auto_map"]
        # `sharegpt4v train` keeps the loss log beside the model: the report's training curves come from it
        history = json.loads((model_dir / "trainer_state.json").read_text())["log_history"]
        assert any("loss" in entry for entry in history)
    assert 0.0 < numbers["baselines"]["caption_f1_chance"] < 1.0

    # the corpora are real ShareGPT4V JSON, the datasets were built from them, the recipes were kept
    short = json.loads((out / "corpora" / "pretrain_short.json").read_text())
    assert len(short) == settings["n_pretrain"] and short[0]["conversations"][0]["value"].startswith("<image>\n")
    assert (out / "datasets" / "finetune" / "report.json").is_file()
    assert len(list((out / "recipes").glob("*.yaml"))) == 4
    report = (out / "report.md").read_text()
    assert "| short |" in report and "| detailed |" in report and "chance" in report
    for png in ("scores.png", "samples.png"):
        with Image.open(out / png) as image:
            assert image.size[0] > 300


@pytest.mark.parametrize("bad", [{"num_seeds": 0}])
def test_settings_reject_nonsense(bad, tmp_path):
    from dataclasses import replace

    from transformers_sharegpt4v.demo.pipeline import run_demo

    with pytest.raises(ValueError, match="num_seeds"):
        run_demo(replace(DemoSettings(output=tmp_path), **bad))
