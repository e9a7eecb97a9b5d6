"""MakeHuman (hm08) body generator: training subjects for single-photo PIFu.

Reads the CC0 MakeHuman asset pack (``../shared/data/makehuman`` next to the
repository, or any ``root`` given) and builds shaped, posed, dressed and coloured
bodies. No MakeHuman code is used (it is AGPL); the blending, rigging and fitting
below are re-derived from the pack's README and the file formats.

Conventions
-----------
* Internally hm08 units (1 unit = 1 dm), +Y up, face toward +Z, +X = character's left.
  Outputs (:class:`ClothedBody`) are in metres, feet on y = 0, centred in x/z on the
  skin's bounding box.
* Macro sliders are in [0, 1] (:class:`BodyParams`). A target's weight is the product of
  its variables' linear interpolation weights. gender: 0 female, 1 male. muscle, weight,
  height, proportions: 0.5 is the neutral point (no target), 0 / 1 the min / max target.
  age: piecewise linear over the nodes baby 0, child 0.1875, young 0.5, old 1, i.e. 1,
  11, 25 and 90 years (:func:`age_years`). Race weights are normalised to sum to 1.
* Skeleton: joints are means of vertex lists of the shaped mesh; bone rest frames have
  y along head->tail and x along the bone's rotation-plane normal made orthogonal to y.
  Poses are per-bone *local rotations in world-aligned rest axes* (the BVH convention):
  a bone's global rotation is its parent's times its own, applied about its rest head.
  Bone rolls therefore never enter the posing; the frames are informational.
* BVH files are Z-up (Blender axes): (x, y, z)_bvh = (x, -z, y)_hm08. Only rotations are
  used (MakeHuman does the same); joints that the skeleton lacks (metatarsals) are
  folded into their skeleton descendants.
* Skinning: linear blend skinning with ``default_weights.mhw`` normalised per vertex.
  Garments are fitted in rest shape with the mhclo formula and skinned with weights
  interpolated from their three reference vertices (also for the shoes, whose own
  ``.mhw`` is not used).

Approximate / missing
---------------------
* Random poses are random per-joint swings and twists within rough human limits
  (:data:`JOINT_LIMITS`) about anatomical axes taken from the rest pose; there is no
  collision handling, so extreme draws can push a hand into the torso.
* LBS artefacts (candy-wrapper twists, knee/elbow volume loss) are not corrected.
* Garment thickness is an outward offset of the sheet along vertex normals, stitched at
  the boundary into a closed shell; in tight concave folds the offset shell can
  self-intersect (occupancy by winding number / parity is still right almost everywhere).
* Cloth textures of the pack are missing: colours and patterns (solid, stripes, checks,
  noise) are procedural vertex colours at the garment's vertex resolution (~1-2 cm).
  No hair, no eyes, no eyebrows; skin is a smooth single tone with slight noise.
"""

from __future__ import annotations

import functools
import gzip
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from reconstruct._deps import require

DEFAULT_ROOT = Path(__file__).resolve().parents[3] / "shared" / "data" / "makehuman"

N_BODY_VERTS = 13380  # base.obj `body` group: vertices 0..13379, a watertight skin
POSE_NAMES = ("tpose", "benchmark", "standing01", "sit01", "run01")
GARMENTS = ("female_casualsuit01", "male_casualsuit02", "shoes01")
RACES = ("african", "asian", "caucasian")
AGES = ("baby", "child", "young", "old")
_AGE_NODES = np.array([0.0, 0.1875, 0.5, 1.0])
_AGE_YEARS = np.array([1.0, 11.0, 25.0, 90.0])
# hm08 -> BVH axes: bvh = _C @ hm
_C = np.array([[1.0, 0, 0], [0, 0, -1.0], [0, 1.0, 0]])


# ----------------------------------------------------------------------------- parameters

@dataclass(frozen=True)
class BodyParams:
    """MakeHuman macro sliders, all in [0, 1]; 0.5 (and equal races) is the neutral body."""

    gender: float = 0.5
    """0 female, 1 male."""
    age: float = 0.5
    """0 = 1 year, 0.1875 = 11, 0.5 = 25, 1 = 90 years (piecewise linear)."""
    muscle: float = 0.5
    weight: float = 0.5
    height: float = 0.5
    proportions: float = 0.5
    """0.5 neutral, 1 ideal, 0 uncommon proportions (no effect on babies)."""
    african: float = 1 / 3
    asian: float = 1 / 3
    caucasian: float = 1 / 3

    def races(self) -> dict[str, float]:
        r = np.clip(np.array([self.african, self.asian, self.caucasian], float), 0, None)
        r = r / r.sum() if r.sum() > 0 else np.full(3, 1 / 3)
        return dict(zip(RACES, r.tolist()))

    @staticmethod
    def random(rng: np.random.Generator, adult: bool = True) -> "BodyParams":
        """Random sliders; ``adult`` draws ages of about 21 to 80 years.

        Height stays in [0.3, 0.72]: the min/max height targets are extreme (about 1.2
        to 2.45 m for a young adult), so this keeps adults at roughly 1.4 to 2.1 m.
        """
        age = rng.uniform(0.4375, 0.92) if adult else rng.uniform(0.0, 1.0)
        race = rng.dirichlet([0.6, 0.6, 0.6])
        return BodyParams(gender=float(rng.uniform()), age=float(age),
                          muscle=float(np.clip(rng.normal(0.5, 0.2), 0, 1)),
                          weight=float(np.clip(rng.normal(0.5, 0.22), 0, 1)),
                          height=float(np.clip(rng.normal(0.5, 0.1), 0.3, 0.72)),
                          proportions=float(rng.uniform(0.3, 1.0)),
                          african=float(race[0]), asian=float(race[1]), caucasian=float(race[2]))


