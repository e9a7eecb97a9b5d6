"""The shipped PIFu weights (assets/pifu_small.safetensors) on data they never saw.

- the model card states the file's sha256 and the schema the loader checks;
- held-out MakeHuman bodies (a dataset seed the training set did not use), rendered by our renderer
  from one view: the reconstruction must be close to the true surface and beat the visual hull of
  the same silhouette (the issue's baseline);
- the real photo in ../shared/data/body_photos: one human-shaped mesh whose silhouette overlaps the
  mask.

Needs the [body] extra (torch, open3d, trimesh); the accuracy test needs ../shared/data/makehuman,
the photo test ../shared/data/body_photos. Each skips with the reason when its part is absent.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the [body] extra (torch) is not installed")
pytest.importorskip("trimesh", reason="the [body] extra (trimesh) is not installed")

ROOT = Path(__file__).resolve().parents[3]
WEIGHTS = ROOT / "assets" / "pifu_small.safetensors"
CARD = ROOT / "assets" / "README.md"
SHARED = ROOT.parent / "shared" / "data"

# regression bounds, not the targets (1.5 cm, missed: see assets/README.md): the shipped
# model measures Chamfer 5.8 cm and P2S 8.4 cm on these two bodies at 128^3 (visual hull 9.7 / 15.4;
# the previous weights: 6.1 / 9.5)
THRESH_CHAMFER_CM = 7.0
THRESH_P2S_CM = 10.0

# seed of the held-out bodies: the shipped model was trained on dataset seed 1 (see the card)
HELD_OUT_SEED = 7


def test_weights_are_shipped_with_a_card():
    assert WEIGHTS.is_file(), "assets/pifu_small.safetensors is missing"
    card = CARD.read_text()
    digest = hashlib.sha256(WEIGHTS.read_bytes()).hexdigest()
    assert digest in card, "the model card does not state the shipped file's sha256"
    m = re.search(r"dataset seed (\d+)", card)
    assert m and int(m.group(1)) != HELD_OUT_SEED
    from reconstruct.body.train import load_model

    model = load_model(WEIGHTS)
    assert model.cfg.name == "small"
    assert getattr(model, "with_colour", False)


@pytest.fixture(scope="module")
def model():
    from reconstruct.body.train import load_model

    return load_model(WEIGHTS)


@pytest.mark.skipif(not (SHARED / "makehuman").is_dir(), reason="../shared/data/makehuman is absent")
def test_held_out_bodies_single_view(model, tmp_path_factory):
    from reconstruct.body.data import DatasetConfig, build_dataset
    from reconstruct.body.evaluate import evaluate

    data = tmp_path_factory.mktemp("heldout")
    build_dataset(data, DatasetConfig(n_subjects=2, views=2, n_occ=2000, n_col=1000, test_fraction=1.0,
                                      val_fraction=0.0, seed=HELD_OUT_SEED, supersample=1), progress=False)
    res = evaluate(model, data, split="test", views=(1,), resolution=128, coarse=32, progress=False)
    s = res["summary"]["1_views"]
    assert s["pifu"]["failed"] == 0
    # a regression in the model, the loader, the framing or the extraction fails here
    assert s["pifu"]["chamfer_cm"] < THRESH_CHAMFER_CM
    assert s["pifu"]["p2s_cm"] < THRESH_P2S_CM
    assert s["pifu"]["chamfer_cm"] < 0.85 * s["visual_hull"]["chamfer_cm"]


@pytest.mark.skipif(not (SHARED / "body_photos" / "ryota.png").is_file(),
                    reason="../shared/data/body_photos/ryota.png is absent")
def test_real_photo(model):
    from reconstruct.body.infer import reconstruct_photo
    from studio.pipelines.body import load_photo, silhouette_iou

    photo = SHARED / "body_photos" / "ryota.png"
    rgb, mask, _ = load_photo(photo, SHARED / "body_photos" / "ryota_mask.png")
    rec = reconstruct_photo(model, rgb, mask, resolution=128, coarse=32)
    mesh = rec.mesh
    assert len(mesh.split(only_watertight=False)) == 1
    ext = mesh.bounds[1] - mesh.bounds[0]
    assert 1.5 < ext[1] < 1.9  # standing, at the assumed 1.7 m
    assert ext[0] < ext[1] and ext[2] < 0.7 * ext[1]
    assert silhouette_iou(mesh, rec) > 0.8  # 0.900 measured at 128^3 (0.920 at 256^3)


# -- the PIFu with the body prior (issue 16): the default of `body reconstruct` with the pose model

PRIOR_WEIGHTS = ROOT / "assets" / "pifu_prior.safetensors"


def _pose_ok() -> bool:
    from reconstruct.body.prior import pose_available

    return pose_available()


def test_prior_weights_are_shipped_with_a_card():
    assert PRIOR_WEIGHTS.is_file(), "assets/pifu_prior.safetensors is missing"
    digest = hashlib.sha256(PRIOR_WEIGHTS.read_bytes()).hexdigest()
    assert digest in CARD.read_text(), "the model card does not state pifu_prior's sha256"
    from reconstruct.body.train import load_model

    m = load_model(PRIOR_WEIGHTS)
    assert m.cfg.prior_size == 128 and m.with_colour


@pytest.mark.skipif(not (SHARED / "makehuman").is_dir(), reason="../shared/data/makehuman is absent")
def test_prior_model_on_held_out_bodies(tmp_path_factory):
    """The prior from the true joints, and (with the pose model) fitted to the render: both beat
    the plain shipped model's regression bounds on bodies of an unseen dataset seed."""
    from reconstruct.body.data import DatasetConfig, build_dataset
    from reconstruct.body.evaluate import evaluate
    from reconstruct.body.train import load_model

    if not _pose_ok():
        pytest.skip("mediapipe (faces extra) is not installed: no fitted prior")
    data = tmp_path_factory.mktemp("heldout_prior")
    build_dataset(data, DatasetConfig(n_subjects=2, views=2, n_occ=2000, n_col=1000, test_fraction=1.0,
                                      val_fraction=0.0, seed=HELD_OUT_SEED, supersample=1), progress=False)
    res = evaluate(load_model(PRIOR_WEIGHTS), data, split="test", views=(1,), resolution=128, coarse=32,
                   progress=False)
    s = res["summary"]["1_views"]
    assert s["pifu"]["failed"] == 0 and s["pifu_oracle_prior"]["failed"] == 0
    assert s["pifu_oracle_prior"]["p2s_cm"] < 5.0  # measured 3.17 at 128^3 (fitted prior: 5.58 / 4.45)
    assert s["pifu"]["p2s_cm"] < THRESH_P2S_CM and s["pifu"]["chamfer_cm"] < THRESH_CHAMFER_CM


