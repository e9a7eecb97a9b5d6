"""Run a trained PIFu on one or more images: occupancy field -> mesh with vertex colours.

The network never sees cameras: each view comes with a *projector*, a function
``points (N, 3) float32 metres -> (uv (N, 2) in [-1, 1], z (N, 1))`` that says where a world point
lands in that view's image (grid_sample convention: x right, y down, -1/+1 at the image's outer
edges) and its normalised depth. The training data uses the same projectors, so whatever camera
model made them (orthographic or perspective) the network's inputs mean the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from .._deps import require
from ..mesh import ExtractionStats, extract_surface

Projector = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass
class Reconstruction:
    mesh: object  # trimesh.Trimesh with vertex colours
    stats: ExtractionStats
    seconds_encode: float
    seconds_colour: float


class PIFuField:
    """Occupancy and colour of world points for fixed input views (encodes the images once)."""

    def __init__(self, model, images: np.ndarray, projectors: Sequence[Projector], *, device: str = "cpu",
                 priors: np.ndarray | None = None):
        torch = require("torch")
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"images must be (V, H, W, 3), got {images.shape}")
        if len(projectors) != images.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {len(projectors)} projectors")
        self.torch, self.model, self.device = torch, model.eval(), device
        self.projectors = list(projectors)
        x = torch.from_numpy(np.ascontiguousarray(images, np.float32)).permute(0, 3, 1, 2)
        self.img = (x * 2 - 1).unsqueeze(0).to(device)  # (1, V, 3, H, W) in [-1, 1]
        self.prior = None
        if getattr(model.cfg, "prior_size", 0):
            if priors is None:
                raise ValueError("this PIFu needs body-prior maps (reconstruct.body.prior) for its views")
            self.prior = torch.from_numpy(np.ascontiguousarray(prepare_priors(priors), np.float32))[None].to(device)
        elif priors is not None:
            raise ValueError("this PIFu was trained without a body prior")
        with torch.no_grad():
            self.feats = [f for f in model.encode(self.img)][-1:]
            self.cfeat = None

    def _uvz(self, pts: np.ndarray):
        torch = self.torch
        uv, z = zip(*(p(pts) for p in self.projectors))
        uv = torch.from_numpy(np.stack(uv).astype(np.float32)).unsqueeze(0).to(self.device)
        z = torch.from_numpy(np.stack(z).astype(np.float32)).unsqueeze(0).to(self.device)
        return uv, z

    def occupancy(self, pts: np.ndarray) -> np.ndarray:
        with self.torch.no_grad():
            uv, z = self._uvz(pts)
            return self.model.query(self.feats, uv, z, stacks="last", prior=self.prior)[-1][0].cpu().numpy()

    def colour(self, pts: np.ndarray, batch: int = 32768) -> np.ndarray:
        torch = self.torch
        out = []
        with torch.no_grad():
            if self.cfeat is None:
                b, v = self.img.shape[:2]
                self.cfeat = self.model.colour_encoder(self.img.reshape(b * v, *self.img.shape[2:]))
            for s in range(0, len(pts), batch):
                uv, z = self._uvz(pts[s:s + batch])
                out.append(self.model.colour(self.img, uv, z, feats=self.feats, cfeat=self.cfeat)[0].cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 3), np.float32)


def reconstruct_mesh(model, images: np.ndarray, projectors: Sequence[Projector], bbox_min, bbox_max, *,
                     resolution: int = 256, coarse: int = 64, dense: bool = False, device: str = "cpu",
                     batch: int = 65536, colour: bool = True) -> Reconstruction:
    """images (V, H, W, 3) float in [0, 1] (background already removed / masked as in training)."""
    import time

    t0 = time.perf_counter()
    field = PIFuField(model, images, projectors, device=device)
    t_enc = time.perf_counter() - t0
    mesh, stats = extract_surface(field.occupancy, bbox_min, bbox_max, resolution, coarse=coarse,
                                  dense=dense, batch=batch)
    t0 = time.perf_counter()
    if colour and getattr(model, "with_colour", False):
        # colours are predicted slightly inside the surface, where Tex-PIFu's samples are dense
        pts = np.asarray(mesh.vertices, np.float32) - 0.002 * np.asarray(mesh.vertex_normals, np.float32)
        rgb = np.clip(field.colour(pts), 0, 1)
        alpha = np.ones((len(rgb), 1))
        mesh.visual.vertex_colors = (np.concatenate([rgb, alpha], 1) * 255).round().astype(np.uint8)
    return Reconstruction(mesh, stats, t_enc, time.perf_counter() - t0)


# ------------------------------------------------------------------ cameras, photos, baselines

def camera_box(camera, depth_half: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The box, in ``camera``'s own frame, of everything its image sees (orthographic), from
    ``z_center - d`` to ``z_center + d`` in depth (``d`` = half the image height in metres unless
    given)."""
    if not camera.orthographic:
        raise ValueError("reconstruction boxes are defined for orthographic cameras")
    x0, x1 = (0 - camera.cx) / camera.fx, (camera.width - camera.cx) / camera.fx
    y0, y1 = (0 - camera.cy) / camera.fy, (camera.height - camera.cy) / camera.fy
    d = camera.half_height if depth_half is None else depth_half
    return np.array([x0, y0, camera.z_center - d]), np.array([x1, y1, camera.z_center + d])