def age_years(age: float) -> float:
    """The slider-to-years mapping used for ``BodyParams.age``."""
    return float(np.interp(age, _AGE_NODES, _AGE_YEARS))


def _minmax(v: float, lo: str, mid: str | None, hi: str) -> dict[str, float]:
    """Linear weights of a three-point variable (0, 0.5, 1); ``mid=None`` drops the centre."""
    v = float(np.clip(v, 0, 1))
    w = {lo: max(0.0, 1 - 2 * v), hi: max(0.0, 2 * v - 1)}
    if mid is not None:
        w[mid] = 1 - w[lo] - w[hi]
    return w


def macro_target_weights(p: BodyParams) -> dict[str, float]:
    """Target file stem (relative to targets/macrodetails) -> blend weight, zeros dropped."""
    gender = {"female": 1 - float(np.clip(p.gender, 0, 1)), "male": float(np.clip(p.gender, 0, 1))}
    a = float(np.clip(p.age, 0, 1))
    ages = {k: float(np.interp(a, _AGE_NODES, np.eye(4)[i])) for i, k in enumerate(AGES)}
    muscle = _minmax(p.muscle, "minmuscle", "averagemuscle", "maxmuscle")
    weight = _minmax(p.weight, "minweight", "averageweight", "maxweight")
    height = _minmax(p.height, "minheight", None, "maxheight")
    prop = _minmax(p.proportions, "uncommonproportions", None, "idealproportions")
    out: dict[str, float] = {}

    def put(name, w):
        if w > 1e-6:
            out[name] = out.get(name, 0.0) + w

    for g, wg in gender.items():
        for ag, wa in ages.items():
            if wg * wa <= 1e-6:
                continue
            for r, wr in p.races().items():
                put(f"{r}-{g}-{ag}", wg * wa * wr)
            for m, wm in muscle.items():
                for wt, ww in weight.items():
                    base = wg * wa * wm * ww
                    put(f"universal-{g}-{ag}-{m}-{wt}", base)
                    for h, wh in height.items():
                        put(f"height/{g}-{ag}-{m}-{wt}-{h}", base * wh)
                    if ag != "baby":
                        for pr, wp in prop.items():
                            put(f"proportions/{g}-{ag}-{m}-{wt}-{pr}", base * wp)
    return out


# ----------------------------------------------------------------------------- the pack

@dataclass
class Garment:
    """One mhclo proxy: sheet faces, fitting data, hidden skin, skinning weights."""

    name: str
    faces: np.ndarray  # (F, 3) int, oriented outward
    refs: np.ndarray  # (G, 3) base-vertex indices
    bary: np.ndarray  # (G, 3)
    offsets: np.ndarray  # (G, 3) in units of the scale references
    scale_refs: np.ndarray  # (3, 2) vertex pairs for x, y, z
    scale_dist: np.ndarray  # (3,)
    delete_verts: np.ndarray  # base-vertex indices hidden under the garment
    weights: object  # scipy CSR (G, B), rows sum to 1

    def fit(self, verts: np.ndarray) -> np.ndarray:
        """Garment vertices on the (shaped, rest) base vertices ``verts`` (19158, 3)."""
        d = verts[self.scale_refs[:, 0]] - verts[self.scale_refs[:, 1]]
        s = np.abs(d[[0, 1, 2], [0, 1, 2]]) / self.scale_dist
        return np.einsum("gk,gkc->gc", self.bary, verts[self.refs]) + self.offsets * s


