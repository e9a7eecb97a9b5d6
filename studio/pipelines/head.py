"""Head avatars: train on a capture, evaluate, render novel views / expressions, publish.

What ``dhstudio head train | eval | render`` run. The reconstruct side
(:mod:`reconstruct.head`) trains and renders; this module checks the user's input (one clear
:class:`~provenance.errors.InputError` each, before anything is written), places the cameras
and publishes renders like every dhstudio output: watermarked video / image, a C2PA manifest
(``digitalSourceType`` trainedAlgorithmicMedia, the capture's ``transforms.json`` as
ingredient, the checkpoint's sha256 in the generation assertion) and a registry record, all
through :func:`studio.pipelines.publish.publish`. Outputs appear only when complete.

torch is imported inside the functions that need it: importing this module (and the CLI)
stays light.

Orbit cameras (:func:`orbit_cameras`) stay where the avatar was trained: the capture's
training cameras give the look-at centre (the point nearest to their optical axes), the up
direction (their mean +Y), the distance and elevation (means) and the azimuth range; the orbit
swings the azimuth across that range and back (``az = mid + half * sin(2 pi k / N)``), so it
interpolates between training views, never looks at the unseen back of the head.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from provenance.errors import InputError, OutputError
from provenance.media import sha256_file, wm_id_hex

MODEL_NAME = "dhstudio-head-nerf"
MODEL_VERSION = "1"
MIN_SIGNED_SIDE = 64
"""The watermark needs this many pixels per side."""
EVAL_SPLITS = {"test": ("test_view", "test_expression"), "test_view": ("test_view",),
               "test_expression": ("test_expression",)}
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
_EXPR_SYNTAX = "expected NAME=WEIGHT[,NAME=WEIGHT...] with weights in [0, 1], e.g. jawOpen=0.8,eyeBlink_L=1"


def _one_line(e: BaseException) -> str:
    s = str(e)
    return s.splitlines()[0] if s else type(e).__name__


# ------------------------------------------------------------------------------ expressions

def parse_expression(text: str | None) -> dict[str, float]:
    """``"jawOpen=0.8,eyeBlink_L=1"`` -> ``{"jawOpen": 0.8, "eyeBlink_L": 1.0}``, strictly.

    Every item is ``NAME=WEIGHT``; names are identifiers, each given once; weights are finite
    numbers in [0, 1]. ``None`` or an empty / blank string is the neutral face ``{}``. Any
    deviation raises :class:`InputError` naming the item.
    """
    if text is None or not text.strip():
        return {}
    out: dict[str, float] = {}
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            raise InputError(f"--expression {text!r}: empty item; {_EXPR_SYNTAX}", code="input.expression")
        if item.count("=") != 1:
            raise InputError(f"--expression item {item!r} is not NAME=WEIGHT; {_EXPR_SYNTAX}",
                             code="input.expression")
        name, val = (s.strip() for s in item.split("="))
        if not _NAME_RE.match(name):
            raise InputError(f"--expression item {item!r}: {name!r} is not a blendshape name; {_EXPR_SYNTAX}",
                             code="input.expression")
        try:
            w = float(val)
        except ValueError:
            raise InputError(f"--expression item {item!r}: weight {val!r} is not a number; {_EXPR_SYNTAX}",
                             code="input.expression") from None
        if not math.isfinite(w) or not 0.0 <= w <= 1.0:
            raise InputError(f"--expression item {item!r}: weight must be a number in [0, 1]", code="input.expression")
        if name in out:
            raise InputError(f"--expression names {name!r} twice", code="input.expression")
        out[name] = w
    return out


def check_expression(expression: Mapping[str, float], known: Sequence[str],
                     declared: Sequence[str] | None = None) -> dict[str, float]:
    """The expression the avatar renders; :class:`InputError` for the first name it does not know.

    ``known``: the avatar's expression names (those its training frames moved); ``declared``:
    every name the capture's face model has (to tell "not trained" from "no such name"). A
    declared name at weight 0 is the neutral face for it and is dropped (a tracker's full
    coefficient vector renders as long as the names it moves were trained).
    """
    known = list(known)
    out = {}
    for name, w in expression.items():
        if name in known:
            out[name] = w
            continue
        if w == 0 and declared and name in declared:
            continue
        if not known:
            raise InputError(f"expression {name!r}: this avatar was trained without expressions; "
                             "render it without --expression", code="input.expression")
        example = ",".join(f"{n}=0.5" for n in known[:2])
        listing = ", ".join(known[:8]) + (f", ... ({len(known)} in all)" if len(known) > 8 else "")
        if declared and name in declared:
            raise InputError(f"expression {name!r} was never moved in this avatar's training frames, so it cannot "
                             f"render it; it knows {listing} (e.g. --expression {example})", code="input.expression")
        close = difflib.get_close_matches(name, known + [n for n in (declared or ()) if n not in known], n=2)
        hint = f"did you mean {' or '.join(close)}? " if close else ""
        raise InputError(f"unknown expression name {name!r}; {hint}this avatar knows {listing} "
                         f"(e.g. --expression {example})", code="input.expression")
    return out


# ------------------------------------------------------------------------------ loading

def load_avatar(path: Path | str, device: str = "cpu"):
    """:func:`reconstruct.head.train.load_head` with user errors as :class:`InputError`."""
    from reconstruct._deps import MissingExtra

    path = Path(path)
    if not path.exists():
        raise InputError(f"head checkpoint {path} does not exist", code="input.missing")
    if path.is_dir() and not (path / "model.safetensors").is_file():
        raise InputError(f"{path} is not a head training run (no model.safetensors in it)", code="input.missing")
    try:
        from reconstruct.head.train import load_head

        model = load_head(path, device=device)
    except (ValueError, FileNotFoundError, MissingExtra, RuntimeError) as e:
        raise InputError(_one_line(e), code="input.checkpoint") from None
    ckpt = path / "model.safetensors" if path.is_dir() else path
    return model, ckpt


def load_capture_checked(path: Path | str):
    from reconstruct.head.data import load_capture

    path = Path(path)
    if not path.exists():
        raise InputError(f"capture {path} does not exist", code="input.missing")
    try:
        return load_capture(path)
    except ValueError as e:  # CaptureError: one line naming the file, frame and key
        raise InputError(_one_line(e), code="input.capture") from None


# ------------------------------------------------------------------------------ train / eval

def train_avatar(capture: Path, out: Path, *, steps: int = 3000, minutes: float | None = None,
                 threads: int | None = None, seed: int = 0, batch_rays: int | None = None,
                 progress: bool = True, device: str = "cpu", backend: str = "auto") -> dict:
    """Train (or resume) a head avatar from ``capture`` into the run folder ``out``."""
    from reconstruct._deps import MissingExtra

    capture, out = Path(capture), Path(out)
    if steps < 1:
        raise InputError(f"--steps must be >= 1, got {steps}")
    if minutes is not None and not (math.isfinite(minutes) and minutes > 0):
        raise InputError(f"--minutes must be a positive number, got {minutes}")
    if threads is not None and threads < 1:
        raise InputError(f"--threads must be >= 1, got {threads}")
    if batch_rays is not None and batch_rays < 1:
        raise InputError(f"--batch-rays must be >= 1, got {batch_rays}")
    if out.exists() and not out.is_dir():
        raise OutputError(f"run folder {out} exists and is not a folder")
    if not out.parent.is_dir():
        raise OutputError(f"cannot create {out}: folder {out.parent} does not exist")
    load_capture_checked(capture)  # a clear error before the run folder is made
    try:
        from reconstruct.head.train import HeadTrainConfig, train_head

        cfg = HeadTrainConfig(steps=steps, max_seconds=minutes * 60 if minutes else None, threads=threads,
                              seed=seed, device=device, backend=backend)
        if batch_rays:
            cfg.batch_rays = batch_rays
        created = not out.exists()
        try:
            res = train_head(capture, out, cfg, progress=progress)
        except ValueError:
            if created and out.is_dir() and not any(out.iterdir()):
                out.rmdir()
            raise
    except (ValueError, FileNotFoundError, MissingExtra) as e:
        raise InputError(_one_line(e)) from None
    res["checkpoint"] = str(out / "model.safetensors")
    return res


def _finite_or_none(d: dict) -> dict:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


def evaluate_avatar(ckpt: Path, capture: Path, *, split: str = "test", max_frames: int | None = None,
                    threads: int | None = None, device: str = "cpu") -> dict:
    """PSNR / SSIM on the capture's held-out views and expressions (JSON-ready: NaN -> None)."""
    if split not in EVAL_SPLITS:
        raise InputError(f"--split must be one of {', '.join(EVAL_SPLITS)}, got {split!r}")
    if max_frames is not None and max_frames < 1:
        raise InputError(f"--max-frames must be >= 1, got {max_frames}")
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise InputError(f"--device {device}: torch sees no CUDA device")
    model, ckpt_file = load_avatar(ckpt, device=device)
    cap = load_capture_checked(capture)
    splits = EVAL_SPLITS[split]
    if not any(cap.indices(s) for s in splits):
        raise InputError(f"capture {capture} has no {' or '.join(splits)} frames to evaluate on")
    _threads(threads)
    from reconstruct.head.train import evaluate_head

    t0 = time.perf_counter()
    try:
        res = evaluate_head(model, cap.root, splits=splits, max_frames=max_frames)
    except ValueError as e:
        raise InputError(_one_line(e)) from None
    out = {"checkpoint": str(ckpt_file), "capture": str(cap.root), "split": split, **_finite_or_none(res),
           "seconds": round(time.perf_counter() - t0, 2)}
    info = getattr(model, "training_info", {}) or {}
    out["train_steps"] = info.get("steps")
    return out


