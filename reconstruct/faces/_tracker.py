"""FaceTracker: stable ids for faces across video frames."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from ._types import Face


@dataclass
class Track:
    """One tracked face: its id, last box, box velocity (per frame), frames since last seen."""

    track_id: int
    box: np.ndarray
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4))
    missed: int = 0
    hits: int = 1

    def predicted(self) -> np.ndarray:
        return self.box + self.velocity * (self.missed + 1)


def _iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ix = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    iy = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = ix * iy
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


class FaceTracker:
    """Assign stable ids to the faces of consecutive frames.

    Each frame's faces are matched one-to-one (Hungarian) to the live tracks, whose boxes are moved
    on by their recent velocity. A pair may match when its IoU is at least ``iou_threshold`` or its
    centres are closer than ``max_center_shift`` x the face size (sqrt of the box area), and the
    sizes differ by less than 2x. Unmatched faces start new tracks (ids 0, 1, 2, ... never reused);
    a track that goes unmatched is kept ``max_missed`` frames, so a face the detector misses for a
    few frames keeps its id.

    Example::

        tracker = FaceTracker()
        for frame in frames:
            for track_id, face in tracker.update(detect_faces(frame)):
                ...
    """

    def __init__(self, *, iou_threshold: float = 0.3, max_center_shift: float = 0.6, max_missed: int = 15,
                 smoothing: float = 0.5):
        self.iou_threshold = float(iou_threshold)
        self.max_center_shift = float(max_center_shift)
        self.max_missed = int(max_missed)
        self.smoothing = float(smoothing)
        self._tracks: list[Track] = []
        self._next_id = 0

    @property
    def tracks(self) -> list[Track]:
        """The live tracks (seen within the last ``max_missed`` frames)."""
        return list(self._tracks)

    def reset(self) -> None:
        self._tracks = []
        self._next_id = 0

    def update(self, faces: Sequence[Face | tuple | np.ndarray]) -> list[tuple[int, Face]]:
        """Match this frame's faces (``Face`` objects or plain (x0, y0, x1, y1) boxes) to the tracks
        -> [(track_id, face)] in the order given."""
        boxes = np.array([np.asarray(f.box if isinstance(f, Face) else f, dtype=np.float64) for f in faces],
                         dtype=np.float64).reshape(-1, 4)
        ids = [-1] * len(boxes)
        if self._tracks and len(boxes):
            from scipy.optimize import linear_sum_assignment  # here: it takes ~0.4 s to import

            pred = np.array([t.predicted() for t in self._tracks])
            iou = _iou_matrix(pred, boxes)
            pc = (pred[:, :2] + pred[:, 2:]) / 2
            bc = (boxes[:, :2] + boxes[:, 2:]) / 2
            ps = np.sqrt(np.clip((pred[:, 2] - pred[:, 0]) * (pred[:, 3] - pred[:, 1]), 1e-9, None))
            bs = np.sqrt(np.clip((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), 1e-9, None))
            dist = np.linalg.norm(pc[:, None] - bc[None], axis=2) / ((ps[:, None] + bs[None]) / 2)
            ratio = np.maximum(ps[:, None] / bs[None], bs[None] / ps[:, None])
            ok = ((iou >= self.iou_threshold) | (dist <= self.max_center_shift)) & (ratio < 2.0)
            cost = np.where(ok, (1.0 - iou) + dist, 1e6)
            rows, cols = linear_sum_assignment(cost)
            for r, c in zip(rows, cols):
                if ok[r, c]:
                    t = self._tracks[r]
                    step = (boxes[c] - t.box) / (t.missed + 1)
                    t.velocity = self.smoothing * t.velocity + (1 - self.smoothing) * step
                    t.box = boxes[c].copy()
                    t.missed = 0
                    t.hits += 1
                    ids[c] = t.track_id
        matched = set(ids)
        for t in self._tracks:
            if t.track_id not in matched:
                t.missed += 1
        self._tracks = [t for t in self._tracks if t.missed <= self.max_missed]
        for c, box in enumerate(boxes):
            if ids[c] < 0:
                self._tracks.append(Track(self._next_id, box.copy()))
                ids[c] = self._next_id
                self._next_id += 1
        return list(zip(ids, faces))
