"""Body dataset builder, loader, trainer (checkpoint/resume), weights loading, inference helpers."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the [body] extra (torch) is not installed")
trimesh = pytest.importorskip("trimesh", reason="the [body] extra (trimesh) is not installed")

from reconstruct._deps import MissingExtra, require  # noqa: E402

try:
    require("open3d")
except MissingExtra as e:  # pragma: no cover
    pytest.skip(f"open3d unusable: {e}", allow_module_level=True)

from reconstruct.body.data import (  # noqa: E402
    BodyDataset,
    DatasetConfig,
    ScanBody,
    build_dataset,
    canonical_camera,
    frame_photo,
)
from reconstruct.body.infer import camera_box, reconstruct_views, visual_hull  # noqa: E402
from reconstruct.body.train import TrainConfig, load_model, save_weights, train  # noqa: E402

TINY_CFG = DatasetConfig(n_subjects=3, views=3, size=64, n_occ=2000, n_col=500, supersample=1,
                         val_fraction=0.0, test_fraction=0.0, seed=3)


def capsule_person(seed: int) -> ScanBody:
    """A coloured capsule 'person' 1.6-1.8 m tall standing on y = 0."""
    rng = np.random.default_rng(seed)
    h = rng.uniform(1.6, 1.8)
    m = trimesh.creation.capsule(height=h - 0.4, radius=0.2, count=[24, 24])
    m.apply_transform(trimesh.transformations.rotation_matrix(-np.pi / 2, [1, 0, 0]))
    m.apply_translation([0, -m.bounds[0][1], 0])
    col = np.where(m.vertices[:, 1:2] > h / 2, [200, 50, 50, 255], [50, 50, 200, 255]).astype(np.uint8)
    m.visual.vertex_colors = col
    return ScanBody(mesh=m, components=[m], seed=seed)


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("ds")
    build_dataset(out, TINY_CFG, progress=False, source=[(f"cap{i}", capsule_person(i)) for i in range(3)])
    return out


def test_dataset_layout_and_items(tiny_dataset):
    man = json.loads((tiny_dataset / "manifest.json").read_text())
    assert man["schema"] == "dhstudio.body-dataset/1" and len(man["subjects"]) == 3
    for sid in man["subjects"]:
        d = tiny_dataset / "subjects" / sid
        assert {p.name for p in d.iterdir()} == {"subject.json", "samples.npz", "mesh.ply",
                                                 "view_0.png", "view_1.png", "view_2.png"}
    ds = BodyDataset(tiny_dataset, "train")
    assert len(ds) == 3
    it = ds.item(0, np.random.default_rng(0), n_views=2, n_points=500, n_colour=100)
    assert it["image"].shape == (2, 64, 64, 3) and it["uv"].shape == (2, 500, 2) and it["z"].shape == (2, 500, 1)
    assert abs(it["labels"].mean() - 0.5) < 0.15  # 1/8 are empty-space points
    # inside points project onto the body in every view (the camera convention is consistent)
    for v in range(2):
        _, mask, _ = ds.view(it["id"], it["views"][v])
        uv = it["uv"][v][it["labels"] > 0.5]
        px = np.clip(((uv + 1) / 2 * 64).astype(int), 0, 63)
        assert mask[px[:, 1], px[:, 0]].mean() > 0.97


def test_items_teach_the_empty_part_of_the_box(tiny_dataset):
    """1/8 of the occupancy points lie in the reconstruction box of the item's first view but
    outside the body: labelled empty, and truly outside the mesh; they reach depths that the
    stored (body-box) samples never reach."""
    import trimesh

    from reconstruct.body.data import EMPTY_FRACTION
    from reconstruct.body.infer import camera_box

    ds = BodyDataset(tiny_dataset, "train")
    it = ds.item(1, np.random.default_rng(5), n_views=1, n_points=800, n_colour=10)
    n_e = int(round(800 * EMPTY_FRACTION))
    assert np.all(it["labels"][-n_e:] == 0)
    z_e, z_s = it["z"][0, -n_e:, 0], it["z"][0, :-n_e, 0]
    assert np.abs(z_e).max() > 1.5 * np.abs(z_s).max()
    assert np.abs(it["uv"][0, -n_e:]).max() <= 1.0 + 1e-5  # inside what the view sees
    # the same draw in world coordinates: outside the mesh and inside the camera box
    from reconstruct.body.data import _empty_space

    sub = ds.subject(it["id"])
    _, _, cam = ds.view(it["id"], it["views"][0])
    pw = _empty_space(sub["samples"], cam, 300, np.random.default_rng(0))
    mesh = trimesh.load(sub["dir"] / "mesh.ply", force="mesh", process=False)
    assert not mesh.contains(pw).any()
    lo, hi = camera_box(cam)
    pc = pw.astype(np.float64) @ cam.R.T + cam.t
    assert np.all((pc >= lo - 1e-6) & (pc <= hi + 1e-6))
    # without them, the stored samples are balanced as PIFu's are
    it0 = ds.item(0, np.random.default_rng(1), n_views=1, n_points=2000, n_colour=10, empty_fraction=0.0)
    assert abs(it0["labels"].mean() - 0.5) < 0.1


def test_hull_carved_points_are_certainly_empty(tiny_dataset):
    """Points carved by the other views' silhouettes: on the first view's silhouette rays, inside
    the body's box, outside the mesh."""
    from reconstruct.body.data import _hull_carved

    ds = BodyDataset(tiny_dataset, "train")
    sid = ds.ids[0]
    sub = ds.subject(sid)
    _, mask, cam = ds.view(sid, 0)
    others = [mc for j, mc in enumerate(ds.masks(sid)) if j != 0]
    pw = _hull_carved(sub["samples"], cam, mask, others, 300, np.random.default_rng(0))
    assert len(pw) == 300
    mesh = trimesh.load(sub["dir"] / "mesh.ply", force="mesh", process=False)
    o3d = require("open3d")
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(np.asarray(mesh.vertices, np.float32)),
                        o3d.core.Tensor(np.asarray(mesh.faces, np.uint32)))
    assert mesh.is_watertight
    assert not (scene.compute_occupancy(o3d.core.Tensor(pw)).numpy() > 0.5).any()
    uv, _ = cam.project(pw)
    px = np.clip(np.floor(uv).astype(int), 0, 63)
    assert mask[px[:, 1], px[:, 0]].all()
    inside = sub["samples"]["occ_points"][sub["samples"]["occ_labels"] > 0]
    assert np.all(pw >= inside.min(0) - 0.031) and np.all(pw <= inside.max(0) + 0.031)
    assert _hull_carved(sub["samples"], cam, mask, [], 10, np.random.default_rng(0)).shape == (0, 3)


