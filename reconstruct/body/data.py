"""Training data for PIFu: rendered views + occupancy/colour samples, a dataset folder with a manifest.

Layout of a dataset folder::

    manifest.json                  schema, generator, seeds, sizes, subjects and their split
    subjects/<sid>/subject.json    body parameters, pose, garments, cameras of every view
    subjects/<sid>/view_<k>.png    RGBA 512 px: RGB over a random background, alpha = body mask
    subjects/<sid>/samples.npz     occ_points (N, 3) f32, occ_labels (N,) u1,
                                   col_points (M, 3) f32, col_rgb (M, 3) u1
    subjects/<sid>/mesh.ply        the outer surface (vertex colours), for evaluation

Cameras are orthographic (PIFu's training setup) and *framed by the silhouette*: the projected
body's bounding box fills ``FILL`` of the image height and is centred, exactly what
:func:`frame_photo` does to a user's photo with its mask at inference time, so the network sees
people at the same scale either way. Depth is normalised by the same scale (see
``render.Camera.normalise``), so the network works in units of "image heights" and the real
size of the output comes from an assumed body height.

Splits are by subject (a subject's views never straddle splits), drawn from the subject seed.
Everything is deterministic by seed.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .._io import write_bytes_atomic

SCHEMA = "dhstudio.body-dataset/1"
FILL = 0.85
SPLITS = ("train", "val", "test")


@dataclass
class DatasetConfig:
    """How to build a dataset."""

    n_subjects: int = 120
    """Number of bodies."""
    views: int = 8
    """Rendered views per body (yaw spread evenly over 360 degrees with a random offset)."""
    size: int = 512
    """Image side in pixels."""
    pitch_deg: float = 10.0
    """Camera pitch drawn uniformly in [-pitch_deg, pitch_deg]."""
    n_occ: int = 40_000
    """Occupancy samples per body (PIFu draws 5,000 per training step from such a pool)."""
    n_col: int = 20_000
    """Colour samples per body."""
    sigma: float = 0.05
    """Std-dev (metres) of the Gaussian noise around surface points (PIFu: 5 cm)."""
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    seed: int = 0
    supersample: int = 2
    """Rays per pixel side (antialiasing)."""


def frame_camera(camera, vertices: np.ndarray, fill: float = FILL):
    """Rescale and re-centre an orthographic camera so that the projection of ``vertices`` has a
    bounding box ``fill`` of the image height (or width, if wider) and centred in the image."""
    if not camera.orthographic:
        raise ValueError("silhouette framing is defined for orthographic cameras")
    xc = camera.to_camera(np.asarray(vertices, np.float64))
    lo, hi = xc[:, :2].min(0), xc[:, :2].max(0)
    span = hi - lo
    f = min(fill * camera.height / max(span[1], 1e-9), fill * camera.width / max(span[0], 1e-9))
    mid = 0.5 * (lo + hi)
    return replace(camera, fx=f, fy=f, cx=camera.width / 2 - f * mid[0], cy=camera.height / 2 - f * mid[1])


def canonical_camera(size: int, body_height_m: float, fill: float = FILL):
    """The inference camera: orthographic, looking at the origin from +Z (the body faces it),
    scale such that a ``body_height_m`` tall silhouette spans ``fill`` of the image height."""
    from .render import Camera, look_at

    R, t = look_at(np.array([0.0, 0.0, 5.0]), np.zeros(3))
    f = fill * size / body_height_m
    return Camera(width=size, height=size, fx=f, fy=f, cx=size / 2, cy=size / 2, R=R, t=t,
                  orthographic=True, z_center=5.0)


def canonical_bbox(camera, margin: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """World box seen by a canonical camera (x, y over the image; z as deep as the image is tall)."""
    half = camera.height / (2 * camera.fy) * (1 + margin)
    halfw = camera.width / (2 * camera.fx) * (1 + margin)
    return np.array([-halfw, -half, -half]), np.array([halfw, half, half])


def photo_frame(mask: np.ndarray, size: int, fill: float = FILL) -> tuple[float, float, float]:
    """How :func:`frame_photo` frames a photo: (scale s, centre cx, cy) such that an output pixel
    is ``(input pixel - (cx, cy)) * s + size / 2``."""
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        raise ValueError("the mask is empty: no person to reconstruct")
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    s = min(fill * size / (y1 - y0), fill * size / (x1 - x0))
    return float(s), 0.5 * float(x0 + x1), 0.5 * float(y0 + y1)


def frame_photo(rgb: np.ndarray, mask: np.ndarray, size: int, fill: float = FILL) -> tuple[np.ndarray, np.ndarray]:
    """Crop/scale/pad a photo so the mask's bounding box spans ``fill`` of a ``size`` square's
    height (or width) and is centred: what the training cameras do. Returns (rgb float32 [0, 1]
    (size, size, 3) with the background set to 0.5 grey, mask bool (size, size))."""
    from PIL import Image

    s, cx, cy = photo_frame(mask, size, fill)
    # affine map output pixel -> input pixel: p_in = (p_out - size/2) / s + c
    a = 1.0 / s
    coeffs = (a, 0.0, cx - a * size / 2, 0.0, a, cy - a * size / 2)
    im = Image.fromarray(np.asarray(rgb, np.uint8))
    mk = Image.fromarray((np.asarray(mask, bool) * 255).astype(np.uint8))
    rgb_o = np.asarray(im.transform((size, size), Image.Transform.AFFINE, coeffs, Image.Resampling.BILINEAR,
                                    fillcolor=(128, 128, 128)), np.float32) / 255.0
    m_o = np.asarray(mk.transform((size, size), Image.Transform.AFFINE, coeffs, Image.Resampling.BILINEAR,
                                  fillcolor=0)) >= 128
    rgb_o = np.where(m_o[..., None], rgb_o, 0.5).astype(np.float32)
    return rgb_o, m_o


def _split_of(rng: np.random.Generator, cfg: DatasetConfig) -> str:
    r = rng.random()
    if r < cfg.test_fraction:
        return "test"
    if r < cfg.test_fraction + cfg.val_fraction:
        return "val"
    return "train"


def _write_subject(sdir: Path, body, cfg: DatasetConfig, sseed: int) -> dict:
    from PIL import Image

    from .render import look_at_body, prepare, render
    from .sampling import sample_colour, sample_occupancy

    rng = np.random.default_rng(sseed)
    mesh = body.mesh
    scene = prepare(mesh)
    verts = np.asarray(mesh.vertices)
    offset = rng.uniform(0, 360)
    cams = []
    for k in range(cfg.views):
        yaw = (offset + 360.0 * k / cfg.views) % 360
        pitch = float(rng.uniform(-cfg.pitch_deg, cfg.pitch_deg))
        cam = frame_camera(look_at_body(mesh.bounds, yaw, pitch, cfg.size, orthographic=True), verts)
        res = render(scene, cam, light="random", background="random", seed=int(rng.integers(2**31)),
                     supersample=cfg.supersample)
        rgba = np.concatenate([res.rgb, (res.mask * 255).astype(np.uint8)[..., None]], -1)
        Image.fromarray(rgba, "RGBA").save(sdir / f"view_{k}.png", optimize=False, compress_level=3)
        cams.append({"file": f"view_{k}.png", "yaw_deg": yaw, "pitch_deg": pitch, "camera": cam.to_dict()})
    occ_p, occ_l = sample_occupancy(body.components, cfg.n_occ, rng, sigma=cfg.sigma)
    col_p, col_rgb = sample_colour(mesh, cfg.n_col, rng, components=body.components)
    np.savez_compressed(sdir / "samples.npz", occ_points=occ_p.astype(np.float32),
                        occ_labels=(occ_l > 0.5).astype(np.uint8), col_points=col_p.astype(np.float32),
                        col_rgb=np.clip(col_rgb * 255 + 0.5, 0, 255).astype(np.uint8))
    mesh.export(sdir / "mesh.ply")
    return {"views": cams}


def build_dataset(out: Path, cfg: DatasetConfig | None = None, *, progress: bool = True,
                  source=None) -> dict:
    """Build (or extend, resuming where a previous run stopped) a dataset in ``out``.

    ``source``: None for MakeHuman bodies (``reconstruct.body.makehuman.random_subject``), or a
    list of (name, ClothedBody-like) pairs (see :func:`bodies_from_meshes`).
    Each subject is written to a temporary folder and renamed into place when complete, so an
    interrupted run leaves no half-written subject and a rerun continues.
    """
    cfg = cfg or DatasetConfig()
    out = Path(out)
    (out / "subjects").mkdir(parents=True, exist_ok=True)
    man_path = out / "manifest.json"
    manifest = json.loads(man_path.read_text()) if man_path.is_file() else None
    cfg_d = dict(vars(cfg))
    if manifest is not None:
        if manifest.get("schema") != SCHEMA:
            raise ValueError(f"{man_path} is not a dhstudio body dataset")
        if manifest["config"] != cfg_d:
            raise ValueError(f"{out} was built with another configuration; use a new folder")
    else:
        manifest = {"schema": SCHEMA, "config": cfg_d, "generator": "makehuman" if source is None else "meshes",
                    "subjects": {}}
    if source is None:
        from .makehuman import random_subject

        items = ((f"mh{i:05d}", (lambda i=i: random_subject(cfg.seed * 1_000_003 + i))) for i in range(cfg.n_subjects))
    else:
        items = ((name, (lambda b=b: b)) for name, b in source)
    it = items
    bar = None
    if progress:
        from tqdm import tqdm

        total = cfg.n_subjects if source is None else None
        bar = tqdm(total=total, desc="subjects", unit="body")
    t0 = time.time()
    for sid, make in it:
        sdir = out / "subjects" / sid
        if sid in manifest["subjects"] and (sdir / "subject.json").is_file():
            if bar:
                bar.update(1)
            continue
        sseed = int.from_bytes(sid.encode()[-8:].rjust(8, b"\0"), "big") ^ (cfg.seed * 7919)
        split = _split_of(np.random.default_rng([cfg.seed, sseed % (2**32)]), cfg)
        body = make()
        tmp = Path(tempfile.mkdtemp(prefix=f".{sid}.", dir=out / "subjects"))
        try:
            info = _write_subject(tmp, body, cfg, sseed % (2**32))
            meta = {"id": sid, "split": split, "seed": getattr(body, "seed", None),
                    "pose": getattr(body, "pose_name", None), "height_m": float(np.ptp(body.mesh.vertices[:, 1])),
                    "garments": list(getattr(body, "garments", []) or []),
                    "params": _params_dict(getattr(body, "params", None)), **info}
            (tmp / "subject.json").write_text(json.dumps(meta, indent=1))
            if sdir.exists():
                shutil.rmtree(sdir)
            os.replace(tmp, sdir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        manifest["subjects"][sid] = {"split": split, "views": cfg.views}
        _write_json_atomic(man_path, manifest)
        if bar:
            bar.update(1)
    if bar:
        bar.close()
    manifest["seconds_last_run"] = round(time.time() - t0, 1)
    _write_json_atomic(man_path, manifest)
    return manifest


def _params_dict(p) -> dict | None:
    if p is None:
        return None
    try:
        import dataclasses

        return dataclasses.asdict(p)
    except TypeError:
        return None


def _write_json_atomic(path: Path, obj) -> None:
    write_bytes_atomic(path, json.dumps(obj, indent=1).encode())


@dataclass
class ScanBody:
    """A scan from disk in the shape build_dataset expects (mesh with vertex colours + parts)."""

    mesh: object
    components: list
    seed: int | None = None
    pose_name: str | None = None
    garments: tuple = ()
    params: object = None


def bodies_from_meshes(folder: Path, *, up: str = "y", height_m: float | None = None):
    """Yield (name, ScanBody) for every OBJ/GLB/PLY in ``folder`` (textures baked to vertex
    colours). Meshes are assumed to be in metres with +Y up (``up='z'`` rotates Z-up scans);
    ``height_m`` rescales each to that height. Feet are put on y = 0, centred in x/z. The mesh
    should be closed (watertight) for occupancy labels; open scans are used as they are and
    their labels are approximate (ray-parity), which the manifest records."""
    from .._deps import require

    trimesh = require("trimesh")
    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in (".obj", ".glb", ".ply"))
    if not files:
        raise FileNotFoundError(f"no .obj/.glb/.ply meshes in {folder}")
    for p in files:
        try:
            m = trimesh.load(p, force="mesh", process=True)
        except Exception as e:
            raise ValueError(f"cannot read mesh {p}: {e}".splitlines()[0]) from None
        if len(m.faces) == 0:
            raise ValueError(f"{p} has no faces")
        if up == "z":
            m.apply_transform(trimesh.transformations.rotation_matrix(-math.pi / 2, [1, 0, 0]))
        if height_m:
            m.apply_scale(height_m / max(np.ptp(m.vertices[:, 1]), 1e-9))
        c = m.bounds.mean(0)
        m.apply_translation([-c[0], -m.bounds[0][1], -c[2]])
        try:
            m.visual = m.visual.to_color()
        except Exception:
            pass
        yield p.stem, ScanBody(mesh=m, components=[m])


# ------------------------------------------------------------------------------------ loading

EMPTY_FRACTION = 1 / 4
"""Share of each item's occupancy points drawn in the empty part of the reconstruction box."""


