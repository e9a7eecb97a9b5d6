"""detect_faces on real images from ../shared/data (skips without it or without the faces extra)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from reconstruct.faces import Face, detect_faces, detect_faces_batch

from .conftest import load_rgb

pytestmark = [pytest.mark.shared, pytest.mark.usefixtures("faces_extra")]


def _iou(p, q) -> float:
    ix = max(0.0, min(p[2], q[2]) - max(p[0], q[0]))
    iy = max(0.0, min(p[3], q[3]) - max(p[1], q[1]))
    inter = ix * iy
    return inter / ((p[2] - p[0]) * (p[3] - p[1]) + (q[2] - q[0]) * (q[3] - q[1]) - inter)


def _plausible_68(p: np.ndarray, box) -> None:
    """iBUG layout on an upright face: brows above eyes above nose tip above mouth above chin;
    the image-left eye (36-41) left of the other; the points near the detector box."""
    y = lambda r: p[r, 1].mean()  # noqa: E731
    assert y(range(17, 27)) < y(range(36, 48)) < p[30, 1] < y(range(48, 68)) < p[8, 1]
    assert p[36:42, 0].mean() < p[27:36, 0].mean() < p[42:48, 0].mean()
    assert p[48, 0] < p[51, 0] < p[54, 0] and p[0, 0] < p[8, 0] < p[16, 0]
    assert p[62, 1] <= p[66, 1] + 1.0  # inner upper lip not below the inner lower lip
    w, h = box[2] - box[0], box[3] - box[1]
    assert (p[:, 0] > box[0] - 0.5 * w).all() and (p[:, 0] < box[2] + 0.5 * w).all()
    assert (p[:, 1] > box[1] - 0.5 * h).all() and (p[:, 1] < box[3] + 0.5 * h).all()


def test_real_faces_one_each_with_landmarks(ffhq, shared_data):
    grey = load_rgb(shared_data / "faces_real" / "images" / "Aaron_Eckhart_0001.jpg")
    color = load_rgb(next(iter(sorted((shared_data / "faces_real_color" / "images" / "frl_london").glob("*.jpg")))))
    for img in [*ffhq, grey, color]:
        faces = detect_faces(img)
        assert len(faces) == 1
        f = faces[0]
        assert isinstance(f, Face) and f.detector in ("short", "full") and 0.5 <= f.score <= 1.0
        x0, y0, x1, y1 = f.box
        assert 0 <= x0 < x1 <= img.shape[1] and 0 <= y0 < y1 <= img.shape[0]
        assert f.width > 0.2 * img.shape[1]
        assert f.landmarks.shape == (478, 2) and f.landmarks.dtype == np.float32
        assert f.landmarks_z.shape == (478,) and f.landmark_model == "mesh478"
        assert f.landmarks68.shape == (68, 2)
        assert f.keypoints.shape == (6, 2)
        _plausible_68(f.landmarks68, f.box)
        assert all(abs(a) < 60 for a in f.pose)
        json.dumps(f.to_dict())
    f468 = detect_faces(ffhq[0], refine=False)[0]
    assert f468.landmarks.shape == (468, 2) and f468.landmark_model == "mesh468"
    assert np.abs(f468.landmarks68 - detect_faces(ffhq[0])[0].landmarks68).mean() < 3.0
    bare = detect_faces(ffhq[0], landmarks=False)[0]
    assert bare.landmarks is None and bare.landmarks68 is None and bare.pose is None


def test_modes(ffhq):
    for mode in ("short", "full", "auto"):
        faces = detect_faces(ffhq[1], mode=mode)
        assert len(faces) == 1 and faces[0].detector == ("short" if mode == "auto" else mode)
    with pytest.raises(ValueError, match="mode"):
        detect_faces(ffhq[1], mode="long")
    with pytest.raises(ValueError, match="max_faces"):
        detect_faces(ffhq[1], max_faces=0)


def test_small_face_in_a_wide_frame_needs_the_full_range_model(ffhq, shared_data):
    """A face 15 % of the frame height: the short-range model misses it, auto finds it."""
    bg = np.asarray(Image.open(shared_data / "c2pa_fixtures" / "no_manifest.jpg").convert("RGB").resize((1280, 720)))
    box = detect_faces(ffhq[0], landmarks=False)[0].box
    s = 0.15 * 720 / (box[3] - box[1])
    tile = np.asarray(Image.fromarray(ffhq[0]).resize((round(384 * s),) * 2, Image.LANCZOS))
    frame = bg.copy()
    frame[300:300 + tile.shape[0], 700:700 + tile.shape[1]] = tile
    truth = np.array(box) * s + [700, 300, 700, 300]
    assert not any(_iou(f.box, truth) > 0.3 for f in detect_faces(frame, mode="short", landmarks=False))
    found = [f for f in detect_faces(frame, mode="auto") if _iou(f.box, truth) > 0.3]
    assert len(found) == 1 and found[0].detector == "full" and found[0].landmarks68 is not None


def test_no_face_and_tiny_images(shared_data):
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 255, (300, 400, 3), dtype=np.uint8)
    flat = np.full((240, 320, 3), 128, np.uint8)
    ribbons = load_rgb(shared_data / "c2pa_fixtures" / "CA.jpg")
    gradient = load_rgb(shared_data / "c2pa_fixtures" / "C.jpg")
    for img in (noise, flat, ribbons, gradient):
        for mode in ("auto", "short", "full"):
            assert detect_faces(img, mode=mode) == [], mode
    assert detect_faces(np.zeros((8, 8, 3), np.uint8)) == []
    assert detect_faces(np.zeros((1, 500), np.uint8)) == []


def test_grey_cmyk_rgba_pil_and_path_inputs(ffhq, tmp_path):
    rgb = ffhq[2]
    ref = detect_faces(rgb)[0]
    grey = np.asarray(Image.fromarray(rgb).convert("L"))
    rgba = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], axis=2)
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    Image.fromarray(grey).save(tmp_path / "grey.jpg", quality=95)
    with Image.open(tmp_path / "cmyk.jpg") as im:
        assert im.mode == "CMYK"
        pil_cmyk = im.copy()
    for src in (grey, grey[:, :, None], rgba, pil_cmyk, tmp_path / "cmyk.jpg", str(tmp_path / "grey.jpg")):
        faces = detect_faces(src)
        assert len(faces) == 1
        assert _iou(faces[0].box, ref.box) > 0.85
        assert np.abs(faces[0].landmarks68 - ref.landmarks68).mean() < 4.0


def test_huge_image_is_downscaled_and_maps_back(ffhq, tmp_path):
    """8000x6000 (48 MP) with a face pasted in: detection runs on a 1024 px copy, the box and the
    landmarks come back in full-resolution pixels; from a file, the JPEG decoder shrinks it."""
    face = ffhq[1]
    big = np.zeros((6000, 8000, 3), np.uint8)
    big[:, :, 1] = 90
    tile = np.asarray(Image.fromarray(face).resize((1536, 1536), Image.BICUBIC))  # x4
    x, y = 5200, 2500
    big[y:y + 1536, x:x + 1536] = tile
    Image.fromarray(big).save(tmp_path / "big.jpg", quality=80)
    small = np.asarray(Image.fromarray(big).resize((1024, 768), Image.BOX))  # what detection sees
    ref_small = detect_faces(small, landmarks=False)[0]
    truth = np.array(ref_small.box) * 8000 / 1024
    ref = detect_faces(face)[0]  # landmarks: on the face alone, x4
    for src in (big, tmp_path / "big.jpg"):
        faces = detect_faces(src)
        assert len(faces) == 1
        f = faces[0]
        assert f.detector == ref_small.detector
        assert _iou(f.box, truth) > 0.9, (f.box, truth)
        assert x < f.box[0] < f.box[2] < x + 1536 and y < f.box[1] < f.box[3] < y + 1536
        # landmarks come from a crop of the full-resolution image: same as on the face alone, x4
        assert np.abs(f.landmarks68 - (ref.landmarks68 * 4 + [x, y])).mean() < 16.0


def test_two_faces_and_max_faces(ffhq):
    pair = np.concatenate([ffhq[0], ffhq[1]], axis=1)
    faces = detect_faces(pair, mode="short")
    assert len(faces) == 2
    assert faces[0].score >= faces[1].score
    assert sorted(round(f.center[0] > 384) for f in faces) == [0, 1]
    for f in faces:  # each face got its own landmarks, not its neighbour's
        assert f.box[0] - 10 < f.landmarks68[:, 0].mean() < f.box[2] + 10
    one = detect_faces(pair, mode="short", max_faces=1)
    assert len(one) == 1 and one[0].score == pytest.approx(faces[0].score)


def test_mirrored_image_mirrors_landmarks_and_pose(ffhq):
    from reconstruct.faces import IBUG68_MIRROR

    img = ffhq[0]
    a = detect_faces(img)[0]
    b = detect_faces(np.ascontiguousarray(img[:, ::-1]))[0]
    mirrored = b.landmarks68[IBUG68_MIRROR] * [-1, 1] + [img.shape[1], 0]
    iod = np.linalg.norm(a.landmarks68[36:42].mean(0) - a.landmarks68[42:48].mean(0))
    assert np.abs(mirrored - a.landmarks68).mean() < 0.06 * iod
    assert b.pose[0] == pytest.approx(-a.pose[0], abs=4) and b.pose[2] == pytest.approx(-a.pose[2], abs=3)
    assert b.pose[1] == pytest.approx(a.pose[1], abs=3)


def test_rotated_image_gives_roll(ffhq):
    img = Image.fromarray(ffhq[1])
    base = detect_faces(ffhq[1])[0].pose[2]
    # PIL rotates counter-clockwise for positive angles; roll > 0 is clockwise on screen
    turned = np.asarray(img.rotate(-20, resample=Image.BICUBIC, expand=True))
    assert detect_faces(turned)[0].pose[2] == pytest.approx(base + 20, abs=4)


def test_batch_matches_single(ffhq, tmp_path):
    Image.fromarray(ffhq[0]).save(tmp_path / "a.png")
    items = [ffhq[1], tmp_path / "a.png", np.zeros((50, 50, 3), np.uint8), ffhq[2]]
    single = [detect_faces(i) for i in items]
    for workers in (1, 2):
        batch = detect_faces_batch(items, workers=workers)
        assert [len(b) for b in batch] == [1, 1, 0, 1]
        for s, b in zip(single, batch):
            for fs, fb in zip(s, b):
                assert np.allclose(fs.box, fb.box) and np.allclose(fs.landmarks, fb.landmarks)
    with pytest.raises(ValueError, match="image 1"):
        detect_faces_batch([ffhq[0], tmp_path / "missing.jpg"])
