"""ICT face model and synthetic head captures: files, splits, framing, expressions, determinism."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from reconstruct.head.ict import FILE_NAME, IctFace, IctFaceMissing, UnknownNameError, default_path

REPO_ROOT = Path(__file__).resolve().parents[3]
ICT_DIR = REPO_ROOT.parent / "shared" / "data" / "ict_face"
needs_ict = pytest.mark.skipif(not (ICT_DIR / FILE_NAME).is_file(),
                               reason=f"ICT face model absent ({ICT_DIR / FILE_NAME})")


def _require_render():
    pytest.importorskip("trimesh", reason="the [body] extra (trimesh) is not installed")
    from reconstruct._deps import MissingExtra, require

    try:
        require("open3d")
    except MissingExtra as e:
        pytest.skip(f"the [body] extra (open3d) is not usable: {e}")


# ----------------------------------------------------------------------------------- ICT model

def test_missing_model_is_a_clear_error(tmp_path, monkeypatch):
    with pytest.raises(IctFaceMissing, match="ICT face model not found at .*argument"):
        IctFace(tmp_path / "nowhere")
    monkeypatch.setenv("DHSTUDIO_ICT_FACE", str(tmp_path))
    assert default_path() == tmp_path
    with pytest.raises(IctFaceMissing, match=r"\$DHSTUDIO_ICT_FACE"):
        IctFace()


@needs_ict
def test_ict_mesh_in_metres_and_names():
    face = IctFace(ICT_DIR)
    v, f = face.mesh()
    assert v.dtype == np.float32 and f.dtype == np.int32 and f.max() < len(v)
    height = np.ptp(v[:, 1])
    assert 0.3 < height < 0.4  # chin-to-neck-cut-to-crown, in metres
    assert "jawOpen" in face.expression_names and "eyeBlink_L" in face.expression_names
    v_open, _ = face.mesh("identity003", {"jawOpen": 1.0})
    v_id, _ = face.mesh("identity003")
    moved = np.linalg.norm(v_open - v_id, axis=1)
    assert moved.max() > 0.01 and v_open[moved.argmax(), 1] < v_id[:, 1].mean()  # the jaw drops
    with pytest.raises(UnknownNameError, match="'jawOpn'.*did you mean jawOpen"):
        face.mesh(expression={"jawOpn": 1.0})
    with pytest.raises(UnknownNameError, match="valid names include"):
        face.mesh(expression={"zzz": 1.0})
    with pytest.raises(ValueError, match="finite"):
        face.mesh(expression={"jawOpen": float("nan")})
    parts = face.triangle_parts()
    assert parts.shape == (len(f),) and len(np.unique(parts)) >= 6


# ---------------------------------------------------------------------------------- captures

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    if not (ICT_DIR / FILE_NAME).is_file():
        pytest.skip(f"ICT face model absent ({ICT_DIR / FILE_NAME})")
    _require_render()
    from reconstruct.head.synth import synth_capture

    root = tmp_path_factory.mktemp("synth")
    kw = dict(n_views=4, n_frames=3, size=48, sequence="talking", seed=7, face_model_path=ICT_DIR)
    a = synth_capture(root / "a", **kw)
    b = synth_capture(root / "b", **kw)
    return a, b


def test_capture_files_and_splits(tiny):
    from reconstruct.head.data import load_capture

    cap0, _ = tiny
    cap = load_capture(cap0.root, known_expressions=IctFace(ICT_DIR).expression_names)
    assert len(cap) == 15
    train, tv, te = cap.indices("train"), cap.indices("test_view"), cap.indices("test_expression")
    assert (len(train), len(tv), len(te)) == (9, 3, 3)
    cams = lambda idx: {cap.frames[i].extra["camera_id"] for i in idx}  # noqa: E731
    assert cams(tv).isdisjoint(cams(train))  # held-out cameras never train
    assert cams(te) <= cams(train)
    train_e = [cap.frames[i].expression for i in train]
    for i in te:  # held-out coefficients differ from every training frame
        e = cap.frames[i].expression
        assert all(max(abs(e[k] - t.get(k, 0.0)) for k in e) >= 0.02 for t in train_e)
    assert all(cap.frames[i].expression in train_e for i in tv)
    meta = cap.extra["dhstudio"]
    assert meta["units"] == "metres" and meta["identity"] == "identity003"
    import json
    raw = json.loads((cap.root / "transforms.json").read_text())
    assert len(raw["train_filenames"]) == 9 and len(raw["test_filenames"]) == 6


def _yaw_pitch(cap, idx):
    """(yaw, pitch) degrees of each frame's camera as seen from the head centre."""
    c = np.asarray(cap.extra["dhstudio"]["head_centre"])
    v = np.array([cap.frames[i].transform_matrix[:3, 3] - c for i in idx])
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return np.degrees(np.stack([np.arctan2(v[:, 0], v[:, 2]), np.arcsin(v[:, 1])], 1))


