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

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "images"  # the four test photos
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


def median_ms(
    functions: dict[str, Callable[[], object]], repeats: int, warmup: int = 2
) -> tuple[dict[str, float], dict[str, float]]:
    """Interleaved timing (so both see the same machine load): median wall-clock and median CPU (this
    thread) milliseconds per call. On a shared machine the CPU time is the steadier of the two."""
    for function in functions.values():
        for _ in range(warmup):
            function()
    wall = {name: [] for name in functions}
    cpu = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            start_wall, start_cpu = time.perf_counter(), time.thread_time()
            function()
            cpu[name].append(time.thread_time() - start_cpu)
            wall[name].append(time.perf_counter() - start_wall)
    return (
        {name: 1000 * statistics.median(values) for name, values in wall.items()},
        {name: 1000 * statistics.median(values) for name, values in cpu.items()},
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20, help="timed calls per image and processor")
    args = parser.parse_args()

    ours = ShareGPT4VImageProcessor()
    peer = LlavaImageProcessorPil(do_pad=True, size={"shortest_edge": 336}, crop_size=336)

    paths = sorted(FIXTURES.glob("*.jpg"))
    if not paths:
        raise SystemExit(f"no test photos in {FIXTURES}")
    images = {path.name: PIL.Image.open(path).convert("RGB") for path in paths}
    for width, height in [(2000, 300), (1500, 2250), (1024, 768)]:
        images[f"synthetic {width}x{height}"] = smooth_image(width, height)
    compare_decoded(ours, peer, images, args.repeats)
    compare_files(ours, peer, paths, args.repeats)
    return 0


def compare_decoded(ours: ShareGPT4VImageProcessor, peer: LlavaImageProcessorPil, images: dict, repeats: int) -> None:
    """Per decoded RGB image: time and max |difference| of both processors (and of ours vs the reference), then
    the means over the images."""
    rows = []  # (wall ms ours, wall ms peer, cpu ms ours, cpu ms peer)
    worst_reference = worst_peer = 0.0
    for name, image in images.items():
        ours_pixels = ours(image, return_tensors="np")["pixel_values"][0]
        peer_pixels = peer(image, return_tensors="np")["pixel_values"][0]
        diff_reference = float(np.abs(ours_pixels - reference(image)).max())
        diff_peer = float(np.abs(ours_pixels - peer_pixels).max())
        worst_reference, worst_peer = max(worst_reference, diff_reference), max(worst_peer, diff_peer)
        wall, cpu = median_ms(
            {
                "ours": lambda image=image: ours(image, return_tensors="pt"),
                "peer": lambda image=image: peer(image, return_tensors="pt"),
            },
            repeats,
        )
        rows.append((wall["ours"], wall["peer"], cpu["ours"], cpu["peer"]))
        print(
            f"  {name:29s} {image.size[0]:>4d}x{image.size[1]:<4d} wall: sharegpt4v {wall['ours']:6.2f} ms | "
            f"llava-pil {wall['peer']:6.2f} ms | {wall['peer'] / wall['ours']:4.2f}x   "
            f"cpu: {cpu['ours']:6.2f} | {cpu['peer']:6.2f} ms | {cpu['peer'] / cpu['ours']:4.2f}x   "
            f"max|diff| ref {diff_reference:.1e}, peer {diff_peer:.1e}"
        )
    count = len(rows)
    columns = [sum(row[i] for row in rows) / count for i in range(4)]
    for label, (mine, theirs) in (("wall", columns[:2]), ("cpu", columns[2:])):
        ratios = sorted((row[1] / row[0]) if label == "wall" else (row[3] / row[2]) for row in rows)
        print(
            f"{label:4s} ({count} decoded RGB images): sharegpt4v: {mine:.2f} ms/img | llava-pil: {theirs:.2f} ms/img | "
            f"speedup: {theirs / mine:.2f}x (per image: min {ratios[0]:.2f}x, median "
            f"{statistics.median(ratios):.2f}x) | max|diff| vs reference: {worst_reference:.1e} "
            f"(vs llava-pil: {worst_peer:.1e})"
        )


def compare_files(ours: ShareGPT4VImageProcessor, peer: LlavaImageProcessorPil, paths: list, repeats: int) -> None:
    """Both processors from JPEG paths, decoding included: mean time per image."""
    file_rows = []
    for path in paths:
        wall, cpu = median_ms(
            {
                "ours": lambda path=path: ours(str(path), return_tensors="pt"),
                "peer": lambda path=path: peer(str(path), return_tensors="pt"),
            },
            repeats,
        )
        file_rows.append((wall["ours"], wall["peer"], cpu["ours"], cpu["peer"]))
    mine, theirs, mine_cpu, theirs_cpu = (sum(row[i] for row in file_rows) / len(file_rows) for i in range(4))
    print(
        f"from JPEG paths, decoding included ({len(paths)}): wall: sharegpt4v: {mine:.2f} ms/img | llava-pil: "
        f"{theirs:.2f} ms/img | speedup: {theirs / mine:.2f}x   cpu: {mine_cpu:.2f} | {theirs_cpu:.2f} ms/img | "
        f"{theirs_cpu / mine_cpu:.2f}x"
    )


if __name__ == "__main__":
    raise SystemExit(main())
