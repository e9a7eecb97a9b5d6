"""Invisible image watermark carrying a 48-bit registry id (``io.dhstudio.watermark.image.v2``).

Design (details in ``_core``, ``_sync`` and ``_ecc``):

* Payload: 48-bit id + CRC-32 of the id = 80 bits, scrambled with a key-derived
  mask, convolutionally coded (K=7, rate 1/3, zero tail) into 258 channel bits.
* Carrier: a keyed grid of 128 x 128 smooth "chips" tied to the image's long
  edge (anchored top-left). ~37 % are pilot chips (known keyed +-1, used to
  find scale and shift), the rest carry the channel bits, each bit spread over
  ~40 keyed, scattered chips. The grid is bilinearly upsampled, modulated by a
  mild texture mask, scaled to a target PSNR (42 dB for the chips, ``strength=1``) and
  added equally to R, G and B (a luma-only change).
* v2 adds a geometric template (``_sync``): four keyed cosine gratings below the chip band,
  weighted by the same mask, at 0.55 of the chips' RMS (41 dB for the whole mark).
* Resizes that keep the aspect ratio cancel out (the grid follows the long
  edge); crops become a shift + scale, found by FFT cross-correlation of the
  whitened luma with the pilot over a small set of scales (0.97-1.15): the first path.
* When the first path finds nothing, the second (``_sync``) looks for the template's peaks in the
  spectrum over mirror, rotation (+-6 degrees), scale (long edge 0.45-1.3 of the original's) and
  aspect ratio (0.88-1.14), undoes the best hypotheses and finds the shift over the whole grid:
  rotated, mirrored, re-framed (16:9 <-> 9:16) and stretched images.
* Decision rule: ``found`` only if a decoded word passes the CRC-32 check.
  First path: at most ``MAX_ATTEMPTS`` = 8 (scale, shift) candidates, each read
  by two message readers, each decoded by a list Viterbi decoder keeping the
  4 best paths: ``WORDS_PER_IMAGE`` = 64 words. Second path: ``_sync.MAX_HYPOTHESES`` = 3
  geometries x 1 shift x 2 readers x 4 paths = ``WORDS_GEOMETRIC`` = 24 words.
  False-positive bound: for an unmarked image each word passes the CRC with
  probability 2**-32, so P(found | unmarked) <= 88 * 2**-32 ~= 2.0e-8
  (``WatermarkResult.false_positive_bound``). Measured: 0 hits on the unmarked
  sets of the benchmark (see BENCHMARKS.md).
* v1 images (no template) are still read by the first path: the chips are the same.

``WatermarkResult.confidence``: 0.0 when not found; when found,
``1 - 2 * bit_errors / n_channel_bits`` clipped to [0, 1], where ``bit_errors``
counts the channel bits whose hard decision disagrees with the re-encoded
decoded word (1.0 = clean channel; the CRC, not this number, makes the
decision).

The default key is public (it makes the mark detectable by anyone running this
code); deployments that want a secret mark pass their own ``key``.

Files (:func:`decode_file`, :func:`embed_file`) take a path, the file's bytes or a binary file
object, and are bounded (limits in :mod:`provenance.limits`, each a one-line ``limit.*``
InputError): the pixel count is checked from the header before decoding; a PNG reaches Pillow
without its ancillary chunks (a 2 MB text or ICC chunk cannot make it unreadable); a JPEG much
larger than the decoder's 512 px working size is decoded DCT-scaled; the luma, its reduction and
the embedded delta are computed in strips of ``_core.STRIP_PIXELS`` pixels, so no full-size float
copy exists. Images up to one strip (8.4 megapixels) are processed exactly as before; larger ones
differ by float rounding only.
"""

from __future__ import annotations

import functools
import io
import os
import re
import struct
import warnings
import zlib
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
from PIL import Image, UnidentifiedImageError

from .. import limits as _limits
from .. import media
from ..errors import InputError, OutputError, WatermarkError
from ..limits import Limits
from . import _core, _ecc, _sync

