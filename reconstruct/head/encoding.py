"""Multiresolution hash encoding (Instant-NGP) with tiny-cuda-nn's exact semantics.

``HashGrid`` maps points ``x`` in ``[0, 1]^D`` (``N x D``) to ``N x (n_levels * n_features)``
features. Its trainable state is one flat float vector ``params`` laid out as tiny-cuda-nn lays
out its ``HashGrid`` encoding, so a table trained with one backend loads into another:

- ``backend="torch"``: pure PyTorch (CPU or GPU): ``hash_grid_encode``, a fused forward with a
  hand-written backward, tested against the plain-autograd reference (``fused=False``).
- ``backend="tcnn"``: ``tinycudann.Encoding`` (needs the tiny-cuda-nn PyTorch bindings and CUDA).
- ``backend="triton"``: Triton kernels (``_triton_grid``: fused forward, atomic-add backward; 3-D
  points, 1/2/4/8 features) on CUDA; needs the ``triton`` package and a CUDA device (or Triton's
  CPU interpreter, ``TRITON_INTERPRET=1``, which the parity tests use where there is no GPU).
- ``backend="auto"``: tcnn when it imports and CUDA is available, else torch (logged at INFO).

The semantics below were checked against tiny-cuda-nn's sources
(``include/tiny-cuda-nn/encodings/grid.h`` and ``include/tiny-cuda-nn/common_device.h``); each
detail names the tcnn function it mirrors:

- level scale ``s_l = exp2(l * log2(per_level_scale)) * base_resolution - 1`` in float32 and
  resolution ``r_l = ceil(s_l) + 1`` (``grid_scale``, ``grid_resolution``);
- rows per level ``min(next_multiple(r_l^D, 8), 2^log2_hashmap_size)``, levels concatenated,
  each level ``[rows, n_features]`` row-major (``GridEncodingTemplated`` constructor);
- ``pos = x * s_l + 0.5``, cell ``floor(pos)`` cast to uint32, ``frac = pos - floor(pos)``
  (``pos_fract``);
- a level is dense (index ``sum_d c_d * r_l^d``) when ``r_l^D`` fits its rows, else hashed
  (XOR of ``c_d * prime_d`` in uint32, primes 1, 2654435761, 805459861, 3674653429); both
  then take ``% rows`` (``grid_index``, ``coherent_prime_hash`` / ``fast_hash``);
- corner ``k`` has coordinate ``c_d + bit_d(k)``, weight ``prod_d (bit ? w : 1 - w)`` with
  ``w = frac`` (linear) or ``frac^2 (3 - 2 frac)`` (smoothstep) (``kernel_grid``,
  ``smoothstep``);
- initialisation uniform in ``[-1e-4, 1e-4]`` (``initialize_params``).

Known float differences: tcnn evaluates ``pos`` with one fused multiply-add and its device
``exp2f`` may differ from the host's by an ulp, so points within ~1e-7 of a cell boundary may
fall in the neighbouring cell; outputs agree to float32 rounding elsewhere.

Example::

    grid = HashGrid(n_levels=16, n_features=2, log2_hashmap_size=19, backend="torch")
    feats = grid(torch.rand(1024, 3))          # (1024, 32)
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import logging
import math
import os
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import torch
from torch import nn

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
BACKENDS = ("auto", "torch", "tcnn", "triton")
INTERPOLATIONS = ("linear", "smoothstep")
DEFAULT_MAX_RESOLUTION = 2048
INIT_RANGE = 1e-4

# coherent_prime_hash / fast_hash: the first prime is 1 so that neighbouring x share cache lines.
PRIMES = (1, 2654435761, 805459861, 3674653429)
_U32 = 0xFFFFFFFF
_TCNN_INSTALL = "pip install git+https://github.com/NVlabs/tiny-cuda-nn/#subdirectory=bindings/torch"


class BackendUnavailable(RuntimeError):
    """The requested encoding backend is not installed, needs CUDA, or is not implemented."""


def _f32(v: float) -> torch.Tensor:
    return torch.tensor(v, dtype=torch.float32)


def _level_scale(level: int, per_level_scale: float, base_resolution: int) -> float:
    # grid_scale: exp2f(level * log2f(per_level_scale)) * base_resolution - 1.0f, all in float32
    # (per_level_scale reaches tcnn as a float; the constructor takes std::log2 of that float).
    log2_scale = torch.log2(_f32(per_level_scale))
    scale = torch.exp2(_f32(float(level)) * log2_scale) * _f32(float(base_resolution)) - _f32(1.0)
    return float(scale)


@dataclass(frozen=True)
class HashGridConfig:
    """Hyper-parameters of a hash grid; plain data, saved with ``to_dict`` (schema versioned)."""

    n_input_dims: int = 3
    """D, the number of input coordinates (torch backend: 1..4; tcnn: 2..4)."""
    n_levels: int = 16
    """L, the number of resolution levels."""
    n_features: int = 2
    """F, features per level (1, 2, 4 or 8, as tcnn's ``n_features_per_level``)."""
    log2_hashmap_size: int = 19
    """log2 of the most table rows one level may have (10..30)."""
    base_resolution: int = 16
    """Vertices per axis of the coarsest level (tcnn's ``base_resolution``)."""
    per_level_scale: float | None = None
    """Growth factor between levels. ``None``: ``exp(ln(max_resolution / base_resolution) /
    (n_levels - 1))``, the Instant-NGP rule; after construction this holds the resolved value."""
    max_resolution: int | None = None
    """Finest resolution used to derive ``per_level_scale`` when that is ``None`` (default 2048,
    as Instant-NGP's NeRF). Give one of the two, not both; reset to ``None`` once resolved."""
    interpolation: str = "linear"
    """``"linear"`` or ``"smoothstep"`` (C1 across cells; zero gradient at vertices)."""

    def __post_init__(self) -> None:
        def need_int(name: str, lo: int, hi: int | None = None) -> int:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                raise ValueError(f"HashGrid: {name} must be an int, got {v!r}")
            if v < lo or (hi is not None and v > hi):
                rng = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
                raise ValueError(f"HashGrid: {name} must be {rng}, got {v}")
            return v

        need_int("n_input_dims", 1, 4)
        n_levels = need_int("n_levels", 1)
        nf = self.n_features
        if isinstance(nf, bool) or not isinstance(nf, int) or nf not in (1, 2, 4, 8):
            raise ValueError(f"HashGrid: n_features must be 1, 2, 4 or 8 (tcnn's n_features_per_level), "
                             f"got {self.n_features!r}")
        need_int("log2_hashmap_size", 10, 30)
        base = need_int("base_resolution", 2)
        interp = self.interpolation.lower() if isinstance(self.interpolation, str) else self.interpolation
        if interp not in INTERPOLATIONS:
            raise ValueError(f"HashGrid: interpolation must be one of {INTERPOLATIONS}, got {self.interpolation!r}")
        object.__setattr__(self, "interpolation", interp)

        pls, max_res = self.per_level_scale, self.max_resolution
        if pls is not None and max_res is not None:
            raise ValueError("HashGrid: give per_level_scale or max_resolution, not both "
                             f"(got per_level_scale={pls!r}, max_resolution={max_res!r})")
        if pls is None:
            if max_res is None:
                max_res = DEFAULT_MAX_RESOLUTION
            if isinstance(max_res, bool) or not isinstance(max_res, int):
                raise ValueError(f"HashGrid: max_resolution must be an int, got {max_res!r}")
            if n_levels == 1:
                pls = 1.0
            elif max_res <= base:
                raise ValueError(f"HashGrid: max_resolution ({max_res}) must exceed base_resolution ({base}) "
                                 f"when n_levels > 1")
            else:
                pls = math.exp(math.log(max_res / base) / (n_levels - 1))
        if isinstance(pls, bool) or not isinstance(pls, (int, float)) or not math.isfinite(pls) or pls <= 0:
            raise ValueError(f"HashGrid: per_level_scale must be a finite positive number, got {pls!r}")
        if n_levels > 1 and pls <= 1.0:
            raise ValueError(f"HashGrid: per_level_scale must be > 1 when n_levels > 1, got {pls}")
        object.__setattr__(self, "per_level_scale", float(pls))
        object.__setattr__(self, "max_resolution", None)

    # ----- derived geometry (tcnn's offset table) -----

    @cached_property
    def level_scales(self) -> tuple[float, ...]:
        """Float32 ``grid_scale`` of every level (positions are ``x * scale + 0.5``)."""
        return tuple(_level_scale(lv, self.per_level_scale, self.base_resolution) for lv in range(self.n_levels))

    @cached_property
    def level_resolutions(self) -> tuple[int, ...]:
        """Vertices per axis of every level: ``ceil(scale) + 1`` (``grid_resolution``)."""
        return tuple(math.ceil(s) + 1 for s in self.level_scales)

    @cached_property
    def level_sizes(self) -> tuple[int, ...]:
        """Table rows of every level: ``min(next_multiple(res^D, 8), 2^log2_hashmap_size)``."""
        sizes = []
        for res in self.level_resolutions:
            dense = res ** self.n_input_dims
            # GridEncodingTemplated: dense count clamped to uint32 max/2, rounded up to a multiple of
            # 8 for aligned access, then capped at the hash table size (the clamp never binds for
            # log2_hashmap_size <= 30).
            dense = min(dense, _U32 // 2)
            sizes.append(min(-(-dense // 8) * 8, 1 << self.log2_hashmap_size))
        return tuple(sizes)

    @cached_property
    def level_offsets(self) -> tuple[int, ...]:
        """Row offset of every level in the flat table, plus the total (length ``n_levels + 1``)."""
        offsets = [0]
        for size in self.level_sizes:
            offsets.append(offsets[-1] + size)
        return tuple(offsets)

    @cached_property
    def level_hashed(self) -> tuple[bool, ...]:
        """Whether each level is hashed (``res^D`` exceeds its rows) rather than dense."""
        return tuple(res ** self.n_input_dims > size for res, size in zip(self.level_resolutions, self.level_sizes))

    @property
    def n_params(self) -> int:
        """Length of the flat ``params`` vector: total rows times ``n_features``."""
        return self.level_offsets[-1] * self.n_features

    @property
    def n_output_dims(self) -> int:
        return self.n_levels * self.n_features

    # ----- serialisation -----

    def to_dict(self) -> dict[str, Any]:
        """Plain data with a schema version (``per_level_scale`` resolved)."""
        d = {"schema_version": SCHEMA_VERSION, "otype": "HashGrid"}
        d.update({f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "max_resolution"})
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HashGridConfig:
        d = dict(d)
        version = d.pop("schema_version", SCHEMA_VERSION)
        if version != SCHEMA_VERSION:
            raise ValueError(f"HashGrid: unsupported config schema_version {version!r} "
                             f"(this code reads {SCHEMA_VERSION})")
        otype = d.pop("otype", "HashGrid")
        if otype != "HashGrid":
            raise ValueError(f"HashGrid: config otype must be 'HashGrid', got {otype!r}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"HashGrid: unknown config keys {unknown}")
        return cls(**d)

    def to_tcnn(self) -> dict[str, Any]:
        """The equivalent ``tinycudann.Encoding`` config (its ``params`` share our layout)."""
        return {
            "otype": "HashGrid",
            "n_levels": self.n_levels,
            "n_features_per_level": self.n_features,
            "log2_hashmap_size": self.log2_hashmap_size,
            "base_resolution": self.base_resolution,
            "per_level_scale": self.per_level_scale,
            "interpolation": "Linear" if self.interpolation == "linear" else "Smoothstep",
            # pinned: CoherentPrime is tcnn's default hash (primes 1, 2654435761, 805459861, ...)
            "hash": "CoherentPrime",
        }


# ---------------------------------------------------------------------------------------------
# pure-PyTorch twin


def _mul_u32(a: torch.Tensor, b: int) -> torch.Tensor:
    """``(a * b) mod 2^32`` for int64 ``a`` in ``[0, 2^32)`` and ``0 <= b < 2^32``, without int64
    overflow: split ``a`` into 16-bit halves so every partial product stays below 2^49."""
    lo = a & 0xFFFF
    hi = a >> 16
    return ((((hi * b) & 0xFFFF) << 16) + lo * b) & _U32


def hash_grid_index(corners: torch.Tensor, level: int, config: HashGridConfig) -> torch.Tensor:
    """Row of ``corners`` within ``level``'s table, as tcnn's ``grid_index``.

    Args:
        corners: ``(..., D)`` int64 integer grid coordinates, taken modulo 2^32 (as tcnn's uint32).
    Returns:
        ``(...)`` int64 rows in ``[0, level_sizes[level])``.
    """
    d_in = config.n_input_dims
    if corners.shape[-1] != d_in:
        raise ValueError(f"hash_grid_index: corners must be (..., {d_in}), got {tuple(corners.shape)}")
    corners = corners.to(torch.int64) & _U32
    res = config.level_resolutions[level]
    size = config.level_sizes[level]
    index = torch.zeros(corners.shape[:-1], dtype=torch.int64, device=corners.device)
    if not config.level_hashed[level]:
        # grid_index: dense (stride) index sum_d c_d * res^d in uint32 when res^D fits the table
        # (stride <= hashmap_size); the `% hashmap_size` below is kept because the +0.5 offset lets
        # a corner reach coordinate `res`, which wraps into the next row / the table's start.
        stride = 1
        for dim in range(d_in):
            index = (index + _mul_u32(corners[..., dim], stride)) & _U32
            stride *= res
    else:
        # coherent_prime_hash (fast_hash in older tcnn): XOR of c_d * prime_d in uint32.
        for dim in range(d_in):
            index = index ^ _mul_u32(corners[..., dim], PRIMES[dim])
    # grid_index: `return index % hashmap_size` for both dense and hashed levels.
    return index % size


def _corner_bits(d_in: int, device: torch.device) -> torch.Tensor:
    # kernel_grid: corner idx in [0, 2^D) takes +1 along dim d when bit d of idx is set.
    k = torch.arange(1 << d_in, device=device)
    return (k[:, None] >> torch.arange(d_in, device=device)[None, :]) & 1


def hash_grid_encode(x: torch.Tensor, params: torch.Tensor, config: HashGridConfig, *,
                     fused: bool = True) -> torch.Tensor:
    """Encode points with a hash grid in pure PyTorch (differentiable in ``x`` and ``params``).

    Args:
        x: ``(N, D)`` float points, nominally in ``[0, 1]^D`` (outside wraps as tcnn does).
        params: ``(n_params,)`` flat table (``config.n_params``), levels concatenated, each level
            ``[rows, n_features]`` row-major.
        config: the grid's ``HashGridConfig``.
        fused: ``True`` (default): ``HashGridFunction``, one index computation per level and a
            hand-written backward (``index_add_`` into one flat gradient buffer; the position
            gradient only when ``x`` needs it); several times faster on the CPU. ``False``: the
            plain autograd reference. The two agree to float rounding (the fused path sums the
            corners and accumulates table gradients in another order); a double backward
            (``create_graph=True``) through the fused path differentiates the reference.
    Returns:
        ``(N, n_levels * n_features)`` features, level-major (level 0's features first), in the
        promoted dtype of ``x`` (float32 at least) and ``params``.

    Levels are processed one at a time, so the working memory is ``O(N * 2^D * n_features)``
    per level; the fused path keeps only ``x`` and ``params`` for backward and recomputes each
    level's rows and weights there.
    """
    x = _prepare(x, params, config)
    if not fused:
        return _encode_reference(x, params, config)
    if torch.is_grad_enabled() and (x.requires_grad or params.requires_grad):
        return HashGridFunction.apply(x, params, config)
    return _encode_fused(x, params, config)


def _prepare(x: torch.Tensor, params: torch.Tensor, config: HashGridConfig) -> torch.Tensor:
    _check_points(x, config.n_input_dims)
    if params.dim() != 1 or params.numel() != config.n_params:
        raise ValueError(f"hash_grid_encode: params must be ({config.n_params},), got {tuple(params.shape)}")
    if x.device != params.device:
        raise ValueError(f"hash_grid_encode: x is on {x.device} but params on {params.device}")
    if x.dtype not in (torch.float32, torch.float64):
        x = x.float()
    return x


def _encode_reference(x: torch.Tensor, params: torch.Tensor, config: HashGridConfig) -> torch.Tensor:
    n, d_in = x.shape
    n_feat = config.n_features
    n_corners = 1 << d_in
    table = params.view(-1, n_feat)
    bits = _corner_bits(d_in, x.device)
    smooth = config.interpolation == "smoothstep"

    outs = []
    for level in range(config.n_levels):
        lo, hi = config.level_offsets[level], config.level_offsets[level + 1]
        scale = config.level_scales[level]
        # pos_fract: pos = x * scale + 0.5; pos_grid = (uint32)(int)floor(pos); frac = pos - floor.
        # The 0.5 staggers the levels (Instant-NGP paper, appendix A).
        pos = x * scale + 0.5
        cell_f = torch.floor(pos).detach()
        frac = pos - cell_f
        cell = cell_f.to(torch.int64) & _U32
        # smoothstep(v) = v*v*(3 - 2v); identity_fun for linear. d/dx of frac is `scale`, as the
        # `weight = scale` factor of tcnn's dy_dx.
        w1 = frac * frac * (3.0 - 2.0 * frac) if smooth else frac
        w0 = 1.0 - w1
        weights = None
        for dim in range(d_in):
            pair = torch.stack((w0[:, dim], w1[:, dim]), dim=1)  # (N, 2)
            wd = pair[:, bits[:, dim]]  # (N, 2^D)
            weights = wd if weights is None else weights * wd
        corners = (cell[:, None, :] + bits[None, :, :]) & _U32  # (N, 2^D, D): pos_grid + 1 wraps in uint32
        rows = hash_grid_index(corners, level, config)  # (N, 2^D)
        vals = table[lo:hi].index_select(0, rows.reshape(-1)).view(n, n_corners, n_feat)
        outs.append((weights.unsqueeze(-1) * vals).sum(dim=1))
    return torch.cat(outs, dim=1)


# ----- fused path ------------------------------------------------------------------------------
#
# The same arithmetic as _encode_reference, laid out for speed on the CPU:
# - corner-major layout: points are the last (contiguous) axis of every per-level tensor
#   (``(D, N)`` cells and weights, ``(2^D, N)`` rows), so every element-wise op is a long
#   vectorised loop; the reference's ``(N, 2^D, ...)`` broadcasts have inner loops of length 2;
# - the row of corner k is built from 2 * D per-axis terms (one per axis and corner bit)
#   combined by one broadcast over a (2, ..., 2, N) grid, instead of hashing N * 2^D * D
#   coordinates; for power-of-two tables the `% rows` is a mask applied to the per-axis terms
#   before the XOR ((a ^ b) % 2^k == (a % 2^k) ^ (b % 2^k));
# - the 2^D weights are one broadcast product of the per-axis (1 - w, w) pairs, multiplied in
#   the reference's order (axis 0 first), so each weight is bit-identical to the reference's;
# - a row's F features are gathered / scatter-added as one element (a complex view for F = 2,
#   a plain vector for F = 1), which index_select / index_add_ handle far faster than rows;
# - backward accumulates the table gradient with index_add_ into one flat buffer (autograd's
#   slice backward allocates and adds a full-size zero buffer per level) and recomputes cells,
#   weights and rows from x instead of keeping them, so the memory held between forward and
#   backward is x and params only, and the working memory is one level's.
# Outputs equal the reference up to float rounding of the corner sum and the order in which a
# table row's gradient contributions are added (corner-major here, point-major there).


def _axis_view(t: torch.Tensor, dim: int, d_in: int) -> torch.Tensor:
    """``(2, N)`` per-axis pair -> broadcastable over ``(2, ..., 2, N)``, whose flattening to
    ``(2^D, N)`` is corner order (corner ``k`` takes bit ``d`` of ``k`` along axis ``d``, so axis
    ``D - 1`` is the leading grid dimension and axis 0 the last one before N)."""
    shape = [1] * d_in + [t.shape[-1]]
    shape[d_in - 1 - dim] = 2
    return t.view(shape)


def _level_cells(xt: torch.Tensor, scale: float, smooth: bool):
    """frac, w1 (``(D, N)``, x's dtype) and cell (``(D, N)`` int64 ``floor(pos)``) of one level,
    computed as the reference does (pos_fract)."""
    pos = xt * scale + 0.5
    cell_f = torch.floor(pos)
    frac = pos - cell_f
    cell = cell_f.to(torch.int64)  # reduced to uint32 by _level_rows
    w1 = frac * frac * (3.0 - 2.0 * frac) if smooth else frac
    return frac, w1, cell


def _level_rows(cell: torch.Tensor, level: int, config: HashGridConfig) -> torch.Tensor:
    """``(2^D * N,)`` int64 rows (corner-major) of the corners of cells ``cell`` (``(D, N)`` int64,
    ``floor(pos)`` not yet reduced to uint32): the values ``hash_grid_index`` gives for
    ``(cell + bits) & 0xFFFFFFFF``."""
    d_in, n = cell.shape
    size = config.level_sizes[level]
    pow2 = size & (size - 1) == 0
    hashed = config.level_hashed[level]
    res = config.level_resolutions[level]
    if hashed and pow2:
        # (a ^ b) % 2^k == (a % 2^k) ^ (b % 2^k) and (c * p) % 2^k == ((c % 2^k) * (p % 2^k)) % 2^k
        # (int64 & mask is c mod 2^k for negative c too), so every term stays below 2^(2k):
        # no uint32 emulation needed.
        mask = size - 1
        terms = []
        for dim in range(d_in):
            c = cell[dim]
            pair = torch.stack((c, c + 1)).bitwise_and_(mask)  # (2, N): corner bit 0 / 1 on this axis
            prime = PRIMES[dim] & mask
            if prime != 1:
                pair = pair.mul_(prime).bitwise_and_(mask)
            terms.append(_axis_view(pair, dim, d_in))
        op = torch.bitwise_xor
    elif not hashed and _all_in(cell, 0, res - 1):
        # dense, every corner coordinate in [0, res]: sum_d c_d * res^d <= res * (res^D - 1) /
        # (res - 1) < 2 * res^D <= 2 * size, so no uint32 wrap and `% size` is one subtraction
        terms = []
        stride = 1
        for dim in range(d_in):
            c = cell[dim]
            pair = torch.stack((c, c + 1))
            if stride != 1:
                pair = pair.mul_(stride)
            terms.append(_axis_view(pair, dim, d_in))
            stride *= res
        rows = _combine(terms, torch.add, d_in, n)
        return rows.sub_(rows.ge(size).long(), alpha=size)
    else:  # general: uint32 arithmetic on int64, then `% size` (grid_index)
        terms = []
        stride = 1
        for dim in range(d_in):
            c = cell[dim] & _U32
            pair = torch.stack((c, (c + 1) & _U32))
            if hashed:
                pair = _mul_u32(pair, PRIMES[dim])
            else:
                pair = (pair * stride) & _U32  # stride <= size <= 2^30: the product stays below 2^62
                stride *= res
            terms.append(_axis_view(pair, dim, d_in))
        rows = _combine(terms, torch.bitwise_xor if hashed else torch.add, d_in, n)
        if not hashed:
            rows = rows & _U32  # D terms < 2^32 each: the sum stays far below 2^63
        return rows % size
    return _combine(terms, op, d_in, n)


def _all_in(t: torch.Tensor, lo: int, hi: int) -> bool:
    if t.numel() == 0:
        return True
    mn, mx = torch.aminmax(t)
    return lo <= int(mn) and int(mx) <= hi


def _combine(terms: list[torch.Tensor], op, d_in: int, n: int) -> torch.Tensor:
    """Broadcast-combine the per-axis ``(.., 2, .., N)`` terms into ``(2^D * N,)`` (corner-major)."""
    out = terms[0]
    for t in terms[1:]:
        out = op(out, t)
    return out.expand([2] * d_in + [n]).reshape(-1)


def _corner_weights(w1: torch.Tensor, skip: int | None = None) -> torch.Tensor | None:
    """``(2, ..., 2, N)`` products of the per-axis ``(1 - w1, w1)`` pairs, axis 0 first (the
    reference's order); ``skip``: leave that axis out (the position gradient). ``None`` when no
    axis is left."""
    d_in = w1.shape[0]
    w0 = 1.0 - w1
    weights = None
    for dim in range(d_in):
        if dim == skip:
            continue
        wd = _axis_view(torch.stack((w0[dim], w1[dim])), dim, d_in)
        weights = wd if weights is None else weights * wd
    return weights


def _element_view(t: torch.Tensor, n_feat: int) -> torch.Tensor | None:
    """``t`` (a contiguous ``(rows, F)`` tensor) as a vector with one element per row, when a
    dtype with that layout and element-wise addition exists (F = 1; F = 2 as complex, on the CPU
    only, where index_select / index_add_ on (R, F) rows cost a loop step per row)."""
    if n_feat == 1:
        return t.view(-1)
    if n_feat == 2 and t.dtype in (torch.float32, torch.float64) and t.device.type == "cpu":
        return t.view(torch.complex64 if t.dtype == torch.float32 else torch.complex128).view(-1)
    return None


def _gather(table_rows: torch.Tensor, rows: torch.Tensor, n_feat: int) -> torch.Tensor:
    """Rows ``rows`` (``(K,)``) of ``table_rows`` (``(R, F)`` contiguous) -> ``(K, F)``."""
    flat = _element_view(table_rows, n_feat)
    if flat is None:
        return table_rows.index_select(0, rows)
    vals = flat.index_select(0, rows)
    return torch.view_as_real(vals) if n_feat == 2 else vals.view(-1, 1)


def _scatter_add(table_rows: torch.Tensor, rows: torch.Tensor, src: torch.Tensor, n_feat: int) -> None:
    """``table_rows[rows[i]] += src[i]`` in order of ``i`` (``src`` ``(K, F)`` contiguous)."""
    flat = _element_view(table_rows, n_feat)
    if flat is None:
        table_rows.index_add_(0, rows, src)
    elif n_feat == 2:
        flat.index_add_(0, rows, torch.view_as_complex(src))
    else:
        flat.index_add_(0, rows, src.view(-1))


def _encode_fused(x: torch.Tensor, params: torch.Tensor, config: HashGridConfig) -> torch.Tensor:
    n, d_in = x.shape
    n_feat = config.n_features
    n_corners = 1 << d_in
    table = params.contiguous().view(-1, n_feat)
    smooth = config.interpolation == "smoothstep"
    xt = x.t().contiguous()  # (D, N)
    out = torch.empty(config.n_levels * n_feat, n, dtype=torch.promote_types(x.dtype, params.dtype),
                      device=x.device)
    for level in range(config.n_levels):
        lo, hi = config.level_offsets[level], config.level_offsets[level + 1]
        _, w1, cell = _level_cells(xt, config.level_scales[level], smooth)
        weights = _corner_weights(w1).reshape(n_corners, n)
        rows = _level_rows(cell, level, config)
        vals = _gather(table[lo:hi], rows, n_feat).view(n_corners, n, n_feat)
        for f in range(n_feat):
            torch.sum(weights * vals[:, :, f], dim=0, out=out[level * n_feat + f])
    return out.t().contiguous()


class HashGridFunction(torch.autograd.Function):
    """``_encode_fused`` with a hand-written backward (table and, when needed, position gradients).

    Only ``x`` and ``params`` are saved; each level's cells, weights and rows are recomputed in
    backward. A backward with ``create_graph=True`` (double backward) differentiates the autograd
    reference instead, so higher derivatives stay exact.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, params: torch.Tensor, config: HashGridConfig) -> torch.Tensor:
        ctx.save_for_backward(x, params)
        ctx.config = config
        return _encode_fused(x, params, config)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        x, params = ctx.saved_tensors
        config = ctx.config
        need_x, need_p = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if torch.is_grad_enabled():  # create_graph=True: differentiate the reference graph
            return (*_reference_grads(x, params, config, grad_out, need_x, need_p), None)
        return (*_backward_fused(x, params, config, grad_out, need_x, need_p), None)


def _reference_grads(x: torch.Tensor, params: torch.Tensor, config: HashGridConfig, grad_out: torch.Tensor,
                     need_x: bool, need_p: bool) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Gradients through the autograd reference with ``create_graph=True`` (double backward of the
    fused and Triton paths)."""
    with torch.enable_grad():
        out = _encode_reference(x, params, config)
        inputs = [t for t, need in ((x, need_x), (params, need_p)) if need]
        grads = iter(torch.autograd.grad(out, inputs, grad_out, create_graph=True))
    return (next(grads) if need_x else None), (next(grads) if need_p else None)


def _backward_fused(x: torch.Tensor, params: torch.Tensor, config: HashGridConfig, grad_out: torch.Tensor,
                    need_x: bool, need_p: bool) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    n, d_in = x.shape
    n_feat = config.n_features
    n_corners = 1 << d_in
    smooth = config.interpolation == "smoothstep"
    table = params.contiguous().view(-1, n_feat)
    xt = x.t().contiguous()  # (D, N)
    gt = grad_out.t().contiguous()  # (L * F, N); from .sum() grad_out is an expanded scalar
    grad_p = grad_table = contrib = grad_xt = None
    if need_p:
        grad_p = torch.zeros(params.shape, dtype=params.dtype, device=params.device)
        grad_table = grad_p.view(-1, n_feat)
        contrib = torch.empty(n_corners, n, n_feat, dtype=params.dtype, device=params.device)
    if need_x:
        grad_xt = torch.zeros(d_in, n, dtype=torch.promote_types(x.dtype, grad_out.dtype), device=x.device)
    for level in range(config.n_levels):
        lo, hi = config.level_offsets[level], config.level_offsets[level + 1]
        scale = config.level_scales[level]
        g = gt[level * n_feat:(level + 1) * n_feat]  # (F, N)
        frac, w1, cell = _level_cells(xt, scale, smooth)
        rows = _level_rows(cell, level, config)
        if need_p:
            # d out / d vals (the reference's mul backward), cast to the table's dtype on write
            weights = _corner_weights(w1).reshape(n_corners, n)
            for f in range(n_feat):
                if contrib.dtype == torch.promote_types(weights.dtype, g.dtype):
                    torch.mul(weights, g[f], out=contrib[:, :, f])
                else:
                    contrib[:, :, f].copy_(weights * g[f])
            _scatter_add(grad_table[lo:hi], rows, contrib.view(-1, n_feat), n_feat)
        if need_x:
            vals = _gather(table[lo:hi], rows, n_feat).view(n_corners, n, n_feat)
            s = None  # (2^D, N): d loss / d weight of each corner
            for f in range(n_feat):
                term = vals[:, :, f] * g[f]
                s = term if s is None else s + term
            s = s.view([2] * d_in + [n])
            for dim in range(d_in):
                others = _corner_weights(w1, skip=dim)
                t = s * others if others is not None else s
                axis = d_in - 1 - dim
                rest = [a for a in range(d_in) if a != axis]
                t = t.sum(dim=rest) if rest else t  # (2, N); sum(dim=[]) would sum everything
                gf = t[1] - t[0]  # d weights / d w1 is +-(the other axes' weights)
                if smooth:
                    gf = gf * (6.0 * frac[dim] * (1.0 - frac[dim]))  # d smoothstep / d frac
                grad_xt[dim] += gf * scale  # d frac / d x = scale (floor is piecewise constant)
    grad_x = grad_xt.t().to(x.dtype).contiguous() if need_x else None
    return grad_x, grad_p


class TritonHashGridFunction(torch.autograd.Function):
    """The Triton kernels (``_triton_grid``) with their hand-written backward. As for
    ``HashGridFunction``, a backward with ``create_graph=True`` differentiates the autograd
    reference instead."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, params: torch.Tensor, config: HashGridConfig) -> torch.Tensor:
        from . import _triton_grid
        ctx.save_for_backward(x, params)
        ctx.config = config
        return _triton_grid.encode_forward(x, params, config)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        from . import _triton_grid
        x, params = ctx.saved_tensors
        need_x, need_p = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if torch.is_grad_enabled():
            return (*_reference_grads(x, params, ctx.config, grad_out, need_x, need_p), None)
        return (*_triton_grid.encode_backward(x, params, ctx.config, grad_out, need_x, need_p), None)


def triton_hash_grid_encode(x: torch.Tensor, params: torch.Tensor, config: HashGridConfig) -> torch.Tensor:
    """``hash_grid_encode`` through the Triton kernels (float32 out; 3-D points, F in 1, 2, 4, 8)."""
    from . import _triton_grid
    _triton_grid.check_supported(config)
    x = _prepare(x, params, config)
    if torch.is_grad_enabled() and (x.requires_grad or params.requires_grad):
        return TritonHashGridFunction.apply(x, params, config)
    return _triton_grid.encode_forward(x, params, config)


def _check_points(x: Any, d_in: int) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"HashGrid: x must be a torch.Tensor of shape (N, {d_in}), got {type(x).__name__}")
    if x.dim() != 2 or x.shape[1] != d_in:
        raise ValueError(f"HashGrid: x must have shape (N, {d_in}), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"HashGrid: x must be a floating-point tensor, got {x.dtype}")


# ---------------------------------------------------------------------------------------------
# backends


def _cuda_available() -> bool:
    return torch.cuda.is_available()


def _probe_tcnn() -> tuple[Any, str, BaseException | None]:
    """(module or None, why not, the original error)."""
    if importlib.util.find_spec("tinycudann") is None:
        return None, f"tinycudann is not installed (install tiny-cuda-nn's PyTorch bindings: {_TCNN_INSTALL})", None
    if not _cuda_available():
        return None, "tinycudann is installed but it needs a CUDA device and torch sees none", None
    try:
        return importlib.import_module("tinycudann"), "", None
    except Exception as e:  # a broken build raises ImportError, OSError or RuntimeError
        return None, f"tinycudann is installed but failed to import: {e}", e


def _probe_triton() -> str:
    """Why the triton backend cannot run here ('' when it can)."""
    if importlib.util.find_spec("triton") is None:
        return "triton is not installed (pip install triton; it also needs a CUDA device)"
    if not _cuda_available() and os.environ.get("TRITON_INTERPRET", "0") != "1":
        return "triton is installed but it needs a CUDA device and torch sees none"
    try:
        importlib.import_module("reconstruct.head._triton_grid")
    except Exception as e:  # a triton too old or broken for the kernels
        return f"triton is installed but the kernels failed to load: {e}"
    return ""


def resolve_backend(backend: str, n_input_dims: int) -> str:
    """Pick the backend: an explicit request that cannot be met raises ``BackendUnavailable``."""
    if backend not in BACKENDS:
        raise ValueError(f"HashGrid: backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "torch":
        return "torch"
    if backend == "triton":
        why = _probe_triton()
        if why:
            raise BackendUnavailable(f"HashGrid backend 'triton' is unavailable: {why}")
        return "triton"
    if backend == "tcnn":
        if not 2 <= n_input_dims <= 4:
            raise ValueError(f"HashGrid backend 'tcnn' supports 2..4 input dims, got {n_input_dims}")
        mod, why, err = _probe_tcnn()
        if mod is None:
            raise BackendUnavailable(f"HashGrid backend 'tcnn' is unavailable: {why}") from err
        return "tcnn"
    # auto
    if 2 <= n_input_dims <= 4:
        mod, why, _ = _probe_tcnn()
    else:
        mod, why = None, "tcnn supports 2..4 input dims"
    chosen = "tcnn" if mod is not None else "torch"
    logger.info("HashGrid backend 'auto' -> %r%s", chosen, "" if mod is not None else f" ({why})")
    return chosen


class HashGrid(nn.Module):
    """Multiresolution hash encoding, ``(N, D)`` points in ``[0, 1]^D`` -> ``(N, L * F)`` features.

    Args mirror ``HashGridConfig``; ``per_level_scale=None`` derives it from ``max_resolution``
    (default 2048). ``backend``: ``"auto"``, ``"torch"``, ``"tcnn"`` or ``"triton"`` (see the module
    docstring); asking for one that is missing raises ``BackendUnavailable``.

    The state dict is ``{"params": (n_params,) float}`` for every backend. Set ``check_inputs =
    False`` to skip the per-call finiteness check (it synchronises a GPU).
    """

    def __init__(self, n_input_dims: int = 3, n_levels: int = 16, n_features: int = 2,
                 log2_hashmap_size: int = 19, base_resolution: int = 16, per_level_scale: float | None = None,
                 interpolation: str = "linear", backend: str = "auto", *, max_resolution: int | None = None):
        super().__init__()
        self.config = HashGridConfig(n_input_dims=n_input_dims, n_levels=n_levels, n_features=n_features,
                                     log2_hashmap_size=log2_hashmap_size, base_resolution=base_resolution,
                                     per_level_scale=per_level_scale, max_resolution=max_resolution,
                                     interpolation=interpolation)
        self.backend = resolve_backend(backend, n_input_dims)
        if self.backend == "triton":
            importlib.import_module("reconstruct.head._triton_grid").check_supported(self.config)
        self.check_inputs = True
        device = torch.device("cuda") if self.backend == "tcnn" else None
        self.params = nn.Parameter(torch.empty(self.config.n_params, dtype=torch.float32, device=device))
        self.reset_parameters()
        self._tcnn = None
        if self.backend == "tcnn":
            tcnn = importlib.import_module("tinycudann")
            try:
                enc = tcnn.Encoding(n_input_dims, self.config.to_tcnn(), dtype=torch.float32)
            except TypeError:  # bindings older than the dtype argument
                enc = tcnn.Encoding(n_input_dims, self.config.to_tcnn())
            if enc.params.numel() != self.config.n_params:
                raise BackendUnavailable(f"tinycudann's HashGrid has {enc.params.numel()} params where the torch "
                                         f"layout has {self.config.n_params}; this tcnn version is incompatible")
            enc.params = self.params  # one shared Parameter: same state dict for every backend
            # kept outside the module tree so the state dict has only "params"
            object.__setattr__(self, "_tcnn", enc)

    def reset_parameters(self) -> None:
        """Uniform in ``[-1e-4, 1e-4]``, as tcnn's ``initialize_params``."""
        with torch.no_grad():
            self.params.uniform_(-INIT_RANGE, INIT_RANGE)

    # ----- geometry -----

    @property
    def n_output_dims(self) -> int:
        return self.config.n_output_dims

    @property
    def n_params(self) -> int:
        return self.config.n_params

    @property
    def level_offsets(self) -> tuple[int, ...]:
        """Row offset of each level in the table (times ``n_features`` for ``params``), plus the total."""
        return self.config.level_offsets

    @property
    def level_resolutions(self) -> tuple[int, ...]:
        return self.config.level_resolutions

    @property
    def level_scales(self) -> tuple[float, ...]:
        return self.config.level_scales

    def level_table(self, level: int) -> torch.Tensor:
        """View of ``level``'s ``[rows, n_features]`` table inside ``params``."""
        lo, hi = self.config.level_offsets[level], self.config.level_offsets[level + 1]
        return self.params.view(-1, self.config.n_features)[lo:hi]

    # ----- config -----

    def to_config(self) -> dict[str, Any]:
        return self.config.to_dict()

    @classmethod
    def from_config(cls, config: dict[str, Any] | HashGridConfig, backend: str = "auto") -> HashGrid:
        cfg = config if isinstance(config, HashGridConfig) else HashGridConfig.from_dict(config)
        return cls(cfg.n_input_dims, cfg.n_levels, cfg.n_features, cfg.log2_hashmap_size, cfg.base_resolution,
                   cfg.per_level_scale, cfg.interpolation, backend)

    def extra_repr(self) -> str:
        c = self.config
        return (f"n_input_dims={c.n_input_dims}, n_levels={c.n_levels}, n_features={c.n_features}, "
                f"log2_hashmap_size={c.log2_hashmap_size}, base_resolution={c.base_resolution}, "
                f"per_level_scale={c.per_level_scale:.6g}, interpolation={c.interpolation!r}, "
                f"backend={self.backend!r}")

    # ----- forward -----

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, D)`` points -> ``(N, n_levels * n_features)`` features."""
        _check_points(x, self.config.n_input_dims)
        if self.check_inputs and x.numel() and not bool(torch.isfinite(x).all()):
            raise ValueError("HashGrid: x contains NaN or infinite values")
        if self.backend == "tcnn":
            if not x.is_cuda:
                raise ValueError(f"HashGrid backend 'tcnn' needs x on CUDA, got {x.device}")
            return self._tcnn(x.float().contiguous()).float()
        if self.backend == "triton":
            return triton_hash_grid_encode(x, self.params, self.config)
        return hash_grid_encode(x, self.params, self.config)
