"""Corpora: LLaVA/ShareGPT4V JSON -> validated parquet dataset (load_dataset, streaming, TRL format), report.json,
export round trip, caption statistics, CLI, and push to a local Hub-compatible server."""

import hashlib
import itertools
import json
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import FIXTURE_IMAGES
from PIL import Image

from transformers_sharegpt4v.corpora import (
    DegenerateRule,
    JSONListReader,
    MalformedRecord,
    build_corpus,
    conversations_to_messages,
    corpus_stats,
    export_corpus,
    messages_to_conversations,
    read_report,
)
from transformers_sharegpt4v.corpora.card import render_dataset_card

CAPTION = (
    "The image shows a brown and white dog lying on a wooden floor next to a red ball. The dog looks at the "
    "camera while sunlight falls through a window on the left side of the room."
)


def _turns(*values):
    return [{"from": "human" if i % 2 == 0 else "gpt", "value": v} for i, v in enumerate(values)]


def _make_root(folder: Path) -> Path:
    root = folder / "root"
    layout = {
        "coco/train2017/dog.jpg": FIXTURE_IMAGES / "coco_dog_000000319154.jpg",
        "coco/train2017/cats.jpg": FIXTURE_IMAGES / "coco_twocat_000000039769.jpg",
        "sam/images/water.jpg": FIXTURE_IMAGES / "waterview.jpg",
        "llava/llava_pretrain/images/iron.jpg": FIXTURE_IMAGES / "extreme_ironing.jpg",
    }
    for rel, src in layout.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, root / rel)
    data = (FIXTURE_IMAGES / "extreme_ironing.jpg").read_bytes()
    (root / "wikiart/images").mkdir(parents=True)
    (root / "wikiart/images/truncated.jpg").write_bytes(data[: len(data) * 6 // 10])
    (root / "wikiart/images/unreadable.jpg").write_bytes(b"this is not an image\n")
    (folder / "outside").mkdir()
    shutil.copy(FIXTURE_IMAGES / "waterview.jpg", folder / "outside" / "secret.jpg")  # exists, but outside
    return root


# Good records: kept, and exported back identically.
GOOD = [
    {"id": "c1", "image": "coco/train2017/dog.jpg", "conversations": _turns("<image>\nDescribe the image.", CAPTION)},
    {
        "id": "c2",
        "image": "coco/train2017/cats.jpg",
        "conversations": _turns("How many cats?\n<image>", "Two.", "What are they lying on?", "A pink blanket."),
    },
    {"id": "t1", "conversations": _turns("What is the capital of France?", "Paris.")},
    {"id": "c3", "image": "sam/images/water.jpg", "conversations": _turns("<image>\nWhat is this?", "A lake.")},
    {"id": 4, "image": "llava/llava_pretrain/images/iron.jpg", "conversations": _turns("<image>\nWhat?", "Ironing.")},
    {
        "id": "multi",
        "image": ["coco/train2017/dog.jpg", "coco/train2017/cats.jpg"],
        "conversations": _turns("<image>\n<image>\nCompare the two images.", "A dog, then two cats."),
    },
]
GOOD_IDS = ["c1", "c2", "t1", "c3", "4", "multi"]
MALFORMED_TEXT = (
    '{"id": "m1", "image": "coco/train2017/dog.jpg", "conversations": '
    '[{"from": "human", "value": "<image>\\nx"}, {"from": "gpt", "value": "y"},]}'
)
# reason -> records that must be skipped for it
BAD = {
    "missing_image": [
        {"id": "gone", "image": "coco/train2017/nothere.jpg", "conversations": _turns("<image>\nq", "a")}
    ],
    "unreadable_image": [
        {"id": "junk", "image": "wikiart/images/unreadable.jpg", "conversations": _turns("<image>\nq", "a")}
    ],
    "truncated_image": [
        {"id": "cut", "image": "wikiart/images/truncated.jpg", "conversations": _turns("<image>\nq", "a")}
    ],
    "absolute_image_path": [{"id": "abs", "image": "ABSOLUTE", "conversations": _turns("<image>\nq", "a")}],
    "image_path_escapes_root": [
        {"id": "escape", "image": "../outside/secret.jpg", "conversations": _turns("<image>\nq", "a")},
        {"id": "escape2", "image": "coco/../../outside/secret.jpg", "conversations": _turns("<image>\nq", "a")},
    ],
    "image_tag_mismatch": [
        {"id": "notag", "image": "coco/train2017/dog.jpg", "conversations": _turns("Describe.", "A dog.")},
        {"id": "tagnoimage", "conversations": _turns("<image>\nDescribe.", "A dog.")},
        {"id": "twotags", "image": "coco/train2017/dog.jpg", "conversations": _turns("<image>\n<image>\nq", "a")},
    ],
    "missing_turns": [
        {"id": "noturns", "image": "coco/train2017/dog.jpg", "conversations": []},
        {"id": "noconversations", "image": "coco/train2017/dog.jpg"},
        {"id": "emptyquestion", "conversations": _turns("   ", "a")},
    ],
    "roles_not_alternating": [
        {"id": "twohuman", "conversations": [{"from": "human", "value": "q"}, {"from": "human", "value": "q"}]},
        {"id": "system", "conversations": [{"from": "human", "value": "q"}, {"from": "system", "value": "a"}]},
    ],
    "first_turn_not_human": [{"id": "gptfirst", "conversations": [{"from": "gpt", "value": "a"}]}],
    "empty_answer": [
        {"id": "blank", "conversations": _turns("q", "  \n")},
        {"id": "unanswered", "conversations": _turns("q", "a", "q2")},
    ],
    "duplicate_id": [{"id": "c1", "conversations": _turns("Another record with id c1", "It must be dropped.")}],
    "malformed_record": [
        {"id": "badimage", "image": 5, "conversations": _turns("q", "a")},
        {"id": "badturn", "conversations": [{"from": "human", "value": 3}]},
    ],
}


def _write_corpus(folder: Path, root: Path) -> Path:
    """GOOD interleaved with BAD, plus one element that is not valid JSON, as one JSON list."""
    bad = [
        dict(r, image=str(root / "coco/train2017/dog.jpg")) if r.get("image") == "ABSOLUTE" else r
        for rs in BAD.values()
        for r in rs
    ]
    elements = [json.dumps(r) for r in GOOD[:3]] + [MALFORMED_TEXT] + [json.dumps(r) for r in bad + GOOD[3:]]
    path = folder / "corpus.json"
    path.write_text("[\n" + ",\n".join(elements) + "\n]\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    root = _make_root(folder)
    corpus = _write_corpus(folder, root)
    result = build_corpus(corpus, root, folder / "out", num_workers=2, progress=False)
    return folder, root, corpus, result


def _pixels_md5(image: Image.Image) -> str:
    return hashlib.md5(np.asarray(image.convert("RGB")).tobytes()).hexdigest()


# ----------------------------------------------------------------------------------------------------- reader


@pytest.mark.parametrize("chunk_size", [1, 7, 100, 1 << 20])
def test_reader_streams_any_chunking_and_skips_malformed(tmp_path, chunk_size):
    records = [{"id": str(i), "value": 'brackets ] } [ { and "quotes" , here ' * i + "é☃"} for i in range(30)]
    elements = [json.dumps(r, ensure_ascii=False, indent=2 if i % 2 else None) for i, r in enumerate(records)]
    elements.insert(5, '{"id": "bad1", "value": nope}')  # invalid literal
    elements.insert(11, '{"id": "bad2", "conversations": [{"from": "human"}]')  # missing closing brace
    elements.insert(20, '{"id": 77} trailing')  # text after the value
    path = tmp_path / "list.json"
    path.write_text("\ufeff [" + " ,\n ".join(elements) + "]\n", encoding="utf-8")
    out = list(JSONListReader(path, chunk_size=chunk_size))
    assert [i for i, _ in out] == list(range(33))
    bad = {i: o for i, o in out if isinstance(o, MalformedRecord)}
    assert {i: o.id for i, o in bad.items()} == {5: "bad1", 11: "bad2", 20: "77"}
    assert [o for _, o in out if not isinstance(o, MalformedRecord)] == records


def test_reader_rejects_non_list_and_reports_truncated_end(tmp_path):
    path = tmp_path / "object.json"
    path.write_text('{"id": 1}')
    with pytest.raises(ValueError, match="not a JSON list"):
        list(JSONListReader(path))
    path.write_text('[{"id": "a"}, {"id": "b", "conv')
    reader = JSONListReader(path, chunk_size=4)
    out = list(reader)
    assert out[0] == (0, {"id": "a"}) and isinstance(out[1][1], MalformedRecord) and out[1][1].id == "b"


@pytest.mark.parametrize("fmt,keep", [("JPEG", 0.3), ("JPEG", 0.97), ("PNG", 0.5)])
def test_image_check_decodes_all_data(tmp_path, fmt, keep):
    from transformers_sharegpt4v.corpora import check_image_file

    image = Image.open(FIXTURE_IMAGES / "waterview.jpg").convert("RGB")
    whole, cut = tmp_path / f"whole.{fmt.lower()}", tmp_path / f"cut.{fmt.lower()}"
    image.save(whole, fmt)
    data = whole.read_bytes()
    cut.write_bytes(data[: int(len(data) * keep)])
    assert check_image_file(str(whole)) is None
    Image.open(cut)  # the header alone is fine: only decoding the data finds the damage
    assert check_image_file(str(cut))[0] == "truncated_image"


def test_image_check_is_strict_even_if_load_truncated_images_is_on(tmp_path, monkeypatch):
    from PIL import ImageFile

    from transformers_sharegpt4v.corpora import check_image_file

    data = (FIXTURE_IMAGES / "waterview.jpg").read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) // 2])
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)  # set by some other library
    assert check_image_file(str(cut))[0] == "truncated_image"
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # the caller's value is restored
    assert check_image_file(str(FIXTURE_IMAGES / "waterview.jpg")) is None


CRASHING_WORKER = """
import os, sys
sys.path.insert(0, {folder!r})
import _image_worker as real
check = real.check_image_file
real.check_image_file = lambda path: os._exit(139) if "boom" in path else check(path)  # a decoder crash
real.main()
"""


def test_image_worker_crash_is_contained(tmp_path, monkeypatch):
    import transformers_sharegpt4v.corpora.images as images

    root = _make_root(tmp_path)
    shutil.copy(root / "coco/train2017/dog.jpg", root / "coco/train2017/boom.jpg")
    script = tmp_path / "crashing_worker.py"
    script.write_text(CRASHING_WORKER.format(folder=str(Path(images.__file__).parent)))
    monkeypatch.setattr(images, "WORKER_SCRIPT", str(script))
    paths = ["coco/train2017/dog.jpg", "coco/train2017/boom.jpg", "wikiart/images/truncated.jpg", "coco/none.jpg"]
    with images.ImageChecker(root, num_workers=1, batch_size=2) as checker:
        checker.submit(paths)
        results = [checker.result(path) for path in paths]
        assert checker.workers_restarted == 1
        assert checker.result("coco/train2017/cats.jpg") is None  # the replacement worker works
        pid = checker._workers[0].process.pid
        checker._workers[0].process.kill()  # a worker killed from outside: its batch is redone
        checker._workers[0].process.wait()
        assert checker.result("sam/images/water.jpg") is None and checker._workers[0].process.pid != pid
    assert results[0] is None and results[1][0] == "unreadable_image" and "crashed" in results[1][1]
    assert results[2][0] == "truncated_image" and results[3][0] == "missing_image"


# ------------------------------------------------------------------------------------------ message format


def test_conversations_to_messages_places_image_parts_in_place():
    turns = _turns(
        "<image>\nWhat is this?", "A dog.", "And here?\n<image>", "Cats.", "<image>\n<image>\nBoth?", "Yes."
    )
    image, text = {"type": "image", "text": None}, lambda t: {"type": "text", "text": t}
    assert conversations_to_messages(turns) == [
        {"role": "user", "content": [image, text("What is this?")]},
        {"role": "assistant", "content": [text("A dog.")]},
        {"role": "user", "content": [text("And here?\n"), image]},
        {"role": "assistant", "content": [text("Cats.")]},
        {"role": "user", "content": [image, image, text("Both?")]},
        {"role": "assistant", "content": [text("Yes.")]},
    ]


@pytest.mark.parametrize(
    "value",
    ["<image>\nq", "q\n<image>", "<image>", "<image>\n", "a <image>\n b", "<image>\n<image>\nq", "<image>\n\nq", "q"],
)
def test_messages_round_trip_to_identical_values(value):
    turns = _turns(value, "answer")
    assert messages_to_conversations(conversations_to_messages(turns)) == turns


def test_only_normalisation_is_a_newline_after_a_bare_tag():
    turns = _turns("<image>q", "a")
    assert messages_to_conversations(conversations_to_messages(turns))[0]["value"] == "<image>\nq"


# -------------------------------------------------------------------------------------------------- build


def _skipped(folder: Path) -> dict[str, list[dict]]:
    """OUT/skipped.jsonl grouped by reason, in file order."""
    grouped: dict[str, list[dict]] = {}
    for line in (folder / "skipped.jsonl").read_text(encoding="utf-8").splitlines():
        entry = json.loads(line)
        grouped.setdefault(entry.pop("reason"), []).append(entry)
    return grouped


def test_every_bad_record_is_skipped_and_reported_with_its_id(built):
    folder, _, corpus, result = built
    report = json.loads((folder / "out" / "report.json").read_text())
    assert "skipped" not in report and read_report(folder / "out") == report
    skipped = _skipped(folder / "out")
    expected = {reason: [str(r["id"]) for r in records] for reason, records in BAD.items()}
    expected["malformed_json"] = ["m1"]
    assert {reason: [e["id"] for e in entries] for reason, entries in skipped.items()} == expected
    assert report["skipped_counts"] == {reason: len(ids) for reason, ids in expected.items()}
    malformed = skipped["malformed_json"][0]
    assert malformed["index"] == 3 and malformed["file"] == str(corpus)
    total = len(GOOD) + 1 + sum(len(r) for r in BAD.values())
    assert (report["records_read"], report["records_written"]) == (total, len(GOOD))
    assert result.records_written == len(GOOD) and result.skipped == report["skipped_counts"]
    # Distinct image paths of the records that reached the image checks, each decoded once.
    assert report["image_files_checked"] == 7
    summary = result.summary()
    assert "\n" not in summary and f"{len(GOOD)} of {total} records kept" in summary


def test_load_dataset_never_returns_rows_of_another_build(built, tmp_path):
    """Folders of the same name and corpora of the same size (same counts and bytes: what a card's YAML
    records): `load_dataset` gives each folder's current rows. With a `configs` section in the local card,
    datasets keyed its cache by the card and returned the rows of the first build."""
    from datasets import load_dataset

    _, root, _, _ = built
    loaded = []
    for name, answer in [("a", "Two."), ("b", "Six."), ("a", "Ten.")]:
        records = [dict(GOOD[1], conversations=_turns("How many cats?\n<image>", answer))]
        corpus = tmp_path / f"{name}.json"
        corpus.write_text(json.dumps(records), encoding="utf-8")
        shutil.rmtree(tmp_path / name, ignore_errors=True)
        build_corpus(corpus, root, tmp_path / name / "out", num_workers=0, progress=False)
        assert "configs:" not in (tmp_path / name / "out" / "README.md").read_text()
        row = load_dataset(str(tmp_path / name / "out"), split="train")[0]
        loaded.append(row["messages"][1]["content"][0]["text"])
    assert loaded == ["Two.", "Six.", "Ten."]


def test_load_dataset_gives_trl_rows_with_resolvable_images(built, monkeypatch, tmp_path):
    from datasets import load_dataset

    folder, root, _, _ = built
    monkeypatch.chdir(tmp_path)  # image paths must not depend on the working directory
    ds = load_dataset(str(folder / "out"), split="train")
    assert ds["id"] == GOOD_IDS
    assert ds["source"] == ["coco", "coco", "text", "sam", "llava", "coco"]
    rows = {row["id"]: row for row in ds}
    assert rows["t1"]["images"] == []
    for record in GOOD:
        paths = [record["image"]] if isinstance(record.get("image"), str) else record.get("image", [])
        row = rows[str(record["id"])]
        assert [_pixels_md5(image) for image in row["images"]] == [_pixels_md5(Image.open(root / p)) for p in paths]
        texts = [turn["value"].replace("<image>\n", "").replace("<image>", "") for turn in record["conversations"]]
        got = ["".join(part["text"] or "" for part in m["content"]) for m in row["messages"]]
        assert got == texts
        assert [m["role"] for m in row["messages"]] == ["user", "assistant"] * (len(texts) // 2)
        n_image_parts = sum(part["type"] == "image" for m in row["messages"] for part in m["content"])
        assert n_image_parts == len(paths)


def test_rows_feed_trl_multimodal_preparation(built):
    from datasets import load_dataset
    from trl.data_utils import is_conversational, prepare_multimodal_messages

    folder = built[0]
    row = load_dataset(str(folder / "out"), split="train")[0]
    assert is_conversational(row)
    messages = prepare_multimodal_messages(row["messages"], row["images"])
    assert messages[0]["content"][0]["type"] == "image"
    assert messages[0]["content"][0]["image"] is row["images"][0]


def test_streaming_rows_match_and_collate_without_materialising(built):
    from datasets import IterableDataset, load_dataset

    folder = built[0]
    eager = load_dataset(str(folder / "out"), split="train")
    stream = load_dataset(str(folder / "out"), split="train", streaming=True)
    assert isinstance(stream, IterableDataset)

    def collate(rows):  # the shape a vision-language collator consumes
        return [row["images"] for row in rows], [row["messages"] for row in rows]

    rows = iter(stream)
    batches = []
    while batch := list(itertools.islice(rows, 4)):
        batches.append(collate(batch))
    assert [len(images) for images, _ in batches] == [4, 2]
    images = [image_list for batch_images, _ in batches for image_list in batch_images]
    messages = [m for _, batch_messages in batches for m in batch_messages]
    assert messages == eager["messages"]
    assert [[_pixels_md5(i) for i in lst] for lst in images] == [[_pixels_md5(i) for i in r["images"]] for r in eager]
    assert all(isinstance(i, Image.Image) for lst in images for i in lst)


def test_streamed_rows_feed_the_training_collator(built, llama_tokenizer_dir):
    import torch
    from datasets import load_dataset
    from transformers import LlamaTokenizer

    from transformers_sharegpt4v.image_processing_sharegpt4v import ShareGPT4VImageProcessor
    from transformers_sharegpt4v.processing_sharegpt4v import ShareGPT4VProcessor
    from transformers_sharegpt4v.training import ShareGPT4VDataCollator

    tokenizer = LlamaTokenizer.from_pretrained(llama_tokenizer_dir)
    ShareGPT4VProcessor.prepare_tokenizer(tokenizer)
    collator = ShareGPT4VDataCollator(ShareGPT4VProcessor(ShareGPT4VImageProcessor(), tokenizer), max_length=None)
    folder = built[0]
    stream = load_dataset(str(folder / "out"), split="train", streaming=True)
    streamed = collator(list(itertools.islice(iter(stream), 4)))  # c1, c2, t1 (text only), c3
    eager = collator(list(load_dataset(str(folder / "out"), split="train").select(range(4))))
    assert streamed["pixel_values"].shape == (3, 3, 336, 336)
    image_token = tokenizer.convert_tokens_to_ids("<image>")
    assert (streamed["input_ids"] == image_token).sum(dim=1).tolist() == [576, 576, 0, 576]
    assert (streamed["labels"] != -100).any(dim=1).all()
    for key in ("input_ids", "labels", "attention_mask", "pixel_values"):
        assert torch.equal(streamed[key], eager[key]), key


def test_export_round_trip_is_identical(built, tmp_path):
    folder = built[0]
    out_json = tmp_path / "roundtrip.json"
    assert export_corpus(folder / "out", out_json, progress=False) == len(GOOD)
    expected = [dict(r, id=str(r["id"])) for r in GOOD]
    assert json.loads(out_json.read_text()) == expected


def test_export_is_atomic_and_errors_name_the_record(built, tmp_path, monkeypatch):
    import transformers_sharegpt4v.corpora.export as export

    folder = built[0]
    out_json = tmp_path / "corpus.json"
    out_json.write_text("previous")
    real = export.record_from_row
    seen = []

    def failing(row, root):  # the fourth record fails, as a row that cannot be converted would
        seen.append(row["id"])
        if len(seen) == 4:
            raise ValueError("conversion failed")
        return real(row, root)

    monkeypatch.setattr(export, "record_from_row", failing)
    with pytest.raises(ValueError, match="conversion failed"):
        export_corpus(folder / "out", out_json, progress=False)
    assert out_json.read_text() == "previous"  # the earlier file is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus.json"]  # and nothing half-written is left
    monkeypatch.undo()
    row = {"id": "r7", "images": [], "messages": [{"role": "system", "content": "x"}]}
    with pytest.raises(ValueError, match=r"Record 'r7': role 'system' has no LLaVA equivalent"):
        export.record_from_row(row)


def test_embedded_images_survive_without_the_image_root(built, tmp_path, monkeypatch):
    from datasets import load_dataset

    folder, root, corpus, _ = built
    copy = tmp_path / "root"
    shutil.copytree(root, copy)
    out = tmp_path / "embedded"
    build_corpus(corpus, copy, out, embed_images=True, num_workers=0, progress=False)
    table = pq.read_table(next((out / "data").glob("*.parquet")))
    first = table.column("images").to_pylist()[0][0]
    assert first["path"] == "coco/train2017/dog.jpg" and first["bytes"] == (root / first["path"]).read_bytes()
    shutil.rmtree(copy)
    monkeypatch.chdir(tmp_path)
    ds = load_dataset(str(out), split="train")
    assert ds["id"] == GOOD_IDS
    assert _pixels_md5(ds[0]["images"][0]) == _pixels_md5(Image.open(root / "coco/train2017/dog.jpg"))
    export_corpus(out, tmp_path / "again.json", progress=False)
    assert json.loads((tmp_path / "again.json").read_text()) == [dict(r, id=str(r["id"])) for r in GOOD]


def test_dataset_card_counts_sources_and_lengths(built):
    folder = built[0]
    card = (folder / "out" / "README.md").read_text()
    assert "configs:" not in card and "- name: train" in card  # configs only on the Hub card (see above)
    hub_card = render_dataset_card(json.loads((folder / "out" / "report.json").read_text()), repo_id="u/corpus")
    assert "path: data/train-*.parquet" in hub_card and "split: train" in hub_card
    assert "| coco | 3 |" in card and "| sam | 1 |" in card and "| llava | 1 |" in card and "| text | 1 |" in card
    answers = [t["value"] for r in GOOD for t in r["conversations"][1::2]]
    chars = [len(a) for a in answers]
    assert f"| characters | {statistics.mean(chars):,.1f} | {statistics.median(chars):,.1f} |" in card
    assert "sharegpt4v data build --json" in card
    assert "| `duplicate_id` | 1 |" in card


def test_cut_off_file_keeps_what_was_read_and_says_so(tmp_path):
    (tmp_path / "root").mkdir()
    corpus = tmp_path / "cut.json"
    text = json.dumps([{"id": str(i), "conversations": _turns("q", f"answer {i}")} for i in range(5)])
    corpus.write_text(text[: text.index('{"id": "4"')] + '{"id": "4", "conv')  # the download stopped here
    result = build_corpus(corpus, tmp_path / "root", tmp_path / "out", num_workers=0, progress=False)
    assert result.records_written == 4
    skipped = _skipped(tmp_path / "out")
    assert [(e["id"], e["index"]) for e in skipped["malformed_json"]] == [("4", 4)]
    assert "ends inside this record" in skipped["malformed_json"][0]["detail"]


def test_output_folder_is_not_overwritten_by_accident(built):
    folder, root, corpus, _ = built
    with pytest.raises(ValueError, match="--overwrite"):
        build_corpus(corpus, root, folder / "out", num_workers=0, progress=False)


# -------------------------------------------------------------------------------------------------- stats


def test_stats_match_an_independent_count_and_flag_repetition_loops(tmp_path):
    normal = [
        CAPTION,
        "A calm lake with boats, a wooden pier and mountains under a blue sky with white clouds.",
        "A man irons clothes on an ironing board attached to the back of a yellow taxi in a busy street. "
        "Another taxi passes by; pedestrians walk on the sidewalk and shop signs hang above them.",
        "Two cats sleep on a pink blanket next to two remote controls.",
    ]
    loops = {
        "loop1": "The image shows a street. " + "There is a red car parked on the road. " * 6,
        "loop2": "a man " * 20,
        "loop3": "In the background, " + "the sky is blue and the sky is blue and " * 5 + "clouds.",
    }
    records = [{"id": f"n{i}", "conversations": _turns("Describe.", text)} for i, text in enumerate(normal)]
    records += [{"id": key, "conversations": _turns("Describe.", text)} for key, text in loops.items()]
    (tmp_path / "root").mkdir()
    corpus = tmp_path / "captions.json"
    corpus.write_text(json.dumps(records))
    build_corpus(corpus, tmp_path / "root", tmp_path / "out", num_workers=0, progress=False)
    stats = corpus_stats(tmp_path / "out", progress=False)

    captions = normal + list(loops.values())
    tokens = [re.sub(r"[^a-z0-9' ]", " ", c.lower()).split() for c in captions]
    words = [len(c.split()) for c in captions]
    assert stats["captions"] == len(captions)
    assert stats["characters"]["mean"] == pytest.approx(statistics.mean(len(c) for c in captions))
    assert stats["characters"]["median"] == statistics.median(len(c) for c in captions)
    assert stats["words"]["median"] == statistics.median(words)
    assert stats["words"]["p95"] == pytest.approx(statistics.quantiles(words, n=20, method="inclusive")[-1])
    assert stats["vocabulary"] == len({t for ts in tokens for t in ts})
    assert stats["distinct_bigrams"] == len({pair for ts in tokens for pair in zip(ts, ts[1:], strict=False)})
    flagged = {item["id"]: item for item in stats["degenerate_captions"]}
    assert sorted(flagged) == ["loop1", "loop2", "loop3"]
    # the phrase as it first comes back (here from the "." before the first "There"), and its repeats
    assert flagged["loop1"]["phrase"] in "there is a red car parked on the road. " * 2
    assert len(re.findall(r"\w+|\.", flagged["loop1"]["phrase"])) == 10 and 6 <= flagged["loop1"]["repeats"] < 7
    assert flagged["loop2"]["phrase"] == "a man" and flagged["loop2"]["repeats"] == 20


def test_caption_and_stats_share_one_degenerate_rule(tmp_path, capsys):
    from transformers_sharegpt4v.cli import main
    from transformers_sharegpt4v.corpora.stats import CaptionStats
    from transformers_sharegpt4v.degenerate import is_degenerate

    filler = (
        "The photo shows a quiet harbour at dawn with fishing boats tied to a wooden pier while gulls "
        "circle above grey water and hills fade into soft morning mist near houses"
    )
    clause = "a small red boat floats nearby"  # 6 words, 3 times in a row, among 60 words
    looping = f"{filler} {clause} {clause} {clause} under a pale sky with thin clouds over the quiet bay"
    assert len(looping.split()) == 60
    rng = np.random.default_rng(0)
    words = filler.lower().split()
    captions = {"looping": looping, "normal": CAPTION}
    for i in range(40):  # random texts, half with a phrase repeated 2 to 4 times
        text = list(rng.choice(words, size=int(rng.integers(10, 50))))
        if i % 2:
            phrase = list(rng.choice(words, size=int(rng.integers(1, 8))))
            at = int(rng.integers(0, len(text)))
            text[at:at] = phrase * int(rng.integers(2, 5))
        captions[f"r{i}"] = " ".join(text)
    records = [{"id": key, "conversations": _turns("Describe.", text)} for key, text in captions.items()]
    (tmp_path / "root").mkdir()
    (tmp_path / "captions.json").write_text(json.dumps(records))
    build_corpus(tmp_path / "captions.json", tmp_path / "root", tmp_path / "out", num_workers=0, progress=False)
    assert main(["data", "stats", str(tmp_path / "out"), "--report", str(tmp_path / "stats.json")]) == 0
    printed = capsys.readouterr().out
    flagged = {item["id"] for item in json.loads((tmp_path / "stats.json").read_text())["degenerate_captions"]}
    expected = {key for key, text in captions.items() if is_degenerate(text)}
    assert (
        "looping" in flagged and "normal" not in flagged and "looping: 'a small red boat floats nearby' x3" in printed
    )
    assert flagged == expected and 3 < len(expected) < 30
    # the rule's parameters are the caption command's: fewer repeats required flags more
    loose = CaptionStats(rule=DegenerateRule(min_repeats=2, min_span=8))
    loose.add("twice", "the boat and the dog . the boat and the dog .")
    assert [item["id"] for item in loose.degenerate] == ["twice"] and not is_degenerate("the boat and the dog . " * 2)


# ---------------------------------------------------------------------------------------------------- CLI


def test_cli_build_in_a_subprocess_then_stats(built, tmp_path, capsys):
    """The installed `sharegpt4v` entry point once (build, with its image worker processes); stats through
    the same `main` in this process."""
    from transformers_sharegpt4v.cli import main

    folder, root, corpus, _ = built
    out = tmp_path / "cli-out"
    build = subprocess.run(
        ["sharegpt4v", "data", "build", "--json", str(corpus), "--image-root", str(root), "--output", str(out),
         "--num-workers", "2"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr
    lines = build.stdout.strip().splitlines()
    assert len(lines) == 1 and f"{len(GOOD)} of " in lines[0] and "duplicate_id 1" in lines[0]
    assert "sharegpt4v data build --json" in (out / "README.md").read_text()
    assert main(["data", "stats", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"captions            {len(GOOD) + 1}" in printed  # c2 has two answers
    assert "vocabulary" in printed and (out / "stats.json").is_file()


def test_cli_export(built, tmp_path, capsys):
    from transformers_sharegpt4v.cli import main

    assert main(["data", "export", str(built[0] / "out"), "--to-json", str(tmp_path / "x.json"), "--indent", "2"]) == 0
    assert f"{len(GOOD)} records exported" in capsys.readouterr().out
    assert json.loads((tmp_path / "x.json").read_text()) == [dict(r, id=str(r["id"])) for r in GOOD]


def test_cli_refuses_a_corpus_with_nothing_usable_and_writes_nothing(tmp_path, capsys):
    """Exit 2 with the skip reasons and the first skipped record, nothing in OUT; the Python API still builds
    (an empty dataset and its report) unless asked to require records."""
    from transformers_sharegpt4v.cli import main

    (tmp_path / "root").mkdir()
    corpus = tmp_path / "bad.json"
    corpus.write_text(json.dumps([{"id": "x", "image": "coco/none.jpg", "conversations": _turns("<image>\nq", "a")}]))
    code = main(["data", "build", "--json", str(corpus), "--image-root", str(tmp_path / "root"),
                 "--output", str(tmp_path / "out"), "--num-workers", "0"])  # fmt: skip
    assert code == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "missing_image 1" in captured.err and "record 'x'" in captured.err
    assert not (tmp_path / "out").exists()
    result = build_corpus(corpus, tmp_path / "root", tmp_path / "api", num_workers=0, progress=False)
    assert result.records_written == 0
    assert _skipped(tmp_path / "api")["missing_image"][0]["id"] == "x"


# ---------------------------------------------------------------------------------------------------- Hub

LOAD_BACK = """
import hashlib, json, sys
import numpy as np
from datasets import load_dataset
ds = load_dataset(sys.argv[1], split="train")
print(json.dumps([{"id": r["id"], "messages": r["messages"], "source": r["source"],
    "images": [hashlib.md5(np.asarray(i.convert("RGB")).tobytes()).hexdigest() for i in r["images"]]} for r in ds]))
"""


def test_push_then_load_back_from_a_local_hub(built, tmp_path):
    from datasets import load_dataset
    from hub_server import local_hub, run_with_hub

    folder, root, corpus, _ = built
    local = load_dataset(str(folder / "out"), split="train")
    expected = [
        {
            "id": r["id"],
            "messages": r["messages"],
            "source": r["source"],
            "images": [_pixels_md5(i) for i in r["images"]],
        }
        for r in local
    ]
    with local_hub(tmp_path / "hub") as hub:
        run_with_hub(hub, ["sharegpt4v", "data", "push", str(folder / "out"), "test-user/corpus"], cwd=tmp_path)
        files = hub.list_files("test-user/corpus", repo_type="dataset")
        assert {"README.md", "report.json", "skipped.jsonl", "data/train-00000-of-00001.parquet"} <= set(files)
        assert (
            "path: data/train-*.parquet"
            in hub.read_file("test-user/corpus", "README.md", repo_type="dataset").decode()
        )
        loaded = run_with_hub(hub, [sys.executable, "-c", LOAD_BACK, "test-user/corpus"], cwd=tmp_path)
        assert json.loads(loaded.stdout.strip().splitlines()[-1]) == expected
        # The folder referenced its images by absolute path; the Hub copy embeds them, path under the root.
        shard = hub.read_file("test-user/corpus", "data/train-00000-of-00001.parquet", repo_type="dataset")
        (tmp_path / "shard.parquet").write_bytes(shard)
        first = pq.read_table(tmp_path / "shard.parquet").column("images").to_pylist()[0][0]
        assert first == {"bytes": (root / "coco/train2017/dog.jpg").read_bytes(), "path": "coco/train2017/dog.jpg"}
    assert not (folder / "out" / ".hub-upload").exists()


def test_build_push_flag_pushes_the_built_folder(built, tmp_path, monkeypatch):
    import transformers_sharegpt4v.corpora.hub as hub

    folder, root, corpus, _ = built
    calls = []
    monkeypatch.setattr(hub, "push_corpus", lambda out, repo, **kw: calls.append((Path(out), repo, kw)))
    build_corpus(corpus, root, tmp_path / "o", num_workers=0, progress=False, push_to_hub="me/c", private=True)
    assert calls == [(tmp_path / "o", "me/c", {"private": True})]


def test_one_rule_for_paths_inside_the_image_root_and_for_save_to_disk_folders(tmp_path):
    from transformers_sharegpt4v.corpora.hub import _path_under_root
    from transformers_sharegpt4v.corpora.layout import is_save_to_disk_folder
    from transformers_sharegpt4v.errors import UsageError
    from transformers_sharegpt4v.files import relative_inside

    root = str(tmp_path / "root")
    assert relative_inside(f"{root}/coco/a.jpg", root) == "coco/a.jpg"
    assert relative_inside(f"{root}/../other/a.jpg", root) is None and relative_inside(root, root) is None
    assert _path_under_root(f"{root}/coco/a.jpg", root) == "coco/a.jpg"
    with pytest.raises(UsageError, match="not under the image root"):
        _path_under_root(str(tmp_path / "elsewhere" / "a.jpg"), root)  # no fallback to the base name
    (tmp_path / "saved").mkdir()
    assert not is_save_to_disk_folder(tmp_path / "saved")
    (tmp_path / "saved" / "state.json").write_text("{}")
    assert is_save_to_disk_folder(tmp_path / "saved")
