"""Input images for face detection: arrays, Pillow images or files, made RGB uint8 and bounded.

Files are never decoded unbounded: a JPEG larger than ``max_side`` is decoded at 1/2, 1/4 or 1/8
scale by the JPEG decoder itself (Pillow ``draft``), any other format over ``MAX_DECODE_PIXELS`` is
refused before decoding. EXIF orientation is applied, so coordinates are those of the image as a
viewer shows it, at its full stored resolution.
"""

from __future__ import annotations

import functools
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

#: Longest side kept when a file is loaded (larger JPEGs are decoded smaller, others resized).
MAX_LOAD_SIDE = 4096
#: Non-JPEG files with more pixels than this are refused (50 MP: a 8660x5773 PNG).
MAX_DECODE_PIXELS = 50_000_000


@dataclass
class Loaded:
    """An input made ready: ``rgb`` (H,W,3) uint8 and ``to_input`` (multiply ``rgb`` pixel
    coordinates by it to get coordinates in the image as given: 1 for arrays, > 1 for files decoded
    smaller), and ``size`` (W, H) of the image as given."""

    rgb: np.ndarray
    to_input: float
    size: tuple[int, int]


def _check_array(a: np.ndarray) -> np.ndarray:
    if a.dtype == np.uint16:
        a = (a >> 8).astype(np.uint8)
    if a.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image array (H,W), (H,W,1), (H,W,3) or (H,W,4), got dtype {a.dtype} "
                         f"shape {a.shape}")
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    elif a.ndim == 3 and a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    elif a.ndim == 3 and a.shape[2] == 4:
        a = a[:, :, :3]
    elif not (a.ndim == 3 and a.shape[2] == 3):
        raise ValueError(f"expected an image array (H,W), (H,W,1), (H,W,3) RGB or (H,W,4) RGBA, got shape {a.shape}")
    return np.ascontiguousarray(a)


def _pil_to_rgb(im: Image.Image) -> np.ndarray:
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        a = np.asarray(im, dtype=np.float64)
        hi = a.max() if a.size else 1.0
        a = np.clip(a / (hi if hi > 0 else 1.0) * 255.0, 0, 255).astype(np.uint8)
        return _check_array(a)
    if im.mode != "RGB":
        im = im.convert("RGB")  # L, LA, P, PA, RGBA (alpha dropped), CMYK, YCbCr, ...
    return np.asarray(im)


@functools.cache
def _register_heif() -> bool:
    """Let Pillow open HEIC/HEIF photos when pillow-heif (the ``faces`` extra) is installed (the
    same registration as ``provenance.watermark.image``'s opener: reconstruct imports no other
    package of ours)."""
    try:
        from pillow_heif import register_heif_opener
    except ImportError:
        return False
    register_heif_opener()
    return True


def _open(path: Path) -> Image.Image:
    _register_heif()
    # Pillow warns from 89 MP on (and refuses from 179 MP): we decode big JPEGs at reduced scale
    # and refuse other formats over MAX_DECODE_PIXELS ourselves
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        return Image.open(path)


def load_image(path: str | os.PathLike, max_side: int = MAX_LOAD_SIDE) -> Loaded:
    """Read an image file bounded (see the module doc). ValueError when it cannot be read or is over
    the limits."""
    path = Path(path)
    try:
        with _open(path) as im:
            w, h = im.size
            fmt = im.format
            if fmt == "JPEG":
                if max(w, h) > max_side:
                    # the decoder skips DCT detail: 1/2, 1/4 or 1/8 scale, never under max_side
                    im.draft(None, (math.ceil(w * max_side / max(w, h)), math.ceil(h * max_side / max(w, h))))
            elif w * h > MAX_DECODE_PIXELS:
                raise ValueError(f"{path}: {w}x{h} is over the {MAX_DECODE_PIXELS // 1_000_000} MP limit "
                                 f"for {fmt} input")
            im.load()
            swap = im.getexif().get(0x0112, 1) in (5, 6, 7, 8)  # EXIF orientation turns it 90 deg
            im = ImageOps.exif_transpose(im)
            if max(im.size) > max_side:
                f = max_side / max(im.size)
                im = im.resize((max(1, round(im.size[0] * f)), max(1, round(im.size[1] * f))),
                               Image.Resampling.BILINEAR, reducing_gap=2.0)
            rgb = _pil_to_rgb(im)
    except (OSError, Image.DecompressionBombError, SyntaxError) as e:
        raise ValueError(f"{path}: cannot read the image ({e})") from None
    full = (h, w) if swap else (w, h)  # the image as given: stored size, EXIF rotation applied
    to_input = full[0] / rgb.shape[1]
    return Loaded(rgb, float(to_input), (int(full[0]), int(full[1])))


def prepare(image) -> Loaded:
    """An ndarray (uint8 gray / RGB / RGBA, or uint16), a Pillow image, or a path -> Loaded."""
    if isinstance(image, np.ndarray):
        rgb = _check_array(image)
        return Loaded(rgb, 1.0, (rgb.shape[1], rgb.shape[0]))
    if isinstance(image, Image.Image):  # already decoded, like an array: used as it is
        rgb = _pil_to_rgb(image)
        return Loaded(rgb, 1.0, (rgb.shape[1], rgb.shape[0]))
    if isinstance(image, (str, os.PathLike)):
        return load_image(image)
    raise TypeError(f"expected an image array, a PIL.Image or a path, got {type(image).__name__}")
