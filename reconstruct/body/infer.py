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

    def __init__(self, model, images: np.ndarray, projectors: Sequence[Projector], *, device: str = "cpu"):
        torch = require("torch")
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"images must be (V, H, W, 3), got {images.shape}")
        if len(projectors) != images.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {len(projectors)} projectors")
        self.torch, self.model, self.device = torch, model.eval(), device
        self.projectors = list(projectors)
        x = torch.from_numpy(np.ascontiguousarray(images, np.float32)).permute(0, 3, 1, 2)
        self.img = (x * 2 - 1).unsqueeze(0).to(device)  # (1, V, 3, H, W) in [-1, 1]
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
            return self.model.query(self.feats, uv, z, stacks="last")[-1][0].cpu().numpy()

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
