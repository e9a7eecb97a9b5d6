"""Volume rendering of a head field: box clipping, occupancy-grid ray marching, compositing.

Pipeline for R rays (``render_rays``):

1. clip each ray to the field's scene box (:func:`ray_box_intersect`);
2. candidate samples at a fixed step (default: box diagonal / 256) from the entry point, shifted
   by a random fraction of a step per ray while training; candidates in cells the
   :class:`OccupancyGrid` marks empty are dropped and the survivors packed to the front of each
   ray (``(R, K)`` padded layout, K the most survivors of any ray), so skipped space costs
   nothing but an index lookup. Each sample stands for one step of length ``delta = step``;
3. densities of all survivors; ``alpha = 1 - exp(-sigma delta)``, transmittance ``T_i =
   prod_{j<i} (1 - alpha_j)``; samples after the transmittance drops below ``t_threshold``
   (1e-4) are masked out (early termination, approximately: the densities behind the surface
   are evaluated once, without gradients when training, and then ignored);
4. colours of the kept samples; ``rgb = sum w_i c_i + (1 - acc) * background`` with ``w_i =
   T_i alpha_i``, ``acc = sum w_i``, ``depth = sum w_i t_i / acc`` (ray-parameter units:
   world units along unit directions).

A field is anything with ``box`` (``(2, 3)`` tensor), ``query_density(x, cond) -> (sigma,
geo)`` and ``query_color(geo, dirs, cond) -> rgb`` (:class:`reconstruct.head.field.HeadField`).
``cond`` is a dict of per-ray tensors (``"expression"`` ``(R, E)``, ``"frame"`` ``(R,)``) that
the renderer gathers per sample.

Example::

    grid = OccupancyGrid(field.box, resolution=64)
    grid.update(lambda x: field.query_density(x, cond)[0], step=render_step(field.box))
    out = render_view(field, intrinsics, c2w, {"jawOpen": 0.5}, grid=grid)   # rgb (H, W, 3)
"""

from __future__ import annotations

import math
from typing import Callable, Mapping, Sequence

import numpy as np
import torch

DEFAULT_STEPS_PER_DIAGONAL = 256
T_THRESHOLD = 1e-4
SEGMENT = 16
"""Samples per ray per batched field call when rendering without gradients."""


def render_step(box: torch.Tensor, n_steps: int = DEFAULT_STEPS_PER_DIAGONAL) -> float:
    """Fixed marching step: the box diagonal over ``n_steps``."""
    box = torch.as_tensor(box, dtype=torch.float32)
    return float(torch.linalg.norm(box[1] - box[0])) / n_steps


