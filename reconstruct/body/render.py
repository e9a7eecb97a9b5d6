"""CPU renderer for training images and turntables: ray casting on open3d's RaycastingScene.

No GPU and no display. One ray per pixel (or ``supersample``² per pixel for antialiasing) hits
the mesh; the colour is the barycentric interpolation of the hit triangle's vertex colours, lit
by Lambert + hemisphere ambient with one or two directional lights, composited over a
background (solid, gradient, noise, checker, stripes). Everything random comes from a seed.

Camera convention (used by :meth:`Camera.project`, the renderer and the training samples):

- world: metres, +Y up; a body from :mod:`reconstruct.body.makehuman` stands on y = 0 and faces +Z;
- camera frame (OpenCV): x right, y **down**, z forward; the camera looks along **+z** of its
  own frame. ``X_cam = R @ X_world + t``;
- pixels: ``u`` (column) grows to the right, ``v`` (row) grows downwards; the centre of pixel
  ``(row i, column j)`` is at ``(u, v) = (j + 0.5, i + 0.5)``, so the image spans
  ``[0, width] x [0, height]`` and a centred principal point is ``(width / 2, height / 2)``;
- perspective: ``u = fx * x / z + cx``, ``v = fy * y / z + cy``;
  orthographic: ``u = fx * x + cx``, ``v = fy * y + cy`` (``fx``, ``fy`` in pixels per metre);
- depth is the camera-frame ``z`` (metres along the optical axis, not the ray length); the
  renderer returns it for hit pixels and ``inf`` elsewhere;
- the network's inputs (:meth:`Camera.projector`): ``uv`` in [-1, 1] with -1 / +1 at the outer
  edges of the image (``grid_sample`` with ``align_corners=False``), ``uv = 2 * (u, v) / (W, H) - 1``,
  and ``z = (depth - z_center) / half_height``, where ``half_height`` is half the image height
  in metres at depth ``z_center`` (the subject's centre), so z and the vertical uv share a scale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Callable, Iterator, Sequence

import numpy as np

from .._deps import require

Projector = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


# --------------------------------------------------------------------------------------- camera

@dataclass(frozen=True, eq=False)
class Camera:
    """A pinhole or orthographic camera; see the module docstring for the conventions.

    Compare cameras with ``to_dict()`` (the rotation and translation are arrays)."""

    width: int
    """Image width W in pixels."""
    height: int
    """Image height H in pixels."""
    fx: float
    """Focal length in pixels (perspective) or pixels per metre (orthographic), along u."""
    fy: float
    """As ``fx``, along v."""
    cx: float
    """Principal point u in pixels (``width / 2`` is the image centre)."""
    cy: float
    """Principal point v in pixels (``height / 2`` is the image centre)."""
    R: np.ndarray = field(default_factory=lambda: np.eye(3))
    """World-to-camera rotation (3, 3): ``X_cam = R @ X_world + t``."""
    t: np.ndarray = field(default_factory=lambda: np.zeros(3))
    """World-to-camera translation (3,)."""
    orthographic: bool = False
    """True: parallel rays along the camera's +z, starting on the camera's z = 0 plane."""
    z_center: float = 1.0
    """Depth of the subject's centre; the origin of the network's normalised z."""

    def __post_init__(self):
        object.__setattr__(self, "R", np.asarray(self.R, np.float64).reshape(3, 3))
        object.__setattr__(self, "t", np.asarray(self.t, np.float64).reshape(3))

    @property
    def position(self) -> np.ndarray:
        """Camera centre in world coordinates (for orthographic: the centre of the ray plane)."""
        return -self.R.T @ self.t

    @property
    def half_height(self) -> float:
        """Half the image height in metres at depth ``z_center``."""
        h = 0.5 * self.height / self.fy
        return h if self.orthographic else h * self.z_center

    def to_camera(self, points: np.ndarray) -> np.ndarray:
        """World points (N, 3) -> camera-frame points (N, 3)."""
        return np.asarray(points, np.float64) @ self.R.T + self.t

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World points (N, 3) -> (uv (N, 2) in pixels, depth (N,)), both float64.

        ``uv`` is continuous: the pixel at row i, column j has its centre at (j + 0.5, i + 0.5).
        Points behind a perspective camera (depth <= 0) get meaningless uv; check ``depth``.
        """
        pc = self.to_camera(points)
        z = pc[:, 2]
        if self.orthographic:
            x, y = pc[:, 0], pc[:, 1]
        else:
            with np.errstate(divide="ignore", invalid="ignore"):
                x, y = pc[:, 0] / z, pc[:, 1] / z
        uv = np.stack([self.fx * x + self.cx, self.fy * y + self.cy], 1)
        return uv, z

    def unproject(self, u: np.ndarray, v: np.ndarray, depth: np.ndarray) -> np.ndarray:
        """Pixels (u, v) at camera depth ``depth`` -> world points (N, 3) float64 (inverse of
        :meth:`project`)."""
        depth = np.asarray(depth, np.float64)
        s = 1.0 if self.orthographic else depth
        pc = np.stack([(np.asarray(u, np.float64) - self.cx) / self.fx * s,
                       (np.asarray(v, np.float64) - self.cy) / self.fy * s, depth], 1)
        return (pc - self.t) @ self.R

    def normalise(self, uv: np.ndarray, depth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixels and depth -> the network's (uv (N, 2) in [-1, 1], z (N, 1)), float32."""
        nuv = 2.0 * uv / np.array([self.width, self.height], np.float64) - 1.0
        z = (depth - self.z_center) / self.half_height
        return nuv.astype(np.float32), z.astype(np.float32)[:, None]

    def projector(self) -> Projector:
        """The function the network uses: world points (N, 3) -> (uv in [-1, 1], z (N, 1))."""
        def proj(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return self.normalise(*self.project(points))
        return proj

    def scaled(self, s: int) -> "Camera":
        """The same view at ``s`` times the resolution (for supersampling)."""
        return replace(self, width=self.width * s, height=self.height * s, fx=self.fx * s,
                       fy=self.fy * s, cx=self.cx * s, cy=self.cy * s)

    def rays(self) -> tuple[np.ndarray, np.ndarray]:
        """Origins and directions (H, W, 3) float32 in world coordinates, one per pixel centre.

        Directions are not normalised: their camera-frame z is 1, so the ray parameter of a hit
        is its depth.
        """
        j, i = np.meshgrid(np.arange(self.width) + 0.5, np.arange(self.height) + 0.5)
        x, y = (j - self.cx) / self.fx, (i - self.cy) / self.fy
        if self.orthographic:
            o = np.stack([x, y, np.zeros_like(x)], -1) @ self.R + self.position
            d = np.broadcast_to(self.R[2], o.shape)
        else:
            d = np.stack([x, y, np.ones_like(x)], -1) @ self.R
            o = np.broadcast_to(self.position, d.shape)
        return o.astype(np.float32), d.astype(np.float32)

    def to_dict(self) -> dict:
        """Plain data (JSON-able) with a schema version."""
        return {"version": 1, "width": self.width, "height": self.height, "fx": self.fx,
                "fy": self.fy, "cx": self.cx, "cy": self.cy, "R": self.R.tolist(),
                "t": self.t.tolist(), "orthographic": self.orthographic, "z_center": self.z_center}

    @staticmethod
    def from_dict(d: dict) -> "Camera":
        if d.get("version", 1) != 1:
            raise ValueError(f"unknown camera schema version {d.get('version')}")
        return Camera(width=int(d["width"]), height=int(d["height"]), fx=float(d["fx"]),
                      fy=float(d["fy"]), cx=float(d["cx"]), cy=float(d["cy"]), R=np.array(d["R"]),
                      t=np.array(d["t"]), orthographic=bool(d["orthographic"]),
                      z_center=float(d["z_center"]))


def look_at(eye: np.ndarray, target: np.ndarray, up=(0.0, 1.0, 0.0)) -> tuple[np.ndarray, np.ndarray]:
    """World-to-camera (R, t) for a camera at ``eye`` looking at ``target``, world ``up`` up in
    the image (camera y points down)."""
    eye, target = np.asarray(eye, np.float64), np.asarray(target, np.float64)
    z = target - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, np.asarray(up, np.float64))  # right = down x forward = forward x up
    if np.linalg.norm(x) < 1e-9:
        raise ValueError("look_at: view direction is parallel to up")
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    R = np.stack([x, y, z])
    return R, -R @ eye


def _corners(bounds: np.ndarray) -> np.ndarray:
    b = np.asarray(bounds, np.float64).reshape(2, 3)
    return np.array([[b[i, 0], b[j, 1], b[k, 2]] for i in (0, 1) for j in (0, 1) for k in (0, 1)])


def look_at_body(mesh_bounds: np.ndarray, yaw_deg: float = 0.0, pitch_deg: float = 0.0,
                 size: int = 512, *, fill: float = 0.85, orthographic: bool = False,
                 fov_deg: float = 30.0, height: int | None = None) -> Camera:
    """A camera framing a standing body so that its bounding box fills ``fill`` of the image.

    ``mesh_bounds`` (2, 3) is ``[min, max]`` in metres (+Y up, body facing +Z). The camera
    looks at the box centre from direction ``(sin(yaw) cos(pitch), sin(pitch), cos(yaw) cos(pitch))``:
    yaw 0 sees the face, yaw 90 the body's left side (the camera sits on +X), pitch > 0 looks
    down from above. The distance (perspective, vertical field of view ``fov_deg``) or the scale
    (orthographic) is chosen so that the projected box spans ``fill`` of the image height (or
    of its width, if the box is wider). Image size is ``size`` x ``height or size``.
    """
    b = np.asarray(mesh_bounds, np.float64).reshape(2, 3)
    W, H = int(size), int(height or size)
    centre = b.mean(0)
    yaw, pitch = math.radians(yaw_deg), math.radians(pitch_deg)
    direction = np.array([math.sin(yaw) * math.cos(pitch), math.sin(pitch),
                          math.cos(yaw) * math.cos(pitch)])
    corners = _corners(b)
    radius = 0.5 * float(np.linalg.norm(b[1] - b[0]))
    R, _ = look_at(centre + direction, centre)
    rel = (corners - centre) @ R.T  # box corners in a camera frame centred on the box

    if orthographic:
        dist = 2.0 * radius + 1.0
        span_v = np.ptp(rel[:, 1]) / (fill * H)
        span_u = np.ptp(rel[:, 0]) / (fill * W)
        f = 1.0 / max(span_u, span_v, 1e-9)
    else:
        fy = 0.5 * H / math.tan(math.radians(fov_deg) / 2)

        def fits(d: float) -> bool:  # does the box fit in fill*H x fill*W at distance d?
            z = rel[:, 2] + d
            if np.any(z <= 1e-6):
                return False
            return (np.ptp(fy * rel[:, 1] / z) <= fill * H) and (np.ptp(fy * rel[:, 0] / z) <= fill * W)

        lo, hi = radius * 0.5, radius * 2.0 + 1.0
        while not fits(hi):
            hi *= 2.0
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            lo, hi = (lo, mid) if fits(mid) else (mid, hi)
        dist, f = hi, fy
    R, t = look_at(centre + dist * direction, centre)
    return Camera(width=W, height=H, fx=f, fy=f, cx=W / 2, cy=H / 2, R=R, t=t,
                  orthographic=orthographic, z_center=dist)


def random_camera(mesh_bounds: np.ndarray, rng: np.random.Generator | int, size: int = 512, *,
                  max_pitch_deg: float = 10.0, orthographic: bool = False,
                  fill: float = 0.85) -> Camera:
    """A training view: yaw uniform in [0, 360), pitch uniform in +-``max_pitch_deg``."""
    rng = np.random.default_rng(rng)
    yaw, pitch = rng.uniform(0, 360), rng.uniform(-max_pitch_deg, max_pitch_deg)
    return look_at_body(mesh_bounds, yaw, pitch, size, fill=fill, orthographic=orthographic)


# ------------------------------------------------------------------------------------- lighting

@dataclass(frozen=True)
class Light:
    """A directional light. ``direction`` points *towards* the light, in the view frame
    (x right, y up, z towards the viewer), so lights keep their look whatever the camera."""

    direction: tuple[float, float, float] = (-0.4, 0.6, 1.0)
    colour: tuple[float, float, float] = (1.0, 1.0, 1.0)
    intensity: float = 0.75


@dataclass(frozen=True)
class Lighting:
    """Lambert lights + hemisphere ambient (``ambient`` from above, ``ambient * ground`` below)."""

    lights: tuple[Light, ...] = (Light(),)
    ambient: float = 0.35
    ground: float = 0.6
    """Ambient seen by downward-facing surfaces, relative to upward-facing ones."""
    ambient_colour: tuple[float, float, float] = (1.0, 1.0, 1.0)

    @staticmethod
    def random(rng: np.random.Generator | int) -> "Lighting":
        """A random key light from the front hemisphere, sometimes a second fill/rim light,
        random ambient level and tints. Deterministic by seed."""
        rng = np.random.default_rng(rng)

        def direction(front: bool) -> tuple[float, float, float]:
            az = rng.uniform(-75, 75) if front else rng.uniform(100, 260)
            el = rng.uniform(-10, 65)
            a, e = math.radians(az), math.radians(el)
            return (math.sin(a) * math.cos(e), math.sin(e), math.cos(a) * math.cos(e))

        def tint(spread: float) -> tuple[float, float, float]:
            c = 1.0 + rng.uniform(-spread, spread, 3)
            return tuple(float(x) for x in c / c.max())

        # key + ambient stay near 1 so a white surface facing the key light does not clip
        ambient = float(rng.uniform(0.15, 0.45))
        lights = [Light(direction(True), tint(0.15), float(rng.uniform(0.75, 1.05) - ambient))]
        if rng.random() < 0.5:
            lights.append(Light(direction(rng.random() < 0.5), tint(0.25), float(rng.uniform(0.1, 0.35))))
        return Lighting(lights=tuple(lights), ambient=ambient, ground=float(rng.uniform(0.4, 0.9)),
                        ambient_colour=tint(0.1))


# ----------------------------------------------------------------------------------- background

def _value_noise(h: int, w: int, cells: int, rng: np.random.Generator) -> np.ndarray:
    """Smooth noise (h, w) in [0, 1]: smoothstep-interpolated random grid."""
    gh, gw = cells + 1, max(2, int(round(cells * w / h)) + 1)
    grid = rng.random((gh, gw))
    y, x = np.linspace(0, gh - 1.001, h), np.linspace(0, gw - 1.001, w)
    y0, x0 = y.astype(int), x.astype(int)
    fy, fx = (y - y0)[:, None], (x - x0)[None, :]
    fy, fx = fy * fy * (3 - 2 * fy), fx * fx * (3 - 2 * fx)
    top = grid[y0][:, x0] * (1 - fx) + grid[y0][:, x0 + 1] * fx
    bot = grid[y0 + 1][:, x0] * (1 - fx) + grid[y0 + 1][:, x0 + 1] * fx
    return top * (1 - fy) + bot * fy


BACKGROUND_KINDS = ("solid", "gradient", "noise", "checker", "stripes")


def make_background(height: int, width: int, seed: int | np.random.Generator = 0,
                    kind: str | None = None) -> np.ndarray:
    """A procedural background (H, W, 3) uint8: one of ``BACKGROUND_KINDS`` (random if None),
    colours and pattern from ``seed``."""
    rng = np.random.default_rng(seed)
    kind = kind or BACKGROUND_KINDS[int(rng.integers(len(BACKGROUND_KINDS)))]
    if kind not in BACKGROUND_KINDS:
        raise ValueError(f"unknown background kind {kind!r}; choose from {BACKGROUND_KINDS}")
    c0, c1 = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    if kind == "solid":
        a = np.zeros((height, width), np.float32)
    elif kind == "gradient":
        ang = rng.uniform(0, 2 * math.pi)
        g = (xx / width - 0.5) * math.cos(ang) + (yy / height - 0.5) * math.sin(ang)
        a = np.clip(g + 0.5, 0, 1)
    elif kind == "noise":
        a = 0.6 * _value_noise(height, width, int(rng.integers(2, 8)), rng) \
            + 0.4 * _value_noise(height, width, int(rng.integers(12, 40)), rng)
    elif kind == "checker":
        n = rng.uniform(4, 24)
        a = ((np.floor(xx / width * n) + np.floor(yy / height * n)) % 2).astype(np.float32)
    else:  # stripes
        ang, n = rng.uniform(0, math.pi), rng.uniform(3, 20)
        g = (xx * math.cos(ang) + yy * math.sin(ang)) / max(width, height) * n
        a = 0.5 + 0.5 * np.sin(2 * math.pi * g)
    img = c0[None, None] * (1 - a[..., None]) + c1[None, None] * a[..., None]
    img = img + rng.normal(0, rng.uniform(0, 0.03), img.shape)  # a little sensor grain
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def _background(bg, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    if bg is None:
        bg = (200, 200, 200)
    if isinstance(bg, str):
        if bg == "random":
            return make_background(h, w, rng)
        return make_background(h, w, rng, kind=bg)
    arr = np.asarray(bg)
    if arr.ndim == 1 and arr.shape[0] == 3:
        if arr.dtype.kind == "f" and arr.max() <= 1.0:
            arr = arr * 255
        return np.broadcast_to(np.clip(arr, 0, 255).astype(np.uint8), (h, w, 3)).copy()
    if arr.shape != (h, w, 3):
        raise ValueError(f"background image must be (H={h}, W={w}, 3), got {arr.shape}")
    return arr.astype(np.uint8)


# ---------------------------------------------------------------------------------------- scene

class BodyScene:
    """A mesh prepared for repeated rendering: the ray-casting BVH, per-vertex colours (linear
    RGB, float32) and smooth vertex normals. Build once, render many views."""

    def __init__(self, mesh):
        o3d = require("open3d")
        self.vertices = np.ascontiguousarray(mesh.vertices, np.float32)
        self.faces = np.ascontiguousarray(mesh.faces, np.uint32)
        if len(self.faces) == 0:
            raise ValueError("cannot render an empty mesh")
        self.vertex_normals = np.asarray(mesh.vertex_normals, np.float32)
        self.colours, self.face_colours = _linear_colours(mesh)
        self.bounds = np.asarray(mesh.bounds, np.float64)
        self.scene = o3d.t.geometry.RaycastingScene()
        self.scene.add_triangles(o3d.core.Tensor(self.vertices), o3d.core.Tensor(self.faces))

    def cast(self, origins: np.ndarray, directions: np.ndarray) -> dict[str, np.ndarray]:
        o3d = require("open3d")
        rays = np.concatenate([origins.reshape(-1, 3), directions.reshape(-1, 3)], 1)
        out = self.scene.cast_rays(o3d.core.Tensor(np.ascontiguousarray(rays, np.float32)))
        return {k: out[k].numpy() for k in ("t_hit", "primitive_ids", "primitive_uvs", "primitive_normals")}


def _srgb_to_linear(c: np.ndarray) -> np.ndarray:
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def _linear_to_srgb(c: np.ndarray) -> np.ndarray:
    c = np.clip(c, 0, 1)
    return np.where(c <= 0.0031308, c * 12.92, 1.055 * c ** (1 / 2.4) - 0.055)


def _linear_colours(mesh) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(vertex colours (V, 3), face colours (F, 3)) in linear RGB; one of them is None."""
    vis = getattr(mesh, "visual", None)
    kind = getattr(vis, "kind", None)
    if kind == "texture":
        vis = vis.to_color()
        kind = vis.kind
    if kind == "face":
        return None, _srgb_to_linear(np.asarray(vis.face_colors)[:, :3] / 255.0).astype(np.float32)
    if kind == "vertex":
        return _srgb_to_linear(np.asarray(vis.vertex_colors)[:, :3] / 255.0).astype(np.float32), None
    grey = np.full((len(mesh.vertices), 3), _srgb_to_linear(np.array(0.7)), np.float32)
    return grey, None


def prepare(mesh_or_scene) -> BodyScene:
    """A :class:`BodyScene` from a trimesh.Trimesh (or the scene itself)."""
    return mesh_or_scene if isinstance(mesh_or_scene, BodyScene) else BodyScene(mesh_or_scene)


class _Raycaster:
    """Only the ray-casting part of :class:`BodyScene` (no normals, no colours): for depth maps."""

    def __init__(self, mesh):
        o3d = require("open3d")
        v = np.ascontiguousarray(mesh.vertices, np.float32)
        f = np.ascontiguousarray(mesh.faces, np.uint32)
        if len(f) == 0:
            raise ValueError("cannot ray-cast an empty mesh")
        self.bounds = np.stack([v.min(0), v.max(0)]).astype(np.float64)
        self.scene = o3d.t.geometry.RaycastingScene()
        self.scene.add_triangles(o3d.core.Tensor(v), o3d.core.Tensor(f))

    cast = BodyScene.cast


def depth_maps(mesh_or_scene, camera: Camera, size: int) -> np.ndarray:
    """Ray-cast front and back depth of a mesh in an orthographic view, at ``size`` x ``size``
    (the view rescaled): float32 (3, size, size) = normalised z (``Camera.normalise``) of the
    first surface along each pixel's ray, of the last one, and 1 where the ray meets the mesh
    (else 0, and both depths 0)."""
    if not camera.orthographic:
        raise ValueError("depth maps are defined for orthographic views")
    scene = mesh_or_scene if isinstance(mesh_or_scene, (BodyScene, _Raycaster)) else _Raycaster(mesh_or_scene)
    s = size / camera.height
    cam = replace(camera, width=size, height=size, fx=camera.fx * s, fy=camera.fy * s, cx=camera.cx * s,
                  cy=camera.cy * s)
    o, d = cam.rays()
    far = 2.0 * abs(cam.z_center) + 4.0 * cam.half_height + 2.0 * float(np.ptp(scene.bounds, axis=0).max())
    front = scene.cast(o - far * d, d)["t_hit"].reshape(size, size) - far
    back = far - scene.cast(o + far * d, -d)["t_hit"].reshape(size, size)
    hit = np.isfinite(front) & np.isfinite(back)
    nf = np.where(hit, (front - cam.z_center) / cam.half_height, 0.0)
    nb = np.where(hit, (back - cam.z_center) / cam.half_height, 0.0)
    return np.stack([nf, nb, hit.astype(np.float64)]).astype(np.float32)


# --------------------------------------------------------------------------------------- render

@dataclass
class RenderResult:
    rgb: np.ndarray
    """(H, W, 3) uint8, sRGB, body composited over the background."""
    mask: np.ndarray
    """(H, W) bool, True where the body covers at least half of the pixel."""
    depth: np.ndarray
    """(H, W) float32 camera-frame depth in metres; ``inf`` where ``mask`` is False."""
    normal: np.ndarray
    """(H, W, 3) float32 unit world-space normals (smooth, facing the camera); 0 off the body."""
    camera: Camera
    lighting: Lighting


def _shade(scene: BodyScene, hit: dict, view_dirs: np.ndarray, camera: Camera,
           lighting: Lighting) -> tuple[np.ndarray, np.ndarray]:
    """Linear RGB (K, 3) and world normals (K, 3) for K hits."""
    fid = hit["primitive_ids"].astype(np.int64)
    b = hit["primitive_uvs"].astype(np.float32)
    w = np.stack([1 - b[:, 0] - b[:, 1], b[:, 0], b[:, 1]], 1)[..., None]  # (K, 3, 1)
    tri = scene.faces[fid]
    n = (scene.vertex_normals[tri] * w).sum(1)
    bad = ~np.isfinite(n).all(1) | (np.einsum("ij,ij->i", n, n) < 1e-12)
    n[bad] = hit["primitive_normals"][bad]
    n /= np.linalg.norm(n, axis=1, keepdims=True) + 1e-12
    # two-sided: a normal facing away from the viewer is flipped (inner sides, open meshes)
    back = np.einsum("ij,ij->i", n, view_dirs) > 0
    n[back] = -n[back]
    if scene.colours is not None:
        albedo = (scene.colours[tri] * w).sum(1)
    else:
        albedo = scene.face_colours[fid]
    # lights are given in the view frame (x right, y up, z to viewer) -> world
    view_to_world = camera.R.T @ np.diag([1.0, -1.0, -1.0])
    up_amount = 0.5 + 0.5 * n[:, 1]
    amb = lighting.ambient * (lighting.ground + (1 - lighting.ground) * up_amount)
    light = amb[:, None] * np.asarray(lighting.ambient_colour, np.float32)[None]
    for L in lighting.lights:
        d = view_to_world @ np.asarray(L.direction, np.float64)
        d = (d / np.linalg.norm(d)).astype(np.float32)
        lam = np.clip(n @ d, 0, None)
        light = light + (L.intensity * lam)[:, None] * np.asarray(L.colour, np.float32)[None]
    return albedo * light, n


def render(mesh_or_scene, camera: Camera, *, light: Lighting | str | None = None,
           background=None, seed: int = 0, supersample: int = 1) -> RenderResult:
    """Render a mesh (trimesh.Trimesh with vertex or face colours, or a prepared BodyScene).

    ``light``: a :class:`Lighting`, ``None`` (a fixed key light from the upper left + ambient)
    or ``"random"`` (:meth:`Lighting.random` from ``seed``). ``background``: ``None`` (light
    grey), an RGB triple (0-255 ints or 0-1 floats), an (H, W, 3) uint8 image, ``"random"`` or
    one of ``BACKGROUND_KINDS`` (made from ``seed``). ``supersample`` s casts s x s rays per
    pixel and averages them (antialiased edges; about s² times slower).
    """
    scene = prepare(mesh_or_scene)
    rng = np.random.default_rng(seed)
    light_rng, bg_rng = (np.random.default_rng(s) for s in rng.integers(0, 2**63, 2))
    if light is None:
        lighting = Lighting()
    elif isinstance(light, str):
        if light != "random":
            raise ValueError(f"light must be a Lighting, None or 'random', got {light!r}")
        lighting = Lighting.random(light_rng)
    else:
        lighting = light
    s = int(supersample)
    if s < 1:
        raise ValueError(f"supersample must be >= 1, got {supersample}")
    H, W = camera.height, camera.width
    cam = camera.scaled(s) if s > 1 else camera
    o, d = cam.rays()
    hit = scene.cast(o, d)
    t = hit["t_hit"]
    ok = np.isfinite(t)
    view = d.reshape(-1, 3)[ok]
    view = view / np.linalg.norm(view, axis=1, keepdims=True)
    col, nrm = _shade(scene, {k: v[ok] for k, v in hit.items()}, view, camera, lighting)

    n_all = H * s * W * s
    colour = np.zeros((n_all, 3), np.float32)
    colour[ok] = _linear_to_srgb(col)
    normal = np.zeros((n_all, 3), np.float32)
    normal[ok] = nrm
    depth = np.zeros(n_all, np.float32)
    depth[ok] = t[ok]  # ray directions have camera-frame z = 1: the ray parameter is the depth

    def pool(a: np.ndarray) -> np.ndarray:  # (H*s*W*s, C) -> (H, W, C) sums over s x s blocks
        return a.reshape(H, s, W, s, -1).sum((1, 3))

    cover = pool(ok.astype(np.float32)[:, None])[..., 0] / (s * s)
    bg = _background(background, H, W, bg_rng).astype(np.float32) / 255.0
    body = pool(colour) / (s * s)
    rgb = body + (1 - cover[..., None]) * bg
    mask = cover >= 0.5
    hits = np.maximum(pool(ok.astype(np.float32)[:, None])[..., 0], 1)
    depth_img = np.where(mask, pool(depth[:, None])[..., 0] / hits, np.inf).astype(np.float32)
    nimg = pool(normal)
    nimg /= np.linalg.norm(nimg, axis=-1, keepdims=True) + 1e-12
    nimg[~mask] = 0
    return RenderResult(rgb=(np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8), mask=mask,
                        depth=depth_img, normal=nimg.astype(np.float32), camera=camera,
                        lighting=lighting)


def turntable_bounds(mesh_bounds: np.ndarray, vertices: np.ndarray | None = None) -> np.ndarray:
    """Bounds (2, 3) that hold the body at every yaw about the vertical axis through its centre."""
    b = np.asarray(mesh_bounds, np.float64).reshape(2, 3)
    c = b.mean(0)
    if vertices is not None:
        r = float(np.max(np.hypot(vertices[:, 0] - c[0], vertices[:, 2] - c[2])))
    else:
        r = 0.5 * float(np.hypot(*(b[1] - b[0])[[0, 2]]))
    return np.array([[c[0] - r, b[0, 1], c[2] - r], [c[0] + r, b[1, 1], c[2] + r]])


def render_turntable(mesh, out_frames: int, size: int = 512, *, pitch_deg: float = 5.0,
                     start_yaw_deg: float = 0.0, orthographic: bool = False,
                     light: Lighting | None = None, background=(235, 235, 235),
                     supersample: int = 2, fill: float = 0.85) -> Iterator[np.ndarray]:
    """Yield ``out_frames`` RGB frames (size, size, 3) uint8 of one full turn.

    The camera orbits the body (yaw from ``start_yaw_deg``, increasing) with a fixed framing
    that holds the body at every yaw; the lights move with the camera, so the frames look like
    a body turning on a platform in front of a fixed camera and lights.
    """
    if out_frames < 1:
        raise ValueError(f"out_frames must be >= 1, got {out_frames}")
    scene = prepare(mesh)
    bounds = turntable_bounds(scene.bounds, scene.vertices)
    for k in range(out_frames):
        yaw = start_yaw_deg + 360.0 * k / out_frames
        cam = look_at_body(bounds, yaw, pitch_deg, size, fill=fill, orthographic=orthographic)
        yield render(scene, cam, light=light, background=background, supersample=supersample).rgb


def render_views(mesh, cameras: Sequence[Camera], **kwargs) -> list[RenderResult]:
    """Render one mesh from several cameras, building the BVH once."""
    scene = prepare(mesh)
    return [render(scene, c, **kwargs) for c in cameras]