def _body_box(samples: dict, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """Bounding box (lo, hi) of the inside occupancy samples, grown by ``margin`` metres."""
    inside = samples["occ_points"][samples["occ_labels"] > 0]
    return inside.min(0) - margin, inside.max(0) + margin


def _depth_range(camera, lo: np.ndarray, hi: np.ndarray) -> tuple[float, float]:
    """Camera-depth range of the world box [lo, hi]."""
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    zc = camera.to_camera(corners)[:, 2]
    return float(zc.min()), float(zc.max())


def _empty_space(samples: dict, camera, n: int, rng: np.random.Generator, mask: np.ndarray | None = None,
                 margin: float = 0.03) -> np.ndarray:
    """``n`` points (world, float32) in the reconstruction box of ``camera`` (what its image sees,
    as deep as it is tall: the box inference extracts the surface from) and outside the body's
    bounding box grown by ``margin`` metres, so certainly empty. With ``mask`` (the view's
    silhouette), half of them lie on the rays of silhouette pixels (in front of or behind the
    body), the rest uniform in the box.

    The stored samples cover only the body's box plus 10 cm (PIFu's sampling around a centred
    scan); without these points nothing teaches the network that the space in front of and
    behind the body, inside its silhouette, is empty, and the extracted surface is the
    silhouette extruded through the whole box. Uniform points alone rarely fall inside the
    silhouette (it covers a small part of the image), hence the silhouette-ray half.
    """
    from .infer import camera_box

    lo_b, hi_b = _body_box(samples, margin)
    lo, hi = camera_box(camera)
    ys, xs = np.nonzero(mask) if mask is not None else (np.zeros(0, int), np.zeros(0, int))
    n_ray = n // 2 if len(xs) else 0
    out_u, out_r = np.zeros((0, 3)), np.zeros((0, 3))
    for _ in range(16):
        if len(out_u) < n - n_ray:
            pc = lo + (hi - lo) * rng.random((2 * n + 16, 3))
            pw = (pc - camera.t) @ camera.R
            out_u = np.concatenate([out_u, pw[np.any((pw < lo_b) | (pw > hi_b), axis=1)]])
        if len(out_r) < n_ray:
            k = rng.integers(len(xs), size=2 * n_ray + 16)
            u = xs[k] + rng.random(len(k))
            v = ys[k] + rng.random(len(k))
            pw = camera.unproject(u, v, lo[2] + (hi[2] - lo[2]) * rng.random(len(k)))
            out_r = np.concatenate([out_r, pw[np.any((pw < lo_b) | (pw > hi_b), axis=1)]])
        if len(out_u) >= n - n_ray and len(out_r) >= n_ray:
            break
    return np.concatenate([out_r[:n_ray], out_u[:n - n_ray]]).astype(np.float32)


def _hull_carved(samples: dict, camera, mask: np.ndarray, others: list, n: int, rng: np.random.Generator,
                 margin: float = 0.03) -> np.ndarray:
    """Up to ``n`` points (world, float32) on the rays of ``camera``'s silhouette pixels, inside the
    body's box, that fall outside the silhouette of at least one of the ``others`` views
    (``(mask, camera)`` pairs, masks dilated by the caller): outside the visual hull, so certainly
    empty. They cover the space just in front of and behind the body inside its silhouette, which
    the near-surface samples barely reach and the empty-space ones (outside the body's box) not at
    all.
    """
    lo_b, hi_b = _body_box(samples, margin)
    ys, xs = np.nonzero(mask)
    if not len(xs) or not others or n <= 0:
        return np.zeros((0, 3), np.float32)
    z0, z1 = _depth_range(camera, lo_b, hi_b)
    out = np.zeros((0, 3))
    for _ in range(8):
        k = rng.integers(len(xs), size=4 * n)
        u, v = xs[k] + rng.random(len(k)), ys[k] + rng.random(len(k))
        pw = camera.unproject(u, v, z0 + (z1 - z0) * rng.random(len(k)))
        pw = pw[np.all((pw >= lo_b) & (pw <= hi_b), axis=1)]
        carved = np.zeros(len(pw), bool)
        for m, cam in others:
            uv, _ = cam.project(pw)
            h, w = m.shape
            px = np.floor(uv).astype(np.int64)
            ok = (px[:, 0] >= 0) & (px[:, 0] < w) & (px[:, 1] >= 0) & (px[:, 1] < h)
            hit = np.zeros(len(pw), bool)
            hit[ok] = m[px[ok, 1], px[ok, 0]]
            carved |= ~hit
        out = np.concatenate([out, pw[carved]])
        if len(out) >= n:
            break
    return out[:n].astype(np.float32)


def _silhouette_rays(samples: dict, camera, mask: np.ndarray, n_rays: int, n_depth: int,
                     rng: np.random.Generator, margin: float = 0.03) -> np.ndarray:
    """Points (n_rays * n_depth, 3) world float32 on ``n_rays`` random rays through the pixels of
    ``camera``'s silhouette (eroded by one pixel), ``n_depth`` stratified depths each across the
    body's box. Every such ray meets the body, so at least one point of each is inside (up to the
    depth spacing): the ray-coverage loss of ``train`` asks the network for that, which the
    per-point labels alone do not when the network is unsure of the depth."""
    from scipy import ndimage

    core = ndimage.binary_erosion(mask, iterations=1)
    ys, xs = np.nonzero(core if core.any() else mask)
    if not len(xs) or n_rays <= 0 or n_depth <= 0:
        return np.zeros((0, 3), np.float32)
    z0, z1 = _depth_range(camera, *_body_box(samples, margin))
    k = rng.integers(len(xs), size=n_rays)
    u, v = xs[k] + rng.random(n_rays), ys[k] + rng.random(n_rays)
    t = (np.arange(n_depth)[None, :] + rng.random((n_rays, n_depth))) / n_depth
    z = z0 + (z1 - z0) * t
    return camera.unproject(np.repeat(u, n_depth), np.repeat(v, n_depth), z.reshape(-1)).astype(np.float32)


def _cone_balanced(points: np.ndarray, labels: np.ndarray, mask: np.ndarray, camera, n: int,
                   rng: np.random.Generator) -> np.ndarray:
    """Indices of ``n`` occupancy samples with as many inside as outside points among those that
    project into the view's silhouette (the cone where the depth has to be read from the image).

    The stored samples are balanced overall, but every inside point projects into the silhouette
    while many outside ones project beside it, where the silhouette alone answers; inside the
    cone about two thirds are inside, which teaches a network that sees only the silhouette to
    fill the cone with a slab far deeper than the body. Drawn from 2n candidates: equal numbers of
    inside and outside in-cone points, the rest from outside the cone.
    """
    cand = rng.choice(len(points), size=2 * n, replace=len(points) < 2 * n)
    uv, _ = camera.project(points[cand])
    h, w = mask.shape
    px = np.clip(np.floor(uv).astype(np.int64), 0, [w - 1, h - 1])
    cone = mask[px[:, 1], px[:, 0]]
    inside = labels[cand] > 0.5
    a, b, c = cand[cone & inside], cand[cone & ~inside], cand[~cone]
    k = min(len(a), len(b), n // 2)
    rest = np.concatenate([c, a[k:], b[k:]])[: n - 2 * k]
    out = np.concatenate([a[:k], b[:k], rest])
    if len(out) < n:  # too few candidates of every kind: top up at random
        out = np.concatenate([out, rng.choice(len(points), size=n - len(out))])
    return out


def _photo_augment(img: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Appearance augmentation towards real photos (the MakeHuman bodies have no hair and one skin
    tone): with probability 0.6 a hair cap painted over the top of the head (a half-ellipse from the
    crown down 3.5-7.5 % of the silhouette's height, 7 % of it to each side; mostly dark colours,
    shaded like the pixels it covers), then a colour jitter of the person (brightness x0.75-1.25,
    contrast x0.8-1.2 about the person's mean, saturation x0.7-1.3). The background stays 0.5 grey.
    The image only; :func:`_photo_augment_targets` also gives the colour targets that agree."""
    return _photo_augment_targets(img, mask, rng)[0]


def _photo_augment_targets(img: np.ndarray, mask: np.ndarray, rng: np.random.Generator):
    """:func:`_photo_augment`'s image and a function ``recolour(uv (M, 2) in [-1, 1], rgb (M, 3))``
    that makes colour targets agree with what the augmented view shows: the same jitter, and the
    painted cap's colour for the points that project into the cap (hair covers the crown)."""
    out = img.copy()
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return out, lambda uv, rgb: rgb
    y0, y1 = int(ys.min()), int(ys.max())
    h = max(y1 - y0, 1)
    cap = None
    if rng.random() < 0.6:
        top = xs[ys <= y0 + 2]
        cx = float(np.median(top))
        d = int(round(rng.uniform(0.035, 0.075) * h))
        yy, xx = np.mgrid[0:img.shape[0], 0:img.shape[1]]
        cap = mask & (((xx - cx) / (0.07 * h)) ** 2 + ((yy - y0) / max(d, 1)) ** 2 <= 1.0)
        if cap.any():
            if rng.random() < 0.8:  # black / brown
                base = np.array([0.06, 0.05, 0.04]) + rng.uniform(0.0, 0.18) * np.array([1.0, 0.75, 0.5])
            else:  # fair / red / grey
                base = rng.uniform(0.35, 0.8) * np.array([1.0, rng.uniform(0.55, 0.85), rng.uniform(0.3, 0.6)])
            lum = out[cap].mean(axis=1, keepdims=True)
            shade = lum / max(float(lum.mean()), 1e-3)
            noise = rng.normal(0.0, 0.03, size=(int(cap.sum()), 1))
            out[cap] = np.clip(base[None, :] * shade + noise, 0.0, 1.0)
        else:
            cap = None
    b, c, sat = rng.uniform(0.75, 1.25), rng.uniform(0.8, 1.2), rng.uniform(0.7, 1.3)
    m = (out[mask] * b).mean(axis=0, keepdims=True)

    def jitter(px: np.ndarray) -> np.ndarray:
        px = m + (px * b - m) * c
        grey = px.mean(axis=1, keepdims=True)
        return np.clip(grey + (px - grey) * sat, 0.0, 1.0)

    out[mask] = jitter(out[mask])
    out = out.astype(np.float32)
    H, W = mask.shape

    def recolour(uv: np.ndarray, rgb: np.ndarray) -> np.ndarray:
        new = jitter(np.asarray(rgb, np.float64)).astype(np.float32)
        if cap is not None:
            j = np.clip(((uv[:, 0] + 1) * 0.5 * W).astype(np.int64), 0, W - 1)
            i = np.clip(((uv[:, 1] + 1) * 0.5 * H).astype(np.int64), 0, H - 1)
            hit = cap[i, j]
            new[hit] = out[i[hit], j[hit]]
        return new

    return out, recolour


class BodyDataset:
    """Training items from a dataset folder (torch-free; the trainer makes tensors).

    ``item(i, rng)`` -> dict with ``image`` (V, S, S, 3) float32 in [0, 1] with the background set
    to 0.5 grey by the mask, ``uv`` (V, N, 2), ``z`` (V, N, 1), ``labels`` (N,), and colour
    samples ``cuv`` (V, M, 2), ``cz`` (V, M, 1), ``crgb`` (M, 3); views chosen at random.
    """

    def __init__(self, root: Path, split: str = "train", *, image_size: int | None = None):
        root = Path(root)
        man = root / "manifest.json"
        if not man.is_file():
            raise FileNotFoundError(f"{root} is not a dataset folder (no manifest.json)")
        self.manifest = json.loads(man.read_text())
        if self.manifest.get("schema") != SCHEMA:
            raise ValueError(f"{man} is not a dhstudio body dataset")
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}")
        self.root, self.split = root, split
        self.ids = sorted(s for s, m in self.manifest["subjects"].items() if m["split"] == split)
        self.image_size = image_size
        self._cache: dict = {}  # subject id -> subject; ('masks', id) -> its views' masks

    def __len__(self) -> int:
        return len(self.ids)

    def subject(self, sid: str) -> dict:
        if sid not in self._cache:
            sdir = self.root / "subjects" / sid
            meta = json.loads((sdir / "subject.json").read_text())
            with np.load(sdir / "samples.npz") as z:
                s = {k: z[k] for k in z.files}
            self._cache[sid] = {"meta": meta, "samples": s, "dir": sdir}
        return self._cache[sid]

    def view(self, sid: str, k: int):
        """(image float32 (S, S, 3) masked to grey, mask bool, Camera) of one view."""
        from PIL import Image

        from .render import Camera

        sub = self.subject(sid)
        v = sub["meta"]["views"][k]
        with Image.open(sub["dir"] / v["file"]) as im:
            rgba = np.asarray(im.convert("RGBA"))
        cam = Camera.from_dict(v["camera"])
        if self.image_size and self.image_size != rgba.shape[0]:
            s = self.image_size / rgba.shape[0]
            rgba = np.asarray(Image.fromarray(rgba).resize((self.image_size, self.image_size),
                                                           Image.Resampling.BILINEAR))
            cam = replace(cam, width=self.image_size, height=self.image_size, fx=cam.fx * s, fy=cam.fy * s,
                          cx=cam.cx * s, cy=cam.cy * s)
        mask = rgba[..., 3] >= 128
        img = np.where(mask[..., None], rgba[..., :3] / 255.0, 0.5).astype(np.float32)
        return img, mask, cam

    def masks(self, sid: str, dilate: int = 2) -> list:
        """(silhouette dilated by ``dilate`` px, Camera) of every view of ``sid``, cached."""
        key = ("masks", sid)
        if key not in self._cache:
            from scipy import ndimage

            out = []
            for k in range(len(self.subject(sid)["meta"]["views"])):
                _, m, cam = self.view(sid, k)
                out.append((ndimage.binary_dilation(m, iterations=dilate) if dilate else m, cam))
            self._cache[key] = out
        return self._cache[key]

    def depths(self, sid: str, size: int) -> np.ndarray:
        """Ray-cast depth of every view of ``sid`` at ``size`` x ``size`` (the feature maps' pixel
        centres): float32 (views, 3, size, size) = normalised z of the first surface along each
        pixel's ray, of the last one, and 1 where the ray meets the body (else 0, depths 0). From
        the subject's ``mesh.ply``; cached."""
        key = ("depth", sid, size)
        if key not in self._cache:
            import trimesh

            from .render import Camera, depth_maps, prepare

            sub = self.subject(sid)
            mesh = trimesh.load(sub["dir"] / "mesh.ply", force="mesh", process=False)
            scene = prepare(mesh)
            out = []
            for v in sub["meta"]["views"]:
                cam = Camera.from_dict(v["camera"])
                if not cam.orthographic:
                    raise ValueError(f"{sid}: depth maps are defined for orthographic views")
                out.append(depth_maps(scene, cam, size))
            self._cache[key] = np.stack(out)
        return self._cache[key]

    def prior_maps(self, sid: str, k: int, size: int, rng: np.random.Generator | None = None, *,
                   estimated_p: float = 0.0, noise_deg: float = 6.0, depth_noise: float = 0.02,
                   fill: bool = True) -> np.ndarray:
        """Body-prior maps (3, size, size) float32 of view ``k`` (:mod:`prior`): with probability
        ``estimated_p`` the maps of the prior fitted to the rendered view (``body priors``'
        ``prior_est.npz``, when it has this view), else the subject's unclothed body in its true
        pose with each joint group turned by ``noise_deg`` (std) and the whole map shifted in
        depth by ``depth_noise`` (std, normalised z) as ICON trains; ``rng`` None: no noise and
        the true pose. ``fill``: front/back outside the hit mask take the nearest hit's values."""
        from . import prior
        from .infer import prepare_priors
        from .render import Camera

        sub = self.subject(sid)
        est = self._estimated_priors(sid)
        if est is not None and rng is not None and k in est[0] and rng.random() < estimated_p:
            m = est[1][est[0].index(k)].astype(np.float32)
            if m.shape[-1] != size:
                raise ValueError(f"{sid}: prior_est.npz holds {m.shape[-1]} px maps, {size} asked")
        else:
            key = ("skin", sid)
            if key not in self._cache:
                import trimesh

                mesh = trimesh.load(sub["dir"] / "mesh.ply", force="mesh", process=False)
                self._cache[key] = np.asarray(mesh.vertices)
            v, f = prior.subject_prior(sub["meta"], self._cache[key], rng, noise_deg=noise_deg)
            cam = Camera.from_dict(sub["meta"]["views"][k]["camera"])
            shift = float(rng.normal(0.0, depth_noise)) if rng is not None and depth_noise else 0.0
            m = prior.centred_maps(v, f, cam, size, depth_shift=shift)
        return prepare_priors(m[None])[0] if fill else m

    def estimated_prior_maps(self, sid: str, k: int, size: int) -> np.ndarray:
        """The prior fitted to view ``k`` as to a photo (its RGB with the background -> pose model
        -> fit), (3, size, size) unfilled: from ``prior_est.npz`` when ``body priors`` wrote it,
        else fitted now. No person found: all-zero maps (no hit)."""
        est = self._estimated_priors(sid)
        if est is not None and k in est[0] and est[1].shape[-1] == size:
            return est[1][est[0].index(k)].astype(np.float32)
        from PIL import Image

        from . import prior

        sub = self.subject(sid)
        with Image.open(sub["dir"] / sub["meta"]["views"][k]["file"]) as im:
            rgb = np.asarray(im.convert("RGB"))
        try:
            return prior.fit_body(prior.estimate_person(rgb)).maps(size)
        except prior.NoPerson:
            return np.zeros((3, size, size), np.float32)

    def _estimated_priors(self, sid: str):
        key = ("prior_est", sid)
        if key not in self._cache:  # looked up again until it exists (`body priors` may be running)
            path = self.root / "subjects" / sid / "prior_est.npz"
            if not path.is_file():
                return None
            with np.load(path) as z:
                self._cache[key] = ([int(x) for x in z["views"]], z["maps"])
        return self._cache[key]

    def item(self, i: int, rng: np.random.Generator, *, n_views: int = 1, n_points: int = 5000,
             n_colour: int = 2000, empty_fraction: float = EMPTY_FRACTION, cone_balance: bool = False,
             hull_fraction: float = 0.0, photo_aug: bool = False, n_rays: int = 0, n_depth: int = 24,
             depth_size: int = 0, prior_size: int = 0, prior_estimated_p: float = 0.5,
             prior_noise_deg: float = 6.0) -> dict:
        sid = self.ids[i % len(self.ids)]
        sub = self.subject(sid)
        nv = len(sub["meta"]["views"])
        ks = rng.choice(nv, size=n_views, replace=False)
        s = sub["samples"]
        views = [self.view(sid, int(k)) for k in ks]
        recolour = None
        if photo_aug:  # the colour targets follow what the first view shows
            first, recolour = _photo_augment_targets(*views[0][:2], rng)
            views = [(first, *views[0][1:])] + [(_photo_augment(img, m, rng), m, cam) for img, m, cam in views[1:]]
        n_empty = int(round(n_points * empty_fraction))
        empty = _empty_space(s, views[0][2], n_empty, rng, views[0][1]) if n_empty else np.zeros((0, 3), np.float32)
        carved = np.zeros((0, 3), np.float32)
        if hull_fraction > 0:
            others = [mc for j, mc in enumerate(self.masks(sid)) if j != int(ks[0])]
            carved = _hull_carved(s, views[0][2], views[0][1], others, int(round(n_points * hull_fraction)), rng)
            empty = np.concatenate([empty, carved])
        n_occ = n_points - len(empty)
        if cone_balance:
            pi = _cone_balanced(s["occ_points"], s["occ_labels"], views[0][1], views[0][2], n_occ, rng)
        else:
            pi = rng.choice(len(s["occ_points"]), size=n_occ, replace=len(s["occ_points"]) < n_occ)
        ci = rng.choice(len(s["col_points"]), size=n_colour, replace=len(s["col_points"]) < n_colour)
        pts = np.concatenate([s["occ_points"][pi], empty]).astype(np.float32)
        labels = np.concatenate([s["occ_labels"][pi].astype(np.float32), np.zeros(len(empty), np.float32)])
        if n_rays:  # appended after the labelled points: item["rays"] = (n_rays, n_depth)
            rays = _silhouette_rays(s, views[0][2], views[0][1], n_rays, n_depth, rng)
            pts = np.concatenate([pts, rays])
        cpts = s["col_points"][ci]
        imgs, uvs, zs, cuvs, czs = [], [], [], [], []
        for img, _, cam in views:
            proj = cam.projector()
            uv, z = proj(pts)
            cuv, cz = proj(cpts)
            imgs.append(img), uvs.append(uv), zs.append(z), cuvs.append(cuv), czs.append(cz)
        out = {"id": sid, "views": ks.tolist(), "image": np.stack(imgs), "uv": np.stack(uvs), "z": np.stack(zs),
               "labels": labels, "rays": (n_rays, n_depth) if n_rays else (0, 0),
               "cuv": np.stack(cuvs), "cz": np.stack(czs),
               "crgb": s["col_rgb"][ci].astype(np.float32) / 255.0}
        if recolour is not None:
            out["crgb"] = recolour(out["cuv"][0], out["crgb"]).astype(np.float32)
        if depth_size:  # (V, 3, D, D): front, back, hit of the chosen views
            out["depth"] = self.depths(sid, depth_size)[ks]
        if prior_size:  # (V, 3, P, P): the body prior's maps of the chosen views
            out["prior"] = np.stack([self.prior_maps(sid, int(k), prior_size, rng, estimated_p=prior_estimated_p,
                                                     noise_deg=prior_noise_deg) for k in ks])
        return out
