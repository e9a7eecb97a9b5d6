"""Geometric synchronisation for the luma watermark (private; issue 18).

The chip grid of ``_core`` is found by a pilot correlation over shifts and a small range of
scales: enough for resizes and 10 % crops, not for a rotation, a mirror, a change of aspect ratio
or a crop that keeps half the frame. This module adds a *template* to the mark and a second
decoding path that uses it.

Template
--------
K = 4 cosine gratings, ``cos(2 pi m_k (x cos a_k + y sin a_k) / L + phi_k)`` with L the image's
long edge, m_k = 22-30 cycles per long edge (below the chip band, which the message readers keep)
and the orientations a_k = 10, 55, 100, 145 degrees: no two of them, nor their mirror images
(180 - a_k), within 20 degrees of each other, so a rotation of a few degrees and a mirror are told
apart. Phases are keyed. The gratings are weighted by the mark's perceptual mask and get a fixed
share of its energy (``TEMPLATE_SHARE`` of the chip pattern's RMS).

A geometric edit moves the gratings' peaks in the amplitude spectrum: a rotation turns them, a
crop leaves them where they are (in cycles per pixel: relative to the new long edge they shrink),
a change of aspect ratio shears them, a mirror reflects them. Resizing leaves them in place relative
to the long edge. The decoder searches the spectrum of the image (``prepare``: local mean removed,
local contrast evened) over mirror (2),
rotation (-6..6 degrees), scale (``SIGMAS``: long edge / original long edge, 0.45-1.3) and aspect
(0.88-1.14), scoring each hypothesis by the spectrum at the 4 predicted peaks, refines the best
ones on a finer grid, and for each of the ``MAX_HYPOTHESES`` best resamples the image back onto
the canonical chip grid (rotation, aspect, mirror and scale undone: what is left is a shift), finds
the shift by the pilot correlation over every shift, and reads the message as ``_core`` does.

False positives: each hypothesis reads at most ``PEAKS_PER_HYPOTHESIS`` shifts with
``_core.N_READERS`` readers and ``_core.LIST_SIZE`` list-Viterbi paths, each a CRC-32 check:
``WORDS_GEOMETRIC`` words on top of ``_core.WORDS_PER_IMAGE``; the image decoder states the
total in its bound.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import fft as sfft
from scipy import ndimage

from . import _core, _ecc

TEMPLATE_M = (22.0, 27.0, 25.0, 30.0)  # cycles per long edge
TEMPLATE_DEG = (10.0, 55.0, 100.0, 145.0)
TEMPLATE_SHARE = 0.55  # template RMS / chip pattern RMS (PSNR cost: 10 log10(1 + 0.55^2) = 1.15 dB)
THETAS = np.arange(-6.0, 6.0001, 0.5)
SIGMAS = np.exp(np.arange(np.log(0.45), np.log(1.3), 0.015))
ASPECTS = np.arange(0.88, 1.1401, 0.02)
MAX_HYPOTHESES = 3
PEAKS_PER_HYPOTHESIS = 1
WORDS_GEOMETRIC = MAX_HYPOTHESES * PEAKS_PER_HYPOTHESIS * _core.N_READERS * _core.LIST_SIZE
MIN_TEMPLATE_Z = 4.0  # below it the image is taken as carrying no template (the fast exit)
PAD = 2  # zero-padding factor of the spectrum
SCORE_CLIP = 6.0  # a peak counts at most this many times the local spectrum level
PRE_SIGMA, PRE_NORM_SIGMA = 6.0, 16.0  # intermediate px: high-pass and local-RMS windows of prepare()


def prepare(inter: np.ndarray) -> np.ndarray:
    """The intermediate luma made ready for the template search: the local mean (Gaussian, sigma
    PRE_SIGMA px: well below the gratings' band) removed, divided by the local RMS, clipped."""
    hp = inter - ndimage.gaussian_filter(inter, PRE_SIGMA, mode="reflect", truncate=2.5)
    e = ndimage.gaussian_filter(hp * hp, PRE_NORM_SIGMA, mode="reflect", truncate=2.0)
    r = hp / (np.sqrt(e) + np.float32(1e-3 * np.sqrt(float(e.mean())) + 1e-9))
    return np.clip(r, -3.0, 3.0).astype(np.float32)


def _freqs() -> np.ndarray:
    a = np.deg2rad(np.asarray(TEMPLATE_DEG))
    return np.stack([np.asarray(TEMPLATE_M) * np.cos(a), np.asarray(TEMPLATE_M) * np.sin(a)], axis=1)  # (K, 2) x, y


@lru_cache(maxsize=8)
def _phases(key: bytes) -> np.ndarray:
    raw = np.frombuffer(_ecc.keyed_bytes(key, b"template-phase", 8 * len(TEMPLATE_M)), dtype=np.uint64)
    return (raw.astype(np.float64) / 2.0 ** 64) * 2.0 * np.pi


def template_rows(y0: int, y1: int, h: int, w: int, key: bytes) -> np.ndarray:
    """Rows y0..y1-1 of the unit-RMS template of an h x w image (float32)."""
    L = float(max(h, w))
    f = _freqs() / L
    ph = _phases(key)
    x = np.arange(w, dtype=np.float64) + 0.5
    y = np.arange(y0, y1, dtype=np.float64) + 0.5
    out = np.zeros((y1 - y0, w), dtype=np.float32)
    for k in range(len(f)):
        # cos(a + b) = cos a cos b - sin a sin b: two outer products instead of a full-size phase
        ax = 2 * np.pi * f[k, 0] * x + ph[k]
        by = 2 * np.pi * f[k, 1] * y
        out += (np.outer(np.cos(by), np.cos(ax)) - np.outer(np.sin(by), np.sin(ax))).astype(np.float32)
    out *= np.float32(np.sqrt(2.0 / len(f)))
    return out


# ----------------------------------------------------------------------------- estimation


@dataclass
class Geometry:
    mirror: bool
    theta: float  # degrees, the image's content turned this much (counter-clockwise on screen)
    sigma: float  # long edge of the attacked image / the original's (in the attacked image's px)
    aspect: float  # x stretch relative to y
    score: float
    z: float


def _spectrum(r: np.ndarray) -> np.ndarray:
    """Amplitude spectrum (half plane: rfft2 of the zero-padded image) over its local level."""
    h, w = r.shape
    F = np.abs(sfft.rfft2(r - float(r.mean()), s=(PAD * h, PAD * w), workers=1)).astype(np.float32)
    loc = ndimage.uniform_filter(F, 15, mode="wrap")
    return F / (loc + np.float32(1e-6 * float(loc.mean()) + 1e-12))


def _predict(mirror, theta, sigma, aspect, long_edge: float) -> np.ndarray:
    """Predicted frequency vectors (..., K, 2) in cycles per px (x, y) for broadcast parameters."""
    f = _freqs()  # (K, 2)
    fx, fy = f[:, 0], f[:, 1]
    mirror, theta, sigma, aspect = (np.asarray(v, dtype=np.float64)[..., None] for v in (mirror, theta, sigma, aspect))
    fx = np.where(mirror > 0.5, -fx, fx)
    # the content turned by theta counter-clockwise on screen (y down): frequencies turn alike
    t = np.deg2rad(-theta)
    gx = np.cos(t) * fx - np.sin(t) * fy
    gy = np.sin(t) * fx + np.cos(t) * fy
    gx = gx / aspect
    s = sigma / long_edge
    return np.stack([gx * s, gy * s], axis=-1)


def _score(spec: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Sum over the K peaks of the normalised spectrum at frequencies g (..., K, 2)."""
    H = spec.shape[0]
    W = 2 * (spec.shape[1] - 1)  # the full spectrum's width (PAD * w is even)
    flip = g[..., 0] < 0  # the half plane: |F(-g)| = |F(g)| for a real image
    gx, gy = np.where(flip, -g[..., 0], g[..., 0]), np.where(flip, -g[..., 1], g[..., 1])
    rows = (gy * H) % H
    cols = gx * W
    vals = ndimage.map_coordinates(spec, [rows.ravel(), cols.ravel()], order=1, mode="grid-wrap")
    # clipped: one strong peak of the host's own (a periodic texture) cannot make a hypothesis alone
    return np.minimum(vals.reshape(rows.shape), SCORE_CLIP).sum(axis=-1)


def estimate(r: np.ndarray) -> list[Geometry]:
    """The best geometry hypotheses for the whitened image ``r`` (intermediate resolution)."""
    spec = _spectrum(r)
    L = float(max(r.shape))
    M, T, S, A = np.meshgrid([0.0, 1.0], THETAS, SIGMAS, ASPECTS, indexing="ij")
    sc = _score(spec, _predict(M, T, S, A, L))
    med = float(np.median(sc))
    mad = float(np.median(np.abs(sc - med))) * 1.4826 + 1e-9
    flat = np.argsort(sc, axis=None)[::-1]
    out: list[Geometry] = []
    for idx in flat[:200]:
        i = np.unravel_index(idx, sc.shape)
        g = (bool(M[i]), float(T[i]), float(S[i]), float(A[i]))
        if any(o.mirror == g[0] and abs(o.theta - g[1]) < 1.5 and abs(np.log(o.sigma / g[2])) < 0.05 for o in out):
            continue
        # refine on a finer grid around it
        t2 = g[1] + np.arange(-0.5, 0.5001, 0.125)
        s2 = g[2] * np.exp(np.arange(-0.015, 0.0151, 0.003))
        a2 = g[3] + np.arange(-0.02, 0.0201, 0.005)
        T2, S2, A2 = np.meshgrid(t2, s2, a2, indexing="ij")
        sc2 = _score(spec, _predict(np.full(T2.shape, float(g[0])), T2, S2, A2, L))
        j = np.unravel_index(int(np.argmax(sc2)), sc2.shape)
        best = float(sc2[j])
        out.append(Geometry(g[0], float(T2[j]), float(S2[j]), float(A2[j]), best, (best - med) / mad))
        if len(out) >= MAX_HYPOTHESES:
            break
    out.sort(key=lambda o: -o.score)
    return out


# ----------------------------------------------------------------------------- canonical resampling


def canonical(inter: np.ndarray, geo: Geometry) -> tuple[np.ndarray, np.ndarray]:
    """``inter`` resampled onto the canonical working grid (2 px per chip) with the geometry undone:
    (image, validity mask). The image's placement on the grid (the shift) is still unknown."""
    ih, iw = inter.shape
    Li = float(max(ih, iw))
    k = Li / (geo.sigma * _core.WORK)  # intermediate px per canonical working px
    t = np.deg2rad(-geo.theta)
    R = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    D = np.diag([geo.aspect, 1.0])
    Mi = np.diag([-1.0 if geo.mirror else 1.0, 1.0])
    A = k * (D @ R @ Mi)  # canonical (x, y) -> intermediate (x, y), up to a shift
    Ainv = np.linalg.inv(A)
    corners = np.array([[0, 0], [iw, 0], [0, ih], [iw, ih]], dtype=np.float64)
    cu = corners @ Ainv.T
    u0, v0 = np.floor(cu.min(axis=0))
    nu, nv = int(np.ceil(cu[:, 0].max() - u0)), int(np.ceil(cu[:, 1].max() - v0))
    # ndimage works in (row, col) = (y, x)
    Arc = np.array([[A[1, 1], A[1, 0]], [A[0, 1], A[0, 0]]])
    off = A @ np.array([u0, v0])
    offset = np.array([off[1], off[0]]) - 0.5 + Arc @ np.array([0.5, 0.5])  # pixel centres
    out = ndimage.affine_transform(inter, Arc, offset=offset, output_shape=(nv, nu), order=1,
                                   mode="constant", cval=float(inter.mean()))
    valid = ndimage.affine_transform(np.ones_like(inter), Arc, offset=offset, output_shape=(nv, nu), order=0,
                                     mode="constant", cval=0.0) > 0.5
    valid = ndimage.binary_erosion(valid, iterations=3)
    return out.astype(np.float32), valid


def _pilot(key: bytes) -> np.ndarray:
    return _core._pilot_working(key)


def correlate_all(r: np.ndarray, key: bytes) -> tuple[np.ndarray, int, int]:
    """Pilot correlation of ``r`` over every shift that overlaps the canonical grid, as z-scores.
    Returns (z, fh, fw): z[i, j] is the shift d = (i, j) wrapped modulo (fh, fw)."""
    nh, nw = r.shape
    fh = sfft.next_fast_len(nh + _core.WORK, real=True)
    fw = sfft.next_fast_len(nw + _core.WORK, real=True)
    ref = np.zeros((fh, fw), dtype=np.float32)
    ref[:_core.WORK, :_core.WORK] = _pilot(key)
    c = sfft.irfft2(np.conj(sfft.rfft2(r, s=(fh, fw))) * sfft.rfft2(ref), s=(fh, fw))
    med = float(np.median(c))
    mad = float(np.median(np.abs(c - med))) * 1.4826 + 1e-12
    return (c - med) / mad, fh, fw


def decode(inter: np.ndarray, key: bytes, hyps: list[Geometry]) -> dict | None:
    """Try each hypothesis: undo its geometry, find the shift, read the message."""
    attempts = 0
    for geo in hyps[:MAX_HYPOTHESES]:
        W, valid = canonical(inter, geo)
        if W.size == 0 or valid.sum() < 64:
            continue
        vf = valid.astype(np.float32)
        wr = _core._whiten(W) * vf
        z, fh, fw = correlate_all(wr, key)
        for zv, i, j in _top_peaks(z, PEAKS_PER_HYPOTHESIS):
            dy = i if i < fh - W.shape[0] else i - fh
            dx = j if j < fw - W.shape[1] else j - fw
            attempts += 1
            got = _core.try_decode(_core._local_norm(W) * vf, dy, dx, key)
            if got is None:
                got = _core.try_decode(wr, dy, dx, key)
            if got is not None:
                wm_id, errors, n_used, _ = got
                return {"found": True, "id": wm_id, "bit_errors": errors, "n_channel_bits": n_used,
                        "geometry": {"mirror": geo.mirror, "rotation_deg": round(geo.theta, 3),
                                     "scale": round(1.0 / geo.sigma, 4), "aspect": round(geo.aspect, 4),
                                     "template_z": round(geo.z, 2)},
                        "shift_chips": [dy / _core.UP, dx / _core.UP], "pilot_z": round(float(zv), 2),
                        "geometric_attempts": attempts}
    return None


def _top_peaks(z: np.ndarray, n: int) -> list[tuple[float, int, int]]:
    mx = ndimage.maximum_filter(z, size=5, mode="wrap")
    ys, xs = np.nonzero(z == mx)
    vals = z[ys, xs]
    order = np.argsort(-vals)[:n]
    return [(float(vals[i]), int(ys[i]), int(xs[i])) for i in order]