class Pack:
    """Parsed MakeHuman pack; files are read lazily and kept (one per root per process)."""

    def __init__(self, root: Path):
        self.root = root
        self._targets: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._poses: dict[str, np.ndarray] = {}
        self._garments: dict[str, Garment] = {}
        self._load_base()
        self._load_skeleton()

    # -- base mesh
    def _load_base(self):
        verts, faces = [], []
        group = None
        with open(self.root / "base" / "base.obj") as f:
            for line in f:
                if line.startswith("v "):
                    verts.append(line.split()[1:4])
                elif line.startswith("g "):
                    group = line.split()[1]
                elif line.startswith("f ") and group == "body":
                    faces.append([int(t.split("/")[0]) - 1 for t in line.split()[1:]])
        self.base_verts = np.asarray(verts, float)
        q = np.asarray(faces, np.int64)
        self.body_faces = np.concatenate([q[:, [0, 1, 2]], q[:, [0, 2, 3]]])

    # -- skeleton and weights
    def _load_skeleton(self):
        sparse = require("scipy.sparse")
        sk = json.loads((self.root / "rigs" / "default.mhskel").read_text())
        bones = sk["bones"]
        children: dict[str | None, list[str]] = {}
        for name, b in bones.items():
            children.setdefault(b["parent"], []).append(name)
        order, stack = [], list(reversed(sorted(children[None])))
        while stack:  # depth-first, parents before children
            n = stack.pop()
            order.append(n)
            stack.extend(reversed(sorted(children.get(n, []))))
        self.bone_names = order
        self.bone_index = {n: i for i, n in enumerate(order)}
        self.parents = np.array([self.bone_index[bones[n]["parent"]] if bones[n]["parent"] else -1
                                 for n in order])
        jnames = sorted(sk["joints"])
        jidx = {n: i for i, n in enumerate(jnames)}
        rows = np.concatenate([np.full(len(sk["joints"][n]), i) for i, n in enumerate(jnames)])
        cols = np.concatenate([sk["joints"][n] for n in jnames])
        vals = np.concatenate([np.full(len(sk["joints"][n]), 1 / len(sk["joints"][n])) for n in jnames])
        self.joint_matrix = sparse.csr_matrix((vals, (rows, cols)), shape=(len(jnames), len(self.base_verts)))
        self.head_j = np.array([jidx[bones[n]["head"]] for n in order])
        self.tail_j = np.array([jidx[bones[n]["tail"]] for n in order])
        self.plane_j = np.array([[jidx[j] for j in sk["planes"][bones[n]["rotation_plane"]]] for n in order])
        w = json.loads((self.root / "rigs" / sk.get("weights_file", "default_weights.mhw")).read_text())
        r, c, v = [], [], []
        for bone, pairs in w["weights"].items():
            a = np.asarray(pairs, float)
            r.append(a[:, 0].astype(np.int64))
            c.append(np.full(len(a), self.bone_index[bone]))
            v.append(a[:, 1])
        W = sparse.csr_matrix((np.concatenate(v), (np.concatenate(r), np.concatenate(c))),
                              shape=(len(self.base_verts), len(order)))
        s = np.asarray(W.sum(1)).ravel()
        self.weights = sparse.diags(1 / np.where(s > 0, s, 1)) @ W  # rows sum to 1
        self.weights = self.weights.tocsr()

    # -- targets
    def target(self, stem: str) -> tuple[np.ndarray, np.ndarray]:
        if stem not in self._targets:
            path = self.root / "targets" / "macrodetails" / f"{stem}.target.gz"
            if not path.is_file():
                raise FileNotFoundError(f"MakeHuman target {path} is missing")
            text = gzip.decompress(path.read_bytes()).decode()
            rows = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
            a = np.array(" ".join(rows).split(), float).reshape(-1, 4) if rows else np.zeros((0, 4))
            self._targets[stem] = (a[:, 0].astype(np.int64), a[:, 1:])
        return self._targets[stem]

    # -- poses
    def pose(self, name: str) -> np.ndarray:
        if name not in self._poses:
            if name not in POSE_NAMES:
                raise ValueError(f"unknown pose {name!r}; known: rest, {', '.join(POSE_NAMES)}")
            self._poses[name] = _bvh_local_rotations(self.root / "poses" / f"{name}.bvh", self)
        return self._poses[name]

    # -- garments
    def garment(self, name: str) -> Garment:
        if name not in self._garments:
            if name not in GARMENTS:
                raise ValueError(f"unknown garment {name!r}; known: {', '.join(GARMENTS)}")
            self._garments[name] = _load_garment(self.root / "clothes" / name, name, self)
        return self._garments[name]


def _check_root(root: str | Path | None) -> Path:
    root = Path(root) if root is not None else DEFAULT_ROOT
    if not (root / "base" / "base.obj").is_file():
        raise FileNotFoundError(f"MakeHuman pack not found at {root} (expected {root / 'base' / 'base.obj'}); "
                                "see ../shared/data/makehuman/README.md")
    return root.resolve()


@functools.lru_cache(maxsize=4)
def _pack_cached(root: Path) -> Pack:
    return Pack(root)


def load_pack(root: str | Path | None = None) -> Pack:
    """The parsed pack at ``root`` (default :data:`DEFAULT_ROOT`), cached per process."""
    return _pack_cached(_check_root(root))


