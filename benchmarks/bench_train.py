"""Padding-free packing vs padded batches: training tokens/s and peak memory, side by side, one run.

    python benchmarks/bench_train.py [--samples 48] [--batch-size 8] [--repeats 2]

Same tiny ShareGPT4V (CLIP 336/14 -> the real 576 image tokens per image, hidden 32), same corpus of drawn
images with detailed captions of 1 to 60 sentences (about 15 to 700 text tokens, so 590 to 1300 positions
per sample), same batches, stage finetune (vision frozen), fp32 on the CPU, TRL's fused LM head as
SFTTrainer uses it. Three ways to run a batch:

- padded:          right-padded to the longest sample, sdpa with a padding mask (TRL's default for images);
- packed (mask):   one row, per-sample position ids, transformers' block-diagonal sdpa mask (quadratic in
                   the PACKED length: slower than padding on a CPU, shown for honesty);
- packed (varlen): one row, per-sample attention (`sdpa_varlen`, what `sharegpt4v train` uses with
                   `padding_free: true` on sdpa; flash-attention varlen plays this role on CUDA).

Each mode runs in its own fresh process (peak RSS is per process), `--repeats` times, alternating, and
the medians are printed. Tokens are real tokens (image positions included, padding not). Wall-clock
tokens/s moves with the load of the machine; tokens per CPU-second (the process's CPU time) much less,
so both are printed (with the default single thread, CPU time is compute time: OpenMP workers that
spin-wait would add CPU time without work).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

from transformers_sharegpt4v.testing_utils import make_corpus_rows, make_tiny_inputs

MODES = ("padded", "packed (mask)", "packed (varlen)")


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def run_mode(mode: str, checkpoint: str, samples: int, batch_size: int, steps_warmup: int, queue) -> None:
    import torch
    from transformers import AutoModelForImageTextToText
    from trl.trainer.utils import add_fused_lm_head

    from transformers_sharegpt4v.processing_sharegpt4v import ShareGPT4VProcessor
    from transformers_sharegpt4v.training import ShareGPT4VDataCollator, apply_stage_policy
    from transformers_sharegpt4v.training.varlen import use_sdpa_varlen

    torch.manual_seed(0)
    processor = ShareGPT4VProcessor.from_pretrained(checkpoint)
    model = AutoModelForImageTextToText.from_pretrained(checkpoint, dtype=torch.float32, attn_implementation="sdpa")
    model.train()
    apply_stage_policy(model, "finetune")
    if mode == "packed (varlen)":
        use_sdpa_varlen(model)
    add_fused_lm_head(model, outputs=("log_probs",))
    rows = make_corpus_rows(samples, seed=1, max_sentences=60)
    rows = [
        {"id": i, "images": im, "messages": ms}
        for i, im, ms in zip(rows["id"], rows["images"], rows["messages"], strict=True)
    ]
    collator = ShareGPT4VDataCollator(
        processor, chat_template="vicuna_v1", max_length=2048, padding_free=mode != "padded"
    )
    batches = [collator(rows[i : i + batch_size]) for i in range(0, samples, batch_size)]
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def step(batch):
        model(**batch, fused_lm_head=True).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for batch in batches[:steps_warmup]:
        step(batch)
    before = _rss_mb()
    tokens = positions = 0
    start, cpu_start = time.perf_counter(), time.process_time()
    for batch in batches[steps_warmup:]:
        step(batch)
        tokens += int(batch["attention_mask"].sum()) if "attention_mask" in batch else batch["input_ids"].numel()
        positions += batch["input_ids"].numel()
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue.put(
        {
            "mode": mode,
            "tokens_per_s": tokens / elapsed,
            "tokens_per_cpu_s": tokens / cpu,
            "samples_per_s": (len(batches) - steps_warmup) * batch_size / elapsed,
            "peak_mb": peak,
            "peak_over_start_mb": peak - before,
            "positions": positions,
            "tokens": tokens,
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    print_summary(args, run_all(args))


def run_all(args: argparse.Namespace) -> dict[str, list[dict]]:
    """Every mode `args.repeats` times, alternating, each run in a fresh spawned process; the runs per mode."""
    from transformers_sharegpt4v.training.init_model import init_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        paths = make_tiny_inputs(tmp, n_samples=4, max_sentences=60)
        checkpoint = str(init_checkpoint(Path(tmp) / "init", vision=str(paths["vit"]), llm=str(paths["llm"])))
        context = mp.get_context("spawn")
        results: dict[str, list[dict]] = {mode: [] for mode in MODES}
        for repeat in range(args.repeats):
            for mode in MODES:
                queue = context.Queue()
                process = context.Process(
                    target=run_mode, args=(mode, checkpoint, args.samples, args.batch_size, 1, queue)
                )
                process.start()
                result = queue.get()
                process.join()
                results[mode].append(result)
                print(
                    f"  run {repeat + 1}/{args.repeats} {mode:16s} {result['tokens_per_s']:8.0f} tokens/s "
                    f"{result['tokens_per_cpu_s']:8.0f} tokens/CPU-s  peak RSS {result['peak_mb']:7.0f} MB",
                    flush=True,
                )
    return results


def print_summary(args: argparse.Namespace, results: dict[str, list[dict]]) -> None:
    """The medians per mode, and the packed modes against padding."""

    def median(values):
        return statistics.median(values)

    summary = {
        mode: {
            "tokens_per_s": median([r["tokens_per_s"] for r in runs]),
            "tokens_per_cpu_s": median([r["tokens_per_cpu_s"] for r in runs]),
            "samples_per_s": median([r["samples_per_s"] for r in runs]),
            "peak_mb": median([r["peak_mb"] for r in runs]),
            "peak_over_start_mb": median([r["peak_over_start_mb"] for r in runs]),
            "padding": 1 - runs[0]["tokens"] / runs[0]["positions"],
        }
        for mode, runs in results.items()
    }
    print(
        f"\nShareGPT4V training step, tiny model on CPU ({args.threads} threads), {args.samples} samples, "
        f"batch {args.batch_size}, variable-length detailed captions; medians of {args.repeats} runs"
    )
    print(
        f"{'mode':18s}{'tokens/s':>10s}{'tokens/CPU-s':>14s}{'samples/s':>11s}{'peak RSS MB':>13s}"
        f"{'+ over start':>14s}{'padding':>9s}"
    )
    for mode, row in summary.items():
        print(
            f"{mode:18s}{row['tokens_per_s']:10.0f}{row['tokens_per_cpu_s']:14.0f}{row['samples_per_s']:11.2f}"
            f"{row['peak_mb']:13.0f}{row['peak_over_start_mb']:14.0f}{row['padding']:9.1%}"
        )
    padded = summary["padded"]
    for mode in ("packed (varlen)", "packed (mask)"):
        row = summary[mode]
        print(
            f"{mode} / padded: {row['tokens_per_s'] / padded['tokens_per_s']:.2f}x tokens/s, "
            f"{row['tokens_per_cpu_s'] / padded['tokens_per_cpu_s']:.2f}x tokens/CPU-s, "
            f"peak RSS {row['peak_mb'] / padded['peak_mb']:.2f}x"
        )


if __name__ == "__main__":
    main()
