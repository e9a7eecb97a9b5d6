"""Invisible mesh watermark carrying a 48-bit registry id.

Two versions; :func:`embed_vertices` writes v2 when the mesh can carry it and v1 otherwise (the
stats say which, and why), :func:`decode_vertices` reads both.

``io.dhstudio.watermark.mesh.v2`` (issue 18: survives decimation, re-triangulation, smoothing):

* It reads properties of the SOLID the triangles bound, not of the vertices (``_cells``): the
  volume centroid, the principal axes of the solid's inertia, the equivalent radius ``s``, and in
  each of 264 direction cells (soft weights over the sphere of directions from the centroid, in the
  principal frame) a cube-mean radius ``S_j`` from exact cone volumes and solid angles. Cutting
  triangles in four keeps these numbers exactly; decimation and remeshing keep them as well as they
  keep the shape. ``D = S - mean of the 6 neighbouring cells`` removes what is smooth over the
  sphere (a slightly moved centre, a rescale, a uniform shrink from smoothing).
* Payload: the image watermark's 80-bit info word (48-bit id + CRC-32, key-scrambled), K=7 rate-1/3
  convolutional code -> 258 channel bits on 258 of the 264 cells (keyed choice and order).
* Embedding: dithered QIM (keyed dither per cell): each carrying cell's ``D_j`` is moved to the
  nearest point of its bit's lattice (step ``_step(rung)`` in units of ``s``: half a step is
  ``V2_FILL`` of the cap for a mesh whose bounding-box side is ``rung`` times ``s``; the rung is
  chosen from ``V2_STEP_RUNGS``, a smaller one when the larger cannot be set). The vertices move
  only radially from the centroid by a smooth field, ``sum_j w_j(direction) * a_j``, with every
  ``|a_j|`` <= the cap, so no vertex moves more than the cap; ``a`` is found by ``V2_ITERS`` damped
  iterations that re-measure the marked mesh with the decoder's own functions. The embedder decodes
  its result and falls back to v1 when its own decoder does not recover the id.
* Needs: faces (>= ``V2_MIN_FACES``), a solid with volume, and one stable principal axis: a
  sphere-like shape (three moments within ``_cells.MIN_EIG_GAP``) gets v1. A solid of revolution
  (two equal moments) has a stable axis but no stable directions across it: the embedder keeps its
  own choice of those while it iterates, and the reader, when two moments are within
  ``_cells.SEARCH_GAP``, also scores every turn about the stable axis (both signs, in steps of
  0.06 degrees, by how close the cells sit to a QIM lattice, no CRC check:
  ``_cells.ring_values``) and decodes the ``RING_CANDIDATES`` best. Mirrored meshes are not read
  (only proper rotations of the axes are tried).

``io.dhstudio.watermark.mesh.v1`` (vertex norms, after Cho, Prost and Jung, IEEE TSP 2007, method
I: bin means): 258 equal-count bins of the unique vertices' distances to their centroid, each bin's
mean normalised position pushed above or below 1/2. Survives re-export, reorder, rotation, scale,
light noise; not decimation or re-triangulation.

* Displacement cap (hard, both versions): ``MAX_DISPLACEMENT_REL`` = 0.5 / 1700 of the largest
  bounding-box side, i.e. 0.5 mm on a 1.7 m body, at any scale; checked on the returned
  (float32-representable) array.
* Decision rule and false-positive bound: ``found`` only when a decoded 80-bit word passes its
  CRC-32 check. The decoder makes at most ``MAX_ATTEMPTS`` = 4 axis-sign hypotheses x 4 QIM steps
  + 8 turns (two moments within ``SEARCH_GAP`` only) + 1 v1 reading = 25 checks, so
  P(found | unmarked mesh) <= 25 * 2**-32 ~= 5.8e-9 (``FALSE_POSITIVE_BOUND``). ``confidence``
  and ``bit_errors`` have the image watermark's meaning.

Limits: v1 needs ``MIN_VERTICES`` = 30 * 258 unique vertices; v2 needs the faces (a point cloud can
only carry v1). Neither is designed against cropping a part of the mesh away. Figures:
``benchmarks/mesh_watermark_bench.py`` and BENCHMARKS.md.

Only numpy at run time; trimesh (the ``body`` extra) is imported lazily by the file helpers.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from ..errors import InputError, OutputError, WatermarkError
from ..media import write_atomic
from . import _cells, _ecc
from .image import DEFAULT_KEY, WatermarkResult, _check_id

ALGORITHM = "io.dhstudio.watermark.mesh.v2"
ALGORITHM_V1 = "io.dhstudio.watermark.mesh.v1"
ALGORITHMS_READ = (ALGORITHM, ALGORITHM_V1)
ID_BITS = _ecc.ID_BITS
N_BINS = _ecc.N_CODED  # one bin per channel bit (258)
MIN_PER_BIN = 30
MIN_VERTICES = MIN_PER_BIN * N_BINS  # 7740 unique vertices
MAX_DISPLACEMENT_REL = 0.5 / 1700.0  # of the largest bounding-box side: 0.5 mm on a 1.7 m body
ALPHA = 0.1  # target offset of a bin mean from 1/2 (bin units)
# v2: 4 sign hypotheses of the principal axes x 4 QIM steps; then one v1 reading. Each is one
# CRC-32 check of one decoded word.
V2_STEP_RUNGS = (1.5, 2.25, 3.375, 5.0625)  # bounding-box side / equivalent radius, see _step
V2_FILL = 0.6  # the largest move a cell may need (half a QIM step) as a share of the cap
V2_ITERS = 10
V2_GAIN = 0.7
V2_MIN_FACES = 2000
# a solid with two (nearly) equal principal moments: after those 16, the RING_CANDIDATES turns about
# its stable axis whose cells sit closest to a QIM lattice (searched without a CRC check) are read
RING_CANDIDATES = 8
_RING_PEAK = _cells.RING_UP  # lock peaks closer than one azimuth bin (0.94 degrees) are one peak
MAX_ATTEMPTS = len(_cells.FLIPS) * len(V2_STEP_RUNGS) + RING_CANDIDATES + 1
FALSE_POSITIVE_BOUND = MAX_ATTEMPTS * 2.0 ** -_ecc.CRC_BITS
MIN_REL_RANGE = 1e-4  # (rho_max - rho_min) / rho_max below this: no room (sphere-like)
_SE_FLOOR = 0.15
_CENTROID_ITERS = 4
_FORMATS = {".glb": "glb", ".obj": "obj", ".ply": "ply"}

__all__ = [
    "ALGORITHM", "DEFAULT_KEY", "FALSE_POSITIVE_BOUND", "MAX_DISPLACEMENT_REL", "MIN_VERTICES",
    "WatermarkResult", "MeshWatermarkResult", "embed_vertices", "decode_vertices",
    "embed_mesh_file", "decode_mesh_file",
]


class MeshWatermarkResult(WatermarkResult):
    """The image watermark's result dataclass (same fields); ``to_dict`` names the mesh algorithm."""

    def to_dict(self) -> dict:
        d = super().to_dict()
        d["algorithm"] = self.detail.get("algorithm", ALGORITHM)
        return d


