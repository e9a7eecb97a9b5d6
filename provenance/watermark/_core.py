"""Luma-domain watermark engine shared by the image and video front ends (private).

Geometry
--------
A keyed pattern lives on a canonical square grid of CHIPS x CHIPS cells
("chips"), anchored at the image's top-left corner and scaled so that the
image's long edge spans CHIPS chips. A landscape image therefore carries the
top rows of the grid, a portrait one the left columns. Because the grid is
tied to the long edge, any aspect-preserving resize leaves the chip grid
unchanged; a crop becomes a shift (the crop offset) plus a scale (original
long edge / cropped long edge, in [1, 1.11] for a 10 % area crop).

Each chip is either a pilot chip (known keyed +-1) or a message chip carrying
one of the 258 channel bits (see _ecc) times a keyed +-1 spreading sign; the
roles come from a keyed permutation, so every channel bit is spread over ~40
chips scattered over the whole grid (a crop only erases a fraction of each).
The chip array is upsampled to the image with bilinear interpolation (smooth,
low/mid frequency: survives blur, JPEG and x0.5 downscales), weighted by a
mild perceptual mask (more in textured areas, less in flat ones) and scaled
so that the RMS change is the one that gives the target PSNR; the same delta
is added to R, G and B (luma only).

Decoding
--------
1. luma -> intermediate image (long edge <= 512, area filter);
2. for each scale hypothesis s: resample to the working grid (2 px per
   chip, i.e. the canonical grid is 256 x 256 px), high-pass (subtract a
   Gaussian local mean) and divide by the local RMS (whitening / robust
   weighting), then FFT cross-correlate with the pilot over shifts covering
   crops of up to ~20 % of each side; coarse scales first, then refine
   around the best peaks;
3. for at most MAX_ATTEMPTS (scale, shift) candidates, in order of pilot
   correlation z-score: resample the luma on the candidate's grid and read
   the message with N_READERS readers in turn, (a) negative Laplacian + local-RMS
   normalisation (_local_norm: flat or dark areas, where the host is quiet, count fully) and
   (b) the spectrally whitened image (_whiten: for periodic or strongly coloured hosts); each
   reads the chips with the adjoint of the embedding interpolation, de-spreads and sums them
   into 258 soft channel bits, and runs a list Viterbi decoder (the LIST_SIZE best paths); the
   first word whose CRC-32 matches is accepted.

Embedding is informed (see informed_amplitudes): the embedder reads its own host with reader
(a) and sets per-bit amplitudes that maximise the expected number of correct channel bits at
equal energy: bits the host already pushes the right way get little, bits it pushes the wrong
way get more, and on very busy hosts bits that cannot be saved are given up rather than fed.

Decision rule and false-positive bound: the watermark is reported found only
when a decoded 80-bit word passes the CRC-32 check. For an unmarked image
each word checked is (modelled as) uniformly random, and at most
WORDS_PER_IMAGE = MAX_ATTEMPTS * N_READERS * LIST_SIZE = 64 words are
checked, so P(found | unmarked) <= 64 * 2**-32 = FP_BOUND (~1.5e-8).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image
from scipy import fft as sfft
from scipy import ndimage
from scipy.special import ndtr as _ndtr

from . import _ecc

CHIPS = 128  # canonical grid side, in chips
UP = 2  # working pixels per chip when decoding
WORK = CHIPS * UP  # canonical working grid side (256)
N_CHIPS = CHIPS * CHIPS
CHIPS_PER_BIT = 40
N_MSG_CHIPS = _ecc.N_CODED * CHIPS_PER_BIT  # 10320; the other 6064 are pilot chips
MIN_SIDE = 64
INTERMEDIATE = 512
MAX_SHIFT = 56  # working px (~22 % of the long edge)
NEG_SHIFT = 6
COARSE_SCALES = tuple(np.round(np.arange(0.98, 1.1401, 0.02), 4))
FINE_STEPS = (-0.01, -0.005, 0.005, 0.01)
N_REFINE = 2
MAX_ATTEMPTS = 8
N_READERS = 2  # message readers per candidate (_local_norm, then _whiten)
LIST_SIZE = 4  # paths per list-Viterbi decode, each checked against the CRC
WORDS_PER_IMAGE = MAX_ATTEMPTS * N_READERS * LIST_SIZE
FP_BOUND = WORDS_PER_IMAGE * 2.0 ** -_ecc.CRC_BITS
TARGET_PSNR = 42.0
MASK_FLOOR = 6.0
A_MIN, A_MAX = 0.4, 3.0
SUBPIXEL_MIN = 0.15
SIGMA_INFORMED = 0.25  # perturbation (in median mark gains) the informed embedder plans for
READ_NORM_SIGMA = 2.0  # working px: local-RMS window of reader (a)
HP_SIGMA = 2.0  # working px
STRIP_PIXELS = 1 << 23  # pixels per strip when large images are processed strip by strip (32 MB float32)
KEEP_PIXELS = 1 << 24  # DeltaPlan keeps the unscaled pattern strips (<= 64 MB) of images up to this size
NORM_SIGMA = 6.0  # working px


@dataclass(frozen=True)
class Layout:
    pn: np.ndarray  # (N_CHIPS,) +-1 float32
    is_msg: np.ndarray  # (N_CHIPS,) bool
    bit_of: np.ndarray  # (N_CHIPS,) int, channel bit index for message chips, -1 otherwise
    pilot_grid: np.ndarray  # (CHIPS, CHIPS) float32: pn on pilot chips, 0 elsewhere


@lru_cache(maxsize=8)
def layout(key: bytes) -> Layout:
    raw = np.frombuffer(_ecc.keyed_bytes(key, b"perm", 8 * N_CHIPS), dtype=np.uint64)
    perm = np.argsort(raw, kind="stable")
    pn = (2.0 * _ecc.keyed_bits(key, b"pn", N_CHIPS) - 1.0).astype(np.float32)
    is_msg = np.zeros(N_CHIPS, dtype=bool)
    is_msg[perm[:N_MSG_CHIPS]] = True
    bit_of = np.full(N_CHIPS, -1, dtype=np.int64)
    bit_of[perm[:N_MSG_CHIPS]] = np.arange(N_MSG_CHIPS) % _ecc.N_CODED
    pilot = np.where(is_msg, 0.0, pn).astype(np.float32).reshape(CHIPS, CHIPS)
    return Layout(pn, is_msg, bit_of, pilot)


def chip_values(wm_id: int, key: bytes) -> np.ndarray:
    lay = layout(key)
    coded = _ecc.conv_encode(_ecc.make_info_word(wm_id, key)).astype(np.float32) * 2 - 1
    vals = lay.pn.copy()
    vals[lay.is_msg] *= coded[lay.bit_of[lay.is_msg]]
    return vals.reshape(CHIPS, CHIPS)


def _resize_f(arr: np.ndarray, size: tuple[int, int], box, resample=Image.BILINEAR) -> np.ndarray:
    im = Image.fromarray(np.ascontiguousarray(arr, dtype=np.float32), mode="F")
    return np.asarray(im.resize(size, resample, box=box), dtype=np.float32)


def upsample_chips(chips: np.ndarray, h: int, w: int) -> np.ndarray:
    """Bilinear map of the canonical chip grid onto an h x w image (long edge = CHIPS chips)."""
    c = max(h, w) / CHIPS  # pixels per chip
    gw, gh = w / c, h / c
    nw, nh = min(CHIPS, int(np.ceil(gw)) + 1), min(CHIPS, int(np.ceil(gh)) + 1)
    return _resize_f(chips[:nh, :nw], (w, h), box=(0.0, 0.0, gw, gh))


def _small_mask(inter: np.ndarray) -> np.ndarray:
    """Mild texture mask on the intermediate image: mean 1, in [0.5, 2]."""
    m1 = ndimage.uniform_filter(inter, 5, mode="reflect")
    m2 = ndimage.uniform_filter(inter * inter, 5, mode="reflect")
    sd = np.sqrt(np.maximum(m2 - m1 * m1, 0.0))
    mask = ndimage.uniform_filter(sd + np.float32(MASK_FLOOR), 5, mode="reflect")
    # near black / white the mark is clipped away: spend the energy elsewhere
    hi = ndimage.maximum_filter(inter, 3, mode="nearest")
    lo = ndimage.minimum_filter(inter, 3, mode="nearest")
    mask *= np.clip((252.0 - hi) / 24.0, 0.15, 1.0) * np.clip((lo - 3.0) / 24.0, 0.15, 1.0)
    mask /= float(np.mean(mask))
    np.clip(mask, 0.5, 2.0, out=mask)
    return mask


def informed_amplitudes(inter: np.ndarray, fx: float, fy: float, h: int, w: int, mask_small: np.ndarray,
                        coded: np.ndarray, key: bytes, rel_rms: float) -> np.ndarray:
    """Per-channel-bit amplitudes (mean square 1 over the bits' chips) that work with the host.

    Works in the decoder's own domain (working grid, reader _local_norm): measures for each channel
    bit k the host's contribution h_k (unmarked image) and the gain g_k of the mark at amplitude 1
    (the reading is close to linear in the amplitudes). For a margin T (in units of the median
    gain) bit k needs a_k = max(A_MIN, (T * median(g) - h_k) / g_k); bits that would need more
    than A_MAX are given up (left at A_MIN) and the others are granted cheapest first until the
    energy of uniform amplitudes is spent; whatever energy is left over scales everything up
    (embed_delta normalises the RMS). Among margins T in [0, 4], the one kept maximises the
    expected number of correct channel bits, sum_k Phi(reading_k / (SIGMA_INFORMED * median(g))),
    i.e. under a Gaussian perturbation of the reading (attacks, rounding) of that size. On quiet
    hosts every bit is granted and T is as large as the budget allows; on busy ones (host
    interference several times the mark) this keeps most bits right with a margin instead of
    spreading the energy over bits that cannot be saved.
    """
    lay = layout(key)
    long_edge = float(max(h, w))
    ih, iw = inter.shape
    chips1 = lay.pn.copy()
    chips1[lay.is_msg] *= coded[lay.bit_of[lay.is_msg]]
    mark = upsample_chips(chips1.reshape(CHIPS, CHIPS), ih, iw) * mask_small
    # amplitude in intermediate-image units giving the target RMS at full resolution
    alpha = np.float32(rel_rms / max(float(np.sqrt(np.mean(mark * mark))), 1e-9))
    r0 = _local_norm(working_image(inter, fx, fy, long_edge, 1.0))
    r1 = _local_norm(working_image(inter + alpha * mark, fx, fy, long_edge, 1.0))
    sh = soft_bits(read_chips(r0, 0, 0), key) * coded
    g = soft_bits(read_chips(r1, 0, 0), key) * coded - sh
    nh, nw = r0.shape
    inside = np.zeros((CHIPS, CHIPS), dtype=bool)
    inside[: int(np.ceil(nh / UP)), : int(np.ceil(nw / UP))] = True
    n_k = np.bincount(lay.bit_of[lay.is_msg & inside.reshape(-1)], minlength=coded.size).astype(np.float64)
    gmax = max(float(np.max(np.abs(g))), 1e-12)
    ok = (g > 1e-6 * gmax) & (n_k > 0)
    amp = np.ones(coded.size)
    if ok.sum() < coded.size // 4:
        return amp
    nk, hk, gk = n_k[ok], sh[ok], g[ok]
    budget = float(np.sum(nk))  # energy of uniform amplitudes
    room = budget - budget * A_MIN * A_MIN  # what is left once every bit has A_MIN
    gm = float(np.median(gk))
    best_j, best_a = -np.inf, None
    for T in np.linspace(0.0, 4.0, 81):
        need = np.maximum((T * gm - hk) / gk, A_MIN)
        extra = nk * (need * need - A_MIN * A_MIN)
        extra[need > A_MAX] = np.inf  # given up
        order = np.argsort(extra, kind="stable")
        n_grant = int(np.searchsorted(np.cumsum(extra[order]), room, side="right"))
        a = np.full(nk.size, A_MIN)
        a[order[:n_grant]] = need[order[:n_grant]]
        f = np.sqrt(budget / max(float(np.sum(nk * a * a)), 1e-12))  # left-over energy scales all up
        j = float(np.sum(_ndtr((hk + f * gk * a) / (SIGMA_INFORMED * gm))))
        if j > best_j:
            best_j, best_a = j, a
    amp[ok] = best_a
    return amp


def strip_rows(w: int) -> int:
    """Rows per strip for an image ``w`` pixels wide (about STRIP_PIXELS pixels per strip)."""
    return max(1, STRIP_PIXELS // max(1, int(w)))


def strips(h: int, w: int):
    """(y0, y1) row ranges covering an h x w image, STRIP_PIXELS pixels or so each."""
    step = strip_rows(w)
    for y0 in range(0, h, step):
        yield y0, min(h, y0 + step)


class DeltaPlan:
    """The luma delta of :func:`embed_delta`, produced strip by strip: ``rows(y0, y1)`` returns the
    float32 delta of rows y0..y1-1, so a large image never holds a full-size float pattern.

    Built from the intermediate image (``to_intermediate`` or ``to_intermediate_rows`` of the
    luma): mask, informed amplitudes and chip values are small. An image of at most
    ``STRIP_PIXELS`` pixels is one strip, computed exactly as before (the pattern is kept); a
    larger one keeps only the horizontally upsampled chip and mask rows (at most 129 and 512
    rows of ``w`` floats) and upsamples each strip vertically on demand; the RMS normalisation is
    one pass over the strips (differences to the one-shot computation are float rounding). Up to
    ``KEEP_PIXELS`` (e.g. a 4096 x 4096 video frame) the strips of that pass are kept (<= 64 MB)
    instead of being computed again.
    """

    def __init__(self, inter: np.ndarray, fx: float, fy: float, h: int, w: int, wm_id: int, key: bytes,
                 strength: float = 1.0, target_psnr: float = TARGET_PSNR, informed: bool = True,
                 template: bool = True):
        lay = layout(key)
        coded = (_ecc.conv_encode(_ecc.make_info_word(wm_id, key)).astype(np.float32) * 2 - 1)
        mask_small = _small_mask(inter)
        target_rms = 255.0 * 10.0 ** (-target_psnr / 20.0) * strength
        amp = np.ones(coded.size, dtype=np.float32)
        if informed:
            amp = informed_amplitudes(inter, fx, fy, h, w, mask_small, coded, key, target_rms).astype(np.float32)
        vals = lay.pn.copy()
        m = lay.is_msg
        vals[m] *= coded[lay.bit_of[m]] * amp[lay.bit_of[m]]
        chips = vals.reshape(CHIPS, CHIPS)
        from . import _sync

        self.h, self.w = int(h), int(w)
        self._full = None
        self.key = key
        # the geometric template (_sync) gets TEMPLATE_SHARE of the chip pattern's RMS, weighted by
        # the same mask; its scale for the strip path comes from the mask's RMS (the template's is 1)
        self._kt = np.float32(_sync.TEMPLATE_SHARE * target_rms / max(float(np.sqrt(np.mean(mask_small ** 2))), 1e-9)
                              if template else 0.0)
        if self.h <= strip_rows(self.w):
            pattern = upsample_chips(chips, h, w)
            if mask_small.shape != (h, w):
                ih, iw = inter.shape
                mask = _resize_f(mask_small, (w, h), box=(0.0, 0.0, float(iw), float(ih)))
            else:
                mask = mask_small
            pattern = pattern * mask
            rms = float(np.sqrt(np.mean(np.square(pattern, dtype=np.float32), dtype=np.float64)))
            pattern *= np.float32(target_rms / max(rms, 1e-9))
            if template:
                t = _sync.template_rows(0, h, h, w, key) * mask
                trms = float(np.sqrt(np.mean(np.square(t, dtype=np.float32), dtype=np.float64)))
                pattern += t * np.float32(_sync.TEMPLATE_SHARE * target_rms / max(trms, 1e-9))
            self._full = pattern
            return
        # large image (then the intermediate is smaller than the image): separable bilinear
        # upsampling, the horizontal pass done once here, the vertical one per strip
        c = max(h, w) / CHIPS
        gw, gh = w / c, h / c
        nw, nh = min(CHIPS, int(np.ceil(gw)) + 1), min(CHIPS, int(np.ceil(gh)) + 1)
        self._gh, self._nh = gh, nh
        self._chip_rows = _resize_f(chips[:nh, :nw], (w, nh), box=(0.0, 0.0, gw, float(nh)))
        ih, iw = mask_small.shape
        self._ih = ih
        self._mask_rows = _resize_f(mask_small, (w, ih), box=(0.0, 0.0, float(iw), float(ih)))
        total = 0.0
        self._kept: dict[int, np.ndarray] | None = {} if h * w <= KEEP_PIXELS else None
        for y0, y1 in strips(self.h, self.w):
            p = self._pattern(y0, y1)
            total += float(np.sum(np.square(p, dtype=np.float32), dtype=np.float64))
            if self._kept is not None:
                self._kept[y0] = p
        rms = float(np.sqrt(total / (float(h) * float(w))))
        self._k = np.float32(target_rms / max(rms, 1e-9))

    def _pattern(self, y0: int, y1: int) -> np.ndarray:
        h, w = self.h, self.w

        def vert(src: np.ndarray, span: float, n_src: int) -> np.ndarray:
            s = span / h
            b0 = y0 * s
            b1 = span if y1 == h else min(y1 * s, float(n_src))
            return _resize_f(src, (w, y1 - y0), box=(0.0, b0, float(w), b1))

        return vert(self._chip_rows, self._gh, self._nh) * vert(self._mask_rows, float(self._ih), self._ih)

    def _template(self, y0: int, y1: int) -> np.ndarray:
        from . import _sync

        s = float(self._ih) / self.h
        b1 = float(self._ih) if y1 == self.h else min(y1 * s, float(self._ih))
        mask = _resize_f(self._mask_rows, (self.w, y1 - y0), box=(0.0, y0 * s, float(self.w), b1))
        return _sync.template_rows(y0, y1, self.h, self.w, self.key) * mask * self._kt

    def rows(self, y0: int, y1: int) -> np.ndarray:
        """Float32 delta of rows y0..y1-1 (a fresh array, or a view of the kept one-strip pattern)."""
        if self._full is not None:
            return self._full[y0:y1]
        kept = self._kept.get(y0) if self._kept is not None else None
        if kept is not None and kept.shape[0] == y1 - y0:
            p = kept * self._k
        else:
            p = self._pattern(y0, y1)
            p *= self._k
        if self._kt:
            p += self._template(y0, y1)
        return p

    def strips(self):
        """The row ranges to ask for: one strip when the pattern is kept whole."""
        if self._full is not None:
            return iter([(0, self.h)])
        return strips(self.h, self.w)


def total_target_psnr(strength: float = 1.0) -> float:
    """PSNR of the chip pattern and the template together at ``strength``."""
    from . import _sync

    return TARGET_PSNR - 20.0 * float(np.log10(strength)) - 10.0 * float(np.log10(1.0 + _sync.TEMPLATE_SHARE ** 2))


def embed_delta(luma: np.ndarray, wm_id: int, key: bytes, strength: float = 1.0,
                target_psnr: float = TARGET_PSNR, informed: bool = True) -> np.ndarray:
    """Float32 luma delta (h x w) whose RMS gives ``target_psnr`` (scaled by ``strength``).

    Full-size result; the image and video embedders use :class:`DeltaPlan` strip by strip."""
    h, w = luma.shape
    inter, fx, fy = to_intermediate(luma)
    plan = DeltaPlan(inter, fx, fy, h, w, wm_id, key, strength, target_psnr, informed)
    if plan._full is not None:
        return plan._full
    out = np.empty((h, w), dtype=np.float32)
    for y0, y1 in plan.strips():
        out[y0:y1] = plan.rows(y0, y1)
    return out


# ----------------------------------------------------------------------------- decoding

def to_intermediate(luma: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Area-downscale to long edge <= INTERMEDIATE. Returns (img, fx, fy): source px per intermediate px."""
    h, w = luma.shape
    f = max(h, w) / INTERMEDIATE
    if f <= 1.0:
        return np.asarray(luma, dtype=np.float32), 1.0, 1.0
    iw, ih = max(1, round(w / f)), max(1, round(h / f))
    im = Image.fromarray(np.ascontiguousarray(luma, dtype=np.float32), mode="F")
    small = np.asarray(im.resize((iw, ih), Image.BOX), dtype=np.float32)
    return small, w / iw, h / ih


def to_intermediate_rows(h: int, w: int, rows) -> tuple[np.ndarray, float, float]:
    """:func:`to_intermediate` of the h x w luma that ``rows(y0, y1)`` returns (float32 rows
    y0..y1-1), strip by strip: no full-size float copy. An image of at most one strip
    (``STRIP_PIXELS``, e.g. 4K UHD) goes through :func:`to_intermediate` unchanged; a larger one
    gets the horizontal BOX pass per strip into an h x iw buffer, then the vertical pass once on it
    (the same separable filter; Pillow sometimes runs its two passes in the other order, so the
    result can differ from the one-shot resize by float32 rounding)."""
    f = max(h, w) / INTERMEDIATE
    if f <= 1.0 or h <= strip_rows(w):
        return to_intermediate(rows(0, h))
    iw, ih = max(1, round(w / f)), max(1, round(h / f))
    tmp = np.empty((h, iw), dtype=np.float32)
    for y0, y1 in strips(h, w):
        tmp[y0:y1] = _resize_f(rows(y0, y1), (iw, y1 - y0), box=(0.0, 0.0, float(w), float(y1 - y0)),
                               resample=Image.BOX)
    small = _resize_f(tmp, (iw, ih), box=(0.0, 0.0, float(iw), float(h)), resample=Image.BOX)
    return small, w / iw, h / ih


def whiten_k(inter: np.ndarray) -> float:
    """Intermediate pixels per working pixel (at scale 1): the whitening filters scale with it."""
    return max(inter.shape) / WORK


def _whiten(img: np.ndarray, k: float = 1.0) -> np.ndarray:
    """High-pass, spectrally whiten (divide by the smoothed amplitude spectrum, which flattens
    strong periodic or strongly coloured host content), then normalise by the local RMS and clip."""
    h, w = img.shape
    hp = img - ndimage.gaussian_filter(img, HP_SIGMA * k, mode="reflect", truncate=3.0)
    pad = np.pad(hp, ((0, h), (0, w)), mode="symmetric")  # mirrored: no wrap-around edges
    F = sfft.rfft2(pad)
    mag = ndimage.uniform_filter(np.abs(F), 5, mode="nearest")
    F /= mag + np.float32(1e-3) * float(mag.mean()) + np.float32(1e-12)
    r = sfft.irfft2(F, s=pad.shape)[:h, :w].astype(np.float32)
    e = ndimage.gaussian_filter(r * r, NORM_SIGMA * k, mode="reflect", truncate=2.5)
    r /= np.sqrt(e) + np.float32(1e-3 * np.sqrt(float(e.mean())) + 1e-12)
    np.clip(r, -3.0, 3.0, out=r)
    return r


def _local_norm(img: np.ndarray) -> np.ndarray:
    """Message reader (a): negative Laplacian (a strong high-pass that keeps the chip band and
    drops most of a natural host's low-frequency energy) divided by its local RMS over a ~1 chip
    neighbourhood (flat or dark areas, where the host is quiet, count fully; busy texture counts
    little), clipped. Without the spectral flattening of _whiten, which on natural photos also
    flattens the mark's own band."""
    r = -ndimage.laplace(img)
    e = ndimage.gaussian_filter(r * r, READ_NORM_SIGMA, mode="reflect", truncate=2.5)
    r /= np.sqrt(e) + np.float32(1e-3 * np.sqrt(float(e.mean())) + 1e-12)
    np.clip(r, -3.0, 3.0, out=r)
    return r


def _pilot_working(key: bytes) -> np.ndarray:
    lay = layout(key)
    return _resize_f(lay.pilot_grid, (WORK, WORK), box=(0.0, 0.0, float(CHIPS), float(CHIPS)))


@lru_cache(maxsize=16)
def _pilot_fft(key: bytes, fh: int, fw: int) -> np.ndarray:
    ref = np.zeros((fh, fw), dtype=np.float32)
    p = _pilot_working(key)
    hh, ww = min(fh - NEG_SHIFT, WORK), min(fw - NEG_SHIFT, WORK)
    ref[NEG_SHIFT:NEG_SHIFT + hh, NEG_SHIFT:NEG_SHIFT + ww] = p[:hh, :ww]
    return sfft.rfft2(ref)


@dataclass
class Hypothesis:
    scale: float
    dy: int  # working-grid shift: attacked working px p <-> canonical working px p + d
    dx: int
    z: float
    r: np.ndarray  # whitened working image at this scale


def working_image(inter: np.ndarray, fx: float, fy: float, long_edge: float, scale: float,
                  offset: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """Resample the intermediate image onto the working grid for scale hypothesis ``scale``.

    ``long_edge`` is the long edge of the (attacked) image in source pixels. Under hypothesis s the
    original long edge spanned long_edge * s source pixels, i.e. WORK working px. ``offset``
    (oy, ox) >= 0, in working px, starts the grid that far into the image (sub-pixel alignment).
    """
    ih, iw = inter.shape
    unit = long_edge * scale / WORK  # source px per working px
    oy, ox = offset
    w_src, h_src = iw * fx - ox * unit, ih * fy - oy * unit
    nw, nh = max(int(w_src / unit), 8), max(int(h_src / unit), 8)
    box = (ox * unit / fx, oy * unit / fy, min(iw, (ox + nw) * unit / fx), min(ih, (oy + nh) * unit / fy))
    return _resize_f(inter, (nw, nh), box=box)


def _subpixel(z: np.ndarray, iy: int, ix: int) -> tuple[float, float]:
    """Parabolic peak offset (fy, fx) in [-0.5, 0.5] around integer peak (iy, ix) of z."""
    def one(a, b, c):
        den = a - 2 * b + c
        return 0.0 if den >= 0 else float(np.clip(0.5 * (a - c) / den, -0.5, 0.5))
    h, w = z.shape
    fy = one(z[iy - 1, ix], z[iy, ix], z[iy + 1, ix]) if 0 < iy < h - 1 else 0.0
    fx_ = one(z[iy, ix - 1], z[iy, ix], z[iy, ix + 1]) if 0 < ix < w - 1 else 0.0
    return fy, fx_


def correlate(r: np.ndarray, key: bytes) -> tuple[np.ndarray, float]:
    """Pilot correlation over shifts d in [-NEG_SHIFT, MAX_SHIFT]^2, as z-scores."""
    nh, nw = r.shape
    span = MAX_SHIFT + NEG_SHIFT + 1
    fh = sfft.next_fast_len(nh + span, real=True)
    fw = sfft.next_fast_len(nw + span, real=True)
    R = sfft.rfft2(r, s=(fh, fw))
    c = sfft.irfft2(np.conj(R) * _pilot_fft(key, fh, fw), s=(fh, fw))[:span, :span]
    # c[k] = sum_p r(p) ref(p + k) with ref offset by NEG_SHIFT: shift d = k - NEG_SHIFT
    med = float(np.median(c))
    mad = float(np.median(np.abs(c - med))) * 1.4826 + 1e-12
    return (c - med) / mad, mad


def _peaks(z: np.ndarray, n: int) -> list[tuple[float, int, int]]:
    mx = ndimage.maximum_filter(z, size=5, mode="constant", cval=-np.inf)
    ys, xs = np.nonzero((z == mx))
    vals = z[ys, xs]
    order = np.argsort(-vals)[:n]
    return [(float(vals[i]), int(ys[i]) - NEG_SHIFT, int(xs[i]) - NEG_SHIFT) for i in order]


def read_chips(r: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Chip estimates on the canonical grid (0 where the image does not cover a chip)."""
    canvas = np.zeros((WORK + 2, WORK + 2), dtype=np.float32)  # 1 px border for the adjoint
    nh, nw = r.shape
    y0, x0 = dy, dx  # canonical position of r[0, 0]
    ys, xs = max(0, -y0), max(0, -x0)
    ye, xe = min(nh, WORK - y0), min(nw, WORK - x0)
    if ye <= ys or xe <= xs:
        return np.zeros((CHIPS, CHIPS), dtype=np.float32)
    canvas[1 + y0 + ys:1 + y0 + ye, 1 + x0 + xs:1 + x0 + xe] = r[ys:ye, xs:xe]
    # adjoint of bilinear x2 upsampling: chip i gathers working px 2i-1..2i+2 (canvas 2i..2i+3)
    t = (0.25 * canvas[0:WORK:2] + 0.75 * canvas[1:WORK + 1:2]
         + 0.75 * canvas[2:WORK + 2:2] + 0.25 * canvas[3:WORK + 3:2])
    t = (0.25 * t[:, 0:WORK:2] + 0.75 * t[:, 1:WORK + 1:2]
         + 0.75 * t[:, 2:WORK + 2:2] + 0.25 * t[:, 3:WORK + 3:2])
    return t


def soft_bits(chips: np.ndarray, key: bytes) -> np.ndarray:
    lay = layout(key)
    v = chips.reshape(-1) * lay.pn
    m = lay.is_msg
    return np.bincount(lay.bit_of[m], weights=v[m], minlength=_ecc.N_CODED)


def try_decode(r: np.ndarray, dy: int, dx: int, key: bytes):
    chips = read_chips(r, dy, dx)
    soft = soft_bits(chips, key)
    for info in _ecc.viterbi_list(soft, LIST_SIZE):
        wm_id = _ecc.check_info_word(info, key)
        if wm_id is not None:
            break
    else:
        return None
    coded = _ecc.conv_encode(info)
    used = soft != 0
    errors = int(np.sum(((soft > 0).astype(np.uint8) != coded) & used))
    return wm_id, errors, int(np.sum(used)), soft


def decode_intermediate(inter: np.ndarray, fx: float, fy: float, long_edge: float, key: bytes) -> dict:
    """Full search on an intermediate luma image. Returns a result dict (see image.decode_image)."""
    cache: dict[float, tuple[np.ndarray, np.ndarray]] = {}
    wi = _whiten(inter, whiten_k(inter))  # whitened once at intermediate resolution

    def at_scale(s: float):
        s = round(float(s), 4)
        if s not in cache:
            r = working_image(wi, fx, fy, long_edge, s)
            z, _ = correlate(r, key)
            cache[s] = (r, z)
        return cache[s]

    cands: list[tuple[float, float, int, int]] = []
    for s in COARSE_SCALES:
        _, z = at_scale(s)
        cands += [(zv, s, dy, dx) for zv, dy, dx in _peaks(z, 2)]
    cands.sort(reverse=True)
    best_coarse = []
    for zv, s, dy, dx in cands:
        if s not in best_coarse:
            best_coarse.append(s)
        if len(best_coarse) >= N_REFINE:
            break
    for s0 in best_coarse:
        for ds in FINE_STEPS:
            _, z = at_scale(s0 + ds)
            cands += [(zv, round(s0 + ds, 4), dy, dx) for zv, dy, dx in _peaks(z, 1)]
    cands.sort(reverse=True)
    seen = set()
    attempts = 0
    best_z = cands[0][0] if cands else 0.0
    for zv, s, dy, dx in cands:
        if attempts >= MAX_ATTEMPTS:
            break
        if (s, dy, dx) in seen:
            continue
        seen.add((s, dy, dx))
        attempts += 1
        r, z = at_scale(s)
        # sub-pixel alignment: true shift D = d + f; resample the grid starting g = ceil(D) - D
        # working px into the image so that the remaining shift is the integer ceil(D)
        # (the message is read from the luma resampled first and whitened at working resolution,
        # the same pipeline the informed embedder optimised for)
        f = _subpixel(z, dy + NEG_SHIFT, dx + NEG_SHIFT)
        off = (0.0, 0.0)
        if max(abs(f[0]), abs(f[1])) > SUBPIXEL_MIN:
            Dy, Dx = dy + f[0], dx + f[1]
            iy, ix = int(np.ceil(Dy)), int(np.ceil(Dx))
            off = (iy - Dy, ix - Dx)
            dy, dx = iy, ix
        wimg = working_image(inter, fx, fy, long_edge, s, off)
        got = try_decode(_local_norm(wimg), dy, dx, key)
        if got is None:
            got = try_decode(_whiten(wimg), dy, dx, key)
        if got is not None:
            wm_id, errors, n_used, _ = got
            return {"found": True, "id": wm_id, "bit_errors": errors, "n_channel_bits": n_used,
                    "scale": float(s), "shift_chips": [dy / UP, dx / UP], "pilot_z": round(zv, 2),
                    "attempts": attempts, "scales_tried": len(cache)}
    return {"found": False, "id": None, "bit_errors": None, "pilot_z": round(best_z, 2),
            "attempts": attempts, "scales_tried": len(cache)}
