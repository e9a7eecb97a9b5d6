"""Synthetic head captures: the ICT face model, posed by expression sequences, ray cast on CPU.

:func:`synth_capture` writes a capture folder that :func:`reconstruct.head.data.load_capture`
and nerfstudio's ``nerfstudio-data`` parser read::

    DIR/images/0000.png ...   RGB, the head over a black background
    DIR/masks/0000.png ...    one channel, 255 on the head, 0 elsewhere
    DIR/transforms.json       intrinsics, camera-to-world (OpenGL), per-frame ``expression``
                              and ``split``, nerfstudio's train/val/test file lists

The head is an ICT-FaceKit identity (a named one or random PCA weights from the seed) in metres,
+Y up, facing +Z. Skin albedo is a seeded tone with smooth 3D value noise, redder lips and darker
brows; eyes (sclera, iris, pupil), teeth, gums/tongue and the mouth interior have their own
colours; the model's see-through eye shells and the eyelash cards (alpha-textured in the
original) are left out. One directional light, fixed in the world for the whole capture, plus
hemisphere ambient (the shading of :func:`reconstruct.body.render.render`, whose camera and
renderer this reuses).

Rigs:

- ``multiview``: ``n_views`` fixed cameras on a sphere cap in front of the face (yaw within
  +-55 degrees, pitch -15..+25), all looking at the head centre; every expression frame is
  seen by every camera. ``n_test_views`` of them (default ``max(1, n_views // 4)``) are held
  out: they see the training expressions (split ``test_view``) and never appear in ``train``.
  Held-out cameras sit between training cameras (the midpoint of two neighbours, strictly
  inside the training cameras' yaw and pitch range): novel views are interpolated, not
  extrapolated;
- ``orbit``: one moving camera; training frame k is seen from its own position on an arc
  (yaw -70..+70). ``n_test_views`` extra positions above the arc are held out.

Held-out expressions (split ``test_expression``, ``n_test_expressions`` of them, default
``max(1, n_frames // 4)``) are taken between the training samples of the same sequence, so their
coefficients are not in the training set; they are seen from training cameras.

Everything is deterministic by ``seed``: the same arguments give the same bytes.

Command line (to be hooked into the studio CLI as ``dhstudio head synth --out DIR``)::

    python -m reconstruct.head.synth --out DIR [--views 8] [--frames 12] [--size 128]
        [--sequence talking|smiling|blinking] [--rig multiview|orbit] [--identity identity003
        | --random-identity] [--seed 0]
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .data import Capture, Frame, Intrinsics, opencv_to_c2w, save_png, write_transforms

SEQUENCES = ("talking", "smiling", "blinking")
RIGS = ("multiview", "orbit")
FOV_DEG = 30.0
FILL = 0.92
"""Fraction of the image height the head's bounding sphere spans."""

# sRGB colours (0-255)
_SKIN_TONES = np.array([[236, 196, 170], [224, 172, 140], [198, 140, 105], [160, 108, 78],
                        [118, 78, 56], [246, 210, 190]], np.float32)
_IRIS_COLOURS = np.array([[92, 60, 36], [60, 100, 150], [80, 110, 70], [120, 90, 50]], np.float32)
_HAIR_COLOURS = np.array([[40, 28, 20], [70, 50, 32], [25, 20, 18], [110, 80, 50]], np.float32)
_PART_COLOURS = {"mouth_interior": (90, 30, 35), "gums_tongue": (190, 90, 95), "teeth": (235, 228, 210),
                 "sclera": (235, 232, 225)}


# --------------------------------------------------------------------------- expressions

def _s(x: np.ndarray | float) -> np.ndarray:
    """0 -> 0, 0.5 -> 1, 1 -> 0, smooth and periodic."""
    return 0.5 - 0.5 * np.cos(2 * np.pi * np.asarray(x, np.float64))


@dataclass(frozen=True)
class _SeqParams:
    freq: np.ndarray
    phase: np.ndarray
    asym: float


