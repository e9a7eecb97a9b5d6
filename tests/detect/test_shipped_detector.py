"""The shipped default detector (assets/detector_default.safetensors): it loads, its header
matches the model card, and on held-out real faces against their Self-Blended fakes it still
scores what it scored when shipped (a regression floor, not the accuracy claim: that is
benchmarks/detect_eval.py on the whole test split)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch", reason="the [body] extra (torch) is not installed")

from detect import metrics  # noqa: E402
from detect.registry import read_detector_header  # noqa: E402
from detect.score import DEFAULT_WEIGHTS, load_default_detector  # noqa: E402

# AUC measured on these 60 faces when the weights were shipped (2026-12-07, run 3): 0.897. The floor is
# 0.75: room for float differences across platforms and for SBI's randomness on 60 faces, not for
# a model that lost what it learned.
FLOOR_AUC = 0.75


def test_default_weights_load_and_describe_themselves():
    hdr = read_detector_header(DEFAULT_WEIGHTS)
    assert hdr["name"] == "xray" and hdr["config"]["input_size"] == 128
    det, info = load_default_detector()
    assert det.name == "xray" and len(info["weights_sha256"]) == 64
    assert 0 < det.n_params < 1_000_000


def test_heldout_sbi_floor(shared_data):
    pytest.importorskip("mediapipe", reason="the faces extra is not installed (make install adds it)")
    from detect.data import build_manifest, select
    from detect.sbi import crop_face, self_blend
    from detect.score import load_rgb
    from detect.train import CACHE_SIZE, CROP_MARGIN
    from reconstruct.faces import detect_faces

    items = select(build_manifest(shared_data, packs=("faces_real_color",)), split="test")[:60]
    rng = np.random.default_rng(7)
    reals, fakes = [], []
    for it in items:
        rgb = load_rgb(shared_data / it["path"])
        faces = detect_faces(rgb, mode="short", max_faces=1)
        if not faces:
            continue
        wide, pts = crop_face(rgb, faces[0].landmarks68, CACHE_SIZE, 0.5, pad="edge")
        real, rp = crop_face(wide, pts, CACHE_SIZE, CROP_MARGIN, pad="edge")
        reals.append(real)
        fakes.append(self_blend(real, rp, rng)[0])
    assert len(reals) >= 50
    det, _ = load_default_detector()
    s = det.predict_proba(np.stack(reals + fakes))
    auc = metrics.roc_auc(np.r_[np.zeros(len(reals)), np.ones(len(fakes))], s)
    print(f"held-out SBI AUC on {len(reals)} faces: {auc:.3f}")
    assert auc >= FLOOR_AUC, auc