def _load_garment(folder: Path, name: str, pack: Pack) -> Garment:
    sparse = require("scipy.sparse")
    lines = (folder / f"{name}.mhclo").read_text().splitlines()
    scale = {}
    rows, dele, mode, obj = [], [], None, f"{name}.obj"
    for ln in lines:
        t = ln.split()
        if not t or t[0].startswith("#"):
            continue
        if t[0] in ("x_scale", "y_scale", "z_scale"):
            scale[t[0][0]] = (int(t[1]), int(t[2]), float(t[3]))
        elif t[0] == "obj_file":
            obj = t[1]
        elif t[0] == "verts":
            mode = "verts"
        elif t[0] == "delete_verts":
            mode = "delete"
        elif mode == "verts" and re.fullmatch(r"[-+0-9.eE]+", t[0]):
            if len(t) == 1:
                t = [t[0], t[0], t[0], "1", "0", "0", "0", "0", "0"]
            rows.append([float(x) for x in t[:9]])
        elif mode == "delete":
            i = 0
            while i < len(t):
                if i + 2 < len(t) and t[i + 1] == "-":
                    dele.extend(range(int(t[i]), int(t[i + 2]) + 1))
                    i += 3
                else:
                    dele.append(int(t[i]))
                    i += 1
        elif mode == "verts":
            mode = None
    a = np.asarray(rows, float)
    refs, bary, offs = a[:, :3].astype(np.int64), a[:, 3:6], a[:, 6:9]
    faces = []
    for ln in (folder / obj).read_text().splitlines():
        if ln.startswith("f "):
            idx = [int(x.split("/")[0]) - 1 for x in ln.split()[1:]]
            faces.extend([idx[0], idx[k], idx[k + 1]] for k in range(1, len(idx) - 1))
    faces = np.asarray(faces, np.int64)
    sr = np.array([[scale[k][0], scale[k][1]] for k in "xyz"])
    sd = np.array([scale[k][2] for k in "xyz"])
    n = len(refs)
    G = sparse.csr_matrix((bary.ravel(), (np.repeat(np.arange(n), 3), refs.ravel())),
                          shape=(n, len(pack.base_verts)))
    W = (G @ pack.weights).tocsr()
    s = np.asarray(W.sum(1)).ravel()
    W = (sparse.diags(1 / np.where(s > 0, s, 1)) @ W).tocsr()
    g = Garment(name, faces, refs, bary, offs, sr, sd, np.unique(dele), W)
    # orient the sheet so that its normals point away from the body
    v = g.fit(pack.base_verts)
    body_n = _vertex_normals(pack.base_verts[:N_BODY_VERTS], pack.body_faces)
    bn = np.einsum("gk,gkc->gc", bary, body_n[np.minimum(refs, N_BODY_VERTS - 1)])
    if np.sum(np.einsum("gc,gc->g", _vertex_normals(v, faces), bn)) < 0:
        g.faces = faces[:, ::-1].copy()
    return g


# ----------------------------------------------------------------------------- geometry helpers

def _vertex_normals(v: np.ndarray, f: np.ndarray) -> np.ndarray:
    fn = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])  # area weighted
    n = np.zeros_like(v)
    for k in range(3):
        np.add.at(n, f[:, k], fn)
    return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)


def _rot(axis: np.ndarray, deg: float) -> np.ndarray:
    """Rotation matrix about unit ``axis`` by ``deg`` degrees (right-handed)."""
    a = np.asarray(axis, float) / np.linalg.norm(axis)
    t = np.radians(deg)
    K = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + np.sin(t) * K + (1 - np.cos(t)) * K @ K


def shell(vertices: np.ndarray, faces: np.ndarray, thickness: float) -> tuple[np.ndarray, np.ndarray]:
    """Close an oriented open sheet into a thin solid: offset outward along vertex normals
    by ``thickness``, reverse the inner copy and stitch the boundary edges with quads.

    Returns (vertices (2V, 3), faces). Watertight when every sheet edge has one or two faces.
    """
    nv = len(vertices)
    outer = vertices + thickness * _vertex_normals(vertices, faces)
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    key = e.min(axis=1) * nv + e.max(axis=1)
    _, inv, cnt = np.unique(key, return_inverse=True, return_counts=True)
    b = e[cnt[inv] == 1]  # boundary edges in face orientation a->b
    a_, b_ = b[:, 0], b[:, 1]
    side = np.concatenate([np.stack([a_, b_, b_ + nv], 1), np.stack([a_, b_ + nv, a_ + nv], 1)])
    f = np.concatenate([faces[:, ::-1], faces + nv, side])
    return np.concatenate([vertices, outer]), f


# ----------------------------------------------------------------------------- shape and skeleton

def shape_vertices(params: BodyParams, pack: Pack | None = None) -> np.ndarray:
    """All 19,158 base vertices (decimetres) with the macro targets of ``params`` applied."""
    pack = pack or load_pack()
    idx, val = [], []
    for stem, w in macro_target_weights(params).items():
        i, d = pack.target(stem)
        idx.append(i)
        val.append(w * d)
    if not idx:
        return pack.base_verts.copy()
    n = len(pack.base_verts)
    flat = (3 * np.concatenate(idx)[:, None] + np.arange(3)).ravel()
    delta = np.bincount(flat, weights=np.concatenate(val).ravel(), minlength=3 * n)
    return pack.base_verts + delta.reshape(n, 3)