def _seq_params(rng: np.random.Generator) -> _SeqParams:
    return _SeqParams(freq=rng.uniform(0.8, 2.2, 6), phase=rng.uniform(0, 1, 6), asym=float(rng.uniform(0.8, 1.0)))


def _expression_at(sequence: str, t: float, p: _SeqParams) -> dict[str, float]:
    f, ph = p.freq, p.phase
    if sequence == "talking":
        jaw = 0.05 + 0.75 * _s(f[0] * t + ph[0])
        e = {"jawOpen": jaw,
             "mouthLowerDown_L": 0.4 * _s(f[0] * t + ph[0] + 0.05),
             "mouthLowerDown_R": 0.4 * _s(f[0] * t + ph[0] + 0.05) * p.asym,
             "mouthUpperUp_L": 0.3 * _s(f[1] * t + ph[1]),
             "mouthUpperUp_R": 0.3 * _s(f[1] * t + ph[1]) * p.asym,
             "mouthFunnel": 0.5 * _s(f[2] * t + ph[2]) ** 2,
             "mouthPucker": 0.4 * _s(f[3] * t + ph[3]) ** 2,
             "mouthStretch_L": 0.3 * _s(f[4] * t + ph[4]),
             "mouthStretch_R": 0.3 * _s(f[4] * t + ph[4]) * p.asym,
             "browInnerUp_L": 0.3 * _s(f[5] * t + ph[5]) ** 2,
             "browInnerUp_R": 0.3 * _s(f[5] * t + ph[5]) ** 2}
    elif sequence == "smiling":
        r = _s(0.5 * f[0] * t + ph[0])
        e = {"mouthSmile_L": 0.95 * r, "mouthSmile_R": 0.95 * r * p.asym,
             "cheekSquint_L": 0.5 * r, "cheekSquint_R": 0.5 * r * p.asym,
             "cheekRaiser_L": 0.5 * r, "cheekRaiser_R": 0.5 * r * p.asym,
             "eyeSquint_L": 0.35 * r, "eyeSquint_R": 0.35 * r,
             "jawOpen": 0.25 * r * _s(f[1] * t + ph[1]),
             "mouthUpperUp_L": 0.25 * r, "mouthUpperUp_R": 0.25 * r}
    elif sequence == "blinking":
        b = np.clip(np.cos(2 * np.pi * (f[0] * t + ph[0])), 0, 1) ** 2
        e = {"eyeBlink_L": b, "eyeBlink_R": b * p.asym,
             "eyeLookOut_L": 0.3 * _s(f[1] * t + ph[1]), "eyeLookIn_R": 0.3 * _s(f[1] * t + ph[1]),
             "browDown_L": 0.3 * _s(f[2] * t + ph[2]), "browDown_R": 0.3 * _s(f[2] * t + ph[2])}
    else:
        raise ValueError(f"unknown sequence {sequence!r}; choose from {SEQUENCES}")
    return {k: round(float(np.clip(v, 0.0, 1.0)), 4) for k, v in e.items()}


def _distance(a: Mapping[str, float], b: Mapping[str, float]) -> float:
    keys = set(a) | set(b)
    return max((abs(a.get(k, 0.0) - b.get(k, 0.0)) for k in keys), default=0.0)


