"""Triton kernels of the hash-grid encoding (``HashGrid(backend="triton")``), 3-D points.

Same semantics as the pure-PyTorch path and tiny-cuda-nn (see ``encoding``'s docstring): level
scale and resolution from ``HashGridConfig``, ``pos = x * s_l + 0.5``, ``cell = floor(pos)``
reduced to uint32, dense levels indexed ``c0 + c1 r + c2 r^2`` and hashed ones by the XOR of
``c_d * prime_d``, both in uint32 and then ``% rows``; corner weights ``prod_d (bit ? w : 1 - w)``
with ``w = frac`` or its smoothstep. Every index is computed in uint64 and masked to 32 bits, so
the uint32 wrap-around is exact whatever the integer promotion rules of the Triton version.

- forward: one program per (block of points, level); gathers the 8 corners' ``F`` features and
  writes the level's ``F`` outputs (no intermediate tensors);
- backward: one program per block of points, looping over the levels: the table gradient by
  atomic adds (``w_corner * dL/dout``), the position gradient accumulated in registers
  (``sum_corners (v . g) dw/dx``) and stored once.

Runs on CUDA devices; with ``TRITON_INTERPRET=1`` set before Triton is imported, Triton's
interpreter runs the same kernels on CPU tensors (slowly): that is how the parity tests run where
there is no GPU. float32 only (the table and the points are cast to float32, as tcnn's
float32 mode).
"""

from __future__ import annotations

import os
from functools import lru_cache

import torch
import triton
import triton.language as tl

PRIME1 = tl.constexpr(2654435761)
PRIME2 = tl.constexpr(805459861)
MASK32 = tl.constexpr(0xFFFFFFFF)
BLOCK = 128