@dataclass
class Skeleton:
    """Rest skeleton of a shaped mesh (decimetres), bones ordered parents first."""

    names: list[str]
    parents: np.ndarray  # (B,), -1 for the root
    heads: np.ndarray  # (B, 3)
    tails: np.ndarray  # (B, 3)
    frames: np.ndarray  # (B, 3, 3) columns x, y, z; y along the bone, x the plane normal

    def index(self, name: str) -> int:
        return self.names.index(name)


def build_skeleton(verts: np.ndarray, pack: Pack | None = None) -> Skeleton:
    """Joint positions as means of their vertex lists; rest frames from the rotation planes."""
    pack = pack or load_pack()
    J = pack.joint_matrix @ verts
    h, t = J[pack.head_j], J[pack.tail_j]
    y = t - h
    y /= np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)
    p = J[pack.plane_j]  # (B, 3, 3)
    n = np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 1])
    x = n - np.einsum("bc,bc->b", n, y)[:, None] * y
    bad = np.linalg.norm(x, axis=1) < 1e-9
    x[bad] = np.cross(y[bad], [0.0, 0.0, 1.0]) + 1e-9
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    z = np.cross(x, y)
    return Skeleton(list(pack.bone_names), pack.parents.copy(), h, t, np.stack([x, y, z], axis=2))


def pose_transforms(skel: Skeleton, local: np.ndarray) -> np.ndarray:
    """Forward kinematics: (B, 3, 4) skinning matrices [G | p - G h] for local rotations (B, 3, 3)."""
    B = len(skel.names)
    G = np.zeros((B, 3, 3))
    P = np.zeros((B, 3))
    for b in range(B):
        q = skel.parents[b]
        if q < 0:
            G[b], P[b] = local[b], skel.heads[b]
        else:
            G[b] = G[q] @ local[b]
            P[b] = P[q] + G[q] @ (skel.heads[b] - skel.heads[q])
    A = np.zeros((B, 3, 4))
    A[:, :, :3] = G
    A[:, :, 3] = P - np.einsum("bij,bj->bi", G, skel.heads)
    return A


def skin(verts: np.ndarray, weights, transforms: np.ndarray) -> np.ndarray:
    """Linear blend skinning: ``weights`` (N, B) sparse or dense with rows summing to 1."""
    M = weights @ transforms.reshape(len(transforms), 12)  # (N, 12)
    M = np.asarray(M).reshape(-1, 3, 4)
    return np.einsum("nij,nj->ni", M[:, :, :3], verts) + M[:, :, 3]