def test_held_out_cameras_interpolate(tiny):
    """Every test_view camera lies strictly inside the training cameras' yaw and pitch range."""
    cap, _ = tiny
    train, tv = _yaw_pitch(cap, cap.indices("train")), _yaw_pitch(cap, cap.indices("test_view"))
    assert len(tv) and np.all(tv > train.min(0)) and np.all(tv < train.max(0)), (tv, train)


@pytest.mark.parametrize("n_views,n_test", [(3, 1), (4, 2), (4, 1), (8, 2), (12, 3), (16, 4), (9, 5)])
def test_rig_held_out_views_inside_training_range(n_views, n_test):
    from reconstruct.head.synth import rig_angles

    for seed in range(20):
        tr, te = rig_angles("multiview", n_views, 4, n_test, np.random.default_rng(seed))
        assert tr.shape == (n_views - n_test, 2) and te.shape == (n_test, 2)
        assert np.all(te > tr.min(0)) and np.all(te < tr.max(0)), (seed, te, tr)
        gap = np.linalg.norm(te[:, None] - tr[None], axis=-1).min(1)
        assert np.all(gap > 1.0)  # a new viewpoint, not a training camera again
        assert len(np.unique(te.round(6), axis=0)) == n_test  # distinct held-out views
        again, te2 = rig_angles("multiview", n_views, 4, n_test, np.random.default_rng(seed))
        np.testing.assert_array_equal(te, te2)  # deterministic by seed
    with pytest.raises(ValueError, match="at least 2 training views"):
        rig_angles("multiview", 2, 4, 1, np.random.default_rng(0))


def test_masks_and_framing(tiny):
    cap, _ = tiny
    for i in range(len(cap)):
        img, mask = cap.image(i), cap.mask(i)
        assert img.shape == (48, 48, 3) and mask.shape == (48, 48)
        assert 0.1 < mask.mean() < 0.8
        assert img[~mask].max() < 0.35  # black background (antialiased edges aside)
        assert img[mask].mean() > 0.2
        ys, xs = np.nonzero(mask)
        assert abs(xs.mean() + 0.5 - 24) < 7 and abs(ys.mean() + 0.5 - 24) < 7  # head in the middle
        # the head centre projects to the image centre: its ray is the camera axis
        o, d = cap.rays(i)
        c = np.asarray(cap.extra["dhstudio"]["head_centre"])
        to_c = (c - o[0, 0]) / np.linalg.norm(c - o[0, 0])
        np.testing.assert_allclose(to_c, -cap.frames[i].transform_matrix[:3, 2], atol=1e-6)


def test_same_seed_same_bytes(tiny):
    a, b = tiny
    files = sorted(p.relative_to(a.root) for p in a.root.rglob("*") if p.is_file())
    assert len(files) == 31
    assert files == sorted(p.relative_to(b.root) for p in b.root.rglob("*") if p.is_file())
    for f in files:
        assert (a.root / f).read_bytes() == (b.root / f).read_bytes(), f


