"""Captioning throughput: the engine vs a Share-Captioner-style loop vs a naive one-image-at-a-time loop.

    OMP_NUM_THREADS=2 python benchmarks/bench_caption.py                 # tiny model built in code, CPU
    python benchmarks/bench_caption.py --model Lin-Chen/ShareGPT4V-7B --images DIR --num-images 64   # a GPU

Same model, prompt ("Analyze the image in a comprehensive and detailed manner."), images (read from the same
files) and `max_new_tokens` for all three, one run each, in this process:
- engine: `caption_images` as `sharegpt4v caption` runs it (DataLoader workers, batch 32 by default here,
  greedy, prompt ids built once, static KV cache, shards written);
- Share-Captioner-style: the paper's batch script settings (batch 4, 3 beams with sampling, repetition
  penalty 1.5), images opened and preprocessed in the loop, prompts through the processor per batch;
- naive: one image at a time, greedy, processor + generate per image.
A last line takes the engine apart: `CaptionEngine.generate` alone on one batch of already-decoded pixels,
with its static cache and with transformers' default growing cache. It prints images/s for each, the ratios (goal: engine >= 5x the Share-Captioner-style loop), and a
PROJECTION (not a measurement) of the time for 1.2M images at the engine's measured tokens/s on this device,
from the measured tokens per caption.

The default model is tiny (CLIP 336/14 with the real 576 image tokens, a 4-layer 256-wide Llama) so that it
runs on a CPU; its captions are noise that mostly runs to `max_new_tokens`, which keeps the work per image
comparable between the three loops.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch

from transformers_sharegpt4v.testing_utils import tiny_sizes, write_tiny_checkpoint

ROOT = Path(__file__).resolve().parents[1]
FIXTURE_IMAGES = ROOT / "tests" / "fixtures" / "images"  # the four test photos
PROMPT = "Analyze the image in a comprehensive and detailed manner."
PAPER_IMAGES, PAPER_GPU_DAYS = 1_200_000, 44


def build_tiny_model(folder: Path) -> Path:
    """Save a tiny-but-not-trivial ShareGPT4V model and its processor into `folder`."""
    vision = {**tiny_sizes(64, 2, intermediate_size=256), "projection_dim": 64}
    text = {**tiny_sizes(256, 4, 8, intermediate_size=688), "num_key_value_heads": 8}
    return write_tiny_checkpoint(folder, vision=vision, text=text)


def make_images(folder: Path, source: Path, count: int) -> list[Path]:
    """`count` image files in `folder`, copied round-robin from the images of `source`."""
    from transformers_sharegpt4v.captioning.loader import list_source

    originals = [Path(p) for p in list_source(source).locators]
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        original = originals[index % len(originals)]
        path = folder / f"{index:05d}{original.suffix.lower()}"
        shutil.copy(original, path)
        paths.append(path)
    return paths


def chat_prompt(processor) -> str:
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": PROMPT}]}]
    return processor.apply_chat_template(messages, add_generation_prompt=True)


@torch.inference_mode()
def share_captioner_loop(model, processor, paths, max_new_tokens: int) -> tuple[float, int]:
    """The paper's batch script settings: batch 4, 3 beams with sampling, repetition penalty 1.5."""
    import PIL.Image

    prompt = chat_prompt(processor)
    tokens, start = 0, time.perf_counter()
    for index in range(0, len(paths), 4):
        images = [PIL.Image.open(path).convert("RGB") for path in paths[index : index + 4]]
        inputs = processor(
            images=images, text=[prompt] * len(images), padding=True, padding_side="left", return_tensors="pt"
        )
        inputs = inputs.to(model.device)
        inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
        output = model.generate(
            **inputs,
            max_new_tokens=max_new_tokens,
            num_beams=3,
            do_sample=True,
            repetition_penalty=1.5,
            pad_token_id=processor.tokenizer.pad_token_id,
        )
        new = output[:, inputs["input_ids"].shape[1] :]
        processor.tokenizer.batch_decode(new, skip_special_tokens=True)
        tokens += int((new != processor.tokenizer.pad_token_id).sum())
    return time.perf_counter() - start, tokens


@torch.inference_mode()
def naive_loop(model, processor, paths, max_new_tokens: int) -> tuple[float, int]:
    """One image at a time, greedy."""
    prompt = chat_prompt(processor)
    tokens, start = 0, time.perf_counter()
    for path in paths:
        inputs = processor(images=[str(path)], text=prompt, return_tensors="pt").to(model.device)
        inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
        output = model.generate(
            **inputs, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=processor.tokenizer.pad_token_id
        )
        new = output[0, inputs["input_ids"].shape[1] :]
        processor.tokenizer.decode(new, skip_special_tokens=True)
        tokens += len(new)
    return time.perf_counter() - start, tokens