def _in_world(fn, camera):
    """A field over camera-frame points from a field over world points."""
    R, t = camera.R, camera.t

    def f(pc: np.ndarray) -> np.ndarray:
        return fn(((pc.astype(np.float64) - t) @ R).astype(np.float32))
    return f


def _to_world(mesh, camera):
    v = (np.asarray(mesh.vertices, np.float64) - camera.t) @ camera.R
    mesh.vertices = v
    if mesh.volume < 0:
        mesh.invert()
    return mesh


def reconstruct_views(model, images: np.ndarray, cameras: Sequence, *, resolution: int = 256,
                      coarse: int = 64, dense: bool = False, device: str = "cpu", colour: bool = True,
                      priors: np.ndarray | None = None):
    """Mesh in world coordinates from V views with known cameras (the first one defines the
    reconstruction box: what it sees, as deep as it is tall). ``priors`` (V, 3, P, P): body-prior
    maps of the views, for a model trained with them."""
    import time

    t0 = time.perf_counter()
    field = PIFuField(model, images, [c.projector() for c in cameras], device=device, priors=priors)
    t_enc = time.perf_counter() - t0
    lo, hi = camera_box(cameras[0])
    mesh, stats = extract_surface(_in_world(field.occupancy, cameras[0]), lo, hi, resolution,
                                  coarse=coarse, dense=dense)
    mesh = _to_world(mesh, cameras[0])
    t0 = time.perf_counter()
    if colour and getattr(model, "with_colour", False):
        pts = np.asarray(mesh.vertices, np.float32) - 0.002 * np.asarray(mesh.vertex_normals, np.float32)
        rgb = np.clip(field.colour(pts), 0, 1)
        mesh.visual.vertex_colors = (np.concatenate([rgb, np.ones((len(rgb), 1))], 1) * 255).round().astype(np.uint8)
    return Reconstruction(mesh, stats, t_enc, time.perf_counter() - t0)


def visual_hull(masks: Sequence[np.ndarray], cameras: Sequence, *, resolution: int = 256, coarse: int = 64):
    """Baseline: the visual hull of the silhouettes (a point is inside if it projects inside the
    mask in every view), extracted like PIFu's field. With one view the hull is the silhouette
    extruded along the view direction; its depth is limited to the silhouette's width in the
    image (a person is at most about as deep as wide), centred on the subject's depth."""
    from scipy import ndimage

    ms = [ndimage.gaussian_filter(np.asarray(m, np.float32), 0.7) for m in masks]

    def occ(pw: np.ndarray) -> np.ndarray:
        out = np.ones(len(pw), np.float32)
        for m, cam in zip(ms, cameras):
            uv, _ = cam.project(pw)
            out = np.minimum(out, ndimage.map_coordinates(m, [uv[:, 1] - 0.5, uv[:, 0] - 0.5], order=1,
                                                          mode="constant", cval=0.0))
        return out

    m0 = np.asarray(masks[0], bool)
    xs = np.nonzero(m0.any(0))[0]
    width_m = (xs.max() - xs.min() + 1) / cameras[0].fx if len(xs) else cameras[0].half_height
    lo, hi = camera_box(cameras[0], depth_half=0.5 * width_m)
    mesh, stats = extract_surface(_in_world(occ, cameras[0]), lo, hi, resolution, coarse=coarse)
    return Reconstruction(_to_world(mesh, cameras[0]), stats, 0.0, 0.0)