# ----------------------------------------------------------------------------- geometry helpers

def _as_vertices(vertices) -> np.ndarray:
    v = np.asarray(vertices)
    if v.ndim != 2 or v.shape[1] != 3:
        raise WatermarkError(f"expected vertices of shape (N, 3), got {v.shape}")
    if not np.issubdtype(v.dtype, np.floating) and not np.issubdtype(v.dtype, np.integer):
        raise WatermarkError(f"expected numeric vertices, got dtype {v.dtype}")
    return v


def _embed_inputs(vertices, wm_id, key) -> tuple[int, bytes, np.ndarray, np.dtype]:
    """Checked (id, key, float64 vertices, output dtype) for an embedder; raises on bad input."""
    wm_id = _check_id(wm_id)
    if not isinstance(key, (bytes, bytearray)):
        raise ValueError("key must be bytes")
    v_in = _as_vertices(vertices)
    out_dtype = v_in.dtype if np.issubdtype(v_in.dtype, np.floating) else np.float64
    v0 = np.asarray(v_in, dtype=np.float64)
    if not np.all(np.isfinite(v0)):
        raise WatermarkError("vertices contain NaN or infinite values")
    return wm_id, bytes(key), v0, out_dtype


def _referenced(n: int, faces) -> np.ndarray:
    """Boolean mask of the vertices the faces use (all when faces is None)."""
    if faces is None:
        return np.ones(n, dtype=bool)
    f = np.asarray(faces)
    if f.ndim != 2 or f.shape[1] != 3 or not np.issubdtype(f.dtype, np.integer):
        raise WatermarkError(f"expected integer faces of shape (M, 3), got {f.shape} {f.dtype}")
    if f.size and (f.min() < 0 or f.max() >= n):
        raise WatermarkError(f"faces index vertices outside [0, {n})")
    mask = np.zeros(n, dtype=bool)
    mask[f.reshape(-1)] = True
    return mask


