"""Capture files: transforms.json round trip, nerfstudio split lists, rays, and one clear error
per kind of bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from reconstruct.head.data import (NERFSTUDIO_SPLIT_KEYS, Capture, CaptureError, Frame, Intrinsics,
                                   camera_rays, load_capture, opencv_to_c2w, write_transforms)

W, H = 6, 4
NAMES = ("jawOpen", "eyeBlink_L", "eyeBlink_R")


def _rot(yaw_deg: float, pitch_deg: float) -> np.ndarray:
    y, p = math.radians(yaw_deg), math.radians(pitch_deg)
    Ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    Rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    return Ry @ Rx


def _c2w(yaw=20.0, pitch=-10.0, t=(0.1, 0.2, 0.6)) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3] = _rot(yaw, pitch)
    m[:3, 3] = t
    return m


def _make(tmp_path: Path, n: int = 3, size=(W, H)) -> Path:
    """A valid capture with n frames (images + masks) written by our writer."""
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    intr = Intrinsics(fl_x=5.0, fl_y=5.5, cx=W / 2, cy=H / 2, w=W, h=H)
    splits = ["train", "test_view", "test_expression"]
    frames = []
    for i in range(n):
        img = np.arange(size[0] * size[1] * 3).reshape(size[1], size[0], 3) * (i + 1) % 256
        img = img.astype(np.uint8)
        Image.fromarray(img).save(tmp_path / "images" / f"{i:04d}.png")
        Image.fromarray(np.full((size[1], size[0]), 255 * (i % 2), np.uint8)).save(tmp_path / "masks" / f"{i:04d}.png")
        frames.append(Frame(file_path=f"images/{i:04d}.png", mask_path=f"masks/{i:04d}.png",
                            transform_matrix=_c2w(10.0 * i), intrinsics=intr,
                            expression={"jawOpen": 0.25 * i, "eyeBlink_L": 1.0},
                            split=splits[i % 3], extra={"time": i / n}))
    write_transforms(tmp_path, Capture(root=tmp_path, frames=frames, expression_names=NAMES,
                                       extra={"dhstudio": {"version": 1}}))
    return tmp_path / "transforms.json"


def _edit(path: Path, fn) -> None:
    meta = json.loads(path.read_text())
    fn(meta)
    path.write_text(json.dumps(meta))


# --------------------------------------------------------------------------------- round trip

def test_round_trip(tmp_path):
    path = _make(tmp_path)
    cap = load_capture(tmp_path)
    assert len(cap) == 3 and cap.root == tmp_path
    assert cap.expression_names == NAMES
    assert cap.extra == {"dhstudio": {"version": 1}}
    assert [f.split for f in cap.frames] == ["train", "test_view", "test_expression"]
    assert cap.indices("train") == [0] and cap.indices(["test_view", "test_expression"]) == [1, 2]
    for i, f in enumerate(cap.frames):
        np.testing.assert_allclose(f.transform_matrix, _c2w(10.0 * i))
        assert f.expression == {"jawOpen": 0.25 * i, "eyeBlink_L": 1.0}
        assert f.extra == {"time": i / 3}
        assert f.intrinsics == Intrinsics(fl_x=5.0, fl_y=5.5, cx=3.0, cy=2.0, w=W, h=H)
    # written again, the file is the same
    first = path.read_bytes()
    write_transforms(tmp_path / "again.json", cap)
    assert (tmp_path / "again.json").read_bytes() == first
    np.testing.assert_array_equal(cap.expression_matrix(), [[0, 1, 0], [0.25, 1, 0], [0.5, 1, 0]])
    # a subset of frames and names: frame 0 gives jawOpen 0, which is nothing, not an error
    np.testing.assert_array_equal(cap.expression_matrix(["eyeBlink_L"], [0]), [[1.0]])
    with pytest.raises(CaptureError, match="'jawOpen' is not in the requested names"):
        cap.expression_matrix(["eyeBlink_L"], [1])


def test_nerfstudio_keys(tmp_path):
    """The file has nerfstudio's keys: shared intrinsics at the top level, the three split lists."""
    meta = json.loads(_make(tmp_path).read_text())
    for k in ("camera_model", "fl_x", "fl_y", "cx", "cy", "w", "h", "frames"):
        assert k in meta
    assert meta["camera_model"] == "PINHOLE"
    assert set(NERFSTUDIO_SPLIT_KEYS) <= set(meta)
    assert meta["train_filenames"] == ["images/0000.png"]
    assert meta["val_filenames"] == meta["test_filenames"] == ["images/0001.png", "images/0002.png"]
    f0 = meta["frames"][0]
    assert np.asarray(f0["transform_matrix"]).shape == (4, 4) and f0["mask_path"] == "masks/0000.png"


