"""`benchmarks/bench_eval.py`'s data: the copies of the fixture photos it makes must reach the model as distinct
images under both protocols, or the shared-prefix path shares prefixes the benchmark counts as distinct (the
corner mark it used before was cut off by the unpadded protocol's centre crop)."""

import hashlib
import io
import sys
from pathlib import Path

import pyarrow.parquet as pq
from PIL import Image

from transformers_sharegpt4v import ShareGPT4VImageProcessor

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_eval import EVAL_DATA, repeat_rows  # noqa: E402


def _image_bytes(folder: Path) -> dict[str, set[bytes]]:
    """Each task's distinct image bytes."""
    images = {}
    for path in sorted(folder.glob("*.parquet")):
        cells = pq.read_table(path).column("image").to_pylist()
        flat = [item for cell in cells for item in (cell if isinstance(cell, list) else [cell])]
        images[path.stem] = {item["bytes"] for item in flat}
    return images


def test_photo_copies_differ_in_the_pixels_both_protocols_see(tmp_path):
    folder, count = repeat_rows(EVAL_DATA, tmp_path / "distinct", 2, "distinct")
    images = set().union(*_image_bytes(folder).values())
    assert count == len(images) > 4 * 12  # every task its own copies of the four photos, and each repeat too
    processor = ShareGPT4VImageProcessor()
    for pad in (True, False):
        pixels = {
            hashlib.sha1(
                processor(Image.open(io.BytesIO(data)).convert("RGB"), do_pad=pad, return_tensors="pt")["pixel_values"]
                .numpy()
                .tobytes()
            ).hexdigest()
            for data in images
        }
        assert len(pixels) == len(images), f"do_pad={pad}: copies with equal pixels"


def test_paper_photos_share_copies_between_repeats_as_the_benchmarks_do(tmp_path):
    distinct = _image_bytes(repeat_rows(EVAL_DATA, tmp_path / "distinct", 4, "distinct")[0])
    paper = _image_bytes(repeat_rows(EVAL_DATA, tmp_path / "paper", 4, "paper")[0])
    same = _image_bytes(repeat_rows(EVAL_DATA, tmp_path / "same", 4, "same")[0])
    assert len(same["gqa"]) == len(paper["gqa"]) == len(distinct["gqa"]) // 4  # GQA: 32 an image, all share
    assert len(paper["vizwiz"]) == len(distinct["vizwiz"])  # one question an image: none share
    assert all(len(same[task]) <= len(paper[task]) <= len(distinct[task]) for task in distinct)