ALGORITHM = "io.dhstudio.watermark.image.v2"
ALGORITHMS_READ = (ALGORITHM, "io.dhstudio.watermark.image.v1")  # v1 marks are read by the first path
ID_BITS = _ecc.ID_BITS
DEFAULT_KEY = b"io.dhstudio.watermark.v1/public"
DEFAULT_STRENGTH = 1.0
MAX_ATTEMPTS = _core.MAX_ATTEMPTS
WORDS_PER_IMAGE = _core.WORDS_PER_IMAGE
WORDS_GEOMETRIC = _sync.WORDS_GEOMETRIC
FALSE_POSITIVE_BOUND = (WORDS_PER_IMAGE + WORDS_GEOMETRIC) * 2.0 ** -_ecc.CRC_BITS
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


def _apply_delta(rgb: np.ndarray, delta: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    if out is None:
        out = np.empty(rgb.shape, dtype=np.uint8)
    tmp = np.empty(rgb.shape[:2], dtype=np.float32)
    d = delta + np.float32(0.5)  # round half up after adding
    for c in range(rgb.shape[2]):
        np.add(rgb[:, :, c], d, out=tmp)
        np.clip(tmp, 0.0, 255.0, out=tmp)
        out[:, :, c] = tmp  # float -> uint8 truncates, i.e. rounds because of +0.5
    return out


def _luma_rows(base: np.ndarray):
    """rows(y0, y1) -> float32 luma of ``base`` (h x w x 1 or x 3 uint8), as embed_image always
    computed it (a gray image is weighted like three equal channels)."""
    def rows(y0: int, y1: int) -> np.ndarray:
        b = base[y0:y1]
        if b.shape[2] == 1:
            g = b[:, :, 0]
            y = g * np.float32(0.299)
            y += g * np.float32(0.587)
            y += g * np.float32(0.114)
            return y
        return luma(b)
    return rows


def _sq_err(a: np.ndarray, b: np.ndarray) -> int:
    """Exact sum of squared differences of two uint8 arrays (h x w x c), one channel at a time."""
    total = 0
    for c in range(a.shape[2]):
        d = np.subtract(a[:, :, c], b[:, :, c], dtype=np.int16)
        total += int(np.sum(np.square(d, dtype=np.int32), dtype=np.int64))
    return total


def check_embed_pixels(w: int, h: int, limits: Limits | None = None, what: str = "image") -> None:
    """Raise InputError ``limit.image_pixels`` when a w x h image is over the embedding limit."""
    lim = _limits.resolve(limits)
    if w * h > lim.max_embed_pixels:
        raise InputError(f"{what} is {w}x{h} ({_limits.mp(w * h)}), over the {_limits.mp(lim.max_embed_pixels)} "
                         f"limit for watermarking ({lim.env_var('max_embed_pixels')})", code="limit.image_pixels")


def embed_image(rgb: np.ndarray, wm_id: int, *, key: bytes = DEFAULT_KEY,
                strength: float = DEFAULT_STRENGTH, limits: Limits | None = None) -> np.ndarray:
    """Return a watermarked copy of an HxWx3 uint8 image (HxW gray and HxWx4 are accepted;
    the output has the input's shape and the alpha channel is kept).

    ``strength`` scales the watermark amplitude: 1.0 targets 42 dB PSNR (clipping at 0/255
    only raises it); PSNR drops by 20*log10(strength) dB.

    Memory: the output array plus float32 strips (``_core.STRIP_PIXELS``); images over
    ``limits.max_embed_pixels`` are refused (InputError ``limit.image_pixels``).
    """
    wm_id = _check_id(wm_id)
    if not strength > 0:
        raise ValueError("strength must be > 0")
    a = np.asarray(rgb)
    if a.dtype != np.uint8:
        raise WatermarkError(f"expected a uint8 image array, got dtype {a.dtype}")
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (1, 3, 4))):
        raise WatermarkError(f"expected an HxW, HxWx3 or HxWx4 image array, got shape {a.shape}")
    h, w = a.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise WatermarkError(f"image too small to watermark ({w}x{h}); need at least {MIN_SIDE} px per side")
    check_embed_pixels(w, h, limits)
    base = a[:, :, None] if a.ndim == 2 else a[:, :, :3]
    result = np.empty(a.shape, dtype=np.uint8)
    out = result[:, :, None] if a.ndim == 2 else result[:, :, :3]
    if a.ndim == 3 and a.shape[2] == 4:
        result[:, :, 3] = a[:, :, 3]
    inter, fx, fy = _core.to_intermediate_rows(h, w, _luma_rows(base))
    plan = _core.DeltaPlan(inter, fx, fy, h, w, wm_id, key, strength)
    sse = 0
    for y0, y1 in plan.strips():
        _apply_delta(base[y0:y1], plan.rows(y0, y1), out=out[y0:y1])
        sse += _sq_err(base[y0:y1], out[y0:y1])
    # clipping at 0/255 removes part of the mark (and raises the PSNR): top the rest up once,
    # so the measured PSNR lands on the target instead of above it
    target = _core.total_target_psnr(strength)
    got = float("inf") if sse == 0 else 10.0 * np.log10(255.0 ** 2 / (sse / base.size))
    if np.isfinite(got) and got > target + 0.25:
        k = np.float32(min(1.6, 10.0 ** ((got - target) / 20.0)))
        for y0, y1 in plan.strips():
            d = plan.rows(y0, y1) * k
            _apply_delta(base[y0:y1], d, out=out[y0:y1])
    return result


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
    res = _core.decode_intermediate(inter, fx, fy, float(max(h, w)), key)
    if not res.get("found"):
        res = _geometric(inter, key, res)
    return _result(res)


