"""Evaluation throughput: lmms-eval's `--model sharegpt4v` (batched) vs lmms-eval's `llava_hf` on the llava-hf
export of the same checkpoint (batch 1: the only size it supports), the peer the issue names.

    OMP_NUM_THREADS=2 python benchmarks/bench_eval.py                  # tiny model built in code, CPU
    OMP_NUM_THREADS=2 python benchmarks/bench_eval.py --photos distinct   # one question an image where possible
    OMP_NUM_THREADS=2 python benchmarks/bench_eval.py --runs 3            # the fastest of 3 runs of each
    python benchmarks/bench_eval.py --model ShareGPT4V-7B-plugin --max-new-tokens 16 --device cuda

All run lmms-eval's own CLI (`python -m lmms_eval`'s `main`), each in its own process, on the same documents:
every row of the local fixture tasks (tests/fixtures/eval, the 12 benchmarks of the paper's table: 53
questions), each row repeated `--repeat` times (default 4: a real task has thousands of rows, and 2-8 rows per
task would leave a batch of 8 unfilled), each task with its own copies of the photos, shared between its
repeats as `--photos` says (`repeat_rows`: by default near each benchmark's own number of questions an image),
written out by `sharegpt4v eval`'s task writer; one `--gen_kwargs max_new_tokens=N` for all (the tiny model's
answers are noise that runs to the budget, so all do the same decoding work). The peer is the llava-hf export made by
`sharegpt4v convert PLUGIN OUT --to llava-hf`, with the same weights. Ours runs twice: as it ships (questions
about one image prefill it once) and with `share_prefix=false` (every prompt prefilled whole).

Each process times its model's `generate_until` (the answering; model loading, dataset loading and scoring are
left out, and shown apart as the process's wall time), in wall seconds and in CPU seconds of the process. On a
machine shared with other jobs the wall time moves a lot between runs, the CPU time less, so the ratio is
given for both; `--runs K` runs the three in turn K times and keeps the fastest run of each. Printed:
documents per second of each, the ratios sharegpt4v / llava_hf, how many answers agree, and how many prefixes
ours prefilled (as many as distinct images: fewer would mean copies that reach the model as one image).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EVAL_DATA = ROOT / "tests" / "fixtures" / "eval"
sys.path.insert(0, str(Path(__file__).resolve().parent))


def worker(model_name: str, timing_file: str, lmms_eval_argv: list[str]) -> None:
    """Run lmms-eval's CLI in this process with `--model model_name`, timing the model's `generate_until`."""
    from lmms_eval.cli.dispatch import main as lmms_eval_main
    from lmms_eval.models import get_model

    model_class = get_model(model_name)
    original = model_class.generate_until
    timing = {"wall": 0.0, "cpu": 0.0, "documents": 0}

    def generate_until(self, requests):
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            return original(self, requests)
        finally:
            timing["wall"] += time.perf_counter() - wall
            timing["cpu"] += time.process_time() - cpu
            timing["documents"] += len(requests)

    model_class.generate_until = generate_until
    if model_name == "sharegpt4v":  # count the prefix prefills: one a distinct image, when the copies differ
        from transformers_sharegpt4v.evaluation import model as evaluation_model

        prefix_cache = evaluation_model.prefix_cache
        timing["prefills"] = 0

        def counted(*args, **kwargs):
            timing["prefills"] += 1
            return prefix_cache(*args, **kwargs)

        evaluation_model.prefix_cache = counted
    sys.argv = ["lmms_eval", "--model", model_name, *lmms_eval_argv]
    started = time.perf_counter()
    try:
        lmms_eval_main()
    except SystemExit as stop:
        if stop.code:
            raise
    finally:
        timing["process_wall"] = time.perf_counter() - started
        Path(timing_file).write_text(json.dumps(timing))


def run(model_name: str, model_args: str, tasks_dir: Path, tasks: list[str], batch: int, args, out: Path) -> dict:
    """One lmms-eval process; its timing and the answers it logged."""
    out.mkdir(parents=True, exist_ok=True)
    timing_file = out / "timing.json"
    argv = [sys.executable, __file__, "--worker", model_name, "--timing-file", str(timing_file), "--"]
    argv += ["--model_args", model_args, "--include_path", str(tasks_dir), "--tasks", ",".join(tasks)]
    argv += ["--batch_size", str(batch), "--gen_kwargs", f"max_new_tokens={args.max_new_tokens}"]
    argv += ["--output_path", str(out), "--log_samples", "--verbosity", "ERROR"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "LMMS_EVAL_DATASETS_CACHE": str(out / "c")}
    done = subprocess.run(argv, capture_output=True, text=True, env=env)
    if done.returncode != 0 or not timing_file.exists():
        sys.exit(f"bench_eval: the {model_name} run failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    timing = json.loads(timing_file.read_text())
    if not list(out.rglob("*_results.json")):  # lmms-eval exits 0 when a run fails: check that it wrote results
        sys.exit(f"bench_eval: the {model_name} run wrote no results:\n{done.stderr[-4000:]}")
    timing["answers"] = {}
    for samples in out.rglob("*_samples_*.jsonl"):
        for line in samples.read_text().splitlines():
            sample = json.loads(line)
            timing["answers"][f"{samples.name.split('_samples_')[-1]}/{sample['doc_id']}"] = sample["filtered_resps"]
    return timing


# Questions an image in each benchmark's evaluation split (questions / distinct images): GQA testdev-balanced
# 12,578 / 398, VQAv2 test-dev 107,394 / 36,807, MMBench dev 4,377 rows (circular rounds) / 1,164, MME 2,374 /
# 1,187, TextVQA val 5,000 / 3,166, LLaVA-Bench in-the-wild 60 / 24, MM-Vet 218 / 200; the others ask about one
# question an image. Over the whole suite: 162K questions on 70K images, 2.3 an image.
QUESTIONS_PER_IMAGE = {
    "gqa": 31.6,
    "vqav2": 2.9,
    "mmbench_en": 3.8,
    "mmbench_cn": 3.8,
    "mme": 2.0,
    "textvqa": 1.6,
    "llava_bench": 2.5,
    "mmvet": 1.1,
}
PHOTOS = ("distinct", "paper", "same")


def repeat_rows(source: Path, folder: Path, times: int, photos: str = "paper") -> tuple[Path, int]:
    """`folder` with each benchmark parquet of `source`, every row repeated `times` times, and the number of
    distinct images. The fixture tasks all ask about the same four photos; without copies the shared-prefix path
    would find 13 questions an image. So each task gets its own copy of every photo (an 8x8 block at its centre
    set to a colour of its own: the bytes differ, and the preprocessed pixels of both protocols), and `photos`
    says how the repeats of a task share them:
    - "distinct": each repeat its own copies; questions share an image only as the fixture's rows do (MME's
      pairs, MMBench's rounds): 1.3 questions an image;
    - "paper": as many consecutive repeats share a copy as bring the task near its benchmark's own questions an
      image (`QUESTIONS_PER_IMAGE`: GQA all repeats, VQAv2 three, MMBench, TextVQA and LLaVA-Bench two, the rest
      one): 1.8 an image;
    - "same": all repeats of a task share its copies: 5.2 an image."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if photos not in PHOTOS:
        raise ValueError(f"photos must be one of {PHOTOS}, got {photos!r}")
    folder.mkdir(parents=True, exist_ok=True)
    distinct: set[bytes] = set()
    for number, path in enumerate(sorted(source.glob("*.parquet"))):
        table = pq.read_table(path)
        share = _repeats_sharing(path.stem, table, times, photos)
        copies = []
        for repeat in range(max(times, 1)):
            column = table.column("image").to_pylist()
            mark = (number * 16 + repeat // share) % 256
            column = [_marked(cell, mark, distinct) for cell in column]
            index = table.schema.get_field_index("image")
            copies.append(table.set_column(index, "image", pa.array(column, type=table.schema.field("image").type)))
        pq.write_table(pa.concat_tables(copies), folder / path.name)
    return folder, len(distinct)


def _repeats_sharing(task: str, table, times: int, photos: str) -> int:
    """How many consecutive repeats of `task` share one copy of its photos."""
    if photos != "paper":
        return max(times, 1) if photos == "same" else 1
    cells = table.column("image").to_pylist()
    fixture = len(cells) / len({repr(cell) for cell in cells})  # the fixture's own questions an image
    return min(max(round(QUESTIONS_PER_IMAGE.get(task, 1.0) / fixture), 1), max(times, 1))


def _marked(cell, mark: int, distinct: set[bytes]):
    """An image cell (or a list of them) with an 8x8 block at its centre set to (mark, 255 - mark, 7), re-encoded
    as PNG. At the centre, the mark survives the preprocessing of both protocols (a corner is cut off by the
    centre crop of the unpadded one), so that the copies differ in the pixels the model sees too."""
    import io

    from PIL import Image

    if isinstance(cell, list):
        return [_marked(item, mark, distinct) for item in cell]
    image = Image.open(io.BytesIO(cell["bytes"])).convert("RGB")
    left, top = image.width // 2 - 4, image.height // 2 - 4
    image.paste((mark, 255 - mark, 7), (left, top, left + 8, top + 8))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    distinct.add(buffer.getvalue())
    return {**cell, "bytes": buffer.getvalue()}


def parse_args() -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="plugin checkpoint (default: a tiny model built in code)")
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=8, help="sharegpt4v's batch size (llava_hf runs 1)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--repeat",
        type=int,
        default=4,
        help="each fixture row this many times (a real task has thousands of rows; 2-8 rows leave batches unfilled)",
    )
    parser.add_argument(
        "--photos",
        choices=PHOTOS,
        default="paper",
        help="how the repeats of a task share its photos: each its own (distinct), near each benchmark's own "
        "questions an image (paper), all the same (same); see repeat_rows",
    )
    parser.add_argument(
        "--runs", type=int, default=1, help="run the three this many times in turn; the fastest run of each counts"
    )
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--timing-file", default=None, help=argparse.SUPPRESS)
    return parser.parse_known_args()