def test_splits_from_nerfstudio_lists_only(tmp_path):
    path = _make(tmp_path)

    def strip(meta):
        for f in meta["frames"]:
            del f["split"]
        meta["test_filenames"] = meta["val_filenames"] = ["images/0002.png"]
    _edit(path, strip)
    assert [f.split for f in load_capture(path).frames] == ["train", "unused", "test"]


def test_per_frame_intrinsics_and_opencv(tmp_path):
    path = _make(tmp_path, n=2)

    def per_frame(meta):
        for k in ("fl_x", "fl_y", "cx", "cy", "w", "h", "camera_model"):
            v = meta.pop(k)
            for f in meta["frames"]:
                f[k] = v
        meta["frames"][1].update(camera_model="OPENCV", k1=0.1, p2=0.01)
    _edit(path, per_frame)
    cap = load_capture(path)
    assert cap.frames[0].intrinsics.camera_model == "PINHOLE"
    assert cap.frames[1].intrinsics.k1 == 0.1 and cap.frames[1].intrinsics.distorted
    write_transforms(tmp_path / "b.json", cap)
    meta = json.loads((tmp_path / "b.json").read_text())
    assert "fl_x" not in meta and meta["frames"][1]["k1"] == 0.1
    assert load_capture(tmp_path / "b.json").frames[1].intrinsics == cap.frames[1].intrinsics


def test_images_and_masks(tmp_path):
    cap = load_capture(_make(tmp_path))
    img = cap.image(1)
    assert img.shape == (H, W, 3) and img.dtype == np.float32 and 0 <= img.min() and img.max() <= 1
    raw = np.asarray(Image.open(tmp_path / "images" / "0001.png"), np.float32) / 255
    np.testing.assert_array_equal(img, raw)
    assert cap.mask(0).dtype == bool and not cap.mask(0).any() and cap.mask(1).all()


# ---------------------------------------------------------------------------------------- rays

def test_rays_known_camera():
    c2w = _c2w(30.0, 15.0, (1.0, -2.0, 3.0))
    k = Intrinsics(fl_x=10.0, fl_y=12.0, cx=2.5, cy=1.5, w=5, h=3)  # pixel (1, 2) sits on (cx, cy)
    o, d = camera_rays(k, c2w)
    assert o.shape == d.shape == (3, 5, 3) and o.dtype == d.dtype == np.float32
    np.testing.assert_allclose(o, np.broadcast_to([1.0, -2.0, 3.0], o.shape))
    np.testing.assert_allclose(np.linalg.norm(d, axis=-1), 1, atol=1e-6)
    np.testing.assert_allclose(d[1, 2], -c2w[:3, 2], atol=1e-6)  # looks down the camera's -Z
    # top-left pixel: left (-X) and up (+Y) of the axis, by the pinhole formula
    cam = np.array([(0.5 - 2.5) / 10.0, -(0.5 - 1.5) / 12.0, -1.0])
    want = c2w[:3, :3] @ cam
    np.testing.assert_allclose(d[0, 0], want / np.linalg.norm(want), atol=1e-6)
    # unnormalised: camera-frame z is -1, so the ray parameter is the depth
    _, du = camera_rays(k, c2w, normalize=False)
    np.testing.assert_allclose(du.reshape(-1, 3) @ c2w[:3, :3] @ [0, 0, 1], -1, atol=1e-6)


def test_rays_match_body_renderer_camera():
    """opencv_to_c2w turns reconstruct.body.render's OpenCV camera into the same rays."""
    from reconstruct.body.render import Camera, look_at

    R, t = look_at(np.array([0.3, 0.2, 1.0]), np.zeros(3))
    cam = Camera(width=7, height=5, fx=8.0, fy=8.0, cx=3.5, cy=2.5, R=R, t=t)
    o_ref, d_ref = cam.rays()
    k = Intrinsics(fl_x=8.0, fl_y=8.0, cx=3.5, cy=2.5, w=7, h=5)
    o, d = camera_rays(k, opencv_to_c2w(R, t))
    np.testing.assert_allclose(o, o_ref, atol=1e-6)
    np.testing.assert_allclose(d, d_ref / np.linalg.norm(d_ref, axis=-1, keepdims=True), atol=1e-6)


def test_rays_undistort_inverts_opencv_model():
    k = Intrinsics(fl_x=20.0, fl_y=20.0, cx=8.0, cy=6.0, w=16, h=12, camera_model="OPENCV",
                   k1=-0.2, k2=0.05, p1=0.01, p2=-0.005)
    _, d = camera_rays(k, np.eye(4), normalize=False)
    x, y = d[..., 0], -d[..., 1]  # OpenCV normalised coordinates of the undistorted rays
    r2 = x * x + y * y
    radial = 1 + k.k1 * r2 + k.k2 * r2 * r2
    xd = x * radial + 2 * k.p1 * x * y + k.p2 * (r2 + 2 * x * x)
    yd = y * radial + k.p1 * (r2 + 2 * y * y) + 2 * k.p2 * x * y
    j, i = np.meshgrid(np.arange(16) + 0.5, np.arange(12) + 0.5)
    np.testing.assert_allclose(xd * k.fl_x + k.cx, j, atol=1e-4)
    np.testing.assert_allclose(yd * k.fl_y + k.cy, i, atol=1e-4)


