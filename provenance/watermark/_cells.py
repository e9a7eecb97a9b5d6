"""Direction cells of a solid for the mesh watermark v2 (``io.dhstudio.watermark.mesh.v2``).

Everything here is a property of the SOLID the triangles bound, not of the triangulation, so that
re-triangulation, subdivision and decimation (which keep the shape) keep the numbers:

* :func:`solid` gives the volume centroid ``C``, the principal axes of the solid's inertia (signed
  by the third moment, a proper rotation) and the equivalent radius ``s = (3 V / 4 pi)^(1/3)``,
  all from exact tetrahedron integrals (the cone from ``C`` to each triangle).
* :func:`centres` are 264 directions, four flipped copies of 66 points (so a sign flip of two
  principal axes permutes the cells, see :func:`flip_permutations`).
* Cell ``j`` has a soft weight ``w_j(d)`` (softmax of ``KAPPA * d . m_j`` over the cells) on every
  direction ``d`` from ``C``. Its value is ``S_j = (3 V_j / Omega_j)^(1/3) / s`` where ``V_j`` is the
  weighted volume of the solid (cones from ``C``) and ``Omega_j`` the weighted solid angle the
  surface covers: a cube-mean radius of the solid in that direction. Both are sums over triangles
  of exact cone volumes and solid angles times the weight; the weight is integrated by splitting
  a triangle until it spans less than ``SPLIT_TAU / KAPPA`` radians as seen from ``C``.
* The watermark reads ``D = S - mean of the 6 neighbouring cells``, which removes what is smooth
  over the sphere of directions (a slightly moved centre, a rescale, a uniform shrink).
* :func:`ring_values` gives the cell values for every turn of the frame about one principal axis
  at once (for a solid of revolution, whose other two axes are not stable).

numpy only.
"""

from __future__ import annotations

import functools

import numpy as np

N_ORBITS = 66
N_CELLS = 4 * N_ORBITS  # 264
KAPPA = 150.0  # weight sharpness (cell spacing is about 0.22 rad)
TOPK = 10  # weights kept per direction (the rest are < 1e-4 of the largest)
SPLIT_TAU = 0.8  # split a triangle until KAPPA * (its angular size) <= SPLIT_TAU
MAX_SPLIT = 3  # at most 4^3 pieces per triangle
N_NEIGH = 6
MIN_EIG_GAP = 0.02  # relative gap between principal moments below which the axes are not stable
# the proper sign flips of the principal axes (the third-moment sign can fail on a symmetric shape)
FLIPS = np.array([[1, 1, 1], [-1, -1, 1], [-1, 1, -1], [1, -1, -1]], dtype=np.float64)
_CHUNK = 131072


@functools.cache
def centres() -> np.ndarray:
    """66 points in the quarter x > 0, y > 0 and their images under the FLIPS, spread by a few
    hundred steps of repulsion that keep the symmetry (deterministic; built on first use)."""
    g = (np.sqrt(5.0) - 1.0) / 2.0
    i = np.arange(N_ORBITS)
    z = 1.0 - 2.0 * (i + 0.5) / N_ORBITS
    phi = 0.5 * np.pi * ((i * g) % 1.0)
    r = np.sqrt(1.0 - z * z)
    base = np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)
    for _ in range(300):
        allp = np.concatenate([base * fl for fl in FLIPS])
        diff = base[:, None, :] - allp[None, :, :]
        d2 = np.einsum("ijk,ijk->ij", diff, diff)
        d2[d2 < 1e-12] = np.inf  # a point does not push itself
        force = (diff / d2[..., None] ** 1.5).sum(axis=1)
        force -= np.einsum("ij,ij->i", force, base)[:, None] * base
        base = base + 0.002 * force / np.max(np.linalg.norm(force, axis=1))
        base /= np.linalg.norm(base, axis=1, keepdims=True)
    return np.concatenate([base * fl for fl in FLIPS])


