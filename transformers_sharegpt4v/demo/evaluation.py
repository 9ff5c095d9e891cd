"""The demo's evaluation: held-out scenes captioned with the captioning engine and scored against their ground
truth, held-out questions answered by the reloaded model, and the two baselines (chance captions, answer prior)."""

from __future__ import annotations

import json
import os
import random
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

from ..tokenization_sharegpt4v import IMAGE_TOKEN
from .world import CAPTION_PROMPT, SHAPES, SHORT_ANSWER, Scene, caption_scores, chance_f1, f1


def _normalise(answer: str) -> str:
    return answer.strip().strip(".").strip().lower()


def answer_questions(model_dir: Path, data: Path, questions: list[dict]) -> list[str]:
    """Greedy short answers with the reloaded model (remote code, as a Hub user would load it); the questions'
    images are under `data`."""
    import torch
    from PIL import Image
    from transformers import AutoModelForCausalLM, AutoProcessor

    model = AutoModelForCausalLM.from_pretrained(model_dir, trust_remote_code=True).eval()
    processor = AutoProcessor.from_pretrained(model_dir, trust_remote_code=True)
    answers = []
    for start in range(0, len(questions), 32):
        batch = questions[start : start + 32]
        prompts = [
            processor.apply_chat_template(
                [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": r["conversations"][0]["value"].split("\n", 1)[1]}]}],
                add_generation_prompt=True,
            )
            for r in batch
        ]  # fmt: skip
        images = [Image.open(data / r["image"]).convert("RGB") for r in batch]
        inputs = processor(images=images, text=prompts, padding=True, padding_side="left", return_tensors="pt")
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=8, do_sample=False)
        answers += processor.batch_decode(out[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    return answers


def caption_test_scenes(model_dir: Path, data: Path, count: int) -> tuple[list[str], str]:
    """Caption the `count` held-out images (data/images/test_*.png, linked into data/test_images once) with the
    captioning engine, as `sharegpt4v caption` would; returns the captions in order and the run's summary."""
    import pandas as pd

    from ..captioning import caption_images

    captions_dir = model_dir.parent / "test_captions"
    test_images = data / "test_images"
    if not test_images.exists():
        test_images.mkdir(parents=True)
        for i in range(count):
            os.link(data / "images" / f"test_{i:05d}.png", test_images / f"test_{i:05d}.png")
    summary = caption_images(
        str(model_dir), test_images, captions_dir, prompt=CAPTION_PROMPT, max_new_tokens=80,
        batch_size=32, num_workers=0, progress=False,
    )  # fmt: skip
    rows = pd.concat(pd.read_parquet(p) for p in sorted((captions_dir / "data").glob("*.parquet")))
    by_image = dict(zip(rows["image"], rows["caption"], strict=False))
    return [by_image[f"test_{i:05d}.png"] for i in range(count)], summary.line()


def evaluate(model_dir: Path, data: Path, world: dict[str, list[Scene]], questions: list[dict]) -> dict[str, Any]:
    """Caption the held-out scenes with the captioning engine and answer the held-out questions."""
    captions, summary = caption_test_scenes(model_dir, data, len(world["test"]))
    scores = [caption_scores(c, s) for c, s in zip(captions, world["test"], strict=False)]
    answers = answer_questions(model_dir, data, questions)
    truth = [r["conversations"][1]["value"] for r in questions]
    correct = [_normalise(a) == _normalise(t) for a, t in zip(answers, truth, strict=False)]
    return {
        "caption_precision": statistics.mean(p for p, _ in scores),
        "caption_recall": statistics.mean(r for _, r in scores),
        "caption_f1": statistics.mean(f1(p, r) for p, r in scores),
        "qa_accuracy": sum(correct) / len(correct),
        "captions": captions,
        "answers": answers,
        "caption_summary": summary,
    }


def _question_form(question: str) -> str:
    """The question with its object named generically."""
    first_line = question.replace(IMAGE_TOKEN + "\n", "").split("\n")[0]
    return " ".join("X" if w.strip("?") in SHAPES else w for w in first_line.split())


def baselines(world: dict[str, list[Scene]], corpora: dict[str, Path], seed: int) -> dict[str, float]:
    """Chance caption F1 (describing a random scene) and the QA prior (most frequent answer per question form)."""
    prior: dict[str, Counter] = {}
    for record in json.loads(corpora["finetune"].read_text()):
        turns = record["conversations"]
        for q, a in zip(turns[::2], turns[1::2], strict=False):
            if SHORT_ANSWER in q["value"]:
                prior.setdefault(_question_form(q["value"]), Counter())[_normalise(a["value"])] += 1
    tests = json.loads(corpora["test_questions"].read_text())
    hits = 0
    for record in tests:
        counter = prior.get(_question_form(record["conversations"][0]["value"]))
        guess = counter.most_common(1)[0][0] if counter else ""
        hits += guess == _normalise(record["conversations"][1]["value"])
    return {
        "caption_f1_chance": chance_f1(world["test"], random.Random(seed + 7)),
        "qa_prior_accuracy": hits / len(tests),
    }
