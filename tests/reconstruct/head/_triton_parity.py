"""Parity checks of the Triton hash-grid backend against the PyTorch reference (no pytest import:
``test_encoding_triton`` runs them in-process on CUDA and in a subprocess under Triton's
interpreter in the nerfstudio environment, which has no pytest)."""

from __future__ import annotations


def parity_checks(device: str) -> list[str]:
    """Run every case; return the failures (empty when all agree)."""
    import torch

    from reconstruct.head.encoding import HashGrid, hash_grid_encode

    torch.manual_seed(0)
    bad = []
    cases = [
        # (n_levels, F, log2_T, base, per_level_scale, interpolation, n_points, lo, hi)
        (6, 2, 10, 4, 1.9, "linear", 300, 0.0, 1.0),        # dense + hashed levels, N not a block multiple
        (6, 2, 10, 4, 1.9, "smoothstep", 257, 0.0, 1.0),
        (4, 1, 10, 3, 2.0, "linear", 130, 0.0, 1.0),
        (4, 4, 12, 8, 1.5, "linear", 129, 0.0, 1.0),
        (4, 8, 10, 2, 2.5, "smoothstep", 64, 0.0, 1.0),
        (5, 2, 11, 6, 1.7, "linear", 200, -0.3, 1.3),        # outside the box: uint32 wrap as tcnn
        (3, 2, 16, 16, 2.0, "linear", 100, 0.999, 1.0),     # dense level whose corners reach `res`
    ]
    for n_levels, f, log2_t, base, pls, interp, n, lo, hi in cases:
        name = f"L{n_levels} F{f} T2^{log2_t} b{base} s{pls} {interp} N{n} [{lo},{hi}]"
        g = HashGrid(3, n_levels=n_levels, n_features=f, log2_hashmap_size=log2_t, base_resolution=base,
                     per_level_scale=pls, interpolation=interp, backend="triton").to(device)
        with torch.no_grad():
            g.params.uniform_(-1, 1)
        x = (lo + (hi - lo) * torch.rand(n, 3, device=device)).requires_grad_(True)
        y = g(x)
        ref = hash_grid_encode(x, g.params, g.config, fused=False)
        if y.shape != ref.shape or not torch.allclose(y, ref, atol=1e-5, rtol=1e-5):
            bad.append(f"{name}: forward differs by {(y - ref).abs().max().item():.3g}")
            continue
        w = torch.randn_like(y)
        gx, gp = torch.autograd.grad((y * w).sum(), [x, g.params])
        rx, rp = torch.autograd.grad((ref * w).sum(), [x, g.params])
        tol_x = 1e-5 * max(1.0, rx.abs().max().item())
        if not torch.allclose(gx, rx, atol=tol_x, rtol=1e-4):
            bad.append(f"{name}: grad x differs by {(gx - rx).abs().max().item():.3g} (scale {rx.abs().max().item():.3g})")
        if not torch.allclose(gp, rp, atol=1e-5, rtol=1e-4):
            bad.append(f"{name}: grad table differs by {(gp - rp).abs().max().item():.3g}")
        # table-only gradient (x without grad) and no-grad forward take the other code paths
        (gp2,) = torch.autograd.grad((g(x.detach()) * w).sum(), [g.params])
        if not torch.allclose(gp2, rp, atol=1e-5, rtol=1e-4):
            bad.append(f"{name}: table-only grad differs")
        with torch.no_grad():
            if not torch.allclose(g(x), ref, atol=1e-5, rtol=1e-5):
                bad.append(f"{name}: no-grad forward differs")
    # a table trained on one backend loads into the other: same state dict, same features
    t = HashGrid(3, n_levels=8, n_features=2, log2_hashmap_size=12, backend="torch").to(device)
    with torch.no_grad():
        t.params.uniform_(-1, 1)
    tr = HashGrid(3, n_levels=8, n_features=2, log2_hashmap_size=12, backend="triton").to(device)
    tr.load_state_dict(t.state_dict())
    x = torch.rand(500, 3, device=device)
    with torch.no_grad():
        if not torch.allclose(t(x), tr(x), atol=1e-5, rtol=1e-5):
            bad.append("state dict: torch and triton backends disagree")
        if tr(torch.zeros(0, 3, device=device)).shape != (0, 16):
            bad.append("empty input: wrong shape")
    for kw, msg in (({"n_input_dims": 2}, "3-D points"), ({"n_features": 3}, "n_features")):
        try:
            HashGrid(**{"n_levels": 2, "log2_hashmap_size": 10, "backend": "triton", **kw})
            bad.append(f"{kw}: no error")
        except ValueError as e:
            if msg not in str(e):
                bad.append(f"{kw}: unclear error {e}")
    return bad