@functools.cache
def high_pass() -> np.ndarray:
    """D = high_pass() @ S: each cell's value minus the mean of its N_NEIGH nearest cells."""
    cos = centres() @ centres().T
    nn = np.argsort(-cos, axis=1, kind="stable")[:, 1:N_NEIGH + 1]
    hp = np.eye(N_CELLS)
    hp[np.repeat(np.arange(N_CELLS), N_NEIGH), nn.reshape(-1)] -= 1.0 / N_NEIGH
    return hp



def flip_permutations() -> list[np.ndarray]:
    """For each FLIPS[h]: index array p with S_true = S_read[p] when the frame read is the true
    frame times FLIPS[h]."""
    out = []
    for fl in FLIPS:
        to_true = np.empty(N_CELLS, dtype=np.int64)
        for a, fa in enumerate(FLIPS):
            b = int(np.flatnonzero(np.all(FLIPS == fa * fl, axis=1))[0])
            to_true[a * N_ORBITS:(a + 1) * N_ORBITS] = b * N_ORBITS + np.arange(N_ORBITS)
        p = np.empty(N_CELLS, dtype=np.int64)
        p[to_true] = np.arange(N_CELLS)
        out.append(p)
    return out


def _weighted_outer(weight: np.ndarray, *xs: np.ndarray) -> np.ndarray:
    """sum_n weight_n * sum_x x_n x_n^T, without an (N, 3, 3) temporary."""
    return sum(np.einsum("n,ni,nj->ij", weight, x, x, optimize=True) for x in xs)


def solid(v: np.ndarray, f: np.ndarray) -> dict | None:
    """Volume centroid C, principal axes e (columns, proper rotation), moments, equivalent radius s,
    and the orientation sign of the faces; None when the triangles bound (nearly) no volume."""
    # the origin of the cones: the surface's area centroid (a property of the surface, so the
    # signed volume of an open mesh does not depend on how it is triangulated)
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    area = 0.5 * np.sqrt(np.sum(np.cross(b - a, c - a) ** 2, axis=1))
    if not area.sum() > 0:
        return None
    o = (area[:, None] * (a + b + c)).sum(axis=0) / (3.0 * area.sum())
    a, b, c = a - o, b - o, c - o
    vol = np.einsum("ij,ij->i", a, np.cross(b, c)) / 6.0
    big = float(np.max(np.ptp(v, axis=0)))
    total = float(vol.sum())
    if not big > 0 or not abs(total) > 1e-6 * big ** 3:
        return None
    sign = 1.0 if total > 0 else -1.0
    vol, total = vol * sign, total * sign
    centre = (vol[:, None] * (a + b + c)).sum(axis=0) / (4.0 * total)
    a0, b0, c0 = a - centre, b - centre, c - centre
    s4 = a0 + b0 + c0
    cov = _weighted_outer(vol, a0, b0, c0, s4) / (20.0 * total)
    w, e = np.linalg.eigh(cov)
    w, e = w[::-1], e[:, ::-1].copy()
    third = (vol[:, None] * ((s4 / 4.0) @ e) ** 3).sum(axis=0)
    e *= np.where(third < 0, -1.0, 1.0)
    if np.linalg.det(e) < 0:
        e[:, 2] *= -1.0
    gaps = float((w[0] - w[1]) / max(w[0], 1e-300)), float((w[1] - w[2]) / max(w[1], 1e-300))
    return {"C": centre + o, "e": e, "moments": w, "gap": min(gaps), "gaps": gaps, "V": total,
            "s": float((3.0 * total / (4.0 * np.pi)) ** (1.0 / 3.0)), "sign": sign}


def _split(a, b, c):
    ab, bc, ca = (a + b) * 0.5, (b + c) * 0.5, (c + a) * 0.5
    return (np.concatenate([a, ab, ca, ab]), np.concatenate([ab, b, bc, bc]),
            np.concatenate([ca, bc, c, ca]))