def posed_joints(skel: Skeleton, transforms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Posed (heads, tails) of every bone."""
    f = lambda x: np.einsum("bij,bj->bi", transforms[:, :, :3], x) + transforms[:, :, 3]  # noqa: E731
    return f(skel.heads), f(skel.tails)


# ----------------------------------------------------------------------------- poses

def _euler(channels: list[str], angles: list[float]) -> np.ndarray:
    R = np.eye(3)
    for c, a in zip(channels, angles):
        R = R @ _rot(np.eye(3)["XYZ".index(c[0])], a)
    return R


def _bvh_local_rotations(path: Path, pack: Pack) -> np.ndarray:
    """Local rotations (B, 3, 3) in hm08 world-aligned rest axes for the skeleton's bones."""
    tok = path.read_text().split()
    i, stack, joints, last = 0, [], [], None
    while tok[i] != "MOTION":
        t = tok[i]
        if t in ("ROOT", "JOINT"):
            joints.append({"name": tok[i + 1], "parent": stack[-1] if stack else None, "ch": []})
            last = len(joints) - 1
            i += 2
        elif t == "End":
            joints.append({"name": None, "parent": stack[-1], "ch": []})
            last = len(joints) - 1
            i += 2
        elif t == "{":
            stack.append(last)
            i += 1
        elif t == "}":
            stack.pop()
            i += 1
        elif t == "CHANNELS":
            n = int(tok[i + 1])
            joints[last]["ch"] = tok[i + 2:i + 2 + n]
            i += 2 + n
        elif t == "OFFSET":
            i += 4
        else:
            i += 1
    i = tok.index("Time:", i) + 2
    vals = np.array(tok[i:i + sum(len(j["ch"]) for j in joints)], float)
    Gb: dict[str, np.ndarray] = {}
    glob: list[np.ndarray] = []
    k = 0
    for j in joints:
        ch = j["ch"]
        a = vals[k:k + len(ch)]
        k += len(ch)
        rc = [(c, x) for c, x in zip(ch, a) if c.endswith("rotation")]
        R = _euler([c for c, _ in rc], [x for _, x in rc])
        g = (glob[j["parent"]] if j["parent"] is not None else np.eye(3)) @ R
        glob.append(g)
        if j["name"]:
            Gb[j["name"]] = _C.T @ g @ _C
    B = len(pack.bone_names)
    G = np.zeros((B, 3, 3))
    local = np.zeros((B, 3, 3))
    for b, name in enumerate(pack.bone_names):
        q = pack.parents[b]
        parent_g = G[q] if q >= 0 else np.eye(3)
        G[b] = Gb.get(name, parent_g)
        local[b] = parent_g.T @ G[b]
    return local


def rest_pose(pack: Pack | None = None) -> np.ndarray:
    pack = pack or load_pack()
    return np.tile(np.eye(3), (len(pack.bone_names), 1, 1))


def load_pose(name: str, root: str | Path | None = None) -> np.ndarray:
    """Local rotations (B, 3, 3) of a named pose: 'rest' or one of :data:`POSE_NAMES`."""
    pack = load_pack(root)
    return rest_pose(pack) if name == "rest" else pack.pose(name).copy()


# Random joint limits in degrees, relative to the hm08 rest pose (an A-pose with the arms
# about 50 degrees below horizontal). Per group: bones, the world direction that positive
# "flex" swings the bone toward, and (lo, hi) for flex, side and twist. "side" swings the
# bone sideways, positive away from the midline (abduction, or a lateral bend to the
# character's right for the spine); twist turns it about its own axis. Ranges of a group
# with several bones (spine, neck) are totals, shared equally between the bones.
JOINT_LIMITS: dict[str, tuple[tuple[str, ...], tuple[float, float, float], tuple, tuple, tuple]] = {
    "spine": (("spine05", "spine04", "spine03", "spine02", "spine01"), (0, 0, 1), (-15, 35), (-15, 15), (-25, 25)),
    "neck": (("neck01", "neck02", "neck03", "head"), (0, 0, 1), (-25, 35), (-20, 20), (-40, 40)),
    "shoulders": (("upperarm01.L", "upperarm01.R"), (0, 0, 1), (-30, 80), (-20, 80), (-40, 40)),
    "elbows": (("lowerarm01.L", "lowerarm01.R"), (0, 0, 1), (0, 130), (0, 0), (-30, 30)),
    "wrists": (("wrist.L", "wrist.R"), (0, 0, 1), (-50, 50), (-20, 20), (0, 0)),
    "hips": (("upperleg01.L", "upperleg01.R"), (0, 0, 1), (-20, 90), (-10, 40), (-30, 30)),
    "knees": (("lowerleg01.L", "lowerleg01.R"), (0, 0, -1), (0, 120), (0, 0), (0, 0)),
    "ankles": (("foot.L", "foot.R"), (0, 1, 0), (-20, 25), (-10, 10), (0, 0)),
}


def random_pose(rng: np.random.Generator, root: str | Path | None = None,
                base: str | None = None) -> tuple[str, np.ndarray]:
    """A random pose: (name, local rotations (B, 3, 3)).

    ``base`` None draws one: 40 % 'random' (angles drawn uniformly in :data:`JOINT_LIMITS`
    from rest), else rest (10 %), standing01 (20 %), sit01 (10 %), run01 (10 %), tpose (5 %)
    or benchmark (5 %) jittered by angles drawn in 30 % of the limits. Left and right are
    drawn independently. The name says which, e.g. 'sit01+jitter' or 'random'.
    """
    pack = load_pack(root)
    if base is None:
        names = ["random", "rest", "standing01", "sit01", "run01", "tpose", "benchmark"]
        base = str(rng.choice(names, p=[0.4, 0.1, 0.2, 0.1, 0.1, 0.05, 0.05]))
    full = base == "random"
    local = rest_pose(pack) if base in ("random", "rest") else pack.pose(base).copy()
    skel = _rest_skeleton(pack)
    scale = 1.0 if full else 0.3
    for bones, w, flex, side, twist in JOINT_LIMITS.values():
        chain = not bones[0].endswith(".L")  # spine / neck: one draw shared along the chain
        share = 1.0 / len(bones) if chain else 1.0
        draws = [scale * rng.uniform(*r) for r in (flex, side, twist)]
        for name in bones:
            if not chain and name.endswith(".R"):
                draws = [scale * rng.uniform(*r) for r in (flex, side, twist)]
            b = pack.bone_index[name]
            d = skel.tails[b] - skel.heads[b]
            d /= np.linalg.norm(d)
            a1 = np.cross(d, w)
            if np.linalg.norm(a1) < 1e-6:
                continue
            a2 = np.asarray(w, float) - np.dot(w, d) * d
            sgn = -1.0 if name.endswith(".R") else 1.0  # mirror the right side
            f, s, t = draws
            P = _rot(a1, f * share) @ _rot(a2, sgn * s * share) @ _rot(d, sgn * t * share)
            local[b] = local[b] @ P
    return ("random" if full else f"{base}+jitter"), local


@functools.lru_cache(maxsize=4)
def _rest_skeleton_cached(root: Path) -> Skeleton:
    pack = _pack_cached(root)
    return build_skeleton(pack.base_verts, pack)


def _rest_skeleton(pack: Pack) -> Skeleton:
    return _rest_skeleton_cached(pack.root)


# ----------------------------------------------------------------------------- appearance

SKIN_PALETTE = np.array([[247, 222, 204], [236, 197, 168], [222, 172, 134], [196, 142, 104],
                         [160, 110, 76], [122, 80, 55], [88, 58, 40], [64, 42, 30]], float)
_RACE_TONE = {"caucasian": (0.0, 0.35), "asian": (0.1, 0.45), "african": (0.55, 1.0)}


@dataclass
class GarmentStyle:
    """Procedural vertex colouring of one garment."""

    pattern: str  # 'solid', 'stripes', 'checks' or 'noise'
    colors: tuple[tuple[int, int, int], tuple[int, int, int]]
    period: float  # metres
    angle: float  # degrees, stripe direction
    phase: tuple[float, float, float]


@dataclass
class Appearance:
    skin_rgb: tuple[int, int, int]
    garments: dict[str, GarmentStyle] = field(default_factory=dict)


def _hsv(h, s, v):
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]


