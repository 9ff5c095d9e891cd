"""ShareGPT4VImageProcessor vs transformers' LlavaImageProcessorPil(do_pad=True), per image, in one process.

Both get the same decoded RGB PIL images (the fixture photos plus synthetic wide / tall ones) and the same
CLIP-336 settings (the peer derives the same (122, 116, 104) pad colour from the CLIP mean). Each is timed
with warm-up and interleaved repeats; the median per image is reported. Parity is checked on the same
inputs against a step-by-step float64 reference (LLaVA's expand2square + CLIP resize/crop/normalize).
A second block times the same from file paths (JPEG decoding included, the same for both).

    python benchmarks/bench_image_processor.py [--repeats 20]
"""

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import PIL.Image
from transformers import LlavaImageProcessorPil

from transformers_sharegpt4v.image_processing_sharegpt4v import ShareGPT4VImageProcessor

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "images"
MEAN = np.array([0.48145466, 0.4578275, 0.40821073])
STD = np.array([0.26862954, 0.26130258, 0.27577711])


def reference(image: PIL.Image.Image) -> np.ndarray:
    """The original pipeline, step by step in float64: (3, 336, 336)."""
    image = image.convert("RGB")
    width, height = image.size
    if width != height:
        side = max(width, height)
        canvas = PIL.Image.new("RGB", (side, side), tuple(int(x * 255) for x in MEAN))
        canvas.paste(image, ((side - width) // 2, (side - height) // 2))
        image = canvas
    image = image.resize((336, 336), PIL.Image.BICUBIC)  # square after padding: short side 336, long 336
    return ((np.asarray(image, dtype=np.float64) / 255 - MEAN) / STD).transpose(2, 0, 1)


def smooth_image(width: int, height: int) -> PIL.Image.Image:
    """A photo-like synthetic image (gradients + a little noise)."""
    y, x = np.mgrid[0:height, 0:width]
    noise = np.random.default_rng(width + height).integers(0, 24, (height, width, 3))
    pixels = np.stack([x * 255 // max(width, 1), y * 255 // max(height, 1), (x + y) % 200], axis=-1) + noise
    return PIL.Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def median_ms(functions: dict[str, Callable[[], object]], repeats: int, warmup: int = 2) -> dict[str, float]:
    """Interleaved timing (so both see the same machine load); median milliseconds per call."""
    for function in functions.values():
        for _ in range(warmup):
            function()
    times = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - start)
    return {name: 1000 * statistics.median(values) for name, values in times.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20, help="timed calls per image and processor")
    args = parser.parse_args()

    ours = ShareGPT4VImageProcessor()
    peer = LlavaImageProcessorPil(do_pad=True, size={"shortest_edge": 336}, crop_size=336)

    paths = sorted(FIXTURES.glob("*.jpg"))
    images = {path.name: PIL.Image.open(path).convert("RGB") for path in paths}
    for width, height in [(2000, 300), (1500, 2250), (1024, 768)]:
        images[f"synthetic {width}x{height}"] = smooth_image(width, height)

    totals = {"ours": 0.0, "peer": 0.0}
    worst_reference = worst_peer = 0.0
    for name, image in images.items():
        ours_pixels = ours(image, return_tensors="np")["pixel_values"][0]
        peer_pixels = peer(image, return_tensors="np")["pixel_values"][0]
        diff_reference = float(np.abs(ours_pixels - reference(image)).max())
        diff_peer = float(np.abs(ours_pixels - peer_pixels).max())
        worst_reference, worst_peer = max(worst_reference, diff_reference), max(worst_peer, diff_peer)
        ms = median_ms(
            {
                "ours": lambda image=image: ours(image, return_tensors="pt"),
                "peer": lambda image=image: peer(image, return_tensors="pt"),
            },
            args.repeats,
        )
        totals["ours"] += ms["ours"]
        totals["peer"] += ms["peer"]
        print(
            f"  {name:32s} {image.size[0]:>4d}x{image.size[1]:<4d} sharegpt4v {ms['ours']:6.2f} ms | "
            f"llava-pil {ms['peer']:6.2f} ms | {ms['peer'] / ms['ours']:4.2f}x | "
            f"max|diff| ref {diff_reference:.1e}, peer {diff_peer:.1e}"
        )
    count = len(images)
    print(
        f"decoded RGB images ({count}): sharegpt4v: {totals['ours'] / count:.2f} ms/img | "
        f"llava-pil: {totals['peer'] / count:.2f} ms/img | speedup: {totals['peer'] / totals['ours']:.2f}x | "
        f"max|diff| vs reference: {worst_reference:.1e} (vs llava-pil: {worst_peer:.1e})"
    )

    file_ms = {"ours": 0.0, "peer": 0.0}
    for path in paths:
        ms = median_ms(
            {
                "ours": lambda path=path: ours(str(path), return_tensors="pt"),
                "peer": lambda path=path: peer(str(path), return_tensors="pt"),
            },
            args.repeats,
        )
        file_ms["ours"] += ms["ours"]
        file_ms["peer"] += ms["peer"]
    print(
        f"from JPEG paths, decoding included ({len(paths)}): sharegpt4v: {file_ms['ours'] / len(paths):.2f} ms/img | "
        f"llava-pil: {file_ms['peer'] / len(paths):.2f} ms/img | speedup: {file_ms['peer'] / file_ms['ours']:.2f}x"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
