"""ShareGPT4V image processor: LLaVA-1.5's pad-to-square followed by CLIP preprocessing, exact and fast.

Part of the remote-code unit: imports only numpy, PIL, torch and transformers.

The released models saw images prepared as docs/reference.md ("Image preprocessing") says: PIL
`convert("RGB")` (alpha dropped, not composited onto white; no EXIF rotation), pasted centred on a square
canvas of the mean colour (122, 116, 104) when `do_pad`, resized (short side 336, PIL bicubic), centre
cropped to 336x336, rescaled by 1/255 and normalized with the OpenAI CLIP mean/std (transformers 4.31's
`CLIPImageProcessor`). Here the geometry stays in PIL on uint8: a padded image is already square, so it is
resized straight to 336x336, and a wide image's padding rows are added after PIL's horizontal pass (which
cannot change them). The normalization reads the R, G and B planes straight out of PIL and applies one fused
multiply-subtract per plane with float32 constants (within 3e-7 of the float64 result).
"""

import base64
import binascii
import functools
import http.client
import io
import os
import threading
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import PIL.ImageFile
import torch
import transformers
from transformers.image_processing_base import BatchFeature
from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, ChannelDimension, PILImageResampling, SizeDict
from transformers.utils import TensorType

try:
    from transformers.image_processing_backends import PilBackend
except ImportError as error:  # an image processor loaded alone, with an older transformers
    raise ImportError(
        f"The ShareGPT4V image processor needs transformers>=5.20 (this is {transformers.__version__}): "
        "pip install -U 'transformers>=5.20'"
    ) from error


class CorruptImageError(ValueError):
    """An image file could not be decoded completely (corrupt, truncated or not an image)."""


# PIL filters that resize by two separable convolution passes (horizontal, then vertical).
_TWO_PASS_FILTERS = {PIL.Image.Resampling[name] for name in ("BOX", "BILINEAR", "HAMMING", "BICUBIC", "LANCZOS")}