def test_cone_balanced_items(tiny_dataset):
    """With cone_balance, the points inside the first view's silhouette are half inside, half
    outside; hull_fraction appends that many carved (empty) points; sizes stay fixed."""
    ds = BodyDataset(tiny_dataset, "train")
    fracs = {}
    for cb in (False, True):
        rng = np.random.default_rng(3)
        vals = []
        for i in range(3):
            it = ds.item(i, rng, n_views=1, n_points=1000, n_colour=10, empty_fraction=0.0, cone_balance=cb)
            assert it["uv"].shape == (1, 1000, 2) and it["labels"].shape == (1000,)
            _, mask, _ = ds.view(it["id"], it["views"][0])
            px = np.clip(((it["uv"][0] + 1) / 2 * 64).astype(int), 0, 63)
            cone = mask[px[:, 1], px[:, 0]]
            vals.append(it["labels"][cone].mean())
        fracs[cb] = float(np.mean(vals))
    assert abs(fracs[True] - 0.5) < 0.06, fracs
    assert fracs[False] > fracs[True] + 0.05, fracs
    it = ds.item(0, np.random.default_rng(4), n_views=2, n_points=800, n_colour=10, cone_balance=True,
                 hull_fraction=0.125)
    assert it["uv"].shape == (2, 800, 2)
    from reconstruct.body.data import EMPTY_FRACTION

    n_e = int(round(800 * EMPTY_FRACTION)) + 100
    assert np.all(it["labels"][-n_e:] == 0)


