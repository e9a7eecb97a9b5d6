"""Expression-conditioned radiance field of a head: hash-grid position encoding + two small MLPs.

``HeadField`` maps a world point ``x``, a view direction ``d`` and a conditioning (blendshape
coefficients, optionally a per-frame latent code) to a density ``sigma`` (per metre, or per
world unit) and an RGB colour in ``[0, 1]``:

- the scene box (``FieldConfig.box_min`` / ``box_max``, world units) maps ``x`` to ``[0, 1]^3``
  per axis; the field is empty outside it;
- density network (Instant-NGP's): ``HashGrid(x01)`` concatenated with a small linear
  projection of the expression vector (NeRFace conditions the density on the expression so the
  jaw can open) -> MLP (``hidden_dim``, ``density_layers`` hidden layers) -> one raw density +
  ``geo_feat_dim`` geometry features. ``sigma = act(raw) / box_scale`` with ``act`` the
  truncated exponential (Instant-NGP) or softplus, ``box_scale`` the box's largest side, so the
  network's unit of length is the box;
- colour network: geometry features + the view direction in real spherical harmonics
  (``sh_degree`` bands, 16 coefficients for degree 4, as tiny-cuda-nn's ``SphericalHarmonics``
  encoding) + the expression vector + the per-frame latent -> MLP -> sigmoid RGB.

The expression vector has one entry per name of ``FieldConfig.expression_names`` (ICT-FaceKit /
ARKit blendshape names such as ``jawOpen``, ``eyeBlink_L``), in that order; build it with
:meth:`HeadField.encode_expression`.

Shapes: N points, E expression names, G geometry features, C latent size.

Example::

    cfg = FieldConfig(box_min=(-0.2, -0.2, -0.2), box_max=(0.2, 0.2, 0.2),
                      expression_names=("jawOpen", "mouthSmile_L"))
    field = HeadField(cfg, backend="torch")
    e = field.encode_expression({"jawOpen": 0.7})                 # (E,)
    sigma, rgb = field(torch.zeros(5, 3), torch.tensor([[0, 0, 1.0]]).expand(5, 3), e.expand(5, -1))
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from .data import name_hint
from .encoding import HashGrid

FIELD_SCHEMA = "dhstudio.head-field/1"
DENSITY_ACTIVATIONS = ("trunc_exp", "softplus")
MAX_SH_DEGREE = 5
"""Bands of the hand-written SH basis (l = 0..4, 25 coefficients)."""


# ------------------------------------------------------------------------------ config

@dataclass
class FieldConfig:
    """Hyper-parameters of a :class:`HeadField`; plain data, saved with :meth:`to_dict`."""

    box_min: tuple[float, float, float] = (-1.0, -1.0, -1.0)
    """Scene box lower corner (world units); points are mapped to ``[0, 1]^3`` per axis."""
    box_max: tuple[float, float, float] = (1.0, 1.0, 1.0)
    """Scene box upper corner (world units)."""
    expression_names: tuple[str, ...] = ()
    """Blendshape names of the expression vector, in order (empty: no expression input)."""
    n_levels: int = 16
    """Hash grid levels (Instant-NGP: 16)."""
    n_features: int = 2
    """Features per level (Instant-NGP: 2)."""
    log2_hashmap_size: int = 19
    """log2 of the rows per level (Instant-NGP: 19; 15-16 is plenty for a 128 px head on CPU)."""
    base_resolution: int = 16
    """Coarsest grid resolution."""
    max_resolution: int = 2048
    """Finest grid resolution over the box (sets the per-level scale)."""
    interpolation: str = "linear"
    """Hash grid interpolation, ``linear`` or ``smoothstep``."""
    hidden_dim: int = 64
    """Width of the density MLP."""
    density_layers: int = 1
    """Hidden layers of the density MLP."""
    geo_feat_dim: int = 15
    """Geometry features passed from the density to the colour network."""
    color_hidden_dim: int = 64
    """Width of the colour MLP."""
    color_layers: int = 2
    """Hidden layers of the colour MLP."""
    sh_degree: int = 4
    """Spherical-harmonics bands for the view direction (``sh_degree**2`` coefficients, 1..5)."""
    expression_proj_dim: int = 16
    """Size of the linear projection of the expression fed to the density MLP (0: the density
    does not see the expression)."""
    latent_dim: int = 0
    """Per-frame latent code size (0: none)."""
    n_latents: int = 0
    """Number of per-frame latent codes (training frames); needs ``latent_dim > 0``."""
    density_activation: str = "trunc_exp"
    """``trunc_exp`` (Instant-NGP) or ``softplus``."""

    def __post_init__(self) -> None:
        self.box_min = tuple(float(v) for v in self.box_min)
        self.box_max = tuple(float(v) for v in self.box_max)
        self.expression_names = tuple(str(n) for n in self.expression_names)
        if len(self.box_min) != 3 or len(self.box_max) != 3:
            raise ValueError(f"FieldConfig: box_min and box_max need 3 values, got {self.box_min}, {self.box_max}")
        if not all(math.isfinite(a) and math.isfinite(b) and b > a for a, b in zip(self.box_min, self.box_max)):
            raise ValueError(f"FieldConfig: box_max must exceed box_min on every axis, got "
                             f"{self.box_min} .. {self.box_max}")
        if len(set(self.expression_names)) != len(self.expression_names):
            dup = sorted({n for n in self.expression_names if self.expression_names.count(n) > 1})
            raise ValueError(f"FieldConfig: repeated expression names {dup}")
        for name in ("hidden_dim", "color_hidden_dim", "geo_feat_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"FieldConfig: {name} must be >= 1, got {getattr(self, name)}")
        for name in ("density_layers", "color_layers", "expression_proj_dim", "latent_dim", "n_latents"):
            if getattr(self, name) < 0:
                raise ValueError(f"FieldConfig: {name} must be >= 0, got {getattr(self, name)}")
        if not 1 <= self.sh_degree <= MAX_SH_DEGREE:
            raise ValueError(f"FieldConfig: sh_degree must be in [1, {MAX_SH_DEGREE}], got {self.sh_degree}")
        if self.density_activation not in DENSITY_ACTIVATIONS:
            raise ValueError(f"FieldConfig: density_activation must be one of {DENSITY_ACTIVATIONS}, "
                             f"got {self.density_activation!r}")
        if (self.latent_dim > 0) != (self.n_latents > 0):
            raise ValueError(f"FieldConfig: latent_dim ({self.latent_dim}) and n_latents ({self.n_latents}) "
                             f"must both be 0 or both be > 0")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data with the schema string."""
        d: dict[str, Any] = {"schema": FIELD_SCHEMA}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            d[f.name] = list(v) if isinstance(v, tuple) else v
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FieldConfig:
        d = dict(d)
        schema = d.pop("schema", None)
        if schema != FIELD_SCHEMA:
            raise ValueError(f"not a head field config (schema {schema!r}, expected {FIELD_SCHEMA!r})")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"head field config: unknown keys {unknown}")
        return cls(**d)

    @property
    def n_expressions(self) -> int:
        return len(self.expression_names)


