"""Training samples for PIFu: occupancy near the surface and colours on it.

- :func:`inside` -- occupancy of points as the OR over watertight components (a clothed body is
  a union of overlapping closed meshes: skin, shirt, trousers, hair; ray parity over their
  concatenation would call the overlaps "outside").
- :func:`sample_occupancy` -- PIFu's geometry samples: points on the surface of the union
  (area-weighted) plus isotropic Gaussian noise (sigma 5 cm), mixed with a fraction of uniform
  points in the padded bounding box, labelled by :func:`inside`, balanced 50/50.
- :func:`sample_colour` -- Tex-PIFu's colour samples: surface points pushed along the normal by
  N(0, sigma = 5 mm), labelled with the colour of their nearest surface point.

Everything random comes from the ``rng`` argument (a numpy Generator or a seed).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .._deps import require

_CHUNK = 1 << 20


def _as_list(components) -> list:
    if isinstance(components, (list, tuple)):
        comps = list(components)
    else:
        comps = [components]
    if not comps:
        raise ValueError("need at least one component mesh")
    return comps


def _scene(mesh):
    o3d = require("open3d")
    s = o3d.t.geometry.RaycastingScene()
    s.add_triangles(o3d.core.Tensor(np.ascontiguousarray(mesh.vertices, np.float32)),
                    o3d.core.Tensor(np.ascontiguousarray(mesh.faces, np.uint32)))
    return s


def _points(points) -> np.ndarray:
    p = np.asarray(points, np.float32)
    if p.ndim != 2 or p.shape[1] != 3:
        raise ValueError(f"points must be (N, 3), got {p.shape}")
    return np.ascontiguousarray(p)


def inside(components: Sequence | object, points: np.ndarray, *, nsamples: int = 3) -> np.ndarray:
    """Occupancy (N,) bool of points (N, 3): True where a point is inside any component.

    Each component must be watertight (open3d counts ray crossings; ``nsamples`` rays vote, which
    makes the answer robust to rays grazing an edge). Components may overlap each other.
    """
    o3d = require("open3d")
    p = _points(points)
    occ = np.zeros(len(p), bool)
    for m in _as_list(components):
        lo, hi = np.asarray(m.bounds, np.float32)
        cand = np.flatnonzero(~occ & np.all((p >= lo) & (p <= hi), 1))
        if len(cand) == 0:
            continue
        s = _scene(m)
        for a in range(0, len(cand), _CHUNK):
            idx = cand[a:a + _CHUNK]
            o = s.compute_occupancy(o3d.core.Tensor(p[idx]), nsamples=nsamples).numpy()
            occ[idx] |= o > 0.5
    return occ


def _buried(components: list, points: np.ndarray, eps: float) -> np.ndarray:
    """True for points deeper than ``eps`` inside some component (signed distance < -eps).
    A point on one component's surface is never buried by that component itself."""
    o3d = require("open3d")
    p = _points(points)
    out = np.zeros(len(p), bool)
    for m in components:
        lo, hi = np.asarray(m.bounds, np.float32)
        cand = np.flatnonzero(~out & np.all((p >= lo) & (p <= hi), 1))
        if len(cand) == 0:
            continue
        sd = _scene(m).compute_signed_distance(o3d.core.Tensor(p[cand]), nsamples=3).numpy()
        out[cand] |= sd < -eps
    return out


