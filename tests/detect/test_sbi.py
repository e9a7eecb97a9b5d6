"""detect.sbi: self-blended images, the mask generator, face crops and evaluation attacks."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from detect import sbi
from detect.sbi import SBIConfig


def template68() -> np.ndarray:
    """A rough iBUG-68 mean face in unit coordinates (x right, y down, eyes at y ~ -0.13)."""
    a = np.pi * np.arange(17) / 16
    jaw = np.stack([-0.45 * np.cos(a) * (1 - 0.12 * np.sin(a)), -0.15 + 0.7 * np.sin(a)], 1)
    bx = np.linspace(-0.38, -0.08, 5)
    brow_l = np.stack([bx, -0.30 - 0.05 * np.sin(np.pi * (bx + 0.38) / 0.30)], 1)
    brow_r = brow_l[::-1] * [-1, 1]
    nose = np.array([[0, -0.2], [0, -0.1], [0, 0.0], [0, 0.1],
                     [-0.1, 0.15], [-0.05, 0.17], [0, 0.18], [0.05, 0.17], [0.1, 0.15]])
    eye_l = np.array([[-0.28, -0.13], [-0.23, -0.16], [-0.17, -0.16], [-0.12, -0.13],
                      [-0.17, -0.11], [-0.23, -0.11]])
    eye_r = eye_l[[3, 2, 1, 0, 5, 4]] * [-1, 1]
    mouth = np.array([[-.18, .32], [-.11, .28], [-.04, .26], [0, .27], [.04, .26], [.11, .28],
                      [.18, .32], [.11, .37], [.04, .39], [0, .39], [-.04, .39], [-.11, .37],
                      [-.15, .32], [-.05, .31], [0, .31], [.05, .31], [.15, .32], [.05, .33],
                      [0, .33], [-.05, .33]])
    return np.vstack([jaw, brow_l, brow_r, nose, eye_l, eye_r, mouth])


def face_image(h=160, w=160, seed=0, grey=False):
    """A textured synthetic 'face' and its 68 landmarks."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([0.5 + 0.3 * np.sin(7 * xx + c) * np.cos(5 * yy - c) for c in (0.0, 1.0, 2.0)], -1)
    img = np.clip(base + 0.05 * rng.normal(size=(h, w, 3)), 0, 1)
    if grey:
        img = np.repeat(img.mean(-1, keepdims=True), 3, -1)
    lm = template68() * (0.6 * min(h, w)) + [w / 2, h / 2 - 0.05 * h]
    return (img * 255).astype(np.uint8), lm


def shoelace(poly):
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


# ----------------------------------------------------------------------------- self_blend

def test_self_blend_shapes_and_determinism():
    img, lm = face_image()
    f1, m1 = sbi.self_blend(img, lm, np.random.default_rng(7))
    f2, m2 = sbi.self_blend(img, lm, np.random.default_rng(7))
    f3, _ = sbi.self_blend(img, lm, 8)  # an int seed works too
    assert f1.shape == img.shape and f1.dtype == np.uint8
    assert m1.shape == img.shape[:2] and m1.dtype == np.float32
    assert 0.0 <= m1.min() and m1.max() <= 1.0 and m1.max() > 0.2
    assert np.array_equal(f1, f2) and np.array_equal(m1, m2)
    assert not np.array_equal(f1, f3)
    assert not np.array_equal(f1, img)


def test_fake_is_source_times_mask_plus_target():
    """With the jitter on the source, the target is the real image: outside the mask the fake is
    the real image byte for byte, and inside it differs."""
    img, lm = face_image()
    cfg = SBIConfig(p_jitter_source=1.0, blend_ratios=(1.0,))
    for seed in range(6):
        fake, mask = sbi.self_blend(img, lm, seed, cfg)
        assert np.array_equal(fake[mask == 0], img[mask == 0])
        core = mask > 0.99
        assert core.any()
        assert np.abs(fake[core].astype(int) - img[core]).mean() > 1.0


def test_mask_covers_the_face_not_the_corners():
    img, lm = face_image()
    inside = np.zeros(img.shape[:2], bool)
    for seed in range(12):
        _, m = sbi.self_blend(img, lm, seed)
        cx, cy = lm[30].round().astype(int)  # nose tip
        assert m[cy, cx] > 0.2
        assert m[0, 0] == 0 and m[-1, -1] == 0 and m[0, -1] == 0 and m[-1, 0] == 0
        inside |= m > 0
    # nothing far from the landmarks' bounding box (the forehead option reaches higher up)
    x0, y0 = lm.min(0) - [0.3, 0.6] * np.ptp(lm, 0)
    x1, y1 = lm.max(0) + 0.3 * np.ptp(lm, 0)
    ys, xs = np.nonzero(inside)
    assert xs.min() >= x0 and xs.max() <= x1 and ys.min() >= y0 and ys.max() <= y1