@pytest.mark.skipif(not (SHARED / "body_photos" / "ryota.png").is_file(),
                    reason="../shared/data/body_photos/ryota.png is absent")
def test_prior_model_on_the_photo_without_its_mask():
    """Segmented by the pose model, the prior fitted: a body from the side, not a slab."""
    from PIL import Image

    from reconstruct.body import prior
    from reconstruct.body.infer import reconstruct_photo
    from reconstruct.body.train import load_model
    from studio.pipelines.body import silhouette_iou

    if not _pose_ok():
        pytest.skip("mediapipe (faces extra) is not installed")
    with Image.open(SHARED / "body_photos" / "ryota.png") as im:
        rgb = np.asarray(im.convert("RGB"))
    est = prior.estimate_person(rgb)
    rec = reconstruct_photo(load_model(PRIOR_WEIGHTS), rgb, est.mask, resolution=128, coarse=32,
                            fit=prior.fit_body(est))
    mesh = rec.mesh
    ext = mesh.bounds[1] - mesh.bounds[0]
    assert 1.5 < ext[1] < 1.9
    assert ext[2] < 0.5 * ext[1]  # depth: measured 0.69 m of 1.71 at 128^3 (the plain model: about 1 m)
    assert silhouette_iou(mesh, rec) > 0.8