def test_photo_augment(tiny_dataset):
    """Appearance augmentation changes only the person's pixels (background stays 0.5 grey),
    keeps [0, 1] float32, is deterministic by seed, paints a cap at the top of the silhouette;
    items drawn with it get the same views and a changed image."""
    from reconstruct.body.data import _photo_augment

    ds = BodyDataset(tiny_dataset, "train")
    img, mask, _ = ds.view(ds.ids[0], 0)
    outs = [_photo_augment(img, mask, np.random.default_rng(s)) for s in range(12)]
    for out in outs:
        assert out.shape == img.shape and out.dtype == np.float32
        assert np.all(out[~mask] == img[~mask]) and out.min() >= 0.0 and out.max() <= 1.0
        assert np.abs(out[mask] - img[mask]).max() > 0.01
    assert np.array_equal(outs[0], _photo_augment(img, mask, np.random.default_rng(0)))
    ys = np.nonzero(mask)[0]
    top = mask & (np.arange(mask.shape[0])[:, None] <= ys.min() + 0.03 * (ys.max() - ys.min()))
    # a cap (p = 0.6) recolours the top rows far more than the jitter does in the rest of the body
    d_top = [float(np.abs(o[top] - img[top]).mean()) for o in outs]
    assert max(d_top) > 0.15
    a = ds.item(0, np.random.default_rng(9), n_views=1, n_points=300, n_colour=10)
    b = ds.item(0, np.random.default_rng(9), n_views=1, n_points=300, n_colour=10, photo_aug=True)
    assert a["views"] == b["views"] and not np.array_equal(a["image"], b["image"])


def test_silhouette_rays_meet_the_body(tiny_dataset):
    """Every ray through the (eroded) silhouette has a point inside the capsule, the points
    project into the silhouette, and items carry them after the labelled points."""
    from reconstruct.body.data import _silhouette_rays

    ds = BodyDataset(tiny_dataset, "train")
    sid = ds.ids[0]
    sub = ds.subject(sid)
    img, mask, cam = ds.view(sid, 0)
    pts = _silhouette_rays(sub["samples"], cam, mask, 50, 24, np.random.default_rng(1))
    assert pts.shape == (50 * 24, 3) and pts.dtype == np.float32
    uv, _ = cam.project(pts)
    px = np.floor(uv).astype(int)
    assert mask[px[:, 1], px[:, 0]].all()
    h = capsule_person(int(sid[3:])).mesh.bounds[1][1]
    y = np.clip(pts[:, 1], 0.2, h - 0.2)
    inside = np.sqrt(pts[:, 0] ** 2 + (pts[:, 1] - y) ** 2 + pts[:, 2] ** 2) <= 0.2
    assert inside.reshape(50, 24).any(axis=1).mean() >= 0.96
    assert 0.05 < inside.mean() < 0.7  # the rays run through empty space in front and behind too
    it = ds.item(0, np.random.default_rng(2), n_views=2, n_points=300, n_colour=10, n_rays=8, n_depth=24)
    assert it["rays"] == (8, 24) and it["labels"].shape == (300,) and it["uv"].shape == (2, 300 + 8 * 24, 2)


def test_dataset_resume_and_config_guard(tiny_dataset):
    before = (tiny_dataset / "subjects" / "cap0" / "samples.npz").stat().st_mtime_ns
    build_dataset(tiny_dataset, TINY_CFG, progress=False, source=[(f"cap{i}", capsule_person(i)) for i in range(3)])
    assert (tiny_dataset / "subjects" / "cap0" / "samples.npz").stat().st_mtime_ns == before  # not rebuilt
    with pytest.raises(ValueError, match="another configuration"):
        build_dataset(tiny_dataset, DatasetConfig(n_subjects=5), progress=False, source=[])
    assert not [p for p in (tiny_dataset / "subjects").iterdir() if p.name.startswith(".")]


