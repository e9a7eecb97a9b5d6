"""MakeHuman body generator: macro sliders, skeleton, skinning, poses, clothes, determinism."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("trimesh", reason="the [body] extra (trimesh) is not installed")

from reconstruct.body import makehuman as mh  # noqa: E402

pytestmark = pytest.mark.shared

needs_pack = pytest.mark.skipif(not (mh.DEFAULT_ROOT / "base" / "base.obj").is_file(),
                                reason=f"MakeHuman pack {mh.DEFAULT_ROOT} is absent")


def _skin_verts(**kw) -> np.ndarray:
    return mh.shape_vertices(mh.BodyParams(**kw))[:mh.N_BODY_VERTS]


def _height(v: np.ndarray) -> float:
    return float(np.ptp(v[:, 1])) / 10


def _waist_width(v: np.ndarray) -> float:
    """x extent of the skin in a band around the navel height (torso only)."""
    y0 = v[:, 1].min() + 0.6 * np.ptp(v[:, 1])
    band = v[(np.abs(v[:, 1] - y0) < 0.3) & (np.abs(v[:, 0]) < 2.2)]
    return float(np.ptp(band[:, 0]))


def _angle(a, b, c) -> float:
    """Angle at b (degrees) between b->a and b->c."""
    u, w = a - b, c - b
    return float(np.degrees(np.arccos(np.dot(u, w) / np.linalg.norm(u) / np.linalg.norm(w))))


def test_default_root_points_at_shared_data():
    assert mh.DEFAULT_ROOT == Path(__file__).resolve().parents[3].parent / "shared" / "data" / "makehuman"


def test_missing_root_names_the_path(tmp_path):
    missing = tmp_path / "no_pack_here"
    with pytest.raises(FileNotFoundError, match="no_pack_here"):
        mh.load_pack(missing)


def test_target_weights_neutral_and_extremes():
    w = mh.macro_target_weights(mh.BodyParams())
    assert not any(k.startswith(("height/", "proportions/")) for k in w)
    assert sum(v for k, v in w.items() if "-" in k and not k.startswith("universal")) == pytest.approx(1.0)
    w = mh.macro_target_weights(mh.BodyParams(gender=1, age=1, height=1, weight=0, muscle=1, caucasian=1,
                                              african=0, asian=0))
    assert w == pytest.approx({"caucasian-male-old": 1.0, "universal-male-old-maxmuscle-minweight": 1.0,
                               "height/male-old-maxmuscle-minweight-maxheight": 1.0})
    assert mh.age_years(0.5) == 25 and mh.age_years(0.1875) == 11


@needs_pack
def test_neutral_is_close_to_base():
    base = mh.load_pack().base_verts[:mh.N_BODY_VERTS]
    v = _skin_verts()
    d = np.linalg.norm(v - base, axis=1)
    assert d.mean() < 0.5 and d.max() < 1.0  # < 5 cm mean, < 10 cm anywhere (decimetres)
    assert abs(_height(v) - _height(base)) < 0.03


@needs_pack
def test_sliders_move_the_body_the_expected_way():
    assert _height(_skin_verts(height=1)) > _height(_skin_verts()) + 0.2 > _height(_skin_verts(height=0)) + 0.4
    assert _waist_width(_skin_verts(weight=1)) > 1.15 * _waist_width(_skin_verts(weight=0))
    assert _height(_skin_verts(gender=1)) > _height(_skin_verts(gender=0)) + 0.05
    assert _height(_skin_verts(age=0)) < 0.6 * _height(_skin_verts())  # a baby
    thin, muscular = _skin_verts(muscle=0), _skin_verts(muscle=1)
    assert np.linalg.norm(thin - muscular, axis=1).max() > 0.2  # muscle does something


@needs_pack
def test_random_adults_have_human_heights():
    hs = [_height(mh.shape_vertices(mh.BodyParams.random(np.random.default_rng(s)))[:mh.N_BODY_VERTS])
          for s in range(12)]
    assert 1.4 <= min(hs) and max(hs) <= 2.1


@needs_pack
def test_identity_pose_skinning_reproduces_rest():
    pack = mh.load_pack()
    v = mh.shape_vertices(mh.BodyParams(weight=0.8, gender=0.2), pack)
    skel = mh.build_skeleton(v, pack)
    A = mh.pose_transforms(skel, mh.rest_pose(pack))
    np.testing.assert_allclose(mh.skin(v, pack.weights, A), v, atol=1e-9)
    # frames are orthonormal and y runs along the bone
    F = skel.frames
    np.testing.assert_allclose(np.einsum("bji,bjk->bik", F, F), np.tile(np.eye(3), (len(F), 1, 1)), atol=1e-6)
    d = skel.tails - skel.heads
    cos = np.einsum("bc,bc->b", F[:, :, 1], d) / np.linalg.norm(d, axis=1)
    assert np.all(cos > 1 - 1e-6)


@needs_pack
def test_bvh_poses_are_plausible():
    pack = mh.load_pack()
    v = mh.shape_vertices(mh.BodyParams(), pack)
    skel = mh.build_skeleton(v, pack)
    i = {n: skel.index(n) for n in ("upperleg01.L", "lowerleg01.L", "foot.L", "upperarm01.L", "wrist.L",
                                    "lowerarm01.L")}

    def joints(name):
        return mh.posed_joints(skel, mh.pose_transforms(skel, mh.load_pose(name)))[0]

    rest = joints("rest")
    assert _angle(rest[i["upperleg01.L"]], rest[i["lowerleg01.L"]], rest[i["foot.L"]]) > 165
    sit = joints("sit01")
    assert _angle(sit[i["upperleg01.L"]], sit[i["lowerleg01.L"]], sit[i["foot.L"]]) < 140  # knee bent
    t = joints("tpose")
    # T-pose: the wrist is level with the shoulder, far out to the character's left (+x)
    assert abs(t[i["wrist.L"], 1] - t[i["upperarm01.L"], 1]) < 0.8
    assert t[i["wrist.L"], 0] > rest[i["wrist.L"], 0] + 1.0
    # bone lengths are kept by a rigid pose
    for pose in ("sit01", "run01"):
        p = joints(pose)
        np.testing.assert_allclose(np.linalg.norm(p[i["wrist.L"]] - p[i["lowerarm01.L"]]),
                                   np.linalg.norm(rest[i["wrist.L"]] - rest[i["lowerarm01.L"]]), rtol=1e-9)


@needs_pack
def test_unknown_pose_and_garment_are_errors():
    with pytest.raises(ValueError, match="unknown pose"):
        mh.load_pose("moonwalk")
    with pytest.raises(ValueError, match="unknown garment"):
        mh.build_body(mh.BodyParams(), "rest", ["top_hat"])


@needs_pack
def test_dressed_body_components_are_watertight_and_scaled():
    body = mh.build_body(mh.BodyParams(gender=0.9), "run01", ["male_casualsuit02", "shoes01"], seed=3)
    assert len(body.components) == 3
    for c in body.components:
        assert c.is_watertight and c.is_winding_consistent and c.volume > 0
    assert body.components[0].vertices[:, 1].min() >= -1e-9
    lo = np.concatenate([c.vertices for c in body.components]).min(0)
    assert abs(lo[1]) < 1e-9  # feet (shoes) on the floor
    assert 1.4 < body.height_m < 2.1 and body.mesh.vertices[:, 1].max() < 2.2
    c = np.asarray(body.mesh.visual.vertex_colors)
    assert c.dtype == np.uint8 and c.shape == (len(body.mesh.vertices), 4)
    # garments hide some skin in the render mesh but not in the occupancy component
    assert len(body.mesh.faces) < sum(len(x.faces) for x in body.components)
    assert len(body.components[0].faces) == len(mh.load_pack().body_faces)


@needs_pack
def test_random_subject_is_deterministic():
    a, b = mh.random_subject(11), mh.random_subject(11)
    assert a.params == b.params and a.pose_name == b.pose_name and a.garments == b.garments
    np.testing.assert_array_equal(a.mesh.vertices, b.mesh.vertices)
    np.testing.assert_array_equal(a.mesh.visual.vertex_colors, b.mesh.visual.vertex_colors)
    c = mh.random_subject(12)
    assert c.params != a.params
    assert all(x.is_watertight for x in a.components + c.components)