def _unique_rows(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique rows of a float64 (N, 3) array (exact equality, -0.0 == 0.0) and the inverse index."""
    v = np.ascontiguousarray(v + 0.0)
    key = v.view(np.dtype((np.void, v.dtype.itemsize * 3))).reshape(-1)
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    return v[first], inverse.reshape(-1)


def _f32(v: np.ndarray) -> np.ndarray:
    return np.asarray(v, dtype=np.float64).astype(np.float32).astype(np.float64)


def _layout(key: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Keyed bin -> channel-bit permutation and keyed +-1 sign per bin."""
    raw = np.frombuffer(_ecc.keyed_bytes(key, b"mesh-perm", 8 * N_BINS), dtype="<u8")
    perm = np.argsort(raw, kind="stable")
    sign = 2.0 * _ecc.keyed_bits(key, b"mesh-sign", N_BINS).astype(np.float64) - 1.0
    return perm, sign


def _bins(vu: np.ndarray, c: np.ndarray):
    """Equal-count bins of the radial distances around c.

    Returns rho (N,), bin index (N,), in-bin position u in [0, 1] (N,), bin start (B,), bin width
    (B,); bin index is None when the distances have no spread. Bin j holds the vertices of rank
    [j*N/B, (j+1)*N/B) in rho; its first and last vertex (in rho) are the anchors u = 0 and u = 1.
    A monotone remap that fixes the anchors keeps every rank, so the decoder rebuilds the same bins.
    Only rho VALUES enter (ties may break either way without changing anything)."""
    d = vu - c
    rho = np.sqrt(np.einsum("ij,ij->i", d, d))
    n = len(rho)
    rmin, rmax = float(rho.min()), float(rho.max())
    if not rmax > 0 or (rmax - rmin) < MIN_REL_RANGE * rmax:
        return rho, None, None, None, None
    order = np.argsort(rho, kind="stable")
    starts = (np.arange(N_BINS + 1) * n) // N_BINS
    b = np.empty(n, dtype=np.int64)
    b[order] = np.repeat(np.arange(N_BINS), np.diff(starts))
    rs = rho[order]
    lo = rs[starts[:-1]]
    hi = rs[np.maximum(starts[1:] - 1, starts[:-1])]
    width = hi - lo
    safe = np.where(width > 0, width, 1.0)
    u = np.where(width[b] > 0, (rho - lo[b]) / safe[b], 0.5)
    return rho, b, np.clip(u, 0.0, 1.0), lo, width


def _bin_stats(b: np.ndarray, u: np.ndarray):
    n = np.bincount(b, minlength=N_BINS).astype(np.float64)
    s1 = np.bincount(b, weights=u, minlength=N_BINS)
    s2 = np.bincount(b, weights=u * u, minlength=N_BINS)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, s1 / np.maximum(n, 1), 0.5)
        var = np.where(n > 1, (s2 - n * mean * mean) / np.maximum(n - 1, 1), 0.0)
    return n, mean, np.sqrt(np.maximum(var, 0.0))


def _soft(vu: np.ndarray, key: bytes) -> tuple[np.ndarray | None, dict]:
    """258 soft channel values (> 0: bit 1) from unique vertex positions, or None + reason."""
    info: dict = {"unique_vertices": int(len(vu))}
    if len(vu) < MIN_VERTICES:
        info["reason"] = (f"mesh too small to carry the watermark ({len(vu)} unique vertices; "
                          f"need {MIN_VERTICES})")
        return None, info
    c = vu.mean(axis=0)
    _, b, u, _, width = _bins(vu, c)
    if b is None:
        info["reason"] = "all vertices are (nearly) at the same distance from the centroid"
        return None, info
    n, mean, std = _bin_stats(b, u)
    se = np.maximum(std, _SE_FLOOR) / np.sqrt(np.maximum(n, 1.0))
    soft_bin = np.where((n >= 3) & (width > 0), (mean - 0.5) / se, 0.0)
    perm, sign = _layout(key)
    soft = np.zeros(N_BINS)
    soft[perm] = soft_bin * sign
    info["empty_bins"] = int(np.sum((n < 3) | (width <= 0)))
    return soft, info


def _found(wm_id: int, errors: int, detail: dict) -> MeshWatermarkResult:
    """The result for a word that passed its CRC check (confidence from the channel-bit errors)."""
    conf = float(np.clip(1.0 - 2.0 * errors / N_BINS, 0.0, 1.0))
    return MeshWatermarkResult(True, int(wm_id), round(conf, 4), errors, FALSE_POSITIVE_BOUND, detail)


def _decode_soft(soft: np.ndarray, key: bytes) -> tuple[int | None, int]:
    word = _ecc.viterbi_decode(soft)
    wm_id = _ecc.check_info_word(word, key)
    recoded = _ecc.conv_encode(word).astype(np.int64)
    hard = (soft > 0).astype(np.int64)
    errors = int(np.sum((hard != recoded) & (soft != 0)) + np.sum(soft == 0))
    return wm_id, errors


# ----------------------------------------------------------------------------- embed / decode

def _embed_unique(vu: np.ndarray, c: np.ndarray, target_sign: np.ndarray, cap: float,
                  alpha: float) -> np.ndarray:
    """Radially remap the unique vertices around centroid c; returns new unique positions."""
    rho, b, u, lo_b, width = _bins(vu, c)
    if b is None:
        raise WatermarkError("mesh cannot be watermarked: all vertices are (nearly) at the same "
                             "distance from the centroid (sphere-like); vertex norms leave no room")
    n, mean, _ = _bin_stats(b, u)
    target = 0.5 + target_sign * alpha
    todo = (n >= 3) & (width > 0) & (target_sign * (mean - target) < 0)
    cu = (cap / np.where(width > 0, width, np.inf))[b]  # displacement cap in bin units
    lo = np.full(N_BINS, -6.0)  # log k: small k raises the mean
    hi = np.full(N_BINS, 6.0)
    uu = np.clip(u, 1e-12, 1.0)

    def mapped(logk):
        k = np.exp(logk[b])
        return u + np.clip(uu ** k - u, -cu, cu)

    for _ in range(30):
        mid = 0.5 * (lo + hi)
        m = np.bincount(b, weights=mapped(mid), minlength=N_BINS) / np.maximum(n, 1)
        too_high = m > target  # mean decreases with k: raise k
        lo = np.where(too_high, mid, lo)
        hi = np.where(too_high, hi, mid)
    logk = np.where(todo, 0.5 * (lo + hi), 0.0)
    # pick the bound on the right side of the target (so the mean reaches it when it can)
    logk = np.where(todo & (target_sign > 0), lo, logk)
    logk = np.where(todo & (target_sign < 0), hi, logk)
    logk = np.where(todo, logk, 0.0)
    u2 = mapped(logk)
    u2 = np.where(todo[b], u2, u)
    rho2 = lo_b[b] + u2 * width[b]
    delta = np.clip(rho2 - rho, -cap, cap)
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = np.where(rho > 0, (rho + delta) / np.where(rho > 0, rho, 1.0), 1.0)
    return c + (vu - c) * scale[:, None]


