"""Head captures on disk: nerfstudio's ``transforms.json``, read, checked and written.

A capture folder holds images, optional masks and one ``transforms.json`` that nerfstudio's own
``nerfstudio-data`` parser reads unchanged (``ns-train nerfacto --data DIR``). The format:

- intrinsics ``camera_model`` (``"PINHOLE"`` or ``"OPENCV"``), ``fl_x``, ``fl_y``, ``cx``, ``cy``
  (pixels), ``w``, ``h`` and the optional distortion ``k1 k2 k3 k4 p1 p2``, at the top level
  (shared by every frame) or in each frame. As in nerfstudio, a top-level key wins over a
  frame's; the distortion is taken from the top level when any of ``k1 k2 k3 p1 p2`` is there;
- ``frames``: one object per image with ``file_path`` (relative to the json's folder),
  ``transform_matrix`` (4x4 camera-to-world, OpenGL convention: the camera looks down its
  -Z, +Y is up in the image, +X right) and an optional ``mask_path`` (one channel, 0 = ignore);
- splits as nerfstudio reads them: the top-level lists ``train_filenames``, ``val_filenames``
  and ``test_filenames`` of ``file_path`` values (nerfstudio's ``Nerfstudio`` data parser,
  ``nerfstudio/data/dataparsers/nerfstudio_dataparser.py``: when any of the three lists is
  present it uses ``{split}_filenames`` and requires the list of every split it is asked for).

Our additions, which other tools ignore:

- per frame ``expression``: ``{name: weight}`` blendshape coefficients (ICT-FaceKit / ARKit
  names, see :mod:`reconstruct.head.ict`), and ``split``: one of ``train``, ``test_view``
  (a camera never used in training), ``test_expression`` (coefficients never used in
  training), or ``val`` / ``test`` when only nerfstudio's lists say so;
- top level ``expression_names``: the names a frame may use; ``dhstudio``: generator metadata.

Unknown keys are kept (``Frame.extra``, ``Capture.extra``) and written back.

Rays (:meth:`Capture.rays`): the centre of pixel (row i, column j) is at ``(u, v) = (j + 0.5,
i + 0.5)``; its camera-frame direction is ``((u - cx) / fx, -(v - cy) / fy, -1)`` (after
undistortion for ``OPENCV``), rotated to world by the camera-to-world matrix.

Example::

    cap = load_capture("capture/transforms.json", known_expressions=IctFace().expression_names)
    rgb = cap.image(0)                 # (H, W, 3) float32 in [0, 1]
    origins, dirs = cap.rays(0)        # (H, W, 3) float32 each, unit directions
    train = cap.indices("train")
"""

from __future__ import annotations

import difflib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Iterable, Sequence

import numpy as np
from scipy import ndimage

from .._io import write_bytes_atomic

SCHEMA_VERSION = 1
CAMERA_MODELS = ("PINHOLE", "OPENCV")
SPLITS = ("train", "test_view", "test_expression", "val", "test", "unused")
"""Per-frame split names. ``unused``: nerfstudio's lists are given and name the frame in none."""
NERFSTUDIO_SPLIT_KEYS = ("train_filenames", "val_filenames", "test_filenames")
DISTORTION_KEYS = ("k1", "k2", "k3", "k4", "p1", "p2")
_INTRINSIC_KEYS = ("fl_x", "fl_y", "cx", "cy", "w", "h")
_FRAME_KEYS = {"file_path", "transform_matrix", "mask_path", "expression", "split",
               "camera_model", *_INTRINSIC_KEYS, *DISTORTION_KEYS}
_TOP_KEYS = {"frames", "camera_model", "expression_names", *_INTRINSIC_KEYS, *DISTORTION_KEYS,
             *NERFSTUDIO_SPLIT_KEYS}


class CaptureError(ValueError):
    """A capture folder or its ``transforms.json`` is malformed; the message is one line naming
    the file, the frame and the key."""


# ------------------------------------------------------------------------------ data classes

