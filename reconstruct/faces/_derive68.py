"""How the 68-point iBUG table in :mod:`reconstruct.faces._landmarks` was made (a dev tool).

Not imported by the package: it needs mediapipe (the ``faces`` extra) and the ICT-FaceKit pack
(``../shared/data/ict_face/ict_face_model.npz``, MIT, USC ICT). Run it to print the table again::

    python -m reconstruct.faces._derive68 ../shared/data/ict_face/ict_face_model.npz

The idea: the ICT head ships the vertex of each of the 68 Multi-PIE / iBUG points
(``landmarks_multipie68``), so a render of it shows where the 68 points are. MediaPipe's face mesh
run on the same render shows where its 468 vertices are. For every iBUG point we take the mesh
vertex that lies nearest to it over several renders (neutral and mouth open, turned left/right,
tilted up/down), choosing only among the mesh vertices of the matching part of the face, read from
mediapipe's own contour lists (``FACEMESH_FACE_OVAL`` for the jaw, the eyebrow, eye and lip loops
for those points, the rest of the mesh for the nose), with one-to-one assignment inside each part
(``scipy.optimize.linear_sum_assignment``). Rendering is a small numpy z-buffer rasteriser with
Lambert shading (no texture, no eyebrows): mediapipe finds the face and fits its mesh on it.

The same renders give the frontal reference shape used for head pose (``REF68_3D``): mediapipe's
3D landmarks at the 68 chosen vertices on the neutral frontal render, made left-right symmetric,
centred and scaled to unit RMS radius. Its pose is yaw = pitch = roll = 0 by construction (the ICT
model's own orientation, camera on its +Z axis).
"""

from __future__ import annotations

import sys

import numpy as np

from ._landmarks import IBUG68_MIRROR

# (yaw, pitch, jawOpen) of the renders used for the matching; yaw > 0 turns the face to the image's
# right, pitch > 0 tilts it up.
VIEWS = ((0.0, 0.0, 0.0), (0.0, 0.0, 0.45), (-25.0, 0.0, 0.0), (25.0, 0.0, 0.0),
         (0.0, 15.0, 0.0), (0.0, -15.0, 0.0), (-20.0, 0.0, 0.45), (20.0, 0.0, 0.45))

_PARTS_RENDERED = ("face", "head_and_neck", "mouth_socket", "eye_socket_left", "eye_socket_right",
                   "gums_and_tongue", "teeth", "eyeball_left", "eyeball_right")
_PALETTE = {"M_Face": (205, 160, 135), "M_BackHead": (120, 80, 60), "M_GumsTongue": (150, 60, 60),
            "M_Teeth": (230, 230, 220), "M_ScleraLeft": (235, 235, 230), "M_ScleraRight": (235, 235, 230),
            "M_IrisLeft": (60, 40, 30), "M_IrisRight": (60, 40, 30)}
_PIVOT = np.array([0.0, 2.0, 0.0])  # rotation centre, cm, roughly the middle of the ICT head


def rotation(yaw: float, pitch: float, roll: float = 0.0) -> np.ndarray:
    """3x3 rotation in the ICT / camera frame (+X image right, +Y up, +Z toward the camera):
    yaw turns +Z toward +X, pitch turns +Z toward +Y, roll turns +X toward -Y (clockwise on screen)."""
    y, p, r = np.radians([yaw, pitch, roll])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rx = np.array([[1, 0, 0], [0, np.cos(p), np.sin(p)], [0, -np.sin(p), np.cos(p)]])
    rz = np.array([[np.cos(r), np.sin(r), 0], [-np.sin(r), np.cos(r), 0], [0, 0, 1]])
    return rz @ rx @ ry


