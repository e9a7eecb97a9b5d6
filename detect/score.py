"""Score images for face forgery: find the faces, crop each, run a detector.

``score_image(source, detector) -> ImageScore`` is what ``dhstudio detect FILE`` prints, one JSON
object per file: ``path``, ``score`` (probability of fake of the most suspicious face, in [0, 1];
None when no face was found), ``faces`` (box, detection score, fake probability, and the
localisation map's path when asked for), ``detector`` (name + weights sha256), ``error``
(code + message, or None).

Images are read bounded (the watermark decoder's pixel limit, ``provenance.limits``; a JPEG much
larger than needed is decoded DCT-scaled), converted to RGB whatever their mode (greyscale, CMYK,
palette, 16-bit, alpha), and the face detector itself works on a downscaled copy of huge images.
"""

from __future__ import annotations

import io
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from provenance import media
from provenance.errors import DhsError, InputError

from .train import CACHE_SIZE as CROP_SIZE  # crops are cut as in training, then resized by the model
from .train import CROP_MARGIN

DEFAULT_WEIGHTS = Path(__file__).resolve().parents[1] / "assets" / "detector_default.safetensors"
_MAX_DECODE_EDGE = 4096  # images are decoded (JPEG: DCT-scaled) to about this long edge at most


@dataclass
class FaceScore:
    box: list[float]
    detection_score: float
    score: float | None
    map_path: str | None = None
    map: dict | None = None
    """The localisation map's summary when the detector gives one (:func:`map_summary`)."""


@dataclass
class ImageScore:
    path: str
    score: float | None
    faces: list[FaceScore] = field(default_factory=list)
    detector: dict | None = None
    error: dict | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def load_rgb(source, *, max_edge: int = _MAX_DECODE_EDGE) -> np.ndarray:
    """An image file (path or bytes) as HxWx3 uint8 RGB, bounded (``provenance``'s one bounded
    opener: pixel count checked from the header, a large JPEG decoded DCT-scaled, a PNG without its
    ancillary chunks), EXIF orientation applied, downscaled to ``max_edge``. One-line InputError."""
    return load_rgb_scaled(source, max_edge=max_edge)[0]


def load_rgb_scaled(source, *, max_edge: int = _MAX_DECODE_EDGE, name: str | None = None) -> tuple[np.ndarray, float]:
    """:func:`load_rgb` and the factor from its pixels to the original image's (>= 1); ``name``
    names bytes in messages."""
    from PIL import Image, ImageOps

    from provenance.watermark.image import open_image

    data = source if isinstance(source, (bytes, bytearray)) else media.read_snapshot(source).data
    fp = io.BytesIO(data)
    fp.name = (name or "image") if isinstance(source, (bytes, bytearray)) else str(source)  # names it in errors
    with open_image(fp, draft=True, purpose="face detection") as (im, _info):
        with Image.open(io.BytesIO(data)) as header:  # the stored size (a DCT-scaled decode is smaller)
            long_edge = max(header.size)
        rgb = ImageOps.exif_transpose(im)
        if rgb.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
            rgb = rgb.convert("L")
        rgb = rgb.convert("RGB")
    if max(rgb.size) > max_edge:
        s = max_edge / max(rgb.size)
        rgb = rgb.resize((max(1, round(rgb.size[0] * s)), max(1, round(rgb.size[1] * s))), Image.BILINEAR)
    return np.asarray(rgb, dtype=np.uint8), long_edge / max(rgb.size)


def weights_sha256(path: str | os.PathLike) -> str:
    return media.sha256_file(path)


def load_default_detector(weights: str | os.PathLike | None = None):
    """The shipped default detector (``assets/detector_default.safetensors``), or ``weights``."""
    from .registry import load_detector

    p = Path(weights) if weights else DEFAULT_WEIGHTS
    if not p.is_file():
        raise InputError(f"detector weights {p} not found" + (" (no default detector is shipped yet)" if not weights else ""),
                         code="detect.no_weights")
    return load_detector(p), {"name": None, "weights": str(p), "weights_sha256": weights_sha256(p)}


def face_crops(rgb: np.ndarray, faces, size: int = CROP_SIZE) -> np.ndarray:
    """Square crops (N, size, size, 3) around each face's landmarks, with the test-time margin."""
    from .sbi import crop_face

    out = []
    for f in faces:
        lm = getattr(f, "landmarks68", None)
        ref = lm if lm is not None else np.asarray(f.box, dtype=np.float32)
        crop, _ = crop_face(rgb, ref, size, CROP_MARGIN)
        out.append(crop)
    return np.stack(out) if out else np.zeros((0, size, size, 3), np.uint8)