def _embed_v1(vertices, faces, wm_id: int, key: bytes = DEFAULT_KEY, *,
              alpha: float = ALPHA) -> tuple[np.ndarray, dict]:
    """Watermark a triangle mesh's geometry with the v1 (vertex-norm) mark.

    Args:
        vertices: (N, 3) float array.
        faces: (M, 3) int array or None; only used to pick the referenced vertices (unreferenced
            ones are neither read nor moved). Vertex order and count are unchanged.
        wm_id: 48-bit registry id.
        key: watermark key (bytes).
        alpha: target offset of each bin mean from 1/2 (bin units); the displacement cap wins.

    Returns:
        (new_vertices (N, 3) of the input's float dtype (float64 for integer input), stats) where
        stats has max_displacement (mesh units), max_displacement_rel (of the largest bbox side),
        max_displacement_mm_at_1p7m, cap, bins, unique_vertices, empty_bins, bit_errors, iterations.
        The new positions are float32-representable, so float32 file formats store them exactly.

    Raises:
        WatermarkError: mesh too small, degenerate or not markable within the cap.
    """
    wm_id, key, v0, out_dtype = _embed_inputs(vertices, wm_id, key)
    used = _referenced(len(v0), faces)
    vu, inv = _unique_rows(_f32(v0[used]))
    if len(vu) < MIN_VERTICES:
        raise WatermarkError(f"mesh too small to watermark ({len(vu)} unique vertices; "
                             f"need at least {MIN_VERTICES})")
    extent = float(np.max(vu.max(axis=0) - vu.min(axis=0)))
    cap_abs = MAX_DISPLACEMENT_REL * extent
    # room for the float32 rounding of the result (a few ulps of the largest coordinate)
    ulp = float(np.max(np.abs(vu))) * 2.0 ** -23
    cap = cap_abs - 4.0 * ulp
    if not cap > 0:
        raise WatermarkError("mesh is degenerate (zero size)")

    bits = _ecc.conv_encode(_ecc.make_info_word(wm_id, key)).astype(np.float64)
    perm, sign = _layout(key)
    target_sign = (2.0 * bits[perm] - 1.0) * sign

    c = vu.mean(axis=0)
    iters = 0
    for iters in range(1, _CENTROID_ITERS + 1):
        new_u = _f32(_embed_unique(vu, c, target_sign, cap, alpha))
        c_new = new_u.mean(axis=0)
        moved = float(np.linalg.norm(c_new - c))
        c = c_new
        if moved < 1e-3 * cap:
            break

    soft, info = _soft(_unique_rows(new_u)[0], key)
    if soft is None:
        raise WatermarkError(f"embedding failed: {info['reason']}")
    got, errors = _decode_soft(soft, key)
    if got != wm_id:
        raise WatermarkError("embedding failed: this mesh's vertex-norm distribution cannot carry the "
                             f"mark within the displacement cap ({errors} channel-bit errors)")

    out = np.array(v0, dtype=np.float64)
    out_used = new_u[inv]
    out[used] = out_used
    disp = np.sqrt(np.sum((out[used] - v0[used]) ** 2, axis=1))
    max_disp = float(disp.max()) if disp.size else 0.0
    if max_disp > cap_abs:  # never expected: the radial delta is clipped to cap < cap_abs
        raise WatermarkError(f"internal error: displacement {max_disp:g} exceeds the cap {cap_abs:g}")
    stats = {
        "algorithm": ALGORITHM_V1,
        "max_displacement": max_disp,
        "max_displacement_rel": max_disp / extent,
        "max_displacement_mm_at_1p7m": max_disp / extent * 1700.0,
        "mean_displacement": float(disp.mean()) if disp.size else 0.0,
        "cap": cap_abs,
        "bins": N_BINS,
        "unique_vertices": int(len(vu)),
        "empty_bins": info["empty_bins"],
        "bit_errors": errors,
        "iterations": iters,
    }
    return out.astype(out_dtype), stats