# ------------------------------------------------------------------------------ pieces

class _TruncExp(torch.autograd.Function):
    """``exp(x)`` whose gradient uses ``exp(min(x, 15))`` (Instant-NGP's density activation)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.exp(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * torch.exp(x.clamp(max=15.0))


def trunc_exp(x: torch.Tensor) -> torch.Tensor:
    """Exponential with a clamped gradient (Instant-NGP)."""
    return _TruncExp.apply(x)


def spherical_harmonics(dirs: torch.Tensor, degree: int = 4) -> torch.Tensor:
    """Real spherical harmonics of unit directions, bands ``l = 0 .. degree - 1``.

    Args:
        dirs: ``(N, 3)`` unit vectors.
        degree: number of bands, 1..5 (tiny-cuda-nn's meaning: degree 4 gives 16 coefficients).
    Returns:
        ``(N, degree**2)``, ordered by ``l`` then ``m = -l .. l``; orthonormal on the unit sphere
        (the integral of ``Y_i Y_j`` over the sphere is ``delta_ij``).
    """
    if dirs.dim() != 2 or dirs.shape[-1] != 3:
        raise ValueError(f"spherical_harmonics: dirs must be (N, 3), got {tuple(dirs.shape)}")
    if not 1 <= degree <= MAX_SH_DEGREE:
        raise ValueError(f"spherical_harmonics: degree must be in [1, {MAX_SH_DEGREE}], got {degree}")
    x, y, z = dirs.unbind(-1)
    out = [torch.full_like(x, 0.28209479177387814)]  # 1 / (2 sqrt(pi))
    if degree > 1:
        out += [-0.48860251190291987 * y, 0.48860251190291987 * z, -0.48860251190291987 * x]
    if degree > 2:
        xx, yy, zz = x * x, y * y, z * z
        out += [1.0925484305920792 * x * y, -1.0925484305920792 * y * z,
                0.94617469575755997 * zz - 0.31539156525251999, -1.0925484305920792 * x * z,
                0.54627421529603959 * (xx - yy)]
    if degree > 3:
        out += [0.59004358992664352 * y * (-3.0 * xx + yy), 2.8906114426405538 * x * y * z,
                0.45704579946446572 * y * (1.0 - 5.0 * zz), 0.3731763325901154 * z * (5.0 * zz - 3.0),
                0.45704579946446572 * x * (1.0 - 5.0 * zz), 1.4453057213202769 * z * (xx - yy),
                0.59004358992664352 * x * (-xx + 3.0 * yy)]
    if degree > 4:
        out += [2.5033429417967046 * x * y * (xx - yy), 1.7701307697799304 * y * z * (-3.0 * xx + yy),
                0.94617469575756008 * x * y * (7.0 * zz - 1.0), 0.66904654355728921 * y * z * (3.0 - 7.0 * zz),
                3.7024941420321507 * zz * zz - 3.1735664074561294 * zz + 0.31735664074561293,
                0.66904654355728921 * x * z * (3.0 - 7.0 * zz), 0.47308734787878004 * (xx - yy) * (7.0 * zz - 1.0),
                1.7701307697799304 * x * z * (-xx + 3.0 * yy),
                0.62583573544917614 * (xx * xx + yy * yy) - 3.7550144126950569 * xx * yy]
    return torch.stack(out, -1)


def _mlp(n_in: int, hidden: int, n_layers: int, n_out: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    d = n_in
    for _ in range(n_layers):
        layers += [nn.Linear(d, hidden), nn.ReLU(inplace=True)]
        d = hidden
    layers.append(nn.Linear(d, n_out))
    return nn.Sequential(*layers)


class UnknownExpressionError(KeyError):
    """An expression name the field was not trained with."""

    def __str__(self) -> str:  # KeyError would print the message with quotes
        return str(self.args[0]) if self.args else ""


# ------------------------------------------------------------------------------ the field

class HeadField(nn.Module):
    """Expression-conditioned head radiance field (see the module docstring).

    ``backend`` is the hash grid's (``"auto"``, ``"torch"``, ``"tcnn"``); the state dict is the
    same for all of them.
    """

    def __init__(self, cfg: FieldConfig, backend: str = "auto"):
        super().__init__()
        self.cfg = cfg
        self.encoding = HashGrid(3, cfg.n_levels, cfg.n_features, cfg.log2_hashmap_size, cfg.base_resolution,
                                 interpolation=cfg.interpolation, backend=backend,
                                 max_resolution=cfg.max_resolution)
        self.encoding.check_inputs = False  # points are clamped to the box below
        n_e = cfg.n_expressions
        self.expression_proj = nn.Linear(n_e, cfg.expression_proj_dim) \
            if n_e and cfg.expression_proj_dim else None
        n_proj = cfg.expression_proj_dim if self.expression_proj is not None else 0
        self.density_net = _mlp(self.encoding.n_output_dims + n_proj, cfg.hidden_dim, cfg.density_layers,
                                1 + cfg.geo_feat_dim)
        self.latents = nn.Embedding(cfg.n_latents, cfg.latent_dim) if cfg.latent_dim else None
        if self.latents is not None:
            nn.init.normal_(self.latents.weight, std=0.01)
        n_col = cfg.geo_feat_dim + cfg.sh_degree ** 2 + n_e + cfg.latent_dim
        self.color_net = _mlp(n_col, cfg.color_hidden_dim, cfg.color_layers, 3)
        self.register_buffer("box", torch.tensor([cfg.box_min, cfg.box_max], dtype=torch.float32),
                             persistent=False)
        self._index = {n: k for k, n in enumerate(cfg.expression_names)}

    # ----- geometry -----

    @property
    def box_scale(self) -> float:
        """The box's largest side (world units): the network's unit of length."""
        return float(max(b - a for a, b in zip(self.cfg.box_min, self.cfg.box_max)))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3)`` world points -> ``(N, 3)`` box coordinates (``[0, 1]^3`` inside the box)."""
        return (x - self.box[0]) / (self.box[1] - self.box[0])

    # ----- expressions -----

    @property
    def expression_names(self) -> tuple[str, ...]:
        return self.cfg.expression_names

    def encode_expression(self, expression: Mapping[str, float] | None) -> torch.Tensor:
        """``{name: weight}`` -> ``(E,)`` float32 vector in ``expression_names`` order (missing
        names are 0; ``None`` is the neutral face). Unknown names raise
        :class:`UnknownExpressionError` naming close or valid names."""
        vec = torch.zeros(self.cfg.n_expressions, dtype=torch.float32)
        if expression is None:
            return vec.to(self.box.device)
        if not isinstance(expression, Mapping):
            raise TypeError(f"expression must be a mapping {{name: weight}}, got {type(expression).__name__}")
        for name, w in expression.items():
            k = self._index.get(name)
            if k is None:
                valid = self.cfg.expression_names
                if not valid:
                    hint = "this field takes no expression (it was trained without one)"
                else:
                    hint = name_hint(name, valid)
                raise UnknownExpressionError(f"unknown expression name {name!r}; {hint}")
            if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w):
                raise ValueError(f"expression weight of {name!r} must be a finite number, got {w!r}")
            vec[k] = float(w)
        return vec.to(self.box.device)

    def encode_expressions(self, expressions: Sequence[Mapping[str, float] | None]) -> torch.Tensor:
        """A list of expression dicts -> ``(B, E)``."""
        if not expressions:
            return torch.zeros(0, self.cfg.n_expressions, device=self.box.device)
        return torch.stack([self.encode_expression(e) for e in expressions])

    def mean_latent(self) -> torch.Tensor | None:
        """The mean per-frame code (used for frames without one, e.g. novel expressions)."""
        return None if self.latents is None else self.latents.weight.mean(0)

    # ----- queries (the renderer's interface) -----

    def query_density(self, x: torch.Tensor, cond: Mapping[str, torch.Tensor] | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """Density and geometry features.

        Args:
            x: ``(N, 3)`` world points.
            cond: per-point conditioning: ``"expression"`` ``(N, E)`` (default zeros).
        Returns:
            ``sigma`` ``(N,)`` (per world unit, 0 outside the box) and ``geo`` ``(N, G)``.
        """
        x01 = self.normalize(x)
        inside = ((x01 >= 0) & (x01 <= 1)).all(-1)
        h = self.encoding(x01.clamp(0.0, 1.0))
        if self.expression_proj is not None:
            e = self._expression(cond, x.shape[0], x.device)
            h = torch.cat([h, self.expression_proj(e)], -1)
        out = self.density_net(h)
        raw, geo = out[:, 0], out[:, 1:]
        if self.cfg.density_activation == "trunc_exp":
            sigma = trunc_exp(raw)
        else:
            sigma = nn.functional.softplus(raw)
        sigma = torch.where(inside, sigma, torch.zeros_like(sigma)) / self.box_scale
        return sigma, geo

    def query_color(self, geo: torch.Tensor, dirs: torch.Tensor,
                    cond: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        """RGB ``(N, 3)`` in [0, 1] from geometry features ``(N, G)``, unit view directions
        ``(N, 3)`` (the direction the ray travels) and the conditioning: ``"expression"``
        ``(N, E)``, ``"frame"`` ``(N,)`` int64 latent index (-1 or absent: the mean latent)."""
        n = geo.shape[0]
        parts = [geo, spherical_harmonics(dirs, self.cfg.sh_degree)]
        if self.cfg.n_expressions:
            parts.append(self._expression(cond, n, geo.device))
        if self.latents is not None:
            parts.append(self._latent(cond, n))
        return torch.sigmoid(self.color_net(torch.cat(parts, -1)))

    def forward(self, x: torch.Tensor, dirs: torch.Tensor, expression: torch.Tensor | None = None,
                frame: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(N, 3)`` points, ``(N, 3)`` directions, ``(N, E)`` expressions, ``(N,)`` frame ids ->
        ``sigma (N,)``, ``rgb (N, 3)``."""
        cond = {}
        if expression is not None:
            cond["expression"] = expression
        if frame is not None:
            cond["frame"] = frame
        sigma, geo = self.query_density(x, cond)
        return sigma, self.query_color(geo, dirs, cond)

    def _expression(self, cond, n: int, device) -> torch.Tensor:
        e = None if cond is None else cond.get("expression")
        if e is None:
            return torch.zeros(n, self.cfg.n_expressions, device=device)
        if e.dim() == 1:
            e = e.expand(n, -1)
        if e.shape != (n, self.cfg.n_expressions):
            raise ValueError(f"HeadField: expression must be ({n}, {self.cfg.n_expressions}) "
                             f"(one weight per name of expression_names), got {tuple(e.shape)}")
        return e

    def _latent(self, cond, n: int) -> torch.Tensor:
        frame = None if cond is None else cond.get("frame")
        mean = self.latents.weight.mean(0)
        if frame is None:
            return mean.expand(n, -1)
        frame = frame.expand(n) if frame.dim() == 0 else frame
        known = frame >= 0
        codes = self.latents(frame.clamp(min=0))
        return torch.where(known[:, None], codes, mean.expand(n, -1))

    def extra_repr(self) -> str:
        return f"expressions={self.cfg.n_expressions}, latent_dim={self.cfg.latent_dim}"


__all__ = ["FIELD_SCHEMA", "FieldConfig", "HeadField", "UnknownExpressionError", "spherical_harmonics",
           "trunc_exp"]