def rasterize(verts: np.ndarray, tris: np.ndarray, colors: np.ndarray, size: int = 512,
              dist: float = 60.0, fov_deg: float = 22.0) -> tuple[np.ndarray, np.ndarray]:
    """Z-buffer render of a triangle mesh seen by a pinhole camera at (0, 0, dist) looking down -Z.
    verts (N,3) cm, tris (T,3), colors (T,3) 0..255 -> (image (size,size,3) uint8, pixel xy (N,2)).
    Vectorised: every triangle is tested against the pixel centres of its bounding box (boxes
    grouped by size), and the nearest fragment of each pixel wins."""
    f = size / 2 / np.tan(np.radians(fov_deg) / 2)
    z = dist - verts[:, 2]
    px = np.stack([f * verts[:, 0] / z + size / 2, -f * verts[:, 1] / z + size / 2, z], 1)
    n = np.cross(verts[tris[:, 1]] - verts[tris[:, 0]], verts[tris[:, 2]] - verts[tris[:, 0]])
    n /= np.linalg.norm(n, axis=1, keepdims=True) + 1e-12
    light = np.array([0.3, 0.4, 1.0]) / np.linalg.norm([0.3, 0.4, 1.0])
    col = colors * (np.abs(n @ light) * 0.75 + 0.25)[:, None]
    a, b, c = px[tris[:, 0]], px[tris[:, 1]], px[tris[:, 2]]
    lo = np.floor(np.minimum(np.minimum(a, b), c)[:, :2]).astype(int)
    hi = np.ceil(np.maximum(np.maximum(a, b), c)[:, :2]).astype(int)
    level = np.ceil(np.log2(np.maximum((hi - lo).max(1), 1))).astype(int)  # box side <= 2**level
    frag_pix, frag_z, frag_tri = [], [], []
    for k in np.unique(level):
        sel = np.flatnonzero(level == k)
        side = 2 ** k + 1
        for chunk in np.array_split(sel, len(sel) * side * side // 4_000_000 + 1):
            g = np.arange(side)
            xs = lo[chunk, 0, None, None] + g[None, None, :] + 0.5
            ys = lo[chunk, 1, None, None] + g[None, :, None] + 0.5
            ax, ay, az = (a[chunk, i, None, None] for i in range(3))
            bx, by, bz = (b[chunk, i, None, None] for i in range(3))
            cx, cy, cz = (c[chunk, i, None, None] for i in range(3))
            d = (by - cy) * (ax - cx) + (cx - bx) * (ay - cy)
            d = np.where(np.abs(d) < 1e-12, np.nan, d)  # degenerate triangles cover nothing
            w0 = ((by - cy) * (xs - cx) + (cx - bx) * (ys - cy)) / d
            w1 = ((cy - ay) * (xs - cx) + (ax - cx) * (ys - cy)) / d
            w2 = 1 - w0 - w1
            inside = (w0 >= 0) & (w1 >= 0) & (w2 >= 0) & (xs < size) & (ys < size) & (xs > 0) & (ys > 0)
            t_idx, yy, xx = np.nonzero(inside)
            zz = (w0 * az + w1 * bz + w2 * cz)[t_idx, yy, xx]
            pix = (lo[chunk[t_idx], 1] + yy) * size + (lo[chunk[t_idx], 0] + xx)
            frag_pix.append(pix)
            frag_z.append(zz)
            frag_tri.append(chunk[t_idx])
    pix, zz, tri = np.concatenate(frag_pix), np.concatenate(frag_z), np.concatenate(frag_tri)
    order = np.lexsort((zz, pix))
    first = order[np.unique(pix[order], return_index=True)[1]]
    img = np.full((size * size, 3), 235.0)
    img[pix[first]] = col[tri[first]]
    return img.reshape(size, size, 3).clip(0, 255).astype(np.uint8), px[:, :2]


def render_ict(model: dict, yaw: float = 0.0, pitch: float = 0.0, roll: float = 0.0,
               jaw_open: float = 0.0, size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Render the ICT neutral head turned by (yaw, pitch, roll) degrees with the jawOpen blendshape
    at ``jaw_open`` -> (RGB image, the 68 iBUG points in pixels (68,2))."""
    v = model["neutral_vertices"].astype(np.float64)
    if jaw_open:
        names = [str(s) for s in model["expression_names"]]
        v = v + jaw_open * model["expression_deltas"][names.index("jawOpen")].astype(np.float64)
    v = (v - _PIVOT) @ rotation(yaw, pitch, roll).T + _PIVOT
    regions = [str(s) for s in model["region_names"]]
    sel = np.concatenate([np.arange(*model["region_triangle_ranges"][regions.index(r)])
                          for r in _PARTS_RENDERED])
    mats = [str(s) for s in model["material_names"]]
    colors = np.array([_PALETTE.get(mats[m], (128, 128, 128)) for m in model["triangle_material"][sel]], float)
    img, px = rasterize(v, model["faces"][sel], colors, size=size)
    return img, px[model["landmarks_multipie68"]]


def _mesh_landmarks(img: np.ndarray) -> np.ndarray:
    from mediapipe.python.solutions import face_mesh

    with face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=False) as fm:
        res = fm.process(img)
    if not res.multi_face_landmarks:
        raise RuntimeError("mediapipe found no face in the ICT render")
    h, w = img.shape[:2]
    return np.array([[p.x * w, p.y * h, p.z * w] for p in res.multi_face_landmarks[0].landmark])


def _loops(edges) -> list[list[int]]:
    """Split a set of mesh edges into its connected chains (vertex lists)."""
    adj: dict[int, set[int]] = {}
    for a, b in edges:
        adj.setdefault(a, set()).add(b)
        adj.setdefault(b, set()).add(a)
    seen: set[int] = set()
    out = []
    for s in sorted(adj):
        if s in seen:
            continue
        comp, stack = [], [s]
        while stack:
            u = stack.pop()
            if u in seen:
                continue
            seen.add(u)
            comp.append(u)
            stack.extend(adj[u] - seen)
        out.append(sorted(comp))
    return out


def candidate_parts(mesh: np.ndarray) -> list[tuple[range, list[int]]]:
    """(iBUG point range, allowed mesh vertices) for each part of the face, from mediapipe's contour
    lists: jaw -> face oval, brows -> eyebrows, eyes -> eye loops, outer / inner lips -> the two lip
    loops (the outer one is the wider in ``mesh``, (468+,2+) a frontal fit), nose -> every other
    vertex of the 468."""
    from mediapipe.python.solutions import face_mesh_connections as fc

    oval = sorted({i for e in fc.FACEMESH_FACE_OVAL for i in e})
    brows = sorted({i for e in fc.FACEMESH_LEFT_EYEBROW | fc.FACEMESH_RIGHT_EYEBROW for i in e})
    eyes = sorted({i for e in fc.FACEMESH_LEFT_EYE | fc.FACEMESH_RIGHT_EYE for i in e})
    inner, outer = sorted(_loops(fc.FACEMESH_LIPS), key=lambda loop: np.ptp(mesh[loop, 0]))
    used = set(oval) | set(brows) | set(eyes) | set(inner) | set(outer)
    rest = [i for i in range(468) if i not in used]
    return [(range(0, 17), oval), (range(17, 27), brows), (range(27, 36), rest), (range(36, 48), eyes),
            (range(48, 60), outer), (range(60, 68), inner)]


def derive(npz_path: str, views=VIEWS, size: int = 512) -> dict:
    """Match the 68 iBUG points to mesh vertices over ``views``; returns {"indices": (68,) int,
    "error": (68,) mean distance in inter-ocular units, "ref3d": (68,3) frontal reference}."""
    from scipy.optimize import linear_sum_assignment

    with np.load(npz_path) as z:
        model = {k: z[k] for k in ("neutral_vertices", "faces", "expression_names", "expression_deltas",
                                   "region_names", "region_triangle_ranges", "material_names",
                                   "triangle_material", "landmarks_multipie68")}
    cost = np.zeros((68, 468))
    frontal = None
    for yaw, pitch, jaw in views:
        img, ib = render_ict(model, yaw, pitch, jaw_open=jaw, size=size)
        mesh = _mesh_landmarks(img)
        iod = np.linalg.norm(ib[36] - ib[45])
        cost += np.linalg.norm(ib[:, None, :] - mesh[None, :468, :2], axis=2) / iod / len(views)
        if (yaw, pitch, jaw) == (0.0, 0.0, 0.0):
            frontal = mesh
    # make the choice left-right symmetric: point i at vertex v costs as much as its mirror point at
    # v's mirror vertex (mediapipe's mesh is symmetric; its mirror map is read off the frontal fit)
    vmirror = mesh_mirror(frontal)
    cost = (cost + cost[IBUG68_MIRROR][:, vmirror]) / 2
    idx = np.zeros(68, int)
    for pts, cand in candidate_parts(frontal):
        r, c = linear_sum_assignment(cost[np.ix_(list(pts), cand)])
        idx[np.array(list(pts))[r]] = np.array(cand)[c]
    out = {"indices": idx, "error": cost[np.arange(68), idx]}
    if frontal is not None:
        out["ref3d"] = symmetric_reference(frontal[idx])
    return out


def mesh_mirror(mesh: np.ndarray) -> np.ndarray:
    """(468,) index of each mesh vertex's left-right mirror, from a frontal fit ``mesh`` (468+,3):
    one-to-one nearest match of the vertices to their positions reflected about the midline."""
    from scipy.optimize import linear_sum_assignment

    p = mesh[:468, :2]
    centre = np.median(p[:, 0])
    q = p * np.array([-1.0, 1.0]) + np.array([2 * centre, 0.0])
    d = np.linalg.norm(q[:, None, :] - p[None, :, :], axis=2)
    r, c = linear_sum_assignment(d)
    out = np.empty(468, int)
    out[r] = c
    return out


def symmetric_reference(p68: np.ndarray) -> np.ndarray:
    """(68,3) mediapipe points (x right, y down, z away from the camera, pixels) -> the same shape
    made left-right symmetric, centred, unit RMS radius."""
    p = p68 - p68.mean(0)
    mirrored = p[IBUG68_MIRROR] * np.array([-1.0, 1.0, 1.0])
    p = (p + mirrored) / 2
    p -= p.mean(0)
    return p / np.sqrt((p ** 2).sum(1).mean())


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m reconstruct.faces._derive68 ICT_FACE_MODEL_NPZ", file=sys.stderr)
        return 2
    out = derive(argv[0])
    np.set_printoptions(linewidth=100)
    print("IBUG68_FROM_MESH =", tuple(int(i) for i in out["indices"]))
    print("mean distance (inter-ocular units) per point:", np.round(out["error"], 3).tolist())
    print("REF68_3D =", np.round(out["ref3d"], 4).tolist())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