def _geometric(inter: np.ndarray, key: bytes, res: dict) -> dict:
    """The second path (``_sync``): a rotated, mirrored, re-framed or stretched image, found by the
    template; ``res`` (the first path's result) is kept, with the template's figures, when it fails."""
    hyps = [g for g in _sync.estimate(_sync.prepare(inter)) if g.z >= _sync.MIN_TEMPLATE_Z]
    res["template_z"] = round(max((g.z for g in hyps), default=0.0), 2)
    got = _sync.decode(inter, key, hyps) if hyps else None
    return got if got is not None else res


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
_GRAY_MODES = ("L", "I;16", "I;16L", "I;16B", "I;16N", "I", "F")
DRAFT_MIN_EDGE = 4 * _core.INTERMEDIATE  # a JPEG is decoded DCT-scaled (1/2..1/8) down to no less than this

_PNG_SIG = b"\x89PNG\r\n\x1a\n"
_PNG_KEEP = {b"IHDR", b"PLTE", b"tRNS", b"IDAT", b"IEND"}
_PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"
_READ_BLOCK = 1 << 20

Source = Union[str, os.PathLike, bytes, bytearray, memoryview, BinaryIO]


@contextmanager
def _binary(source: Source):
    """(seekable binary file object positioned at 0, label for messages) for a path, bytes or a file object.

    A path is opened (and closed afterwards); bytes are wrapped in BytesIO; a file object is used
    as is (from its start, as Pillow does) and left open."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        yield io.BytesIO(source), "image"
        return
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise InputError(f"cannot read {path}: no such file")
        try:
            f = open(path, "rb")
        except OSError as e:
            raise InputError(f"cannot read {path}: {e.strerror or e}") from None
        with f:
            yield f, str(path)
        return
    if not hasattr(source, "read"):
        raise TypeError(f"expected a path, bytes or a binary file object, got {type(source).__name__}")
    fp = source
    try:
        fp.seek(0)
    except (AttributeError, OSError, io.UnsupportedOperation):
        fp = io.BytesIO(source.read())
    yield fp, str(getattr(source, "name", "") or "image")


def _read_exact(fp, n: int) -> bytes:
    """Up to n bytes, read in blocks (a corrupt length must not allocate n bytes up front)."""
    if n <= _READ_BLOCK:
        return fp.read(n)
    parts, left = [], n
    while left > 0:
        b = fp.read(min(left, _READ_BLOCK))
        if not b:
            break
        parts.append(b)
        left -= len(b)
    return b"".join(parts)


def _png_for_pillow(fp, label: str, max_pixels: int, pixels_var: str, purpose: str, lim: Limits,
                    want_meta: bool = False) -> tuple[io.BytesIO, dict]:
    """The PNG in ``fp`` reduced to the chunks the pixels need (IHDR, PLTE, tRNS, IDAT, IEND),
    for Pillow. Text, ICC, EXIF and every other ancillary chunk are skipped unread (Pillow refuses
    a text or ICC chunk that inflates past 1 MB, which would make a harmless PNG undecodable).
    The size in IHDR is checked against ``max_pixels`` before any pixel is decoded. With
    ``want_meta`` the ICC profile (iCCP, inflated up to ``lim.max_icc_bytes``) and EXIF (eXIf)
    come back as Pillow's ``info`` keys ``icc_profile`` and ``exif``."""
    fp.seek(0)
    out = io.BytesIO()
    out.write(fp.read(8))
    meta: dict = {}
    n_chunks = 0
    seen_end = False
    while True:
        hdr = fp.read(8)
        if len(hdr) < 8:
            break
        length, ctype = struct.unpack(">I4s", hdr)
        if length > 0x7FFFFFFF:
            raise InputError(f"cannot decode image {label}: corrupt PNG chunk length")
        n_chunks += 1
        if n_chunks > lim.max_png_chunks:
            raise InputError(f"cannot decode image {label}: more than {lim.max_png_chunks} PNG chunks "
                             f"({lim.env_var('max_png_chunks')})", code="limit.png_chunks")
        if ctype in _PNG_KEEP:
            body = _read_exact(fp, length + 4)
            out.write(hdr)
            out.write(body)
            if ctype == b"IHDR" and len(body) >= 8:
                w, h = struct.unpack(">II", body[:8])
                _check_pixels(w, h, max_pixels, pixels_var, purpose, label)
            if ctype == b"IEND":
                seen_end = True
                break
        elif want_meta and ctype in (b"iCCP", b"eXIf"):
            body = _read_exact(fp, length + 4)[:length]
            if ctype == b"eXIf":
                meta["exif"] = b"Exif\x00\x00" + body
            else:
                icc = _inflate_icc(body, label, lim)
                if icc:
                    meta["icc_profile"] = icc
        else:
            fp.seek(length + 4, io.SEEK_CUR)
    if not seen_end:
        out.write(_PNG_IEND)
    out.seek(0)
    return out, meta


