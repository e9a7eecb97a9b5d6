"""Surface extraction from an implicit function (coarse-to-fine + marching cubes) and mesh export.

``extract_surface`` follows PIFu's octree idea: evaluate the field on a coarse lattice, then at
every finer level evaluate only the new lattice points inside cells where the surface can be
(corners on both sides of the threshold, dilated by one cell); everywhere else the finer values
are trilinear interpolations of the coarser ones, which cannot create a surface there. At the
finest level this gives the same lattice values as dense evaluation near the surface, so
marching cubes returns (nearly) the same mesh at a fraction of the evaluations. A thin part that
fits entirely inside one coarse cell without touching any coarse corner's side of the threshold
is missed: the coarse step bounds the thinnest part found (``coarse`` = 64 at 256³ means 4-voxel
cells).

Grid convention: ``resolution`` cells per axis, ``resolution + 1`` lattice points per axis from
``bbox_min`` to ``bbox_max`` inclusive; lattice index (i, j, k) is the point
``bbox_min + (i, j, k) * (bbox_max - bbox_min) / resolution`` (x, y, z order).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ._deps import require
from ._io import write_bytes_atomic

FieldFn = Callable[[np.ndarray], np.ndarray]
"""points (N, 3) float32 -> values (N,) float32; inside where value > threshold."""


@dataclass
class ExtractionStats:
    resolution: int
    evaluated: int
    dense: int
    seconds: float
    levels: list[dict] = field(default_factory=list)

    @property
    def fraction(self) -> float:
        return self.evaluated / self.dense


def _lattice_points(idx: np.ndarray, bmin: np.ndarray, step: np.ndarray) -> np.ndarray:
    return (bmin + idx.astype(np.float64) * step).astype(np.float32)


def _eval(fn: FieldFn, pts: np.ndarray, batch: int) -> np.ndarray:
    out = np.empty(len(pts), np.float32)
    for s in range(0, len(pts), batch):
        v = np.asarray(fn(pts[s:s + batch]), dtype=np.float32).reshape(-1)
        if v.shape[0] != min(batch, len(pts) - s):
            raise ValueError(f"field returned {v.shape[0]} values for {min(batch, len(pts) - s)} points")
        out[s:s + batch] = v
    return out


def _check_grid(resolution: int, coarse: int) -> None:
    if resolution < 2 or coarse < 2:
        raise ValueError("resolution and coarse must be >= 2")
    r = resolution // coarse
    if resolution % coarse or r & (r - 1):
        raise ValueError(f"resolution ({resolution}) must be coarse ({coarse}) times a power of two")


def evaluate_dense(fn: FieldFn, bbox_min, bbox_max, resolution: int = 256, *,
                   batch: int = 65536) -> tuple[np.ndarray, ExtractionStats]:
    """Every lattice point: (res+1)^3 values. The reference the coarse-to-fine path must match."""
    t0 = time.perf_counter()
    bmin, bmax = np.asarray(bbox_min, np.float64), np.asarray(bbox_max, np.float64)
    step = (bmax - bmin) / resolution
    n = resolution + 1
    vals = np.empty(n ** 3, np.float32)
    # slab by slab along x to bound memory
    for i in range(n):
        jk = np.stack(np.meshgrid(np.arange(n), np.arange(n), indexing="ij"), -1).reshape(-1, 2)
        idx = np.concatenate([np.full((len(jk), 1), i), jk], 1)
        vals[i * n * n:(i + 1) * n * n] = _eval(fn, _lattice_points(idx, bmin, step), batch)
    st = ExtractionStats(resolution, n ** 3, n ** 3, time.perf_counter() - t0)
    return vals.reshape(n, n, n), st


def evaluate_coarse_to_fine(fn: FieldFn, bbox_min, bbox_max, resolution: int = 256, *,
                            coarse: int = 64, threshold: float = 0.5, dilate: int = 1,
                            batch: int = 65536) -> tuple[np.ndarray, ExtractionStats]:
    """Lattice values with evaluations only near the surface (see the module docstring)."""
    from scipy import ndimage

    _check_grid(resolution, coarse)
    t0 = time.perf_counter()
    bmin, bmax = np.asarray(bbox_min, np.float64), np.asarray(bbox_max, np.float64)
    step = (bmax - bmin) / resolution
    s = resolution // coarse
    m = coarse + 1
    idx = np.stack(np.meshgrid(*(np.arange(m),) * 3, indexing="ij"), -1).reshape(-1, 3) * s
    vals = _eval(fn, _lattice_points(idx, bmin, step), batch).reshape(m, m, m)
    evaluated = vals.size
    levels = [{"step": s, "evaluated": int(vals.size)}]
    while s > 1:
        h = s // 2
        inside = vals > threshold
        # cells (m-1)^3 whose 8 corners disagree
        c = inside[:-1, :-1, :-1]
        anyin = np.zeros_like(c)
        allin = np.ones_like(c)
        for dx in (0, 1):
            for dy in (0, 1):
                for dz in (0, 1):
                    v = inside[dx:dx + m - 1, dy:dy + m - 1, dz:dz + m - 1]
                    anyin |= v
                    allin &= v
        active = anyin & ~allin
        if dilate:
            active = ndimage.binary_dilation(active, iterations=dilate)
        # trilinear upsampling to the finer lattice (2m-1)^3
        m2 = 2 * m - 1
        fine = np.empty((m2, m2, m2), np.float32)
        fine[::2, ::2, ::2] = vals
        fine[1::2, ::2, ::2] = 0.5 * (vals[:-1] + vals[1:])
        fine[:, 1::2, ::2] = 0.5 * (fine[:, 0:-1:2, ::2] + fine[:, 2::2, ::2])
        fine[:, :, 1::2] = 0.5 * (fine[:, :, 0:-1:2] + fine[:, :, 2::2])
        # fine lattice points that belong to an active cell and were not evaluated before
        need = np.zeros((m2, m2, m2), bool)
        ai = np.argwhere(active)
        if len(ai):
            for dx in range(3):
                for dy in range(3):
                    for dz in range(3):
                        need[2 * ai[:, 0] + dx, 2 * ai[:, 1] + dy, 2 * ai[:, 2] + dz] = True
            need[::2, ::2, ::2] = False
            nidx = np.argwhere(need)
            fine[need] = _eval(fn, _lattice_points(nidx * h, bmin, step), batch)
            evaluated += len(nidx)
        levels.append({"step": h, "active_cells": int(active.sum()), "evaluated": int(need.sum())})
        vals, m, s = fine, m2, h
    st = ExtractionStats(resolution, evaluated, (resolution + 1) ** 3, time.perf_counter() - t0, levels)
    return vals, st


def marching_cubes(vals: np.ndarray, bbox_min, bbox_max, threshold: float = 0.5,
                   largest_component: bool = True):
    """Marching cubes (PyMCubes) on a lattice -> trimesh.Trimesh in world units, outward normals.
    Raises ValueError when the field has no surface inside the box."""
    mcubes = require("mcubes")
    trimesh = require("trimesh")
    if not (vals.max() > threshold and vals.min() < threshold):
        raise ValueError("the field has no surface in the box (everything inside or everything outside)")
    # pad with 'outside' so surfaces touching the box are closed
    pad = np.pad(vals, 1, constant_values=min(float(vals.min()), threshold - 1.0))
    v, f = mcubes.marching_cubes(pad.astype(np.float64), threshold)
    res = np.array(vals.shape, np.float64) - 1
    bmin, bmax = np.asarray(bbox_min, np.float64), np.asarray(bbox_max, np.float64)
    v = bmin + (v - 1.0) * (bmax - bmin) / res
    mesh = trimesh.Trimesh(v.astype(np.float32), f.astype(np.int64), process=True)
    if largest_component:
        mesh = keep_largest_component(mesh)
    # PyMCubes orients faces so that normals point toward increasing values (inside); flip to outward
    if mesh.is_watertight and mesh.volume < 0:
        mesh.invert()
    elif not mesh.is_watertight:
        mesh.fix_normals()
    return mesh


def keep_largest_component(mesh):
    parts = mesh.split(only_watertight=False)
    if len(parts) <= 1:
        return mesh
    return max(parts, key=lambda p: len(p.faces))


def extract_surface(fn: FieldFn, bbox_min, bbox_max, resolution: int = 256, *, coarse: int = 64,
                    threshold: float = 0.5, dense: bool = False, batch: int = 65536):
    """Implicit function -> (trimesh.Trimesh, ExtractionStats). ``dense=True`` evaluates every
    lattice point (for comparison)."""
    if dense:
        vals, st = evaluate_dense(fn, bbox_min, bbox_max, resolution, batch=batch)
    else:
        vals, st = evaluate_coarse_to_fine(fn, bbox_min, bbox_max, resolution, coarse=coarse,
                                           threshold=threshold, batch=batch)
    return marching_cubes(vals, bbox_min, bbox_max, threshold), st


EXPORT_FORMATS = {".glb": "glb", ".obj": "obj", ".ply": "ply"}


def export_mesh(mesh, path: Path) -> Path:
    """Write GLB / OBJ / PLY (by extension) atomically: a temporary file in the same folder,
    renamed into place, so a failed export leaves nothing behind."""
    path = Path(path)
    fmt = EXPORT_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"cannot export {path.name}: use .glb, .obj or .ply")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"cannot write {path}: folder {path.parent} does not exist")
    data = mesh.export(file_type=fmt)
    if isinstance(data, str):
        data = data.encode()
    write_bytes_atomic(path, data)
    return path
