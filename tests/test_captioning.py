"""Captioning engine: outputs against one-image-at-a-time `generate`, exactly-once resume after kill -9,
errors.jsonl, the run.json guard, the ShareGPT4V-PT export, degenerate detection and retry, sources, and two
CPU processes whose union equals the one-process corpus."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from conftest import FIXTURE_IMAGES, tiny_config_kwargs

from transformers_sharegpt4v.captioning import caption_images, export_to_json, list_source, load_captioner
from transformers_sharegpt4v.captioning.engine import PRESETS, CaptionEngine, GenerationSettings
from transformers_sharegpt4v.degenerate import degenerate_rows, find_repetition, is_degenerate

PROMPT = PRESETS["detailed"][0]
MAX_NEW = 24


# A second end token: the tiny model's greedy captions of some images contain it (they stop: finish_reason
# "eos"), the others run to max_new_tokens ("length"); see test_rows_match_one_image_at_a_time_generate.
SECOND_EOS = "\u2581intelligence"


@pytest.fixture(scope="session")
def captioner_dir(llama_tokenizer_dir, tmp_path_factory) -> Path:
    """A saved tiny ShareGPT4V model + processor (tokenizer with <image> = 700, <pad> = 701); its generation
    config ends captions at </s> or at SECOND_EOS."""
    from transformers import LlamaTokenizer

    from transformers_sharegpt4v import ShareGPT4VConfig, ShareGPT4VForCausalLM, ShareGPT4VProcessor

    folder = tmp_path_factory.mktemp("captioner")
    tokenizer = LlamaTokenizer.from_pretrained(llama_tokenizer_dir)
    ShareGPT4VProcessor.prepare_tokenizer(tokenizer)
    config = ShareGPT4VConfig(**tiny_config_kwargs())
    torch.manual_seed(0)
    model = ShareGPT4VForCausalLM(config)
    second = tokenizer.convert_tokens_to_ids(SECOND_EOS)
    assert second != tokenizer.unk_token_id
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, second]
    ShareGPT4VProcessor.from_model_config(config, tokenizer).save_pretrained(folder)
    model.save_pretrained(folder)
    return folder


GOOD = [
    "coco_dog_000000319154.jpg",
    "coco_twocat_000000039769.jpg",
    "extreme_ironing.jpg",
    "waterview.jpg",
    "more/dog.jpg",
    "more/deeper/cats.jpg",
]
BAD = {"broken.png": "UnidentifiedImageError", "more/truncated.jpg": "truncated"}


@pytest.fixture(scope="session")
def image_dir(tmp_path_factory) -> Path:
    """6 readable images (2 in subfolders), a non-image .png, a truncated .jpg and a hidden file."""
    root = tmp_path_factory.mktemp("images")
    for name in GOOD[:4]:
        shutil.copy(FIXTURE_IMAGES / name, root / name)
    (root / "more" / "deeper").mkdir(parents=True)
    shutil.copy(FIXTURE_IMAGES / "coco_dog_000000319154.jpg", root / "more" / "dog.jpg")
    shutil.copy(FIXTURE_IMAGES / "coco_twocat_000000039769.jpg", root / "more" / "deeper" / "cats.jpg")
    (root / "broken.png").write_bytes(b"this is not an image")
    data = (FIXTURE_IMAGES / "extreme_ironing.jpg").read_bytes()
    (root / "more" / "truncated.jpg").write_bytes(data[: len(data) // 3])
    (root / ".hidden.jpg").write_bytes(data)
    (root / "notes.txt").write_text("not an image")
    return root


def reference_captions(model_dir: Path, root: Path, keys: list[str], settings: GenerationSettings) -> dict:
    """Independent computation: the processor on each file path, one `generate` per image."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    import transformers_sharegpt4v  # noqa: F401

    model = AutoModelForImageTextToText.from_pretrained(model_dir).eval()
    processor = AutoProcessor.from_pretrained(model_dir)
    text = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": PROMPT}]}],
        add_generation_prompt=True,
    )
    out = {}
    for key in keys:
        inputs = processor(images=[str(root / key)], text=text, return_tensors="pt")
        with torch.no_grad():
            ids = model.generate(
                **inputs,
                max_new_tokens=settings.max_new_tokens,
                do_sample=False,
                num_beams=settings.num_beams,
                repetition_penalty=settings.repetition_penalty,
                no_repeat_ngram_size=settings.no_repeat_ngram_size,
                pad_token_id=processor.tokenizer.pad_token_id,
            )[0, inputs["input_ids"].shape[1] :].tolist()
        eos = model.generation_config.eos_token_id
        eos = set(eos) if isinstance(eos, list) else {eos}
        n = next((i for i, token in enumerate(ids) if token in eos), len(ids))
        out[key] = {
            "caption": processor.tokenizer.decode(ids[:n], skip_special_tokens=True).strip(),
            "num_tokens": n,
            "finish_reason": "eos" if n < len(ids) else "length",
            "degenerate": brute_force_loop(ids[:n]),
        }
    return out