def _inflate_icc(body: bytes, label: str, lim: Limits) -> bytes | None:
    i = body.find(b"\0")
    if i < 0 or i + 1 >= len(body) or body[i + 1] != 0:
        return None  # malformed: drop the profile, keep the pixels
    d = zlib.decompressobj()
    try:
        icc = d.decompress(body[i + 2:], lim.max_icc_bytes + 1)
    except zlib.error:
        return None
    if len(icc) > lim.max_icc_bytes:
        raise InputError(f"{label}: ICC profile over the {lim.max_icc_bytes >> 20} MB limit "
                         f"({lim.env_var('max_icc_bytes')})", code="limit.icc_bytes")
    return icc


def _check_pixels(w: int, h: int, max_pixels: int, var: str, purpose: str, label: str) -> None:
    if w * h > max_pixels:
        raise InputError(f"{label}: image is {w}x{h} ({_limits.mp(w * h)}), over the {_limits.mp(max_pixels)} "
                         f"limit for {purpose} ({var})", code="limit.image_pixels")


_NEVER_OPEN = {"EPS"}  # Pillow hands EPS to Ghostscript: not a format a watermark decoder needs


@functools.cache
def _register_heif() -> bool:
    """Let Pillow decode HEIC/HEIF photos when pillow-heif (the ``faces`` extra) is installed."""
    try:
        from pillow_heif import register_heif_opener
    except ImportError:
        return False
    register_heif_opener()
    return True