def test_mask_with_every_option_off_is_the_hull():
    img, lm = face_image(200, 200)
    cfg = SBIConfig(p_forehead=0, p_deform=0, p_elastic=0, morph=0, blur=(0.0, 0.0), p_inner=0,
                    blend_ratios=(1.0,))
    m = sbi.face_mask(img.shape[:2], lm, 0, cfg)
    assert set(np.unique(m)) == {0.0, 1.0}
    hull = sbi._convex_hull(lm)
    perimeter = np.linalg.norm(hull - np.roll(hull, 1, 0), axis=1).sum()
    assert abs(m.sum() - shoelace(hull)) < 0.6 * perimeter  # rasterisation error at the edge only
    # the forehead option makes it taller, blend ratio scales it
    m2 = sbi.face_mask(img.shape[:2], lm, 0, replace(cfg, p_forehead=1.0, blend_ratios=(0.5,)))
    assert m2.max() == pytest.approx(0.5) and (m2 > 0).sum() > m.sum()
    assert np.nonzero(m2)[0].min() < np.nonzero(m)[0].min()


def test_mask_options_each_change_the_mask():
    img, lm = face_image()
    off = SBIConfig(p_forehead=0, p_deform=0, p_elastic=0, morph=0, blur=(0.0, 0.0), p_inner=0,
                    blend_ratios=(1.0,))
    base = sbi.face_mask(img.shape[:2], lm, 3, off)
    for change in (dict(p_deform=1.0), dict(p_elastic=1.0), dict(morph=0.1), dict(blur=(0.03, 0.05))):
        m = sbi.face_mask(img.shape[:2], lm, 3, replace(off, **change))
        assert not np.array_equal(m, base), change
    soft = sbi.face_mask(img.shape[:2], lm, 3, replace(off, blur=(0.03, 0.05)))
    assert ((soft > 0.05) & (soft < 0.95)).sum() > 100  # a soft edge
    inner = sbi.face_mask(img.shape[:2], lm, 3, replace(off, blur=(0.03, 0.05), p_inner=1.0))
    assert (inner > 0.5).sum() < (soft > 0.5).sum()  # the two-stage blur moves the edge inward


def test_grey_image_stays_grey():
    img, lm = face_image(grey=True)
    for seed in range(5):
        fake, _ = sbi.self_blend(img, lm, seed)
        assert np.abs(fake[..., 0].astype(int) - fake[..., 1]).max() <= 1
        assert np.abs(fake[..., 1].astype(int) - fake[..., 2]).max() <= 1


def test_landmarks_outside_the_image_are_fine():
    img, lm = face_image(120, 120)
    lm = lm * 1.6 - 40  # a tight crop: jaw and brows outside the image
    fake, mask = sbi.self_blend(img, lm, 1)
    assert fake.shape == img.shape and np.isfinite(mask).all() and mask.max() > 0