@dataclass(frozen=True)
class Intrinsics:
    """A pinhole camera with optional OpenCV distortion (nerfstudio's keys and meaning)."""

    fl_x: float
    """Focal length along u in pixels."""
    fl_y: float
    """Focal length along v in pixels."""
    cx: float
    """Principal point u in pixels (``w / 2`` is the image centre)."""
    cy: float
    """Principal point v in pixels (``h / 2`` is the image centre)."""
    w: int
    """Image width in pixels."""
    h: int
    """Image height in pixels."""
    camera_model: str = "PINHOLE"
    """``"PINHOLE"`` (no distortion) or ``"OPENCV"`` (k1, k2, k3, p1, p2; k4 must be 0)."""
    k1: float = 0.0
    k2: float = 0.0
    k3: float = 0.0
    k4: float = 0.0
    p1: float = 0.0
    p2: float = 0.0

    def to_json(self) -> dict:
        d = {"camera_model": self.camera_model, "fl_x": self.fl_x, "fl_y": self.fl_y,
             "cx": self.cx, "cy": self.cy, "w": self.w, "h": self.h}
        if self.camera_model == "OPENCV":
            d.update({k: getattr(self, k) for k in DISTORTION_KEYS})
        return d

    @property
    def distorted(self) -> bool:
        return self.camera_model == "OPENCV" and any(getattr(self, k) != 0 for k in DISTORTION_KEYS)


@dataclass
class Frame:
    """One image of a capture."""

    file_path: str
    """Image path relative to the json's folder, with forward slashes."""
    transform_matrix: np.ndarray
    """(4, 4) float64 camera-to-world, OpenGL convention (camera looks down -Z, +Y up)."""
    intrinsics: Intrinsics
    mask_path: str | None = None
    """Mask path relative to the json's folder (one channel, 0 = ignore), or None."""
    expression: dict[str, float] | None = None
    """Blendshape coefficients ``{name: weight}``; None when the capture has none."""
    split: str = "train"
    """One of :data:`SPLITS`."""
    extra: dict = field(default_factory=dict)
    """Other keys of the frame's JSON object, kept as they are (e.g. ``time``)."""

    @property
    def c2w(self) -> np.ndarray:
        return self.transform_matrix


