"""CPU renderer: masks against analytic projections, camera conventions, determinism."""

from __future__ import annotations

import time

import numpy as np
import pytest

trimesh = pytest.importorskip("trimesh", reason="the [body] extra (trimesh) is not installed")
from reconstruct._deps import MissingExtra, require  # noqa: E402

try:
    require("open3d")
except MissingExtra as e:
    pytest.skip(f"the [body] extra (open3d) is not usable: {e}", allow_module_level=True)

from reconstruct.body.render import (BACKGROUND_KINDS, Camera, Lighting, look_at, look_at_body,  # noqa: E402
                                     make_background, prepare, render, render_turntable)


def _coloured(m, rgb):
    m.visual.vertex_colors = np.tile(np.array([*rgb, 255], np.uint8), (len(m.vertices), 1))
    return m


def _person():
    """A capsule body (feet on y = 0, +Y up) with a yellow nose on +Z and a green left hand (+X)."""
    body = _coloured(trimesh.creation.capsule(height=1.3, radius=0.2, count=[24, 24]), (200, 40, 40))
    body.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, [1, 0, 0]))
    body.apply_translation([0, 0.85, 0])
    head = _coloured(trimesh.creation.icosphere(3, radius=0.12), (224, 172, 140)).apply_translation([0, 1.62, 0])
    nose = _coloured(trimesh.creation.icosphere(2, radius=0.04), (255, 255, 0)).apply_translation([0, 1.62, 0.12])
    hand = _coloured(trimesh.creation.icosphere(2, radius=0.06), (0, 255, 0)).apply_translation([0.3, 0.9, 0])
    return trimesh.util.concatenate([body, head, nose, hand])


def _sphere(r=0.5, centre=(0.1, 0.2, -0.1), rgb=(255, 255, 255)):
    return _coloured(trimesh.creation.icosphere(subdivisions=5, radius=r), rgb).apply_translation(centre)


def _iou(a, b):
    return (a & b).sum() / (a | b).sum()


def _analytic_sphere_mask(cam: Camera, centre, r):
    o, d = cam.rays()
    c = np.asarray(centre) - o
    dn = d / np.linalg.norm(d, axis=-1, keepdims=True)
    along = (c * dn).sum(-1)
    perp = np.linalg.norm(c - along[..., None] * dn, axis=-1)
    return (perp < r) & (along > 0)


@pytest.mark.parametrize("ortho", [False, True])
def test_sphere_mask_matches_analytic_projection(ortho):
    centre, r = (0.1, 0.2, -0.1), 0.5
    m = _sphere(r, centre)
    b = np.array([np.subtract(centre, r), np.add(centre, r)])
    cam = look_at_body(b, 30, 10, 128, orthographic=ortho, fill=0.7)
    res = render(m, cam)
    truth = _analytic_sphere_mask(cam, centre, r)
    assert truth.mean() > 0.15
    assert _iou(res.mask, truth) > 0.98
    # depth of the hit at the image centre ~ distance to the sphere's front
    i, j = cam.height // 2, cam.width // 2
    _, dc = cam.project(np.array([centre]))
    assert abs(res.depth[i, j] - (dc[0] - r)) < 0.02
    assert np.isinf(res.depth[~res.mask]).all() and np.isfinite(res.depth[res.mask]).all()
    assert np.allclose(np.linalg.norm(res.normal[res.mask], axis=-1), 1, atol=1e-3)


def test_perspective_projection_matches_pinhole_formula():
    R, t = look_at([0.3, 1.0, 3.0], [0, 1, 0])
    cam = Camera(width=64, height=48, fx=80, fy=80, cx=32, cy=24, R=R, t=t)
    p = np.array([[0, 1, 0], [0.2, 1.3, -0.1]])
    uv, z = cam.project(p)
    pc = p @ R.T + t
    np.testing.assert_allclose(uv, np.stack([80 * pc[:, 0] / pc[:, 2] + 32, 80 * pc[:, 1] / pc[:, 2] + 24], 1))
    np.testing.assert_allclose(uv[0], [32, 24], atol=1e-9)  # the target lands on the principal point
    np.testing.assert_allclose(z[0], np.linalg.norm([0.3, 0, 3.0]))
    # a point above the target appears higher in the image (smaller v): y down, image upright
    assert cam.project(np.array([[0, 1.5, 0]]))[0][0, 1] < 24
    nuv, nz = cam.projector()(p)
    assert nuv.dtype == np.float32 and nz.shape == (2, 1)
    np.testing.assert_allclose(nuv[0], [0, 0], atol=1e-6)
    assert Camera.from_dict(cam.to_dict()).to_dict() == cam.to_dict()


@pytest.mark.parametrize("ortho", [False, True])
def test_unproject_inverts_project(ortho):
    R, t = look_at([0.3, 1.0, 3.0], [0, 1, 0])
    cam = Camera(width=64, height=48, fx=80 if not ortho else 20, fy=80 if not ortho else 20, cx=32, cy=24,
                 R=R, t=t, orthographic=ortho)
    p = np.random.default_rng(0).uniform(-0.4, 0.4, (20, 3)) + [0, 1, 0]
    uv, z = cam.project(p)
    np.testing.assert_allclose(cam.unproject(uv[:, 0], uv[:, 1], z), p, atol=1e-9)