def load_rows(output: Path) -> list[dict]:
    from datasets import load_dataset

    return load_dataset(str(output), split="train").to_list()


@pytest.fixture(scope="module")
def single_run(captioner_dir, image_dir, tmp_path_factory):
    output = tmp_path_factory.mktemp("single") / "out"
    summary = caption_images(
        str(captioner_dir), image_dir, output, max_new_tokens=MAX_NEW, batch_size=4, num_workers=1, progress=False
    )
    return output, summary


def test_rows_match_one_image_at_a_time_generate(single_run, captioner_dir, image_dir):
    output, summary = single_run
    rows = load_rows(output)
    assert sorted(row["image"] for row in rows) == sorted(GOOD)
    assert set(rows[0]) == {"image", "caption", "num_tokens", "finish_reason", "degenerate", "retried"}
    expected = reference_captions(captioner_dir, image_dir, GOOD, GenerationSettings(max_new_tokens=MAX_NEW))
    # the fixture exercises both sides of each column that the engine computes from the generated ids
    assert {want["finish_reason"] for want in expected.values()} == {"eos", "length"}
    assert {want["degenerate"] for want in expected.values()} == {True, False}
    assert all(want["caption"] for want in expected.values())
    for row in rows:
        want = expected[row["image"]]
        got = {name: row[name] for name in ("caption", "num_tokens", "finish_reason", "degenerate")}
        assert got == want, row["image"]
    assert (summary.done, summary.skipped, summary.failed) == (6, 0, 2)
    assert summary.degenerate == sum(row["degenerate"] for row in rows)
    assert "6 done, 0 skipped as already done, 2 failed" in summary.line()


def brute_force_loop(units, min_repeats=3, min_span=16, max_period=64) -> bool:
    """Direct reading of the rule: some phrase of p units is followed by copies of itself (the last one
    possibly cut) for at least max(min_repeats * p, min_span) units in a row."""
    n = len(units)
    for p in range(1, max_period + 1):
        for start in range(n):
            end = start + p
            while end < n and units[end] == units[end - p]:
                end += 1
            if end - start >= max(min_repeats * p, min_span) and min_repeats * p <= n:
                return True
    return False


def test_run_json_and_errors(single_run, image_dir):
    output, _ = single_run
    run = json.loads((output / "run.json").read_text())
    assert run["prompt"] == PROMPT
    assert run["generation"] == {
        "max_new_tokens": MAX_NEW,
        "num_beams": 1,
        "do_sample": False,
        "repetition_penalty": 1.0,
        "no_repeat_ngram_size": 0,
    }
    errors = [json.loads(line) for line in (output / "errors.jsonl").read_text().splitlines()]
    assert sorted(e["image"] for e in errors) == sorted(BAD)
    for error in errors:
        assert BAD[error["image"]] in error["error"]


