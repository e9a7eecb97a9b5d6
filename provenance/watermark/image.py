"""Invisible image watermark carrying a 48-bit registry id (``io.dhstudio.watermark.image.v1``).

Design (details in ``_core`` and ``_ecc``):

* Payload: 48-bit id + CRC-32 of the id = 80 bits, scrambled with a key-derived
  mask, convolutionally coded (K=7, rate 1/3, zero tail) into 258 channel bits.
* Carrier: a keyed grid of 128 x 128 smooth "chips" tied to the image's long
  edge (anchored top-left). ~37 % are pilot chips (known keyed +-1, used to
  find scale and shift), the rest carry the channel bits, each bit spread over
  ~40 keyed, scattered chips. The grid is bilinearly upsampled, modulated by a
  mild texture mask, scaled to a target PSNR (default 42 dB, ``strength=1``) and
  added equally to R, G and B (a luma-only change).
* Resizes that keep the aspect ratio cancel out (the grid follows the long
  edge); crops become a shift + scale, found by FFT cross-correlation of the
  whitened luma with the pilot over a small set of scales (0.97-1.15).
* Decision rule: ``found`` only if a decoded word passes the CRC-32 check.
  At most ``MAX_ATTEMPTS`` = 8 (scale, shift) candidates are tried, each read
  by two message readers, each decoded by a list Viterbi decoder keeping the
  4 best paths: at most ``WORDS_PER_IMAGE`` = 64 words are checked.
  False-positive bound: for an unmarked image each word passes the CRC with
  probability 2**-32, so P(found | unmarked) <= 64 * 2**-32 ~= 1.5e-8
  (``WatermarkResult.false_positive_bound``). Measured: 0 hits on the unmarked
  sets of the benchmark (see BENCHMARKS.md).

``WatermarkResult.confidence``: 0.0 when not found; when found,
``1 - 2 * bit_errors / n_channel_bits`` clipped to [0, 1], where ``bit_errors``
counts the channel bits whose hard decision disagrees with the re-encoded
decoded word (1.0 = clean channel; the CRC, not this number, makes the
decision).

The default key is public (it makes the mark detectable by anyone running this
code); deployments that want a secret mark pass their own ``key``.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import InputError, OutputError, WatermarkError
from . import _core, _ecc

ALGORITHM = "io.dhstudio.watermark.image.v1"
ID_BITS = _ecc.ID_BITS
DEFAULT_KEY = b"io.dhstudio.watermark.v1/public"
DEFAULT_STRENGTH = 1.0
MAX_ATTEMPTS = _core.MAX_ATTEMPTS
WORDS_PER_IMAGE = _core.WORDS_PER_IMAGE
FALSE_POSITIVE_BOUND = _core.FP_BOUND
MIN_SIDE = _core.MIN_SIDE

__all__ = [
    "ALGORITHM", "ID_BITS", "DEFAULT_KEY", "DEFAULT_STRENGTH", "FALSE_POSITIVE_BOUND",
    "WatermarkResult", "embed_image", "decode_image", "embed_file", "decode_file", "psnr",
]


@dataclass
class WatermarkResult:
    found: bool
    id: int | None
    confidence: float
    bit_errors: int | None
    false_positive_bound: float
    detail: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["algorithm"] = ALGORITHM
        return d


def _check_id(wm_id) -> int:
    if isinstance(wm_id, bool) or not isinstance(wm_id, (int, np.integer)):
        raise ValueError(f"watermark id must be an int in [0, 2^{ID_BITS}), got {type(wm_id).__name__}")
    wm_id = int(wm_id)
    if not 0 <= wm_id < (1 << ID_BITS):
        raise ValueError(f"watermark id must be in [0, 2^{ID_BITS}), got {wm_id}")
    return wm_id


def _as_rgb(arr: np.ndarray) -> np.ndarray:
    a = np.asarray(arr)
    if a.dtype != np.uint8:
        raise WatermarkError(f"expected a uint8 image array, got dtype {a.dtype}")
    if a.ndim == 2:
        return np.repeat(a[:, :, None], 3, axis=2)
    if a.ndim == 3 and a.shape[2] in (3, 4):
        return a[:, :, :3]
    if a.ndim == 3 and a.shape[2] == 1:
        return np.repeat(a, 3, axis=2)
    raise WatermarkError(f"expected an HxW, HxWx3 or HxWx4 image array, got shape {a.shape}")


def luma(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma as float32 (R, G, B weights sum to 1, so an equal RGB delta is a luma delta)."""
    a = np.asarray(rgb)
    if a.ndim == 2:
        return a.astype(np.float32)
    a = a[:, :, :3]
    y = a[:, :, 0] * np.float32(0.299)
    y += a[:, :, 1] * np.float32(0.587)
    y += a[:, :, 2] * np.float32(0.114)
    return y


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB between two uint8 images of the same shape (inf when identical)."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    mse = float(np.mean(d * d))
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0 ** 2 / mse)


