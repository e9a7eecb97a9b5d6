"""``ns-train dhstudio-head`` in the dedicated nerfstudio environment (.venv-ns, built by ``make ns-env``).

nerfstudio 1.1.5 pins numpy<2 and opencv 4.10 and needs torchvision, so it lives in its own
environment (torch 2.14.1 + torchvision 0.29.1), not in .venv. These tests drive its command-line
tools as a user would: the entry point must be discovered, a few iterations must train on CPU on a
tiny procedural capture with per-frame expressions, and ``ns-eval`` must score the checkpoint.
They skip, saying so, where .venv-ns has not been built.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[3]
NS_BIN = Path(os.environ.get("DHSTUDIO_NS_VENV", REPO / ".venv-ns")) / "bin"

pytestmark = pytest.mark.skipif(not (NS_BIN / "ns-train").exists(),
                                reason=f"nerfstudio environment not built ({NS_BIN}/ns-train missing; run `make ns-env`)")

SIZE = 24
FOCAL = 40.0


def _look_at(eye: np.ndarray) -> np.ndarray:
    """Camera-to-world in nerfstudio's OpenGL convention (camera looks down -z, y up)."""
    z = eye / np.linalg.norm(eye)
    x = np.cross([0.0, 1.0, 0.0], z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = x, y, z, eye
    return m


def _render_sphere(c2w: np.ndarray, radius: float) -> np.ndarray:
    """Analytic render of a sphere at the origin, colour by normal, black background."""
    j, i = np.meshgrid(np.arange(SIZE) + 0.5, np.arange(SIZE) + 0.5)
    d_cam = np.stack([(j - SIZE / 2) / FOCAL, -(i - SIZE / 2) / FOCAL, -np.ones_like(j)], -1)
    d = d_cam @ c2w[:3, :3].T
    d /= np.linalg.norm(d, axis=-1, keepdims=True)
    o = c2w[:3, 3]
    b = d @ o
    disc = b * b - (o @ o - radius * radius)
    hit = disc > 0
    t = -b - np.sqrt(np.maximum(disc, 0))
    n = (o + t[..., None] * d) / radius
    rgb = np.where(hit[..., None], 0.5 + 0.5 * n, 0.0)
    return (np.clip(rgb, 0, 1) * 255).astype(np.uint8)


def make_capture(root: Path, n_views: int = 12) -> Path:
    """A tiny dhstudio-style capture: a sphere whose radius follows ``jawOpen``."""
    (root / "images").mkdir(parents=True)
    frames, names = [], []
    for k in range(n_views):
        ang = 2 * np.pi * k / n_views
        eye = 1.2 * np.array([np.sin(ang), 0.3, np.cos(ang)])
        c2w = _look_at(eye)
        jaw = round(0.5 * (1 + np.sin(3 * ang)), 3)
        name = f"images/{k:03d}.png"
        Image.fromarray(_render_sphere(c2w, 0.25 + 0.1 * jaw)).save(root / name)
        frames.append({"file_path": name, "transform_matrix": c2w.tolist(),
                       "expression": {"jawOpen": jaw, "eyeBlink_L": 0.0}})
        names.append(name)
    meta = {
        "camera_model": "OPENCV", "fl_x": FOCAL, "fl_y": FOCAL, "cx": SIZE / 2, "cy": SIZE / 2,
        "w": SIZE, "h": SIZE, "expression_names": ["jawOpen", "eyeBlink_L"],
        "dhstudio": {"scene_box": [[-0.4, -0.4, -0.4], [0.4, 0.4, 0.4]]},
        "frames": frames,
        "train_filenames": [n for k, n in enumerate(names) if k % 4],
        "val_filenames": [n for k, n in enumerate(names) if k % 4 == 0],
        "test_filenames": [n for k, n in enumerate(names) if k % 4 == 0],
    }
    (root / "transforms.json").write_text(json.dumps(meta, indent=1))
    return root


def _run(args: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(OMP_NUM_THREADS="2", MPLBACKEND="Agg", WANDB_MODE="disabled")
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_method_is_registered():
    r = _run([str(NS_BIN / "python"), "-c",
              "from nerfstudio.plugins.registry import discover_methods\n"
              "m, d = discover_methods()\n"
              "print('dhstudio-head' in m, d.get('dhstudio-head', ''))"], REPO)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.startswith("True dhstudio:"), r.stdout


def test_ns_train_and_eval_on_cpu(tmp_path):
    data = make_capture(tmp_path / "capture")
    out = tmp_path / "runs"
    r = _run([str(NS_BIN / "ns-train"), "dhstudio-head", "--data", str(data), "--output-dir", str(out),
              "--machine.device-type", "cpu", "--vis", "tensorboard", "--max-num-iterations", "30",
              "--steps-per-eval-batch", "1000", "--steps-per-eval-image", "1000", "--steps-per-eval-all-images",
              "100000", "--pipeline.datamanager.train-num-rays-per-batch", "256",
              "--pipeline.model.num-uniform-samples", "32", "--pipeline.model.num-importance-samples", "16",
              "--pipeline.model.log2-hashmap-size", "12", "--pipeline.model.backend", "torch",
              "--timestamp", "t0"], tmp_path)
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])
    run = out / "capture" / "dhstudio-head" / "t0"
    config = run / "config.yml"
    assert config.is_file()
    ckpts = sorted((run / "nerfstudio_models").glob("step-*.ckpt"))
    assert ckpts, list(run.rglob("*"))
    # the field saw the expressions: the checkpoint holds an expression projection of width 2
    r = _run([str(NS_BIN / "python"), "-c",
              "import sys, torch\n"
              "sd = torch.load(sys.argv[1], map_location='cpu', weights_only=False)['pipeline']\n"
              "print(tuple(sd['_model.field.expression_proj.weight'].shape))", str(ckpts[-1])], tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().endswith(", 2)"), r.stdout
    # nerfstudio's evaluator scores the held-out views
    metrics = tmp_path / "eval.json"
    r = _run([str(NS_BIN / "ns-eval"), "--load-config", str(config), "--output-path", str(metrics)], tmp_path)
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])
    res = json.loads(metrics.read_text())["results"]
    assert np.isfinite(res["psnr"]) and res["psnr"] > 5.0, res
    assert 0.0 <= res["ssim"] <= 1.0, res