def test_train_resume_and_weights(tiny_dataset, tmp_path):
    cfg = TrainConfig(model="small", steps=3, batch=2, n_points=256, n_colour=64, image_size=64,
                      ckpt_every=2, log_every=1, val_every=100, threads=1)
    s = train(tiny_dataset, tmp_path / "run", cfg, progress=False)
    assert s["steps"] == 3
    cfg5 = TrainConfig(**{**cfg.__dict__, "steps": 5})
    with pytest.raises(ValueError, match="another configuration"):
        train(tiny_dataset, tmp_path / "run", cfg5, progress=False)
    m = load_model(tmp_path / "run" / "model.safetensors")
    assert m.cfg.image_size == 64 and m.training_info["steps"] == 3
    logs = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logs] == [1, 2, 3]
    # same data, same seed -> same weights (deterministic training)
    train(tiny_dataset, tmp_path / "run2", cfg, progress=False)
    m2 = load_model(tmp_path / "run2" / "model.safetensors")
    for (k, a), (_, b) in zip(m.state_dict().items(), m2.state_dict().items()):
        assert torch.equal(a, b), k


def test_train_view_mix_resumes(tiny_dataset, tmp_path):
    """A run with its own view mix resumes (the mix survives the JSON state) and records it."""
    cfg = TrainConfig(model="small", steps=2, batch=2, n_points=64, n_colour=16, image_size=64, log_every=1,
                      val_every=100, threads=1, view_mix=(2, 3), ckpt_every=1)
    train(tiny_dataset, tmp_path / "run", cfg, progress=False)
    s = train(tiny_dataset, tmp_path / "run", TrainConfig(**{**cfg.__dict__}), progress=False)
    assert s["steps"] == 2
    logs = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert {r["views"] for r in logs} <= {2, 3}


def test_train_with_ray_loss_and_options(tiny_dataset, tmp_path):
    """The sampling options, the photo augmentation and the ray-coverage loss train together,
    the ray loss is logged and the run records its configuration."""
    cfg = TrainConfig(model="small", steps=2, batch=2, n_points=128, n_colour=32, image_size=64, log_every=1,
                      val_every=100, threads=1, cone_balance=True, hull_fraction=0.125, photo_aug=True,
                      ray_weight=1.0, n_rays=8)
    train(tiny_dataset, tmp_path / "run", cfg, progress=False)
    logs = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logs] == [1, 2] and all(0.0 <= r["ray_loss"] <= 1.0 for r in logs)
    m = load_model(tmp_path / "run" / "model.safetensors")
    assert m.training_info["train_config"]["ray_weight"] == 1.0


def test_depth_maps_of_the_capsule(tiny_dataset):
    """Ray-cast front/back depth: hits exactly where the silhouette is (at the feature maps'
    resolution), and front/back are the capsule's near/far surface: 0.4 m apart through its
    axis, symmetric about the centre, in the network's normalised z."""
    ds = BodyDataset(tiny_dataset, "train")
    sid = ds.ids[0]
    d = ds.depths(sid, 16)
    assert d.shape == (3, 3, 16, 16) and d.dtype == np.float32
    _, mask, cam = ds.view(sid, 0)
    small = mask.reshape(16, 4, 16, 4).mean((1, 3))
    hit = d[0, 2] > 0.5
    assert hit[small > 0.99].all() and not hit[small < 0.01].any()
    assert (d[0, 1][hit] >= d[0, 0][hit]).all() and (d[0, :2][:, ~hit] == 0).all()
    thick = (d[0, 1] - d[0, 0]) * cam.half_height  # metres
    assert 0.36 < thick[hit].max() <= 0.401  # a chord near the axis: about the diameter
    mid = 0.5 * (d[0, 0] + d[0, 1]) * cam.half_height
    rows = hit[7:9]  # the image's middle rows: the capsule's centre (the view's pitch tilts the rest)
    assert rows.any() and np.abs(mid[7:9][rows]).max() < 0.02
    it = ds.item(0, np.random.default_rng(0), n_views=2, n_points=64, n_colour=8, depth_size=16)
    assert it["depth"].shape == (2, 3, 16, 16)
    assert np.array_equal(it["depth"], ds.depths(ds.ids[0], 16)[it["views"]])


