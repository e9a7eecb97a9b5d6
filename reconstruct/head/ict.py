"""The ICT-FaceKit face model (ICT Face Model Light, MIT licence) as vertices in metres.

The model is one numpy archive, ``ict_face_model.npz`` (see the README next to it): a neutral
head (26,719 vertices, 52,220 triangles), 100 identity PCA shapes and 57 expression
blendshapes with ARKit-style names (``jawOpen``, ``eyeBlink_L``, ``mouthSmile_R``, ...),
stored as offsets from the neutral mesh in centimetres, +Y up, +Z forward (the face looks
toward +Z), +X toward the subject's left.

Where the archive is looked for, first match wins: the ``path`` argument, ``$DHSTUDIO_ICT_FACE``
(the folder or the ``.npz``), ``<repo>/../shared/data/ict_face``. It is read on first use.

Example::

    face = IctFace()
    V, F = face.mesh("identity003", {"jawOpen": 0.8, "eyeBlink_L": 1.0})   # metres, int32
    part = face.triangle_parts()   # (T,) index into PARTS: skin, lips-inside, teeth, sclera, ...
"""

from __future__ import annotations

import math
import os
from functools import cached_property
from pathlib import Path
from typing import Mapping

import numpy as np

from .data import name_hint

FILE_NAME = "ict_face_model.npz"
ENV_VAR = "DHSTUDIO_ICT_FACE"
CM = 0.01
"""Metres per model unit."""

PARTS = ("skin", "mouth_interior", "gums_tongue", "teeth", "sclera", "iris", "eyelashes", "overlay")
"""Render parts per triangle. ``overlay``: the model's see-through shells over the eyes
(lacrimal fluid, eye blend, eye occlusion), which an opaque renderer should leave out."""

_MATERIAL_PART = {"M_Face": "skin", "M_BackHead": "skin", "M_GumsTongue": "gums_tongue",
                  "M_Teeth": "teeth", "M_ScleraLeft": "sclera", "M_ScleraRight": "sclera",
                  "M_IrisLeft": "iris", "M_IrisRight": "iris", "M_LacrimalFluid": "overlay",
                  "M_EyeBlend": "overlay", "M_EyeOcclusion": "overlay", "M_EyeLashes": "eyelashes"}
_REGION_PART = {"mouth_socket": "mouth_interior", "gums_and_tongue": "gums_tongue", "teeth": "teeth",
                "lacrimal_fluid_left": "overlay", "lacrimal_fluid_right": "overlay",
                "eye_blend_left": "overlay", "eye_blend_right": "overlay",
                "eye_occlusion_left": "overlay", "eye_occlusion_right": "overlay",
                "eyelashes_left": "eyelashes", "eyelashes_right": "eyelashes"}


class IctFaceMissing(FileNotFoundError):
    """The ICT face model archive is not where it was looked for."""


