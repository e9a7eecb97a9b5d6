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


def load_rgb_scaled(source, *, max_edge: int = _MAX_DECODE_EDGE) -> tuple[np.ndarray, float]:
    """:func:`load_rgb` and the factor from its pixels to the original image's (>= 1)."""
    from PIL import Image, ImageOps

    from provenance.watermark.image import open_image

    data = source if isinstance(source, (bytes, bytearray)) else media.read_snapshot(source).data
    fp = io.BytesIO(data)
    fp.name = "image" if isinstance(source, (bytes, bytearray)) else str(source)  # names it in errors
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


def score_image(source, detector, detector_info: dict, *, path_label: str | None = None,
                max_faces: int = 8) -> ImageScore:
    """Score one image (path or bytes). Never raises for bad input: problems land in ``error``."""
    label = path_label or (str(source) if not isinstance(source, (bytes, bytearray)) else "image")
    res = ImageScore(path=label, score=None, detector=detector_info)
    try:
        rgb, scale = load_rgb_scaled(source)
        from reconstruct.faces import detect_faces

        faces = detect_faces(rgb, max_faces=max_faces)
        if not faces:
            res.error = {"code": "detect.no_face", "message": "no face found"}
            return res
        crops = face_crops(rgb, faces)
        probs = detector.predict_proba(crops)
        for f, p in zip(faces, probs):
            res.faces.append(FaceScore(box=[round(float(v) * scale, 1) for v in f.box],
                                       detection_score=round(float(f.score), 4), score=round(float(p), 6)))
        res.score = max(fs.score for fs in res.faces)
    except DhsError as e:
        res.error = e.to_dict()
    except Exception as e:  # a model bug must not kill a batch
        res.error = {"code": "detect.internal", "message": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
    return res