@torch.inference_mode()
def cache_ablation(model, processor, paths, max_new_tokens: int) -> str:
    """`CaptionEngine.generate` on one batch of decoded pixels: static cache vs a growing (dynamic) one."""
    from transformers_sharegpt4v.captioning.engine import CaptionEngine, GenerationSettings

    pixels = processor.image_processor(images=[str(path) for path in paths], return_tensors="pt")["pixel_values"]
    settings = GenerationSettings(max_new_tokens=max_new_tokens)
    rates, captions = {}, {}
    for cache in ("static", "dynamic"):
        engine = CaptionEngine(model, processor, PROMPT, cache=cache)
        pixel_values = engine.pixel_values(pixels, normalized=True)
        start = time.perf_counter()
        captions[cache] = engine.generate(pixel_values, settings)["caption"]
        rates[cache] = len(paths) / (time.perf_counter() - start)
    return (
        f"generate only (batch {len(paths)}, decoded pixels): static cache {rates['static']:.3f} images/s, "
        f"growing cache {rates['dynamic']:.3f} images/s, ratio {rates['static'] / rates['dynamic']:.2f}x; "
        f"identical captions: {captions['static'] == captions['dynamic']}"
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="checkpoint folder or Hub id (default: a tiny model built here)")
    parser.add_argument("--images", default=str(FIXTURE_IMAGES), help="folder of images to copy from")
    parser.add_argument("--num-images", type=int, default=64, help="two full engine batches by default")
    parser.add_argument("--max-new-tokens", type=int, default=160)
    parser.add_argument(
        "--batch-size",
        type=int,
        default=32,
        help="engine batch size (on 2 CPU cores, 32 is where images/s stops rising)",
    )
    parser.add_argument("--num-workers", type=int, default=2, help="engine DataLoader workers")
    parser.add_argument("--dtype", default="auto")
    return parser.parse_args()


def engine_run(args: argparse.Namespace, model_path: str, images: Path, out: Path) -> tuple[float, float, float]:
    """`caption_images` as `sharegpt4v caption` runs it; prints and returns images/s, tokens/caption, tokens/s."""
    from transformers_sharegpt4v.captioning import caption_images

    summary = caption_images(
        model_path,
        images,
        out,
        prompt=PROMPT,
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
        num_workers=args.num_workers,
        dtype=args.dtype,
        progress=False,
    )
    engine_ips = summary.done / summary.seconds
    tokens_per_caption = summary.tokens / summary.done
    engine_tps = summary.tokens / summary.seconds
    print(
        f"engine (batch {args.batch_size}, greedy, {args.num_workers} workers): {engine_ips:.3f} images/s "
        f"({summary.done} images in {summary.seconds:.1f} s, {tokens_per_caption:.1f} tokens/caption, "
        f"{engine_tps:.1f} tokens/s)"
    )
    return engine_ips, tokens_per_caption, engine_tps


def main() -> None:
    args = parse_args()

    from transformers_sharegpt4v.captioning import load_captioner

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_path = args.model or str(build_tiny_model(tmp / "model"))
        paths = make_images(tmp / "images", Path(args.images), args.num_images)
        model, processor = load_captioner(model_path, args.dtype)
        n_params = sum(p.numel() for p in model.parameters())
        print(
            f"model: {args.model or 'tiny ShareGPT4V built in code'} ({n_params / 1e6:.1f}M parameters, "
            f"{model.dtype}, {model.device}); {len(paths)} images; max_new_tokens={args.max_new_tokens}; "
            f"torch threads={torch.get_num_threads()}"
        )

        engine_ips, tokens_per_caption, engine_tps = engine_run(args, model_path, tmp / "images", tmp / "out")

        seconds, tokens = share_captioner_loop(model, processor, paths, args.max_new_tokens)
        share_ips = len(paths) / seconds
        print(
            f"Share-Captioner-style (batch 4, 3 beams, sampling, repetition penalty 1.5): {share_ips:.3f} images/s "
            f"({len(paths)} images in {seconds:.1f} s, {tokens / len(paths):.1f} tokens/caption)"
        )

        seconds, tokens = naive_loop(model, processor, paths, args.max_new_tokens)
        naive_ips = len(paths) / seconds
        print(
            f"naive (1 image at a time, greedy): {naive_ips:.3f} images/s ({len(paths)} images in {seconds:.1f} s, "
            f"{tokens / len(paths):.1f} tokens/caption)"
        )

        print(
            f"ratio engine / Share-Captioner-style: {engine_ips / share_ips:.2f}x (goal >= 5x); "
            f"engine / naive: {engine_ips / naive_ips:.2f}x"
        )
        print(cache_ablation(model, processor, paths[: args.batch_size], args.max_new_tokens))
        seconds_12m = PAPER_IMAGES * tokens_per_caption / engine_tps
        print(
            f"PROJECTION (not measured): {PAPER_IMAGES:,} images x {tokens_per_caption:.1f} tokens/caption at the "
            f"engine's measured {engine_tps:.1f} tokens/s on {model.device} -> {seconds_12m / 86400:.2f} days "
            f"({seconds_12m / 3600:.1f} h) for this model on this device; the paper: {PAPER_GPU_DAYS} A100-days "
            f"for ShareGPT4V-7B-sized Share-Captioner at ~500 tokens/caption."
        )


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