def interpreting() -> bool:
    """True when Triton runs its CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


@triton.jit
def _index(c0, c1, c2, res, size, hashed):
    """Row within the level of integer corner (c0, c1, c2) (uint64 holding uint32 values)."""
    h = (c0 ^ ((c1 * PRIME1) & MASK32) ^ ((c2 * PRIME2) & MASK32)) & MASK32
    d = (c0 + ((c1 * res) & MASK32) + ((c2 * ((res * res) & MASK32)) & MASK32)) & MASK32
    idx = tl.where(hashed != 0, h, d)
    return (idx % size).to(tl.int64)


@triton.jit
def _axis(x_ptr, offs, m, d: tl.constexpr, scale, SMOOTH: tl.constexpr):
    xd = tl.load(x_ptr + offs * 3 + d, mask=m, other=0.0)
    pos = xd * scale + 0.5
    cf = tl.floor(pos)
    frac = pos - cf
    c = (cf.to(tl.int64) & MASK32).to(tl.uint64)
    if SMOOTH:
        w1 = frac * frac * (3.0 - 2.0 * frac)
    else:
        w1 = frac
    return c, frac, w1


@triton.jit
def _level_cells(x_ptr, offs, m, level, offsets_ptr, scales_ptr, res_ptr, sizes_ptr, hashed_ptr,
                 SMOOTH: tl.constexpr):
    """One level's constants and the points' cells, fractions and weights on the three axes."""
    scale = tl.load(scales_ptr + level)
    res = tl.load(res_ptr + level).to(tl.uint64)
    size = tl.load(sizes_ptr + level).to(tl.uint64)
    hashed = tl.load(hashed_ptr + level)
    base = tl.load(offsets_ptr + level)
    c0, f0, w0 = _axis(x_ptr, offs, m, 0, scale, SMOOTH)
    c1, f1, w1 = _axis(x_ptr, offs, m, 1, scale, SMOOTH)
    c2, f2, w2 = _axis(x_ptr, offs, m, 2, scale, SMOOTH)
    return scale, res, size, hashed, base, c0, c1, c2, f0, f1, f2, w0, w1, w2


@triton.jit
def _corner(k: tl.constexpr, c0, c1, c2, w0, w1, w2, res, size, hashed):
    """Corner k (bit d of k: +1 along axis d) of the cells: its three axis weights and its row."""
    b0: tl.constexpr = k & 1
    b1: tl.constexpr = (k >> 1) & 1
    b2: tl.constexpr = (k >> 2) & 1
    wx = w0 if b0 else 1.0 - w0
    wy = w1 if b1 else 1.0 - w1
    wz = w2 if b2 else 1.0 - w2
    row = _index((c0 + b0) & MASK32, (c1 + b1) & MASK32, (c2 + b2) & MASK32, res, size, hashed)
    return wx, wy, wz, row


@triton.jit
def _fwd_kernel(x_ptr, params_ptr, out_ptr, offsets_ptr, scales_ptr, res_ptr, sizes_ptr, hashed_ptr,
                N, n_out, F: tl.constexpr, SMOOTH: tl.constexpr, BLOCK_N: tl.constexpr):
    pid = tl.program_id(0)
    level = tl.program_id(1)
    offs = pid * BLOCK_N + tl.arange(0, BLOCK_N)
    m = offs < N
    scale, res, size, hashed, base, c0, c1, c2, f0, f1, f2, w0, w1, w2 = _level_cells(
        x_ptr, offs, m, level, offsets_ptr, scales_ptr, res_ptr, sizes_ptr, hashed_ptr, SMOOTH)
    fi = tl.arange(0, F)
    acc = tl.zeros([BLOCK_N, F], dtype=tl.float32)
    for k in tl.static_range(8):
        wx, wy, wz, row = _corner(k, c0, c1, c2, w0, w1, w2, res, size, hashed)
        ptr = params_ptr + (base + row)[:, None] * F + fi[None, :]
        vals = tl.load(ptr, mask=m[:, None], other=0.0)
        acc += (wx * wy * wz)[:, None] * vals
    optr = out_ptr + offs[:, None].to(tl.int64) * n_out + level * F + fi[None, :]
    tl.store(optr, acc, mask=m[:, None])


@triton.jit
def _bwd_kernel(x_ptr, params_ptr, grad_out_ptr, grad_params_ptr, grad_x_ptr, offsets_ptr, scales_ptr,
                res_ptr, sizes_ptr, hashed_ptr, N, n_levels, n_out, F: tl.constexpr, SMOOTH: tl.constexpr,
                NEED_X: tl.constexpr, NEED_P: tl.constexpr, BLOCK_N: tl.constexpr):
    pid = tl.program_id(0)
    offs = pid * BLOCK_N + tl.arange(0, BLOCK_N)
    m = offs < N
    fi = tl.arange(0, F)
    gx0 = tl.zeros([BLOCK_N], dtype=tl.float32)
    gx1 = tl.zeros([BLOCK_N], dtype=tl.float32)
    gx2 = tl.zeros([BLOCK_N], dtype=tl.float32)
    for level in range(n_levels):
        scale, res, size, hashed, base, c0, c1, c2, f0, f1, f2, w0, w1, w2 = _level_cells(
            x_ptr, offs, m, level, offsets_ptr, scales_ptr, res_ptr, sizes_ptr, hashed_ptr, SMOOTH)
        g = tl.load(grad_out_ptr + offs[:, None].to(tl.int64) * n_out + level * F + fi[None, :],
                    mask=m[:, None], other=0.0)  # (BLOCK, F)
        d0 = tl.zeros([BLOCK_N], dtype=tl.float32)
        d1 = tl.zeros([BLOCK_N], dtype=tl.float32)
        d2 = tl.zeros([BLOCK_N], dtype=tl.float32)
        for k in tl.static_range(8):
            wx, wy, wz, row = _corner(k, c0, c1, c2, w0, w1, w2, res, size, hashed)
            off = (base + row)[:, None] * F + fi[None, :]
            if NEED_P:
                tl.atomic_add(grad_params_ptr + off, (wx * wy * wz)[:, None] * g, mask=m[:, None])
            if NEED_X:
                vals = tl.load(params_ptr + off, mask=m[:, None], other=0.0)
                s = tl.sum(vals * g, axis=1)  # dL/d(corner weight)
                # d(wx wy wz)/d w0 = +-wy wz (+ for the upper corner along x), and so on
                d0 += s * (1.0 if (k & 1) else -1.0) * wy * wz
                d1 += s * (1.0 if ((k >> 1) & 1) else -1.0) * wx * wz
                d2 += s * (1.0 if ((k >> 2) & 1) else -1.0) * wx * wy
        if NEED_X:
            if SMOOTH:
                d0 = d0 * (6.0 * f0 * (1.0 - f0))
                d1 = d1 * (6.0 * f1 * (1.0 - f1))
                d2 = d2 * (6.0 * f2 * (1.0 - f2))
            gx0 += d0 * scale
            gx1 += d1 * scale
            gx2 += d2 * scale
    if NEED_X:
        tl.store(grad_x_ptr + offs * 3 + 0, gx0, mask=m)
        tl.store(grad_x_ptr + offs * 3 + 1, gx1, mask=m)
        tl.store(grad_x_ptr + offs * 3 + 2, gx2, mask=m)


@lru_cache(maxsize=32)
def _level_tables(config, device: str):
    """Per-level row offsets (int64), scales (float32), resolutions, sizes (int64), hashed (int32)."""
    dev = torch.device(device)
    return (torch.tensor(config.level_offsets[:-1], dtype=torch.int64, device=dev),
            torch.tensor(config.level_scales, dtype=torch.float32, device=dev),
            torch.tensor(config.level_resolutions, dtype=torch.int64, device=dev),
            torch.tensor(config.level_sizes, dtype=torch.int64, device=dev),
            torch.tensor([int(h) for h in config.level_hashed], dtype=torch.int32, device=dev))


def check_supported(config) -> None:
    """Raise ValueError for configurations the kernels do not cover."""
    if config.n_input_dims != 3:
        raise ValueError(f"HashGrid backend 'triton' supports 3-D points, got n_input_dims={config.n_input_dims}")
    f = config.n_features
    if f & (f - 1) or not 1 <= f <= 8:
        raise ValueError(f"HashGrid backend 'triton' supports n_features in 1, 2, 4, 8, got {f}")


def _device_ok(t: torch.Tensor) -> None:
    if not (t.is_cuda or interpreting()):
        raise ValueError(f"HashGrid backend 'triton' needs tensors on CUDA, got {t.device}")


def encode_forward(x: torch.Tensor, params: torch.Tensor, config) -> torch.Tensor:
    _device_ok(x)
    x = x.float().contiguous()
    params = params.float().contiguous()
    n = x.shape[0]
    n_out = config.n_levels * config.n_features
    out = torch.empty(n, n_out, dtype=torch.float32, device=x.device)
    if n == 0:
        return out
    offsets, scales, res, sizes, hashed = _level_tables(config, str(x.device))
    grid = (triton.cdiv(n, BLOCK), config.n_levels)
    _fwd_kernel[grid](x, params, out, offsets, scales, res, sizes, hashed, n, n_out,
                      F=config.n_features, SMOOTH=config.interpolation == "smoothstep", BLOCK_N=BLOCK)
    return out


def encode_backward(x: torch.Tensor, params: torch.Tensor, config, grad_out: torch.Tensor,
                    need_x: bool, need_p: bool):
    x32 = x.float().contiguous()
    g = grad_out.float().contiguous()
    n = x32.shape[0]
    grad_p = torch.zeros(params.shape, dtype=torch.float32, device=x.device) if need_p else None
    grad_x = torch.zeros(n, 3, dtype=torch.float32, device=x.device) if need_x else None
    if n and (need_x or need_p):
        offsets, scales, res, sizes, hashed = _level_tables(config, str(x.device))
        dummy = torch.empty(1, dtype=torch.float32, device=x.device)
        _bwd_kernel[(triton.cdiv(n, BLOCK),)](
            x32, params.float().contiguous(), g, grad_p if need_p else dummy, grad_x if need_x else dummy,
            offsets, scales, res, sizes, hashed, n, config.n_levels, config.n_levels * config.n_features,
            F=config.n_features, SMOOTH=config.interpolation == "smoothstep", NEED_X=need_x, NEED_P=need_p,
            BLOCK_N=BLOCK)
    return (grad_x.to(x.dtype) if need_x else None), (grad_p.to(params.dtype) if need_p else None)
