"""Mesh reconstruction metrics as the PIFu / ICON / ECON papers report them.

- **P2S** (point-to-surface, cm): mean distance from points sampled uniformly on the
  *reconstructed* surface to the *ground-truth* surface (exact point-to-triangle distance, open3d
  RaycastingScene).
- **Chamfer** (cm): the mean of the two directed point-to-surface distances,
  recon -> GT and GT -> recon (PIFu: "average of bi-directional point-to-surface distances").
- **Normal consistency** (Occupancy Networks' definition, in [0, 1], higher is better): mean
  absolute cosine between the normal at a sampled point and the normal of the nearest triangle of
  the other surface, averaged over both directions.
- **Mask IoU**: intersection over union of two boolean masks (reprojected silhouette vs input).

Meshes are ``trimesh.Trimesh`` in metres; distances are reported in centimetres. Sampling is
seeded, so a metric is reproducible.
"""

from __future__ import annotations

import numpy as np

from ._deps import require

N_POINTS = 10_000  # PIFu samples 10,000 points per surface


def _scene(mesh):
    o3d = require("open3d")
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(np.asarray(mesh.vertices, np.float32)),
                        o3d.core.Tensor(np.asarray(mesh.faces, np.uint32)))
    return scene


def _sample(mesh, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Area-uniform surface samples and their face normals."""
    rng = np.random.default_rng(seed)
    tri = np.asarray(mesh.triangles, np.float64)
    area = np.asarray(mesh.area_faces, np.float64)
    if area.sum() <= 0:
        raise ValueError("mesh has no surface area")
    fi = rng.choice(len(tri), size=n, p=area / area.sum())
    u, v = rng.random(n), rng.random(n)
    flip = u + v > 1
    u[flip], v[flip] = 1 - u[flip], 1 - v[flip]
    t = tri[fi]
    pts = t[:, 0] + u[:, None] * (t[:, 1] - t[:, 0]) + v[:, None] * (t[:, 2] - t[:, 0])
    return pts.astype(np.float32), np.asarray(mesh.face_normals, np.float32)[fi]


def _directed(src_pts, src_nrm, dst_mesh, dst_scene) -> tuple[np.ndarray, np.ndarray]:
    o3d = require("open3d")
    q = dst_scene.compute_closest_points(o3d.core.Tensor(src_pts))
    closest = q["points"].numpy()
    tri = q["primitive_ids"].numpy().astype(np.int64)
    d = np.linalg.norm(src_pts - closest, axis=1)
    cos = np.abs(np.sum(src_nrm * np.asarray(dst_mesh.face_normals, np.float32)[tri], axis=1))
    return d, cos


def surface_metrics(recon, gt, n_points: int = N_POINTS, seed: int = 0) -> dict:
    """{'p2s_cm', 'chamfer_cm', 'normal_consistency', 'n_points'} between two meshes (metres)."""
    if len(recon.faces) == 0 or len(gt.faces) == 0:
        raise ValueError("both meshes need faces")
    rp, rn = _sample(recon, n_points, seed)
    gp, gn = _sample(gt, n_points, seed + 1)
    d_rg, c_rg = _directed(rp, rn, gt, _scene(gt))
    d_gr, c_gr = _directed(gp, gn, recon, _scene(recon))
    p2s = float(d_rg.mean()) * 100
    return {
        "p2s_cm": p2s,
        "chamfer_cm": 0.5 * (p2s + float(d_gr.mean()) * 100),
        "normal_consistency": 0.5 * (float(c_rg.mean()) + float(c_gr.mean())),
        "n_points": n_points,
    }


def shift_aligned_metrics(recon, gt, direction: np.ndarray, offsets=None, n_points: int = N_POINTS,
                          seed: int = 0) -> dict:
    """:func:`surface_metrics` after sliding ``recon`` along ``direction`` (a unit vector, e.g. a
    camera's viewing direction) by the offset (metres, default -30 to +30 cm in 1 cm steps) that
    minimises P2S: the error left once the body's overall depth, which one photo does not show,
    is taken out. Adds 'offset_cm'."""
    if len(recon.faces) == 0 or len(gt.faces) == 0:
        raise ValueError("both meshes need faces")
    offsets = np.arange(-0.30, 0.3001, 0.01) if offsets is None else np.asarray(offsets, float)
    fwd = np.asarray(direction, np.float64)
    fwd = (fwd / np.linalg.norm(fwd)).astype(np.float32)
    rp, rn = _sample(recon, n_points, seed)
    gscene = _scene(gt)
    p2s = [float(_directed((rp + fwd * dz).astype(np.float32), rn, gt, gscene)[0].mean()) for dz in offsets]
    best = float(offsets[int(np.argmin(p2s))])
    moved = recon.copy()
    moved.apply_translation(fwd.astype(np.float64) * best)
    out = surface_metrics(moved, gt, n_points, seed)
    out["offset_cm"] = round(best * 100, 1)
    return out


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    if a.shape != b.shape:
        raise ValueError(f"mask shapes differ: {a.shape} vs {b.shape}")
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0