def test_depth_head_grows_from_plain_weights_and_trains(tiny_dataset, tmp_path):
    """--depth-head with --init weights of a plain PIFu starts from the same occupancy (the
    MLP's new inputs are zero-initialised), trains, logs its depth loss, and refuses the
    reverse (depth-head weights into a plain model)."""
    from reconstruct.body.model import PIFu, PIFuConfig

    base = TrainConfig(model="small", steps=1, batch=2, n_points=64, n_colour=16, image_size=64,
                       log_every=1, val_every=100, threads=1)
    train(tiny_dataset, tmp_path / "plain", base, progress=False)
    plain = load_model(tmp_path / "plain" / "model.safetensors")
    from reconstruct.body.train import grow_from

    cfg = PIFuConfig.small()
    cfg.image_size, cfg.depth_head = 64, True
    grown = PIFu(cfg)
    grow_from(grown, plain)
    grown.eval()
    g = torch.Generator().manual_seed(0)
    img = torch.rand(1, 2, 3, 64, 64, generator=g) * 2 - 1
    uv, z = torch.rand(1, 2, 50, 2, generator=g) * 2 - 1, torch.rand(1, 2, 50, 1, generator=g) - 0.5
    with torch.no_grad():
        assert torch.allclose(grown(img, uv, z)[-1], plain(img, uv, z)[-1], atol=1e-6)
        assert [tuple(d.shape) for d in grown.depth_maps(grown.encode(img))] == [(2, 2, 16, 16)] * 2
    # inference keeps only the last stack's features: it must use that stack's depth head
    from reconstruct.body.infer import PIFuField

    with torch.no_grad():
        torch.nn.init.normal_(grown.depth_heads[0].weight, std=0.5)  # make the two heads differ
        torch.nn.init.normal_(grown.occ_mlp.layers[0].weight[:, -2:], std=0.5)  # and matter
        pts = np.random.default_rng(0).uniform(-0.5, 0.5, (40, 3)).astype(np.float32)
        cam = canonical_camera(64, 1.7)
        field = PIFuField(grown, img[0, :1].permute(0, 2, 3, 1).numpy() * 0.5 + 0.5, [cam.projector()])
        uv1, z1 = (torch.from_numpy(a)[None, None] for a in cam.projector()(pts))
        assert np.allclose(field.occupancy(pts), grown(img[:, :1], uv1, z1)[-1][0].numpy(), atol=1e-5)
    dcfg = TrainConfig(**{**base.__dict__, "steps": 2, "depth_head": True,
                          "init": str(tmp_path / "plain" / "model.safetensors")})
    train(tiny_dataset, tmp_path / "depth", dcfg, progress=False)
    logs = [json.loads(x) for x in (tmp_path / "depth" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logs] == [1, 2] and all(0.0 < r["depth_l1"] < 1.0 for r in logs)
    m = load_model(tmp_path / "depth" / "model.safetensors")
    assert m.cfg.depth_head and m.training_info["train_config"]["depth_head"]
    from reconstruct.body.evaluate import evaluate

    res = evaluate(m, tiny_dataset, split="train", views=(1,), resolution=32, coarse=16, baseline=False,
                   progress=False)
    dh = res["summary"]["1_views"]["depth_head"]
    assert set(dh) == {"depth_l1_cm", "thickness_l1_cm", "middle_l1_cm"}
    assert all(0.0 < v < 100.0 for v in dh.values())
    assert all("depth_head" in r for r in res["rows"])
    back = TrainConfig(**{**base.__dict__, "init": str(tmp_path / "depth" / "model.safetensors")})
    with pytest.raises(ValueError, match="with a depth head"):
        train(tiny_dataset, tmp_path / "back", back, progress=False)


def test_load_model_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "none.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(ValueError, match="not a readable safetensors"):
        load_model(bad)
    from safetensors.torch import save_file

    other = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(3)}, str(other), metadata={"schema": "someone-else/1"})
    with pytest.raises(ValueError, match="not a dhstudio PIFu checkpoint"):
        load_model(other)
    from reconstruct.body.model import PIFu, PIFuConfig

    wrong = tmp_path / "wrong.safetensors"
    m = PIFu(PIFuConfig(name="small", hg_channels=16, stem_channels=8, mlp=(16,), tex_channels=8, tex_mlp=(8,)))
    save_weights(m, wrong)
    data = bytearray(wrong.read_bytes())
    wrong.write_bytes(bytes(data).replace(b'\\"hg_channels\\": 16', b'\\"hg_channels\\": 32'))
    with pytest.raises(ValueError, match="does not match"):
        load_model(wrong)


