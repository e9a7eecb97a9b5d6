"""Head training on a chosen device: clear errors for devices that are not there, CPU training on a
procedural capture (no ../shared needed), and the same on CUDA with the torch and Triton hash-grid
backends (``gpu`` mark: run on the GPU machine)."""

from __future__ import annotations

import dataclasses
import math
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="the [head] extra (torch) is not installed")
pytest.importorskip("safetensors", reason="the [head] extra (safetensors) is not installed")

sys.path.insert(0, str(Path(__file__).parent))
from test_nerfstudio_method import make_capture  # noqa: E402  (procedural sphere capture)

from reconstruct.head.train import HeadTrainConfig, evaluate_head, train_head  # noqa: E402


def _cfg(**kw) -> HeadTrainConfig:
    cfg = HeadTrainConfig(steps=kw.pop("steps", 8), batch_rays=256, grid_resolution=16, grid_every=4,
                          grid_warmup_updates=2, ckpt_every=1000, seed=0)
    cfg.field = dataclasses.replace(cfg.field, log2_hashmap_size=12)
    for k, v in kw.items():
        setattr(cfg, k, v)
    return cfg


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_a_gpu_is_a_clear_error(tmp_path):
    cap = make_capture(tmp_path / "cap", n_views=4)
    with pytest.raises(ValueError, match="no CUDA device"):
        train_head(cap, tmp_path / "run", _cfg(device="cuda"), progress=False)
    with pytest.raises(ValueError, match="not a torch device"):
        train_head(cap, tmp_path / "run2", _cfg(device="gpu0"), progress=False)


def test_triton_backend_trains_on_cuda_only(tmp_path, monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    cap = make_capture(tmp_path / "cap", n_views=4)
    with pytest.raises(ValueError, match="triton hash grid backend trains on CUDA"):
        train_head(cap, tmp_path / "run", _cfg(device="cpu", backend="triton"), progress=False)


def test_explicit_cpu_device_trains(tmp_path):
    cap = make_capture(tmp_path / "cap", n_views=8)
    res = train_head(cap, tmp_path / "run", _cfg(device="cpu", steps=20), progress=False)
    assert res["steps"] == 20 and math.isfinite(res["train_psnr"])
    ev = evaluate_head(tmp_path / "run", cap, splits=("test",), max_frames=1, device="cpu")
    assert math.isfinite(ev["test_psnr"])


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_trains_on_cuda(tmp_path, backend):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    if backend == "triton":
        pytest.importorskip("triton", reason="triton is not installed")
    cap = make_capture(tmp_path / "cap", n_views=12)
    res = train_head(cap, tmp_path / "run", _cfg(device="cuda", backend=backend, steps=300), progress=False)
    assert res["steps"] == 300 and res["train_psnr"] > 20.0, res
    ev = evaluate_head(tmp_path / "run", cap, splits=("test",), device="cuda")
    assert ev["test_psnr"] > 18.0, ev