def random_appearance(rng: np.random.Generator, params: BodyParams, garments: Sequence[str]) -> Appearance:
    """Skin tone (drawn around the race mix) and a random style per garment."""
    tone = sum(w * rng.uniform(*_RACE_TONE[r]) for r, w in params.races().items())
    tone = float(np.clip(tone + rng.normal(0, 0.05), 0, 1))
    x = tone * (len(SKIN_PALETTE) - 1)
    i = min(int(x), len(SKIN_PALETTE) - 2)
    skin = SKIN_PALETTE[i] * (1 - (x - i)) + SKIN_PALETTE[i + 1] * (x - i)
    styles = {}
    for g in garments:
        def colour():
            if rng.uniform() < 0.25:  # greys, black, white, navy, beige
                v = rng.uniform(0.08, 0.95)
                return tuple(int(255 * c) for c in _hsv(rng.uniform(0.55, 0.65), rng.uniform(0, 0.15), v))
            return tuple(int(255 * c) for c in _hsv(rng.uniform(), rng.uniform(0.25, 0.9), rng.uniform(0.2, 0.95)))
        pattern = str(rng.choice(["solid", "solid", "stripes", "checks", "noise"]))
        styles[g] = GarmentStyle(pattern, (colour(), colour()), float(rng.uniform(0.06, 0.16)),
                                 float(rng.choice([0.0, 90.0, 45.0, rng.uniform(0, 180)])),
                                 tuple(rng.uniform(0, 100, 3).tolist()))
    return Appearance(tuple(int(c) for c in skin), styles)