def ray_box_intersect(origins: torch.Tensor, dirs: torch.Tensor, box: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Slab test: ``(R, 3)`` origins and directions, ``(2, 3)`` box -> ``near``, ``far`` ``(R,)``
    (``near >= 0``: the part of the ray in front of its origin) and ``hit`` ``(R,)`` bool."""
    inv = 1.0 / torch.where(dirs.abs() < 1e-12, torch.full_like(dirs, 1e-12), dirs)
    t0 = (box[0] - origins) * inv
    t1 = (box[1] - origins) * inv
    near = torch.minimum(t0, t1).amax(-1).clamp(min=0.0)
    far = torch.maximum(t0, t1).amin(-1)
    return near, far, far > near


# ------------------------------------------------------------------------------ occupancy grid

class OccupancyGrid:
    """A ``resolution^3`` grid over the box of density EMAs and occupancy bits (Instant-NGP).

    Before the first :meth:`update` every cell is occupied. Each update evaluates the density
    at one jittered point in each chosen cell (all cells for the first ``warmup_updates``
    updates, then a random ``fraction`` of them plus every occupied cell), sets ``density =
    max(decay * density, new)``, and marks a cell occupied when its one-step opacity ``1 -
    exp(-density * step)`` exceeds ``min(threshold, mean opacity)``, then grows the occupied
    set by ``dilate`` cells in every direction (a cell only partly inside the surface, whose one
    jittered point fell outside, is still marched; costs a shell of samples in front of the
    surface, which early termination does not remove).

    A ``bound`` (:meth:`set_bound`: e.g. the visual hull of a capture's masks,
    :func:`reconstruct.head.data.visual_hull`) limits the grid from the start: cells outside it
    are empty before the first update and stay empty, and updates evaluate only cells inside it,
    so the warm-up refines the hull instead of marching and sampling the whole box.
    """

    def __init__(self, box: torch.Tensor | Sequence, resolution: int = 64, *, threshold: float = 0.01,
                 decay: float = 0.95, fraction: float = 0.25, warmup_updates: int = 16, dilate: int = 1):
        self.box = torch.as_tensor(box, dtype=torch.float32).reshape(2, 3).clone()
        self.resolution = int(resolution)
        self.threshold = float(threshold)
        self.decay = float(decay)
        self.fraction = float(fraction)
        self.warmup_updates = int(warmup_updates)
        self.dilate = int(dilate)
        n = self.resolution ** 3
        self.density = torch.zeros(n)
        self.bits = torch.ones(n, dtype=torch.bool)
        self.bound: torch.Tensor | None = None
        self.updates = 0

    def set_bound(self, bound: torch.Tensor | np.ndarray | None) -> OccupancyGrid:
        """Restrict the grid to the cells where ``bound`` ``(resolution^3,)`` is true (None: no
        bound). The occupied cells become ``bits & bound`` at once."""
        if bound is None:
            self.bound = None
            return self
        b = torch.as_tensor(np.asarray(bound) if not torch.is_tensor(bound) else bound).reshape(-1).bool()
        if b.shape[0] != self.resolution ** 3:
            raise ValueError(f"bound must have {self.resolution ** 3} cells, got {b.shape[0]}")
        if not bool(b.any()):
            raise ValueError("bound is empty: every cell would be carved")
        self.bound = b.to(self.bits.device)
        self.bits = self.bits & self.bound
        return self

    # ----- state -----

    def state_tensors(self, prefix: str = "occupancy.") -> dict[str, torch.Tensor]:
        t = {prefix + "density": self.density.clone(), prefix + "bits": self.bits.to(torch.uint8)}
        if self.bound is not None:
            t[prefix + "bound"] = self.bound.to(torch.uint8)
        return t

    def state_meta(self) -> dict:
        return {"resolution": self.resolution, "threshold": self.threshold, "decay": self.decay,
                "fraction": self.fraction, "warmup_updates": self.warmup_updates, "dilate": self.dilate,
                "updates": self.updates,
                "box": self.box.tolist()}

    @classmethod
    def from_state(cls, meta: Mapping, tensors: Mapping[str, torch.Tensor],
                   prefix: str = "occupancy.") -> OccupancyGrid:
        g = cls(meta["box"], meta["resolution"], threshold=meta["threshold"], decay=meta["decay"],
                fraction=meta["fraction"], warmup_updates=meta["warmup_updates"], dilate=meta.get("dilate", 0))
        n = g.resolution ** 3
        d, b = tensors[prefix + "density"], tensors[prefix + "bits"]
        if d.shape != (n,) or b.shape != (n,):
            raise ValueError(f"occupancy grid tensors must be ({n},), got {tuple(d.shape)} and {tuple(b.shape)}")
        g.density = d.float().clone()
        g.bits = b.bool().clone()
        if prefix + "bound" in tensors:
            g.set_bound(tensors[prefix + "bound"].bool().clone())
        g.updates = int(meta["updates"])
        return g

    def to(self, device) -> OccupancyGrid:
        self.box, self.density, self.bits = self.box.to(device), self.density.to(device), self.bits.to(device)
        if self.bound is not None:
            self.bound = self.bound.to(device)
        return self

    @property
    def occupied_fraction(self) -> float:
        return float(self.bits.float().mean())

    # ----- lookups -----

    def cell_index(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Flat cell index ``(N,)`` of world points ``(N, 3)`` and whether they are in the box."""
        u = (x - self.box[0]) / (self.box[1] - self.box[0])
        inside = ((u >= 0) & (u <= 1)).all(-1)
        ijk = (u * self.resolution).long().clamp(0, self.resolution - 1)
        r = self.resolution
        return (ijk[..., 0] * r + ijk[..., 1]) * r + ijk[..., 2], inside

    def occupied(self, x: torch.Tensor) -> torch.Tensor:
        """``(...)`` bool for world points ``(..., 3)``: in the box and in an occupied cell."""
        idx, inside = self.cell_index(x)
        return self.bits[idx] & inside

    # ----- update -----

    @torch.no_grad()
    def update(self, density_fn: Callable[[torch.Tensor], torch.Tensor], step: float, *,
               generator: torch.Generator | None = None, chunk: int = 65536) -> None:
        """Refresh the grid from ``density_fn`` (world points ``(N, 3)`` -> densities ``(N,)``)."""
        r = self.resolution
        n = r ** 3
        dev = self.density.device
        allowed = None if self.bound is None else torch.nonzero(self.bound).squeeze(1)
        if self.updates < self.warmup_updates:
            cells = torch.arange(n, device=dev) if allowed is None else allowed
        else:
            pool = n if allowed is None else allowed.shape[0]
            k = max(1, int(pool * self.fraction))
            rand = torch.randint(0, pool, (k,), generator=generator, device="cpu").to(dev)
            if allowed is not None:
                rand = allowed[rand]
            occ = torch.nonzero(self.bits).squeeze(1)
            cells = torch.unique(torch.cat([rand, occ]))
        ijk = torch.stack([cells // (r * r), (cells // r) % r, cells % r], -1).float()
        jitter = torch.rand(cells.shape[0], 3, generator=generator, device="cpu").to(dev)
        x = self.box[0] + (ijk + jitter) / r * (self.box[1] - self.box[0])
        new = torch.cat([density_fn(x[i:i + chunk]).detach().float().reshape(-1)
                         for i in range(0, x.shape[0], chunk)]) if x.shape[0] else x.new_zeros(0)
        self.density[cells] = torch.maximum(self.density[cells] * self.decay, new)
        opacity = 1.0 - torch.exp(-self.density * step)
        thr = min(self.threshold, float(opacity.mean() if allowed is None else opacity[allowed].mean()))
        bits = opacity > thr
        if self.dilate > 0:
            k = 2 * self.dilate + 1
            b = bits.view(1, 1, r, r, r).float()
            bits = torch.nn.functional.max_pool3d(b, k, stride=1, padding=self.dilate).view(-1) > 0
        self.bits = bits if self.bound is None else bits & self.bound
        self.updates += 1


# ------------------------------------------------------------------------------ sampling

def sample_along_rays(origins: torch.Tensor, dirs: torch.Tensor, box: torch.Tensor, step: float, *,
                      grid: OccupancyGrid | None = None, perturb: bool = False,
                      generator: torch.Generator | None = None, max_samples: int | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Samples at a fixed step inside the box, empty cells skipped, packed per ray.

    Returns ``t`` ``(R, K)`` (ray parameters of the sample centres) and ``valid`` ``(R, K)``
    bool, each ray's valid samples first and in marching order. ``max_samples`` caps the
    candidates per ray (default: the longest chord of the box).
    """
    near, far, hit = ray_box_intersect(origins, dirs, box)
    n_rays = origins.shape[0]
    if n_rays == 0 or not bool(hit.any()):
        return origins.new_zeros(n_rays, 0), torch.zeros(n_rays, 0, dtype=torch.bool, device=origins.device)
    span = torch.where(hit, far - near, torch.zeros_like(far))
    s_max = int(math.ceil(float(span.max()) / step)) + 1
    if max_samples is not None:
        s_max = min(s_max, int(max_samples))
    if perturb:
        offset = torch.rand(n_rays, 1, generator=generator, device="cpu").to(origins.device)
    else:
        offset = torch.full((n_rays, 1), 0.5, device=origins.device)
    t = near[:, None] + (torch.arange(s_max, device=origins.device, dtype=origins.dtype)[None] + offset) * step
    valid = hit[:, None] & (t < far[:, None])
    if grid is not None:
        rows, cols = torch.nonzero(valid, as_tuple=True)
        x = origins[rows] + t[rows, cols, None] * dirs[rows]
        valid[rows, cols] = grid.occupied(x)
    counts = valid.sum(1)
    k = int(counts.max()) if n_rays else 0
    pos = torch.cumsum(valid, 1) - 1
    rows, cols = torch.nonzero(valid, as_tuple=True)
    t_packed = t.new_zeros(n_rays, k)
    t_packed[rows, pos[rows, cols]] = t[rows, cols]
    valid_packed = torch.arange(k, device=t.device)[None] < counts[:, None]
    return t_packed, valid_packed


# ------------------------------------------------------------------------------ compositing

def composite(sigma: torch.Tensor, rgb: torch.Tensor, t: torch.Tensor, delta: float | torch.Tensor,
              valid: torch.Tensor | None = None, background: torch.Tensor | Sequence[float] | None = None
              ) -> dict[str, torch.Tensor]:
    """Alpha-composite samples front to back.

    Args:
        sigma: ``(R, K)`` densities; rgb: ``(R, K, 3)`` colours; t: ``(R, K)`` sample positions;
        delta: the interval each sample stands for (a float or ``(R, K)``); valid: ``(R, K)``
        bool (invalid samples count as empty); background: RGB behind the volume (default black).
    Returns:
        ``rgb`` ``(R, 3)``, ``acc`` ``(R,)`` opacity, ``depth`` ``(R,)`` (``sum w t / acc``, 0
        where ``acc`` is 0), ``weights`` ``(R, K)``, ``transmittance`` ``(R, K)`` (before each
        sample).
    """
    if valid is not None:
        sigma = torch.where(valid, sigma, torch.zeros_like(sigma))
    tau = sigma * delta
    alpha = 1.0 - torch.exp(-tau)
    # exclusive cumulative optical depth: T_i = exp(-sum_{j<i} tau_j)
    cum = torch.cumsum(tau, 1)
    trans = torch.exp(-(cum - tau))
    weights = trans * alpha
    acc = weights.sum(1)
    out_rgb = (weights[..., None] * rgb).sum(1)
    if background is not None:
        bg = torch.as_tensor(background, dtype=out_rgb.dtype, device=out_rgb.device)
        out_rgb = out_rgb + (1.0 - acc)[:, None] * bg
    depth = (weights * t).sum(1) / acc.clamp(min=1e-10)
    depth = torch.where(acc > 0, depth, torch.zeros_like(depth))
    return {"rgb": out_rgb, "acc": acc, "depth": depth, "weights": weights, "transmittance": trans}


def _gather_cond(cond: Mapping[str, torch.Tensor] | None, rows: torch.Tensor) -> dict[str, torch.Tensor]:
    if not cond:
        return {}
    return {k: (v[rows] if v.dim() >= 1 else v) for k, v in cond.items() if v is not None}


def render_rays(field, origins: torch.Tensor, dirs: torch.Tensor, cond: Mapping[str, torch.Tensor] | None = None,
                *, grid: OccupancyGrid | None = None, step: float | None = None, perturb: bool = False,
                background: Sequence[float] | torch.Tensor | None = (0.0, 0.0, 0.0),
                t_threshold: float = T_THRESHOLD, generator: torch.Generator | None = None,
                segment: int | None = SEGMENT) -> dict[str, torch.Tensor]:
    """Render R rays (``(R, 3)`` origins, unit directions) through ``field``.

    ``cond``: per-ray conditioning (``"expression"`` ``(R, E)``, ``"frame"`` ``(R,)``). When
    gradients are enabled, the densities of all candidates are evaluated once without
    gradients to find where each ray terminates, and only the kept samples are evaluated again
    with gradients. Without gradients (rendering), rays are marched ``segment`` samples at a time
    (one batched field call per segment for every ray still alive) and a ray stops as soon as its
    transmittance drops below ``t_threshold``: nothing behind the surface is evaluated
    (``segment=None``: the one-pass path used for training). Returns ``rgb`` ``(R, 3)``, ``acc``
    ``(R,)``, ``depth`` ``(R,)`` and ``n_samples`` (kept samples, an int tensor).
    """
    box = field.box
    step = render_step(box) if step is None else float(step)
    t, valid = sample_along_rays(origins, dirs, box, step, grid=grid, perturb=perturb, generator=generator)
    if not torch.is_grad_enabled() and segment:
        return _march_segments(field, origins, dirs, cond, t, valid, step, background, t_threshold, int(segment))
    n_rays, k = t.shape
    rows, cols = torch.nonzero(valid, as_tuple=True)
    x = origins[rows] + t[rows, cols, None] * dirs[rows]
    cond_s = _gather_cond(cond, rows)
    grad = torch.is_grad_enabled()

    with torch.no_grad():
        sigma0, geo0 = field.query_density(x, cond_s) if rows.numel() else (x.new_zeros(0), None)
        sig_pad = t.new_zeros(n_rays, k)
        sig_pad[rows, cols] = sigma0
        tau = sig_pad * step
        trans = torch.exp(-(torch.cumsum(tau, 1) - tau))
        keep_pad = valid & (trans > t_threshold)
        keep = keep_pad[rows, cols]

    rows, cols, x = rows[keep], cols[keep], x[keep]
    cond_s = {kk: (v[keep] if v.dim() >= 1 else v) for kk, v in cond_s.items()}
    if grad:
        sigma, geo = field.query_density(x, cond_s) if rows.numel() else (x.new_zeros(0), None)
    else:
        sigma, geo = sigma0[keep], (geo0[keep] if geo0 is not None else None)
    rgb_s = field.query_color(geo, dirs[rows], cond_s) if rows.numel() else x.new_zeros(0, 3)
    sigma_pad = torch.zeros(n_rays, k, dtype=sigma.dtype, device=sigma.device).index_put((rows, cols), sigma)
    rgb_pad = torch.zeros(n_rays, k, 3, dtype=rgb_s.dtype, device=rgb_s.device).index_put((rows, cols), rgb_s)
    out = composite(sigma_pad, rgb_pad, t, step, keep_pad, background)
    out["n_samples"] = torch.tensor(int(rows.numel()))
    return out


def _march_segments(field, origins, dirs, cond, t, valid, step: float, background, t_threshold: float,
                    segment: int) -> dict[str, torch.Tensor]:
    """Front-to-back compositing, ``segment`` samples per ray per batched call, with exact early
    ray termination: the same result as the one-pass path (samples after the transmittance falls
    below ``t_threshold`` get no weight), with fewer density evaluations."""
    n_rays, k = t.shape
    dev = t.device
    trans = torch.ones(n_rays, device=dev)
    rgb = torch.zeros(n_rays, 3, device=dev)
    acc = torch.zeros(n_rays, device=dev)
    depth = torch.zeros(n_rays, device=dev)
    alive = torch.nonzero(valid[:, 0]).squeeze(1) if k else torch.zeros(0, dtype=torch.long, device=dev)
    n_samples = 0
    for s0 in range(0, k, segment):
        if alive.numel() == 0:
            break
        ts, vs = t[alive, s0:s0 + segment], valid[alive, s0:s0 + segment]
        loc, cols = torch.nonzero(vs, as_tuple=True)
        r = alive[loc]
        x = origins[r] + ts[loc, cols, None] * dirs[r]
        cond_s = _gather_cond(cond, r)
        sigma, geo = field.query_density(x, cond_s)
        tau = torch.zeros_like(ts).index_put((loc, cols), sigma * step)
        t_before = trans[alive, None] * torch.exp(-(torch.cumsum(tau, 1) - tau))  # T before each sample
        w = t_before * (1.0 - torch.exp(-tau))
        live = (t_before > t_threshold) & vs
        sel = live[loc, cols]
        n_samples += int(sel.sum())
        if bool(sel.any()):
            c = field.query_color(geo[sel], dirs[r[sel]], _gather_cond(cond_s, sel))
            ws = w[loc[sel], cols[sel]]
            rgb.index_add_(0, r[sel], ws[:, None] * c)
            acc.index_add_(0, r[sel], ws)
            depth.index_add_(0, r[sel], ws * ts[loc[sel], cols[sel]])
        trans[alive] = t_before[:, -1] * torch.exp(-tau[:, -1])
        nxt = s0 + segment
        more = valid[alive, nxt] if nxt < k else torch.zeros_like(alive, dtype=torch.bool)
        alive = alive[more & (trans[alive] > t_threshold)]
    if background is not None:
        bg = torch.as_tensor(background, dtype=rgb.dtype, device=dev)
        rgb = rgb + (1.0 - acc)[:, None] * bg
    depth = torch.where(acc > 0, depth / acc.clamp(min=1e-10), torch.zeros_like(depth))
    return {"rgb": rgb, "acc": acc, "depth": depth, "n_samples": torch.tensor(n_samples)}


# ------------------------------------------------------------------------------ images

def _cond_for_rays(field, n: int, expression, frame) -> dict[str, torch.Tensor]:
    cond: dict[str, torch.Tensor] = {}
    dev = field.box.device
    if expression is None or isinstance(expression, Mapping):
        e = field.encode_expression(expression) if hasattr(field, "encode_expression") else None
    else:
        e = torch.as_tensor(expression, dtype=torch.float32, device=dev)
    if e is not None and e.numel():
        cond["expression"] = e.reshape(1, -1).expand(n, -1)
    if frame is not None:
        cond["frame"] = torch.full((n,), int(frame), dtype=torch.long, device=dev)
    return cond


@torch.no_grad()
def render_image(field, origins, dirs, expression: Mapping[str, float] | torch.Tensor | None = None, *,
                 frame: int | None = None, grid: OccupancyGrid | None | str = "auto", step: float | None = None,
                 background: Sequence[float] = (0.0, 0.0, 0.0), chunk: int = 8192,
                 segment: int | None = SEGMENT) -> dict[str, np.ndarray]:
    """Render a full image from per-pixel rays, in chunks of ``chunk`` rays, without gradients.

    Args:
        origins, dirs: ``(H, W, 3)`` ray origins and unit directions (numpy or torch), e.g.
            :meth:`reconstruct.head.data.Capture.rays`.
        expression: ``{name: weight}`` (see ``HeadField.encode_expression``) or an ``(E,)`` vector.
        frame: per-frame latent index (default: the mean latent).
        grid: an :class:`OccupancyGrid`, ``None`` (no skipping) or ``"auto"``: the field's
            ``occupancy_grid`` attribute when it has one (checkpoints loaded by ``load_head``).
        segment: samples per ray per batched field call, with early ray termination (None: the
            one-pass path; see :func:`render_rays`).
    Returns:
        numpy ``rgb`` ``(H, W, 3)`` float32 in [0, 1], ``acc`` ``(H, W)``, ``depth`` ``(H, W)``.
    """
    if isinstance(grid, str):
        if grid != "auto":
            raise ValueError(f"grid must be an OccupancyGrid, None or 'auto', got {grid!r}")
        grid = getattr(field, "occupancy_grid", None)
    dev = field.box.device
    o = torch.as_tensor(np.asarray(origins) if not torch.is_tensor(origins) else origins, dtype=torch.float32,
                        device=dev)
    d = torch.as_tensor(np.asarray(dirs) if not torch.is_tensor(dirs) else dirs, dtype=torch.float32, device=dev)
    if o.shape != d.shape or o.shape[-1] != 3:
        raise ValueError(f"render_image: origins and dirs must both be (H, W, 3), got {tuple(o.shape)} "
                         f"and {tuple(d.shape)}")
    shape = o.shape[:-1]
    o, d = o.reshape(-1, 3), d.reshape(-1, 3)
    was_training = getattr(field, "training", False)
    if was_training:
        field.eval()
    rgb, acc, depth = [], [], []
    try:
        for i in range(0, o.shape[0], chunk):
            oc, dc = o[i:i + chunk], d[i:i + chunk]
            out = render_rays(field, oc, dc, _cond_for_rays(field, oc.shape[0], expression, frame), grid=grid,
                              step=step, background=background, segment=segment)
            rgb.append(out["rgb"]), acc.append(out["acc"]), depth.append(out["depth"])
    finally:
        if was_training:
            field.train()
    return {"rgb": torch.cat(rgb).reshape(*shape, 3).clamp(0, 1).cpu().numpy(),
            "acc": torch.cat(acc).reshape(shape).cpu().numpy(),
            "depth": torch.cat(depth).reshape(shape).cpu().numpy()}


def render_view(field, intrinsics, c2w, expression: Mapping[str, float] | torch.Tensor | None = None,
                **kwargs) -> dict[str, np.ndarray]:
    """:func:`render_image` for a camera: ``intrinsics`` (:class:`reconstruct.head.data.Intrinsics`)
    and a ``(4, 4)`` OpenGL camera-to-world matrix."""
    from .data import camera_rays

    o, d = camera_rays(intrinsics, c2w)
    return render_image(field, o, d, expression, **kwargs)


__all__ = ["OccupancyGrid", "ray_box_intersect", "render_step", "sample_along_rays", "composite", "render_rays",
           "render_image", "render_view"]