def crop_square(face, margin: float = CROP_MARGIN) -> tuple[float, float, float]:
    """``(x0, y0, side)``: the square :func:`face_crops` cuts around ``face`` (``detect.sbi.crop_face``'s
    geometry without jitter), in the pixels of the image the face was found in."""
    lm = getattr(face, "landmarks68", None)
    if lm is not None:
        pts = np.asarray(lm, dtype=np.float64)
        (x0, y0), (x1, y1) = pts.min(axis=0), pts.max(axis=0)
    else:
        x0, y0, x1, y1 = (float(v) for v in face.box)
    long_side = max(x1 - x0, y1 - y0, 1.0)
    side = max(1, int(round(long_side * (1.0 + 2.0 * margin))))
    return float(round((x0 + x1) / 2.0 - side / 2.0)), float(round((y0 + y1) / 2.0 - side / 2.0)), float(side)


def map_summary(m: np.ndarray, square: tuple[float, float, float], kind: str | None, *, grid: int = 0,
                scale: float = 1.0) -> dict:
    """A localisation map ``[h, w]`` (values in [0, 1]) over the crop ``square`` = (x0, y0, side),
    as plain data: ``kind`` ("boundary" / "manipulation"), ``max``, ``mean``, ``peak`` (x, y of the
    highest cell's centre) and ``square`` in the image's pixels times ``scale``; with ``grid`` > 0
    also the map itself, box-averaged to at most ``grid`` x ``grid`` cells (rows top to bottom,
    3 decimals)."""
    m = np.asarray(m, dtype=np.float32)
    h, w = m.shape
    x0, y0, side = square
    i, j = np.unravel_index(int(np.argmax(m)), m.shape)
    out = {"kind": kind, "max": round(float(m.max()), 4), "mean": round(float(m.mean()), 4),
           "peak": [round(float(x0 + (j + 0.5) / w * side) * scale, 1),
                    round(float(y0 + (i + 0.5) / h * side) * scale, 1)],
           "square": [round(float(x0) * scale, 1), round(float(y0) * scale, 1), round(float(side) * scale, 1)]}
    if grid > 0:
        if h > grid or w > grid:
            from PIL import Image

            gh, gw = min(h, grid), min(w, grid)
            m = np.asarray(Image.fromarray(m).resize((gw, gh), Image.BOX), dtype=np.float32)
        out["grid"] = [[round(float(v), 3) for v in row] for row in np.clip(m, 0.0, 1.0)]
    return out


def score_image(source, detector, detector_info: dict, *, path_label: str | None = None,
                max_faces: int = 8, map_grid: int = 0) -> ImageScore:
    """Score one image (path or bytes). Never raises for bad input: problems land in ``error``.

    For a detector that localises (``mask_kind``), each face also gets its map's summary
    (:func:`map_summary`; the map itself, at most ``map_grid`` cells a side, when ``map_grid`` > 0).
    ``detect.missing_extra`` when torch or the faces extra (mediapipe) is not installed."""
    label = path_label or (str(source) if not isinstance(source, (bytes, bytearray)) else "image")
    res = ImageScore(path=label, score=None, detector=detector_info)
    try:
        rgb, scale = load_rgb_scaled(source, name=label)
        from reconstruct.faces import detect_faces

        faces = detect_faces(rgb, max_faces=max_faces)
        if not faces:
            res.error = {"code": "detect.no_face", "message": "no face found"}
            return res
        crops = face_crops(rgb, faces)
        kind = getattr(detector, "mask_kind", None)
        if kind is not None and hasattr(detector, "predict_with_maps"):
            probs, maps = detector.predict_with_maps(crops)
        else:
            probs, maps = detector.predict_proba(crops), None
        for k, (f, p) in enumerate(zip(faces, probs)):
            fs = FaceScore(box=[round(float(v) * scale, 1) for v in f.box],
                           detection_score=round(float(f.score), 4), score=round(float(p), 6))
            if maps is not None:
                fs.map = map_summary(maps[k], crop_square(f), kind, grid=map_grid, scale=scale)
            res.faces.append(fs)
        res.score = max(fs.score for fs in res.faces)
    except DhsError as e:
        res.error = e.to_dict()
    except ImportError as e:  # reconstruct's MissingExtra / the registry's MissingDependency
        res.error = {"code": "detect.missing_extra", "message": str(e).splitlines()[0] if str(e) else type(e).__name__}
    except Exception as e:  # a model bug must not kill a batch
        res.error = {"code": "detect.internal", "message": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
    return res