def _threads(threads: int | None) -> int:
    """Set torch's threads: ``threads``, or the cores idle now (``reconstruct._threads``)."""
    if threads is not None and threads < 1:
        raise InputError(f"--threads must be >= 1, got {threads}")
    import torch

    from reconstruct._threads import choose_threads

    n = choose_threads(threads)
    torch.set_num_threads(n)
    return n


# ------------------------------------------------------------------------------ cameras

def _look_at_c2w(eye: np.ndarray, centre: np.ndarray, up: np.ndarray) -> np.ndarray:
    z = eye - centre
    z /= np.linalg.norm(z)
    x = np.cross(up, z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = x, y, z, eye
    return c2w


@dataclass
class OrbitFrame:
    """Where the orbit's cameras look from: centre, up, reference forward / right, distance."""

    centre: np.ndarray
    up: np.ndarray
    forward: np.ndarray
    right: np.ndarray
    distance: float
    elevation: float
    """Radians above the plane orthogonal to ``up``."""
    azimuth_range: tuple[float, float]
    """Radians (min, max) of the training cameras around ``up``, from ``forward`` towards ``right``."""

    def c2w(self, azimuth: float, elevation: float | None = None) -> np.ndarray:
        el = self.elevation if elevation is None else elevation
        d = math.cos(el) * (math.cos(azimuth) * self.forward + math.sin(azimuth) * self.right) + math.sin(el) * self.up
        return _look_at_c2w(self.centre + self.distance * d, self.centre, self.up)


def orbit_frame(cap) -> OrbitFrame:
    """The orbit geometry from a capture's training cameras (see the module docstring)."""
    idx = cap.indices("train") or list(range(len(cap)))
    c2w = np.stack([np.asarray(cap.frames[i].c2w, np.float64) for i in idx])
    pos, axis = c2w[:, :3, 3], -c2w[:, :3, 2]
    axis /= np.linalg.norm(axis, axis=1, keepdims=True)
    # the point nearest to every optical axis (least squares)
    a = np.zeros((3, 3))
    b = np.zeros(3)
    for p, d in zip(pos, axis):
        m = np.eye(3) - np.outer(d, d)
        a += m
        b += m @ p
    centre = None
    if np.linalg.cond(a) < 1e6:
        centre = np.linalg.solve(a, b)
    meta = (cap.extra.get("dhstudio") or {}).get("head_centre")
    if meta is not None:
        centre = np.asarray(meta, np.float64)
    if centre is None:  # one camera, or all axes parallel: a point in front of the mean camera
        centre = pos.mean(0) + axis.mean(0) * np.linalg.norm(pos - pos.mean(0), axis=1).mean()
    up = c2w[:, :3, 1].mean(0)
    up /= np.linalg.norm(up)
    v = pos - centre
    dist = np.linalg.norm(v, axis=1)
    fwd = v.mean(0) - (v.mean(0) @ up) * up
    if np.linalg.norm(fwd) < 1e-9:  # cameras all around: any horizontal reference
        fwd = np.cross(up, [1.0, 0.0, 0.0] if abs(up[0]) < 0.9 else [0.0, 0.0, 1.0])
    fwd /= np.linalg.norm(fwd)
    right = np.cross(up, fwd)
    el = np.arcsin(np.clip((v @ up) / dist, -1, 1))
    az = np.arctan2(v @ right, v @ fwd)
    return OrbitFrame(centre=centre, up=up, forward=fwd, right=right, distance=float(dist.mean()),
                      elevation=float(el.mean()), azimuth_range=(float(az.min()), float(az.max())))


def orbit_cameras(cap, n_frames: int, *, orbit: bool = True) -> list[np.ndarray]:
    """``n_frames`` OpenGL camera-to-world matrices: a swing across the training azimuths
    (``orbit``) or the front view (the middle of that range) once."""
    fr = orbit_frame(cap)
    lo, hi = fr.azimuth_range
    mid, half = 0.5 * (lo + hi), 0.5 * (hi - lo)
    if not orbit:
        return [fr.c2w(mid)]
    return [fr.c2w(mid + half * math.sin(2 * math.pi * k / n_frames)) for k in range(n_frames)]


def render_intrinsics(cap, size: int | None):
    """The first training frame's intrinsics as a pinhole camera, scaled so its long side is
    ``size`` pixels (None: as captured)."""
    from reconstruct.head.data import Intrinsics

    i0 = (cap.indices("train") or [0])[0]
    k = cap.frames[i0].intrinsics
    s = 1.0 if size is None else size / max(k.w, k.h)
    return Intrinsics(fl_x=k.fl_x * s, fl_y=k.fl_y * s, cx=k.cx * s, cy=k.cy * s,
                      w=max(1, round(k.w * s)), h=max(1, round(k.h * s)))


# ------------------------------------------------------------------------------ render + publish

@dataclass
class HeadRenderResult:
    path: Path
    frames: int
    width: int
    height: int
    expression: dict
    signed: bool
    watermark_id: int | None = None
    weights_sha256: str = ""
    seconds: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["path"] = str(self.path)
        d["watermark_id_hex"] = wm_id_hex(self.watermark_id)
        return d


def render_avatar(ckpt: Path, capture: Path, out: Path, *, orbit: bool = False, frames: int = 48,
                  expression: str | Mapping[str, float] | None = None, size: int | None = None, fps: int = 24,
                  sign: bool = True, threads: int | None = None, progress: bool = True, registry=None,
                  identity=None, passphrase: str | None = None) -> HeadRenderResult:
    """Render the avatar into ``out`` (``.mp4``: an orbit; ``.png``: one still) and publish it.

    Every check runs before rendering; the output appears only when rendered (and signed).
    """
    from reconstruct._deps import MissingExtra

    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in (".mp4", ".png"):
        raise OutputError(f"output {out} must end in .mp4 (an orbit video) or .png (a still)")
    if suffix == ".mp4" and not orbit:
        raise InputError("an MP4 render needs --orbit (a still goes to a .png)")
    if suffix == ".png" and orbit:
        raise InputError("a PNG holds one still: drop --orbit, or write the orbit to a .mp4")
    if not out.parent.is_dir():
        raise OutputError(f"cannot write {out}: folder {out.parent} does not exist", code="output.no_directory")
    if out.is_dir():
        raise OutputError(f"output {out} is a directory", code="output.is_directory")
    if orbit and not 1 <= frames <= 10000:
        raise InputError(f"--frames must be between 1 and 10000, got {frames}")
    if size is not None and not 8 <= size <= 4096:
        raise InputError(f"--size must be between 8 and 4096 pixels, got {size}")
    if not 1 <= fps <= 120:
        raise InputError(f"--fps must be between 1 and 120, got {fps}")
    expr = parse_expression(expression) if not isinstance(expression, Mapping) else dict(expression)
    model, ckpt_file = load_avatar(ckpt)
    cap = load_capture_checked(capture)
    expr = check_expression(expr, model.expression_names, cap.expression_names)
    intr = render_intrinsics(cap, size)
    if sign and min(intr.w, intr.h) < MIN_SIGNED_SIDE:
        raise InputError(f"a {intr.w}x{intr.h} render is too small to watermark (need {MIN_SIGNED_SIDE} px per side); "
                         f"give --size {MIN_SIGNED_SIDE} or more, or --no-sign")
    transforms = cap.root / "transforms.json"
    cams = orbit_cameras(cap, frames if orbit else 1, orbit=orbit)
    _threads(threads)
    times: dict[str, float] = {}
    try:
        from reconstruct.head.render import render_view

        tmpdir = Path(tempfile.mkdtemp(prefix=".dhstudio-head-", dir=out.parent))
    except MissingExtra as e:
        raise InputError(str(e)) from None
    except OSError as e:
        raise OutputError(f"cannot write in {out.parent}: {e.strerror}", code="output.unwritable") from None
    wm_id = None
    weights_sha = sha256_file(ckpt_file)
    try:
        t0 = time.perf_counter()
        imgs = []
        bar = _bar(len(cams), progress)
        for c2w in cams:
            rgb = render_view(model, intr, c2w, expr)["rgb"]
            imgs.append((np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8))
            bar.update(1)
        bar.close()
        times["render"] = round(time.perf_counter() - t0, 2)
        raw = tmpdir / ("raw" + suffix)
        if suffix == ".mp4":
            from studio.pipelines.body import write_mp4

            write_mp4(imgs, raw, fps=fps)
        else:
            from PIL import Image

            Image.fromarray(imgs[0]).save(raw)
        if sign:
            from provenance.manifest import GenerationSpec
            from studio.pipelines.publish import publish

            info = getattr(model, "training_info", {}) or {}
            spec = GenerationSpec(model_name=MODEL_NAME, model_version=MODEL_VERSION, weights_sha256=weights_sha,
                                  parameters={"expression": expr, "orbit": orbit, "frames": len(cams),
                                              "width": intr.w, "height": intr.h, "fps": fps if orbit else None,
                                              "train_steps": info.get("steps"),
                                              "checkpoint": ckpt_file.name},
                                  digital_source_type="trainedAlgorithmicMedia", ingredients=[transforms])
            t0 = time.perf_counter()
            staged = tmpdir / ("signed" + suffix)
            r = publish(raw, staged, spec, registry=registry, identity=identity, passphrase=passphrase)
            wm_id = r.watermark_id
            times["sign"] = round(time.perf_counter() - t0, 2)
            shutil.move(str(staged), str(out))
        else:
            shutil.move(str(raw), str(out))
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    return HeadRenderResult(path=out, frames=len(cams), width=intr.w - (intr.w % 2 if suffix == ".mp4" else 0),
                            height=intr.h - (intr.h % 2 if suffix == ".mp4" else 0), expression=expr,
                            signed=sign, watermark_id=wm_id, weights_sha256=weights_sha, seconds=times)


# ------------------------------------------------------------------------------ mesh export

MESH_RESOLUTIONS = (64, 128, 256)


@dataclass
class HeadMeshResult:
    path: Path
    vertices: int
    faces: int
    signed: bool
    sidecar: Path | None = None
    watermark_id: int | None = None
    weights_sha256: str = ""
    seconds: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["path"] = str(self.path)
        d["sidecar"] = str(self.sidecar) if self.sidecar else None
        d["watermark_id_hex"] = wm_id_hex(self.watermark_id)
        return d


def export_avatar_mesh(ckpt: Path, capture: Path, out: Path, *, resolution: int = 128,
                       expression: str | Mapping[str, float] | None = None, threshold: float = 0.5,
                       sign: bool = True, threads: int | None = None, registry=None, identity=None,
                       passphrase: str | None = None) -> HeadMeshResult:
    """Marching cubes on the avatar's density (as one marching step's opacity
    ``1 - exp(-sigma * step)``, surface at ``threshold``) for one expression, vertex colours
    from the colour network seen along the inward normal; GLB published like the body mesh
    (watermarked, C2PA sidecar ``OUT.glb.c2pa``, registry), OBJ / PLY only with ``sign=False``."""
    from reconstruct._deps import MissingExtra

    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in (".glb", ".obj", ".ply"):
        raise OutputError(f"output {out} must end in .glb, .obj or .ply")
    if sign and suffix != ".glb":
        raise OutputError("signed meshes are GLB (C2PA sidecar); use -o NAME.glb or --no-sign")
    if not out.parent.is_dir():
        raise OutputError(f"cannot write {out}: folder {out.parent} does not exist", code="output.no_directory")
    if out.is_dir():
        raise OutputError(f"output {out} is a directory", code="output.is_directory")
    if resolution not in MESH_RESOLUTIONS:
        raise InputError(f"--resolution must be one of {', '.join(map(str, MESH_RESOLUTIONS))}, got {resolution}")
    if not 0.0 < threshold < 1.0:
        raise InputError(f"--threshold is an opacity in (0, 1), got {threshold}")
    expr = parse_expression(expression) if not isinstance(expression, Mapping) else dict(expression)
    model, ckpt_file = load_avatar(ckpt)
    cap = load_capture_checked(capture)
    expr = check_expression(expr, model.expression_names, cap.expression_names)
    _threads(threads)
    times: dict[str, float] = {}
    try:
        import torch

        from reconstruct.head.render import render_step
        from reconstruct.mesh import export_mesh, extract_surface

        info = getattr(model, "training_info", {}) or {}
        spd = int((info.get("train_config") or {}).get("steps_per_diagonal", 256))
        step = render_step(model.box, spd)
        e = model.encode_expression(expr)[None]

        def cond(n: int) -> dict:
            return {"expression": e.expand(n, -1)} if model.cfg.n_expressions else {}

        def opacity(pts: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                sigma, _ = model.query_density(torch.from_numpy(pts), cond(len(pts)))
            return (1.0 - torch.exp(-sigma * step)).numpy()

        t0 = time.perf_counter()
        box = model.box.cpu().numpy().astype(np.float64)
        try:
            mesh, _ = extract_surface(opacity, box[0], box[1], resolution, coarse=resolution // 4,
                                      threshold=threshold)
        except ValueError as err:
            raise InputError(f"no mesh: {_one_line(err)}") from None
        times["extract"] = round(time.perf_counter() - t0, 2)
        v = torch.from_numpy(np.asarray(mesh.vertices, np.float32))
        nrm = torch.from_numpy(np.asarray(mesh.vertex_normals, np.float32))
        cols = []
        with torch.no_grad():
            for s in range(0, len(v), 65536):
                vs, ns = v[s:s + 65536], nrm[s:s + 65536]
                _, geo = model.query_density(vs, cond(len(vs)))
                cols.append(model.query_color(geo, -torch.nn.functional.normalize(ns, dim=-1), cond(len(vs))))
        rgb = (torch.cat(cols).clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8)
        mesh.visual.vertex_colors = np.concatenate([rgb, np.full((len(rgb), 1), 255, np.uint8)], 1)
        tmpdir = Path(tempfile.mkdtemp(prefix=".dhstudio-head-mesh-", dir=out.parent))
    except MissingExtra as err:
        raise InputError(str(err)) from None
    weights_sha = sha256_file(ckpt_file)
    wm_id, sidecar = None, None
    try:
        raw = export_mesh(mesh, tmpdir / ("raw" + suffix))
        if sign:
            from provenance.manifest import GenerationSpec
            from studio.pipelines.publish import publish

            spec = GenerationSpec(model_name=MODEL_NAME, model_version=MODEL_VERSION, weights_sha256=weights_sha,
                                  parameters={"expression": expr, "resolution": resolution, "threshold": threshold,
                                              "train_steps": info.get("steps"), "checkpoint": ckpt_file.name},
                                  digital_source_type="trainedAlgorithmicMedia",
                                  ingredients=[cap.root / "transforms.json"])
            t0 = time.perf_counter()
            staged = tmpdir / ("signed" + suffix)
            r = publish(raw, staged, spec, registry=registry, identity=identity, passphrase=passphrase)
            wm_id = r.watermark_id
            times["sign"] = round(time.perf_counter() - t0, 2)
            if r.sidecar is not None:  # the sidecar first, then the mesh
                sidecar = out.with_suffix(out.suffix + ".c2pa")
                shutil.move(str(r.sidecar), str(sidecar))
            shutil.move(str(staged), str(out))
        else:
            shutil.move(str(raw), str(out))
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    return HeadMeshResult(path=out, vertices=len(mesh.vertices), faces=len(mesh.faces), signed=sign,
                          sidecar=sidecar, watermark_id=wm_id, weights_sha256=weights_sha, seconds=times)


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _bar(total: int, enabled: bool):
    if not enabled or total < 2:
        return _NoBar()
    try:
        from tqdm import tqdm
    except ImportError:
        return _NoBar()
    return tqdm(total=total, desc="head render", unit="frame")


__all__ = ["MODEL_NAME", "parse_expression", "check_expression", "load_avatar", "train_avatar", "evaluate_avatar",
           "orbit_frame", "orbit_cameras", "render_intrinsics", "render_avatar", "HeadRenderResult",
           "export_avatar_mesh", "HeadMeshResult"]
