"""The detector training loop, its resume, and the evaluation, on a small synthetic face cache
(smooth random images with a 68-point layout: the loop is what is tested here, not accuracy)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the [body] extra (torch) is not installed")

from detect import train as dtrain  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def _template68(size: int) -> np.ndarray:
    """A plausible 68-point layout (jaw arc, brows, nose, eyes, mouth) in a size x size crop."""
    c, r = size / 2, size / 4
    t = np.linspace(np.pi * 0.05, np.pi * 0.95, 17)
    jaw = np.c_[c - r * np.cos(t), c + 0.2 * r + r * np.sin(t) * 0.9]
    brows = np.c_[np.linspace(c - 0.8 * r, c + 0.8 * r, 10), np.full(10, c - 0.55 * r)]
    nose = np.c_[np.r_[np.full(4, c), np.linspace(c - 0.2 * r, c + 0.2 * r, 5)],
                 np.r_[np.linspace(c - 0.4 * r, c, 4), np.full(5, c + 0.1 * r)]]
    eyes = np.c_[np.r_[np.linspace(c - 0.6 * r, c - 0.2 * r, 6), np.linspace(c + 0.2 * r, c + 0.6 * r, 6)],
                 np.full(12, c - 0.35 * r)]
    a = np.linspace(0, 2 * np.pi, 20, endpoint=False)
    mouth = np.c_[c + 0.35 * r * np.cos(a), c + 0.45 * r + 0.12 * r * np.sin(a)]
    return np.concatenate([jaw, brows, nose, eyes, mouth]).astype(np.float32)


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("facecache")
    rng = np.random.default_rng(0)
    n, s = 48, dtrain.CACHE_SIZE
    y, x = np.mgrid[0:s, 0:s] / s
    crops = np.empty((n, s, s, 3), np.uint8)
    items = []
    for i in range(n):
        f = rng.uniform(2, 6, 3)
        img = 128 + 60 * np.sin(f[0] * x * 6 + f[1] * y * 5)[..., None] * rng.uniform(0.5, 1, 3)
        crops[i] = np.clip(img + rng.normal(0, 6, (s, s, 3)), 0, 255).astype(np.uint8)
        split = "train" if i < 32 else ("val" if i < 40 else "test")
        fake_gan = i % 8 == 7
        src = "faces_fake_public/" + ("fake" if fake_gan else "real") if i % 4 == 3 else "faces_real"
        items.append({"path": f"x{i}.jpg", "source": src, "label": int(fake_gan and i % 4 == 3),
                      "group": f"g{i}", "split": split})
    np.save(d / "crops.npy", crops)
    np.save(d / "landmarks.npy", np.repeat(_template68(s)[None], n, 0))
    (d / "index.json").write_text(json.dumps({"schema": dtrain.CACHE_SCHEMA, "items": items}))
    return d


def test_train_resume_and_evaluate(cache, tmp_path):
    cfg = dtrain.TrainConfig(detector="meso4", detector_config={"input_size": 64}, steps=4, batch=4,
                             val_every=2, save_every=2, threads=1)
    out = tmp_path / "run"
    r = dtrain.train(cache, out, cfg, progress=False)
    assert r["steps"] == 4 and (out / "model.safetensors").is_file() and (out / "state.json").is_file()
    log = [json.loads(ln) for ln in (out / "log.jsonl").read_text().splitlines()]
    assert [rec["step"] for rec in log] == [1, 2, 3, 4] and all(np.isfinite(rec["total"]) for rec in log)
    assert "val" in log[1] and "sbi" in log[1]["val"]

    # resume: a longer run continues from step 4; another config in the same folder is refused
    cfg6 = dtrain.TrainConfig(**{**cfg.__dict__, "steps": 6})
    with pytest.raises(ValueError, match="another configuration"):
        dtrain.train(cache, out, cfg6, progress=False)
    state = json.loads((out / "state.json").read_text())
    assert state["step"] == 4

    res = dtrain.evaluate(out / "model.safetensors", cache, split="test", attacks=["none", "jpeg50"])
    for a in ("none", "jpeg50"):
        assert set(res["results"][a]) >= {"sbi", "combined"}
        assert 0.0 <= res["results"][a]["sbi"]["auc"] <= 1.0
    with pytest.raises(ValueError, match="unknown attack"):
        dtrain.evaluate(out / "model.safetensors", cache, attacks=["blur"])


def test_interrupted_run_resumes_from_its_last_state(cache, tmp_path, monkeypatch):
    out = tmp_path / "run"
    cfg = dtrain.TrainConfig(detector="meso4", detector_config={"input_size": 64}, steps=4, batch=4,
                             val_every=4, save_every=2, threads=1)
    real_batch = dtrain._batch
    calls = {"n": 0}

    def interrupted(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # killed during step 3, after the state of step 2 was saved
        return real_batch(*a, **k)

    monkeypatch.setattr(dtrain, "_batch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        dtrain.train(cache, out, cfg, progress=False)
    assert json.loads((out / "state.json").read_text())["step"] == 2
    monkeypatch.setattr(dtrain, "_batch", real_batch)
    r = dtrain.train(cache, out, cfg, progress=False)
    assert r["steps"] == 4
    steps = [json.loads(ln)["step"] for ln in (out / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]


def test_cli_bad_config_is_one_line(cache, tmp_path):
    p = subprocess.run([sys.executable, "-m", "studio.cli", "detect", "train", str(cache), "-o", str(tmp_path / "r"),
                        "--config", "[1, 2]"], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert p.returncode == 2 and "--config must be a JSON object" in p.stderr
    p = subprocess.run([sys.executable, "-m", "studio.cli", "detect", "train", str(cache), "-o", str(tmp_path / "r"),
                        "--detector", "nope", "--steps", "1"], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert p.returncode == 2 and "nope" in p.stderr and len(p.stderr.strip().splitlines()) == 1


@pytest.fixture(scope="module")
def own_cache(cache, tmp_path_factory) -> Path:
    """The synthetic cache plus 12 'own renders' (label 1): 6 train, 4 test head_synth, 2 test head_nerf."""
    d = tmp_path_factory.mktemp("facecache_own")
    crops = np.load(cache / "crops.npy")
    items = json.loads((cache / "index.json").read_text())["items"]
    rng = np.random.default_rng(1)
    extra = np.clip(rng.normal(40, 10, (12,) + crops.shape[1:]), 0, 255).astype(np.uint8)
    for k in range(12):
        split, kind = ("train", "own/head_synth") if k < 6 else ("test", "own/head_synth" if k < 10 else "own/head_nerf")
        items.append({"path": f"/r/{k}.png", "source": kind, "label": 1, "group": f"own:{k}", "split": split})
    np.save(d / "crops.npy", np.concatenate([crops, extra]))
    lms = np.load(cache / "landmarks.npy")
    np.save(d / "landmarks.npy", np.concatenate([lms, lms[:12]]))
    (d / "index.json").write_text(json.dumps({"schema": dtrain.CACHE_SCHEMA, "items": items}))
    return d


def test_fake_source_mix_follows_the_fractions():
    cfg = dtrain.TrainConfig(gan_fraction=0.2, own_fraction=0.3)
    rng = np.random.default_rng(0)
    draws = [dtrain._fake_source(cfg, rng, [1], [2]) for _ in range(20000)]
    share = {k: draws.count(k) / len(draws) for k in ("gan", "own", "sbi")}
    assert abs(share["gan"] - 0.2) < 0.02 and abs(share["own"] - 0.3) < 0.02 and abs(share["sbi"] - 0.5) < 0.02
    # a source the cache lacks falls back to SBI
    assert {dtrain._fake_source(cfg, rng, [], []) for _ in range(200)} == {"sbi"}


@pytest.mark.parametrize("bad", [{"gan_fraction": 0.7, "own_fraction": 0.5}, {"own_fraction": -0.1},
                                 {"batch": 1}, {"max_seconds": 0}])
def test_bad_train_config_is_refused(bad):
    with pytest.raises(ValueError):
        dtrain.TrainConfig(**bad).check()


def test_own_renders_train_and_evaluate_without_double_counting(cache, own_cache, tmp_path):
    cfg = dtrain.TrainConfig(detector="meso4", detector_config={"input_size": 64}, steps=3, batch=4,
                             own_fraction=0.5, gan_fraction=0.2, val_every=3, threads=1)
    with pytest.raises(ValueError, match="no own training renders"):
        dtrain.train(cache, tmp_path / "r0", cfg, progress=False)
    r = dtrain.train(own_cache, tmp_path / "r1", cfg, progress=False)
    assert r["steps"] == 3
    res = dtrain.evaluate(tmp_path / "r1" / "model.safetensors", own_cache, split="test", attacks=["none"])
    per = res["results"]["none"]
    assert {"sbi", "gan", "own", "own/head_synth", "own/head_nerf", "combined"} <= set(per)
    assert per["own"]["n_fake"] == 6 and per["own/head_synth"]["n_fake"] == 4 and per["own/head_nerf"]["n_fake"] == 2
    assert per["own"]["n_real"] == per["sbi"]["n_real"] == per["own/head_nerf"]["n_real"]
    # combined: every real face once, every fake once
    assert per["combined"]["n"] == per["sbi"]["n"] + per["gan"]["n"] + per["own"]["n_fake"]


def test_time_budget_and_init(cache, tmp_path):
    cfg = dtrain.TrainConfig(detector="meso4", detector_config={"input_size": 64}, steps=1000, batch=4,
                             val_every=1000, save_every=1000, threads=1, max_seconds=1e-3)
    r = dtrain.train(cache, tmp_path / "a", cfg, progress=False)
    assert r["steps"] == 1  # the budget ran out after the first step; validated and saved there
    assert json.loads((tmp_path / "a" / "state.json").read_text())["step"] == 1
    assert (tmp_path / "a" / "model.safetensors").is_file()
    w = tmp_path / "a" / "model.safetensors"
    from detect.registry import load_detector

    cfg2 = dtrain.TrainConfig(detector="meso4", detector_config={"input_size": 64}, steps=1, batch=4,
                              threads=1, lr=0.0, init=str(w))
    dtrain.train(cache, tmp_path / "b", cfg2, progress=False)
    a, b = load_detector(w).state_dict(), load_detector(tmp_path / "b" / "model.safetensors").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a if "running" not in k and "num_batches" not in k)
    cfg3 = dtrain.TrainConfig(detector="meso4", detector_config={"input_size": 96}, steps=1, batch=4,
                              threads=1, init=str(w))
    with pytest.raises(ValueError, match="--init"):
        dtrain.train(cache, tmp_path / "c", cfg3, progress=False)


def test_best_checkpoint_is_chosen_on_the_trained_sources_only():
    assert dtrain.trained_sources(dtrain.TrainConfig(gan_fraction=0.2, own_fraction=0.1)) == ("sbi", "gan", "own")
    assert dtrain.trained_sources(dtrain.TrainConfig(gan_fraction=0.0, own_fraction=0.0)) == ("sbi",)
    assert dtrain.trained_sources(dtrain.TrainConfig(gan_fraction=1.0, own_fraction=0.0)) == ("gan",)
    assert dtrain.trained_sources(dtrain.TrainConfig(gan_fraction=0.0, own_fraction=1.0)) == ("own",)


def test_calibrate_threshold_at_fpr(cache, shared_data, tmp_path):
    """Calibration scores whole validation images through score_image (the verifier's path)."""
    pytest.importorskip("mediapipe", reason="the faces extra is not installed (make install adds it)")
    cfg = dtrain.TrainConfig(detector="meso4", detector_config={"input_size": 64}, steps=2, batch=4, threads=1)
    dtrain.train(cache, tmp_path / "r", cfg, progress=False)
    w = tmp_path / "r" / "model.safetensors"
    rec = dtrain.calibrate(w, shared_data, split="val", fpr=0.25, out=tmp_path / "cal.safetensors",
                           max_per_source=4, conditions=("none", "resize0.5"))
    assert rec["split"] == "val" and rec["fpr_measured"] <= 0.25 and rec["n_real"] >= 8 and rec["n_fake"] >= 2
    assert rec["conditions"] == ["none", "resize0.5"] and rec["fake_sources"] == ["faces_fake_public/fake"]
    from detect.registry import read_detector_header

    meta = read_detector_header(tmp_path / "cal.safetensors")["metadata"]
    assert meta["calibration"]["threshold"] == rec["threshold"]
    with pytest.raises(ValueError, match="fpr"):
        dtrain.calibrate(w, shared_data, fpr=0.0)
    with pytest.raises(ValueError, match="conditions"):
        dtrain.calibrate(w, shared_data, conditions=("blur",))
    p = subprocess.run([sys.executable, "-m", "studio.cli", "detect", "calibrate", str(w), str(shared_data), "--fpr",
                        "0.25", "--max-per-source", "3", "--quiet", "--threads", "1"],
                       capture_output=True, text=True, timeout=300, cwd=REPO)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["conditions"] == list(dtrain.CALIBRATION_CONDITIONS)
