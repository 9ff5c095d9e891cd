"""ShareGPT4VImageProcessor against an independent, step-by-step re-implementation of the original pipeline.

`reference_pixel_values` below is written from the description of LLaVA-1.5's `expand2square` and
transformers 4.31's `CLIPImageProcessor` (docs/reference.md, "Image preprocessing"), in plain PIL + numpy,
in float64, one step at a time. It shares no code with the processor.
"""

import base64
import functools
import http.server
import io
import json
import re
import shutil
import socket
import threading
import time
from pathlib import Path

import numpy as np
import PIL.Image
import PIL.ImageFile
import PIL.ImageOps
import pytest
import torch
from conftest import FIXTURE_IMAGES, FIXTURE_PHOTOS

from transformers_sharegpt4v.image_processing_sharegpt4v import (
    CorruptImageError,
    ShareGPT4VImageProcessor,
    load_image_source,
    load_image_url,
)

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
TOLERANCE = 1e-5
PHOTOS = sorted(FIXTURE_IMAGES.glob("*.jpg"))


def test_fixture_photos_are_there():
    """The photo tests are parametrized over this folder: an empty glob must fail, not skip them."""
    assert set(FIXTURE_PHOTOS) <= {path.name for path in PHOTOS}, f"expected the test photos in {FIXTURE_IMAGES}"


