"""Hash-grid encoding: tcnn geometry, dense/hashed indexing, interpolation, gradients, backends, errors."""

from __future__ import annotations

import importlib.util
import logging
import sys
import math
import struct

import pytest

torch = pytest.importorskip("torch", reason="the [body] extra (torch) is not installed")

from reconstruct.head import encoding as enc  # noqa: E402
from reconstruct.head.encoding import (  # noqa: E402
    BackendUnavailable,
    HashGrid,
    HashGridConfig,
    hash_grid_encode,
    hash_grid_index,
)

U32 = 0xFFFFFFFF


def _f32(v: float) -> float:
    """Round a Python float to float32 (plain-Python emulation of tcnn's float math)."""
    return struct.unpack("f", struct.pack("f", v))[0]


def _tcnn_scale(level: int, per_level_scale: float, base: int) -> float:
    # exp2f(level * log2f(per_level_scale)) * base - 1, each step rounded to float32
    log2s = _f32(math.log2(_f32(per_level_scale)))
    return _f32(_f32(_f32(2.0 ** _f32(level * log2s)) * base) - 1.0)


def _py_hash(coords) -> int:
    primes = (1, 2654435761, 805459861, 3674653429)
    h = 0
    for c, p in zip(coords, primes):
        h ^= ((c & U32) * p) & U32
    return h


# ----- geometry ---------------------------------------------------------------------------------