@pytest.mark.parametrize("ortho", [False, True])
def test_projected_vertices_land_in_the_mask(ortho):
    m = _person()
    cam = look_at_body(m.bounds, 40, 5, 128, orthographic=ortho)
    res = render(m, cam)
    uv, z = cam.project(m.vertices)
    assert (z > 0).all()
    ij = np.floor(uv).astype(int)
    assert (ij >= 0).all() and (ij[:, 0] < 128).all() and (ij[:, 1] < 128).all()
    # one pixel of tolerance: vertices sit on the silhouette's edge
    from scipy.ndimage import binary_dilation
    grown = binary_dilation(res.mask, iterations=1)
    assert grown[ij[:, 1], ij[:, 0]].mean() > 0.999
    # a visible vertex's depth equals the rendered depth at its pixel
    cam_dir = -cam.R[2]
    front = (m.vertex_normals @ cam_dir > 0.9)
    vis = front & res.mask[ij[:, 1], ij[:, 0]]
    d_img = res.depth[ij[vis, 1], ij[vis, 0]]
    assert np.median(np.abs(d_img - z[vis])) < 0.01


def test_yaw_zero_sees_the_face_upright():
    m = _person()
    cam = look_at_body(m.bounds, 0, 0, 256)
    res = render(m, cam, background=(0, 0, 0))
    yellow = (res.rgb[..., 0] > 150) & (res.rgb[..., 1] > 150) & (res.rgb[..., 2] < 80)
    green = (res.rgb[..., 1] > 100) & (res.rgb[..., 0] < 60) & (res.rgb[..., 2] < 60)
    assert yellow.sum() > 10 and green.sum() > 10
    rows, cols = np.nonzero(res.mask)
    assert np.nonzero(yellow)[0].mean() < rows.min() + 0.2 * np.ptp(rows)  # nose near the top
    assert np.nonzero(green)[1].mean() > 128  # the body's left hand (+X) on the image's right
    # framing: the body spans about `fill` of the image height
    assert 0.75 < (np.ptp(rows) + 1) / 256 < 0.87
    back = render(m, look_at_body(m.bounds, 180, 0, 256), background=(0, 0, 0)).rgb
    assert ((back[..., 0] > 150) & (back[..., 1] > 150) & (back[..., 2] < 80)).sum() == 0


def test_determinism_by_seed_and_background_differs_from_body():
    m = _person()
    sc = prepare(m)
    cam = look_at_body(m.bounds, 120, 5, 96)
    a = render(sc, cam, light="random", background="random", seed=5)
    b = render(m, cam, light="random", background="random", seed=5)
    c = render(sc, cam, light="random", background="random", seed=6)
    assert np.array_equal(a.rgb, b.rgb) and a.lighting == b.lighting
    assert not np.array_equal(a.rgb, c.rgb)
    assert np.array_equal(a.mask, c.mask)
    white = render(_sphere(rgb=(255, 255, 255)), look_at_body(np.array([[-0.5] * 3, [0.5] * 3]), 0, 0, 64),
                   background=(0, 0, 255), light=Lighting(ambient=0.5))
    bg = white.rgb[~white.mask]
    assert (bg == [0, 0, 255]).all()
    body = white.rgb[white.mask].astype(int)
    assert (body[:, 0] > 100).all()  # a white body lit by ambient + key never looks blue


def test_backgrounds_are_deterministic_and_varied():
    for kind in BACKGROUND_KINDS:
        x = make_background(32, 48, 3, kind)
        assert x.shape == (32, 48, 3) and x.dtype == np.uint8
        assert np.array_equal(x, make_background(32, 48, 3, kind))
    assert not np.array_equal(make_background(32, 32, 1), make_background(32, 32, 2))
    with pytest.raises(ValueError):
        make_background(8, 8, 0, "plaid")


def test_supersampling_keeps_the_mask_and_softens_edges():
    m = _sphere()
    cam = look_at_body(m.bounds, 0, 0, 64)
    one = render(m, cam, background=(0, 0, 0))
    two = render(m, cam, background=(0, 0, 0), supersample=2)
    assert _iou(one.mask, two.mask) > 0.95
    assert len(np.unique(two.rgb[..., 0][~two.mask])) > 1  # partial coverage blends at the edge


def test_turntable_frames():
    m = _person()
    frames = list(render_turntable(m, 4, 48, supersample=1))
    assert len(frames) == 4 and all(f.shape == (48, 48, 3) and f.dtype == np.uint8 for f in frames)
    assert not np.array_equal(frames[0], frames[1])
    with pytest.raises(ValueError):
        next(render_turntable(m, 0, 48))


def test_render_speed_sanity():
    m = trimesh.creation.icosphere(subdivisions=5)  # 20k triangles
    m = _coloured(trimesh.util.concatenate([m, m.copy().apply_translation([0, 1.2, 0])]), (180, 120, 90))
    sc = prepare(m)
    cam = look_at_body(m.bounds, 30, 5, 512)
    render(sc, cam, light="random", background="random")
    t = time.perf_counter()
    render(sc, cam, light="random", background="random")
    assert time.perf_counter() - t < 5.0  # ~0.3 s on one core; loose for busy CI machines