def export_llava_hf(plugin: Path, export: Path) -> Path:
    """`sharegpt4v convert PLUGIN EXPORT --to llava-hf`: the peer's checkpoint, the same weights."""
    command = [sys.executable, "-m", "transformers_sharegpt4v.cli", "convert", str(plugin), str(export)]
    converted = subprocess.run([*command, "--to", "llava-hf"], capture_output=True, text=True)
    if converted.returncode != 0:
        sys.exit(f"bench_eval: the llava-hf export failed: {converted.stderr[-2000:]}")
    return export


def measure(args: argparse.Namespace, tmp: Path) -> tuple[dict[str, list[dict]], int, int]:
    """Each model's timings (one a run), the number of distinct images and of tasks."""
    from transformers_sharegpt4v.evaluation import write_tasks

    if args.model:
        plugin = Path(args.model)
    else:
        from bench_caption import build_tiny_model  # the same tiny model as the captioning benchmark

        plugin = build_tiny_model(tmp / "plugin")
    export = export_llava_hf(plugin, tmp / "llava_hf")
    data, images = repeat_rows(EVAL_DATA, tmp / "data", args.repeat, args.photos)
    tasks = list(write_tasks(data, tmp / "tasks"))
    common = f"device={args.device},dtype=float32"
    configs = {
        "ours": ("sharegpt4v", f"pretrained={plugin},{common}", args.batch_size),
        "whole": ("sharegpt4v", f"pretrained={plugin},{common},share_prefix=false", args.batch_size),
        # llava_hf's default device_map "" is refused by transformers 5: name the device
        "peer": ("llava_hf", f"pretrained={export},{common},device_map={args.device}", 1),
    }
    timings: dict[str, list[dict]] = {name: [] for name in configs}
    for number in range(args.runs):  # the three in turn, so that a slow spell of the machine hits all
        for name, (model, model_args, batch) in configs.items():
            out = tmp / f"{name}{number}"
            timings[name].append(run(model, model_args, tmp / "tasks", tasks, batch, args, out))
    return timings, images, len(tasks)