def _decode_v1(vertices, faces=None, key: bytes = DEFAULT_KEY) -> MeshWatermarkResult:
    """Look for the v1 mesh watermark in (N, 3) vertex positions (faces optional: when given, only the
    vertices they reference are used; pass them if the embedder got faces and the mesh has
    unreferenced vertices). Returns a :class:`WatermarkResult` (subclass ``MeshWatermarkResult``);
    found only if the CRC-32 check passes. Never raises on a too-small mesh (not found + reason)."""
    key = bytes(key)
    v = np.asarray(_as_vertices(vertices), dtype=np.float64)
    used = _referenced(len(v), faces) if faces is not None else np.ones(len(v), dtype=bool)
    used &= np.all(np.isfinite(v), axis=1)  # NaN / inf vertices are not read
    vu, _ = _unique_rows(_f32(v[used]))
    soft, info = _soft(vu, key)
    detail = {"algorithm": ALGORITHM_V1, **info}
    if soft is None:
        return MeshWatermarkResult(False, None, 0.0, None, FALSE_POSITIVE_BOUND, detail)
    wm_id, errors = _decode_soft(soft, key)
    detail["n_channel_bits"] = N_BINS
    if wm_id is None:
        detail["reason"] = "no valid watermark word (CRC-32 check failed)"
        return MeshWatermarkResult(False, None, 0.0, None, FALSE_POSITIVE_BOUND, detail)
    return _found(wm_id, errors, detail)


# ----------------------------------------------------------------------------- v2 (solid cells)

