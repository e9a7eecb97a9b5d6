"""detect_faces / detect_faces_batch: the one way in for face detection + landmarks + pose."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from . import _backend
from ._boxes import box_iou
from ._image import prepare
from ._landmarks import head_pose, to_ibug68
from ._types import Face

MODES = ("auto", "short", "full")
#: Detection runs on a copy whose longer side is at most this (the models see 128 or 192 px
#: anyway; an area-averaged copy avoids the aliasing of their own bilinear resize). Landmarks run
#: on crops of the full-resolution image.
DETECT_SIDE = 1024
#: Images whose shorter side is under this many pixels hold no face we can find: [] at once.
MIN_SIDE = 16
#: How "auto" chooses, from benchmarks/faces_bench.py (2026-12-07): the short-range model finds
#: 98-100 % of the faces in the face packs (crops, the face filling most of the image) but needs a
#: face at least ~25 % of the frame height in a 1280x720 frame (33 % hit at 18 %, none at 12 %);
#: the full-range model finds faces down to ~12 % of the frame height (77 %; 28 % at 8 %) but
#: misses faces that fill the image (16 % of faces_real, 48 % of faces_real_color). So "auto" runs
#: the short-range model, and the full-range one too (merged) unless the short-range one found a
#: face at least AUTO_CLOSEUP of the image's shorter side tall (a close-up: small extra faces are
#: unlikely and the full-range model would miss this one anyway).
AUTO_CLOSEUP = 0.4
#: "auto", when neither model finds a face: the image is padded by this fraction of its longer side
#: (edge pixels) and the short-range model runs again. Tight crops (a face filling the whole image,
#: cut at its edges) are found that way.
AUTO_PAD = 0.5
#: ... with this score threshold at least (on a padded image the short-range model also fires on
#: round things: 0.6 keeps 15 of the 21 crops it recovers in faces_real and drops both of its 2
#: false faces in the bench's 300 no-face crops).
AUTO_PAD_MIN_SCORE = 0.6


def _check(mode: str, max_faces: int, min_score: float) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if int(max_faces) < 1:
        raise ValueError(f"max_faces must be >= 1, got {max_faces}")
    if not 0.0 < float(min_score) < 1.0:
        raise ValueError(f"min_score must be in (0, 1), got {min_score}")


def _nms_merge(a: list, b: list, iou: float = 0.3) -> list:
    """Keep every detection of ``a`` and those of ``b`` that overlap none of them."""
    out = list(a)
    for d in b:
        if all(box_iou(d[0], k[0]) < iou for k in out):
            out.append(d)
    return out


def _inside(p: np.ndarray, q: np.ndarray) -> float:
    """Fraction of box p's area that lies inside box q."""
    ix = max(0.0, min(p[2], q[2]) - max(p[0], q[0]))
    iy = max(0.0, min(p[3], q[3]) - max(p[1], q[1]))
    area = (p[2] - p[0]) * (p[3] - p[1])
    return ix * iy / area if area > 0 else 1.0


def _run_detectors(det: np.ndarray, mode: str, min_score: float) -> list:
    if mode in ("short", "full"):
        return [(b, s, k, mode) for b, s, k in _backend.detect(det, mode, min_score)]
    h, w = det.shape[:2]
    short = [(b, s, k, "short") for b, s, k in _backend.detect(det, "short", min_score)]
    if short and max(b[3] - b[1] for b, *_ in short) >= AUTO_CLOSEUP * min(h, w):
        return short
    found = _nms_merge(short, [(b, s, k, "full") for b, s, k in _backend.detect(det, "full", min_score)])
    if found:
        return found
    p = max(1, round(AUTO_PAD * max(h, w)))
    padded = np.pad(det, ((p, p), (p, p), (0, 0)), mode="edge")
    again = _backend.detect(padded, "short", max(min_score, AUTO_PAD_MIN_SCORE))
    return [(b - p, s, k - p, "short") for b, s, k in again
            if min(b[2], w + p) - max(b[0], p) > 0.5 * (b[2] - b[0])
            and min(b[3], h + p) - max(b[1], p) > 0.5 * (b[3] - b[1])]  # mostly inside the image


