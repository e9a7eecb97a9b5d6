"""The Face record that every function of reconstruct.faces returns."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: ``Face.detector`` values: which MediaPipe face-detection model (BlazeFace) found the face.
DETECTORS = {
    "short": "mediapipe face_detection_short_range (128x128 input; faces within ~2 m / filling "
             "much of the frame)",
    "full": "mediapipe face_detection_full_range_sparse (192x192 input; faces within ~5 m, small "
            "in the frame)",
}

#: ``Face.landmark_model`` values.
LANDMARK_MODELS = {
    "mesh478": "mediapipe face_landmark_with_attention (468 mesh points + 10 iris points)",
    "mesh468": "mediapipe face_landmark (468 mesh points)",
}

#: Names of the 6 detector keypoints, in ``Face.keypoints`` order ("right" = the subject's right).
KEYPOINT_NAMES = ("right_eye", "left_eye", "nose_tip", "mouth_centre", "right_ear_tragion",
                  "left_ear_tragion")


@dataclass(frozen=True, eq=False)
class Face:
    """One face found in an image. All coordinates are pixels of the image as given (x right,
    y down, origin at the top-left corner of the top-left pixel), whatever scale detection ran at.

    Shapes: N = 478 (``refine=True``: mesh + irises) or 468 landmarks.
    """

    box: tuple[float, float, float, float]
    """(x0, y0, x1, y1), the detector's box, clipped to the image."""
    score: float
    """Detector confidence, 0..1."""
    detector: str
    """Which model found it: "short" or "full" (see :data:`DETECTORS`)."""
    keypoints: np.ndarray
    """(6, 2) float32 detector keypoints, in :data:`KEYPOINT_NAMES` order."""
    landmarks: np.ndarray | None = None
    """(N, 2) float32 face-mesh points (may fall a little outside the image for a face cut by its
    edge); None when landmarks were not asked for or the mesh model did not confirm the face."""
    landmarks_z: np.ndarray | None = None
    """(N,) float32 relative depth of each landmark in pixels (smaller = nearer the camera)."""
    landmarks68: np.ndarray | None = None
    """(68, 2) float32: the iBUG 68-point subset of ``landmarks`` (see ``IBUG68_FROM_MESH``)."""
    pose: tuple[float, float, float] | None = None
    """(yaw, pitch, roll) degrees from the landmarks (see :func:`head_pose` for the signs)."""
    landmark_model: str | None = None
    """"mesh478" or "mesh468" (see :data:`LANDMARK_MODELS`), None without landmarks."""

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def center(self) -> tuple[float, float]:
        return ((self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2)

    def to_dict(self) -> dict:
        """Plain JSON-ready data (lists and floats)."""
        def arr(a):
            return None if a is None else np.round(np.asarray(a, dtype=np.float64), 2).tolist()

        return {
            "box": [round(float(v), 2) for v in self.box], "score": round(float(self.score), 4),
            "detector": self.detector, "keypoints": arr(self.keypoints), "landmarks": arr(self.landmarks),
            "landmarks_z": arr(self.landmarks_z), "landmarks68": arr(self.landmarks68),
            "pose": None if self.pose is None else [round(float(v), 2) for v in self.pose],
            "landmark_model": self.landmark_model,
        }
