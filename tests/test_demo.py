"""`sharegpt4v demo --fast`: the whole miniature runs end to end (world, corpora, init, both stages through
recipes, reload with remote code, captioning engine, QA, report). The fast configuration trains a few
steps only, so it checks the plumbing and the report, not the learning (the full run does that)."""

import json
import os
import subprocess
import sys
from dataclasses import replace

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
    assert result.stdout.startswith("--fast: a few training steps only, so these scores say nothing")
    assert result.stderr.startswith(f"sharegpt4v demo: writing to {out} (")
    # nothing but the demo speaks: no transformers progress bars, no mean_resizing or DataLoader warnings
    for noise in ("Loading weights", "Writing model shards", "mean_resizing", "worker processes", "Warning"):
        assert noise not in result.stderr, result.stderr

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
    assert "--fast: a few training steps only" in report
    for png in ("scores.png", "samples.png"):
        with Image.open(out / png) as image:
            assert image.size[0] > 300


@pytest.mark.parametrize("bad, flag", [({"num_seeds": 0}, "--num-seeds"), ({"jobs": 0}, "--jobs")])
def test_settings_reject_nonsense(bad, flag, tmp_path):
    from transformers_sharegpt4v.demo.pipeline import run_demo

    with pytest.raises(ValueError, match=flag):
        run_demo(replace(DemoSettings(output=tmp_path), **bad))


def test_report_figures_hold_every_caption_in_full(tmp_path):
    """samples.png grows with its captions (nothing cut at the bottom or the right, even for an untrained
    model's one long "word"); the fast note is said in the report and the summary."""
    import random

    from PIL import ImageDraw

    from transformers_sharegpt4v.demo.pipeline import FAST, start_line, summary_line
    from transformers_sharegpt4v.demo.report import TEXT, _wrap, draw_samples, draw_scores
    from transformers_sharegpt4v.demo.world import render_scene, sample_scene

    rng = random.Random(0)
    scenes = [sample_scene(rng) for _ in range(4)]
    (tmp_path / "data" / "images").mkdir(parents=True)
    for i, scene in enumerate(scenes):
        render_scene(scene, 64).save(tmp_path / "data" / "images" / f"test_{i:05d}.png")
    long = "A small red square is at the top left and a large blue circle is at the bottom right. " * 6
    captions = {"short": [long, "." * 400, "", "a square"], "detailed": [long, long, long, "." * 90]}
    numbers = {
        "settings": {"output": str(tmp_path)},
        "fast": True,
        "seconds": 1.0,
        "baselines": {"caption_f1_chance": 0.2, "qa_prior_accuracy": 0.4},
        "results": {
            v: [{"captions": c, "caption_f1": 0.0, "qa_accuracy": 0.0, "seed": 0, "model": str(tmp_path)}]
            for v, c in captions.items()
        },
        "report": str(tmp_path / "report.md"),
    }
    image = draw_samples(numbers, {"test": scenes}, tmp_path / "samples.png")
    with Image.open(image) as picture:
        pixels = picture.convert("RGB").load()
        width, height = picture.size
        white = (255, 255, 255)
        assert all(pixels[x, y] == white for x in range(width) for y in range(height - 12, height))  # bottom
        assert all(pixels[x, y] == white for x in range(width - 12, width) for y in range(height))  # right
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    lines = _wrap(measure, "detailed: " + long + "." * 300, TEXT, 200)
    assert all(measure.textlength(line, font=TEXT) <= 200 for line in lines)
    assert "".join(lines).replace(" ", "") == ("detailed: " + long + "." * 300).replace(" ", "")
    draw_scores(numbers, {"pretrain": {}, "finetune": {}}, tmp_path / "scores.png")

    assert summary_line(numbers).splitlines()[0].startswith("--fast: a few training steps only")
    assert len(summary_line({**numbers, "fast": False}).splitlines()) == 1
    settings = replace(DemoSettings(output=tmp_path / "out"), **FAST)
    assert str(tmp_path / "out") in start_line(settings) and "minute" in start_line(settings)
    assert DemoSettings().output.parts[0] == "outputs"  # the default is where .gitignore looks


def test_training_progress_is_read_from_the_trainer_log(tmp_path):
    from transformers_sharegpt4v.demo.pipeline import _logged_steps

    log = tmp_path / "pretrain.log"
    assert _logged_steps(log, 10, 500) == 0  # not started yet
    log.write_text("loading...\n" + "{'loss': '2.1', 'grad_norm': '1.0', 'epoch': '0.1'}\n" * 3)
    assert _logged_steps(log, 10, 500) == 30
    assert _logged_steps(log, 10, 25) == 25