def test_frame_photo_fills_and_centres():
    rgb = np.zeros((300, 200, 3), np.uint8)
    mask = np.zeros((300, 200), bool)
    mask[50:250, 80:120] = True  # 200 px tall person
    img, m = frame_photo(rgb, mask, 128)
    ys, xs = np.nonzero(m)
    assert abs((ys.max() - ys.min() + 1) - 0.85 * 128) <= 2
    assert abs((ys.max() + ys.min()) / 2 - 63.5) <= 1.5 and abs((xs.max() + xs.min()) / 2 - 63.5) <= 1.5
    assert np.allclose(img[~m], 0.5)
    with pytest.raises(ValueError, match="mask is empty"):
        frame_photo(rgb, np.zeros_like(mask), 128)


def test_visual_hull_of_a_sphere_from_three_views():
    from reconstruct.body.render import look_at_body, render
    from reconstruct.metrics import surface_metrics

    s = trimesh.creation.icosphere(subdivisions=3, radius=0.4)
    s.apply_translation([0, 0.5, 0])
    cams = [look_at_body(s.bounds, yaw, 0, 96, orthographic=True) for yaw in (0, 60, 120)]
    masks = [render(s, c).mask for c in cams]
    vh = visual_hull(masks, cams, resolution=64, coarse=16)
    m = surface_metrics(vh.mesh, s)
    assert m["chamfer_cm"] < 3.0, m  # three silhouettes of a sphere carve close to the sphere


def test_reconstruct_views_box_and_world_frame(tiny_dataset):
    """An (untrained) network still gives a mesh inside the camera box, in world coordinates."""
    from reconstruct.body.model import PIFu, PIFuConfig

    torch.manual_seed(0)
    model = PIFu(PIFuConfig(name="small", hg_channels=16, stem_channels=8, mlp=(16,), tex_channels=8,
                            tex_mlp=(8,), image_size=64))
    ds = BodyDataset(tiny_dataset, "train")
    img, _, cam = ds.view("cap0", 0)
    lo, hi = camera_box(cam)
    assert np.all(hi > lo)
    # bias the output so there is a surface: the occupancy head sees a constant offset
    with torch.no_grad():
        model.occ_mlp.layers[-1].bias.fill_(0.0)
    try:
        rec = reconstruct_views(model, img[None], [cam], resolution=32, coarse=8)
    except ValueError as e:
        assert "no surface" in str(e)
        return
    world_box = (np.array(cam.position) - 5, np.array(cam.position) + 5)
    assert np.all(rec.mesh.vertices > world_box[0]) and np.all(rec.mesh.vertices < world_box[1])


def test_canonical_camera_scale():
    cam = canonical_camera(256, 1.7)
    uv, _ = cam.project(np.array([[0, -0.85, 0], [0, 0.85, 0]]))
    assert abs(abs(uv[1, 1] - uv[0, 1]) - 0.85 * 256) < 1e-6