def detect_faces(image, *, mode: str = "auto", max_faces: int = 16, landmarks: bool = True,
                 refine: bool = True, min_score: float = 0.5, require_landmarks: bool = False) -> list[Face]:
    """Find faces in one image, best score first.

    Args:
        image: (H,W,3) uint8 RGB array, (H,W) or (H,W,1) grey, (H,W,4) RGBA (alpha ignored), uint16
            arrays (top 8 bits), a Pillow image (any mode: L, CMYK, P, ...) or a file path (read
            bounded: see ``reconstruct.faces._image``).
        mode: "short" - MediaPipe's short-range detector, for crops and faces that fill much of the
            frame; "full" - the full-range detector, for wide frames with small faces; "auto" - the
            short-range one first, the full-range one when it finds nothing.
        max_faces: keep at most this many (highest scores); landmarks run on those only.
        landmarks: also fit the face mesh (``Face.landmarks``, ``landmarks68``, ``pose``).
        refine: use the attention mesh (478 points with irises) rather than the 468-point one.
        min_score: detector confidence threshold.
        require_landmarks: drop the faces that the face mesh does not confirm (its own detector
            finds no face in the crop). In the bench: all 5 false faces on 300 no-face crops go,
            and 1.2 % of the faces in faces_real (tight, blurred colour crops, profiles).

    Returns: a list of :class:`Face` in the coordinates of ``image`` as given (for a file: its full
    stored size after EXIF rotation). [] for images with no face and images under MIN_SIDE px.
    Raises MissingExtra (an ImportError) when the ``faces`` extra is not installed, ValueError /
    TypeError for input that is not an image.
    """
    _check(mode, max_faces, min_score)
    _backend.modules()
    loaded = prepare(image)
    return _detect_loaded(loaded, mode, int(max_faces), landmarks or require_landmarks, refine, float(min_score),
                          require_landmarks)


def _detect_loaded(loaded, mode, max_faces, landmarks, refine, min_score, require_landmarks) -> list[Face]:
    rgb = loaded.rgb
    h, w = rgb.shape[:2]
    if min(h, w) < MIN_SIDE:
        return []
    f = min(1.0, DETECT_SIDE / max(h, w))
    det = rgb if f == 1.0 else _backend.resize(rgb, max(1, round(w * f)), max(1, round(h * f)))
    sx, sy = w / det.shape[1], h / det.shape[0]
    found = []
    for d in sorted(_run_detectors(det, mode, min_score), key=lambda d: -d[1]):
        # a smaller box mostly inside a better face's box is a part of that face (a mouth, an eye)
        if all(_inside(d[0], k[0]) < 0.5 for k in found):
            found.append(d)
    k = loaded.to_input
    W, H = loaded.size
    faces = []
    for box, score, kps, name in found:
        if len(faces) >= max_faces:
            break
        box = box * np.array([sx, sy, sx, sy])  # -> rgb pixels
        kps = kps * np.array([sx, sy])
        out_box = (min(max(box[0] * k, 0.0), W), min(max(box[1] * k, 0.0), H),
                   min(max(box[2] * k, 0.0), W), min(max(box[3] * k, 0.0), H))
        if out_box[2] - out_box[0] <= 0 or out_box[3] - out_box[1] <= 0:
            continue
        lm = _backend.mesh(rgb, box, refine) if landmarks else None
        if require_landmarks and lm is None:
            continue
        face = dict(box=tuple(float(v) for v in out_box), score=score, detector=name,
                    keypoints=(kps * k).astype(np.float32))
        if lm is not None:
            lm = lm * k
            p68 = to_ibug68(lm)
            pose = head_pose(p68)
            face.update(landmarks=lm[:, :2].astype(np.float32), landmarks_z=lm[:, 2].astype(np.float32),
                        landmarks68=p68[:, :2].astype(np.float32),
                        pose=tuple(round(v, 3) for v in pose),
                        landmark_model="mesh478" if len(lm) == 478 else "mesh468")
        faces.append(Face(**face))
    return faces


_pools: dict[int, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def _pool(workers: int) -> ThreadPoolExecutor:
    """One long-lived pool per worker count, so its threads keep their MediaPipe graphs."""
    with _pools_lock:
        pool = _pools.get(workers)
        if pool is None:
            pool = _pools[workers] = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="faces")
        return pool


def detect_faces_batch(images: Iterable, *, workers: int = 1, **kwargs) -> list[list[Face]]:
    """``detect_faces`` on each image (arrays, Pillow images or paths; same keywords), in order.
    ``workers`` > 1 runs that many threads (a pool kept for the next call), each with its own
    MediaPipe graphs; the graphs release the GIL while they run (2 workers on a 2-core
    machine: 1.0x-1.6x in the bench, depending on what else runs).
    An image that cannot be read raises ValueError naming its index."""
    _check(kwargs.get("mode", "auto"), kwargs.get("max_faces", 16), kwargs.get("min_score", 0.5))
    _backend.modules()
    items: Sequence = list(images)

    def one(i):
        try:
            return detect_faces(items[i], **kwargs)
        except (ValueError, TypeError) as e:
            raise ValueError(f"image {i}: {e}") from None

    if workers <= 1 or len(items) <= 1:
        return [one(i) for i in range(len(items))]
    return list(_pool(int(workers)).map(one, range(len(items))))


def close() -> None:
    """Free the calling thread's MediaPipe graphs (they are rebuilt when next needed)."""
    _backend.close()


__all__ = ["MODES", "DETECT_SIDE", "MIN_SIDE", "detect_faces", "detect_faces_batch", "close"]