def test_rerun_skips_everything_and_refuses_changed_settings(single_run, captioner_dir, image_dir, tmp_path):
    output, _ = single_run
    before = sorted(p.name for p in (output / "data").iterdir())
    summary = caption_images(
        str(captioner_dir), image_dir, output, max_new_tokens=MAX_NEW, batch_size=4, num_workers=0, progress=False
    )
    assert (summary.done, summary.skipped, summary.failed) == (0, 6, 2)  # failed images are tried again
    assert sorted(p.name for p in (output / "data").iterdir()) == before
    with pytest.raises(ValueError, match=r"prompt: recorded 'Analyze.*now 'Describe it\.'.*new --output"):
        caption_images(str(captioner_dir), image_dir, output, prompt="Describe it.", max_new_tokens=MAX_NEW)
    other_model = tmp_path / "other"
    shutil.copytree(captioner_dir, other_model)
    with pytest.raises(ValueError, match=r"model: recorded"):
        caption_images(str(other_model), image_dir, output, max_new_tokens=MAX_NEW)
    with pytest.raises(ValueError, match=r"generation: recorded"):
        caption_images(str(captioner_dir), image_dir, output, max_new_tokens=MAX_NEW + 1)
    # the CLI prints the refusal and exits with status 2
    result = subprocess.run(
        [sys.executable, "-m", "transformers_sharegpt4v.cli", "caption", "--model", str(captioner_dir)]
        + ["--images", str(image_dir), "--output", str(output), "--preset", "short"],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 2, result.stderr
    assert "already holds captions made with other settings" in result.stderr and not result.stdout


def test_limit_takes_the_first_images_of_the_listing(captioner_dir, image_dir, tmp_path, single_run):
    output = tmp_path / "out"
    summary = caption_images(
        str(captioner_dir), image_dir, output, max_new_tokens=MAX_NEW, limit=3, num_workers=0, progress=False
    )
    listing = list_source(image_dir).keys
    assert listing[:3] == ["broken.png", "coco_dog_000000319154.jpg", "coco_twocat_000000039769.jpg"]
    assert (summary.done, summary.failed) == (2, 1)
    by_folder = {row["image"]: row for row in load_rows(single_run[0])}
    assert {row["image"]: row for row in load_rows(output)} == {key: by_folder[key] for key in listing[1:3]}


def test_export_json(single_run, image_dir, tmp_path):
    output, _ = single_run
    rows = {row["image"]: row for row in load_rows(output)}
    path = tmp_path / "corpus" / "pt.json"
    written, left_out, root = export_to_json(output, path, include_degenerate=True)
    records = json.loads(path.read_text())
    assert (written, left_out, root) == (6, 0, str(image_dir.resolve()))
    assert [r["image"] for r in records] == sorted(GOOD)
    for record in records:
        assert record == {
            "id": record["image"],
            "image": record["image"],
            "conversations": [
                {"from": "human", "value": "<image>\n" + PROMPT},
                {"from": "gpt", "value": rows[record["image"]]["caption"]},
            ],
        }
    from transformers_sharegpt4v.corpora.records import check_record, parse_record

    for record in records:  # valid training records for the corpora package
        check_record(parse_record(record))
    written, left_out, _ = export_to_json(output, path)
    kept = [r["image"] for r in json.loads(path.read_text())]
    assert kept == sorted(key for key, row in rows.items() if not row["degenerate"])
    assert left_out == sum(row["degenerate"] for row in rows.values())
    assert not list(path.parent.glob(".*tmp"))


def test_kill_9_then_resume_gives_every_image_exactly_once(captioner_dir, tmp_path):
    root = tmp_path / "many"
    root.mkdir()
    names = sorted(FIXTURE_IMAGES.glob("*.jpg"))
    for copy in range(4):
        for path in names:
            shutil.copy(path, root / f"{copy}_{path.name}")
    keys = sorted(p.name for p in root.iterdir())
    output = tmp_path / "out"
    command = [sys.executable, "-m", "transformers_sharegpt4v.cli", "caption", "--model", str(captioner_dir)]
    command += ["--images", str(root), "--output", str(output), "--max-new-tokens", "48", "--batch-size", "1"]
    command += ["--num-workers", "1", "--no-progress", "--rows-per-shard", "3"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    committed = 0
    deadline = time.time() + 240
    while committed < 4 and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
        committed = sum(pq.read_metadata(p).num_rows for p in (output / "data").glob("*.parquet"))
    assert process.poll() is None, "the run finished before it could be killed; make it longer"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    partial = [row["image"] for row in _read_shards(output)]
    assert 4 <= len(partial) < len(keys) and len(partial) == len(set(partial))

    result = subprocess.run(command, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert f"{len(keys) - len(partial)} done, {len(partial)} skipped as already done, 0 failed" in result.stdout
    rows = load_rows(output)
    assert sorted(row["image"] for row in rows) == keys  # every image exactly once
    assert not list((output / "data").glob(".*"))  # no leftover temporary file


def _read_shards(output: Path) -> list[dict]:
    rows = []
    for shard in sorted((output / "data").glob("*.parquet")):
        rows += pq.read_table(shard).to_pylist()
    return rows


def test_degenerate_rule_on_text():
    assert find_repetition(("the cat sat on the mat " * 2).split()) is None  # said twice: fine
    start, period, repeats = find_repetition(("a photo of " + "a red car , " * 5).split())
    assert (period, repeats) == (4, 5.0)
    assert is_degenerate("There is a dog, " + "and a dog, " * 6)
    assert is_degenerate("%" * 16) and not is_degenerate("%" * 15)
    assert not is_degenerate(
        "The image shows a man ironing clothes on the back of a yellow taxi in a busy city street, with cars, "
        "people and buildings around. The man wears a yellow shirt; the taxi drives on the street."
    )


def test_degenerate_rows_matches_brute_force():
    rng = np.random.default_rng(0)
    rows, lengths, expected = [], [], []
    for case in range(60):
        total = 80
        ids = rng.integers(0, 50, size=total)
        if case % 2:
            period = int(rng.integers(1, 12))
            repeats = int(rng.integers(2, 6))
            start = int(rng.integers(0, 20))
            phrase = rng.integers(0, 50, size=period)
            loop = np.tile(phrase, repeats + 1)[: period * repeats + int(rng.integers(0, period))]
            ids[start : start + len(loop)] = loop[: total - start]
        length = int(rng.integers(20, total + 1))
        rows.append(ids)
        lengths.append(length)
        expected.append(brute_force_loop(ids[:length].tolist()))
    flags = degenerate_rows(torch.tensor(np.stack(rows)), torch.tensor(lengths))
    assert flags.tolist() == expected
    assert 5 < sum(expected) < 55  # both kinds present


def test_retry_degenerate_new_and_committed_rows(captioner_dir, image_dir, tmp_path):
    output = tmp_path / "out"
    first = caption_images(
        str(captioner_dir), image_dir, output, max_new_tokens=MAX_NEW, num_workers=0, progress=False
    )
    flagged = sorted(row["image"] for row in load_rows(output) if row["degenerate"])
    assert first.degenerate == len(flagged) >= 1, "the tiny model should produce at least one loop"
    second = caption_images(
        str(captioner_dir),
        image_dir,
        output,
        max_new_tokens=MAX_NEW,
        num_workers=0,
        progress=False,
        retry_degenerate=True,
    )
    rows = _read_shards(output)
    assert sorted(row["image"] for row in rows) == sorted(GOOD)
    retried = sorted(row["image"] for row in rows if row["retried"])
    assert retried == flagged and second.retried == len(flagged) and second.degenerate == len(flagged)
    settings = GenerationSettings(max_new_tokens=MAX_NEW).for_retry(1.2, 6)
    assert json.loads((output / "run.json").read_text())["retry_generation"] == settings.to_dict()
    expected = reference_captions(captioner_dir, image_dir, retried, settings)
    for row in rows:
        if row["retried"]:
            assert row["caption"] == expected[row["image"]]["caption"], row["image"]
    assert second.fixed == sum(1 for row in rows if row["retried"] and not row["degenerate"])
    # a third run with the flag has nothing left to retry
    third = caption_images(
        str(captioner_dir),
        image_dir,
        output,
        max_new_tokens=MAX_NEW,
        num_workers=0,
        progress=False,
        retry_degenerate=True,
    )
    assert (third.done, third.retried) == (0, 0)


def test_engine_pixels_equal_processor_and_images_encoded_once(captioner_dir):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from transformers_sharegpt4v.captioning.loader import make_loader

    model = AutoModelForImageTextToText.from_pretrained(captioner_dir).eval()
    processor = AutoProcessor.from_pretrained(captioner_dir)
    engine = CaptionEngine(model, processor, PROMPT)
    source = list_source(FIXTURE_IMAGES)
    batch = next(iter(make_loader(source, range(len(source)), processor.image_processor, 4, 0)))
    assert batch.pixels.dtype == torch.uint8
    pixels = engine.pixel_values(batch.pixels)
    expected = processor.image_processor([str(FIXTURE_IMAGES / key) for key in batch.keys], return_tensors="pt")
    assert torch.equal(pixels, expected["pixel_values"])

    calls = []

    def count(module, args, kwargs, output):
        calls.append((args[0] if args else kwargs["pixel_values"]).shape[0])

    hook = model.model.vision_tower.register_forward_hook(count, with_kwargs=True)
    try:
        engine.generate(pixels[:3], GenerationSettings(max_new_tokens=4, num_beams=2))
    finally:
        hook.remove()
    assert calls == [3]  # one vision pass for the batch, not one per beam or per step


def test_engine_cache_choices(captioner_dir):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(captioner_dir).eval()
    processor = AutoProcessor.from_pretrained(captioner_dir)
    settings = GenerationSettings(max_new_tokens=6)
    assert CaptionEngine(model, processor, PROMPT).cache == "static"  # auto, on a CPU
    assert CaptionEngine(model, processor, PROMPT, compile=True).cache == "static"
    eager = CaptionEngine(model, processor, PROMPT).generation_config(settings)
    assert (eager.cache_implementation, eager.disable_compile, eager.compile_config) == (None, True, None)
    compiled = CaptionEngine(model, processor, PROMPT, compile=True).generation_config(settings)
    assert compiled.disable_compile is False and compiled.compile_config.mode == "default"  # no CUDA graphs on CPU
    assert compiled.compile_config._compile_all_devices
    with pytest.raises(ValueError, match="needs the static cache"):
        CaptionEngine(model, processor, PROMPT, cache="dynamic", compile=True)
    with pytest.raises(ValueError, match="'auto', 'static' or 'dynamic'"):
        CaptionEngine(model, processor, PROMPT, cache="paged")

    # the static cache is used, one object per batch shape, reset between batches; its captions are those
    # of transformers' default growing cache, also for a batch that follows another of the same size
    seen = []

    def spy(module, args, kwargs):
        seen.append(kwargs.get("past_key_values") or kwargs.get("cache"))

    files = [str(path) for path in sorted(FIXTURE_IMAGES.glob("*.jpg"))]  # 4 photos
    batches = [processor.image_processor(chunk, return_tensors="pt")["pixel_values"] for chunk in
               (files[:2], files[2:4], files[3:], files[:2])]  # fmt: skip
    results = {}
    for cache in ("static", "dynamic"):
        engine = CaptionEngine(model, processor, PROMPT, cache=cache)
        seen.clear()
        hook = model.register_forward_pre_hook(spy, with_kwargs=True)
        try:
            results[cache] = [engine.generate(engine.pixel_values(b, normalized=True), settings) for b in batches]
        finally:
            hook.remove()
        kinds = {type(c).__name__ for c in seen}
        assert kinds == {"StaticCache" if cache == "static" else "DynamicCache"}, kinds
        if cache == "static":
            per_batch = len(seen) // len(batches)  # prefill + decode steps, the same for every batch here
            objects = [id(seen[i * per_batch]) for i in range(len(batches))]
            assert objects[0] == objects[1] == objects[3] != objects[2]  # reused for 2 rows, another for 1
    assert results["static"] == results["dynamic"]
    # beam search reorders the cache; a reused static cache still gives the growing cache's captions
    beams = GenerationSettings(max_new_tokens=6, num_beams=2)
    static, dynamic = (CaptionEngine(model, processor, PROMPT, cache=c) for c in ("static", "dynamic"))
    for pixels in batches[:2]:
        pixels = static.pixel_values(pixels, normalized=True)
        assert static.generate(pixels, beams) == dynamic.generate(pixels, beams)


def test_compile_with_beams_on_cuda_warns_once(captioner_dir, caplog):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(captioner_dir).eval()
    engine = CaptionEngine(model, AutoProcessor.from_pretrained(captioner_dir), PROMPT, compile=True)
    engine.device = torch.device("cuda")  # only the settings are built here, nothing runs on the device
    with caplog.at_level("WARNING", logger="transformers_sharegpt4v.captioning.engine"):
        config = engine.generation_config(GenerationSettings(num_beams=1))
        assert not caplog.records and config.compile_config.mode == "reduce-overhead"  # CUDA graphs
        for _ in range(2):
            engine.generation_config(GenerationSettings(num_beams=3))
    assert [r.getMessage().split(":")[0] for r in caplog.records] == ["--compile with --num-beams 3"]


@pytest.mark.slow
def test_compiled_decode_gives_the_same_captions(captioner_dir):
    """`--compile` on CPU (inductor + the system C compiler): the captions of the eager engine, over batches
    of two sizes (a compiled step with a reused cache must not leak one batch into the next)."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(captioner_dir).eval()
    processor = AutoProcessor.from_pretrained(captioner_dir)
    files = [str(path) for path in sorted(FIXTURE_IMAGES.glob("*.jpg"))]  # 4 photos
    batches = [processor.image_processor(chunk, return_tensors="pt")["pixel_values"] for chunk in
               (files[:2], files[2:4], files[3:])]  # fmt: skip
    settings = GenerationSettings(max_new_tokens=8)
    eager = CaptionEngine(model, processor, PROMPT, cache="dynamic")
    compiled = CaptionEngine(model, processor, PROMPT, compile=True)
    for pixels in batches:
        expected = eager.generate(eager.pixel_values(pixels, normalized=True), settings)
        assert compiled.generate(compiled.pixel_values(pixels, normalized=True), settings) == expected
    assert hasattr(model, "_compiled_call")  # generate really went through torch.compile


def test_sources_text_file_and_dataset(tmp_path, image_dir):
    listing = tmp_path / "list.txt"
    listing.write_text(
        f"{image_dir}/waterview.jpg\n\n# comment\n{image_dir}/more/dog.jpg\n{image_dir}/waterview.jpg\n"
    )
    source = list_source(listing)
    assert (source.kind, source.keys, source.duplicates) == (
        "list",
        [f"{image_dir}/waterview.jpg", f"{image_dir}/more/dog.jpg"],
        1,
    )
    # a list inside the image folder: absolute paths in it get keys relative to it, like relative lines
    inside = image_dir / "inside-list.txt"
    inside.write_text(f"{image_dir}/waterview.jpg\nmore/./dog.jpg\n{image_dir}/more/dog.jpg\nmore/../waterview.jpg\n")
    source = list_source(inside)
    assert (source.keys, source.duplicates) == (["waterview.jpg", "more/dog.jpg"], 2)
    assert source.locators == [str(image_dir / "waterview.jpg"), str(image_dir / "more/dog.jpg")]
    inside.unlink()

    import datasets

    files = [str(image_dir / name) for name in GOOD[:3]] + [str(image_dir / "broken.png")]
    ds = datasets.Dataset.from_dict({"id": ["a", "b", "c", "d"], "picture": files}).cast_column(
        "picture", datasets.Image()
    )
    ds.save_to_disk(tmp_path / "ds")
    source = list_source(tmp_path / "ds")
    assert (source.kind, source.keys, source.image_column) == ("dataset", ["a", "b", "c", "d"], "picture")
    ds.to_parquet(tmp_path / "pq" / "train.parquet")
    assert list_source(tmp_path / "pq").keys == ["a", "b", "c", "d"]
    with pytest.raises(ValueError, match="no column 'nope'"):
        list_source(tmp_path / "ds", id_column="nope")


def test_dataset_source_end_to_end(captioner_dir, image_dir, tmp_path, single_run):
    import datasets

    names = GOOD[:3] + ["broken.png"]
    ds = datasets.Dataset.from_dict({"id": names, "image": [str(image_dir / n) for n in names]})
    ds.cast_column("image", datasets.Image()).save_to_disk(tmp_path / "ds")
    output = tmp_path / "out"
    summary = caption_images(
        str(captioner_dir),
        tmp_path / "ds",
        output,
        max_new_tokens=MAX_NEW,
        batch_size=2,
        num_workers=1,
        progress=False,
    )
    assert (summary.done, summary.failed) == (3, 1)
    by_folder = {row["image"]: row["caption"] for row in load_rows(single_run[0])}
    assert {row["image"]: row["caption"] for row in load_rows(output)} == {n: by_folder[n] for n in GOOD[:3]}

    # the export writes the dataset's images beside the JSON, bytes unchanged, and `data build` keeps them all
    from transformers_sharegpt4v.corpora import build_corpus

    exported = export_to_json(output, tmp_path / "corpus.json", include_degenerate=True)
    root = Path(exported.image_root)
    assert root == (tmp_path / "corpus_images").resolve()
    records = json.loads((tmp_path / "corpus.json").read_text())
    assert sorted(r["image"] for r in records) == sorted(GOOD[:3])  # safe names: kept as they are
    assert all(r["id"] == r["image"] for r in records)  # the row ids
    for name in GOOD[:3]:
        assert (root / name).read_bytes() == (image_dir / name).read_bytes()
    built = build_corpus(tmp_path / "corpus.json", root, tmp_path / "corpus", num_workers=0, progress=False)
    assert built.records_written == 3

    # rows keyed by index, images stored as bytes without a file name: the extension comes from the bytes
    ds = datasets.Dataset.from_dict({"picture": [{"bytes": (image_dir / GOOD[0]).read_bytes(), "path": None}]})
    ds.cast_column("picture", datasets.Image()).save_to_disk(tmp_path / "ds2")
    caption_images(str(captioner_dir), tmp_path / "ds2", tmp_path / "out2", max_new_tokens=MAX_NEW, num_workers=0,
                   progress=False)  # fmt: skip
    export_to_json(tmp_path / "out2", tmp_path / "two.json", include_degenerate=True)
    expected_name = "0" + Path(GOOD[0]).suffix.lower().replace(".jpeg", ".jpg")
    assert [r["image"] for r in json.loads((tmp_path / "two.json").read_text())] == [expected_name]
    assert (tmp_path / "two_images" / expected_name).read_bytes() == (image_dir / GOOD[0]).read_bytes()


def test_dataset_image_file_names_are_safe_and_distinct():
    from transformers_sharegpt4v.captioning.export import _image_file_name

    png = (FIXTURE_IMAGES.parent / "images").glob("*.jpg")  # any real bytes; the extension comes from the id
    data = next(png).read_bytes()
    ids = ["a/b.jpg", "a b.jpg", "a_b.jpg", "猫", "狗", "../../etc/passwd", "..", ".hidden.jpg", "x" * 300, "A.jpg"]
    names = [_image_file_name(key, None, lambda: data) for key in ids]
    assert len({name.casefold() for name in names}) == len(ids), names
    assert names[2] == "a_b.jpg" and names[-1] == "A.jpg"  # safe ids are kept as they are
    for name in names:
        assert "/" not in name and not name.startswith(".") and len(name) < 130, name
        assert Path(name).suffix == ".jpg", name  # the id's own extension, else the bytes' format (JPEG)
    assert "猫" in names[3]  # letters of any script stay readable


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_cpu_processes_union_equals_one_process(single_run, captioner_dir, image_dir, tmp_path):
    output = tmp_path / "out"
    command = ["accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1"]
    command += ["--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port())]
    command += [
        "-m",
        "transformers_sharegpt4v.cli",
        "caption",
        "--model",
        str(captioner_dir),
        "--images",
        str(image_dir),
    ]
    command += ["--output", str(output), "--max-new-tokens", str(MAX_NEW), "--batch-size", "2", "--num-workers", "1"]
    command += ["--no-progress", "--export-json", str(tmp_path / "corpus.json")]  # by the main process
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1", "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "6 done, 0 skipped as already done, 2 failed" in result.stdout
    shards = sorted(p.name for p in (output / "data").glob("*.parquet"))
    assert shards == ["train-r000-000000.parquet", "train-r001-000000.parquet"]
    per_rank = [set(pq.read_table(output / "data" / s).column("image").to_pylist()) for s in shards]
    assert per_rank[0] and per_rank[1] and not per_rank[0] & per_rank[1]
    key = lambda row: row["image"]  # noqa: E731
    assert sorted(load_rows(output), key=key) == sorted(load_rows(single_run[0]), key=key)
    kept = sorted(row["image"] for row in load_rows(output) if row["caption"].strip() and not row["degenerate"])
    assert kept and [record["image"] for record in json.loads((tmp_path / "corpus.json").read_text())] == kept


def test_hub_dataset_source_through_a_local_hub(captioner_dir, image_dir, tmp_path, single_run):
    """`--images user/name`: a Hub dataset with an image column (served by tests/hub_server.py)."""
    import textwrap

    from hub_server import LocalHub, run_with_hub

    names = GOOD[:2] + ["broken.png"]
    output = tmp_path / "out"
    code = textwrap.dedent(
        f"""
        import datasets
        from transformers_sharegpt4v.cli import main
        paths = {[str(image_dir / n) for n in names]!r}
        rows = datasets.Dataset.from_dict({{"id": {names!r}, "picture": paths}})
        rows.cast_column("picture", datasets.Image()).push_to_hub("test-user/pictures")
        raise SystemExit(main(["caption", "--model", {str(captioner_dir)!r}, "--images", "test-user/pictures",
                               "--output", {str(output)!r}, "--max-new-tokens", "{MAX_NEW}", "--num-workers", "0",
                               "--no-progress"]))
        """
    )
    with LocalHub(tmp_path / "hub") as hub:
        result = run_with_hub(hub, code, cwd=tmp_path, env={"OMP_NUM_THREADS": "1"})
    assert "2 done, 0 skipped as already done, 1 failed" in result.stdout
    by_folder = {row["image"]: row["caption"] for row in load_rows(single_run[0])}
    assert {row["image"]: row["caption"] for row in load_rows(output)} == {n: by_folder[n] for n in GOOD[:2]}
    errors = [json.loads(line) for line in (output / "errors.jsonl").read_text().splitlines()]
    assert [(e["image"], e["source"]) for e in errors] == [("broken.png", "test-user/pictures")]


# ------------------------------------------------------------------------------- export feeds `data build`


def _build_export(json_path: Path, image_root: str, tmp_path: Path):
    from transformers_sharegpt4v.corpora import build_corpus

    return build_corpus(json_path, image_root, tmp_path / "built", num_workers=0, progress=False)


def test_export_ids_keep_the_extension_so_data_build_keeps_every_image(captioner_dir, tmp_path):
    import PIL.Image

    root = tmp_path / "images"
    root.mkdir()
    shutil.copy(FIXTURE_IMAGES / "waterview.jpg", root / "cat.jpg")
    PIL.Image.open(FIXTURE_IMAGES / "extreme_ironing.jpg").save(root / "cat.png")
    json_path = tmp_path / "pt.json"
    summary = caption_images(
        str(captioner_dir), root, tmp_path / "out", max_new_tokens=4, num_workers=0, progress=False
    )
    assert summary.done == 2
    written, _, image_root = export_to_json(tmp_path / "out", json_path, include_degenerate=True)
    records = json.loads(json_path.read_text())
    assert written == 2 and image_root == str(root.resolve())
    assert [(r["id"], r["image"]) for r in records] == [("cat.jpg", "cat.jpg"), ("cat.png", "cat.png")]
    result = _build_export(json_path, image_root, tmp_path)
    assert result.records_written == 2 and not result.skipped


def test_list_of_absolute_paths_exports_records_data_build_keeps(captioner_dir, image_dir, tmp_path):
    # the list file lies in the image folder: keys (and exported paths) are relative to that folder
    root = tmp_path / "photos"
    (root / "sub").mkdir(parents=True)
    shutil.copy(FIXTURE_IMAGES / "waterview.jpg", root / "a.jpg")
    shutil.copy(FIXTURE_IMAGES / "coco_dog_000000319154.jpg", root / "sub" / "b.jpg")
    listing = root / "list.txt"
    listing.write_text(f"{root / 'a.jpg'}\n{root / 'sub' / 'b.jpg'}\n")
    json_path = tmp_path / "pt.json"
    summary = caption_images(
        str(captioner_dir), listing, tmp_path / "out", max_new_tokens=4, num_workers=0, progress=False,
        export_json=json_path,
    )  # fmt: skip
    assert sorted(row["image"] for row in load_rows(tmp_path / "out")) == ["a.jpg", "sub/b.jpg"]
    assert summary.export.image_root == str(root.resolve()) and summary.exported == 2
    assert f"--image-root {root.resolve()}" in summary.line()
    assert sorted(r["image"] for r in json.loads(json_path.read_text())) == ["a.jpg", "sub/b.jpg"]
    written, _, image_root = export_to_json(tmp_path / "out", json_path, include_degenerate=True)
    assert _build_export(json_path, image_root, tmp_path).records_written == written == 2

    # a list elsewhere: keys stay absolute in the shards; the export makes them relative to the deepest
    # folder holding all the images, and says which one
    elsewhere = tmp_path / "lists" / "list.txt"
    elsewhere.parent.mkdir()
    elsewhere.write_text(f"{root / 'a.jpg'}\n{image_dir / 'more' / 'dog.jpg'}\n")
    common = os.path.commonpath([root.resolve(), image_dir.resolve()])
    caption_images(str(captioner_dir), elsewhere, tmp_path / "out2", max_new_tokens=4, num_workers=0, progress=False)
    written, _, image_root = export_to_json(tmp_path / "out2", json_path, include_degenerate=True)
    assert image_root == common
    records = json.loads(json_path.read_text())
    expected = sorted(os.path.relpath(p, common) for p in [root / "a.jpg", image_dir / "more" / "dog.jpg"])
    assert [r["image"] for r in records] == expected and [r["id"] for r in records] == expected
    assert _build_export(json_path, image_root, tmp_path / "again").records_written == written == 2


def test_caption_export_uses_the_one_atomic_json_writer(single_run, tmp_path, monkeypatch):
    import transformers_sharegpt4v.corpora.export as corpora_export

    calls = []
    writer = corpora_export.write_json_list

    def spy(path, records, **kwargs):
        calls.append(path)
        return writer(path, records, **kwargs)

    monkeypatch.setattr(corpora_export, "write_json_list", spy)
    path = tmp_path / "pt.json"
    path.write_text("previous")
    export_to_json(single_run[0], path, include_degenerate=True)
    assert calls == [path] and len(json.loads(path.read_text())) == len(GOOD)


def test_released_checkpoint_is_refused_with_the_convert_command(image_dir, tmp_path):
    released = tmp_path / "ShareGPT4V-7B"
    released.mkdir()
    config = {"model_type": "share4v", "architectures": ["Share4VLlamaForCausalLM"], "hidden_size": 4096}
    config |= {
        "mm_vision_tower": "Lin-Chen/ShareGPT4V-7B_Pretrained_vit-large336-l12",
        "mm_projector_type": "mlp2x_gelu",
    }
    (released / "config.json").write_text(json.dumps(config))
    with pytest.raises(
        ValueError,
        match=r"released ShareGPT4V checkpoint.*run `sharegpt4v convert \S*ShareGPT4V-7B \S*ShareGPT4V-7B-converted`",
    ):
        caption_images(str(released), image_dir, tmp_path / "out", num_workers=0, progress=False)
    assert not (tmp_path / "out").exists()  # refused before anything was written
    with pytest.raises(ValueError, match=r"released ShareGPT4V checkpoint.*sharegpt4v convert"):
        load_captioner(str(released))  # the public loader refuses it too


def test_caption_errors_name_what_is_wrong(tmp_path):
    from transformers_sharegpt4v.captioning.loader import decode_image

    empty = tmp_path / "empty"
    empty.mkdir()
    model = tmp_path / "model"  # only read for its config before the images are listed
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "sharegpt4v"}))
    with pytest.raises(ValueError, match=r"No images found .*tiff"):
        caption_images(str(model), empty, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match=r"Dataset row 'row-7' has neither image bytes nor an image path"):
        decode_image({"bytes": None, "path": None}, "row-7")
    with pytest.raises(ValueError, match=r"'row-8' has neither"):
        decode_image(None, "row-8")


def test_decode_is_the_processor_modules_strict_decode(tmp_path, monkeypatch):
    import PIL.ImageFile

    from transformers_sharegpt4v import image_processing_sharegpt4v as ip
    from transformers_sharegpt4v.captioning import loader

    assert loader.load_image_file is ip.load_image_file  # one copy of the strict decode
    assert loader.load_image_bytes is ip.load_image_bytes
    with pytest.raises(ip.CorruptImageError, match=r"Cannot open the image bytes of 'row-9' .*not an image"):
        loader.decode_image({"bytes": b"not an image", "path": None}, "row-9")
    data = (FIXTURE_IMAGES / "extreme_ironing.jpg").read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) // 2])
    monkeypatch.setattr(PIL.ImageFile, "LOAD_TRUNCATED_IMAGES", True)  # someone switched it on
    with pytest.raises(ip.CorruptImageError, match="cut.jpg"):
        loader.decode_image(str(cut), "cut.jpg")
    with pytest.raises(ip.CorruptImageError, match="row-3"):
        loader.decode_image({"bytes": cut.read_bytes(), "path": None}, "row-3")
    assert PIL.ImageFile.LOAD_TRUNCATED_IMAGES is True  # restored
    whole = loader.decode_image({"bytes": data, "path": None}, "whole")
    assert whole.tobytes() == ip.load_image_file(FIXTURE_IMAGES / "extreme_ironing.jpg").tobytes()


def test_find_repetition_on_units_matches_brute_force():
    rng = np.random.default_rng(1)
    flagged = 0
    for case in range(400):
        n = int(rng.integers(0, 100))
        units = rng.integers(0, int(rng.integers(1, 30)), size=n)
        if case % 2 and n > 10:
            period, repeats = int(rng.integers(1, 12)), int(rng.integers(2, 6))
            start = int(rng.integers(0, n // 2))
            loop = np.tile(rng.integers(0, 30, size=period), repeats + 1)[
                : period * repeats + int(rng.integers(0, period))
            ]
            units[start : start + len(loop)] = loop[: n - start]
        words = [f"w{unit}" for unit in units.tolist()]
        expected = brute_force_loop(words)
        assert (find_repetition(words) is not None) == expected, words
        assert is_degenerate(" ".join(words)) == expected
        flagged += expected
    assert 40 < flagged < 360  # both kinds present