def test_default_geometry_matches_tcnn_formulas():
    grid = HashGrid(backend="torch")
    # Instant-NGP default: per_level_scale = exp(ln(2048 / 16) / 15)
    pls = math.exp(math.log(2048 / 16) / 15)
    assert grid.config.per_level_scale == pytest.approx(pls, rel=1e-15)

    # resolutions and rows written out by hand from tcnn's formulas (float32 scale, ceil + 1,
    # min(next_multiple(res^3, 8), 2^19))
    expected_res = [16, 23, 31, 43, 59, 81, 112, 154, 213, 295, 407, 562, 777, 1073, 1483, 2048]
    expected_rows = [4096, 12168, 29792, 79512, 205384] + [524288] * 11
    # ... and re-derived here in plain Python with float32 rounding
    derived_res = [math.ceil(_tcnn_scale(lv, pls, 16)) + 1 for lv in range(16)]
    derived_rows = [min(-(-(r ** 3) // 8) * 8, 2 ** 19) for r in derived_res]
    assert derived_res == expected_res and derived_rows == expected_rows

    assert list(grid.level_resolutions) == expected_res
    assert list(grid.config.level_sizes) == expected_rows
    offsets = [0]
    for rows in expected_rows:
        offsets.append(offsets[-1] + rows)
    assert list(grid.level_offsets) == offsets
    assert offsets[-1] == 6098120
    assert grid.n_params == 12196240 == grid.params.numel()
    assert grid.n_output_dims == 32
    assert list(grid.config.level_hashed) == [False] * 5 + [True] * 11  # 81^3 = 531441 > 2^19
    assert grid.level_scales[0] == 15.0 and grid.level_scales[15] == _tcnn_scale(15, pls, 16)

    # tcnn's initialisation range, float32, one flat parameter in the state dict
    p = grid.params.detach()
    assert p.dtype == torch.float32 and p.dim() == 1
    assert float(p.abs().max()) <= 1e-4 and float(p.std()) > 1e-5
    assert list(grid.state_dict()) == ["params"]


def test_max_resolution_sets_per_level_scale():
    cfg = HashGridConfig(n_levels=8, base_resolution=16, max_resolution=512)
    assert cfg.per_level_scale == pytest.approx(math.exp(math.log(512 / 16) / 7))
    assert HashGridConfig(n_levels=1).per_level_scale == 1.0
    assert HashGridConfig(per_level_scale=2.0).level_resolutions[:3] == (16, 32, 64)


# ----- indexing ---------------------------------------------------------------------------------


def test_dense_level_vertex_returns_vertex_feature_exactly():
    # base 17 -> scale 16, res 17: x = (c - 0.5) / 16 puts x * 16 + 0.5 exactly on vertex c
    grid = HashGrid(3, n_levels=1, n_features=2, log2_hashmap_size=13, base_resolution=17, backend="torch")
    assert grid.level_scales == (16.0,) and grid.level_resolutions == (17,)
    assert grid.config.level_sizes == (4920,) and grid.config.level_hashed == (False,)
    torch.manual_seed(0)
    with torch.no_grad():
        grid.params.copy_(torch.randn(grid.n_params))
    c = (3, 5, 7)
    x = torch.tensor([[(ci - 0.5) / 16 for ci in c]], dtype=torch.float32)
    row = 3 + 5 * 17 + 7 * 17 * 17
    assert torch.equal(grid(x)[0], grid.level_table(0)[row])


@pytest.mark.parametrize("base, rows", [(16, (15, 0)), (13, (12, 13))])
def test_dense_wraparound_at_upper_edge(base, rows):
    # pos = 1 * (base - 1) + 0.5: the upper corner is `res`, which wraps by `% rows` (base 16: 16 % 16
    # = 0) or lands in the padding rows (base 13: 16 rows for 13 vertices)
    grid = HashGrid(1, n_levels=1, n_features=1, log2_hashmap_size=10, base_resolution=base, backend="torch")
    with torch.no_grad():
        grid.params.copy_(torch.arange(grid.n_params, dtype=torch.float32) + 1.0)
    with torch.no_grad():
        out = grid(torch.ones(1, 1))
    t = grid.level_table(0).detach()[:, 0]
    assert float(out) == pytest.approx(0.5 * float(t[rows[0]]) + 0.5 * float(t[rows[1]]))


def test_hashed_level_index_matches_python_hash():
    cfg = HashGridConfig(3, n_levels=2, n_features=2, log2_hashmap_size=12, base_resolution=16, per_level_scale=64.0)
    assert cfg.level_resolutions == (16, 1024) and cfg.level_hashed == (False, True)
    assert cfg.level_sizes == (4096, 4096)
    coords = [(100, 200, 300), (U32, 0x12345678, 7), (0, 0, 0), (1023, 1, 1024)]
    got = hash_grid_index(torch.tensor(coords), 1, cfg).tolist()
    assert got == [_py_hash(c) % 4096 for c in coords]
    assert got[:2] == [176, 2580]  # written out once by hand
    # the dense level uses stride indexing
    assert hash_grid_index(torch.tensor([[1, 2, 3]]), 0, cfg).tolist() == [1 + 2 * 16 + 3 * 256]


def test_hashed_level_end_to_end():
    grid = HashGrid(3, n_levels=2, n_features=2, log2_hashmap_size=12, base_resolution=16, per_level_scale=64.0,
                    backend="torch").double()
    c = (100, 200, 300)
    row = _py_hash(c) % 4096
    with torch.no_grad():
        grid.params.zero_()
        grid.level_table(1)[row] = torch.tensor([1.0, -2.0], dtype=torch.float64)
    scale = grid.level_scales[1]
    assert scale == 1023.0
    x = torch.tensor([[(ci - 0.5) / scale for ci in c]], dtype=torch.float64)
    out = grid(x)
    assert out.shape == (1, 4)
    torch.testing.assert_close(out[0, 2:], torch.tensor([1.0, -2.0], dtype=torch.float64), atol=1e-9, rtol=0)


# ----- interpolation ----------------------------------------------------------------------------


def test_linear_interpolation_reproduces_linear_function():
    # base 9 -> scale 8, res 9, dense 729 -> 736 rows; points in [0, 0.9] stay inside the grid
    grid = HashGrid(3, n_levels=1, n_features=2, log2_hashmap_size=10, base_resolution=9, backend="torch").double()
    assert grid.config.level_sizes == (736,) and grid.config.level_hashed == (False,)
    a0, b0 = torch.tensor([0.3, -0.2, 0.7], dtype=torch.float64), 0.1
    a1, b1 = torch.tensor([-1.0, 2.0, 0.5], dtype=torch.float64), -3.0
    i, j, k = torch.meshgrid(*(torch.arange(9, dtype=torch.float64),) * 3, indexing="ij")
    v = torch.stack([i, j, k], -1).reshape(-1, 3)
    rows = (v[:, 0] + 9 * v[:, 1] + 81 * v[:, 2]).long()
    with torch.no_grad():
        t = grid.level_table(0)
        t.zero_()
        t[rows, 0] = v @ a0 + b0
        t[rows, 1] = v @ a1 + b1
    x = torch.rand(64, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 0.9
    p = x * 8 + 0.5
    want = torch.stack([p @ a0 + b0, p @ a1 + b1], dim=1)
    torch.testing.assert_close(grid(x), want, atol=1e-12, rtol=0)


def test_smoothstep_has_zero_position_gradient_at_vertices():
    torch.manual_seed(0)
    kw = dict(n_levels=1, n_features=2, log2_hashmap_size=10, base_resolution=17)
    smooth = HashGrid(2, interpolation="smoothstep", backend="torch", **kw)
    linear = HashGrid(2, interpolation="linear", backend="torch", **kw)
    with torch.no_grad():
        smooth.params.copy_(torch.randn(smooth.n_params))
        linear.params.copy_(smooth.params)
    c = torch.tensor([[3.0, 5.0], [1.0, 15.0], [8.0, 8.0]])
    x = ((c - 0.5) / 16).requires_grad_(True)  # x * 16 + 0.5 == c exactly
    smooth(x).sum().backward()
    assert torch.equal(x.grad, torch.zeros_like(x))
    x.grad = None
    linear(x).sum().backward()
    assert float(x.grad.abs().min()) > 0


# ----- gradients --------------------------------------------------------------------------------


def _interior_points(cfg: HashGridConfig, n: int, seed: int) -> torch.Tensor:
    """Points whose fractional cell position is in [0.1, 0.9] on every level and axis."""
    g = torch.Generator().manual_seed(seed)
    scales = torch.tensor(cfg.level_scales, dtype=torch.float64)
    keep = []
    while sum(len(k) for k in keep) < n:
        x = torch.rand(256, cfg.n_input_dims, generator=g, dtype=torch.float64) * 0.9 + 0.05
        frac = torch.frac(x[:, None, :] * scales[None, :, None] + 0.5)
        keep.append(x[((frac > 0.1) & (frac < 0.9)).all(dim=2).all(dim=1)])
    return torch.cat(keep)[:n]


@pytest.mark.parametrize("d_in, pls, interpolation", [(2, 3.0, "linear"), (3, 2.0, "linear"),
                                                      (3, 2.0, "smoothstep")])
def test_gradcheck_table_and_positions(d_in, pls, interpolation):
    cfg = HashGridConfig(d_in, n_levels=3, n_features=2, log2_hashmap_size=10, base_resolution=4,
                         per_level_scale=pls, interpolation=interpolation)
    assert cfg.level_hashed[-1] and not cfg.level_hashed[0]  # both index paths are exercised
    x = _interior_points(cfg, 8, seed=d_in).requires_grad_(True)
    params = torch.randn(cfg.n_params, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    params.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda xx, pp: hash_grid_encode(xx, pp, cfg), (x, params),
                                    eps=1e-6, atol=1e-6)


# ----- fused path (HashGridFunction) vs the autograd reference ------------------------------------


def _rand_points(n: int, d_in: int, dtype, seed: int) -> torch.Tensor:
    """Uniform points, some outside [0, 1] (uint32 wrap), some exactly on the upper face."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, d_in, generator=g, dtype=dtype)
    x[: n // 4] = x[: n // 4] * 1.6 - 0.3
    x[n // 4: n // 4 + 8] = 1.0
    return x


def _assert_close_scaled(a: torch.Tensor, b: torch.Tensor, tol: float) -> None:
    """``max |a - b| <= tol * max |b|``: float32 results whose sums run in another order differ
    by a few roundings of the tensor's scale (large position gradients cancel to small ones)."""
    assert a.shape == b.shape and a.dtype == b.dtype
    err, scale = float((a - b).abs().max()), float(b.abs().max())
    assert err <= tol * scale, f"max |a - b| = {err:.3g} > {tol:g} * {scale:.3g}"


@pytest.mark.parametrize("d_in", [1, 2, 3, 4])
@pytest.mark.parametrize("n_features", [1, 2, 4])
@pytest.mark.parametrize("interpolation", ["linear", "smoothstep"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_matches_reference(d_in, n_features, interpolation, dtype):
    # base 5, scale 3: dense levels (pow2 and not) and hashed ones, as in the default grid
    cfg = HashGridConfig(d_in, n_levels=4, n_features=n_features, log2_hashmap_size=10, base_resolution=5,
                         per_level_scale=3.0, interpolation=interpolation)
    assert not all(cfg.level_hashed) and (any(cfg.level_hashed) or d_in == 1)
    x = _rand_points(200, d_in, dtype, seed=d_in).requires_grad_(True)
    params = torch.randn(cfg.n_params, dtype=dtype, generator=torch.Generator().manual_seed(1))
    params.requires_grad_(True)
    w = torch.randn(200, cfg.n_output_dims, dtype=dtype, generator=torch.Generator().manual_seed(2))
    res = []
    for fused in (True, False):
        y = hash_grid_encode(x, params, cfg, fused=fused)
        res.append((y.detach(), *torch.autograd.grad((y * w).sum(), (x, params))))
    (y, gx, gp), (y_ref, gx_ref, gp_ref) = res
    assert y.dtype == y_ref.dtype == dtype
    for got, want in ((y, y_ref), (gp, gp_ref), (gx, gx_ref)):
        if dtype == torch.float64:
            torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
        else:
            _assert_close_scaled(got, want, 1e-6)
    # the same forward without autograd (no_grad / inputs without grad) gives the same values
    with torch.no_grad():
        assert torch.equal(hash_grid_encode(x, params, cfg), y)
    assert torch.equal(hash_grid_encode(x.detach(), params.detach(), cfg), y)


def test_fused_default_grid_matches_reference():
    # the benchmarked configuration: 16 levels x 2 features, T = 2^19 (dense levels, hashed levels)
    grid = HashGrid(3, n_levels=16, n_features=2, log2_hashmap_size=19, backend="torch")
    with torch.no_grad():
        grid.params.uniform_(-1.0, 1.0)
    x = torch.rand(512, 3, generator=torch.Generator().manual_seed(4))
    x[:4] = 1.0
    w = torch.randn(512, 32, generator=torch.Generator().manual_seed(5))
    res = []
    for fused in (True, False):
        xx = x.clone().requires_grad_(True)
        y = hash_grid_encode(xx, grid.params, grid.config, fused=fused)
        gx, gp = torch.autograd.grad((y * w).sum(), (xx, grid.params))
        res.append((y.detach(), gx, gp))
    for a, b in zip(*res):
        _assert_close_scaled(a, b, 1e-6)
    # the module's forward is the fused path
    assert torch.equal(grid(x), res[0][0])


@pytest.mark.parametrize("need_x, need_p", [(True, False), (False, True)])
def test_fused_gradient_for_one_input_only(need_x, need_p):
    cfg = HashGridConfig(3, n_levels=3, n_features=2, log2_hashmap_size=10, base_resolution=4, per_level_scale=2.0)
    x = _rand_points(64, 3, torch.float64, seed=7).requires_grad_(need_x)
    params = torch.randn(cfg.n_params, dtype=torch.float64, generator=torch.Generator().manual_seed(8))
    params.requires_grad_(need_p)
    got = torch.autograd.grad(hash_grid_encode(x, params, cfg).sum(), x if need_x else params)[0]
    want = torch.autograd.grad(hash_grid_encode(x, params, cfg, fused=False).sum(), x if need_x else params)[0]
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("x_dtype, p_dtype", [(torch.float32, torch.float64), (torch.float64, torch.float32)])
def test_fused_mixed_dtypes(x_dtype, p_dtype):
    cfg = HashGridConfig(3, n_levels=3, n_features=2, log2_hashmap_size=10, base_resolution=4, per_level_scale=2.0)
    x = _rand_points(64, 3, x_dtype, seed=9).requires_grad_(True)
    params = torch.randn(cfg.n_params, dtype=p_dtype, generator=torch.Generator().manual_seed(10))
    params.requires_grad_(True)
    res = []
    for fused in (True, False):
        y = hash_grid_encode(x, params, cfg, fused=fused)
        res.append((y.detach(), *torch.autograd.grad(y.square().sum(), (x, params))))
    for a, b in zip(*res):
        _assert_close_scaled(a, b, 1e-6)
    assert res[0][0].dtype == torch.float64 and res[0][1].dtype == x_dtype and res[0][2].dtype == p_dtype


@pytest.mark.parametrize("d_in, pls, interpolation", [(1, 3.0, "linear"), (3, 2.0, "linear"),
                                                      (3, 2.0, "smoothstep")])
def test_fused_function_gradcheck_and_double_backward(d_in, pls, interpolation):
    cfg = HashGridConfig(d_in, n_levels=3, n_features=2, log2_hashmap_size=10, base_resolution=4,
                         per_level_scale=pls, interpolation=interpolation)
    x = _interior_points(cfg, 6, seed=d_in).requires_grad_(True)
    params = torch.randn(cfg.n_params, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    params.requires_grad_(True)
    fn = lambda xx, pp: enc.HashGridFunction.apply(xx, pp, cfg)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, params), eps=1e-6, atol=1e-6)
    # create_graph=True differentiates the reference graph: second derivatives stay exact
    assert torch.autograd.gradgradcheck(fn, (x, params), eps=1e-6, atol=1e-6, fast_mode=True)


@pytest.mark.parametrize("d_in", [1, 2, 3, 4])
def test_level_rows_match_hash_grid_index(d_in):
    # the three index paths of _level_rows: hashed (mask), dense in range (one subtraction), and
    # the general uint32 path (cells outside the grid, negative or beyond 2^32)
    cfg = HashGridConfig(d_in, n_levels=4, n_features=2, log2_hashmap_size=10, base_resolution=3, per_level_scale=3.0)
    g = torch.Generator().manual_seed(d_in)
    bits = enc._corner_bits(d_in, torch.device("cpu"))
    for level in range(cfg.n_levels):
        res = cfg.level_resolutions[level]
        for lo, hi in ((0, res), (max(res - 2, 0), res), (res - 2, res + 2), (-2 ** 34, 2 ** 34)):
            cell = torch.randint(lo, hi, (d_in, 300), generator=g)
            got = enc._level_rows(cell, level, cfg).view(1 << d_in, 300).t()
            want = hash_grid_index(cell.t()[:, None, :] + bits[None], level, cfg)
            assert torch.equal(got, want), (level, lo, hi)


# ----- config, state dict -----------------------------------------------------------------------


def test_config_roundtrip_and_state_dict_load():
    torch.manual_seed(3)
    a = HashGrid(2, n_levels=4, n_features=4, log2_hashmap_size=11, base_resolution=8, per_level_scale=1.7,
                 interpolation="smoothstep", backend="torch")
    cfg = a.to_config()
    assert cfg["schema_version"] == 1 and cfg["otype"] == "HashGrid" and cfg["per_level_scale"] == 1.7
    b = HashGrid.from_config(cfg, backend="torch")
    assert b.config == a.config
    b.load_state_dict(a.state_dict())
    x = torch.rand(16, 2)
    assert torch.equal(a(x), b(x))
    assert a.config.to_tcnn() == {
        "otype": "HashGrid", "n_levels": 4, "n_features_per_level": 4, "log2_hashmap_size": 11,
        "base_resolution": 8, "per_level_scale": 1.7, "interpolation": "Smoothstep", "hash": "CoherentPrime"}
    with pytest.raises(ValueError, match="unknown config keys"):
        HashGrid.from_config({**cfg, "bogus": 1})
    with pytest.raises(ValueError, match="schema_version"):
        HashGrid.from_config({**cfg, "schema_version": 99})


def test_empty_batch_and_float64_output():
    grid = HashGrid(3, n_levels=2, log2_hashmap_size=10, backend="torch")
    assert grid(torch.zeros(0, 3)).shape == (0, 4)
    assert grid.double()(torch.rand(5, 3, dtype=torch.float64)).dtype == torch.float64


# ----- backends ---------------------------------------------------------------------------------


def _fake_find_spec(monkeypatch, present: set[str]):
    real = importlib.util.find_spec

    def fake(name, *args, **kwargs):
        if name in ("tinycudann", "triton"):
            return object() if name in present else None
        return real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", fake)


def test_missing_backends_raise_clear_errors(monkeypatch):
    _fake_find_spec(monkeypatch, present=set())
    with pytest.raises(BackendUnavailable, match="'tcnn'.*tinycudann is not installed"):
        HashGrid(backend="tcnn")
    with pytest.raises(BackendUnavailable, match="'triton'.*triton is not installed"):
        HashGrid(backend="triton")
    assert issubclass(BackendUnavailable, RuntimeError)


def test_backend_needs_cuda_or_a_working_triton(monkeypatch):
    _fake_find_spec(monkeypatch, present={"tinycudann", "triton"})
    monkeypatch.setattr(enc, "_cuda_available", lambda: False)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(BackendUnavailable, match="'tcnn'.*CUDA"):
        HashGrid(backend="tcnn")
    with pytest.raises(BackendUnavailable, match="'triton'.*CUDA"):
        HashGrid(backend="triton")
    # CUDA present, triton "found" but its kernels cannot load (here: the module is not really there)
    monkeypatch.setattr(enc, "_cuda_available", lambda: True)
    monkeypatch.setitem(sys.modules, "triton", None)
    monkeypatch.delitem(sys.modules, "reconstruct.head._triton_grid", raising=False)
    with pytest.raises(BackendUnavailable, match="'triton'.*kernels failed to load"):
        HashGrid(backend="triton")


def test_auto_falls_back_to_torch_and_logs(monkeypatch, caplog):
    _fake_find_spec(monkeypatch, present=set())
    with caplog.at_level(logging.INFO, logger="reconstruct.head.encoding"):
        grid = HashGrid(n_levels=2, log2_hashmap_size=10)
    assert grid.backend == "torch"
    assert any("'torch'" in r.getMessage() and r.levelno == logging.INFO for r in caplog.records)


def _tcnn_ready() -> bool:
    return importlib.util.find_spec("tinycudann") is not None and torch.cuda.is_available()


@pytest.mark.gpu
@pytest.mark.skipif(not _tcnn_ready(), reason="tinycudann not installed (or no CUDA device)")
@pytest.mark.parametrize("d_in, interpolation", [(2, "linear"), (3, "linear"), (3, "smoothstep")])
def test_parity_with_tcnn(d_in, interpolation):
    kw = dict(n_levels=8, n_features=2, log2_hashmap_size=14, base_resolution=8, per_level_scale=1.5,
              interpolation=interpolation)
    fast = HashGrid(d_in, backend="tcnn", **kw)
    ref = HashGrid(d_in, backend="torch", **kw).cuda()
    assert fast.params.numel() == ref.params.numel()
    torch.manual_seed(0)
    with torch.no_grad():
        fast.params.uniform_(-1.0, 1.0)
    ref.load_state_dict(fast.state_dict())
    x = (torch.rand(4096, d_in, device="cuda") * 0.98 + 0.01)
    w = torch.randn(4096, 16, device="cuda")
    outs, grads = [], []
    for grid in (fast, ref):
        xx = x.clone().requires_grad_(True)
        y = grid(xx)
        (y * w).sum().backward()
        outs.append(y.detach())
        grads.append((grid.params.grad.detach().clone(), xx.grad.detach()))
    torch.testing.assert_close(outs[0], outs[1], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(grads[0][0], grads[1][0], atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(grads[0][1], grads[1][1], atol=1e-2, rtol=1e-3)


# ----- bad arguments and inputs -----------------------------------------------------------------


@pytest.mark.parametrize("kwargs, match", [
    (dict(n_levels=0), "n_levels must be >= 1"),
    (dict(n_features=3), "n_features must be 1, 2, 4 or 8"),
    (dict(n_features=2.0), "n_features must be 1, 2, 4 or 8"),
    (dict(log2_hashmap_size=9), r"log2_hashmap_size must be in \[10, 30\]"),
    (dict(log2_hashmap_size=31), r"log2_hashmap_size must be in \[10, 30\]"),
    (dict(base_resolution=1), "base_resolution must be >= 2"),
    (dict(per_level_scale=1.0), "per_level_scale must be > 1"),
    (dict(per_level_scale=float("nan")), "per_level_scale must be a finite positive"),
    (dict(per_level_scale=1.5, max_resolution=512), "not both"),
    (dict(max_resolution=8), "must exceed base_resolution"),
    (dict(n_input_dims=5), r"n_input_dims must be in \[1, 4\]"),
    (dict(n_input_dims=0), r"n_input_dims must be in \[1, 4\]"),
    (dict(interpolation="cubic"), "interpolation must be one of"),
    (dict(backend="cuda"), "backend must be one of"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        HashGrid(**{"log2_hashmap_size": 10, "backend": "torch", **kwargs})


def test_bad_inputs():
    grid = HashGrid(3, n_levels=2, log2_hashmap_size=10, backend="torch")
    with pytest.raises(ValueError, match=r"shape \(N, 3\), got \(4, 2\)"):
        grid(torch.rand(4, 2))
    with pytest.raises(ValueError, match=r"shape \(N, 3\), got \(3,\)"):
        grid(torch.rand(3))
    with pytest.raises(TypeError, match="floating-point"):
        grid(torch.zeros(4, 3, dtype=torch.int64))
    with pytest.raises(TypeError, match="torch.Tensor"):
        grid([[0.1, 0.2, 0.3]])
    bad = torch.rand(4, 3)
    bad[2, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinite"):
        grid(bad)
    bad[2, 1] = float("inf")
    with pytest.raises(ValueError, match="NaN or infinite"):
        grid(bad)
    with pytest.raises(ValueError, match="params must be"):
        hash_grid_encode(torch.rand(4, 3), torch.zeros(7), grid.config)