@needs_ict
def test_jaw_open_changes_the_mouth():
    _require_render()
    from reconstruct.body.render import prepare, render
    from reconstruct.head.synth import SynthHead, _camera, _lighting

    head = SynthHead.build("identity003", 0, IctFace(ICT_DIR))
    cam = _camera(head, 0.0, 0.0, 64)
    light = _lighting(cam, np.array([0.0, 0.5, 1.0]) / np.sqrt(1.25), 0.3, 0.75)
    neutral = render(prepare(head.trimesh({})), cam, light=light, background=(0, 0, 0)).rgb
    opened = render(prepare(head.trimesh({"jawOpen": 1.0})), cam, light=light, background=(0, 0, 0)).rgb
    diff = np.abs(neutral.astype(int) - opened.astype(int)).sum(-1) > 30
    assert diff.sum() > 10
    ys, xs = np.nonzero(diff)
    assert abs(xs.mean() - 32) < 6  # centred left-right
    assert ys.mean() > 32  # below the head centre: mouth and chin
    assert not diff[:24].any()  # forehead and eyes untouched


def test_orbit_rig_and_other_sequences(tmp_path):
    if not (ICT_DIR / FILE_NAME).is_file():
        pytest.skip(f"ICT face model absent ({ICT_DIR / FILE_NAME})")
    _require_render()
    from reconstruct.head.synth import synth_capture

    cap = synth_capture(tmp_path / "o", rig="orbit", n_frames=3, size=24, sequence="blinking", n_test_views=1,
                        supersample=1, seed=1, face_model_path=ICT_DIR)
    assert [f.split for f in cap.frames] == ["train"] * 3 + ["test_view", "test_expression"]
    assert len({tuple(f.transform_matrix[:3, 3].round(6)) for f in cap.frames[:4]}) == 4
    assert all("eyeBlink_L" in f.expression for f in cap.frames)


def test_expression_sequences_are_in_range():
    from reconstruct.head.synth import SEQUENCES, expression_sequence

    for s in SEQUENCES:
        train, held, _, _ = expression_sequence(s, 8, 2, seed=3)
        assert len(train) == 8 and len(held) == 2
        assert all(0 <= w <= 1 for e in train + held for w in e.values())
        assert len({tuple(sorted(e.items())) for e in train}) > 1  # it moves
    with pytest.raises(ValueError, match="unknown sequence"):
        expression_sequence("dancing", 3)


def test_cli_user_errors(tmp_path, capsys):
    from reconstruct.head.synth import main_synth

    out = tmp_path / "full"
    out.mkdir()
    (out / "x").write_text("keep me")
    assert main_synth(["--out", str(out), "--face-model", str(ICT_DIR)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dhstudio: error: ") and err.count("\n") == 1 and "not an empty folder" in err
    assert (out / "x").read_text() == "keep me"
    if (ICT_DIR / FILE_NAME).is_file():
        _require_render()
        assert main_synth(["--out", str(tmp_path / "n"), "--identity", "identity999",
                           "--face-model", str(ICT_DIR)]) == 2
        assert "unknown identity name 'identity999'" in capsys.readouterr().err
        assert not (tmp_path / "n").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["full"]


def test_dhstudio_head_synth_command(tmp_path):
    """The console command routes to the synth parser: a tiny capture that loads back."""
    import subprocess
    import sys

    from reconstruct.head.data import load_capture

    if not (ICT_DIR / FILE_NAME).is_file():
        pytest.skip("../shared/data/ict_face is absent")
    _require_render()
    out = tmp_path / "cap"
    r = subprocess.run([sys.executable, "-m", "studio.cli", "head", "synth", "--out", str(out), "--views", "4",
                        "--frames", "2", "--size", "32", "--supersample", "1", "--face-model", str(ICT_DIR)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    cap = load_capture(out / "transforms.json")
    assert len(cap) >= 3
    r = subprocess.run([sys.executable, "-m", "studio.cli", "head", "synth", "--out", str(out)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.startswith("dhstudio: error: ") and r.stderr.count("\n") == 1
