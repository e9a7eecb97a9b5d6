"""PIFu network: shapes, multi-view fusion, gradients, configs."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="the [body] extra (torch) is not installed")

from reconstruct.body.model import PIFu, PIFuConfig, count_parameters  # noqa: E402

TINY = PIFuConfig(name="tiny", n_stacks=2, hg_depth=1, hg_channels=16, stem_channels=8,
                  mlp=(32, 16), tex_channels=8, tex_mlp=(16,), image_size=64)


def _inputs(b=2, v=1, n=50, s=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    img = torch.rand(b, v, 3, s, s, generator=g) * 2 - 1
    uv = torch.rand(b, v, n, 2, generator=g) * 2 - 1
    z = torch.rand(b, v, n, 1, generator=g) * 2 - 1
    return img, uv, z


def test_shapes_and_range():
    m = PIFu(TINY)
    img, uv, z = _inputs()
    occ = m(img, uv, z)
    assert len(occ) == TINY.n_stacks and occ[-1].shape == (2, 50)
    assert float(occ[-1].min()) >= 0 and float(occ[-1].max()) <= 1
    rgb = m.colour(img, uv, z)
    assert rgb.shape == (2, 50, 3)


def test_identical_views_fuse_to_the_single_view_answer():
    m = PIFu(TINY).eval()
    img, uv, z = _inputs(b=1, v=1)
    one = m(img, uv, z)[-1]
    three = m(img.repeat(1, 3, 1, 1, 1), uv.repeat(1, 3, 1, 1), z.repeat(1, 3, 1, 1))[-1]
    torch.testing.assert_close(one, three, rtol=1e-5, atol=1e-6)


def test_views_are_fused_not_ignored():
    m = PIFu(TINY).eval()
    img, uv, z = _inputs(b=1, v=2)
    a = m(img, uv, z)[-1]
    b = m(img[:, :1], uv[:, :1], z[:, :1])[-1]
    assert not torch.allclose(a, b)


def test_pixel_alignment_matters():
    """The occupancy of a point depends on the image content at its projection."""
    m = PIFu(TINY).eval()
    img, uv, z = _inputs(b=1)
    img2 = img.clone()
    img2[..., :32] = -img2[..., :32]  # change the left half only
    uv_right = uv.clone()
    uv_right[..., 0] = uv_right[..., 0].abs() * 0.5 + 0.45  # projections deep in the right half
    a, b = m(img, uv_right, z)[-1], m(img2, uv_right, z)[-1]
    uv_left = uv_right.clone()
    uv_left[..., 0] = -uv_left[..., 0]
    c, d = m(img, uv_left, z)[-1], m(img2, uv_left, z)[-1]
    assert (c - d).abs().mean() > 3 * (a - b).abs().mean(), ((c - d).abs().mean(), (a - b).abs().mean())


def test_gradients_reach_every_parameter():
    m = PIFu(TINY)
    img, uv, z = _inputs()
    loss = sum(o.mean() for o in m(img, uv, z)) + m.colour(img, uv, z).mean()
    loss.backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, missing


def test_colour_head_does_not_train_the_geometry():
    m = PIFu(TINY)
    img, uv, z = _inputs()
    m.colour(img, uv, z).mean().backward()
    assert all(p.grad is None for p in m.occ_mlp.parameters())
    assert all(p.grad is None for p in m.encoder.parameters())


def test_bad_shapes_are_clear_errors():
    m = PIFu(TINY)
    img, uv, z = _inputs()
    with pytest.raises(ValueError, match=r"images must be \(B, V, 3, H, W\)"):
        m(img[:, 0], uv, z)
    with pytest.raises(ValueError, match="uv must be"):
        m(img, uv[..., :1], z)
    with pytest.raises(ValueError, match="z must be"):
        m(img, uv, z[:, :, :10])


def test_configs_round_trip_and_paper_sizes():
    for cfg in (PIFuConfig.small(), PIFuConfig.paper(), TINY):
        assert PIFuConfig.from_dict(cfg.to_dict()) == cfg
    paper = PIFuConfig.paper()
    assert (paper.n_stacks, paper.hg_channels, paper.mlp) == (4, 256, (1024, 512, 256, 128))
    assert PIFu(paper, with_colour=False).occ_mlp.layers[0].in_channels == 257
    assert count_parameters(PIFu(PIFuConfig.small())) < count_parameters(PIFu(paper)) / 10
    with pytest.raises(ValueError, match="not a PIFu config"):
        PIFuConfig.from_dict({"schema": "other"})
    with pytest.raises(ValueError, match="unknown PIFu config"):
        PIFuConfig.named("huge")


def test_z_fourier_features():
    import dataclasses
    import math

    cfg = dataclasses.replace(TINY, z_frequencies=3)
    m = PIFu(cfg)
    assert PIFuConfig.from_dict(cfg.to_dict()) == cfg
    assert m.occ_mlp.layers[0].in_channels == cfg.hg_channels + 7
    assert m.colour_mlp.layers[0].in_channels == cfg.hg_channels + cfg.tex_channels + 7
    z = torch.tensor([[[0.25, -0.5]]])  # (B*V, 1, N)
    f = m.z_features(z)
    assert f.shape == (1, 7, 2)
    assert torch.allclose(f[0, :, 0], torch.tensor([0.25, math.sin(math.pi / 4), math.sin(math.pi / 2),
                                                   math.sin(math.pi), math.cos(math.pi / 4),
                                                   math.cos(math.pi / 2), math.cos(math.pi)]), atol=1e-6)
    img, uv, zz = _inputs()
    loss = sum(o.mean() for o in m(img, uv, zz)) + m.colour(img, uv, zz).mean()
    loss.backward()
    assert all(p.grad is not None for p in m.occ_mlp.parameters())
    # without bands the input is PIFu's plain z
    assert PIFu(TINY).z_features(z) is z