def _pad(image: PIL.Image.Image, side: int, colour: tuple[int, ...]) -> PIL.Image.Image:
    """LLaVA's expand2square: the image pasted at ((S-W)//2, (S-H)//2) on an SxS canvas of `colour`."""
    width, height = image.size
    canvas = PIL.Image.new("RGB", (side, side), colour)
    canvas.paste(image, ((side - width) // 2, (side - height) // 2))
    return canvas


def _resize_padded_wide(
    image: PIL.Image.Image, size: tuple[int, int], resample: PIL.Image.Resampling, colour: tuple[int, ...]
) -> PIL.Image.Image:
    """`_pad(image, W, colour).resize(size, resample)` for a wide image (W > H), bit for bit, with less work.

    PIL resizes in two passes, horizontal then vertical, rounding to uint8 in between; the horizontal pass
    treats rows independently with coefficients that depend only on the widths, and maps a constant row to
    the same constant. So the padding rows can skip it: they are added to its output, before the vertical
    pass. (For a tall image the padding is in every row, so there is nothing to skip.)
    """
    width, height = image.size
    new_width, new_height = size
    rows = image.resize((new_width, height), resample=resample) if new_width != width else image
    canvas = PIL.Image.new("RGB", (new_width, width), colour)
    canvas.paste(rows, (0, (width - height) // 2))
    return canvas.resize((new_width, new_height), resample=resample) if new_height != width else canvas


@functools.cache
def _can_resize_padded_wide(resample: PIL.Image.Resampling) -> bool:
    """Whether `_resize_padded_wide` equals resizing the padded canvas with this filter on this PIL build,
    checked once per filter on small random images (a few ms): a PIL that changed its pass order or rounding
    (another version, a fork) falls back to resizing the whole padded canvas instead of being wrong."""
    if resample not in _TWO_PASS_FILTERS:
        return False
    rng = np.random.default_rng(0)
    colour = (122, 116, 104)
    for width, height, target in [(97, 41, 23), (301, 120, 64), (50, 7, 80)]:
        image = PIL.Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        expected = _pad(image, width, colour).resize((target, target), resample=resample)
        if _resize_padded_wide(image, (target, target), resample, colour).tobytes() != expected.tobytes():
            return False
    return True


# Guards the temporary reset of PIL's global LOAD_TRUNCATED_IMAGES flag (see `load_image_file`).
_STRICT_LOAD_LOCK = threading.Lock()


def _decode_strictly(image: PIL.Image.Image, name: str) -> PIL.Image.Image:
    """Decode a lazily opened image now; a truncated or corrupt file raises `CorruptImageError` naming it."""
    if not (isinstance(image, PIL.ImageFile.ImageFile) and image.tile):
        return image  # already decoded (or never from a file)
    try:
        if PIL.ImageFile.LOAD_TRUNCATED_IMAGES:  # decode with the flag off (truncation is an error), then restore it
            with _STRICT_LOAD_LOCK:
                previous, PIL.ImageFile.LOAD_TRUNCATED_IMAGES = PIL.ImageFile.LOAD_TRUNCATED_IMAGES, False
                try:
                    image.load()
                finally:
                    PIL.ImageFile.LOAD_TRUNCATED_IMAGES = previous
        else:
            image.load()
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise CorruptImageError(
            f"Cannot decode image file {name!r} ({type(error).__name__}: {error}). The file is corrupt or "
            "truncated: re-download it, or remove it from the dataset."
        ) from error
    return image


def load_image_file(path: str | os.PathLike) -> PIL.Image.Image:
    """Open and fully decode an image file, as the original code did (`Image.open(path)`, no EXIF rotation).

    A truncated or corrupt file raises `CorruptImageError` naming the file, even if some other library set
    PIL's `ImageFile.LOAD_TRUNCATED_IMAGES = True` (PIL would fill the missing rows silently): the global flag
    is off for the duration of the decode, under a lock."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Image file not found: {path!r}. Check the image root and the file name.")
    advice = "It is corrupt or not an image: re-download it, or remove it from the dataset."
    return _open_strictly(path, path, f"image file {path!r}", advice)


def load_image_bytes(data: bytes, name: str) -> PIL.Image.Image:
    """`load_image_file` for the bytes of an encoded image (a dataset row's image); `name` names it in errors."""
    return _open_strictly(io.BytesIO(data), name, f"the image bytes of {name!r}", "They are corrupt or not an image.")


# Seconds to wait for an image URL to answer (transformers' `load_image` waits forever by default).
URL_TIMEOUT = 60.0


def load_image_url(url: str, timeout: float | None = URL_TIMEOUT) -> PIL.Image.Image:
    """Download an http(s) image and decode it strictly, as `load_image_file` does (no EXIF rotation).

    Errors name the URL: `FileNotFoundError` for HTTP 404/410, `ConnectionError` for any other failure to
    download (HTTP error, unreachable host, timeout, cut-off transfer), `CorruptImageError` for bad bytes."""
    request = urllib.request.Request(url, headers={"User-Agent": f"transformers/{transformers.__version__}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            data = response.read()
    except urllib.error.HTTPError as error:
        status = f"HTTP {error.code} {error.reason}"
        if error.code in (404, 410):
            raise FileNotFoundError(f"Image URL not found: {url!r} ({status}). Check the URL.") from error
        raise ConnectionError(f"Cannot download image {url!r}: {status}.") from error
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as error:
        reason = getattr(error, "reason", None) or error
        raise ConnectionError(
            f"Cannot download image {url!r} ({type(error).__name__}: {reason}). Check the URL and the network."
        ) from error
    return _open_strictly(
        io.BytesIO(data), url, f"the image downloaded from {url!r}", "It is not an image (or arrived incomplete)."
    )


def _base64_image(text: str) -> bytes | None:
    """The bytes of a data URI ("data:image/...;base64,...") or of plain base64 text, None if it is neither."""
    if text.startswith("data:"):
        header, _, text = text.partition(",")
        if not header.endswith(";base64"):
            return None
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        return None


def load_image_source(source: str | os.PathLike, timeout: float | None = URL_TIMEOUT) -> PIL.Image.Image:
    """What transformers' `load_image` takes (http(s) URL, file path, data URI or base64 text), decoded strictly.

    Decoding is this module's (no EXIF rotation, truncation is an error), not `load_image`'s. A string that is
    neither a URL, an existing file nor base64 image data raises `FileNotFoundError` naming it.
    """
    if isinstance(source, str) and source.startswith(("http://", "https://")):
        return load_image_url(source, timeout=timeout)
    if isinstance(source, str) and not os.path.isfile(source):
        data = _base64_image(source)
        if source.startswith("data:"):
            name = f"data URI ({source.partition(',')[0][:64]}, {len(source)} characters)"
            if data is None:
                raise CorruptImageError(f"Cannot read the {name}: expected 'data:image/...;base64,' and base64 data.")
            return load_image_bytes(data, name)
        if data:  # base64 text (a chat message's {"type": "image", "base64": ...}) if it holds an image
            try:
                image = PIL.Image.open(io.BytesIO(data))
            except (OSError, SyntaxError, ValueError, EOFError):
                image = None  # not image data: report the missing file below
            if image is not None:
                return _decode_strictly(image, f"base64 text ({len(source)} characters)")
    return load_image_file(source)


def _open_strictly(source: Any, name: str, what: str, advice: str) -> PIL.Image.Image:
    """`PIL.Image.open(source)` and a strict decode; failing to open raises `CorruptImageError` saying `what`
    could not be opened and `advice`."""
    try:
        image = PIL.Image.open(source)
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise CorruptImageError(f"Cannot open {what} ({type(error).__name__}: {error}). {advice}") from error
    return _decode_strictly(image, name)


def _array_to_uint8(array: np.ndarray, channels_first: bool | None) -> np.ndarray:
    """HW / HWC / CHW array of any numeric dtype -> HWC (or HW) uint8, refusing values it cannot map."""
    if array.ndim == 3:
        if channels_first is None:  # arrays default to HWC; CHW only when HWC is impossible
            channels_first = array.shape[-1] not in (1, 3, 4) and array.shape[0] in (1, 3, 4)
        if channels_first:
            array = array.transpose(1, 2, 0)
        if array.shape[-1] not in (1, 3, 4):
            raise ValueError(f"Image array of shape {array.shape} has {array.shape[-1]} channels; expected 1, 3 or 4.")
        if array.shape[-1] == 1:
            array = array[..., 0]
    elif array.ndim != 2:
        raise ValueError(f"Image array must be HW, HWC or CHW; got shape {array.shape}.")
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    if np.issubdtype(array.dtype, np.floating):
        if array.size and (array.min() < 0.0 or array.max() > 1.0):
            raise ValueError(
                f"Float image array has values in [{array.min()}, {array.max()}]; float images must be in [0, 1]. "
                "Pass uint8 pixels (0-255) instead."
            )
        return np.round(array * 255.0).astype(np.uint8)
    if np.issubdtype(array.dtype, np.integer):
        if array.size and (array.min() < 0 or array.max() > 255):
            raise ValueError(
                f"Integer image array ({array.dtype}) has values in [{array.min()}, {array.max()}], outside 0-255. "
                "Convert it to 8-bit first, or pass the PIL image / file path."
            )
        return array.astype(np.uint8)
    raise ValueError(f"Unsupported image array dtype {array.dtype}.")


def _as_tuple(value: Any) -> tuple:
    return tuple(float(x) for x in value) if isinstance(value, Iterable) else (float(value),) * 3


def _size_of(size: SizeDict | dict, name: str) -> tuple[int | None, int | None, int | None]:
    """(shortest_edge, height, width) of a size dict, whichever are set."""
    if size is None:
        raise ValueError(
            f"`{name}` is not set; give e.g. {{'shortest_edge': 336}} or {{'height': 336, 'width': 336}}."
        )
    get = size.get if isinstance(size, dict) else lambda key: getattr(size, key, None)
    shortest, height, width = get("shortest_edge"), get("height"), get("width")
    if shortest is None and (height is None or width is None):
        raise ValueError(f"`{name}` must have 'shortest_edge' or 'height' and 'width'; got {dict(size)}.")
    return shortest, height, width


class ShareGPT4VImageProcessor(PilBackend):
    r"""
    Image processor of ShareGPT4V (LLaVA-1.5 "pad" aspect ratio + CLIP ViT-L/14-336 preprocessing).

    Defaults reproduce the released ShareGPT4V-7B/13B (stage 2 and inference). Stage-1 pretraining used
    `do_pad=False` (plain CLIP resize + centre crop).

    Args:
        do_pad: paste the image centred on a square canvas of its long side filled with the integer mean
            colour before resizing (`image_aspect_ratio "pad"`).
        size: `{"shortest_edge": 336}` (CLIP rule) or `{"height": h, "width": w}`.
        crop_size: centre crop `{"height": 336, "width": 336}`.
        resample: PIL filter of the resize (bicubic).
        rescale_factor, image_mean, image_std: normalization `(x * rescale_factor - mean) / std`.
        do_convert_rgb: convert every image with PIL's `convert("RGB")` (alpha dropped, as the original did).
            If False, images must already be RGB.

    Inputs: PIL images, uint8 numpy arrays (HWC, HW or CHW), torch tensors (CHW or HWC; float in [0, 1]
    is scaled by 255 and rounded), file paths (`str` / `Path`), http(s) URLs, data URIs or base64 text (as
    transformers' `load_image` takes them), or (nested) lists of these.
    Returns `pixel_values`: (N, 3, 336, 336) float32. For preprocessing elsewhere (DataLoader workers, a GPU),
    `uint8_pixels(image)` gives one image before normalization and `uint8_normalization_table()` the lookup
    that normalizes it to the same float32 values.
    """

    model_input_names = ["pixel_values"]
    resample = PILImageResampling.BICUBIC
    image_mean = OPENAI_CLIP_MEAN
    image_std = OPENAI_CLIP_STD
    size = {"shortest_edge": 336}
    default_to_square = False
    crop_size = {"height": 336, "width": 336}
    do_pad = True
    do_resize = True
    do_center_crop = True
    do_rescale = True
    do_normalize = True
    do_convert_rgb = True

    def fetch_images(self, images: Any) -> Any:
        """Load file paths, http(s) URLs, data URIs and base64 text (strictly, no EXIF rotation, as the
        original); leave other images untouched."""
        if isinstance(images, (list, tuple)):
            return [self.fetch_images(image) for image in images]
        if isinstance(images, (str, Path)):
            return load_image_source(images)
        return images

    @staticmethod
    def background_color(image_mean: Iterable[float]) -> tuple[int, ...]:
        """Pad colour: the mean as integers, truncated as LLaVA does (CLIP mean -> (122, 116, 104))."""
        return tuple(int(x * 255) for x in image_mean)

    def uint8_pixels(self, image: Any) -> np.ndarray:
        """One image as (3, H, W) uint8 with this processor's settings: RGB, padded, resized and cropped, not
        yet rescaled or normalized (`uint8_normalization_table()` maps these values to the processor's)."""
        image = self.to_rgb_image(image, self.do_convert_rgb)
        image = self.transform(image, self.do_pad, self.do_resize, self.size, self.resample, self.do_center_crop,
                               self.crop_size, self.background_color(self.image_mean))  # fmt: skip
        return np.ascontiguousarray(np.asarray(image, dtype=np.uint8).transpose(2, 0, 1))

    def uint8_normalization_table(self) -> np.ndarray:
        """`normalization_table` of this processor's rescale and normalize settings: (3, 256) float32."""
        settings = (self.do_rescale, self.rescale_factor, self.do_normalize, self.image_mean, self.image_std)
        return self.normalization_table(*settings)

    def _flatten(self, images: Any) -> list:
        """Nested lists / 4-D batches -> flat list of single images (path, PIL, array or tensor)."""
        if isinstance(images, (list, tuple)):
            return [image for item in images for image in self._flatten(item)]
        if isinstance(images, torch.Tensor):
            images = images.detach().cpu()
            return list(images) if images.ndim == 4 else [images]
        if isinstance(images, np.ndarray):
            return list(images) if images.ndim == 4 else [images]
        if isinstance(images, (str, Path, PIL.Image.Image)):
            return [images]
        raise TypeError(
            f"Unsupported image input of type {type(images).__name__}; pass PIL images, numpy arrays, "
            "torch tensors, file paths, or lists of these."
        )

    def to_rgb_image(
        self, image: Any, do_convert_rgb: bool = True, input_data_format: str | None = None
    ) -> PIL.Image.Image:
        """One input image -> PIL RGB image exactly as the original pipeline saw it."""
        if isinstance(image, (str, Path)):
            image = load_image_source(image)
        elif isinstance(image, PIL.Image.Image):
            image = _decode_strictly(image, getattr(image, "filename", None) or "<in-memory image>")
        else:
            is_tensor = isinstance(image, torch.Tensor)
            array = image.float().numpy() if is_tensor and image.dtype == torch.bfloat16 else np.asarray(image)
            channels_first = None
            if input_data_format is not None:
                channels_first = ChannelDimension(input_data_format) == ChannelDimension.FIRST
            if channels_first is None and is_tensor and array.ndim == 3:  # tensors default to CHW
                channels_first = array.shape[0] in (1, 3, 4) or array.shape[-1] not in (1, 3, 4)
            image = PIL.Image.fromarray(_array_to_uint8(array, channels_first))
        if image.mode != "RGB":
            if not do_convert_rgb:
                raise ValueError(f"Image has mode {image.mode!r}; set `do_convert_rgb=True` to convert it to RGB.")
            image = image.convert("RGB")
        return image

    def transform(
        self,
        image: PIL.Image.Image,
        do_pad: bool,
        do_resize: bool,
        size: SizeDict | dict,
        resample: Any,
        do_center_crop: bool,
        crop_size: SizeDict | dict,
        background_color: tuple[int, ...],
    ) -> PIL.Image.Image:
        """Pad to square, resize and centre crop one RGB image, all in PIL on uint8."""
        resample = PIL.Image.Resampling(int(resample))
        width, height = image.size
        padded = do_pad and width != height
        if padded and not (width > height and do_resize and _can_resize_padded_wide(resample)):
            image = _pad(image, max(width, height), background_color)  # exactly as the original did
            width = height = max(width, height)
            padded = False
        if do_resize:
            shortest, new_height, new_width = _size_of(size, "size")
            if shortest is not None:  # CLIP's rule: short side -> shortest, long side scaled and truncated
                if padded:  # the padded canvas is square
                    new_width = new_height = shortest
                else:
                    short, long = min(width, height), max(width, height)
                    new_short, new_long = shortest, int(shortest * long / short)
                    new_width, new_height = (new_short, new_long) if width <= height else (new_long, new_short)
            if padded:
                image = _resize_padded_wide(image, (new_width, new_height), resample, background_color)
            elif (new_width, new_height) != (width, height):
                image = image.resize((new_width, new_height), resample=resample)
            width, height = new_width, new_height
        if do_center_crop:
            _, crop_height, crop_width = _size_of(crop_size, "crop_size")
            if (crop_width, crop_height) != (width, height):
                # Floor offsets; PIL fills outside the image with zeros, as transformers' center_crop pads.
                left, top = (width - crop_width) // 2, (height - crop_height) // 2
                image = image.crop((left, top, left + crop_width, top + crop_height))
        return image

    @staticmethod
    @functools.lru_cache(maxsize=16)
    def normalization_constants(
        do_rescale: bool, rescale_factor: float, do_normalize: bool, image_mean: tuple, image_std: tuple
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel float32 (scale, offset) with x * scale - offset == (x * rescale_factor - mean) / std."""
        factor = rescale_factor if do_rescale else 1.0
        mean = np.broadcast_to(np.asarray(image_mean if do_normalize else 0.0, dtype=np.float64), (3,))
        std = np.broadcast_to(np.asarray(image_std if do_normalize else 1.0, dtype=np.float64), (3,))
        scale, offset = factor / std, mean / std
        return scale.astype(np.float32), offset.astype(np.float32)

    def preprocess(self, images: Any, *args, **kwargs) -> BatchFeature:
        """Preprocess an image or a batch of images (see the class docstring)."""
        if args or set(kwargs) - {"return_tensors"}:
            return super().preprocess(images, *args, **kwargs)
        # Only `return_tensors`: the instance's settings, not re-validated per call (a share of a ~3 ms image).
        settings = {name: getattr(self, name, None) for name in self._valid_kwargs_names}
        settings["return_tensors"] = kwargs.get("return_tensors")
        return self._preprocess_image_like_inputs(images, **settings)

    @classmethod
    def normalization_table(
        cls, do_rescale: bool, rescale_factor: float, do_normalize: bool, image_mean: Any, image_std: Any
    ) -> np.ndarray:
        """(3, 256) float32 lookup table: table[c, v] is bit for bit what the processor outputs for value v
        in channel c (same float32 operations), for normalising uint8 pixels elsewhere (e.g. on a GPU)."""
        scale, offset = cls.normalization_constants(
            bool(do_rescale), float(rescale_factor), bool(do_normalize), _as_tuple(image_mean), _as_tuple(image_std)
        )
        values = np.arange(256, dtype=np.uint8)[None, :]
        return np.subtract(np.multiply(values, scale[:, None]), offset[:, None])

    def _preprocess_image_like_inputs(
        self,
        images: Any,
        *args,
        do_convert_rgb: bool = True,
        do_pad: bool = True,
        do_resize: bool = True,
        size: SizeDict | dict | None = None,
        resample: Any = None,
        do_center_crop: bool = True,
        crop_size: SizeDict | dict | None = None,
        do_rescale: bool = True,
        rescale_factor: float = 1 / 255,
        do_normalize: bool = True,
        image_mean: Any = None,
        image_std: Any = None,
        input_data_format: str | None = None,
        return_tensors: str | TensorType | None = None,
        **kwargs,
    ) -> BatchFeature:
        if images is None:
            raise ValueError("No images given: pass a PIL image, array, tensor, file path, or a list of them.")
        image_mean = self.image_mean if image_mean is None else image_mean
        image_std = self.image_std if image_std is None else image_std
        resample = PILImageResampling.BICUBIC if resample is None else resample
        background = self.background_color(image_mean)
        scale, offset = self.normalization_constants(
            bool(do_rescale), float(rescale_factor), bool(do_normalize), _as_tuple(image_mean), _as_tuple(image_std)
        )

        flat = self._flatten(images)
        planes = []  # per image: its R, G and B planes as uint8 arrays (PIL writes them out planar, fast)
        for image in flat:
            image = self.to_rgb_image(image, do_convert_rgb, input_data_format)
            image = self.transform(image, do_pad, do_resize, size, resample, do_center_crop, crop_size, background)
            shape = (image.height, image.width)
            planes.append([np.frombuffer(image.tobytes("raw", band), np.uint8).reshape(shape) for band in "RGB"])

        if planes and all(image[0].shape == planes[0][0].shape for image in planes):
            batch = np.empty((len(planes), 3) + planes[0][0].shape, dtype=np.float32)
        else:  # sizes differ (resize / crop disabled): one array per image, cannot be stacked
            batch = [np.empty((3,) + image[0].shape, dtype=np.float32) for image in planes]
        for image, out in zip(planes, batch, strict=True):
            for channel in range(3):  # x * (factor / std) - mean / std, in float32 (see normalization_table)
                np.multiply(image[channel], scale[channel], out=out[channel])
                np.subtract(out[channel], offset[channel], out=out[channel])
        pixel_values = batch if return_tensors is not None and isinstance(batch, np.ndarray) else list(batch)
        return BatchFeature(data={"pixel_values": pixel_values}, tensor_type=return_tensors)


ShareGPT4VImageProcessor.register_for_auto_class("AutoImageProcessor")

__all__ = ["CorruptImageError", "ShareGPT4VImageProcessor"]
__all__ += ["load_image_bytes", "load_image_file", "load_image_source", "load_image_url"]
