"""Evaluation throughput and agreement: `EvalModel` (what `--model sharegpt4v` runs) vs the original loop.

    OMP_NUM_THREADS=2 python benchmarks/bench_eval.py                       # tiny model built in code, CPU
    python benchmarks/bench_eval.py --model ShareGPT4V-7B --max-new-tokens 16    # a converted checkpoint, GPU

The questions are every row of the local fixture tasks (tests/fixtures/eval: MME, MMBench en/cn, SEED-I,
ScienceQA-IMG, Q-Bench; 36 questions), each with its benchmark's prompt, conversation and padding, and one
`max_new_tokens` for all (the tiny model's answers are noise that runs to the budget, so every loop does the
same work). In this process, one run each:
- peer, the original loop (model_vqa_loader.py's shape): one question at a time, processor + `generate`
  (run first and again last: the two times show how much the machine's load moved the figures);
- `EvalModel.generate` at batch 1 (how the paper's scripts ran) and at `--batch-size` (left-padded);
- the whole `sharegpt4v eval` path in-process (lmms-eval's `simple_evaluate` on the written task YAMLs,
  dataset loading and scoring included) at `--batch-size`, when lmms-eval is installed.
It prints questions per CPU-second of this process (the wall time is shown too, but on a shared machine it
moved 4x between runs of the same loop), the ratio to the peer, and how many answers equal the peer's (greedy
decoding: the batched answers may differ only where left padding changes a near-tie in the logits).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import datasets
import torch
from bench_caption import build_tiny_model  # the same tiny model as the captioning benchmark

ROOT = Path(__file__).resolve().parents[1]
EVAL_DATA = ROOT / "tests" / "fixtures" / "eval"


def fixture_requests(max_new_tokens: int) -> list:
    """(benchmark, GenerationRequest) for every row of the fixture tasks (SEED's video row left out)."""
    from transformers_sharegpt4v.evaluation import BENCHMARKS, GenerationRequest
    from transformers_sharegpt4v.evaluation.lmms_tasks import doc_to_visual

    requests = []
    for name, benchmark in BENCHMARKS.items():
        rows = datasets.load_dataset("parquet", data_files=str(EVAL_DATA / f"{name}.parquet"), split="train")
        for row in rows:
            if row.get("data_type", "image") != "image":
                continue
            options = {
                "max_new_tokens": max_new_tokens,
                "conversation": benchmark.conversation,
                "image_aspect_ratio": "pad" if benchmark.pad else "original",
            }
            requests.append(GenerationRequest(benchmark.prompt_text(row), doc_to_visual(row), options))
    return requests


@torch.inference_mode()
def original_loop(model, processor, requests) -> list[str]:
    """The peer: one question at a time, prompt -> processor -> generate -> decode -> strip."""
    from transformers_sharegpt4v.evaluation import build_prompt

    answers = []
    for request in requests:
        prompt = build_prompt(request.question, len(request.images), request.options["conversation"])
        pad = request.options["image_aspect_ratio"] == "pad"
        inputs = processor(text=prompt, images=request.images, do_pad=pad, return_tensors="pt").to(model.device)
        inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
        out = model.generate(**inputs, max_new_tokens=request.options["max_new_tokens"], do_sample=False)
        answers.append(processor.tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True))
    return [a.strip() for a in answers]


def timed(fn):
    """(result, CPU seconds of this process). On a machine shared with other jobs the wall time of the same loop
    moved 4x between runs; the CPU time this process spends moves far less, so the ratios use it."""
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    result = fn()
    WALL.append(time.perf_counter() - start_wall)
    return result, time.process_time() - start_cpu


WALL: list[float] = []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="plugin checkpoint (default: a tiny model built in code)")
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()

    from transformers_sharegpt4v.evaluation import EvalModel

    with tempfile.TemporaryDirectory() as tmp:
        model_path = args.model or str(build_tiny_model(Path(tmp) / "model"))
        evaluator = EvalModel.from_pretrained(model_path)
        requests = fixture_requests(args.max_new_tokens)
        n = len(requests)
        original_loop(evaluator.model, evaluator.processor, requests[:2])  # warm-up
        peer, t_peer = timed(lambda: original_loop(evaluator.model, evaluator.processor, requests))
        one, t_one = timed(lambda: evaluator.generate(requests))
        batched_model = EvalModel(evaluator.model, evaluator.processor, batch_size=args.batch_size)
        batched, t_batched = timed(lambda: batched_model.generate(requests))
        _, t_peer_again = timed(lambda: original_loop(evaluator.model, evaluator.processor, requests))

        def agree(answers: list[str]) -> str:
            return f"{sum(a == b for a, b in zip(answers, peer, strict=True))}/{n} answers equal the peer's"

        t_ref = min(t_peer, t_peer_again)  # ratios against the peer's faster run: the conservative one
        device = evaluator.model.device
        print(
            f"bench_eval: {n} questions, max_new_tokens={args.max_new_tokens}, {device}, model={args.model or 'tiny'}"
        )
        print(
            f"original loop (peer, batch 1):   {n / t_peer:7.2f} questions/cpu-s  ({t_peer:.1f} cpu-s, {WALL[0]:.1f} s wall; "
            f"run again after the others: {t_peer_again:.1f} cpu-s, {WALL[3]:.1f} s wall; ratios use the faster)"
        )
        print(
            f"EvalModel batch 1:               {n / t_one:7.2f} questions/cpu-s  ({t_one:.1f} cpu-s, {WALL[1]:.1f} s wall)  "
            f"{t_ref / t_one:.2f}x the peer, {agree(one)}"
        )
        print(
            f"EvalModel batch {args.batch_size:<3}             {n / t_batched:7.2f} questions/cpu-s  ({t_batched:.1f} cpu-s, "
            f"{WALL[2]:.1f} s wall)  "
            f"{t_ref / t_batched:.2f}x the peer, {agree(batched)}"
        )
        try:
            from lmms_eval.evaluator import simple_evaluate
            from lmms_eval.tasks import TaskManager
        except ImportError:
            print("sharegpt4v eval (lmms-eval):     skipped, lmms-eval is not installed (pip install .[eval])")
            return
        from transformers_sharegpt4v.evaluation import write_tasks
        from transformers_sharegpt4v.evaluation.lmms_eval_model import ShareGPT4VLmms

        tasks = write_tasks(EVAL_DATA, Path(tmp) / "tasks")
        lm = ShareGPT4VLmms.from_evaluator(batched_model, model_path)

        def run_lmms_eval():
            return simple_evaluate(
                model=lm,
                tasks=list(tasks),
                task_manager=TaskManager("ERROR", include_path=str(Path(tmp) / "tasks"), model_name="sharegpt4v"),
                gen_kwargs=f"max_new_tokens={args.max_new_tokens}",
                bootstrap_iters=0,
                verbosity="ERROR",
            )

        results, t_lmms = timed(run_lmms_eval)
        done = sum(v.get("effective", 0) for v in results["n-samples"].values())
        print(
            f"sharegpt4v eval (lmms-eval) b{args.batch_size:<3} {done / t_lmms:7.2f} questions/cpu-s  ({t_lmms:.1f} cpu-s, "
            f"{WALL[4]:.1f} s wall, {done} questions, data loading and scoring included)  "
            f"{t_ref / n * done / t_lmms:.2f}x the peer"
        )


if __name__ == "__main__":
    main()
