"""The 68-point iBUG subset of MediaPipe's face mesh, and head pose from it.

``IBUG68_FROM_MESH[i]`` is the face-mesh vertex (0..467) that stands for point ``i`` of the 68-point
iBUG / Multi-PIE layout (jaw 0-16, brows 17-26, nose 27-35, eyes 36-47, lips 48-67; "right" is
the subject's right, on the image's left). Origin: derived here, not copied from another project.
``reconstruct/faces/_derive68.py`` renders the ICT-FaceKit neutral head (MIT, USC ICT; it ships the
vertex of each Multi-PIE point) in 8 views (frontal, mouth open, turned +-25 deg, tilted +-15 deg),
runs mediapipe's face mesh on each render and, for every iBUG point, takes the mesh vertex nearest
to it on average over the views, chosen among the vertices of the matching part of the face
(mediapipe's own face-oval, eyebrow, eye and lip contour lists; the rest of the mesh for the nose),
one-to-one within each part and left-right symmetric. Mean distance of the chosen vertices to the
ICT points over the 8 views: 0.02-0.05 inter-ocular distances (IOD) for eyes, nose and lips,
0.05-0.09 for the brows (the ICT brow points sit above mediapipe's brow line) and jaw points up to
0.11 (the mesh outline has few vertices there). Rerun it to check (``python -m
reconstruct.faces._derive68 ICT_NPZ``; the test ``test_ibug68_table_rederived`` does).

``REF68_3D`` is mediapipe's 3D output at those vertices on the frontal ICT render (x right, y down,
z away from the camera; made symmetric, centred, unit RMS radius): the zero pose for
:func:`head_pose`.
"""

from __future__ import annotations

import numpy as np

IBUG68_FROM_MESH = (
    127, 234, 93, 132, 172, 150, 149, 148, 152, 377, 378, 379, 397, 361, 323, 454, 356,  # jaw 0-16
    70, 63, 105, 66, 107,  # right brow 17-21 (image left)
    336, 296, 334, 293, 300,  # left brow 22-26
    168, 197, 195, 4,  # nose bridge 27-30 (30: tip)
    240, 97, 2, 326, 460,  # nose base 31-35
    33, 160, 158, 155, 153, 163,  # right eye 36-41 (36: outer corner, 39: inner corner)
    382, 385, 387, 263, 390, 380,  # left eye 42-47 (42: inner corner, 45: outer corner)
    61, 40, 37, 0, 267, 270, 291, 321, 314, 17, 84, 91,  # outer lips 48-59 (48, 54: corners)
    78, 81, 13, 311, 308, 402, 14, 178,  # inner lips 60-67
)

IBUG68_PARTS = {
    "jaw": range(0, 17), "right_brow": range(17, 22), "left_brow": range(22, 27),
    "nose_bridge": range(27, 31), "nose_base": range(31, 36), "right_eye": range(36, 42),
    "left_eye": range(42, 48), "outer_lips": range(48, 60), "inner_lips": range(60, 68),
}


def _mirror68() -> np.ndarray:
    m = list(range(68))
    pairs = [(i, 16 - i) for i in range(8)] + [(17 + i, 26 - i) for i in range(5)] + [(31, 35), (32, 34)]
    pairs += [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]
    pairs += [(48, 54), (49, 53), (50, 52), (55, 59), (56, 58), (60, 64), (61, 63), (65, 67)]
    for a, b in pairs:
        m[a], m[b] = b, a
    return np.array(m)


#: ``IBUG68_MIRROR[i]``: the point that ``i`` becomes when the image is mirrored left-right.
IBUG68_MIRROR = _mirror68()