def _apply_delta(rgb: np.ndarray, delta: np.ndarray) -> np.ndarray:
    out = np.empty(rgb.shape, dtype=np.uint8)
    tmp = np.empty(rgb.shape[:2], dtype=np.float32)
    d = delta + np.float32(0.5)  # round half up after adding
    for c in range(rgb.shape[2]):
        np.add(rgb[:, :, c], d, out=tmp)
        np.clip(tmp, 0.0, 255.0, out=tmp)
        out[:, :, c] = tmp  # float -> uint8 truncates, i.e. rounds because of +0.5
    return out


def embed_image(rgb: np.ndarray, wm_id: int, *, key: bytes = DEFAULT_KEY,
                strength: float = DEFAULT_STRENGTH) -> np.ndarray:
    """Return a watermarked copy of an HxWx3 uint8 image (HxW gray and HxWx4 are accepted;
    the output has the input's shape and the alpha channel is kept).

    ``strength`` scales the watermark amplitude: 1.0 targets 42 dB PSNR (clipping at 0/255
    only raises it); PSNR drops by 20*log10(strength) dB.
    """
    wm_id = _check_id(wm_id)
    if not strength > 0:
        raise ValueError("strength must be > 0")
    a = np.asarray(rgb)
    src = _as_rgb(a)
    h, w = src.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise WatermarkError(f"image too small to watermark ({w}x{h}); need at least {MIN_SIDE} px per side")
    delta = _core.embed_delta(luma(src), wm_id, key, strength)
    base = a[:, :, None] if a.ndim == 2 else src
    out = _apply_delta(base, delta)
    # clipping at 0/255 removes part of the mark (and raises the PSNR): top the rest up once,
    # so the measured PSNR lands on the target instead of above it
    target = _core.TARGET_PSNR - 20.0 * np.log10(strength)
    got = psnr(base, out)
    if np.isfinite(got) and got > target + 0.25:
        delta *= np.float32(min(1.6, 10.0 ** ((got - target) / 20.0)))
        out = _apply_delta(base, delta)
    if a.ndim == 2:
        return out[:, :, 0]
    if a.ndim == 3 and a.shape[2] == 4:
        return np.concatenate([out, a[:, :, 3:]], axis=2)
    if a.ndim == 3 and a.shape[2] == 1:
        return out[:, :, :1]
    return out


def _result(res: dict) -> WatermarkResult:
    detail = {k: v for k, v in res.items() if k not in ("found", "id", "bit_errors")}
    detail["max_attempts"] = MAX_ATTEMPTS
    if res.get("found"):
        n = max(1, int(res.get("n_channel_bits", _ecc.N_CODED)))
        conf = float(np.clip(1.0 - 2.0 * res["bit_errors"] / n, 0.0, 1.0))
        return WatermarkResult(True, int(res["id"]), round(conf, 4), int(res["bit_errors"]),
                               FALSE_POSITIVE_BOUND, detail)
    return WatermarkResult(False, None, 0.0, None, FALSE_POSITIVE_BOUND, detail)