def expand2square(image: PIL.Image.Image, background_color: tuple[int, int, int]) -> PIL.Image.Image:
    """LLaVA-1.5's pad: a square canvas of the long side in the background colour, image pasted centred."""
    width, height = image.size
    if width == height:
        return image
    if width > height:
        result = PIL.Image.new(image.mode, (width, width), background_color)
        result.paste(image, (0, (width - height) // 2))
        return result
    result = PIL.Image.new(image.mode, (height, height), background_color)
    result.paste(image, ((height - width) // 2, 0))
    return result


def reference_pixel_values(image: PIL.Image.Image, do_pad: bool, crop: int = 336) -> np.ndarray:
    """(3, crop, crop) float64: convert("RGB") -> [expand2square] -> CLIP resize -> centre crop -> normalize."""
    image = image.convert("RGB")
    if do_pad:
        image = expand2square(image, tuple(int(x * 255) for x in CLIP_MEAN))
    # CLIP resize: the short side becomes `crop`, the long side int(crop * long / short); PIL bicubic.
    width, height = image.size
    if width <= height:
        new_width, new_height = crop, int(crop * height / width)
    else:
        new_width, new_height = int(crop * width / height), crop
    image = image.resize((new_width, new_height), PIL.Image.BICUBIC)
    pixels = np.array(image, dtype=np.float64)  # (H, W, 3)
    top, left = (new_height - crop) // 2, (new_width - crop) // 2
    pixels = pixels[top : top + crop, left : left + crop]
    pixels = pixels / 255.0
    pixels = (pixels - np.array(CLIP_MEAN)) / np.array(CLIP_STD)
    return pixels.transpose(2, 0, 1)


def random_pixels(height: int, width: int, channels: int, seed: int = 0) -> np.ndarray:
    shape = (height, width) if channels == 1 else (height, width, channels)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def odd_images() -> dict[str, PIL.Image.Image]:
    """Every PIL mode and shape the original pipeline may meet, built in code."""
    rng = np.random.default_rng(1)
    palette = rng.integers(0, 256, 768, dtype=np.uint8).tolist()
    p_plain = PIL.Image.fromarray(random_pixels(90, 120, 1, seed=2), "L").convert("P")
    p_plain.putpalette(palette)
    p_transparent = p_plain.copy()
    p_transparent.info["transparency"] = 7
    images = {
        "RGBA": PIL.Image.fromarray(random_pixels(100, 140, 4, seed=3), "RGBA"),
        "LA": PIL.Image.fromarray(random_pixels(130, 90, 2, seed=4), "LA"),
        "L": PIL.Image.fromarray(random_pixels(77, 201, 1, seed=5), "L"),
        "1": PIL.Image.fromarray(random_pixels(64, 50, 1, seed=6) > 127),
        "P": p_plain,
        "P-transparency": p_transparent,
        "CMYK": PIL.Image.fromarray(random_pixels(80, 60, 4, seed=7), "CMYK"),
        "I;16": PIL.Image.fromarray(rng.integers(0, 400, (70, 110), dtype=np.uint16)),
        "I": PIL.Image.fromarray(rng.integers(-50, 400, (70, 110), dtype=np.int32)),
        "F": PIL.Image.fromarray(rng.uniform(-20.0, 300.0, (110, 70)).astype(np.float32)),
        "1x1": PIL.Image.fromarray(random_pixels(1, 1, 3, seed=8)),
        "2000x300": PIL.Image.fromarray(random_pixels(300, 2000, 3, seed=9)),
        "1500x2250": PIL.Image.fromarray(random_pixels(2250, 1500, 3, seed=10)),
    }
    assert {name: image.mode for name, image in images.items()}["I;16"] == "I;16"
    return images


ODD_IMAGES = odd_images()


@pytest.fixture(scope="module")
def processor() -> ShareGPT4VImageProcessor:
    return ShareGPT4VImageProcessor()


def test_defaults_are_the_released_model(processor):
    assert processor.do_pad is True
    assert processor.size.shortest_edge == 336
    assert (processor.crop_size.height, processor.crop_size.width) == (336, 336)
    assert int(processor.resample) == int(PIL.Image.BICUBIC)
    assert tuple(processor.image_mean) == CLIP_MEAN and tuple(processor.image_std) == CLIP_STD
    assert processor.rescale_factor == 1 / 255
    assert processor.background_color(processor.image_mean) == (122, 116, 104)


@pytest.mark.parametrize("do_pad", [True, False])
@pytest.mark.parametrize("photo", PHOTOS, ids=[path.stem for path in PHOTOS])
def test_fixture_photos_match_reference(photo, do_pad):
    processor = ShareGPT4VImageProcessor(do_pad=do_pad)
    ours = processor(str(photo), return_tensors="np")["pixel_values"]
    assert ours.shape == (1, 3, 336, 336) and ours.dtype == np.float32
    expected = reference_pixel_values(PIL.Image.open(photo), do_pad)
    assert np.abs(ours[0] - expected).max() < TOLERANCE


def test_four_photos_found():
    assert len(PHOTOS) == 4


@pytest.mark.parametrize("do_pad", [True, False])
@pytest.mark.parametrize("name", list(ODD_IMAGES))
def test_odd_inputs_match_reference(name, do_pad):
    image = ODD_IMAGES[name]
    ours = ShareGPT4VImageProcessor(do_pad=do_pad)(image, return_tensors="np")["pixel_values"]
    assert ours.shape == (1, 3, 336, 336)
    assert np.abs(ours[0] - reference_pixel_values(image, do_pad)).max() < TOLERANCE


@pytest.mark.parametrize(
    "width, height",
    [
        (3, 1),
        (7, 3),
        (337, 5),
        (400, 399),
        (1001, 250),
        (336, 200),
        (1, 7),
        (3, 400),
        (50, 400),
        (200, 336),
        (335, 336),
    ],
)
def test_padded_sizes_match_reference(processor, width, height):
    """Wide images take the two-pass resize path (padding rows added after the horizontal pass)."""
    image = PIL.Image.fromarray(random_pixels(height, width, 3, seed=width * height))
    ours = processor(image, return_tensors="np")["pixel_values"][0]
    assert np.abs(ours - reference_pixel_values(image, do_pad=True)).max() < TOLERANCE


def test_wide_image_shortcut_is_guarded(monkeypatch):
    """The "pad rows after the horizontal pass" shortcut checks PIL first; with a PIL that resized
    vertically first (emulated by transposing around the resize) the check fails and the fallback (resize
    the whole canvas) is used, still matching the reference."""
    from transformers_sharegpt4v import image_processing_sharegpt4v as module

    assert module._can_resize_padded_wide(PIL.Image.Resampling.BICUBIC) is True
    original_resize = PIL.Image.Image.resize

    def vertical_first_resize(self, size, resample=None, **kwargs):
        flipped = self.transpose(PIL.Image.Transpose.TRANSPOSE)
        resized = original_resize(flipped, (size[1], size[0]), resample=resample, **kwargs)
        return resized.transpose(PIL.Image.Transpose.TRANSPOSE)

    monkeypatch.setattr(PIL.Image.Image, "resize", vertical_first_resize)
    module._can_resize_padded_wide.cache_clear()
    try:
        assert module._can_resize_padded_wide(PIL.Image.Resampling.BICUBIC) is False
        image = PIL.Image.fromarray(random_pixels(150, 500, 3, seed=19))
        ours = ShareGPT4VImageProcessor()(image, return_tensors="np")["pixel_values"][0]
        canvas = vertical_first_resize(expand2square(image, (122, 116, 104)), (336, 336), PIL.Image.BICUBIC)
        expected = (np.asarray(canvas, dtype=np.float64) / 255 - CLIP_MEAN) / CLIP_STD
        assert np.abs(ours - expected.transpose(2, 0, 1)).max() < TOLERANCE
    finally:
        module._can_resize_padded_wide.cache_clear()


def test_random_padded_sizes_match_reference(processor):
    """40 random sizes, wide (padding rows added after the horizontal pass) and tall, down- and upscaling."""
    rng = np.random.default_rng(20)
    for width, height in rng.integers(1, 720, (40, 2)):
        image = PIL.Image.fromarray(random_pixels(int(height), int(width), 3, seed=int(width * 1000 + height)))
        ours = processor(image, return_tensors="np")["pixel_values"][0]
        assert np.abs(ours - reference_pixel_values(image, do_pad=True)).max() < TOLERANCE, (width, height)


@pytest.mark.parametrize("resample", [PIL.Image.NEAREST, PIL.Image.BILINEAR, PIL.Image.LANCZOS])
def test_other_filters_equal_resizing_the_padded_canvas(resample):
    image = PIL.Image.fromarray(random_pixels(150, 500, 3, seed=11))
    ours = ShareGPT4VImageProcessor(resample=resample)(image, return_tensors="np")["pixel_values"][0]
    canvas = expand2square(image, (122, 116, 104)).resize((336, 336), resample)
    expected = (np.asarray(canvas, dtype=np.float64) / 255 - CLIP_MEAN) / CLIP_STD
    assert np.abs(ours - expected.transpose(2, 0, 1)).max() < TOLERANCE


@pytest.mark.parametrize("width, height", [(500, 150), (150, 500)])
def test_fixed_output_size_equals_resizing_the_padded_canvas(width, height):
    image = PIL.Image.fromarray(random_pixels(height, width, 3, seed=18))
    processor = ShareGPT4VImageProcessor(size={"height": 200, "width": 260}, do_center_crop=False)
    ours = processor(image, return_tensors="np")["pixel_values"][0]
    canvas = expand2square(image, (122, 116, 104)).resize((260, 200), PIL.Image.BICUBIC)
    expected = (np.asarray(canvas, dtype=np.float64) / 255 - CLIP_MEAN) / CLIP_STD
    assert ours.shape == (3, 200, 260)
    assert np.abs(ours - expected.transpose(2, 0, 1)).max() < TOLERANCE


def test_16bit_png_file_matches_reference(tmp_path):
    path = tmp_path / "depth16.png"
    PIL.Image.fromarray(np.random.default_rng(12).integers(0, 65535, (90, 60), dtype=np.uint16)).save(path)
    assert PIL.Image.open(path).mode in ("I;16", "I")
    ours = ShareGPT4VImageProcessor()(path, return_tensors="np")["pixel_values"][0]
    assert np.abs(ours - reference_pixel_values(PIL.Image.open(path), do_pad=True)).max() < TOLERANCE


@pytest.mark.parametrize(
    "size, offset_axis, offset",
    [((5, 2), 0, 1), ((4, 2), 0, 1), ((2, 5), 1, 1), ((3, 8), 1, 2), ((6, 6), 0, 0)],
)
def test_pad_colour_and_offset(size, offset_axis, offset):
    """Pad only (no resize, no crop): the canvas is (122, 116, 104) with the image at ((S-W)//2, (S-H)//2)."""
    width, height = size
    pixels = random_pixels(height, width, 3, seed=13)
    processor = ShareGPT4VImageProcessor(do_resize=False, do_center_crop=False)
    ours = processor(PIL.Image.fromarray(pixels), return_tensors="np")["pixel_values"][0]

    side = max(size)
    canvas = np.empty((side, side, 3), dtype=np.float64)
    canvas[:] = (122, 116, 104)
    top, left = (offset, 0) if offset_axis == 0 else (0, offset)
    canvas[top : top + height, left : left + width] = pixels
    expected = ((canvas / 255 - CLIP_MEAN) / CLIP_STD).transpose(2, 0, 1)
    assert ours.shape == (3, side, side)
    assert np.abs(ours - expected).max() < TOLERANCE


def test_alpha_is_dropped_not_composited(processor):
    """A fully transparent red image stays red (current transformers would composite it onto white)."""
    image = PIL.Image.new("RGBA", (40, 40), (200, 10, 10, 0))
    ours = processor(image, return_tensors="np")["pixel_values"][0]
    expected = (np.array([200, 10, 10]) / 255 - CLIP_MEAN) / CLIP_STD
    assert np.abs(ours - expected[:, None, None]).max() < TOLERANCE


def test_exif_orientation_is_not_applied(tmp_path):
    """The original opened files with `Image.open(...).convert("RGB")`: no EXIF rotation."""
    path = tmp_path / "rotated.jpg"
    exif = PIL.Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    PIL.Image.fromarray(random_pixels(60, 200, 3, seed=14)).save(path, exif=exif, quality=95)
    ours = ShareGPT4VImageProcessor(do_pad=False)(path, return_tensors="np")["pixel_values"][0]
    assert np.abs(ours - reference_pixel_values(PIL.Image.open(path), do_pad=False)).max() < TOLERANCE
    rotated = PIL.ImageOps.exif_transpose(PIL.Image.open(path))
    assert np.abs(ours - reference_pixel_values(rotated, do_pad=False)).max() > 0.1


def test_input_types_and_batching(processor, tmp_path):
    pixels = random_pixels(120, 90, 3, seed=15)
    gray = random_pixels(50, 80, 1, seed=16)
    rgba = random_pixels(30, 30, 4, seed=17)
    path = tmp_path / "image.png"
    PIL.Image.fromarray(pixels).save(path)
    inputs = [
        pixels,  # numpy HWC uint8
        gray,  # numpy HW uint8
        rgba,  # numpy HWC RGBA: alpha dropped
        np.ascontiguousarray(pixels.transpose(2, 0, 1)),  # numpy CHW
        torch.from_numpy(pixels).permute(2, 0, 1),  # torch CHW uint8
        torch.from_numpy(pixels),  # torch HWC uint8
        torch.from_numpy(pixels).permute(2, 0, 1).float() / 255,  # torch CHW float in [0, 1]
        str(path),
        path,
    ]
    expected_images = [pixels, gray, rgba[..., :3], pixels, pixels, pixels, pixels, pixels, pixels]
    output = processor(inputs, return_tensors="pt")["pixel_values"]
    assert isinstance(output, torch.Tensor) and output.dtype == torch.float32
    assert output.shape == (len(inputs), 3, 336, 336)
    for index, expected in enumerate(expected_images):
        reference = reference_pixel_values(PIL.Image.fromarray(expected), do_pad=True)
        assert np.abs(output[index].numpy() - reference).max() < TOLERANCE, index

    nested = processor([[pixels], [gray, pixels]], return_tensors="np")["pixel_values"]
    assert nested.shape == (3, 3, 336, 336)
    batch_4d = processor(np.stack([pixels, pixels]), return_tensors="np")["pixel_values"]
    assert batch_4d.shape == (2, 3, 336, 336)
    as_list = processor([pixels, gray])["pixel_values"]
    assert isinstance(as_list, list) and len(as_list) == 2 and as_list[0].shape == (3, 336, 336)
    assert np.array_equal(as_list[1], nested[1])


def test_call_kwargs_override_settings_and_fast_path_agrees(processor):
    image = PIL.Image.open(PHOTOS[1])
    fast = processor(image, return_tensors="np")["pixel_values"]  # only return_tensors: the fast path
    validated = processor(image, return_tensors="np", do_pad=True)["pixel_values"]  # transformers' full path
    assert np.array_equal(fast, validated)
    unpadded = processor(image, return_tensors="np", do_pad=False)["pixel_values"]
    assert np.array_equal(unpadded, ShareGPT4VImageProcessor(do_pad=False)(image, return_tensors="np")["pixel_values"])
    assert np.abs(unpadded[0] - reference_pixel_values(image, do_pad=False)).max() < TOLERANCE


def test_bad_inputs_are_refused(processor):
    with pytest.raises(ValueError, match="outside 0-255"):
        processor(np.full((10, 10, 3), 300, dtype=np.int32))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        processor(np.full((10, 10, 3), 2.0, dtype=np.float32))
    with pytest.raises(ValueError, match="channels"):
        processor(np.zeros((10, 10, 5), dtype=np.uint8))
    with pytest.raises(TypeError, match="Unsupported image input"):
        processor(12345)
    with pytest.raises(ValueError, match="do_convert_rgb"):
        processor(PIL.Image.new("L", (8, 8)), do_convert_rgb=False)


def truncated_jpeg(tmp_path: Path) -> Path:
    data = PHOTOS[0].read_bytes()
    path = tmp_path / "truncated.jpg"
    path.write_bytes(data[: len(data) // 2])
    return path


def test_truncated_jpeg_raises_naming_the_file(processor, tmp_path):
    path = truncated_jpeg(tmp_path)
    with pytest.raises(CorruptImageError, match="truncated.jpg") as error:
        processor(str(path))
    assert isinstance(error.value, ValueError)


def test_truncated_jpeg_raises_even_if_pil_is_told_to_accept_it(processor, tmp_path, monkeypatch):
    path = truncated_jpeg(tmp_path)
    monkeypatch.setattr(PIL.ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    PIL.Image.open(path).load()  # PIL alone would now load it silently (grey rows at the bottom)
    with pytest.raises(CorruptImageError, match="truncated.jpg"):
        processor(path)
    assert PIL.ImageFile.LOAD_TRUNCATED_IMAGES is True  # the caller's setting is restored


def test_lazily_opened_truncated_image_raises_naming_the_file(processor, tmp_path, monkeypatch):
    path = truncated_jpeg(tmp_path)
    monkeypatch.setattr(PIL.ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(CorruptImageError, match="truncated.jpg"):
        processor(PIL.Image.open(path))


def test_corrupt_and_missing_files(processor, tmp_path):
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"this is not an image" * 10)
    with pytest.raises(ValueError, match="garbage.jpg"):
        processor(garbage)
    with pytest.raises(FileNotFoundError, match="missing.jpg"):
        processor(tmp_path / "missing.jpg")


def test_normalization_constants_match_float64():
    scale, offset = ShareGPT4VImageProcessor.normalization_constants(True, 1 / 255, True, CLIP_MEAN, CLIP_STD)
    fused = np.arange(256, dtype=np.uint8)[None, :] * scale[:, None] - offset[:, None]
    exact = (np.arange(256)[None, :] / 255.0 - np.array(CLIP_MEAN)[:, None]) / np.array(CLIP_STD)[:, None]
    assert fused.dtype == np.float32
    assert np.abs(fused - exact).max() < 1e-6


def test_normalization_table_is_bit_identical_to_the_output(processor):
    """The (3, 256) table other code uses to normalise uint8 pixels gives exactly the processor's values."""
    image = PIL.Image.open(PHOTOS[2]).convert("RGB")
    ours = processor(image, return_tensors="np")["pixel_values"][0]
    uint8 = np.asarray(
        processor.transform(
            image, True, True, processor.size, processor.resample, True, processor.crop_size, (122, 116, 104)
        )
    ).transpose(2, 0, 1)
    table = processor.normalization_table(True, 1 / 255, True, list(CLIP_MEAN), list(CLIP_STD))
    assert table.shape == (3, 256) and table.dtype == np.float32
    assert np.array_equal(table[np.arange(3)[:, None, None], uint8], ours)
    exact = (np.arange(256)[None, :] / 255.0 - np.array(CLIP_MEAN)[:, None]) / np.array(CLIP_STD)[:, None]
    assert np.abs(table - exact).max() < 1e-6
    # the public pair other code (captioning's DataLoader workers and engine) uses: the same two steps with
    # the instance's settings
    assert np.array_equal(processor.uint8_pixels(image), uint8) and processor.uint8_pixels(image).dtype == np.uint8
    assert np.array_equal(processor.uint8_normalization_table(), table)
    unpadded = ShareGPT4VImageProcessor(do_pad=False)
    wide = PIL.Image.new("RGB", (500, 300), (10, 200, 30))
    pixels = unpadded.uint8_pixels(wide)
    assert pixels.shape == (3, 336, 336) and pixels.flags["C_CONTIGUOUS"]
    lookup = unpadded.uint8_normalization_table()
    assert np.array_equal(
        lookup[np.arange(3)[:, None, None], pixels], unpadded(wide, return_tensors="np")["pixel_values"][0]
    )


def test_save_and_load_round_trip(tmp_path):
    from transformers import AutoImageProcessor

    processor = ShareGPT4VImageProcessor(do_pad=False)
    processor.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert saved["image_processor_type"] == "ShareGPT4VImageProcessor"
    assert saved["auto_map"]["AutoImageProcessor"] == "image_processing_sharegpt4v.ShareGPT4VImageProcessor"
    assert saved["do_pad"] is False and saved["size"] == {"shortest_edge": 336}
    assert (tmp_path / "image_processing_sharegpt4v.py").is_file()

    image = PIL.Image.open(PHOTOS[1])
    expected = processor(image, return_tensors="np")["pixel_values"]
    reloaded = ShareGPT4VImageProcessor.from_pretrained(tmp_path)
    assert reloaded.to_dict() == processor.to_dict()
    assert np.array_equal(reloaded(image, return_tensors="np")["pixel_values"], expected)

    remote = AutoImageProcessor.from_pretrained(tmp_path, trust_remote_code=True)
    assert type(remote).__name__ == "ShareGPT4VImageProcessor" and remote.do_pad is False
    assert np.array_equal(remote(image, return_tensors="np")["pixel_values"], expected)


@pytest.mark.parametrize("photo", PHOTOS[:2], ids=[path.stem for path in PHOTOS[:2]])
def test_peer_llava_pil_processor_gives_the_same_pixels_on_rgb(processor, photo):
    """transformers' LlavaImageProcessorPil(do_pad=True) with CLIP-336 settings agrees on RGB images."""
    from transformers import LlavaImageProcessorPil

    peer = LlavaImageProcessorPil(do_pad=True, size={"shortest_edge": 336}, crop_size=336)
    image = PIL.Image.open(photo).convert("RGB")
    theirs = peer(image, return_tensors="np")["pixel_values"]
    ours = processor(image, return_tensors="np")["pixel_values"]
    assert np.abs(theirs - ours).max() < TOLERANCE


def test_peer_llava_pil_processor_differs_on_transparent_images(processor):
    """...but composites alpha onto white, which the released model never saw (documents the difference)."""
    from transformers import LlavaImageProcessorPil

    peer = LlavaImageProcessorPil(do_pad=True, size={"shortest_edge": 336}, crop_size=336)
    image = PIL.Image.new("RGBA", (40, 30), (200, 10, 10, 0))
    theirs = peer(image, return_tensors="np")["pixel_values"]
    ours = processor(image, return_tensors="np")["pixel_values"]
    assert np.abs(theirs - ours).max() > 1.0
    assert np.abs(ours[0] - reference_pixel_values(image, do_pad=True)).max() < TOLERANCE


def test_in_memory_jpeg_bytes_are_not_accepted_silently(processor):
    """Raw bytes are not an image type: the error says what to pass."""
    buffer = io.BytesIO()
    PIL.Image.new("RGB", (4, 4)).save(buffer, "JPEG")
    with pytest.raises(TypeError, match="file paths"):
        processor(buffer.getvalue())


# ----------------------------------------------------------------------------------------------------------
# Image URLs, data URIs and base64 text (what transformers' `load_image` takes), from a local HTTP server
# ----------------------------------------------------------------------------------------------------------


class _ImageHandler(http.server.SimpleHTTPRequestHandler):
    """Serves the server's folder, plus /status/<code>, /redirect/<name>, /slow and /cut (a body shorter than
    its Content-Length)."""

    def do_GET(self):
        if self.path.startswith("/status/"):
            self.send_error(int(self.path.rsplit("/", 1)[1]))
        elif self.path.startswith("/redirect/"):
            self.send_response(302)
            self.send_header("Location", "/" + self.path.rsplit("/", 1)[1])
            self.end_headers()
        elif self.path == "/slow":
            time.sleep(2)
            try:
                self.send_error(404)
            except OSError:
                pass  # the client gave up waiting, as intended
        elif self.path == "/cut":
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            self.wfile.write(PHOTOS[0].read_bytes()[:1000])
        else:
            super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def image_server(tmp_path_factory):
    """(base URL, served folder): a threaded HTTP server on 127.0.0.1 serving a few images."""
    folder = tmp_path_factory.mktemp("served")
    shutil.copy(PHOTOS[0], folder / "photo.jpg")
    PIL.Image.fromarray(random_pixels(30, 50, 4, seed=21)).save(folder / "transparent.png")
    exif = PIL.Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    PIL.Image.fromarray(random_pixels(60, 200, 3, seed=22)).save(folder / "rotated.jpg", exif=exif, quality=95)
    (folder / "truncated.jpg").write_bytes(PHOTOS[0].read_bytes()[:5000])
    (folder / "page.html").write_text("<html>not an image</html>")
    handler = functools.partial(_ImageHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", folder
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(autouse=True)
def _no_proxy_for_localhost(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.mark.parametrize("name", ["photo.jpg", "transparent.png", "redirect/photo.jpg"])
def test_image_urls_load_like_transformers_load_image(processor, image_server, name):
    """A URL gives the pixels of transformers' `load_image(url)` (which downloads and decodes on its own; both
    drop alpha), and the processor's output equals that of the local file."""
    from transformers.image_utils import load_image

    base, folder = image_server
    url = f"{base}/{name}"
    ours = load_image_source(url)
    assert np.array_equal(np.asarray(ours.convert("RGB")), np.asarray(load_image(url)))
    local = folder / name.rsplit("/", 1)[-1]
    for images in (url, [url], [[url]]):
        expected = processor(str(local), return_tensors="np")["pixel_values"]
        assert np.array_equal(processor(images, return_tensors="np")["pixel_values"].reshape(expected.shape), expected)
    assert np.array_equal(processor(load_image(url), return_tensors="np")["pixel_values"], expected)
    assert processor.fetch_images([url])[0].tobytes() == ours.tobytes()


def test_image_url_is_decoded_as_the_original_did(processor, image_server):
    """No EXIF rotation for URLs either (transformers' `load_image` rotates): the pixels of the local file."""
    from transformers.image_utils import load_image

    base, folder = image_server
    ours = processor(f"{base}/rotated.jpg", return_tensors="np")["pixel_values"][0]
    assert np.abs(ours - reference_pixel_values(PIL.Image.open(folder / "rotated.jpg"), do_pad=True)).max() < TOLERANCE
    assert load_image(f"{base}/rotated.jpg").size == (60, 200)  # rotated by transformers
    assert load_image_source(f"{base}/rotated.jpg").size == (200, 60)


def test_image_url_failures_name_the_url(processor, image_server):
    base, _ = image_server
    cases = [
        ("status/404", FileNotFoundError, "HTTP 404"),
        ("missing.jpg", FileNotFoundError, "HTTP 404"),
        ("status/503", ConnectionError, "HTTP 503"),
        ("truncated.jpg", CorruptImageError, "truncated or corrupt|corrupt or"),
        ("page.html", CorruptImageError, "not an image"),
        ("cut", ConnectionError, "IncompleteRead"),
    ]
    for name, error, message in cases:
        url = f"{base}/{name}"
        with pytest.raises(error, match=message) as raised:
            processor(url)
        assert url in str(raised.value), name
    with pytest.raises(ConnectionError, match=f"{base}/slow.*timed out"):
        load_image_url(f"{base}/slow", timeout=0.5)
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}/photo.jpg"
    with pytest.raises(ConnectionError, match=re.escape(url)):
        processor(url)


def test_data_uris_and_base64_text_load_like_transformers_load_image(processor):
    from transformers.image_utils import load_image

    data = PHOTOS[1].read_bytes()
    text = base64.b64encode(data).decode()
    expected = processor(PHOTOS[1], return_tensors="np")["pixel_values"]
    for source in (f"data:image/jpeg;base64,{text}", text):
        assert np.array_equal(np.asarray(load_image_source(source)), np.asarray(load_image(source)))
        assert np.array_equal(processor(source, return_tensors="np")["pixel_values"], expected)
    with pytest.raises(CorruptImageError, match="data URI"):
        processor("data:image/jpeg;base64,@@@")
    with pytest.raises(CorruptImageError, match="data URI .* truncated"):
        processor("data:image/jpeg;base64," + base64.b64encode(data[: len(data) // 2]).decode())
    with pytest.raises(FileNotFoundError, match="abcd"):  # valid base64, but no image: a missing file
        processor("abcd")


def test_chat_message_image_urls(llama_tokenizer_dir, image_server):
    """`{"type": "image", "url": ...}` (and OpenAI's `image_url`, data URIs, `base64`) in a chat message load
    the image, as with LlavaProcessor; pixels equal the image processor's on transformers' `load_image`."""
    from transformers import LlamaTokenizer
    from transformers.image_utils import load_image

    from transformers_sharegpt4v import ShareGPT4VProcessor

    tokenizer = LlamaTokenizer.from_pretrained(llama_tokenizer_dir)
    ShareGPT4VProcessor.prepare_tokenizer(tokenizer)
    processor = ShareGPT4VProcessor(ShareGPT4VImageProcessor(), tokenizer)
    base, folder = image_server
    url = f"{base}/photo.jpg"
    encoded = base64.b64encode((folder / "photo.jpg").read_bytes()).decode()
    expected = processor.image_processor(load_image(url), return_tensors="pt")["pixel_values"]
    for block in (
        {"type": "image", "url": url},
        {"type": "image_url", "image_url": {"url": url}},
        {"type": "image", "url": f"data:image/jpeg;base64,{encoded}"},
        {"type": "image", "base64": encoded},
    ):
        messages = [{"role": "user", "content": [block, {"type": "text", "text": "What is in the image?"}]}]
        out = processor.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
        )
        assert torch.equal(out["pixel_values"], expected), block
        assert (out["input_ids"][0] == processor.image_token_id).sum() == 576
    with pytest.raises(FileNotFoundError, match=re.escape(f"{base}/nothing.jpg")):
        messages = [{"role": "user", "content": [{"type": "image", "url": f"{base}/nothing.jpg"}]}]
        processor.apply_chat_template(messages, tokenize=True)