# ---------------------------------------------------------------------------------- bad input

def _set_frame(i, **kv):
    def fn(meta):
        meta["frames"][i].update(kv)
    return fn


BAD = {
    "missing image": (
        lambda p: (p.parent / "images" / "0001.png").unlink(),
        r"frame 1 \(images/0001.png\).*'file_path'.*does not exist"),
    "wrong matrix shape": (
        lambda p: _edit(p, _set_frame(2, transform_matrix=np.eye(4)[:3].tolist())),
        r"frame 2 .*'transform_matrix' must be 4x4, got shape \(3, 4\)"),
    "NaN in matrix": (
        lambda p: _edit(p, _set_frame(0, transform_matrix=[[float("nan")] * 4] * 4)),
        r"frame 0 .*'transform_matrix'.*non-finite"),
    "unknown expression name": (
        lambda p: _edit(p, _set_frame(1, expression={"jawOpn": 1.0})),
        r"frame 1 .*'expression'.*'jawOpn'.*did you mean jawOpen"),
    "NaN expression weight": (
        lambda p: _edit(p, _set_frame(1, expression={"jawOpen": float("nan")})),
        r"frame 1 .*weight of 'jawOpen'.*finite"),
    "wrong image size": (
        lambda p: Image.new("RGB", (W + 1, H)).save(p.parent / "images" / "0002.png"),
        r"frame 2 .*'file_path'.*7x4 but w x h is 6x4"),
    "wrong mask size": (
        lambda p: Image.new("L", (W, H + 2)).save(p.parent / "masks" / "0000.png"),
        r"frame 0 .*'mask_path'.*6x6 but w x h is 6x4"),
    "mask on some frames only": (
        lambda p: _edit(p, lambda m: m["frames"][1].pop("mask_path")),
        r"frame 1 \(images/0001.png\): key 'mask_path' is missing; give it in every frame or in none"),
    "missing focal": (
        lambda p: _edit(p, lambda m: m.pop("fl_x")),
        r"frame 0 .*'fl_x' is missing"),
    "negative focal": (
        lambda p: _edit(p, lambda m: m.update(fl_y=-3)),
        r"'fl_y' must be a positive finite number"),
    "infinite cx": (
        lambda p: _edit(p, lambda m: m.update(cx=float("inf"))),
        r"'cx' must be a positive finite number"),
    "no frames": (
        lambda p: _edit(p, lambda m: m.update(frames=[])),
        r"'frames' must be a non-empty list"),
    "missing file_path": (
        lambda p: _edit(p, lambda m: m["frames"][1].pop("file_path")),
        r"frame 1: key 'file_path' is missing"),
    "bad split": (
        lambda p: _edit(p, _set_frame(0, split="holdout")),
        r"frame 0 .*'split' must be one of"),
    "split list disagrees": (
        lambda p: _edit(p, _set_frame(0, split="test_view")),
        r"frame 0 .*'split' is 'test_view' but the top-level split lists put it in 'train'"),
    "split list names a stranger": (
        lambda p: _edit(p, lambda m: m["test_filenames"].append("images/9.png")),
        r"'test_filenames' names files that no frame has"),
    "not JSON": (
        lambda p: p.write_text("{frames: ["),
        r"not valid JSON"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_gives_one_clear_line(tmp_path, case):
    path = _make(tmp_path)
    spoil, pattern = BAD[case]
    spoil(path)
    with pytest.raises(CaptureError, match=pattern) as e:
        load_capture(path, known_expressions=NAMES)
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg


def test_missing_capture_file(tmp_path):
    with pytest.raises(CaptureError, match="capture file does not exist"):
        load_capture(tmp_path / "nothing.json")


def test_known_names_default_to_the_files_list(tmp_path):
    path = _make(tmp_path)
    _edit(path, _set_frame(0, expression={"smile": 0.5}))
    with pytest.raises(CaptureError, match="'smile'"):
        load_capture(path)
    _edit(path, lambda m: m.pop("expression_names"))
    assert load_capture(path).frames[0].expression == {"smile": 0.5}  # no list: names not checked


def test_failed_write_leaves_nothing(tmp_path):
    path = _make(tmp_path)
    before = path.read_bytes()
    cap = load_capture(path)
    cap.extra["bad"] = object()  # not JSON-serialisable
    with pytest.raises(TypeError):
        write_transforms(path, cap)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images", "masks", "transforms.json"]