def test_our_synthetic_capture_opens_in_nerfstudio(tmp_path):
    """A capture written by `dhstudio head synth` loads with nerfstudio's own dataparser (its split
    lists honoured) and with ours (expressions as camera metadata, the head box as scene box)."""
    from reconstruct.head.ict import FILE_NAME
    ict = REPO.parent / "shared" / "data" / "ict_face" / FILE_NAME
    if not ict.is_file():
        pytest.skip(f"ICT face model absent ({ict})")
    pytest.importorskip("trimesh", reason="the [body] extra (trimesh) is not installed")
    cap = tmp_path / "cap"
    r = subprocess.run([sys.executable, "-m", "studio.cli", "head", "synth", "--out", str(cap), "--views", "4",
                        "--frames", "2", "--size", "32", "--test-views", "1", "--test-expressions", "1",
                        "--supersample", "1"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    meta = json.loads((cap / "transforms.json").read_text())
    r = _run([str(NS_BIN / "python"), "-c",
              "import sys, json\nfrom pathlib import Path\n"
              "from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig\n"
              "from reconstruct.head.nerfstudio_method import DhstudioDataParserConfig\n"
              "d = Path(sys.argv[1]); res = {}\n"
              "for split in ('train', 'test'):\n"
              "    plain = NerfstudioDataParserConfig(data=d).setup().get_dataparser_outputs(split)\n"
              "    ours = DhstudioDataParserConfig(data=d, auto_scale_poses=True, center_method='none',\n"
              "                                    orientation_method='none').setup().get_dataparser_outputs(split)\n"
              "    res[split] = {'n': len(plain.image_filenames), 'n_ours': len(ours.image_filenames),\n"
              "                  'expr': list(ours.cameras.metadata['expression'].shape),\n"
              "                  'jaw': ours.cameras.metadata['expression'][:, ours.metadata['expression_names'].index('jawOpen')].tolist(),\n"
              "                  'box': ours.scene_box.aabb.tolist(), 'scale': float(ours.dataparser_scale)}\n"
              "print(json.dumps(res))\n", str(cap)], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    n_names = len(meta["expression_names"])
    by_name = {f["file_path"]: f for f in meta["frames"]}
    for split in ("train", "test"):
        files = sorted(meta[f"{split}_filenames"])
        assert res[split]["n"] == res[split]["n_ours"] == len(files)
        assert res[split]["expr"] == [len(files), n_names]
        want = [(by_name[f].get("expression") or {}).get("jawOpen", 0.0) for f in files]
        assert np.allclose(res[split]["jaw"], want, atol=1e-6)
        box = np.asarray(meta["dhstudio"]["scene_box"]) * res[split]["scale"]
        assert np.allclose(res[split]["box"], box, atol=1e-5)


def test_bad_expression_name_is_a_clear_error(tmp_path):
    data = make_capture(tmp_path / "capture", n_views=4)
    meta = json.loads((data / "transforms.json").read_text())
    meta["frames"][0]["expression"] = {"jawOpn": 0.5}
    (data / "transforms.json").write_text(json.dumps(meta))
    r = _run([str(NS_BIN / "python"), "-c",
              "import sys\nfrom pathlib import Path\n"
              "from reconstruct.head.nerfstudio_method import DhstudioDataParserConfig\n"
              "try:\n    DhstudioDataParserConfig(data=Path(sys.argv[1])).setup().get_dataparser_outputs('train')\n"
              "except ValueError as e:\n    print('ERR', e)\n", str(data)], tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "ERR" in r.stdout and "jawOpn" in r.stdout and "jawOpen" in r.stdout, r.stdout


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-v"]))
