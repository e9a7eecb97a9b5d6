"""Faces: detection, 478-point face mesh, its 68-point iBUG subset, head pose, and tracking.

Light by design (``detect/`` imports it): numpy, scipy and Pillow at import; MediaPipe (the
``faces`` extra) is imported on first use, and its absence raises ``MissingExtra`` ("install the
faces extra: ...") only then. The models are those bundled in the mediapipe wheel, never
downloaded.

Example::

    from reconstruct.faces import FaceTracker, detect_faces

    faces = detect_faces(rgb)          # (H,W,3) uint8, grey, RGBA, a PIL image or a path
    f = faces[0]                       # best score first
    f.box, f.score, f.detector         # (x0, y0, x1, y1) pixels, 0..1, "short" | "full"
    f.landmarks.shape                  # (478, 2) face mesh + irises (refine=True) or (468, 2)
    f.landmarks68.shape, f.pose        # (68, 2) iBUG subset; (yaw, pitch, roll) degrees

    tracker = FaceTracker()            # video: stable ids across frames
    for frame in frames:
        for track_id, face in tracker.update(detect_faces(frame)):
            ...
"""

from reconstruct._deps import MissingExtra

from ._api import DETECT_SIDE, MIN_SIDE, MODES, close, detect_faces, detect_faces_batch
from ._boxes import box_iou, same_face
from ._image import MAX_DECODE_PIXELS, MAX_LOAD_SIDE, load_image
from ._landmarks import IBUG68_FROM_MESH, IBUG68_MIRROR, IBUG68_PARTS, REF68_3D, head_pose, to_ibug68
from ._tracker import FaceTracker, Track
from ._types import DETECTORS, KEYPOINT_NAMES, LANDMARK_MODELS, Face

__all__ = [
    "DETECTORS", "DETECT_SIDE", "IBUG68_FROM_MESH", "IBUG68_MIRROR", "IBUG68_PARTS", "KEYPOINT_NAMES",
    "LANDMARK_MODELS", "MAX_DECODE_PIXELS", "MAX_LOAD_SIDE", "MIN_SIDE", "MODES", "REF68_3D", "Face",
    "FaceTracker", "MissingExtra", "Track", "box_iou", "close", "detect_faces", "detect_faces_batch", "head_pose",
    "load_image", "same_face", "to_ibug68",
]