def decode_luma(y: np.ndarray, *, key: bytes = DEFAULT_KEY) -> WatermarkResult:
    """Decode from a float luma plane (HxW)."""
    h, w = y.shape
    if min(h, w) < MIN_SIDE:
        return WatermarkResult(False, None, 0.0, None, FALSE_POSITIVE_BOUND,
                               {"reason": f"image too small ({w}x{h}); need {MIN_SIDE} px per side",
                                "max_attempts": MAX_ATTEMPTS})
    inter, fx, fy = _core.to_intermediate(y)
    return _result(_core.decode_intermediate(inter, fx, fy, float(max(h, w)), key))


def decode_image(rgb: np.ndarray, *, key: bytes = DEFAULT_KEY) -> WatermarkResult:
    """Look for the watermark in an HxWx3 uint8 image (HxW gray, HxWx4 with alpha dropped)."""
    a = np.asarray(rgb)
    if a.dtype != np.uint8:
        raise WatermarkError(f"expected a uint8 image array, got dtype {a.dtype}")
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (3, 4))):
        raise WatermarkError(f"expected an HxW, HxWx3 or HxWx4 image array, got shape {a.shape}")
    return decode_luma(luma(a), key=key)


# ----------------------------------------------------------------------------- files

_FORMATS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp"}


def _open(path: Path) -> Image.Image:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"cannot read {path}: no such file")
    try:
        im = Image.open(path)
        im.load()
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        raise InputError(f"cannot decode image {path}: {e}".splitlines()[0]) from None
    return im


def _to_array(im: Image.Image) -> tuple[np.ndarray, bool]:
    """RGB(A) uint8 array and whether it has alpha."""
    has_alpha = im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info)
    im = im.convert("RGBA" if has_alpha else "RGB")
    return np.asarray(im), has_alpha


def embed_file(src: Path, dst: Path, wm_id: int, **kw) -> None:
    """Watermark an image file. JPEG -> JPEG q95 (4:4:4, ICC/EXIF kept), PNG -> PNG (lossless),
    WebP -> WebP lossless. The write is atomic (temp file in dst's folder + os.replace).
    Keyword arguments go to :func:`embed_image` (``key``, ``strength``)."""
    wm_id = _check_id(wm_id)
    src, dst = Path(src), Path(dst)
    im = _open(src)
    fmt = im.format
    if fmt not in _FORMATS:
        raise InputError(f"unsupported image format {fmt or 'unknown'} for {src}; expected JPEG, PNG or WebP")
    info = {k: im.info[k] for k in ("icc_profile", "exif", "dpi") if im.info.get(k)}
    arr, has_alpha = _to_array(im)
    out = embed_image(arr, wm_id, **kw)
    out_im = Image.fromarray(out, "RGBA" if has_alpha else "RGB")
    save_kw: dict = {}
    if fmt == "JPEG":
        save_kw = {"quality": 95, "subsampling": 0, "optimize": False}
    elif fmt == "PNG":
        save_kw = {"compress_level": 1}
    elif fmt == "WEBP":
        save_kw = {"lossless": True, "quality": 50, "method": 2}
    save_kw.update({k: v for k, v in info.items() if not (fmt == "PNG" and k == "dpi")})
    if not dst.parent.is_dir():
        raise OutputError(f"cannot write {dst}: folder {dst.parent} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=".wm-", suffix=_FORMATS[fmt], dir=dst.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            out_im.save(f, format=fmt, **save_kw)
        os.replace(tmp, dst)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise OutputError(f"cannot write {dst}: {e.strerror or e}") from None
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def decode_file(path: Path, *, key: bytes = DEFAULT_KEY) -> WatermarkResult:
    """Decode the watermark from an image file (any format Pillow reads)."""
    im = _open(Path(path))
    if im.mode in ("L", "I;16", "I", "F"):
        arr = np.asarray(im.convert("L"))
    else:
        arr, _ = _to_array(im)
    return decode_image(arr, key=key)