def _repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def default_path() -> Path:
    """Where the archive is looked for without an explicit path (see the module docstring)."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env)
    return _repo_root().parent / "shared" / "data" / "ict_face"


def resolve_path(path: Path | str | None = None) -> Path:
    """The ``.npz`` file for ``path`` (a folder or the file; None: :func:`default_path`)."""
    p = Path(path) if path is not None else default_path()
    f = p / FILE_NAME if p.is_dir() or p.suffix != ".npz" else p
    if not f.is_file():
        how = "argument" if path is not None else (f"${ENV_VAR}" if os.environ.get(ENV_VAR) else "default")
        raise IctFaceMissing(f"ICT face model not found at {f} ({how}); put {FILE_NAME} from "
                             f"ICT-FaceKit (MIT) there or set ${ENV_VAR} to its folder")
    return f


class UnknownNameError(ValueError):
    """An expression or identity name that the model does not have."""


def _unknown(kind: str, name: str, valid: tuple[str, ...]) -> UnknownNameError:
    return UnknownNameError(f"unknown {kind} name {name!r}; {name_hint(name, valid)}")


class IctFace:
    """The ICT face model, read lazily from its archive (see :func:`resolve_path`)."""

    def __init__(self, path: Path | str | None = None):
        self.path = resolve_path(path)
        self._npz = None
        self._cache: dict[str, np.ndarray] = {}

    def _get(self, key: str) -> np.ndarray:
        if key not in self._cache:
            if self._npz is None:
                self._npz = np.load(self.path, allow_pickle=False)
            if key not in self._npz.files:
                raise KeyError(f"{self.path} has no array {key!r}")
            self._cache[key] = self._npz[key]
        return self._cache[key]

    def has(self, key: str) -> bool:
        if self._npz is None:
            self._npz = np.load(self.path, allow_pickle=False)
        return key in self._npz.files

    # ------------------------------------------------------------------------- names, topology

    @cached_property
    def expression_names(self) -> tuple[str, ...]:
        return tuple(str(n) for n in self._get("expression_names"))

    @cached_property
    def identity_names(self) -> tuple[str, ...]:
        return tuple(str(n) for n in self._get("identity_names"))

    @cached_property
    def faces(self) -> np.ndarray:
        """(T, 3) int32 triangles, 0-based."""
        return np.ascontiguousarray(self._get("faces"), np.int32)

    @cached_property
    def neutral(self) -> np.ndarray:
        """(V, 3) float32 neutral vertices in metres."""
        return (self._get("neutral_vertices").astype(np.float32) * CM)

    @property
    def n_vertices(self) -> int:
        return len(self.neutral)

    def landmarks(self) -> np.ndarray:
        """(68,) int vertex indices of the Multi-PIE 68 landmarks."""
        return self._get("landmarks_multipie68").astype(np.int64)

    def triangle_parts(self) -> np.ndarray:
        """(T,) int8 index into :data:`PARTS` for every triangle (from the region tables, else
        from the OBJ materials)."""
        parts = np.zeros(len(self.faces), np.int8)
        if self.has("region_names") and self.has("region_triangle_ranges"):
            for name, (a, b) in zip(self._get("region_names"), self._get("region_triangle_ranges")):
                parts[int(a):int(b)] = PARTS.index(_REGION_PART.get(str(name), "skin"))
        if self.has("material_names") and self.has("triangle_material"):
            mats = [str(m) for m in self._get("material_names")]
            tm = self._get("triangle_material").astype(np.int64)
            for k, m in enumerate(mats):
                part = _MATERIAL_PART.get(m)
                if part in ("sclera", "iris"):  # finer than the region table (one eyeball part)
                    parts[tm == k] = PARTS.index(part)
                elif not self.has("region_names") and part is not None:
                    parts[tm == k] = PARTS.index(part)
        return parts

    # ---------------------------------------------------------------------------- coefficients

    def identity_weights(self, identity: str | Mapping[str, float] | np.ndarray | None) -> np.ndarray:
        """(100,) float32 identity PCA weights from a name (one-hot), {name: weight} or an array."""
        n = len(self.identity_names)
        w = np.zeros(n, np.float32)
        if identity is None:
            return w
        if isinstance(identity, str):
            identity = {identity: 1.0}
        if isinstance(identity, Mapping):
            for name, v in identity.items():
                if name not in self.identity_names:
                    raise _unknown("identity", name, self.identity_names)
                w[self.identity_names.index(name)] = _finite(v, f"identity weight {name!r}")
            return w
        a = np.asarray(identity, np.float32).reshape(-1)
        if a.shape[0] > n:
            raise ValueError(f"identity weights: at most {n} values, got {a.shape[0]}")
        if not np.isfinite(a).all():
            raise ValueError("identity weights must be finite")
        w[: a.shape[0]] = a
        return w

    def expression_weights(self, expression: Mapping[str, float] | None) -> np.ndarray:
        """(E,) float32 expression weights from {name: weight} (missing names are 0)."""
        w = np.zeros(len(self.expression_names), np.float32)
        for name, v in (expression or {}).items():
            if name not in self.expression_names:
                raise _unknown("expression", name, self.expression_names)
            w[self.expression_names.index(name)] = _finite(v, f"expression weight {name!r}")
        return w

    def random_identity(self, rng: np.random.Generator | int, n_modes: int = 20,
                        scale: float = 1.0) -> np.ndarray:
        """(100,) weights: the first ``n_modes`` from N(0, scale²) (the repo's own sampler uses
        N(0, 1) for every mode; the later modes add fine detail only)."""
        rng = np.random.default_rng(rng)
        w = np.zeros(len(self.identity_names), np.float32)
        k = min(n_modes, len(w))
        w[:k] = rng.normal(0, scale, k)
        return w

    # ---------------------------------------------------------------------------------- meshes

    def identity_vertices(self, identity=None) -> np.ndarray:
        """(V, 3) float32 neutral-expression vertices (metres) for ``identity``."""
        w = self.identity_weights(identity)
        v = self.neutral.copy()
        nz = np.flatnonzero(w)
        if len(nz):
            deltas = self._get("identity_deltas")
            for k in nz:
                v += w[k] * deltas[k].astype(np.float32) * CM
        return v

    def mesh(self, identity: str | Mapping[str, float] | np.ndarray | None = None,
             expression: Mapping[str, float] | None = None, *,
             base: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Vertices (V, 3) float32 in metres and faces (T, 3) int32.

        ``identity``: None (the generic neutral head), a name (``"identity003"``), {name: weight}
        or an array of PCA weights. ``expression``: {name: weight}, names as in
        :attr:`expression_names`, weights usually in [0, 1]. ``base``: precomputed
        :meth:`identity_vertices` (skips the identity sum when rendering many expressions).
        """
        ew = self.expression_weights(expression)
        v = (self.identity_vertices(identity) if base is None else np.array(base, np.float32, copy=True))
        nz = np.flatnonzero(ew)
        if len(nz):
            deltas = self._get("expression_deltas")
            for k in nz:
                v += ew[k] * deltas[k].astype(np.float32) * CM
        return v, self.faces


def _finite(v, what: str) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number, got {v!r}") from None
    if not math.isfinite(f):
        raise ValueError(f"{what} must be finite, got {v!r}")
    return f


__all__ = ["PARTS", "IctFace", "IctFaceMissing", "UnknownNameError", "default_path", "resolve_path"]
