"""Corpus build at scale: `build_corpus` (streaming JSON, parallel cached image checks, parquet shards) against
the naive `json.load` + `datasets.Dataset.from_list` on the same synthetic LLaVA-format JSON.

    OMP_NUM_THREADS=1 python benchmarks/bench_corpora.py --size-mb 200           # a few minutes here
    OMP_NUM_THREADS=1 python benchmarks/bench_corpora.py --size-mb 1024          # docs/benchmarks.md's 1 GB figure

The corpus imitates ShareGPT4V-PT (1.49 GB for 1.25M records: ~1.2 kB a record, one detailed caption each)
with records pointing at a handful of real photos under coco/, sam/, llava/ and wikiart/ (so the image
checks are cached after the first few). Each side runs in its own subprocess so that its peak memory is its
own: the child reports its own peak RSS (getrusage) and this process samples the child's whole process tree,
image workers included, every 0.1 s (sum of RSS, and of PSS, which counts a page shared by several processes
once). getrusage's figure for children is not used: it counts each fork at its pre-exec instant, when the
child still maps all of the parent's memory.
Prints records/s and peak memory of both, and the ratios.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import psutil

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "images"  # the four test photos
FOLDERS = ["coco/train2017", "sam/images", "llava/llava_pretrain/images", "wikiart/images"]
WORDS = (
    "the a an image shows depicts man woman dog cat car street building tree sky cloud water boat river "
    "mountain red blue green yellow white black wooden metal large small left right center background "
    "foreground standing sitting walking holding wearing shirt hat table chair window door light shadow "
    "and with on in of near behind under above next to while there is are its their scene appears"
).split()
PROMPT = "<image>\nAnalyze the image in a comprehensive and detailed manner."


def make_corpus(folder: Path, size_bytes: int, seed: int = 0) -> tuple[Path, Path, int]:
    """Write `folder/corpus.json` (about `size_bytes`) and an image root; returns (json, root, records)."""
    root = folder / "images"
    photos = sorted(FIXTURES.glob("*.jpg"))
    if len(photos) < len(FOLDERS):
        raise SystemExit(f"expected {len(FOLDERS)} test photos in {FIXTURES}, found {len(photos)}")
    images = []
    for number, (sub, photo) in enumerate(zip(FOLDERS, photos, strict=False)):
        (root / sub).mkdir(parents=True, exist_ok=True)
        shutil.copy(photo, root / sub / f"{number:012d}.jpg")
        images.append(f"{sub}/{number:012d}.jpg")
    rng = random.Random(seed)
    path = folder / "corpus.json"
    count, written = 0, 0
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("[")
        while written < size_bytes:
            caption = " ".join(rng.choices(WORDS, k=rng.randint(120, 260))).capitalize() + "."
            record = {
                "id": f"{count:09d}",
                "image": rng.choice(images),
                "conversations": [{"from": "human", "value": PROMPT}, {"from": "gpt", "value": caption}],
            }
            text = ("," if count else "") + "\n" + json.dumps(record)
            handle.write(text)
            written += len(text)
            count += 1
        handle.write("\n]\n")
    return path, root, count


PLUGIN = """
import json, resource, sys, time
from transformers_sharegpt4v.corpora import build_corpus
started = time.perf_counter()
result = build_corpus(sys.argv[1], sys.argv[2], sys.argv[3], num_workers=int(sys.argv[4]), progress=False)
seconds = time.perf_counter() - started
print(json.dumps({"records": result.records_read, "kept": result.records_written, "seconds": seconds,
    "self_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

NAIVE = """
import json, resource, sys, time
import datasets
started = time.perf_counter()
with open(sys.argv[1], encoding="utf-8") as handle:
    records = json.load(handle)
dataset = datasets.Dataset.from_list(records)
seconds = time.perf_counter() - started
print(json.dumps({"records": len(dataset), "kept": len(dataset), "seconds": seconds,
    "self_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run_measured(code: str, *args: str) -> dict:
    """Run `python -c code args` and sample its process tree's memory every 0.1 s."""
    process = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], stdout=subprocess.PIPE, text=True)
    peak = {"rss": 0, "pss": 0}

    def sample() -> None:
        parent = psutil.Process(process.pid)
        while process.poll() is None:
            rss = pss = 0
            try:
                for proc in [parent, *parent.children(recursive=True)]:
                    info = proc.memory_full_info()
                    rss, pss = rss + info.rss, pss + info.pss
            except psutil.Error:
                pass
            peak["rss"], peak["pss"] = max(peak["rss"], rss), max(peak["pss"], pss)
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, _ = process.communicate()
    sampler.join()
    if process.returncode:
        raise RuntimeError(f"benchmark subprocess failed with exit code {process.returncode}")
    result = json.loads(out.strip().splitlines()[-1])
    result["tree_rss_mb"], result["tree_pss_mb"] = peak["rss"] / 2**20, peak["pss"] / 2**20
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=float, default=200, help="synthetic corpus size (docs/benchmarks.md: 1024)")
    parser.add_argument("--num-workers", type=int, default=2, help="image-check processes of the plugin")
    parser.add_argument("--workdir", default=None, help="where to write the corpus (default: a temp folder)")
    parser.add_argument("--skip-naive", action="store_true", help="measure the plugin only")
    args = parser.parse_args()

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench-corpora-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        started = time.perf_counter()
        json_path, root, count = make_corpus(workdir, int(args.size_mb * 2**20))
        size_mb = json_path.stat().st_size / 2**20
        print(
            f"corpus: {json_path} {size_mb:,.0f} MB, {count:,} records, 4 images ({time.perf_counter() - started:.0f} s)"
        )
        plugin = run_measured(PLUGIN, str(json_path), str(root), str(workdir / "out"), str(args.num_workers))
        rows = [("plugin build_corpus", plugin)]
        if not args.skip_naive:
            rows.append(("naive json.load + Dataset.from_list", run_measured(NAIVE, str(json_path))))
        for name, r in rows:
            print(
                f"{name:<38} {r['records'] / r['seconds']:>9,.0f} records/s ({r['seconds']:.1f} s)  "
                f"peak RSS: main process {r['self_mb']:,.0f} MB; process tree {r['tree_rss_mb']:,.0f} MB "
                f"(PSS {r['tree_pss_mb']:,.0f} MB)"
            )
        if not args.skip_naive:
            naive = rows[1][1]
            print(
                f"ratios plugin/naive: throughput {plugin['records'] / plugin['seconds'] / (naive['records'] / naive['seconds']):.2f}x, "
                f"peak RSS main {plugin['self_mb'] / naive['self_mb']:.2f}x, "
                f"tree PSS {plugin['tree_pss_mb'] / naive['tree_pss_mb']:.2f}x"
            )
        rss, pss = plugin["tree_rss_mb"], plugin["tree_pss_mb"]
        print(
            f"memory bar (peak RSS < 1,536 MB on a {size_mb:,.0f} MB corpus): plugin process tree "
            f"{rss:,.0f} MB summed RSS, {pss:,.0f} MB PSS: "
            f"{'met' if rss < 1536 else 'met on PSS only' if pss < 1536 else 'NOT met'}"
        )
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