def _decodable_formats() -> list[str]:
    _register_heif()
    Image.init()
    return [f for f in Image.ID if f not in _NEVER_OPEN]


@contextmanager
def open_image(source: Source, lim: Limits | None = None, *, embed: bool = False, draft: bool = False,
               purpose: str | None = None):
    """Open and load an image (path, bytes or file object) within the pixel limit: the one bounded
    image opener of dhstudio (the watermark's decoder and embedder, ``detect``'s face scoring).

    Yields (PIL image, info): info holds ``icc_profile``/``exif``(/``dpi``) for embedding. A PNG
    goes to Pillow without its ancillary chunks (see :func:`_png_for_pillow`). With ``draft`` a
    large JPEG is decoded DCT-scaled to a long edge of at least DRAFT_MIN_EDGE. The size is checked
    before any pixel is decoded. Every failure is a one-line InputError: over the pixel limit
    ``limit.image_pixels`` (Pillow's own decompression-bomb error too), undecodable data
    ``input.invalid``; with ``embed``, formats other than JPEG, PNG and WebP are refused unread.
    ``purpose`` names the use in the limit's message."""
    lim = _limits.resolve(lim)
    if embed:
        max_pixels, var, use = lim.max_embed_pixels, lim.env_var("max_embed_pixels"), "watermarking"
    else:
        max_pixels, var, use = lim.max_image_pixels, lim.env_var("max_image_pixels"), "watermark decoding"
    purpose = purpose or use
    with _binary(source) as (fp, label):
        im = None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                head = fp.read(8)
                fp.seek(0)
                info: dict = {}
                if head == _PNG_SIG:
                    png, info = _png_for_pillow(fp, label, max_pixels, var, purpose, lim, want_meta=embed)
                    im = Image.open(png, formats=["PNG"])
                else:
                    im = Image.open(fp, formats=_decodable_formats())
                    _check_pixels(im.size[0], im.size[1], max_pixels, var, purpose, label)
                    if embed:
                        info = {k: im.info[k] for k in ("icc_profile", "exif", "dpi") if im.info.get(k)}
                if embed and im.format not in _FORMATS:
                    where = f" for {label}" if label != "image" else ""
                    raise InputError(f"unsupported image format {im.format or 'unknown'}{where}; "
                                     "expected JPEG, PNG or WebP")
                if draft and im.format in ("JPEG", "MPO") and max(im.size) >= 2 * DRAFT_MIN_EDGE:
                    long_edge = max(im.size)
                    im.draft(None, tuple(max(2 * MIN_SIDE, -(-side * DRAFT_MIN_EDGE // long_edge))
                                         for side in im.size))
                im.load()
        except InputError:
            if im is not None:
                im.close()
            raise
        except Image.DecompressionBombError:
            if im is not None:
                im.close()
            cap = min(max_pixels, 2 * (Image.MAX_IMAGE_PIXELS or max_pixels))
            raise InputError(f"{label}: image over the {_limits.mp(cap)} limit for {purpose} ({var})",
                             code="limit.image_pixels") from None
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError, struct.error, zlib.error) as e:
            if im is not None:
                im.close()
            # Pillow names an in-memory file by its repr (an address): say "the data" so that messages are stable
            msg = re.sub(r"<_io\.\w+ object at 0x[0-9a-fA-F]+>", "the data", str(e))
            raise InputError(f"cannot decode image {label}: {msg}".splitlines()[0]) from None
        try:
            yield im, info
        finally:
            im.close()


def _has_alpha(im: Image.Image) -> bool:
    return im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info)


