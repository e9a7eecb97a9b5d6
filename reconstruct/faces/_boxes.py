"""Face boxes (x0, y0, x1, y1): overlap and same-face tests, shared by detection, video and verify."""

from __future__ import annotations


def box_iou(p, q) -> float:
    """Intersection over union of two boxes (0 when they do not overlap or are empty)."""
    ix = max(0.0, min(p[2], q[2]) - max(p[0], q[0]))
    iy = max(0.0, min(p[3], q[3]) - max(p[1], q[1]))
    inter = ix * iy
    union = (p[2] - p[0]) * (p[3] - p[1]) + (q[2] - q[0]) * (q[3] - q[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def same_face(a, b, *, iou: float = 0.3, inside: float = 0.5) -> bool:
    """Whether two detections are one face: IoU >= ``iou``, or at least ``inside`` of either box lies
    in the other (a face and a larger, weaker box around it, as MediaPipe's two models can give)."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    aa = max((a[2] - a[0]) * (a[3] - a[1]), 1e-9)
    ba = max((b[2] - b[0]) * (b[3] - b[1]), 1e-9)
    return inter / (aa + ba - inter) >= iou or inter / aa >= inside or inter / ba >= inside