def _v2_layout(key: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Keyed cell of each channel bit (the first N_BINS of a permutation of the 264 cells) and a
    keyed QIM dither in [0, 1) per cell."""
    raw = np.frombuffer(_ecc.keyed_bytes(key, b"mesh2-perm", 8 * _cells.N_CELLS), dtype="<u8")
    cell_of_bit = np.argsort(raw, kind="stable")[:N_BINS]
    dither = np.frombuffer(_ecc.keyed_bytes(key, b"mesh2-dither", 8 * _cells.N_CELLS),
                           dtype="<u8") / 2.0 ** 64
    return cell_of_bit, dither


def _step(rung: float) -> float:
    """QIM step (units of the equivalent radius s) for a mesh whose bounding-box side is at least
    ``rung`` times s: half a step is V2_FILL of the cap."""
    return 2.0 * V2_FILL * MAX_DISPLACEMENT_REL * rung


def _v2_frame(v: np.ndarray, f: np.ndarray) -> tuple[dict | None, str | None]:
    if len(f) < V2_MIN_FACES:
        return None, f"too few triangles for the v2 mark ({len(f)}; need {V2_MIN_FACES})"
    frame = _cells.solid(v, f)
    if frame is None:
        return None, "the triangles enclose (nearly) no volume"
    return frame, None


def _v2_rungs(frame: dict, extent: float) -> list[float]:
    """The QIM step rungs to try, largest first: the largest the mesh's cap allows, then smaller."""
    ratio = extent / frame["s"]
    fits = [r for r in V2_STEP_RUNGS if r <= ratio] or [V2_STEP_RUNGS[0]]
    return fits[::-1][:2]


def _v2_start(v: np.ndarray, f: np.ndarray) -> tuple[dict, np.ndarray]:
    """The unmarked mesh's frame and high-passed cell values; WatermarkError when v2 cannot be
    carried (the caller falls back to v1)."""
    frame0, why = _v2_frame(v, f)
    if frame0 is None:
        raise WatermarkError(why)
    if frame0["gap"] < _cells.MIN_EIG_GAP and _cells.symmetric_axis(frame0, _cells.MIN_EIG_GAP) is None:
        raise WatermarkError("no stable principal axis (the shape is too symmetric)")
    s_val, _ = _cells.cell_values(v, f, frame0)
    return frame0, _cells.high_pass() @ s_val


def _follow(e: np.ndarray, e0: np.ndarray, k: int | None) -> np.ndarray:
    """The axes e (columns, read from the solid being marked) made to follow the unmarked frame
    e0: each axis signed like e0's; with a symmetry axis k, only axis k is taken from e and the
    other two are e0's, turned about it."""
    e = e * np.where(np.sum(e * e0, axis=0) < 0, -1.0, 1.0)
    if k is None:
        return e
    u, x, y = _cells._ring_axes(k)
    out = np.empty_like(e)
    out[:, u] = e[:, u]
    ex = e0[:, x] - (e0[:, x] @ e[:, u]) * e[:, u]
    out[:, x] = ex / np.linalg.norm(ex)
    out[:, y] = np.cross(out[:, u], out[:, x])
    if np.linalg.det(out) < 0:
        out[:, y] *= -1.0
    return out


def _embed_v2(v: np.ndarray, f: np.ndarray, frame0: dict, d_start: np.ndarray, used: np.ndarray,
              wm_id: int, key: bytes, cap: float, rung: float) -> tuple[np.ndarray, dict]:
    """Move the referenced vertices radially (from the volume centroid) by a smooth field, one
    amount per direction cell, so that each cell's high-passed value D (``d_start`` before)
    sits on its bit's QIM lattice."""
    s0 = frame0["s"]
    step = _step(rung)
    capn = cap / s0
    cell_of_bit, dither = _v2_layout(key)
    bits = _ecc.conv_encode(_ecc.make_info_word(wm_id, key)).astype(np.float64)
    bit_of_cell = np.full(_cells.N_CELLS, np.nan)
    bit_of_cell[cell_of_bit] = bits
    carries = ~np.isnan(bit_of_cell)
    d_now = d_start
    half = np.where(carries, np.nan_to_num(bit_of_cell) / 2.0, 0.0)
    target = (np.round(d_now / step - dither - half) + dither + half) * step

    rel = v[used] - frame0["C"]
    rho = np.sqrt(np.einsum("ij,ij->i", rel, rel))
    unit = rel / np.maximum(rho, 1e-300)[:, None]
    idx, w = _cells.weights(unit @ frame0["e"])
    amount = np.zeros(_cells.N_CELLS)
    new = v.copy()
    sym = _cells.symmetric_axis(frame0, _cells.MIN_EIG_GAP)
    for _ in range(V2_ITERS):
        resid = np.where(carries, target - d_now, 0.0)
        amount = np.clip(amount + V2_GAIN * resid, -capn, capn)
        disp = s0 * np.sum(w * amount[idx], axis=1)
        new = v.copy()
        new[used] = _f32(v[used] + unit * disp[:, None])
        frame, why = _v2_frame(new, f)
        if frame is None:
            raise WatermarkError(why)
        frame["e"] = _follow(frame["e"], frame0["e"], sym)
        s_val, _ = _cells.cell_values(new, f, frame)
        d_now = _cells.high_pass() @ s_val
    off = (d_now - target)[carries] / step
    stats = {"cells": _cells.N_CELLS, "qim_step_rung": rung,
             "cells_within_quarter_step": float(np.mean(np.abs(off) < 0.25)),
             "cells_saturated": float(np.mean(np.abs(amount[carries]) >= capn * 0.999)),
             "axes_gap": frame0["gap"], "symmetry_axis": sym}
    return new, stats


def _decode_v2(v: np.ndarray, f: np.ndarray, key: bytes) -> MeshWatermarkResult:
    detail: dict = {"algorithm": ALGORITHM}
    frame, why = _v2_frame(v, f)
    if frame is None:
        detail["reason"] = why
        return MeshWatermarkResult(False, None, 0.0, None, FALSE_POSITIVE_BOUND, detail)
    k = _cells.symmetric_axis(frame)
    vsum, osum, hist = _cells.accumulate(v, f, frame, k)  # one pass; the turn grid only when k
    s_val, cover = _cells.values(vsum, osum, frame["s"])
    cell_of_bit, dither = _v2_layout(key)
    for h, perm in enumerate(_cells.flip_permutations()):
        d_val = _cells.high_pass() @ s_val[perm]
        rel = np.minimum(cover[perm], 1.0)
        for rung in V2_STEP_RUNGS:
            phase = d_val / _step(rung) - dither
            soft = (-np.cos(2.0 * np.pi * phase) * rel)[cell_of_bit]
            wm_id, errors = _decode_soft(soft, key)
            if wm_id is not None:
                detail.update(axes_hypothesis=h, qim_step_rung=rung, n_channel_bits=N_BINS)
                return _found(wm_id, errors, detail)
    if k is not None:
        found = _decode_turns(hist, k, frame["s"], key, cell_of_bit, dither, detail)
        if found is not None:
            return found
    detail["reason"] = "no valid watermark word (CRC-32 check failed)"
    return MeshWatermarkResult(False, None, 0.0, None, FALSE_POSITIVE_BOUND, detail)


def _decode_turns(hist, k, s, key, cell_of_bit, dither, detail) -> MeshWatermarkResult | None:
    """Read a solid whose axes across its stable axis k are not stable: every turn about k (both
    signs of k) is scored by how close its cells sit to each QIM lattice (no CRC check); the
    RING_CANDIDATES best separate peaks are decoded, one CRC check each."""
    turns, s_all, cover_all = _cells.ring_values(hist, k, s)
    hp_t = _cells.high_pass().T
    cands = []
    phases = {}
    for sg in range(2):
        d_val = (s_all[sg] @ hp_t)[:, cell_of_bit]
        rel = np.minimum(cover_all[sg][:, cell_of_bit], 1.0)
        for rung in V2_STEP_RUNGS:
            phase = d_val / _step(rung) - dither[cell_of_bit]
            lock = np.sum(np.cos(4.0 * np.pi * phase) * rel, axis=1) / np.maximum(rel.sum(axis=1), 1e-12)
            peak = np.max([np.roll(lock, j) for j in range(-_RING_PEAK, _RING_PEAK + 1)], axis=0)
            for t in np.flatnonzero(lock >= peak):
                cands.append((float(lock[t]), sg, rung, int(t)))
            phases[(sg, rung)] = (phase, rel)
    cands.sort(key=lambda c: -c[0])
    for lock, sg, rung, t in cands[:RING_CANDIDATES]:
        phase, rel = phases[(sg, rung)]
        wm_id, errors = _decode_soft(-np.cos(2.0 * np.pi * phase[t]) * rel[t], key)
        if wm_id is not None:
            detail.update(axes_hypothesis="turn", symmetry_axis=k, axis_reversed=bool(sg),
                          turn_deg=round(float(np.degrees(turns[t])), 3), lock=round(lock, 4),
                          qim_step_rung=rung, n_channel_bits=N_BINS)
            return _found(wm_id, errors, detail)
    return None


# ----------------------------------------------------------------------------- public

def embed_vertices(vertices, faces, wm_id: int, key: bytes = DEFAULT_KEY) -> tuple[np.ndarray, dict]:
    """Watermark a triangle mesh's geometry (v2; v1 when the mesh cannot carry v2).

    Args:
        vertices: (N, 3) float array.
        faces: (M, 3) int array (None: only the v1 mark is possible); unreferenced vertices are
            neither read nor moved. Vertex order and count are unchanged.
        wm_id: 48-bit registry id.
        key: watermark key (bytes).

    Returns:
        (new_vertices (N, 3) of the input's float dtype (float64 for integer input), stats) where
        stats has algorithm, max_displacement (mesh units), max_displacement_rel (of the largest
        bbox side), max_displacement_mm_at_1p7m, mean_displacement, cap, and, for v2, cells,
        qim_step_rung, cells_within_quarter_step, cells_saturated; for v1 its bin statistics and
        ``v2_skipped`` (why v2 could not be used).

    Raises:
        WatermarkError: mesh too small, degenerate or not markable within the cap.
    """
    wm_id, key, v0, out_dtype = _embed_inputs(vertices, wm_id, key)
    if faces is None:
        new, stats = _embed_v1(v0, None, wm_id, key)
        stats["v2_skipped"] = "no faces given"
        return new.astype(out_dtype), stats
    used = _referenced(len(v0), faces)
    f = np.asarray(faces, dtype=np.int64)
    vf = _f32(v0)
    ref = vf[used]
    extent = float(np.max(ref.max(axis=0) - ref.min(axis=0))) if len(ref) else 0.0
    cap_abs = MAX_DISPLACEMENT_REL * extent
    cap = cap_abs - 4.0 * float(np.max(np.abs(ref), initial=0.0)) * 2.0 ** -23
    try:
        if not cap > 0:
            raise WatermarkError("mesh is degenerate (zero size)")
        frame0, d_start = _v2_start(vf, f)
        for rung in _v2_rungs(frame0, extent):  # a smaller QIM step when the larger cannot be set
            new, stats = _embed_v2(vf, f, frame0, d_start, used, wm_id, key, cap, rung)
            got = _decode_v2(new, f, key)
            if got.id == wm_id:
                break
        else:
            raise WatermarkError("the v2 cells could not be set within the displacement cap")
    except WatermarkError as e:
        new, stats = _embed_v1(v0, faces, wm_id, key)
        stats["v2_skipped"] = e.message if hasattr(e, "message") else str(e)
        return new.astype(out_dtype), stats
    out = v0.copy()
    out[used] = new[used]
    disp = np.sqrt(np.sum((out[used] - v0[used]) ** 2, axis=1))
    max_disp = float(disp.max()) if disp.size else 0.0
    if max_disp > cap_abs:  # never expected: every cell's amount is clipped to cap < cap_abs
        raise WatermarkError(f"internal error: displacement {max_disp:g} exceeds the cap {cap_abs:g}")
    stats.update({
        "algorithm": ALGORITHM,
        "max_displacement": max_disp,
        "max_displacement_rel": max_disp / extent,
        "max_displacement_mm_at_1p7m": max_disp / extent * 1700.0,
        "mean_displacement": float(disp.mean()) if disp.size else 0.0,
        "cap": cap_abs,
        "bit_errors": got.bit_errors,
    })
    return out.astype(out_dtype), stats


def decode_vertices(vertices, faces=None, key: bytes = DEFAULT_KEY) -> MeshWatermarkResult:
    """Look for the mesh watermark in (N, 3) vertex positions and (M, 3) faces: the v2 reading
    (needs the faces), then the v1 one. Returns a :class:`WatermarkResult` (subclass
    ``MeshWatermarkResult``); found only if a decoded word passes its CRC-32 check. Never raises
    on a too-small or degenerate mesh (not found + reason)."""
    key = bytes(key)
    v = np.asarray(_as_vertices(vertices), dtype=np.float64)
    reasons = {}
    if faces is not None:
        f = np.asarray(faces)
        _referenced(len(v), f)  # validates
        ok = np.all(np.isfinite(v), axis=1)
        f = f[np.all(ok[f], axis=1)].astype(np.int64)
        r2 = _decode_v2(np.where(ok[:, None], v, 0.0), f, key)
        if r2.found:
            return r2
        reasons["v2"] = r2.detail.get("reason")
    else:
        reasons["v2"] = "no faces given"
    r1 = _decode_v1(v, faces, key)
    if not r1.found:
        r1.detail["reason_v2"] = reasons["v2"]
    r1.detail["max_attempts"] = MAX_ATTEMPTS
    return r1


# ----------------------------------------------------------------------------- files

def _trimesh():
    try:
        import trimesh  # noqa: PLC0415 (optional dependency, mesh files only)
    except ImportError as e:
        raise WatermarkError(f"mesh files need trimesh: install the [body] extra ({e})",
                             code="watermark.missing_dependency") from None
    return trimesh


def _format(path: Path) -> str:
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(f"unsupported mesh format {path.suffix or '(none)'} for {path}; "
                         "expected .glb, .obj or .ply")
    return fmt


_MEDIA_FORMATS = {"model/gltf-binary": "glb", "model/ply": "ply", "model/obj": "obj"}


def _load(source, fmt: str | None = None):
    """Load a mesh (a path, or bytes with its format) as a trimesh Scene or Trimesh, vertex order
    kept; InputError when bad."""
    trimesh = _trimesh()
    if isinstance(source, (bytes, bytearray, memoryview)):
        if fmt is None:
            raise InputError("mesh bytes need their format (glb, obj or ply)")
        label, file_obj = f"{fmt.upper()} mesh", io.BytesIO(bytes(source))
    else:
        path = Path(source)
        if not path.is_file():
            raise InputError(f"cannot read {path}: no such file")
        fmt = fmt or _format(path)
        label, file_obj = str(path), str(path)
    try:
        obj = trimesh.load(file_obj, file_type=fmt, process=False, maintain_order=True)
    except Exception as e:  # trimesh raises many types on corrupt input
        msg = (str(e).splitlines() or [type(e).__name__])[0]
        raise InputError(f"cannot decode mesh {label}: {msg}") from None
    return obj


def _parts(obj) -> list[tuple[object, np.ndarray | None]]:
    """(Trimesh, world transform or None) for each triangle mesh in a loaded file."""
    trimesh = _trimesh()
    if isinstance(obj, trimesh.Trimesh):
        return [(obj, None)]
    if isinstance(obj, trimesh.Scene):
        parts, seen = [], set()
        for node in obj.graph.nodes_geometry:
            transform, name = obj.graph[node]
            geom = obj.geometry.get(name)
            if not isinstance(geom, trimesh.Trimesh):
                continue
            if name in seen:
                raise InputError("mesh files that instance the same geometry several times are "
                                 "not supported by the mesh watermark")
            seen.add(name)
            parts.append((geom, np.asarray(transform, dtype=np.float64)))
        return parts
    return []


def _world(parts) -> tuple[np.ndarray, np.ndarray, list[int]]:
    vs, fs, sizes, off = [], [], [], 0
    for geom, tf in parts:
        v = np.asarray(geom.vertices, dtype=np.float64)
        if tf is not None:
            v = v @ tf[:3, :3].T + tf[:3, 3]
        f = np.asarray(geom.faces, dtype=np.int64).reshape(-1, 3)
        vs.append(v)
        fs.append(f + off)
        sizes.append(len(v))
        off += len(v)
    if not vs:
        return np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64), []
    return np.concatenate(vs), np.concatenate(fs), sizes


