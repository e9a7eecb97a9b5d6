"""Front/back depth U-Net (reconstruct.body.depthnet, depth_train), PIFu with a depth net, and the
depth hull (reconstruct.body.infer.depth_hull)."""

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

from reconstruct.body.data import BodyDataset  # noqa: E402
from reconstruct.body.depth_train import (  # noqa: E402
    DepthTrainConfig,
    depth_errors_cm,
    load_depthnet,
    load_views,
    predict,
    save_depthnet,
    train_depthnet,
)
from reconstruct.body.depthnet import DepthNet, DepthNetConfig, depth_l1, shift_invariant_l1  # noqa: E402
from reconstruct.body.train import TrainConfig, load_model, train  # noqa: E402

from .test_data_train import tiny_dataset  # noqa: E402,F401  (the module-scoped capsule dataset)

SMALL = DepthNetConfig(image_size=32, channels=(8, 16, 16))


def test_depthnet_shapes_order_and_mask():
    net = DepthNet(SMALL)
    img = torch.rand(2, 3, 32, 32) * 2 - 1
    img[:, :, :8] = 0  # background rows
    with torch.no_grad():
        torch.nn.init.normal_(net.head.weight, std=1.0)  # not the constant initial slab
        out = net(img)
    assert out.shape == (2, 2, 32, 32)
    assert (out[:, 1] >= out[:, 0]).all(), "back must never be in front of front"
    m = DepthNet.mask_of(img)
    assert m.shape == (2, 1, 32, 32) and m[:, :, :8].sum() == 0 and m[:, :, 8:].all()
    with pytest.raises(ValueError, match="need img"):
        net(torch.zeros(1, 4, 32, 32))
    with pytest.raises(ValueError, match="divisible"):
        DepthNet(DepthNetConfig(image_size=34, channels=(8, 16, 16)))
    gt = torch.zeros(1, 3, 4, 4)
    gt[0, 0, :2], gt[0, 1, :2], gt[0, 2, :2] = -0.1, 0.1, 1.0
    pred = torch.zeros(1, 2, 4, 4)  # 0.1 off on both maps where the ray hits; ignored elsewhere
    assert torch.isclose(depth_l1(pred, gt), torch.tensor(0.1))
    shifted = gt[:, :2] + 0.3  # the right shape, 0.3 too far: only the shift-invariant loss forgives it
    assert torch.isclose(depth_l1(shifted, gt), torch.tensor(0.3))
    assert shift_invariant_l1(shifted, gt) < 1e-6
    assert torch.isclose(shift_invariant_l1(pred, gt), torch.tensor(0.1))  # a flat map: 0.1 off anyway


def test_depth_errors_cm():
    gt = np.zeros((1, 3, 2, 2), np.float32)
    gt[0, :, 0, 0] = (-0.1, 0.1, 1.0)
    pred = np.zeros((1, 2, 2, 2), np.float32)
    pred[0, :, 0, 0] = (0.0, 0.3)  # front 0.1 late, back 0.2 late: thickness +0.1, middle +0.15
    e = depth_errors_cm(pred, gt, np.array([1.0]))
    assert e == pytest.approx({"depth_l1_cm": 15.0, "thickness_l1_cm": 10.0, "middle_l1_cm": 15.0}, abs=1e-4)


def test_save_load_roundtrip_and_errors(tmp_path):
    net = DepthNet(SMALL)
    p = tmp_path / "d.safetensors"
    save_depthnet(net, p, {"steps": 3})
    back = load_depthnet(p)
    assert back.cfg == SMALL and back.training_info == {"steps": 3}
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(back(x), net.eval()(x))
    with pytest.raises(FileNotFoundError):
        load_depthnet(tmp_path / "none.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x01" * 64)
    with pytest.raises(ValueError, match="not a readable safetensors"):
        load_depthnet(bad)
    from reconstruct.body.model import PIFu, PIFuConfig
    from reconstruct.body.train import save_weights

    pifu = tmp_path / "pifu.safetensors"
    save_weights(PIFu(PIFuConfig(hg_channels=16, stem_channels=8, mlp=(16,), tex_channels=8, tex_mlp=(8,))), pifu)
    with pytest.raises(ValueError, match="not a dhstudio depth-net checkpoint"):
        load_depthnet(pifu)
    wrong = tmp_path / "wrong.safetensors"
    wrong.write_bytes(p.read_bytes().replace(b"[8, 16, 16]", b"[8, 16, 32]"))
    with pytest.raises(ValueError, match="does not match"):
        load_depthnet(wrong)


def test_train_depthnet_learns_and_resumes(tiny_dataset, tmp_path):
    """A few dozen steps on the capsules cut the depth error well below the initial slab's; a
    second call with more steps resumes from the checkpoint; another config is refused."""
    ds = BodyDataset(tiny_dataset, "train", image_size=32)
    imgs, _, depth, hh, ids = load_views(ds, 32)
    assert imgs.shape == (9, 32, 32, 3) and depth.shape == (9, 3, 32, 32) and len(ids) == 9
    before = depth_errors_cm(predict(DepthNet(SMALL).eval(), imgs), depth, hh)["depth_l1_cm"]
    cfg = DepthTrainConfig(steps=60, batch=6, lr=5e-3, image_size=32, channels=(8, 16, 16), threads=1,
                           ckpt_every=20, log_every=20, val_every=1000)
    s = train_depthnet(tiny_dataset, tmp_path / "run", cfg, progress=False)
    assert s["steps"] == 60 and s["train_views"] == 9
    net = load_depthnet(tmp_path / "run" / "depthnet.safetensors")
    after = depth_errors_cm(predict(net, imgs), depth, hh)["depth_l1_cm"]
    assert after < 0.5 * before, (before, after)
    logs = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logs] == [20, 40, 60]
    more = DepthTrainConfig(**{**cfg.__dict__, "steps": 80})
    with pytest.raises(ValueError, match="another configuration"):
        train_depthnet(tiny_dataset, tmp_path / "run", more, progress=False)
    s2 = train_depthnet(tiny_dataset, tmp_path / "run", cfg, progress=False)  # already done: no step
    assert s2["steps"] == 60