def expression_sequence(sequence: str, n_frames: int, n_held_out: int = 0,
                        seed: int | np.random.Generator = 0) -> tuple[list[dict], list[dict], list[float], list[float]]:
    """(train coefficients, held-out coefficients, train times, held-out times).

    Training frame k is the sequence at time ``k / n_frames``; held-out frames lie between
    training samples and differ from every training frame by at least 0.02 in some weight.
    """
    if sequence not in SEQUENCES:
        raise ValueError(f"unknown sequence {sequence!r}; choose from {SEQUENCES}")
    p = _seq_params(np.random.default_rng(seed))
    times = [k / n_frames for k in range(n_frames)]
    train = [_expression_at(sequence, t, p) for t in times]
    held, htimes = [], []
    for j in range(n_held_out):
        t = (j * max(1, n_frames // max(1, n_held_out)) + 0.5) / n_frames
        for _ in range(50):
            e = _expression_at(sequence, t % 1.0, p)
            if all(_distance(e, x) >= 0.02 for x in train + held):
                break
            t += 0.37 / n_frames
        else:  # a sequence that barely moves: push one weight apart from the training set
            k0 = next(iter(e))
            e = dict(e)
            e[k0] = round(float(np.clip(e[k0] + (0.3 if e[k0] < 0.5 else -0.3), 0, 1)), 4)
        held.append(e)
        htimes.append(float(t % 1.0))
    return train, held, times, htimes


# ------------------------------------------------------------------------------- cameras

def _direction(yaw_deg: float, pitch_deg: float) -> np.ndarray:
    y, p = math.radians(yaw_deg), math.radians(pitch_deg)
    return np.array([math.sin(y) * math.cos(p), math.sin(p), math.cos(y) * math.cos(p)])


def _between(ang: np.ndarray, m: int, rng: np.random.Generator) -> np.ndarray:
    """``m`` distinct (yaw, pitch) positions between the cameras ``ang`` (K >= 2, 2).

    Candidates are the midpoints of each camera and its three nearest neighbours, kept when
    strictly inside the yaw and pitch range of ``ang`` (interpolation, never extrapolation);
    each pick is the candidate farthest from every camera and every earlier pick (ties broken
    by ``rng``). When the candidates run out, the midpoints between the picks and their
    neighbours are added.
    """
    if m == 0:
        return np.zeros((0, 2))
    lo, hi = ang.min(0), ang.max(0)

    def midpoints(pts: np.ndarray, first: int) -> np.ndarray:
        d = np.linalg.norm(pts[:, None] - pts[None], axis=-1)
        pairs = {(min(i, int(j)), max(i, int(j))) for i in range(first, len(pts))
                 for j in np.argsort(d[i], kind="stable")[1:4]}
        mids = np.array([(pts[i] + pts[j]) / 2 for i, j in sorted(pairs)]).reshape(-1, 2)
        mids = mids[np.all((mids > lo) & (mids < hi), axis=1)]
        return mids[rng.permutation(len(mids))]

    pool = midpoints(ang, 0)
    picked: list[np.ndarray] = []
    while len(picked) < m:
        near = np.concatenate([ang] + [p[None] for p in picked])
        if len(pool):
            gap = np.linalg.norm(pool[:, None] - near[None], axis=-1).min(1)
            pool = pool[gap > 1e-6]
        if not len(pool):
            pool = midpoints(near, 0)
            gap = np.linalg.norm(pool[:, None] - near[None], axis=-1).min(1)
            pool = pool[gap > 1e-6]
            if not len(pool):  # cannot happen with distinct cameras; keep the loop finite
                raise ValueError("cannot place the held-out views between the training views")
        gap = np.linalg.norm(pool[:, None] - near[None], axis=-1).min(1)
        k = int(np.argmax(gap))
        picked.append(pool[k])
        pool = np.delete(pool, k, axis=0)
    return np.stack(picked)


def rig_angles(rig: str, n_views: int, n_frames: int, n_test_views: int,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(train angles (K, 2), held-out angles (M, 2)) as (yaw, pitch) degrees.

    ``multiview``: K = n_views - M positions on a cap (a jittered Fibonacci spiral); the M held-out
    positions are midpoints between neighbouring training cameras, strictly inside the training
    cameras' yaw and pitch range. ``orbit``: K = n_frames positions along an arc, M above it.
    """
    if rig == "multiview":
        if n_views < 1 + n_test_views:
            raise ValueError(f"multiview needs more views ({n_views}) than held-out views ({n_test_views})")
        n_train = n_views - n_test_views
        if n_test_views and n_train < 2:
            raise ValueError(f"multiview needs at least 2 training views to place held-out views between "
                             f"them (views {n_views}, held-out {n_test_views})")
        k = np.arange(n_train)
        r = np.sqrt((k + 0.5) / n_train)
        th = k * math.pi * (3 - math.sqrt(5)) + rng.uniform(0, 2 * math.pi)
        yaw = 55.0 * r * np.cos(th) + rng.uniform(-3, 3, n_train)
        pitch = 5.0 + 20.0 * r * np.sin(th) + rng.uniform(-2, 2, n_train)
        ang = np.stack([yaw, pitch], 1)
        return ang, _between(ang, n_test_views, rng)
    if rig == "orbit":
        u = np.linspace(0, 1, n_frames) if n_frames > 1 else np.array([0.5])
        yaw = -70.0 + 140.0 * u
        pitch = 5.0 + 8.0 * np.sin(2 * np.pi * u + rng.uniform(0, 2 * np.pi))
        tu = (np.arange(n_test_views) + 0.5) / max(n_test_views, 1)
        tyaw = -50.0 + 100.0 * tu + rng.uniform(-5, 5, n_test_views)
        tpitch = np.full(n_test_views, 24.0)
        return np.stack([yaw, pitch], 1), np.stack([tyaw, tpitch], 1)
    raise ValueError(f"unknown rig {rig!r}; choose from {RIGS}")


# ------------------------------------------------------------------------------ appearance

def _value_noise_3d(points: np.ndarray, cell: float, rng: np.random.Generator, n: int = 24) -> np.ndarray:
    """Smooth noise in [0, 1] at ``points`` (N, 3): a random lattice of ``cell`` spacing
    (wrapping every ``n`` cells), smoothstep-interpolated."""
    grid = rng.random((n, n, n))
    q = points / cell + rng.uniform(0, n, 3)
    i0 = np.floor(q).astype(np.int64)
    f = q - i0
    f = f * f * (3 - 2 * f)
    out = np.zeros(len(points))
    for dx in (0, 1):
        for dy in (0, 1):
            for dz in (0, 1):
                w = (f[:, 0] if dx else 1 - f[:, 0]) * (f[:, 1] if dy else 1 - f[:, 1]) \
                    * (f[:, 2] if dz else 1 - f[:, 2])
                out += w * grid[(i0[:, 0] + dx) % n, (i0[:, 1] + dy) % n, (i0[:, 2] + dz) % n]
    return out


def _smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - e0) / (e1 - e0), 0, 1)
    return t * t * (3 - 2 * t)


def _polyline_distance(points: np.ndarray, line: np.ndarray, samples: int = 12) -> np.ndarray:
    """Distance (N,) from points (N, 3) to a polyline (L, 3), sampled ``samples`` per segment."""
    s = np.linspace(0, 1, samples, endpoint=False)[:, None]
    pts = np.concatenate([a + s * (b - a) for a, b in zip(line[:-1], line[1:])] + [line[-1:]])
    d = np.full(len(points), np.inf)
    for c in np.array_split(pts, max(1, len(pts) // 16)):
        d = np.minimum(d, np.linalg.norm(points[:, None] - c[None], axis=-1).min(1))
    return d


def _inside_polygon(p: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Even-odd rule: which points (N, 2) lie inside the closed polygon (L, 2)."""
    x, y = p[:, 0:1], p[:, 1:2]
    x0, y0 = poly[None, :-1, 0], poly[None, :-1, 1]
    x1, y1 = poly[None, 1:, 0], poly[None, 1:, 1]
    crosses = ((y0 > y) != (y1 > y)) & (x < x0 + (y - y0) * (x1 - x0) / np.where(y1 == y0, 1e-12, y1 - y0))
    return crosses.sum(1) % 2 == 1


def vertex_colours(face, neutral: np.ndarray, parts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(V, 4) uint8 sRGB + alpha vertex colours for the ICT head (see the module docstring)."""
    from .ict import PARTS

    V = len(neutral)
    faces = face.faces
    skin_tone = _SKIN_TONES[rng.integers(len(_SKIN_TONES))] * rng.uniform(0.95, 1.05, 3)
    iris = _IRIS_COLOURS[rng.integers(len(_IRIS_COLOURS))]
    hair = _HAIR_COLOURS[rng.integers(len(_HAIR_COLOURS))]
    n1 = _value_noise_3d(neutral, 0.03, rng)
    n2 = _value_noise_3d(neutral, 0.008, rng)
    n3 = _value_noise_3d(neutral, 0.05, rng)
    skin = skin_tone[None] * (0.86 + 0.18 * n1 + 0.08 * n2)[:, None]
    skin[:, 0] *= 1.0 + 0.06 * (n3 - 0.5)  # blotchy redness
    lm = face.landmarks()
    # lips: redder near the outer and inner lip contours
    outer = neutral[lm[np.r_[48:60, 48]]]
    d_lip = _polyline_distance(neutral, outer)
    inside = _inside_polygon(neutral[:, :2], outer[:, :2]) & (neutral[:, 2] > outer[:, 2].min() - 0.01)
    lip_w = np.maximum(1 - _smoothstep(0.0, 0.004, d_lip), inside.astype(np.float64)) * 0.55
    lip_col = skin_tone * np.array([0.85, 0.55, 0.58])
    skin = skin * (1 - lip_w[:, None]) + lip_col[None] * lip_w[:, None]
    # brows: dark along landmarks 17-21 and 22-26, lifted a little
    brow_w = np.zeros(V)
    for idx in (np.r_[17:22], np.r_[22:27]):
        line = neutral[lm[idx]] + np.array([0, 0.003, 0])
        d = _polyline_distance(neutral, line)
        brow_w = np.maximum(brow_w, 1 - _smoothstep(0.002, 0.006, d))
    brow_w *= 0.75 * (0.8 + 0.4 * n2)
    skin = skin * (1 - brow_w[:, None]) + hair[None] * brow_w[:, None]

    col = np.zeros((V, 3), np.float32)
    order = ["mouth_interior", "skin", "gums_tongue", "teeth", "sclera", "iris", "eyelashes"]
    for name in order:
        verts = np.unique(faces[parts == PARTS.index(name)])
        if name == "skin":
            col[verts] = skin[verts]
        elif name == "iris":
            pass  # the iris sphere sits inside the sclera sphere; both are coloured below
        elif name == "eyelashes":
            col[verts] = hair * 0.6
        else:
            col[verts] = np.asarray(_PART_COLOURS[name], np.float32) * (0.92 + 0.16 * n2[verts, None])
    # eyes: iris and pupil by the angle from each eyeball's forward axis (the model's sclera is a
    # whole sphere around the iris, meant to be see-through over the iris)
    eye = np.unique(faces[(parts == PARTS.index("sclera")) | (parts == PARTS.index("iris"))])
    for side in (-1, 1):
        vs = eye[np.sign(neutral[eye, 0]) == side]
        if not len(vs):
            continue
        c = neutral[vs].mean(0)
        axis = neutral[vs[np.argmax(neutral[vs, 2])]] - c
        axis /= np.linalg.norm(axis)
        rel = neutral[vs] - c
        cos = rel @ axis / (np.linalg.norm(rel, axis=1) + 1e-12)
        ring = _smoothstep(0.84, 0.88, cos)[:, None]
        col[vs] = col[vs] * (1 - ring) + (iris * (0.75 + 0.5 * n2[vs, None])) * ring
        col[vs[cos > 0.97]] = (12, 10, 10)
    rgba = np.concatenate([np.clip(col, 0, 255), np.full((V, 1), 255.0)], 1)
    return (rgba + 0.5).astype(np.uint8)


# ----------------------------------------------------------------------------------- capture

@dataclass(frozen=True)
class SynthHead:
    """A posable, coloured ICT head ready to render: build once, mesh per expression."""

    face: object
    base: np.ndarray
    faces: np.ndarray
    colours: np.ndarray
    centre: np.ndarray
    radius: float
    identity_weights: np.ndarray

    @staticmethod
    def build(identity: str | np.ndarray | None, seed: int, face=None) -> "SynthHead":
        from .ict import PARTS, IctFace

        face = face or IctFace()
        rng = np.random.default_rng(seed)
        id_rng, col_rng = (np.random.default_rng(s) for s in rng.integers(0, 2**63, 2))
        ident = face.random_identity(id_rng) if identity is None else identity
        base = face.identity_vertices(ident)
        parts = face.triangle_parts()
        colours = vertex_colours(face, base, parts, col_rng)
        keep = (parts != PARTS.index("overlay")) & (parts != PARTS.index("eyelashes"))
        faces = face.faces[keep]
        used = np.unique(faces)
        lo, hi = base[used].min(0), base[used].max(0)
        centre = 0.5 * (lo + hi)
        radius = float(np.linalg.norm(base[used] - centre, axis=1).max())
        return SynthHead(face=face, base=base, faces=faces, colours=colours,
                         centre=centre.astype(np.float64), radius=radius,
                         identity_weights=face.identity_weights(ident))

    def trimesh(self, expression: Mapping[str, float]):
        from .._deps import require

        trimesh = require("trimesh")
        v, _ = self.face.mesh(expression=expression, base=self.base)
        return trimesh.Trimesh(vertices=v, faces=self.faces, vertex_colors=self.colours, process=False)


def _camera(head: SynthHead, yaw: float, pitch: float, size: int):
    from ..body.render import Camera, look_at

    f = 0.5 * size / math.tan(math.radians(FOV_DEG) / 2)
    half = math.atan(FILL * math.tan(math.radians(FOV_DEG) / 2))
    dist = head.radius / math.sin(half)
    eye = head.centre + dist * _direction(yaw, pitch)
    R, t = look_at(eye, head.centre)
    return Camera(width=size, height=size, fx=f, fy=f, cx=size / 2, cy=size / 2, R=R, t=t, z_center=dist)


def _lighting(camera, light_world: np.ndarray, ambient: float, intensity: float):
    """render.Lighting whose light (given in the view frame) is ``light_world`` in the world."""
    from ..body.render import Light, Lighting

    d_view = np.diag([1.0, -1.0, -1.0]) @ camera.R @ light_world
    return Lighting(lights=(Light(direction=tuple(float(x) for x in d_view), intensity=intensity),),
                    ambient=ambient, ground=0.6)


def _check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"output {out} exists and is not an empty folder")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"cannot write {out}: folder {out.parent} does not exist")


def synth_capture(out: Path | str, *, identity: str | Sequence[float] | None = "identity003",
                  n_views: int = 8, n_frames: int = 12, size: int = 128, sequence: str = "talking",
                  rig: str = "multiview", seed: int = 0, n_test_views: int | None = None,
                  n_test_expressions: int | None = None, supersample: int = 2,
                  face_model_path: Path | str | None = None, progress: bool = False) -> Capture:
    """Render a synthetic head capture into the new folder ``out`` (see the module docstring).

    ``identity``: an ICT identity name, PCA weights, or None for random weights from ``seed``.
    The folder is written whole or not at all (built next to ``out``, then renamed). Returns the
    capture as :func:`reconstruct.head.data.load_capture` would read it.
    """
    from .._deps import require
    from ..body.render import prepare, render
    from .ict import IctFace

    out = Path(out)
    if sequence not in SEQUENCES:
        raise ValueError(f"unknown sequence {sequence!r}; choose from {SEQUENCES}")
    if rig not in RIGS:
        raise ValueError(f"unknown rig {rig!r}; choose from {RIGS}")
    for name, v, lo in (("n_views", n_views, 1), ("n_frames", n_frames, 1), ("size", size, 8),
                        ("supersample", supersample, 1)):
        if int(v) != v or v < lo:
            raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
    n_test_views = max(1, n_views // 4) if n_test_views is None else int(n_test_views)
    n_test_expressions = max(1, n_frames // 4) if n_test_expressions is None else int(n_test_expressions)
    if n_test_views < 0 or n_test_expressions < 0:
        raise ValueError("n_test_views and n_test_expressions must be >= 0")
    _check_out(out)
    require("open3d")
    face = IctFace(face_model_path)
    if isinstance(identity, str):
        face.identity_weights(identity)  # unknown names fail before anything is written
    elif identity is not None:
        identity = np.asarray(identity, np.float32)

    rng = np.random.default_rng(seed)
    head_seed, seq_seed, rig_seed, light_seed = (int(s) for s in rng.integers(0, 2**63, 4))
    head = SynthHead.build(identity, head_seed, face)
    train_e, held_e, train_t, held_t = expression_sequence(sequence, n_frames, n_test_expressions, seq_seed)
    train_ang, test_ang = rig_angles(rig, n_views, n_frames, n_test_views, np.random.default_rng(rig_seed))
    lrng = np.random.default_rng(light_seed)
    az, el = math.radians(lrng.uniform(-45, 45)), math.radians(lrng.uniform(15, 45))
    light_dir = np.array([math.sin(az) * math.cos(el), math.sin(el), math.cos(az) * math.cos(el)])
    ambient, intensity = float(lrng.uniform(0.25, 0.4)), 0.75

    # (expression index into train_e + held_e, camera index into train_ang + test_ang, split)
    n_tr_cam = len(train_ang)
    jobs: list[tuple[int, int, str]] = []
    if rig == "multiview":
        for k in range(n_frames):
            jobs += [(k, c, "train") for c in range(n_tr_cam)]
        for k in range(n_frames):
            jobs += [(k, n_tr_cam + c, "test_view") for c in range(len(test_ang))]
        for j in range(len(held_e)):
            jobs += [(n_frames + j, c, "test_expression") for c in range(n_tr_cam)]
    else:
        jobs += [(k, k, "train") for k in range(n_frames)]
        for c in range(len(test_ang)):  # a training expression, spread over the sequence
            k = int(round(c * (n_frames - 1) / (len(test_ang) - 1))) if len(test_ang) > 1 else n_frames // 2
            jobs.append((k, n_tr_cam + c, "test_view"))
        for j in range(len(held_e)):
            k = min(n_frames - 1, int(held_t[j] * n_frames))
            jobs.append((n_frames + j, k, "test_expression"))

    exprs, times = train_e + held_e, train_t + held_t
    angles = np.concatenate([train_ang, test_ang]) if len(test_ang) else train_ang
    cams = [_camera(head, float(a[0]), float(a[1]), int(size)) for a in angles]
    intr = Intrinsics(fl_x=cams[0].fx, fl_y=cams[0].fy, cx=cams[0].cx, cy=cams[0].cy, w=int(size), h=int(size))

    _check_out(out)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        (tmp / "images").mkdir()
        (tmp / "masks").mkdir()
        frames: list[Frame] = []
        by_expr: dict[int, list[int]] = {}
        for n, (e, _, _) in enumerate(jobs):
            by_expr.setdefault(e, []).append(n)
        bar = _progress(len(jobs), progress)
        for e, job_ids in by_expr.items():
            scene = prepare(head.trimesh(exprs[e]))
            for n in job_ids:
                cam = cams[jobs[n][1]]
                r = render(scene, cam, light=_lighting(cam, light_dir, ambient, intensity),
                           background=(0, 0, 0), supersample=int(supersample))
                save_png(tmp / "images" / f"{n:04d}.png", r.rgb)
                save_png(tmp / "masks" / f"{n:04d}.png", r.mask)
                bar.update(1)
        bar.close()
        for n, (e, c, split) in enumerate(jobs):
            cam = cams[c]
            frames.append(Frame(file_path=f"images/{n:04d}.png", mask_path=f"masks/{n:04d}.png",
                                transform_matrix=opencv_to_c2w(cam.R, cam.t), intrinsics=intr,
                                expression=dict(exprs[e]), split=split,
                                extra={"time": round(float(times[e]), 6), "camera_id": int(c),
                                       "expression_id": int(e)}))
        lo = head.centre - head.radius
        hi = head.centre + head.radius
        ident_meta = identity if isinstance(identity, str) else \
            [round(float(x), 6) for x in head.identity_weights]
        meta = {"version": 1, "generator": "reconstruct.head.synth", "face_model": "ICT-FaceKit Light (MIT)",
                "units": "metres", "identity": ident_meta, "sequence": sequence, "rig": rig,
                "seed": int(seed), "size": int(size), "supersample": int(supersample),
                "head_centre": [float(x) for x in head.centre], "head_radius": head.radius,
                "scene_box": [[float(x) for x in lo], [float(x) for x in hi]],
                "light": {"direction": [float(x) for x in light_dir], "ambient": ambient,
                          "intensity": intensity},
                "background": [0, 0, 0]}
        cap = Capture(root=tmp, frames=frames, expression_names=face.expression_names,
                      extra={"dhstudio": meta})
        write_transforms(tmp / "transforms.json", cap)
        if out.exists():
            out.rmdir()  # empty (checked above)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    cap.root = out
    return cap


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, enabled: bool):
    if not enabled:
        return _NoBar()
    try:
        from tqdm import tqdm
    except ImportError:
        return _NoBar()
    return tqdm(total=total, desc="synth", unit="img")


# ---------------------------------------------------------------------------------------- CLI

def build_parser(prog: str = "dhstudio head synth") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Render a synthetic head capture "
                                "(nerfstudio transforms.json + images + masks) from the ICT face model.")
    p.add_argument("--out", required=True, type=Path, help="new (or empty) output folder")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--identity", default="identity003", help="ICT identity name (default identity003)")
    g.add_argument("--random-identity", action="store_true", help="random identity weights from --seed")
    p.add_argument("--views", type=int, default=8, help="camera positions (multiview rig)")
    p.add_argument("--frames", type=int, default=12, help="training expression frames")
    p.add_argument("--size", type=int, default=128, help="image width and height in pixels")
    p.add_argument("--sequence", choices=SEQUENCES, default="talking")
    p.add_argument("--rig", choices=RIGS, default="multiview")
    p.add_argument("--test-views", type=int, default=None, help="held-out camera positions")
    p.add_argument("--test-expressions", type=int, default=None, help="held-out expression frames")
    p.add_argument("--supersample", type=int, default=2, help="rays per pixel along each axis")
    p.add_argument("--face-model", type=Path, default=None, help="folder or .npz of the ICT face model")
    p.add_argument("--seed", type=int, default=0)
    return p


def main_synth(argv: Sequence[str] | None = None) -> int:
    """``dhstudio head synth``: returns the exit code; user errors are one line on stderr."""
    from .._deps import MissingExtra
    from .ict import IctFaceMissing

    args = build_parser().parse_args(argv)
    try:
        cap = synth_capture(args.out, identity=None if args.random_identity else args.identity,
                            n_views=args.views, n_frames=args.frames, size=args.size,
                            sequence=args.sequence, rig=args.rig, seed=args.seed,
                            n_test_views=args.test_views, n_test_expressions=args.test_expressions,
                            supersample=args.supersample, face_model_path=args.face_model, progress=True)
    except (ValueError, FileExistsError, FileNotFoundError, IctFaceMissing, MissingExtra) as e:
        print(f"dhstudio: error: {e}", file=sys.stderr)
        return 2
    counts = {s: len(cap.indices(s)) for s in ("train", "test_view", "test_expression")}
    print(f"wrote {len(cap)} images to {cap.root} ({', '.join(f'{k} {v}' for k, v in counts.items())})")
    return 0


if __name__ == "__main__":
    sys.exit(main_synth())
