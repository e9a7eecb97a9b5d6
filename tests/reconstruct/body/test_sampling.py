"""PIFu training samples: occupancy over unions of closed meshes, balance, colours."""

from __future__ import annotations

import numpy as np
import pytest

trimesh = pytest.importorskip("trimesh", reason="the [body] extra (trimesh) is not installed")
from reconstruct._deps import MissingExtra, require  # noqa: E402

try:
    require("open3d")
except MissingExtra as e:
    pytest.skip(f"the [body] extra (open3d) is not usable: {e}", allow_module_level=True)

from reconstruct.body.sampling import inside, sample_colour, sample_occupancy  # noqa: E402


def _coloured(m, rgb):
    m.visual.vertex_colors = np.tile(np.array([*rgb, 255], np.uint8), (len(m.vertices), 1))
    return m


def _person():
    """Capsule legs/torso/arms + sphere head, overlapping watertight parts, vertex colours."""
    parts = []
    for x in (-0.1, 0.1):
        leg = trimesh.creation.capsule(height=0.8, radius=0.07, count=[12, 12])
        leg.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, [1, 0, 0]))
        parts.append(_coloured(leg.apply_translation([x, 0.47, 0]), (40, 50, 120)))
    torso = trimesh.creation.capsule(height=0.45, radius=0.17, count=[16, 16])
    torso.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, [1, 0, 0]))
    parts.append(_coloured(torso.apply_translation([0, 1.2, 0]), (200, 40, 40)))
    parts.append(_coloured(trimesh.creation.icosphere(3, radius=0.11).apply_translation([0, 1.62, 0]),
                           (224, 172, 140)))
    return parts


def test_sphere_occupancy_matches_radius():
    r = 0.4
    s = trimesh.creation.icosphere(subdivisions=5, radius=r)
    p = np.random.default_rng(0).uniform(-0.6, 0.6, (20000, 3))
    d = np.linalg.norm(p, axis=1)
    occ = inside(s, p)
    clear = (d < 0.995 * r) | (d > 1.001 * r)  # the icosphere is inscribed in the true sphere
    assert np.array_equal(occ[clear], d[clear] < r)


def test_overlapping_boxes_are_a_union_not_a_parity():
    a = trimesh.creation.box([1.0, 1.0, 1.0])
    b = trimesh.creation.box([1.0, 1.0, 1.0]).apply_translation([0.5, 0, 0])
    p = np.random.default_rng(1).uniform(-1, 1.5, (20000, 3))
    truth = (np.all(np.abs(p) < 0.5, 1)) | (np.all(np.abs(p - [0.5, 0, 0]) < 0.5, 1))
    overlap = (p[:, 0] > 0.02) & (p[:, 0] < 0.48) & np.all(np.abs(p[:, 1:]) < 0.48, 1)
    assert overlap.sum() > 100
    occ = inside([a, b], p)
    margin = np.min(np.abs(np.concatenate([np.abs(p) - 0.5, np.abs(p - [0.5, 0, 0]) - 0.5], 1)), 1) > 1e-3
    assert np.array_equal(occ[margin], truth[margin])
    assert occ[overlap].all()
    # a single concatenated mesh counts two crossings in the overlap and calls it outside
    parity = inside(trimesh.util.concatenate([a, b]), p[overlap])
    assert parity.mean() < 0.5


@pytest.mark.parametrize("balance", [True, False])
def test_shapes_dtypes_determinism(balance):
    parts = _person()
    p1, l1 = sample_occupancy(parts, 3000, 7, balance=balance)
    p2, l2 = sample_occupancy(parts, 3000, np.random.default_rng(7), balance=balance)
    p3, _ = sample_occupancy(parts, 3000, 8, balance=balance)
    assert p1.shape == (3000, 3) and l1.shape == (3000,)
    assert p1.dtype == np.float32 and l1.dtype == np.float32
    assert set(np.unique(l1)) <= {0.0, 1.0}
    assert np.array_equal(p1, p2) and np.array_equal(l1, l2)
    assert not np.array_equal(p1, p3)
    assert np.array_equal(l1.astype(bool), inside(parts, p1))


def test_balance_is_half_inside():
    parts = _person()
    _, lab = sample_occupancy(parts, 4000, 0, balance=True)
    assert lab.sum() == 2000
    _, lab = sample_occupancy(parts, 4000, 0, balance=False)
    assert 0.1 < lab.mean() < 0.49  # unbalanced: thin limbs + uniform points are mostly outside


