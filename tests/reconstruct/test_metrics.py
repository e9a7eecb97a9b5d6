"""Reconstruction metrics on meshes with known answers."""

from __future__ import annotations

import numpy as np
import pytest

trimesh = pytest.importorskip("trimesh", reason="the [body] extra (trimesh) is not installed")
from reconstruct._deps import MissingExtra, require  # noqa: E402

try:
    require("open3d")
except MissingExtra as e:
    pytest.skip(f"the [body] extra (open3d) is not usable: {e}", allow_module_level=True)

from reconstruct.metrics import mask_iou, surface_metrics  # noqa: E402


def test_identical_meshes_score_zero():
    s = trimesh.creation.icosphere(subdivisions=4, radius=0.3)
    m = surface_metrics(s, s)
    assert m["p2s_cm"] < 0.01 and m["chamfer_cm"] < 0.01
    assert m["normal_consistency"] > 0.999


def test_concentric_spheres_distance_is_the_radius_gap():
    a = trimesh.creation.icosphere(subdivisions=5, radius=0.30)
    b = trimesh.creation.icosphere(subdivisions=5, radius=0.32)
    m = surface_metrics(a, b)
    assert abs(m["p2s_cm"] - 2.0) < 0.05
    assert abs(m["chamfer_cm"] - 2.0) < 0.05
    assert m["normal_consistency"] > 0.99


def test_directed_p2s_differs_from_chamfer_when_a_part_is_missing():
    body = trimesh.creation.box(extents=(0.4, 1.0, 0.2))
    arm = trimesh.creation.box(extents=(0.6, 0.1, 0.1))
    arm.apply_translation((0.6, 0.3, 0))
    gt = trimesh.util.concatenate([body, arm])
    m = surface_metrics(body, gt)
    assert m["p2s_cm"] < 0.5  # everything reconstructed lies on the GT
    assert m["chamfer_cm"] > 2.0  # but the arm is missing


def test_mask_iou():
    a = np.zeros((10, 10), bool)
    a[:5] = True
    b = np.zeros((10, 10), bool)
    b[:, :5] = True
    assert mask_iou(a, a) == 1.0
    assert abs(mask_iou(a, b) - 25 / 75) < 1e-9
    with pytest.raises(ValueError, match="shapes differ"):
        mask_iou(a, b[:5])