def decode_mesh_file(source, *, media_type: str | None = None, key: bytes = DEFAULT_KEY) -> WatermarkResult:
    """Decode the mesh watermark from a GLB, OBJ or PLY file (all meshes of a scene, in world
    coordinates). ``source``: a path, or the file's bytes with ``media_type`` (model/gltf-binary,
    model/ply, model/obj). Unreadable, corrupt or empty files raise a one-line ``InputError``."""
    fmt = _MEDIA_FORMATS.get(media_type) if media_type else None
    if media_type and fmt is None:
        raise InputError(f"no mesh watermark for {media_type}")
    v, f, _ = _world(_parts(_load(source, fmt)))
    if len(v) == 0 or len(f) == 0:
        raise InputError("no triangle mesh in " + (str(source) if isinstance(source, (str, Path)) else "the file"))
    return decode_vertices(v, f, key=key)


def embed_mesh_file(src, dst, wm_id: int, *, key: bytes = DEFAULT_KEY, **kw) -> dict:
    """Watermark a GLB / OBJ / PLY mesh file into ``dst`` (same format as ``src``; vertex colours,
    UVs and materials kept as far as trimesh keeps them; an OBJ's material goes to
    ``<dst stem>.mtl`` next to it). The write is atomic (temp file + os.replace). Returns the
    embedding stats (see :func:`embed_vertices`)."""
    wm_id = _check_id(wm_id)
    src, dst = Path(src), Path(dst)
    fmt = _format(src)
    if _format(dst) != fmt:
        raise OutputError(f"{dst} must have the same format as {src} ({src.suffix})")
    if not dst.parent.is_dir():
        raise OutputError(f"cannot write {dst}: folder {dst.parent} does not exist")
    if dst.resolve() == src.resolve():
        raise OutputError(f"cannot write {dst}: same file as the input")
    obj = _load(src)
    parts = _parts(obj)
    v, f, sizes = _world(parts)
    if len(v) == 0 or len(f) == 0:
        raise InputError(f"no triangle mesh in {src}")
    new_v, stats = embed_vertices(v, f, wm_id, key=key, **kw)
    start = 0
    for (geom, tf), n in zip(parts, sizes):
        part = new_v[start:start + n]
        start += n
        if tf is not None:
            part = (part - tf[:3, 3]) @ np.linalg.inv(tf[:3, :3]).T
        geom.vertices = part
    trimesh = _trimesh()
    try:
        if fmt == "obj":
            mtl_name = dst.stem + ".mtl"
            text, files = trimesh.exchange.obj.export_obj(obj, return_texture=True, mtl_name=mtl_name)
            for name, data in (files or {}).items():
                write_atomic(dst.parent / name, data)
            data = text.encode("utf-8")
        else:
            data = obj.export(file_type=fmt)
            if isinstance(data, str):
                data = data.encode("utf-8")
    except (OutputError, WatermarkError):
        raise
    except Exception as e:
        msg = (str(e).splitlines() or [type(e).__name__])[0]
        raise OutputError(f"cannot export {dst}: {msg}") from None
    write_atomic(dst, data)
    return stats