def report(args: argparse.Namespace, timings: dict[str, list[dict]], images: int, tasks: int) -> None:
    """Print the fastest run of each model, the ratios and the agreement of the answers."""
    ours, whole, peer = (min(timings[name], key=lambda t: t["wall"]) for name in ("ours", "whole", "peer"))
    n = ours["documents"]
    if not n == whole["documents"] == peer["documents"]:
        sys.exit(f"bench_eval: the runs answered {n}, {whole['documents']} and {peer['documents']} documents")
    same = sum(ours["answers"].get(key) == value for key, value in peer["answers"].items())
    unshared_same = sum(ours["answers"].get(key) == value for key, value in whole["answers"].items())
    print(
        f"bench_eval: {n} documents on {images} distinct images, {n / images:.1f} an image ({tasks} fixture "
        f"tasks, each row x{args.repeat}, --photos {args.photos}), max_new_tokens={args.max_new_tokens}, "
        f"{args.device}, model={args.model or 'tiny'}, one lmms-eval process each"
    )
    rows = (("llava_hf (peer)", peer, 1), ("sharegpt4v whole", whole, args.batch_size))
    for name, timing, batch in (*rows, ("sharegpt4v", ours, args.batch_size)):
        print(
            f"{name:<17} batch {batch:<2} {n / timing['wall']:7.2f} docs/s wall ({timing['wall']:.1f} s), "
            f"{n / timing['cpu']:7.2f} docs/cpu-s ({timing['cpu']:.1f} cpu-s); process {timing['process_wall']:.1f} s"
        )
    if args.runs > 1:
        walls = {name: ", ".join(f"{t['wall']:.1f}" for t in runs) for name, runs in timings.items()}
        print(
            f"the fastest of {args.runs} runs each; all runs' wall seconds: "
            + "; ".join(f"{name} {values}" for name, values in walls.items())
        )
    print(
        f"ratio sharegpt4v b{args.batch_size} / llava_hf b1: {peer['wall'] / ours['wall']:.2f}x (wall), "
        f"{peer['cpu'] / ours['cpu']:.2f}x (cpu); without prefix sharing {peer['wall'] / whole['wall']:.2f}x (wall), "
        f"{peer['cpu'] / whole['cpu']:.2f}x (cpu)"
    )
    print(
        f"answers: shared prefix = whole prompts on {unshared_same}/{n}; = llava_hf on {same}/{n} (the peer's prompts "
        "follow its chat template, and it pads every image to a square; ours follow the paper's protocol)"
    )
    print(f"prefix prefills of sharegpt4v: {ours['prefills']} for {images} distinct images")


def main() -> None:
    args, rest = parse_args()
    if args.worker:
        worker(args.worker, args.timing_file, [a for a in rest if a != "--"])
        return
    with tempfile.TemporaryDirectory() as tmp:
        timings, images, tasks = measure(args, Path(tmp))
    report(args, timings, images, tasks)


if __name__ == "__main__":
    main()