def _garment_colors(style: GarmentStyle, rest: np.ndarray) -> np.ndarray:
    """(G, 3) uint8 colours from garment rest positions ``rest`` in metres."""
    p = rest + np.asarray(style.phase) * 1e-3
    c0, c1 = np.asarray(style.colors[0], float), np.asarray(style.colors[1], float)
    if style.pattern == "stripes":
        a = np.radians(style.angle)
        u = p[:, 1] * np.cos(a) + p[:, 0] * np.sin(a)
        m = (np.floor(u / (style.period / 2)) % 2)[:, None]
    elif style.pattern == "checks":
        cell = style.period / 2
        m = ((np.floor(p[:, 0] / cell) + np.floor(p[:, 1] / cell) + np.floor(p[:, 2] / cell)) % 2)[:, None]
    elif style.pattern == "noise":
        k = 2 * np.pi / style.period
        ph = np.asarray(style.phase)
        n = (np.sin(k * p[:, 0] + ph[0]) * np.sin(k * 0.7 * p[:, 1] + ph[1])
             + np.sin(k * 1.3 * p[:, 2] + ph[2]) * np.cos(k * 0.9 * p[:, 1] - ph[0]))
        m = np.clip(0.5 + 0.3 * n, 0, 1)[:, None]
    else:
        m = np.zeros((len(p), 1))
    rgb = c0 * (1 - m) + c1 * m
    return np.clip(rgb, 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- the body

@dataclass
class ClothedBody:
    """A shaped, posed, dressed body in metres (feet on y = 0, centred in x/z)."""

    mesh: object
    """trimesh.Trimesh for rendering: skin without the parts garments hide, plus garment
    shells; per-vertex RGBA uint8 colours."""
    components: list
    """Watertight trimesh.Trimesh solids, skin first then one shell per garment; occupancy
    is the OR of their inside tests."""
    params: BodyParams
    pose_name: str
    seed: int | None
    height_m: float
    """Standing (rest-pose) height of the skin."""
    garments: list[str] = field(default_factory=list)
    appearance: Appearance | None = None


def build_body(params: BodyParams, pose: str | np.ndarray = "rest", garments: Sequence[str] = (),
               appearance: Appearance | None = None, *, pose_name: str | None = None,
               seed: int | None = None, thickness_m: float = 0.004,
               root: str | Path | None = None) -> ClothedBody:
    """Shape, pose, dress and colour one body.

    ``pose``: a pose name ('rest' or one of :data:`POSE_NAMES`) or local rotations (B, 3, 3).
    ``appearance`` None draws one from ``seed`` (0 when None).
    """
    trimesh = require("trimesh")
    pack = load_pack(root)
    if isinstance(pose, str):
        pose_name = pose_name or pose
        pose = load_pose(pose, pack.root)
    pose_name = pose_name or "custom"
    garments = list(garments)
    for g in garments:
        pack.garment(g)  # validates the name early
    if appearance is None:
        appearance = random_appearance(np.random.default_rng(seed or 0), params, garments)

    v_rest = shape_vertices(params, pack)
    skel = build_skeleton(v_rest, pack)
    A = pose_transforms(skel, pose)
    body_rest = v_rest[:N_BODY_VERTS]
    height_m = float(body_rest[:, 1].max() - body_rest[:, 1].min()) / 10
    body = skin(body_rest, pack.weights[:N_BODY_VERTS], A)

    pieces = []  # (vertices dm, faces, rest vertices dm, garment)
    for g in garments:
        gm = pack.garment(g)
        rest = gm.fit(v_rest)
        pieces.append((skin(rest, gm.weights, A), gm.faces, rest, g))

    to_m = lambda x: x / 10  # noqa: E731  (shifted to the floor at the end)

    comps = [trimesh.Trimesh(to_m(body), pack.body_faces, process=False)]
    hidden = np.zeros(N_BODY_VERTS, bool)
    skin_rgb = np.asarray(appearance.skin_rgb, float)
    rng = np.random.default_rng(seed or 0)
    k = rng.uniform(2.0, 4.0)
    ph = rng.uniform(0, 2 * np.pi, 3)
    b = body_rest / 10
    shade = 1 + 0.04 * (np.sin(k * b[:, 0] * 2 * np.pi + ph[0]) * np.sin(k * b[:, 1] * 2 * np.pi + ph[1]))
    colors = [np.clip(skin_rgb[None] * shade[:, None], 0, 255).astype(np.uint8)]
    verts_out, faces_out, off = [to_m(body)], [], N_BODY_VERTS
    for gv, gf, rest, g in pieces:
        sv, sf = shell(to_m(gv), gf, thickness_m)
        comps.append(trimesh.Trimesh(sv, sf, process=False))
        style = appearance.garments.get(g) or random_appearance(rng, params, [g]).garments[g]
        c = _garment_colors(style, rest / 10)
        colors.append(np.concatenate([c, c]))
        verts_out.append(sv)
        faces_out.append(sf + off)
        off += len(sv)
        dv = pack.garment(g).delete_verts
        hidden[dv[dv < N_BODY_VERTS]] = True
    keep = ~hidden[pack.body_faces].any(axis=1)
    faces_out.insert(0, pack.body_faces[keep])
    # real-world frame: metres, lowest point (feet, shoes) on y = 0, centred on the skin in x/z
    allv = np.concatenate(verts_out)
    lo, hi = verts_out[0].min(0), verts_out[0].max(0)
    shift = np.array([-(lo[0] + hi[0]) / 2, -allv[:, 1].min(), -(lo[2] + hi[2]) / 2])
    for c in comps:
        c.vertices = np.asarray(c.vertices) + shift
    verts_out = [x + shift for x in verts_out]
    rgba = np.concatenate(colors)
    rgba = np.concatenate([rgba, np.full((len(rgba), 1), 255, np.uint8)], axis=1)
    mesh = trimesh.Trimesh(np.concatenate(verts_out), np.concatenate(faces_out), vertex_colors=rgba,
                           process=False)
    return ClothedBody(mesh, comps, params, pose_name, seed, height_m, garments, appearance)


@dataclass
class SubjectSpec:
    """What :func:`random_subject` draws from a seed, before any mesh is built."""

    params: BodyParams
    pose_name: str
    pose: np.ndarray  # local rotations (B, 3, 3)
    garments: list[str]
    appearance: Appearance


def subject_spec(seed: int, root: str | Path | None = None) -> SubjectSpec:
    """The sliders, pose, clothes and colours of :func:`random_subject` ``(seed)`` (cheap: no
    mesh), e.g. to pose the unclothed body of a dataset subject."""
    rng = np.random.default_rng(seed)
    params = BodyParams.random(rng)
    pose_name, pose = random_pose(rng, root)
    male_suit = rng.uniform() < (0.8 if params.gender > 0.5 else 0.2)
    garments = ["male_casualsuit02" if male_suit else "female_casualsuit01"]  # always dressed
    if rng.uniform() < 0.85:
        garments.append("shoes01")
    appearance = random_appearance(rng, params, garments)
    return SubjectSpec(params, pose_name, pose, garments, appearance)


def random_subject(seed: int, root: str | Path | None = None) -> ClothedBody:
    """A random adult: sliders, race mix, pose, clothes and colours, all from ``seed``.

    Always one casual suit (the one matching the gender 80 % of the time), shoes 85 %.
    """
    s = subject_spec(seed, root)
    return build_body(s.params, s.pose, s.garments, s.appearance, pose_name=s.pose_name, seed=seed, root=root)