@pytest.mark.parametrize("balance", [True, False])
def test_uniform_fraction_is_honoured(balance):
    # a tiny sphere in a big box and a tiny sigma: far points are (almost surely) the uniform ones
    s = trimesh.creation.icosphere(subdivisions=3, radius=0.05)
    n, frac, sigma = 4000, 0.25, 1e-4
    p, lab = sample_occupancy(s, n, 3, sigma=sigma, uniform_fraction=frac, balance=balance, pad=1.0)
    far = np.abs(np.linalg.norm(p, axis=1) - 0.05) > 0.01
    expected_near_sphere = 0.02 * 0.02 * 4 * np.pi * 0.05 ** 2 * 3 / 1.05 ** 3  # negligible
    assert expected_near_sphere < 0.01
    assert abs(far.sum() - n * frac) <= 2
    near = ~far
    assert np.all(np.abs(np.linalg.norm(p[near], axis=1) - 0.05) < 10 * sigma + 2e-3)
    if balance:
        assert lab.sum() == n // 2


def test_sigma_sets_the_spread_around_the_surface():
    r = 0.5
    s = trimesh.creation.icosphere(subdivisions=5, radius=r)
    p, _ = sample_occupancy(s, 6000, 0, sigma=0.05, uniform_fraction=0.0, balance=False)
    radial = np.linalg.norm(p, axis=1) - r
    assert abs(np.std(radial) - 0.05) < 0.005  # radial part of isotropic N(0, 0.05²)


def _two_coloured_box():
    box = trimesh.creation.box([1.0, 0.6, 0.4]).subdivide().subdivide().subdivide()
    x = box.vertices[:, 0]
    col = np.where(x[:, None] > 0, [255, 0, 0, 255], [0, 0, 255, 255]).astype(np.uint8)
    col[np.abs(x) < 1e-9] = [128, 0, 128, 255]
    box.visual.vertex_colors = col
    return box


def test_colour_samples_recover_vertex_colours():
    box = _two_coloured_box()
    p, rgb = sample_colour(box, 5000, 0, sigma=0.005)
    assert p.shape == (5000, 3) and rgb.shape == (5000, 3)
    assert p.dtype == np.float32 and rgb.dtype == np.float32
    assert rgb.min() >= 0 and rgb.max() <= 1
    right, left = p[:, 0] > 0.15, p[:, 0] < -0.15  # beyond one subdivided edge from x = 0
    assert right.sum() > 1000 and left.sum() > 1000
    np.testing.assert_allclose(rgb[right], np.tile([1, 0, 0], (right.sum(), 1)), atol=1e-5)
    np.testing.assert_allclose(rgb[left], np.tile([0, 0, 1], (left.sum(), 1)), atol=1e-5)
    # points are near the surface: distance to the box ~ |N(0, 5 mm)|
    half = np.array([0.5, 0.3, 0.2])
    q = np.abs(p) - half
    dist = np.where(np.all(q < 0, 1), -np.max(q, 1), np.linalg.norm(np.maximum(q, 0), axis=1))
    assert 0.002 < np.median(np.abs(dist)) < 0.0055  # median |N(0, s)| = 0.674 s
    p2, rgb2 = sample_colour(box, 5000, 0, sigma=0.005)
    assert np.array_equal(p, p2) and np.array_equal(rgb, rgb2)


def test_colour_skips_hidden_surfaces_when_given_components():
    outer = _coloured(trimesh.creation.icosphere(3, radius=0.3), (0, 0, 255))
    hidden = _coloured(trimesh.creation.icosphere(3, radius=0.29), (255, 0, 0))
    both = trimesh.util.concatenate([outer, hidden])
    _, rgb = sample_colour(both, 2000, 0, sigma=0.005)
    assert (rgb[:, 0] > 0.5).mean() > 0.2  # without components the hidden red sphere leaks in
    _, rgb = sample_colour(both, 2000, 0, sigma=0.005, components=[outer, hidden])
    np.testing.assert_allclose(rgb, np.tile([0, 0, 1], (2000, 1)), atol=1e-5)


def test_bad_input_is_rejected():
    s = trimesh.creation.icosphere(2)
    with pytest.raises(ValueError):
        inside(s, np.zeros((4, 2)))
    with pytest.raises(ValueError):
        sample_occupancy([], 10, 0)
    with pytest.raises(ValueError):
        sample_colour(s, 10, 0)  # no colours