def _to_array(im: Image.Image) -> tuple[np.ndarray, bool]:
    """RGB(A) uint8 array and whether it has alpha (converted strip by strip: no full-size
    intermediate image besides the result)."""
    has_alpha = _has_alpha(im)
    mode = "RGBA" if has_alpha else "RGB"
    w, h = im.size
    if h <= _core.strip_rows(w):
        return np.asarray(im if im.mode == mode else im.convert(mode)), has_alpha
    arr = np.empty((h, w, len(mode)), dtype=np.uint8)
    for y0, y1 in _core.strips(h, w):
        part = im.crop((0, y0, w, y1))
        arr[y0:y1] = np.asarray(part if part.mode == mode else part.convert(mode))
    return arr, has_alpha


def embed_file(src: Source, dst: Path, wm_id: int, *, limits: Limits | None = None, **kw) -> None:
    """Watermark an image file. JPEG -> JPEG q95 (4:4:4, ICC/EXIF kept), PNG -> PNG (lossless,
    ICC/EXIF kept, other ancillary chunks dropped), WebP -> WebP lossless. The write is atomic
    (temp file in dst's folder + os.replace). ``src`` is a path, bytes or a binary file object.
    Keyword arguments go to :func:`embed_image` (``key``, ``strength``).

    Images over ``limits.max_embed_pixels`` are refused before decoding (InputError
    ``limit.image_pixels``). Peak memory is about 7 bytes per pixel (decoded source, marked
    pixels, output image) plus float32 strips."""
    wm_id = _check_id(wm_id)
    lim = _limits.resolve(limits)
    dst = Path(dst)
    with open_image(src, lim, embed=True) as (im, info):
        fmt = im.format
        arr, has_alpha = _to_array(im)
    out = embed_image(arr, wm_id, limits=lim, **kw)
    del arr
    out_im = Image.fromarray(out, "RGBA" if has_alpha else "RGB")
    del out
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
    with media.atomic_target(dst) as tmp:
        out_im.save(tmp, format=fmt, **save_kw)


def decode_file(source: Source, *, key: bytes = DEFAULT_KEY, limits: Limits | None = None) -> WatermarkResult:
    """Decode the watermark from an image: a path, the file's bytes or a binary file object.

    Any format Pillow reads (JPEG, PNG, WebP, TIFF, GIF, BMP, PPM/PGM, AVIF, ...; the first frame
    of an animation). Bounded: a PNG is handed to Pillow without its ancillary chunks (a huge text
    or ICC chunk cannot make it unreadable), a JPEG much larger than the decoder's 512 px working
    size is decoded DCT-scaled (long edge >= DRAFT_MIN_EDGE), the luma and its reduction are
    computed strip by strip, and images over ``limits.max_image_pixels`` are refused before
    decoding: InputError ``limit.image_pixels`` (one line). Unreadable data: InputError."""
    lim = _limits.resolve(limits)
    with open_image(source, lim, draft=True) as (im, _info):
        w, h = im.size
        if min(h, w) < MIN_SIDE:
            return WatermarkResult(False, None, 0.0, None, FALSE_POSITIVE_BOUND,
                                   {"reason": f"image too small ({w}x{h}); need {MIN_SIDE} px per side",
                                    "max_attempts": MAX_ATTEMPTS})
        gray = im.mode in _GRAY_MODES
        mode = "L" if gray else ("RGBA" if _has_alpha(im) else "RGB")

        def rows(y0: int, y1: int) -> np.ndarray:
            part = im if (y0, y1) == (0, h) else im.crop((0, y0, w, y1))
            a = np.asarray(part if part.mode == mode else part.convert(mode))
            return a.astype(np.float32) if gray else luma(a)

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                inter, fx, fy = _core.to_intermediate_rows(h, w, rows)
        except (OSError, ValueError) as e:
            raise InputError(f"cannot decode image: {e}".splitlines()[0]) from None
    return _result(_core.decode_intermediate(inter, fx, fy, float(max(h, w)), key))