REF68_3D = np.array([
    [-1.1250, -0.5413, 0.8920], [-1.1138, -0.2971, 0.9816], [-1.1008, -0.0508, 1.0004], [-1.0689, 0.2143, 0.9657],
    [-0.8979, 0.7065, 0.7120], [-0.6383, 1.0153, 0.3740], [-0.5123, 1.1157, 0.2542], [-0.2129, 1.2609, 0.0487],
    [0.0000, 1.2794, 0.0183], [0.2129, 1.2609, 0.0487], [0.5123, 1.1157, 0.2542], [0.6383, 1.0153, 0.3740],
    [0.8979, 0.7065, 0.7120], [1.0689, 0.2143, 0.9657], [1.1008, -0.0508, 1.0004], [1.1138, -0.2971, 0.9816],
    [1.1250, -0.5413, 0.8920], [-0.9362, -0.8720, 0.0492], [-0.8339, -0.9692, -0.0984], [-0.6691, -1.0238, -0.2086],
    [-0.4612, -1.0190, -0.3076], [-0.2303, -1.0000, -0.3583], [0.2303, -1.0000, -0.3583], [0.4612, -1.0190, -0.3076],
    [0.6691, -1.0238, -0.2086], [0.8339, -0.9692, -0.0984], [0.9362, -0.8720, 0.0492], [0.0000, -0.7351, -0.3272],
    [0.0000, -0.4980, -0.4787], [0.0000, -0.3831, -0.5670], [0.0000, -0.1077, -0.6937], [-0.2588, 0.0810, -0.3064],
    [-0.1283, 0.1311, -0.3563], [0.0000, 0.1314, -0.3834], [0.1283, 0.1311, -0.3563], [0.2588, 0.0810, -0.3064],
    [-0.7479, -0.6553, 0.0528], [-0.6334, -0.7190, -0.0625], [-0.4616, -0.7332, -0.0923], [-0.3184, -0.6394, -0.0333],
    [-0.4413, -0.6116, -0.0656], [-0.6702, -0.6209, -0.0041], [0.3184, -0.6394, -0.0333], [0.4616, -0.7332, -0.0923],
    [0.6334, -0.7190, -0.0625], [0.7479, -0.6553, 0.0528], [0.6702, -0.6209, -0.0041], [0.4413, -0.6116, -0.0656],
    [-0.4264, 0.5341, -0.0396], [-0.3312, 0.4716, -0.2193], [-0.1236, 0.3983, -0.3643], [0.0000, 0.4198, -0.3770],
    [0.1236, 0.3983, -0.3643], [0.3312, 0.4716, -0.2193], [0.4264, 0.5341, -0.0396], [0.3229, 0.6102, -0.1803],
    [0.1250, 0.6989, -0.2890], [0.0000, 0.7072, -0.2969], [-0.1250, 0.6989, -0.2890], [-0.3229, 0.6102, -0.1803],
    [-0.3731, 0.5212, -0.0730], [-0.1779, 0.5197, -0.2214], [0.0000, 0.5304, -0.2746], [0.1779, 0.5197, -0.2214],
    [0.3731, 0.5212, -0.0730], [0.1933, 0.5314, -0.2220], [0.0000, 0.5402, -0.2764], [-0.1933, 0.5314, -0.2220],
])


def to_ibug68(landmarks: np.ndarray) -> np.ndarray:
    """(N>=468, C) face-mesh landmarks -> (68, C), the iBUG points in iBUG order."""
    landmarks = np.asarray(landmarks)
    if landmarks.ndim != 2 or landmarks.shape[0] < 468:
        raise ValueError(f"expected face-mesh landmarks of shape (468 or 478, C), got {landmarks.shape}")
    return landmarks[list(IBUG68_FROM_MESH)]


def head_pose(points68_3d: np.ndarray) -> tuple[float, float, float]:
    """Head pose (yaw, pitch, roll) in degrees from the 68 iBUG points in 3D, (68,3) as mediapipe
    gives them (x right, y down in pixels; z away from the camera, same scale as x).

    A similarity (rotation, scale, shift) is fitted from :data:`REF68_3D` to the points (Umeyama) and
    its rotation split as R = Rz(roll) Rx(pitch) Ry(yaw) in a camera frame with +X to the image's
    right, +Y up, +Z toward the camera. yaw > 0: the face turns toward the image's right (the
    subject's left); pitch > 0: it tilts up; roll > 0: it leans clockwise on screen. Zero is the ICT
    model's own frontal orientation, looked at straight on. Landmarks are weak-perspective, so
    angles past ~60 deg of yaw are less sure.
    """
    p = np.asarray(points68_3d, dtype=np.float64)
    if p.shape != (68, 3):
        raise ValueError(f"expected (68, 3) points, got {p.shape}")
    flip = np.array([1.0, -1.0, -1.0])  # image (x right, y down, z away) -> camera (X right, Y up, Z toward)
    a = REF68_3D * flip
    b = p * flip
    a = a - a.mean(0)
    b = b - b.mean(0)
    u, _, vt = np.linalg.svd(b.T @ a)
    d = np.sign(np.linalg.det(u @ vt))
    r = u @ np.diag([1.0, 1.0, d]) @ vt  # b ~ s * r @ a
    pitch = np.degrees(np.arcsin(np.clip(-r[2, 1], -1.0, 1.0)))
    yaw = np.degrees(np.arctan2(-r[2, 0], r[2, 2]))
    roll = np.degrees(np.arctan2(r[0, 1], r[1, 1]))
    return float(yaw), float(pitch), float(roll)