def test_pifu_with_depth_net_grows_from_plain_weights(tiny_dataset, tmp_path):
    """--depthnet with --init weights of a plain PIFu: the same occupancy at the start (the MLP's
    two new inputs are zero-initialised), the net's maps reach the MLP, inference (which keeps
    only the last stack) agrees with the forward pass, training leaves the depth net as it was,
    and the checkpoint round-trips through load_model."""
    from reconstruct.body.data import canonical_camera
    from reconstruct.body.infer import PIFuField
    from reconstruct.body.model import PIFu, PIFuConfig
    from reconstruct.body.train import grow_from

    dnet_path = tmp_path / "dnet.safetensors"
    dnet = DepthNet(SMALL)
    with torch.no_grad():
        torch.nn.init.normal_(dnet.head.weight, std=0.3)
    save_depthnet(dnet, dnet_path)
    base = TrainConfig(model="small", steps=1, batch=2, n_points=64, n_colour=16, image_size=64,
                       log_every=1, val_every=100, threads=1)
    train(tiny_dataset, tmp_path / "plain", base, progress=False)
    plain = load_model(tmp_path / "plain" / "model.safetensors")
    cfg = PIFuConfig.small()
    cfg.image_size, cfg.depth_net = 64, SMALL.to_dict()
    grown = PIFu(cfg)
    grow_from(grown, plain)
    grown.depth_net.load_state_dict(dnet.state_dict())
    grown.eval()
    g = torch.Generator().manual_seed(0)
    img = torch.rand(1, 2, 3, 64, 64, generator=g) * 2 - 1
    img[..., :10, :] = 0
    uv, z = torch.rand(1, 2, 50, 2, generator=g) * 2 - 1, torch.rand(1, 2, 50, 1, generator=g) - 0.5
    with torch.no_grad():
        assert torch.allclose(grown(img, uv, z)[-1], plain(img, uv, z)[-1], atol=1e-6)
        assert all(f.shape == (2, cfg.hg_channels + 2, 16, 16) for f in grown.encode(img))
        torch.nn.init.normal_(grown.occ_mlp.layers[0].weight[:, -2:], std=0.5)
        changed = grown(img, uv, z)[-1]
        assert not torch.allclose(changed, plain(img, uv, z)[-1], atol=1e-3)
        pts = np.random.default_rng(0).uniform(-0.5, 0.5, (40, 3)).astype(np.float32)
        cam = canonical_camera(64, 1.7)
        field = PIFuField(grown, img[0, :1].permute(0, 2, 3, 1).numpy() * 0.5 + 0.5, [cam.projector()])
        uv1, z1 = (torch.from_numpy(a)[None, None] for a in cam.projector()(pts))
        assert np.allclose(field.occupancy(pts), grown(img[:, :1], uv1, z1)[-1][0].numpy(), atol=1e-5)
    run = TrainConfig(**{**base.__dict__, "steps": 2, "depthnet": str(dnet_path),
                         "init": str(tmp_path / "plain" / "model.safetensors")})
    train(tiny_dataset, tmp_path / "withnet", run, progress=False)
    m = load_model(tmp_path / "withnet" / "model.safetensors")
    assert m.cfg.depth_net == SMALL.to_dict() and m.training_info["train_config"]["depthnet"] == str(dnet_path)
    for k, v in dnet.state_dict().items():
        assert torch.equal(m.depth_net.state_dict()[k], v), f"training changed the frozen depth net ({k})"
    back = TrainConfig(**{**base.__dict__, "init": str(tmp_path / "withnet" / "model.safetensors")})
    with pytest.raises(ValueError, match="this run trains"):
        train(tiny_dataset, tmp_path / "back", back, progress=False)
    with pytest.raises(ValueError, match="not both"):
        PIFu(PIFuConfig(depth_head=True, depth_net=SMALL.to_dict()))


def test_depth_hull_of_ray_cast_maps_is_the_body(tiny_dataset):
    """The solid between the ray-cast front/back maps of one view is the capsule (within a few
    voxels); a constant slab in the same silhouette is clearly worse."""
    from reconstruct.body.infer import depth_hull
    from reconstruct.metrics import surface_metrics

    ds = BodyDataset(tiny_dataset, "train")
    sid = ds.ids[0]
    gt = trimesh.load(ds.subject(sid)["dir"] / "mesh.ply", force="mesh", process=False)
    _, mask, cam = ds.view(sid, 0)
    d = ds.depths(sid, 64)[0]
    exact = surface_metrics(depth_hull(d[0], d[1], mask, cam, resolution=64, coarse=16).mesh, gt, n_points=4000)
    slab = np.full_like(d[0], 0.05 / cam.half_height)
    flat = surface_metrics(depth_hull(-slab, slab, mask, cam, resolution=64, coarse=16).mesh, gt, n_points=4000)
    assert exact["chamfer_cm"] < 2.5 and exact["p2s_cm"] < 2.5, exact
    assert flat["chamfer_cm"] > 2 * exact["chamfer_cm"], (exact, flat)