def reconstruct_photo(model, rgb: np.ndarray, mask: np.ndarray, *, height_m: float = 1.7,
                      resolution: int = 256, coarse: int = 64, device: str = "cpu", fit=None):
    """One photo + its person mask -> mesh at real-world scale (the person is assumed
    ``height_m`` tall; the photo is framed like the training views), feet on y = 0, facing +Z.
    ``fit``: the body prior fitted to this photo (``prior.fit_body``), for a model trained with
    the prior."""
    from .data import canonical_camera, frame_photo, photo_frame

    size = model.cfg.image_size
    img, m = frame_photo(rgb, mask, size)
    cam = canonical_camera(size, height_m)
    priors = None
    if getattr(model.cfg, "prior_size", 0):
        if fit is None:
            raise ValueError("this PIFu needs the body prior fitted to the photo")
        from .prior import prior_maps_for_photo

        priors = prior_maps_for_photo(fit, photo_frame(mask, size), size, model.cfg.prior_size)[None]
    rec = reconstruct_views(model, img[None], [cam], resolution=resolution, coarse=coarse, device=device,
                            priors=priors)
    mesh = rec.mesh
    b = mesh.bounds
    shift = np.array([-(b[0][0] + b[1][0]) / 2, -b[0][1], -(b[0][2] + b[1][2]) / 2])
    mesh.apply_translation(shift)
    rec.framed_image, rec.framed_mask, rec.camera, rec.shift = img, m, cam, shift
    return rec


def prepare_priors(maps: np.ndarray) -> np.ndarray:
    """Body-prior maps (V, 3, P, P) as the network takes them: front and back outside the hit
    mask set to the nearest hit's values (what ``BodyDataset.prior_maps`` gives in training)."""
    maps = np.asarray(maps, np.float32)
    if maps.ndim != 4 or maps.shape[1] != 3:
        raise ValueError(f"prior maps must be (V, 3, P, P), got {maps.shape}")
    out = maps.copy()
    for i, m in enumerate(maps):
        hit = m[2] > 0
        out[i, 0], out[i, 1] = _fill_outside(m[0], hit), _fill_outside(m[1], hit)
    return out


def _fill_outside(a: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """``a`` with every invalid pixel set to its nearest valid pixel's value (so bilinear sampling
    near the silhouette does not mix in meaningless background depths)."""
    from scipy import ndimage

    if not valid.any():
        return a
    idx = ndimage.distance_transform_edt(~valid, return_distances=False, return_indices=True)
    return a[idx[0], idx[1]]


def depth_hull(front: np.ndarray, back: np.ndarray, mask: np.ndarray, camera, *, resolution: int = 256,
               coarse: int = 64, sharpness: float = 0.01):
    """The solid between a front and a back depth map (normalised z, (S, S), any S) inside the
    silhouette ``mask`` of ``camera``'s view: a point is inside if it projects into the mask and
    its depth lies between the two maps (soft edges ``sharpness`` wide in normalised z, for smooth
    marching cubes). With the ray-cast maps it is what one view can say at best about the body
    (everything hidden between the first and last surface counts as inside); with predicted maps,
    it is the depth net's reconstruction without PIFu."""
    from scipy import ndimage
    from scipy.special import expit

    S = front.shape[0]
    m = np.asarray(mask, bool)
    if m.shape != front.shape:
        m = np.asarray(ndimage.zoom(m.astype(np.float32), S / m.shape[0], order=1) >= 0.5)
    f, b = _fill_outside(front, m), _fill_outside(back, m)
    ms = ndimage.gaussian_filter(m.astype(np.float32), 0.5)
    proj = camera.projector()

    def occ(pw: np.ndarray) -> np.ndarray:
        uv, z = proj(pw)
        coords = [(uv[:, 1] + 1) * S / 2 - 0.5, (uv[:, 0] + 1) * S / 2 - 0.5]
        fz = ndimage.map_coordinates(f, coords, order=1, mode="nearest")
        bz = ndimage.map_coordinates(b, coords, order=1, mode="nearest")
        inside = ndimage.map_coordinates(ms, coords, order=1, mode="constant", cval=0.0)
        zz = z[:, 0]
        return np.minimum(inside, expit(np.minimum(zz - fz, bz - zz) / sharpness)).astype(np.float32)

    lo, hi = camera_box(camera)
    mesh, stats = extract_surface(_in_world(occ, camera), lo, hi, resolution, coarse=coarse)
    return Reconstruction(_to_world(mesh, camera), stats, 0.0, 0.0)