@dataclass
class Capture:
    """A loaded capture: the folder, its frames and the top-level extras."""

    root: Path
    """The folder that ``file_path`` and ``mask_path`` are relative to."""
    frames: list[Frame]
    expression_names: tuple[str, ...] | None = None
    """Names a frame's ``expression`` may use (None: not declared)."""
    extra: dict = field(default_factory=dict)
    """Other top-level keys, kept as they are (e.g. ``dhstudio`` metadata)."""

    def __len__(self) -> int:
        return len(self.frames)

    def indices(self, split: str | Iterable[str]) -> list[int]:
        """Indices of the frames in ``split`` (a name or several)."""
        names = {split} if isinstance(split, str) else set(split)
        bad = names - set(SPLITS)
        if bad:
            raise ValueError(f"unknown split {sorted(bad)}; choose from {SPLITS}")
        return [i for i, f in enumerate(self.frames) if f.split in names]

    def image_path(self, i: int) -> Path:
        return self.root / self.frames[i].file_path

    def mask_path(self, i: int) -> Path | None:
        m = self.frames[i].mask_path
        return None if m is None else self.root / m

    def image(self, i: int) -> np.ndarray:
        """(H, W, 3) float32 RGB in [0, 1] (an alpha channel is dropped, not composited)."""
        return load_image(self.image_path(i))

    def mask(self, i: int) -> np.ndarray | None:
        """(H, W) bool, True where the pixel counts (mask value > 0), or None without a mask."""
        p = self.mask_path(i)
        return None if p is None else load_mask(p)

    def rays(self, i: int, *, normalize: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """World-space ray origins and directions (H, W, 3) float32 for every pixel of frame i."""
        f = self.frames[i]
        return camera_rays(f.intrinsics, f.transform_matrix, normalize=normalize)

    def expression_matrix(self, names: Sequence[str] | None = None,
                          frames: Sequence[int] | None = None) -> np.ndarray:
        """(F, E) float32 coefficients of ``frames`` (default: all) in the order of ``names``
        (default: ``expression_names``); a name a frame does not give is 0. A frame giving a
        non-zero weight to a name outside ``names`` is an error (a zero weight is nothing)."""
        names = list(names if names is not None else (self.expression_names or ()))
        idx = list(range(len(self.frames))) if frames is None else [int(i) for i in frames]
        out = np.zeros((len(idx), len(names)), np.float32)
        col = {n: k for k, n in enumerate(names)}
        for row, i in enumerate(idx):
            f = self.frames[i]
            for n, w in (f.expression or {}).items():
                if n not in col:
                    if w == 0:
                        continue
                    raise CaptureError(f"frame {i} ({f.file_path}): expression name {n!r} is not in "
                                       f"the requested names")
                out[row, col[n]] = w
        return out


# ------------------------------------------------------------------------------------- rays

def _undistort(x: np.ndarray, y: np.ndarray, k: Intrinsics, iters: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Invert OpenCV's radial (k1, k2, k3) + tangential (p1, p2) model on normalised image
    coordinates (OpenCV axes, y down) by fixed-point iteration."""
    xu, yu = x.copy(), y.copy()
    for _ in range(iters):
        r2 = xu * xu + yu * yu
        radial = 1 + r2 * (k.k1 + r2 * (k.k2 + r2 * k.k3))
        dx = 2 * k.p1 * xu * yu + k.p2 * (r2 + 2 * xu * xu)
        dy = k.p1 * (r2 + 2 * yu * yu) + 2 * k.p2 * xu * yu
        xu, yu = (x - dx) / radial, (y - dy) / radial
    return xu, yu


def camera_rays(intrinsics: Intrinsics, c2w: np.ndarray, *,
                normalize: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Origins and directions (H, W, 3) float32 in world coordinates, one ray per pixel centre.

    ``c2w`` (4, 4) or (3, 4) is camera-to-world in the OpenGL convention. With ``normalize``
    False the directions have camera-frame z = -1 (so the ray parameter is the depth).
    """
    k = intrinsics
    c2w = np.asarray(c2w, np.float64)
    j, i = np.meshgrid(np.arange(k.w, dtype=np.float64) + 0.5, np.arange(k.h, dtype=np.float64) + 0.5)
    x, y = (j - k.cx) / k.fl_x, (i - k.cy) / k.fl_y  # OpenCV axes: y down, z forward
    if k.distorted:
        x, y = _undistort(x, y, k)
    d_cam = np.stack([x, -y, -np.ones_like(x)], -1)  # OpenGL axes: y up, looking down -z
    d = d_cam @ c2w[:3, :3].T
    if normalize:
        d /= np.linalg.norm(d, axis=-1, keepdims=True)
    o = np.broadcast_to(c2w[:3, 3], d.shape)
    return np.ascontiguousarray(o, np.float32), d.astype(np.float32)


def opencv_to_c2w(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """(4, 4) OpenGL camera-to-world from an OpenCV world-to-camera ``X_cam = R X + t``
    (x right, y down, z forward), e.g. :class:`reconstruct.body.render.Camera`'s ``R, t``."""
    R, t = np.asarray(R, np.float64).reshape(3, 3), np.asarray(t, np.float64).reshape(3)
    c2w = np.eye(4)
    c2w[:3, :3] = R.T @ np.diag([1.0, -1.0, -1.0])
    c2w[:3, 3] = -R.T @ t
    return c2w


# ----------------------------------------------------------------------------------- images

def _open_image(path: Path):
    from PIL import Image

    return Image.open(path)


def load_image(path: Path | str) -> np.ndarray:
    """(H, W, 3) float32 RGB in [0, 1]; 16-bit images keep their precision."""
    with _open_image(Path(path)) as im:
        if im.mode in ("I;16", "I;16B", "I"):
            a = np.asarray(im, np.float32) / 65535.0
            return np.repeat(a[..., None], 3, -1)
        return np.asarray(im.convert("RGB"), np.float32) / 255.0


def load_mask(path: Path | str) -> np.ndarray:
    """(H, W) bool: True where the mask is non-zero (nerfstudio's meaning: 0 = ignore)."""
    with _open_image(Path(path)) as im:
        a = np.asarray(im)
    if a.ndim == 3:
        a = a[..., 0]
    return a > 0


def visual_hull(cap: "Capture", idx: Sequence[int], box, resolution: int, *,
                margin_px: float = 2.0, min_views: int = 2) -> np.ndarray | None:
    """The cells of a ``resolution^3`` grid over ``box`` ((2, 3): min, max corners) that the masks
    of frames ``idx`` allow: (resolution^3,) bool, flat index ``(i * r + j) * r + k`` along x, y, z
    (:class:`reconstruct.head.render.OccupancyGrid`'s layout); None when a frame has no mask.

    Silhouette carving: frames seen from one camera (same pose and intrinsics: one rig camera
    over several expressions) are merged first, their masks OR-ed, so an open jaw seen in one
    frame is kept; a cell is carved when its centre projects inside some camera's image onto a
    pixel that no mask of that camera covers. A cell projecting outside an image (or behind the
    camera) is not carved by it; a cell seen by fewer than ``min_views`` cameras (or all of them,
    when there are fewer) is carved: one camera cannot tell where along its rays such a cell's
    content lies, and the field grows floaters there that views between the cameras show (a
    900 s run lost 3.3 dB on held-out views to one; nerfacc's ``mark_invisible_cells`` is the
    ``min_views=1`` case). A cell stays when its centre projects within ``margin_px`` pixels
    plus its own projected half-diagonal of the silhouette (a distance transform of the mask), so
    a cell partly inside the silhouette stays. Distortion is ignored (the margin
    covers mild lens distortion). The masks must be silhouettes (the synthetic captures'), not
    nerfstudio's "pixels to ignore".
    """
    if any(cap.frames[i].mask_path is None for i in idx) or not len(idx):
        return None
    box = np.asarray(box, np.float64).reshape(2, 3)
    r = int(resolution)
    ax = [box[0, a] + (np.arange(r) + 0.5) / r * (box[1, a] - box[0, a]) for a in range(3)]
    gx, gy, gz = np.meshgrid(*ax, indexing="ij")
    pts = np.stack([gx.ravel(), gy.ravel(), gz.ravel()], -1)
    half_diag = 0.5 * float(np.linalg.norm((box[1] - box[0]) / r))
    cams: dict[bytes, list[int]] = {}
    for i in idx:
        f = cap.frames[i]
        key = np.round(f.transform_matrix, 6).tobytes() + repr(f.intrinsics.to_json()).encode()
        cams.setdefault(key, []).append(i)
    keep = np.ones(pts.shape[0], bool)
    seen = np.zeros(pts.shape[0], np.int32)
    for frames in cams.values():
        f = cap.frames[frames[0]]
        k = f.intrinsics
        union = np.zeros((k.h, k.w), bool)
        for i in frames:
            m = cap.mask(i)
            if m.shape != (k.h, k.w):
                raise CaptureError(f"mask of frame {i} is {m.shape[1]}x{m.shape[0]}, its image {k.w}x{k.h}")
            union |= m
        c2w = np.asarray(f.transform_matrix, np.float64)
        xc = (pts - c2w[:3, 3]) @ c2w[:3, :3]  # camera frame, OpenGL axes: looking down -z
        depth = -xc[:, 2]
        front = depth > 1e-9
        z = np.where(front, depth, 1.0)
        u = k.cx + k.fl_x * xc[:, 0] / z
        v = k.cy - k.fl_y * xc[:, 1] / z
        inside = front & (u >= 0) & (u < k.w) & (v >= 0) & (v < k.h)
        seen += inside
        if not inside.any():
            continue
        # distance (pixels) from each pixel to the nearest mask pixel; a cell stays when its centre
        # lies within its own projected half-diagonal (+ margin) of the silhouette
        dist = ndimage.distance_transform_edt(~union) if union.any() else np.full(union.shape, np.inf)
        ii = np.nonzero(inside)[0]
        ui = np.clip(u[ii].astype(np.int64), 0, k.w - 1)
        vi = np.clip(v[ii].astype(np.int64), 0, k.h - 1)
        reach = margin_px + half_diag * max(k.fl_x, k.fl_y) / z[ii]
        keep[ii] &= dist[vi, ui] <= reach
    # cells (almost) no camera sees are carved too: see the docstring
    return keep & (seen >= min(min_views, len(cams)))


# ---------------------------------------------------------------------------------- reading

def _finite_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


class _Ctx:
    """Builds one-line error messages that name the file and the frame."""

    def __init__(self, json_path: Path):
        self.path = json_path

    def error(self, msg: str, frame: int | None = None, file_path: str | None = None) -> CaptureError:
        where = "" if frame is None else f" frame {frame}" + (f" ({file_path})" if file_path else "")
        return CaptureError(f"{self.path}:{where}: {msg}" if where else f"{self.path}: {msg}")


def _intrinsics(meta: dict, frame: dict, i: int, fp: str, ctx: _Ctx) -> Intrinsics:
    vals: dict = {}
    for key in _INTRINSIC_KEYS:
        src = meta if key in meta else frame
        if key not in src:
            raise ctx.error(f"key {key!r} is missing (give it at the top level or in every frame)", i, fp)
        v = src[key]
        if not _finite_number(v) or v <= 0:
            raise ctx.error(f"key {key!r} must be a positive finite number, got {v!r}", i, fp)
        if key in ("w", "h"):
            if float(v) != int(v):
                raise ctx.error(f"key {key!r} must be a whole number of pixels, got {v!r}", i, fp)
            v = int(v)
        vals[key] = float(v) if key not in ("w", "h") else v
    model = meta.get("camera_model", frame.get("camera_model", "OPENCV" if any(
        k in meta or k in frame for k in DISTORTION_KEYS) else "PINHOLE"))
    if model == "SIMPLE_PINHOLE":
        model = "PINHOLE"
    if model not in CAMERA_MODELS:
        raise ctx.error(f"key 'camera_model' must be one of {CAMERA_MODELS}, got {model!r}", i, fp)
    dsrc = meta if any(k in meta for k in ("k1", "k2", "k3", "p1", "p2")) else frame
    for key in DISTORTION_KEYS:
        v = dsrc.get(key, 0.0)
        if not _finite_number(v):
            raise ctx.error(f"key {key!r} must be a finite number, got {v!r}", i, fp)
        vals[key] = float(v)
    if model == "PINHOLE" and any(vals[k] != 0 for k in DISTORTION_KEYS):
        raise ctx.error("camera_model 'PINHOLE' has non-zero distortion (use 'OPENCV')", i, fp)
    if vals["k4"] != 0:
        raise ctx.error("key 'k4' is a fisheye coefficient; OPENCV_FISHEYE is not supported", i, fp)
    return Intrinsics(camera_model=model, **vals)


def _matrix(frame: dict, i: int, fp: str, ctx: _Ctx) -> np.ndarray:
    if "transform_matrix" not in frame:
        raise ctx.error("key 'transform_matrix' is missing", i, fp)
    raw = frame["transform_matrix"]
    try:
        m = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError):
        raise ctx.error("key 'transform_matrix' must be a 4x4 list of numbers", i, fp) from None
    if m.shape != (4, 4):
        raise ctx.error(f"key 'transform_matrix' must be 4x4, got shape {m.shape}", i, fp)
    if not np.isfinite(m).all():
        raise ctx.error("key 'transform_matrix' has a non-finite value (NaN or inf)", i, fp)
    if not np.allclose(m[3], [0, 0, 0, 1], atol=1e-6):
        raise ctx.error(f"key 'transform_matrix' must have last row [0, 0, 0, 1], got {m[3].tolist()}", i, fp)
    det = np.linalg.det(m[:3, :3])
    if not det > 1e-9:
        raise ctx.error(f"key 'transform_matrix' rotation part is singular or mirrored (det {det:.3g})", i, fp)
    return m


def _relpath(frame: dict, key: str, i: int, fp: str | None, ctx: _Ctx) -> str:
    v = frame[key]
    if not isinstance(v, str) or not v:
        raise ctx.error(f"key {key!r} must be a non-empty string, got {v!r}", i, fp)
    return v


def name_hint(name: str, valid: Sequence[str]) -> str:
    """The tail of an unknown-name error: the closest valid names, or the first few of them."""
    valid = [str(v) for v in valid]
    close = difflib.get_close_matches(str(name), valid, n=3)
    if close:
        return "did you mean " + ", ".join(close) + "?"
    more = f", ... ({len(valid)} in all)" if len(valid) > 6 else ""
    return "valid names include " + ", ".join(valid[:6]) + more


def _expression(frame: dict, i: int, fp: str, known: Sequence[str] | None, ctx: _Ctx) -> dict | None:
    if "expression" not in frame or frame["expression"] is None:
        return None
    e = frame["expression"]
    if not isinstance(e, dict):
        raise ctx.error(f"key 'expression' must be an object {{name: weight}}, got {type(e).__name__}", i, fp)
    out: dict[str, float] = {}
    known_set = set(known) if known is not None else None
    for name, w in e.items():
        if known_set is not None and name not in known_set:
            raise ctx.error(f"key 'expression': unknown name {name!r}; {name_hint(name, known)}", i, fp)
        if not _finite_number(w):
            raise ctx.error(f"key 'expression': weight of {name!r} must be a finite number, got {w!r}", i, fp)
        out[name] = float(w)
    return out


def _image_size(path: Path) -> tuple[int, int]:
    with _open_image(path) as im:
        return im.size  # (w, h)


def load_capture(path: Path | str, *, known_expressions: Sequence[str] | None = None,
                 check_files: bool = True) -> Capture:
    """Read and check a capture: ``path`` is the folder or its ``transforms.json``.

    ``known_expressions`` (default: the file's ``expression_names``, if any) are the names a
    frame's ``expression`` may use. ``check_files`` opens every image and mask header to check
    that it exists and has the declared size. Any problem raises :class:`CaptureError` with one
    line that names the file, the frame and the key.
    """
    path = Path(path)
    json_path = path / "transforms.json" if path.is_dir() else path
    ctx = _Ctx(json_path)
    if not json_path.is_file():
        raise CaptureError(f"{json_path}: capture file does not exist")
    try:
        meta = json.loads(json_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CaptureError(f"{json_path}: not valid JSON ({e})") from None
    if not isinstance(meta, dict):
        raise ctx.error(f"top level must be a JSON object, got {type(meta).__name__}")
    if "frames" not in meta:
        raise ctx.error("key 'frames' is missing")
    if not isinstance(meta["frames"], list) or not meta["frames"]:
        raise ctx.error("key 'frames' must be a non-empty list")
    root = json_path.parent

    names = meta.get("expression_names")
    if names is not None:
        if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
            raise ctx.error("key 'expression_names' must be a list of strings")
        names = tuple(names)
    known = tuple(known_expressions) if known_expressions is not None else names

    split_lists: dict[str, set[str]] = {}
    for key in NERFSTUDIO_SPLIT_KEYS:
        if key in meta:
            v = meta[key]
            if not (isinstance(v, list) and all(isinstance(x, str) for x in v)):
                raise ctx.error(f"key {key!r} must be a list of file paths")
            split_lists[key] = {str(PurePosixPath(x)) for x in v}

    frames: list[Frame] = []
    seen: dict[str, int] = {}
    for i, fr in enumerate(meta["frames"]):
        if not isinstance(fr, dict):
            raise ctx.error(f"must be a JSON object, got {type(fr).__name__}", i)
        if "file_path" not in fr:
            raise ctx.error("key 'file_path' is missing", i)
        fp = _relpath(fr, "file_path", i, None, ctx)
        norm = str(PurePosixPath(fp))
        if norm in seen:
            raise ctx.error(f"key 'file_path' repeats frame {seen[norm]}'s", i, fp)
        seen[norm] = i
        c2w = _matrix(fr, i, fp, ctx)
        intr = _intrinsics(meta, fr, i, fp, ctx)
        mask = _relpath(fr, "mask_path", i, fp, ctx) if fr.get("mask_path") is not None else None
        expr = _expression(fr, i, fp, known, ctx)
        split = _frame_split(fr, norm, split_lists, i, fp, ctx)
        if check_files:
            _check_file(root / fp, "file_path", intr, i, fp, ctx)
            if mask is not None:
                _check_file(root / mask, "mask_path", intr, i, fp, ctx)
        extra = {k: v for k, v in fr.items() if k not in _FRAME_KEYS}
        frames.append(Frame(file_path=fp, transform_matrix=c2w, intrinsics=intr, mask_path=mask,
                            expression=expr, split=split, extra=extra))

    with_mask = [i for i, f in enumerate(frames) if f.mask_path is not None]
    if with_mask and len(with_mask) != len(frames):
        i = next(i for i, f in enumerate(frames) if f.mask_path is None)
        raise ctx.error("key 'mask_path' is missing; give it in every frame or in none "
                        "(nerfstudio's rule)", i, frames[i].file_path)
    for key, listed in split_lists.items():
        missing = listed - set(seen)
        if missing:
            raise ctx.error(f"key {key!r} names files that no frame has: {sorted(missing)[:3]}")
    extra = {k: v for k, v in meta.items() if k not in _TOP_KEYS}
    return Capture(root=root, frames=frames, expression_names=names, extra=extra)


def _frame_split(fr: dict, norm: str, lists: dict[str, set[str]], i: int, fp: str, ctx: _Ctx) -> str:
    from_lists = None
    if lists:
        if norm in lists.get("train_filenames", ()):
            from_lists = "train"
        elif norm in lists.get("test_filenames", ()) or norm in lists.get("val_filenames", ()):
            from_lists = "test"
        else:
            from_lists = "unused"
    if "split" not in fr:
        return from_lists or "train"
    s = fr["split"]
    if s not in SPLITS:
        raise ctx.error(f"key 'split' must be one of {SPLITS}, got {s!r}", i, fp)
    if from_lists is not None and (from_lists == "train") != (s == "train"):
        raise ctx.error(f"key 'split' is {s!r} but the top-level split lists put it in "
                        f"{from_lists!r}", i, fp)
    return s


def _check_file(p: Path, key: str, k: Intrinsics, i: int, fp: str, ctx: _Ctx) -> None:
    if not p.is_file():
        raise ctx.error(f"key {key!r}: file {p} does not exist", i, fp)
    try:
        w, h = _image_size(p)
    except Exception as e:  # PIL raises several types for unreadable files
        raise ctx.error(f"key {key!r}: cannot read image {p} ({type(e).__name__}: {e})", i, fp) from None
    if (w, h) != (k.w, k.h):
        raise ctx.error(f"key {key!r}: image {p.name} is {w}x{h} but w x h is {k.w}x{k.h}", i, fp)


# ---------------------------------------------------------------------------------- writing

def _num(v: float) -> float | int:
    return int(v) if float(v).is_integer() else float(v)


def capture_to_json(capture: Capture) -> dict:
    """The ``transforms.json`` object for ``capture`` (intrinsics at the top level when every
    frame shares them; split lists for nerfstudio when any frame is not in ``train``)."""
    frames = capture.frames
    if not frames:
        raise ValueError("a capture needs at least one frame")
    shared = all(f.intrinsics == frames[0].intrinsics for f in frames)
    meta: dict = {}
    if shared:
        meta.update({k: _num(v) if isinstance(v, (int, float)) else v
                     for k, v in frames[0].intrinsics.to_json().items()})
    if capture.expression_names is not None:
        meta["expression_names"] = list(capture.expression_names)
    out_frames = []
    for f in frames:
        if f.split not in SPLITS:
            raise ValueError(f"frame {f.file_path}: split must be one of {SPLITS}, got {f.split!r}")
        m = np.asarray(f.transform_matrix, np.float64)
        if m.shape != (4, 4) or not np.isfinite(m).all():
            raise ValueError(f"frame {f.file_path}: transform_matrix must be finite 4x4")
        d: dict = {"file_path": f.file_path, "transform_matrix": [[float(x) for x in row] for row in m]}
        if not shared:
            d.update({k: _num(v) if isinstance(v, (int, float)) else v
                      for k, v in f.intrinsics.to_json().items()})
        if f.mask_path is not None:
            d["mask_path"] = f.mask_path
        if f.expression is not None:
            d["expression"] = {n: float(w) for n, w in f.expression.items()}
        d["split"] = f.split
        d.update(f.extra)
        out_frames.append(d)
    meta["frames"] = out_frames
    if any(f.split != "train" for f in frames):
        held = [f.file_path for f in frames if f.split not in ("train", "unused")]
        meta["train_filenames"] = [f.file_path for f in frames if f.split == "train"]
        meta["val_filenames"] = held
        meta["test_filenames"] = held
    meta.update(capture.extra)
    return meta


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, world-readable (captures are shared data)."""
    write_bytes_atomic(path, data, mode=0o644)


def write_transforms(path: Path | str, capture: Capture) -> Path:
    """Write ``capture`` as ``transforms.json`` (``path``: the file or its folder), atomically."""
    path = Path(path)
    if path.is_dir():
        path = path / "transforms.json"
    data = json.dumps(capture_to_json(capture), indent=1).encode("utf-8") + b"\n"
    write_atomic(path, data)
    return path


def save_png(path: Path | str, array: np.ndarray) -> None:
    """Save (H, W, 3) RGB or (H, W) grey, uint8 or float in [0, 1] / bool, as PNG, atomically."""
    import io

    from PIL import Image

    a = np.asarray(array)
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    elif a.dtype != np.uint8:
        a = (np.clip(a, 0, 1) * 255 + 0.5).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    write_atomic(Path(path), buf.getvalue())


__all__ = ["CAMERA_MODELS", "SPLITS", "NERFSTUDIO_SPLIT_KEYS", "CaptureError", "Intrinsics", "Frame",
           "Capture", "camera_rays", "opencv_to_c2w", "load_image", "load_mask", "load_capture",
           "capture_to_json", "write_transforms", "write_atomic", "save_png"]
