"""Face-forgery detectors: tests generated from the registry (every registered detector gets
them all), plus the registry's own errors and the saved-file checks.

Tiny configurations (``Detector.tiny_config``: 64 x 64 inputs, narrow layers) and one torch
thread keep the file to seconds on 2 CPU cores; one test runs each model at its default size
(shapes only).
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")

from detect.registry import (  # noqa: E402
    SCHEMA,
    MissingDependency,
    create_detector,
    get_detector_class,
    list_detectors,
    load_detector,
    read_detector_header,
    register_detector,
)

NAMES = list_detectors()
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # tiny models: a second thread buys nothing, and on a shared machine OpenMP threads spinning
    # on a busy core made this file ~8x slower (48 s instead of 6 s at load 4 on 2 cores)
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def tiny(name: str, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    return create_detector(name, **{**get_detector_class(name).tiny_config, **overrides})


def batch(det, b: int = 4, seed: int = 0):
    """A fixed batch: preprocessed images, labels (half real, half fake), soft blend masks
    (zero for the real faces, a blurred square for the fakes)."""
    g = torch.Generator().manual_seed(seed)
    s, c = det.config.input_size, det.config.in_channels
    x = torch.randn(b, c, s, s, generator=g)
    y = torch.tensor([0.0, 1.0] * (b // 2))
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, s), torch.linspace(-1, 1, s), indexing="ij")
    square = torch.sigmoid((0.5 - torch.maximum(yy.abs(), xx.abs())) * 12)  # soft edge
    m = y.view(b, 1, 1, 1) * square.expand(b, 1, s, s)
    return x, y, m


def outputs_equal(a, b) -> bool:
    same = torch.equal(a.logits, b.logits)
    if a.mask_logits is not None or b.mask_logits is not None:
        same = same and torch.equal(a.mask_logits, b.mask_logits)
    return same


def check_output(det, out, b: int) -> None:
    s = det.config.input_size
    assert out.logits.shape == (b,) and out.logits.dtype == torch.float32
    assert torch.isfinite(out.logits).all()
    if det.mask_kind is None:
        assert out.mask_logits is None
    else:
        assert out.mask_logits.dim() == 4 and out.mask_logits.shape[:2] == (b, 1)
        h, w = out.mask_logits.shape[-2:]
        assert h == w and s % h == 0, (h, w, s)
        assert torch.isfinite(out.mask_logits).all()


# ----------------------------------------------------------------------------- generated


def test_registry_lists_the_paper_models():
    assert {"meso4", "mesoinception4", "capsule", "efficientnet_lite", "multitask", "xray"} <= set(NAMES)
    assert NAMES == sorted(NAMES)
    assert list_detectors("meso*") == ["meso4", "mesoinception4"]


@pytest.mark.parametrize("name", NAMES)
def test_shapes_tiny(name):
    det = tiny(name).eval()
    x, _, _ = batch(det, 2)
    with torch.no_grad():
        check_output(det, det(x), 2)
    assert det.name == name and det.n_params == sum(p.numel() for p in det.parameters())
    assert det.mask_kind in (None, "manipulation", "boundary")


@pytest.mark.parametrize("name", NAMES)
def test_shapes_default_size(name):
    torch.manual_seed(0)
    det = create_detector(name).eval()
    s = det.config.input_size
    with torch.no_grad():
        out = det(torch.randn(1, det.config.in_channels, s, s))
    check_output(det, out, 1)


@pytest.mark.parametrize("name", NAMES)
def test_gradients_reach_every_parameter(name):
    det = tiny(name).train()
    x, y, m = batch(det)
    losses = det.loss(det(x), y, m)
    losses["total"].backward()
    none = [n for n, p in det.named_parameters() if p.requires_grad and p.grad is None]
    zero = [n for n, p in det.named_parameters() if p.grad is not None and not bool(p.grad.abs().sum() > 0)]
    bad = [n for n, p in det.named_parameters() if p.grad is not None and not bool(torch.isfinite(p.grad).all())]
    assert not none, f"no gradient: {none}"
    assert not zero, f"all-zero gradient: {zero}"
    assert not bad, f"non-finite gradient: {bad}"


@pytest.mark.parametrize("name", NAMES)
def test_loss_is_finite_and_decreases(name):
    det = tiny(name, dropout=0.0).train()  # dropout noise is not what this test is about
    x, y, m = batch(det)
    opt = torch.optim.Adam(det.parameters(), lr=3e-3)
    history = []
    for step in range(6):  # 5 optimiser steps, the loss measured before each and after the last
        losses = det.loss(det(x), y, m)
        assert "total" in losses
        for k, v in losses.items():
            assert v.dim() == 0 and torch.isfinite(v), (k, v)
        history.append(losses["total"].item())
        if step < 5:
            opt.zero_grad()
            losses["total"].backward()
            opt.step()
    assert history[-1] < history[0], history


@pytest.mark.parametrize("name", NAMES)
def test_loss_without_masks_and_bad_targets(name):
    det = tiny(name).eval()
    x, y, _ = batch(det, 2)
    out = det(x)
    losses = det.loss(out, y)
    assert torch.isfinite(losses["total"]) and losses["total"].dim() == 0
    assert det.loss(out, np.array([0, 1]))["total"].item() == pytest.approx(losses["total"].item())
    with pytest.raises(ValueError, match="target_labels"):
        det.loss(out, torch.tensor([0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        det.loss(out, torch.tensor([0.0, 2.0]))
    if det.mask_kind is not None:
        with pytest.raises(ValueError, match="target_masks"):
            det.loss(out, y, torch.zeros(3, 1, 8, 8))


@pytest.mark.parametrize("name", NAMES)
def test_save_load_round_trip(name, tmp_path):
    det = tiny(name).train()
    x, y, m = batch(det)
    det(x)  # moves the BatchNorm running statistics off their initial values
    det.eval()
    with torch.no_grad():
        ref = det(x)
    det.metadata = {"version": "0.1", "trained_on": "nothing"}
    path = det.save(tmp_path / f"{name}.safetensors", metadata={"note": "test", "auc": None})
    doc = read_detector_header(path)
    assert doc["schema"] == SCHEMA and doc["name"] == name and doc["config"] == det.config.to_dict()
    assert doc["metadata"] == {"version": "0.1", "trained_on": "nothing", "note": "test", "auc": None}
    assert doc["n_params"] == det.n_params and "torch" in doc["saved_with"]
    assert not [p for p in tmp_path.iterdir() if p != path]  # one file, no temp left behind

    loaded = load_detector(path)
    assert type(loaded) is type(det) and not loaded.training
    assert loaded.config == det.config and loaded.metadata == doc["metadata"]
    with torch.no_grad():
        assert outputs_equal(loaded(x), ref)


@pytest.mark.parametrize("name", NAMES)
def test_determinism(name):
    a, b = tiny(name, seed=3).eval(), tiny(name, seed=3).eval()
    x, _, _ = batch(a, 2)
    with torch.no_grad():
        oa, ob, oa2 = a(x), b(x), a(x)
    assert outputs_equal(oa, ob) and outputs_equal(oa, oa2)
    c = tiny(name, seed=4).eval()
    with torch.no_grad():
        assert not torch.equal(c(x).logits, oa.logits)


@pytest.mark.parametrize("name", NAMES)
def test_preprocess_sizes_and_greyscale(name):
    det = tiny(name)
    s, c = det.config.input_size, det.config.in_channels
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (3, 50, 70, 3), dtype=np.uint8)  # other size, not square

    x = det.preprocess(rgb)
    assert x.shape == (3, c, s, s) and x.dtype == torch.float32
    lo, hi = (0 - det.config.mean) / det.config.std, (1 - det.config.mean) / det.config.std
    assert float(x.min()) >= lo - 1e-5 and float(x.max()) <= hi + 1e-5
    assert torch.equal(det.preprocess(torch.from_numpy(rgb)), x)
    assert torch.equal(det.preprocess(rgb[1]), x[1:2])  # one H x W x 3 image

    grey = rng.integers(0, 256, (90, 80), dtype=np.uint8)
    g2, g3 = det.preprocess(grey), det.preprocess(grey[:, :, None])
    assert g2.shape == (1, c, s, s) and torch.equal(g2, g3)
    assert torch.equal(g2[:, 0], g2[:, -1])  # grey repeated over the channels
    big = rng.integers(0, 256, (300, 300, 3), dtype=np.uint8)
    assert det.preprocess([rgb[0], grey, big]).shape == (3, c, s, s)  # a list of mixed sizes
    exact = rng.integers(0, 256, (2, s, s, 3), dtype=np.uint8)  # no resize at the input size
    assert torch.allclose(det.preprocess(exact), (torch.from_numpy(exact).permute(0, 3, 1, 2) / 255.0
                                                  - det.config.mean) / det.config.std)

    p = det.predict_proba(rgb)
    assert isinstance(p, np.ndarray) and p.shape == (3,) and ((p >= 0) & (p <= 1)).all()
    assert det.training  # predict_proba restores the mode
    assert np.allclose(det.predict_proba(x), p, atol=1e-6)
    assert np.allclose(det.predict_proba(list(rgb), batch_size=2), p, atol=1e-6)
    assert det.predict_proba(np.zeros((0, 32, 32, 3), np.uint8)).shape == (0,)

    with pytest.raises(ValueError, match="uint8"):
        det.preprocess(rgb.astype(np.float32))
    with pytest.raises(ValueError, match="shape|must be"):
        det.preprocess(np.zeros((4, 4, 5), np.uint8))
    with pytest.raises(ValueError, match=r"\[B, C=.*got \[1, 3, 7, 7\]|got \[1, 1, 7, 7\]"):
        det(torch.zeros(1, c, 7, 7))


# ----------------------------------------------------------------------------- registry


def test_bad_name_or_config_is_a_value_error():
    with pytest.raises(ValueError, match="unknown detector 'meso5'.*did you mean 'meso4'.*valid names: .*xray"):
        create_detector("meso5")
    with pytest.raises(ValueError, match="unknown config key.*'input_sise'.*valid keys: .*input_size"):
        create_detector("meso4", input_sise=64)
    with pytest.raises(ValueError, match="input_size must be an int"):
        create_detector("meso4", input_size="64")
    with pytest.raises(ValueError, match="input_size must be an int"):
        create_detector("meso4", input_size=True)
    with pytest.raises(ValueError, match="dropout must be in"):
        create_detector("capsule", dropout=1.5)
    with pytest.raises(ValueError, match="input_size must be in"):
        create_detector("efficientnet_lite", input_size=8)
    with pytest.raises(ValueError, match="pretrained"):
        create_detector("efficientnet_lite", pretrained=True)
    with pytest.raises(ValueError, match="divisible"):
        create_detector("multitask", input_size=100)
    # lists from JSON become tuples; numbers are accepted for float fields
    det = create_detector("xray", input_size=64, widths=[8, 8, 16], boundary_weight=10)
    assert det.config.widths == (8, 8, 16) and det.config.boundary_weight == 10.0
    with pytest.raises(dataclasses.FrozenInstanceError):  # the saved config must match the built model
        det.config.input_size = 32


def test_register_detector_refuses_a_taken_name():
    from detect.models.meso import Meso4Config

    class Other(torch.nn.Module):
        config_class = Meso4Config

    with pytest.raises(ValueError, match="already taken"):
        register_detector("meso4")(Other)
    with pytest.raises(ValueError, match="lower-case"):
        register_detector("Meso-4")
    with pytest.raises(TypeError, match="config_class"):
        register_detector("nocfg")(torch.nn.Module)


def _rewrite(src: Path, dst: Path, **header_changes) -> Path:
    """Copy a saved detector with some header fields changed (dict values JSON-encoded)."""
    from safetensors.torch import load as st_load
    from safetensors.torch import save as st_save

    blob = src.read_bytes()
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8:8 + n])["__metadata__"]
    for k, v in header_changes.items():
        header[k] = json.dumps(v) if isinstance(v, dict) else v
    dst.write_bytes(st_save(st_load(blob), metadata=header))
    return dst


def test_load_refuses_foreign_or_broken_files(tmp_path):
    det = tiny("meso4")
    good = det.save(tmp_path / "m.safetensors")
    cfg = det.config.to_dict()
    cases = [
        ({"schema": "dhstudio.detector/99"}, "not a dhstudio detector.*schema"),
        ({"name": "nope"}, "unknown detector 'nope'"),
        ({"config": {**cfg, "extra": 1}}, "unknown config key.*'extra'"),
        ({"config": {**cfg, "dropout": 2.0}}, "dropout must be in"),
        ({"config": {**cfg, "hidden": 8}}, "does not fit meso4"),  # config and weights disagree
        ({"config": "{not json"}, "'config' is not valid JSON"),
        ({"metadata": "[1, 2]"}, "'metadata' must be a JSON object"),
    ]
    for change, pattern in cases:
        with pytest.raises(ValueError, match=pattern):
            load_detector(_rewrite(good, tmp_path / "bad.safetensors", **change))

    from safetensors.torch import save as st_save

    (tmp_path / "plain.safetensors").write_bytes(st_save({"w": torch.zeros(2)}))  # not ours
    with pytest.raises(ValueError, match="not a dhstudio detector"):
        load_detector(tmp_path / "plain.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 5)
    with pytest.raises(ValueError, match="not a safetensors file"):
        load_detector(tmp_path / "junk.safetensors")
    trunc = tmp_path / "trunc.safetensors"
    trunc.write_bytes(good.read_bytes()[:-100])
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        load_detector(trunc)
    with pytest.raises(FileNotFoundError):
        load_detector(tmp_path / "absent.safetensors")
    with pytest.raises(ValueError, match="JSON"):
        det.save(tmp_path / "x.safetensors", metadata={"when": object()})
    with pytest.raises(ValueError, match="is a folder"):
        det.save(tmp_path)
    assert load_detector(good).config == det.config  # the good file still loads


def test_missing_safetensors_is_a_clear_error(tmp_path, monkeypatch):
    for mod in [m for m in sys.modules if m == "safetensors" or m.startswith("safetensors.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, "safetensors", None)  # import safetensors -> ImportError
    with pytest.raises(MissingDependency, match=r"needs safetensors.*pip install 'dhstudio\["):
        tiny("meso4").save(tmp_path / "m.safetensors")
    with pytest.raises(MissingDependency, match="needs safetensors"):
        load_detector(tmp_path / "m.safetensors")
    assert not list(tmp_path.iterdir())


def test_importing_the_registry_does_not_import_torch():
    code = "import sys, detect.registry; assert 'torch' not in sys.modules, 'torch imported'; print('ok')"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert p.returncode == 0 and "ok" in p.stdout, p.stderr


def test_xray_boundary_target():
    from detect.models.xray import blending_boundary

    det = tiny("xray")
    hard = torch.zeros(2, 1, 128, 128)
    hard[1, :, 32:96, 32:96] = 1.0  # [8, 24) on the 32 x 32 map, sigma 2 map pixels
    b = det.boundary_target(hard, (32, 32))
    assert b.shape == (2, 1, 32, 32) and b[0].abs().max() == 0  # a real face: no boundary
    assert b[1, 0, 16, 8] > 0.9 and b[1, 0, 16, 16] < 0.01 and b[1, 0, 0, 0] < 0.01  # on the edge only
    soft = torch.full((1, 1, 16, 16), 0.5)
    assert torch.allclose(det.boundary_target(soft, (16, 16)), torch.ones(1, 1, 16, 16))  # used as given
    assert torch.allclose(blending_boundary(torch.tensor([0.0, 0.5, 1.0])), torch.tensor([0.0, 1.0, 0.0]))
    u8 = (hard * 255).to(torch.uint8)[:, 0]  # uint8 [B, H, W] masks are 0..255
    assert torch.allclose(det.boundary_target(u8, (32, 32)), b)
    assert torch.allclose(det.boundary_target(hard.bool().numpy(), (32, 32)), b)
    with pytest.raises(ValueError, match="only holds 0 and 1"):  # would silently read as ~empty
        det.boundary_target(hard.to(torch.uint8), (32, 32))