def _pieces(a: np.ndarray, b: np.ndarray, c: np.ndarray):
    """Yield (a, b, c) chunks of triangles split until each spans <= SPLIT_TAU / KAPPA rad."""
    g = (a + b + c) / 3.0
    rho = np.sqrt(np.einsum("ij,ij->i", g, g))
    edge = np.sqrt(np.max(np.stack([np.einsum("ij,ij->i", x - y, x - y)
                                    for x, y in ((a, b), (b, c), (c, a))]), axis=0))
    with np.errstate(divide="ignore", invalid="ignore"):
        need = np.log2(np.maximum(KAPPA * edge / np.maximum(rho, 1e-300) / SPLIT_TAU, 1.0))
    level = np.clip(np.ceil(need), 0, MAX_SPLIT).astype(np.int64)
    for lv in range(MAX_SPLIT + 1):
        idx = np.flatnonzero(level == lv)
        step = max(1, _CHUNK // (4 ** lv))
        for k in range(0, len(idx), step):
            sel = idx[k:k + step]
            pa, pb, pc = a[sel], b[sel], c[sel]
            for _ in range(lv):
                pa, pb, pc = _split(pa, pb, pc)
            yield pa, pb, pc


_LUT_RES = 48


def _cube_bin(d: np.ndarray) -> np.ndarray:
    """Cube-map bin (face * RES^2 + row * RES + col) of each direction."""
    ad = np.abs(d)
    major = np.argmax(ad, axis=1)
    rows = np.arange(len(d))
    m = d[rows, major]
    face = major * 2 + (m < 0)
    other = np.array([[1, 2], [0, 2], [0, 1]])[major]
    uv = d[rows[:, None], other] / np.maximum(np.abs(m), 1e-300)[:, None]
    ij = np.clip(((uv + 1.0) * 0.5 * _LUT_RES).astype(np.int64), 0, _LUT_RES - 1)
    return face * _LUT_RES * _LUT_RES + ij[:, 0] * _LUT_RES + ij[:, 1]


@functools.cache
def _lut() -> np.ndarray:
    """The TOPK + 2 cells nearest to the centre of each cube-map bin (a bin spans < 0.05 rad, the
    cells are about 0.22 rad apart, so a direction's TOPK largest weights are among them)."""
    g = (np.arange(_LUT_RES) + 0.5) / _LUT_RES * 2.0 - 1.0
    u, w = np.meshgrid(g, g, indexing="ij")
    dirs = []
    for major in range(3):
        for sgn in (1.0, -1.0):
            d = np.zeros((_LUT_RES, _LUT_RES, 3))
            other = [k for k in range(3) if k != major]
            d[..., major] = sgn
            d[..., other[0]] = u
            d[..., other[1]] = w
            dirs.append(d.reshape(-1, 3))
    dirs = np.concatenate(dirs)
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    assert np.array_equal(_cube_bin(dirs), np.arange(len(dirs)))
    return np.argsort(-(dirs @ centres().T), axis=1, kind="stable")[:, :TOPK + 2]


def weights(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cell indices (the TOPK + 2 nearest) and softmax weights (rows sum to 1) for unit
    directions d (N, 3)."""
    idx = _lut()[_cube_bin(d)]
    lg = KAPPA * np.einsum("nkc,nc->nk", centres()[idx], d)
    lg -= lg.max(axis=1, keepdims=True)
    w = np.exp(lg)
    w /= w.sum(axis=1, keepdims=True)
    return idx, w


def _contributions(v: np.ndarray, f: np.ndarray, frame: dict):
    """Yield (g, vol, om) chunks: the unit direction (frame coordinates) of each triangle piece seen
    from C, its exact cone volume and its exact solid angle (signed by the faces' orientation)."""
    e, centre, sign = frame["e"], frame["C"], frame["sign"]
    q = (v - centre) @ e
    for a, b, c in _pieces(q[f[:, 0]], q[f[:, 1]], q[f[:, 2]]):
        la, lb, lc = (np.sqrt(np.einsum("ij,ij->i", x, x)) for x in (a, b, c))
        trip = np.einsum("ij,ij->i", a, np.cross(b, c))
        den = (la * lb * lc + np.einsum("ij,ij->i", a, b) * lc + np.einsum("ij,ij->i", a, c) * lb
               + np.einsum("ij,ij->i", b, c) * la)
        g = a + b + c
        g /= np.maximum(np.sqrt(np.einsum("ij,ij->i", g, g)), 1e-300)[:, None]
        yield g, trip / 6.0 * sign, 2.0 * np.arctan2(trip, den) * sign


def values(vsum: np.ndarray, osum: np.ndarray, s: float) -> tuple[np.ndarray, np.ndarray]:
    """Cube-mean radius (units of s) and relative coverage from weighted volume and solid-angle
    sums (last axis: the cells)."""
    nominal = 4.0 * np.pi / N_CELLS
    with np.errstate(divide="ignore", invalid="ignore"):
        cube = np.where(osum > 0.05 * nominal, 3.0 * vsum / np.maximum(osum, 1e-300), 0.0)
    return np.cbrt(np.maximum(cube, 0.0)) / s, np.clip(osum / nominal, 0.0, None)


def accumulate(v: np.ndarray, f: np.ndarray, frame: dict, ring_axis: int | None = None):
    """One pass over the triangle pieces: each cell's weighted volume and solid-angle sums, and,
    when ``ring_axis`` is given, the same two quantities binned on the (polar, azimuth) grid
    around that principal axis (for :func:`ring_values`). Returns (vsum, osum, hist or None)."""
    vsum = np.zeros(N_CELLS)
    osum = np.zeros(N_CELLS)
    n_grid = RING_POLAR * RING_AZIMUTH
    hist = None if ring_axis is None else (np.zeros(n_grid), np.zeros(n_grid))
    for g, vol, om in _contributions(v, f, frame):
        idx, w = weights(g)
        vsum += np.bincount(idx.reshape(-1), weights=(w * vol[:, None]).reshape(-1), minlength=N_CELLS)
        osum += np.bincount(idx.reshape(-1), weights=(w * om[:, None]).reshape(-1), minlength=N_CELLS)
        if hist is not None:
            b = _ring_bin(g, ring_axis)
            hist[0][:] += np.bincount(b, weights=vol, minlength=n_grid)
            hist[1][:] += np.bincount(b, weights=om, minlength=n_grid)
    return vsum, osum, hist


def cell_values(v: np.ndarray, f: np.ndarray, frame: dict) -> tuple[np.ndarray, np.ndarray]:
    """S (N_CELLS,) in units of s, and each cell's covered solid angle over its nominal share."""
    vsum, osum, _ = accumulate(v, f, frame)
    return values(vsum, osum, frame["s"])


# ------------------------------------------------------------------ turning about a symmetry axis
# A solid with two equal principal moments (a solid of revolution, or near one) has one stable axis
# u and no stable direction across it. Its cell values are then read for every turn of the frame
# about u at once: the contributions are binned on a (polar, azimuth) grid around u; each cell's
# weighted sums for all turns are a circular correlation along the azimuth (FFT), evaluated
# RING_UP times finer than the grid by zero-padding (the weights are smooth at the grid's scale).
# The QIM lattice only locks within about 0.05 degrees, hence the fine evaluation.
RING_POLAR = 96
RING_AZIMUTH = 384
RING_UP = 16
SEARCH_GAP = 0.1  # a pair of principal moments closer than this: also search the turn about u


def symmetric_axis(frame: dict, gap: float = SEARCH_GAP) -> int | None:
    """Index of the stable principal axis when the closer pair of the other moments is within
    ``gap`` (relative); None when no pair is that close, or when both pairs are within
    MIN_EIG_GAP (no stable axis at all)."""
    g01, g12 = frame["gaps"]
    if min(g01, g12) >= gap or max(g01, g12) < MIN_EIG_GAP:
        return None
    return 2 if g01 < g12 else 0


def _ring_axes(k: int) -> tuple[int, int, int]:
    x, y = (i for i in range(3) if i != k)
    return k, x, y


@functools.lru_cache(maxsize=1)
def _ring_spectrum(k: int) -> np.ndarray:
    """Conjugate azimuthal spectrum (N_CELLS, RING_POLAR, RING_AZIMUTH // 2 + 1) of each cell's
    weight on the grid around axis k (complex64, about 39 MB; built on first use)."""
    u, x, y = _ring_axes(k)
    t = (np.arange(RING_POLAR) + 0.5) / RING_POLAR * np.pi
    ph = (np.arange(RING_AZIMUTH) + 0.5) / RING_AZIMUTH * 2.0 * np.pi
    tt, pp = np.meshgrid(t, ph, indexing="ij")
    d = np.zeros((RING_POLAR, RING_AZIMUTH, 3))
    d[..., u] = np.cos(tt)
    d[..., x] = np.sin(tt) * np.cos(pp)
    d[..., y] = np.sin(tt) * np.sin(pp)
    idx, w = weights(d.reshape(-1, 3))
    dense = np.zeros((RING_POLAR * RING_AZIMUTH, N_CELLS), np.float32)
    np.put_along_axis(dense, idx, w.astype(np.float32), axis=1)
    dense = dense.reshape(RING_POLAR, RING_AZIMUTH, N_CELLS).transpose(2, 0, 1)
    return np.fft.rfft(dense, axis=2).conj().astype(np.complex64)


def _ring_bin(g: np.ndarray, k: int) -> np.ndarray:
    """Flat (polar, azimuth) grid bin around axis k of unit directions g."""
    u, x, y = _ring_axes(k)
    pol = np.arccos(np.clip(g[:, u], -1.0, 1.0))
    azi = np.arctan2(g[:, y], g[:, x]) % (2.0 * np.pi)
    pi = np.clip((pol / np.pi * RING_POLAR).astype(np.int64), 0, RING_POLAR - 1)
    ai = np.clip((azi / (2.0 * np.pi) * RING_AZIMUTH).astype(np.int64), 0, RING_AZIMUTH - 1)
    return pi * RING_AZIMUTH + ai


def ring_values(hist: tuple[np.ndarray, np.ndarray], k: int, s: float):
    """Cell values for every turn of the frame about principal axis k, for both signs of the axis,
    from the grid sums ``hist`` that :func:`accumulate` gathered around axis k (``s``: the
    equivalent radius).

    Returns (turns (T,) radians, S (2, T, N_CELLS), cover (2, T, N_CELLS)): sign 0 is the frame as
    read turned by ``turns[t]`` about axis k (its next axis towards the one after); sign 1 is it
    turned half a turn about the next axis first (axis k reversed), then by ``turns[t]``.
    """
    spec = _ring_spectrum(k)
    m = RING_AZIMUTH * RING_UP
    grids = [tuple(h.reshape(RING_POLAR, RING_AZIMUTH) for h in hist)]
    # axis k reversed: polar -> pi - polar, azimuth -> -azimuth (half a turn about the next axis)
    grids.append(tuple(h[::-1, ::-1] for h in grids[0]))
    out_s, out_c = [], []
    for h_v, h_o in grids:
        sums = [np.fft.irfft(np.einsum("cpa,pa->ca", spec, np.fft.rfft(h, axis=1)), n=m, axis=1) * RING_UP
                for h in (h_v, h_o)]
        s_val, cover = values(sums[0].T, sums[1].T, s)
        out_s.append(s_val)
        out_c.append(cover)
    return np.arange(m) * (2.0 * np.pi / m), np.stack(out_s), np.stack(out_c)