def test_self_blend_bad_input():
    img, lm = face_image()
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        sbi.self_blend(img.astype(np.float32), lm, 0)
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        sbi.self_blend(img[..., 0], lm, 0)
    with pytest.raises(ValueError, match=r"\(68, 2\)"):
        sbi.self_blend(img, lm[:60], 0)
    bad = lm.copy()
    bad[3, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        sbi.self_blend(img, bad, 0)
    with pytest.raises(TypeError, match="rng"):
        sbi.self_blend(img, lm, "seed")


def test_boundary():
    m = np.array([0.0, 0.25, 0.5, 1.0], np.float32)
    assert np.allclose(sbi.boundary(m), [0.0, 0.75, 1.0, 0.0])
    assert sbi.boundary(m).dtype == np.float32


# ----------------------------------------------------------------------------- crop_face

def dot_image(h, w, x, y):
    img = np.zeros((h, w, 3), np.uint8)
    img[y, x] = 255
    return img


def test_crop_face_maps_landmarks():
    img, lm = face_image(200, 240)
    crop, pts = sbi.crop_face(img, lm, size=128, margin=0.2)
    assert crop.shape == (128, 128, 3) and pts.shape == lm.shape
    lo, hi = pts.min(0), pts.max(0)
    assert np.all(lo > 0) and np.all(hi < 128)
    # centred, with the margin on the longer side
    span = (hi - lo).max()
    assert span == pytest.approx(128 / 1.4, rel=0.03)
    # a bright pixel lands where its coordinate says (no resize: size == side)
    dimg = dot_image(100, 100, 60, 40)
    crop, p = sbi.crop_face(dimg, (40, 30, 80, 70), size=56, margin=0.2, landmarks=[[60.5, 40.5]] * 3)
    y, x = np.unravel_index(crop[..., 0].argmax(), crop.shape[:2])
    assert (x + 0.5, y + 0.5) == pytest.approx(tuple(p[0]))


def test_crop_face_random_margin_keeps_the_face():
    img, lm = face_image(200, 200)
    sides = set()
    for seed in range(25):
        crop, pts = sbi.crop_face(img, lm, size=96, margin=0.3, rng=seed)
        assert crop.shape == (96, 96, 3)
        assert np.all(pts >= -1e-9) and np.all(pts <= 96 + 1e-9)
        sides.add(round(float(np.ptp(pts, 0).max()), 3))
        again, pts2 = sbi.crop_face(img, lm, size=96, margin=0.3, rng=seed)
        assert np.array_equal(crop, again) and np.array_equal(pts, pts2)
    assert len(sides) > 10  # the margin really varies


def test_crop_face_pads_at_the_border():
    img = np.full((50, 50, 3), 200, np.uint8)
    crop, pts = sbi.crop_face(img, (0, 0, 20, 20), size=40, margin=0.5)
    assert crop.shape == (40, 40, 3) and pts is None
    assert crop[0, 0].max() == 0 and crop[-1, -1].min() == 200
    crop, _ = sbi.crop_face(img, (0, 0, 20, 20), size=40, margin=0.5, pad="edge")
    assert crop.min() == 200
    crop, _ = sbi.crop_face(img, (-200, -200, 300, 300), size=32, margin=0.5, pad="reflect")
    assert crop.shape == (32, 32, 3)


def test_crop_face_bad_input():
    img, lm = face_image()
    with pytest.raises(ValueError, match="box"):
        sbi.crop_face(img, (10, 10, 5, 20))
    with pytest.raises(ValueError, match="pad"):
        sbi.crop_face(img, lm, pad="wrap")
    with pytest.raises(ValueError, match="margin"):
        sbi.crop_face(img, lm, margin=-0.1)
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        sbi.crop_face(img, [1.0, 2.0, 3.0])


# ----------------------------------------------------------------------------- jpeg / attacks

def test_jpeg_quality_orders_the_error():
    img, _ = face_image(128, 128)
    err = {q: np.abs(sbi.jpeg(img, q).astype(int) - img).mean() for q in (95, 70, 30)}
    assert err[95] < err[70] < err[30]
    assert np.array_equal(sbi.jpeg(img, 70), sbi.jpeg(img, 70))
    with pytest.raises(ValueError, match="quality"):
        sbi.jpeg(img, 0)


def test_attacks():
    img, _ = face_image(90, 130)
    assert sbi.ATTACKS == {"none", "jpeg90", "jpeg70", "jpeg50", "resize0.5", "social"}
    for name in sorted(sbi.ATTACKS):
        out = sbi.apply_attack(img, name)
        assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3
        s = sbi.attack_scale(img.shape, name)
        assert out.shape[1] == round(img.shape[1] * s)
        assert np.array_equal(out, sbi.apply_attack(img, name))  # deterministic
    assert np.array_equal(sbi.apply_attack(img, "none"), img)
    assert sbi.apply_attack(img, "resize0.5").shape == (45, 65, 3)
    assert sbi.apply_attack(img, "social").shape == img.shape  # small: never upscaled, only JPEG
    assert np.array_equal(sbi.apply_attack(img, "jpeg50"), sbi.jpeg(img, 50))
    with pytest.raises(ValueError, match="unknown attack"):
        sbi.apply_attack(img, "jpeg10")


def test_social_downsizes_the_long_edge():
    big = np.zeros((1500, 2000, 3), np.uint8)
    out = sbi.apply_attack(big, "social")
    assert out.shape == (810, 1080, 3)
    assert sbi.attack_scale(big.shape, "social") == pytest.approx(0.54)
    tall = np.zeros((1200, 700, 3), np.uint8)
    assert sbi.apply_attack(tall, "social").shape[0] == 1080


def test_sbi_module_is_light():
    code = "import sys, detect.sbi; bad = [m for m in ('torch', 'cv2') if m in sys.modules]; assert not bad, bad; print('ok')"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and "ok" in p.stdout, p.stderr