def _sample_surface(mesh, n: int, rng: np.random.Generator,
                    faces: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Area-weighted points on a mesh (only on ``faces``, indices, if given):
    (points (n, 3), face ids (n,), barycentrics (n, 3))."""
    v = np.asarray(mesh.vertices, np.float64)
    f = np.asarray(mesh.faces, np.int64)
    ids = np.arange(len(f)) if faces is None else np.asarray(faces, np.int64)
    area = np.asarray(mesh.area_faces, np.float64)[ids]
    if len(ids) == 0 or area.sum() <= 0:
        raise ValueError("mesh has no surface area to sample")
    cdf = np.cumsum(area)
    k = np.minimum(np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right"), len(ids) - 1)
    fid = ids[k]
    r1, r2 = np.sqrt(rng.random(n)), rng.random(n)
    bary = np.stack([1 - r1, r1 * (1 - r2), r1 * r2], 1)
    pts = np.einsum("nk,nkd->nd", bary, v[f[fid]])
    return pts, fid, bary


def _union_surface(comps: list, n: int, rng: np.random.Generator, eps: float) -> np.ndarray:
    """About ``n`` area-weighted points on the surface of the union of ``comps``: points on
    one component that lie inside another (hidden skin under a shirt) are dropped."""
    areas = np.array([float(m.area) for m in comps])
    counts = rng.multinomial(n, areas / areas.sum())
    pts = []
    for i, (m, k) in enumerate(zip(comps, counts)):
        if k == 0:
            continue
        p = _sample_surface(m, int(k), rng)[0]
        others = comps[:i] + comps[i + 1:]
        if others:
            p = p[~_buried(others, p, eps)]
        pts.append(p)
    return np.concatenate(pts) if pts else np.zeros((0, 3))


def sample_occupancy(components: Sequence | object, n: int, rng: np.random.Generator | int,
                     sigma: float = 0.05, uniform_fraction: float = 1 / 16, balance: bool = True,
                     *, pad: float = 0.1, oversample: int = 4,
                     max_rounds: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """PIFu's occupancy samples: (points (n, 3) float32, labels (n,) float32 in {0, 1}).

    ``round(n * uniform_fraction)`` points are uniform in the bounding box of all components
    grown by ``pad`` metres on every side; the rest are points on the surface of the union
    (area-weighted; surfaces hidden inside another component are skipped) plus N(0, sigma²)
    noise on each axis. Labels come from :func:`inside`.

    ``balance``: PIFu trains on as many inside as outside points. We draw ``oversample`` times
    more near-surface candidates than needed, then keep all uniform points (with whatever
    labels they have, mostly outside) and pick near-surface points so that the total is
    n // 2 inside and n - n // 2 outside; both the uniform fraction and the 50/50 split are then
    exact. If one class is still short after ``max_rounds`` rounds of drawing (a body much
    thinner than sigma), the other class fills the rest, as in PIFu. Without ``balance`` the
    near-surface points are kept as drawn. The output is shuffled.
    """
    rng = np.random.default_rng(rng)
    comps = _as_list(components)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not 0.0 <= uniform_fraction <= 1.0:
        raise ValueError(f"uniform_fraction must be in [0, 1], got {uniform_fraction}")
    lo = np.min([m.bounds[0] for m in comps], 0) - pad
    hi = np.max([m.bounds[1] for m in comps], 0) + pad
    n_uni = int(round(n * uniform_fraction))
    n_surf = n - n_uni
    uni = lo + (hi - lo) * rng.random((n_uni, 3))
    uni_lab = inside(comps, uni)
    eps = 1e-4 * float(np.linalg.norm(hi - lo))

    if not balance:
        surf = _union_surface(comps, n_surf, rng, eps)
        while len(surf) < n_surf:  # hidden surface points were dropped: top up
            surf = np.concatenate([surf, _union_surface(comps, n_surf, rng, eps)])
        surf = surf[:n_surf] + rng.normal(0.0, sigma, (n_surf, 3))
        pts = np.concatenate([uni, surf])
        lab = np.concatenate([uni_lab, inside(comps, surf)])
    else:
        want_in = max(n // 2 - int(uni_lab.sum()), 0)
        want_out = max(n_surf - want_in, 0)
        got_in, got_out = [], []
        n_in = n_out = 0
        for _ in range(max_rounds):
            cand = _union_surface(comps, max(oversample * n_surf, 64), rng, eps)
            cand = cand + rng.normal(0.0, sigma, cand.shape)
            lab = inside(comps, cand)
            got_in.append(cand[lab])
            got_out.append(cand[~lab])
            n_in += int(lab.sum())
            n_out += int((~lab).sum())
            if n_in >= want_in and n_out >= want_out:
                break
        cin, cout = np.concatenate(got_in), np.concatenate(got_out)
        k_in = min(want_in, len(cin))
        k_out = min(n_surf - k_in, len(cout))
        k_in = min(n_surf - k_out, len(cin))  # short of outside points: fill with inside ones
        pts = np.concatenate([uni, cin[:k_in], cout[:k_out]])
        lab = np.concatenate([uni_lab, np.ones(k_in, bool), np.zeros(k_out, bool)])
        if len(pts) < n:
            raise RuntimeError(f"could only draw {len(pts)} of {n} occupancy samples")
    order = rng.permutation(n)
    return pts[order].astype(np.float32), lab[order].astype(np.float32)


def _vertex_colours(mesh) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(vertex colours (V, 3), face colours (F, 3)) as float in [0, 1]; one of them is None."""
    vis = getattr(mesh, "visual", None)
    kind = getattr(vis, "kind", None)
    if kind == "texture":
        vis = vis.to_color()
        kind = vis.kind
    if kind == "face":
        return None, np.asarray(vis.face_colors, np.float64)[:, :3] / 255.0
    if kind == "vertex":
        return np.asarray(vis.vertex_colors, np.float64)[:, :3] / 255.0, None
    raise ValueError("sample_colour needs a mesh with vertex or face colours (or a texture)")


def surface_colour(mesh, face_ids: np.ndarray, bary: np.ndarray) -> np.ndarray:
    """Colour (N, 3) in [0, 1] at surface points given by face ids and barycentrics (N, 3)
    (weights of the face's three vertices in order)."""
    vc, fc = _vertex_colours(mesh)
    if vc is None:
        return fc[face_ids]
    f = np.asarray(mesh.faces, np.int64)[face_ids]
    return np.einsum("nk,nkc->nc", bary, vc[f])


def sample_colour(mesh, n: int, rng: np.random.Generator | int, sigma: float = 0.005, *,
                  components: Sequence | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Tex-PIFu's colour samples: (points (n, 3) float32, rgb (n, 3) float32 in [0, 1]).

    Area-weighted points on ``mesh`` are pushed along the interpolated vertex normal by
    N(0, sigma²); each is labelled with the colour of its nearest surface point (barycentric
    interpolation of vertex colours, or the face colour), found by open3d.

    ``components``: when ``mesh`` is the concatenation of overlapping closed parts (skin under
    a shirt), pass them: triangles whose centre is buried inside a part are then neither
    sampled nor used as nearest points, so hidden skin never colours a point near the shirt.
    """
    o3d = require("open3d")
    rng = np.random.default_rng(rng)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    _vertex_colours(mesh)  # fail early without colours
    f = np.asarray(mesh.faces, np.int64)
    faces = np.arange(len(f))
    if components is not None and len(_as_list(components)) > 1:
        eps = 1e-4 * float(np.linalg.norm(np.ptp(mesh.bounds, 0)))
        faces = np.flatnonzero(~_buried(_as_list(components), mesh.triangles_center, eps))
    p, fid, bary = _sample_surface(mesh, n, rng, faces)
    nrm = np.einsum("nk,nkd->nd", bary, np.asarray(mesh.vertex_normals, np.float64)[f[fid]])
    ln = np.linalg.norm(nrm, axis=1, keepdims=True)
    nrm = np.where(ln > 1e-12, nrm / np.maximum(ln, 1e-12), 0.0)
    pts = (p + nrm * rng.normal(0.0, sigma, (n, 1))).astype(np.float32)
    s = o3d.t.geometry.RaycastingScene()
    s.add_triangles(o3d.core.Tensor(np.ascontiguousarray(mesh.vertices, np.float32)),
                    o3d.core.Tensor(np.ascontiguousarray(f[faces], np.uint32)))
    cp = s.compute_closest_points(o3d.core.Tensor(np.ascontiguousarray(pts)))
    cfid = faces[cp["primitive_ids"].numpy().astype(np.int64)]
    uv = cp["primitive_uvs"].numpy().astype(np.float64)
    cbary = np.stack([1 - uv[:, 0] - uv[:, 1], uv[:, 0], uv[:, 1]], 1)
    rgb = np.clip(surface_colour(mesh, cfid, cbary), 0, 1)
    return pts, rgb.astype(np.float32)
