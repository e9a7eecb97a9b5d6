"""`dhstudio head train | eval | render` on a tiny synthetic capture: a run that trains and resumes,
JSON metrics, a signed orbit MP4 and PNG that `dhstudio verify` attributes to the head avatar
generator, and bad input -> one clear line, exit 2, no output file."""

from __future__ import annotations

import hashlib
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.studio.test_cli_bad_input import REPO, assert_clean_error, assert_no_partial, run_cli

ICT_DIR = REPO.parent / "shared" / "data" / "ict_face"


def _sha256(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_cli_import_does_not_need_torch():
    code = ("import sys, studio.cli, studio.pipelines.head; "
            "sys.exit(1 if 'torch' in sys.modules else 0)")
    p = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, "importing studio.cli / studio.pipelines.head imported torch"


def test_expression_parsing_is_strict():
    from provenance.errors import InputError
    from studio.pipelines.head import parse_expression

    assert parse_expression("jawOpen=0.8, eyeBlink_L=1") == {"jawOpen": 0.8, "eyeBlink_L": 1.0}
    assert parse_expression(None) == {} and parse_expression("  ") == {}
    for bad, needle in [("jawOpen", "not NAME=WEIGHT"), ("jawOpen=0.8,", "empty item"), ("jawOpen=x", "not a number"),
                        ("jawOpen=1.5", "in [0, 1]"), ("jawOpen=nan", "in [0, 1]"), ("a=1,a=0", "twice"),
                        ("=1", "not a blendshape name"), ("jaw Open=1", "not a blendshape name")]:
        with pytest.raises(InputError, match=needle.replace("[", r"\[").replace("]", r"\]")):
            parse_expression(bad)


# ---------------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    pytest.importorskip("torch", reason="the [body] extra (torch) is not installed")
    from reconstruct.head.ict import FILE_NAME

    if not (ICT_DIR / FILE_NAME).is_file():
        pytest.skip(f"the ICT face model is absent ({ICT_DIR / FILE_NAME})")
    from reconstruct._deps import MissingExtra, require

    try:
        require("open3d")
    except MissingExtra as e:
        pytest.skip(f"open3d is not usable, no synthetic capture: {e}")
    from reconstruct.head.synth import synth_capture

    root = tmp_path_factory.mktemp("head")
    cap = synth_capture(root / "cap", n_views=5, n_frames=2, size=32, supersample=1, seed=3,
                        face_model_path=ICT_DIR)
    return cap.root


@pytest.fixture(scope="module")
def run(capture, tmp_path_factory):
    """A few training steps through the real command."""
    home = tmp_path_factory.mktemp("home")
    out = capture.parent / "run"
    p = run_cli(["head", "train", capture, "-o", out, "--steps", "6", "--batch-rays", "256", "--threads", "1",
                 "--quiet"], home, timeout=120)
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    assert res["steps"] == 6 and math.isfinite(res["train_psnr"])
    assert (out / "model.safetensors").is_file() and (out / "state.json").is_file()
    return out


@pytest.fixture()
def home(tmp_path, monkeypatch):
    h = tmp_path / "home"
    h.mkdir()
    monkeypatch.setenv("DHSTUDIO_HOME", str(h))
    monkeypatch.delenv("DHSTUDIO_DEBUG", raising=False)
    return h


@pytest.fixture(scope="module")
def ball_ckpt(run):
    """The run's avatar (same schema, config, expression names) with its density fitted to a ball
    and an occupancy grid around it: a head checkpoint with a known surface for the mesh export,
    and fast to render (a few training steps leave no surface yet and the grid still full)."""
    import torch

    from reconstruct.head.render import OccupancyGrid, render_step
    from reconstruct.head.train import load_head, save_head

    torch.manual_seed(0)
    model = load_head(run)
    model.train()
    lo, hi = model.box[0], model.box[1]
    centre, radius = (lo + hi) / 2, 0.3 * float((hi - lo).min())
    step = render_step(model.box)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(120):
        x = lo + (hi - lo) * torch.rand(4096, 3)
        inside = ((x - centre).norm(dim=-1) < radius).float()
        sigma, _ = model.query_density(x, {"expression": torch.zeros(4096, model.cfg.n_expressions)})
        loss = torch.mean((1 - torch.exp(-sigma * step) - inside) ** 2)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    grid = OccupancyGrid(model.box, 32, warmup_updates=1)  # the empty space around the ball skipped
    with torch.no_grad():
        grid.update(lambda x: model.query_density(x, {"expression": torch.zeros(len(x), model.cfg.n_expressions)})[0],
                    step)
    path = run.parent / "ball.safetensors"
    save_head(model, path, grid, model.training_info)
    return path, radius


def _main(args, capsys):
    from studio.cli import main

    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


# ---------------------------------------------------------------------------------- train / eval

def test_train_resumes(run, capture, capsys):
    rc, out, err = _main(["head", "train", capture, "-o", run, "--steps", "8", "--batch-rays", "256", "--threads",
                          "1", "--quiet"], capsys)
    assert rc == 0, err
    assert json.loads(out)["steps"] == 8
    assert json.loads((run / "state.json").read_text())["step"] == 8
    # another configuration in the same folder is refused, the run left as it was
    rc, out, err = _main(["head", "train", capture, "-o", run, "--steps", "9", "--batch-rays", "128", "--quiet"],
                         capsys)
    assert rc == 2 and err.startswith("dhstudio: error: ") and err.count("\n") == 1 and "another configuration" in err
    assert json.loads((run / "state.json").read_text())["step"] == 8


def test_eval_prints_json(run, capture, capsys):
    rc, out, err = _main(["head", "eval", run, capture, "--split", "test", "--threads", "1"], capsys)
    assert rc == 0, err
    res = json.loads(out)
    for k in ("test_view_psnr", "test_view_ssim", "test_expression_psnr", "test_expression_ssim", "train_psnr"):
        assert isinstance(res[k], float) and math.isfinite(res[k]), (k, res)
    assert res["test_view_frames"] == 2 and res["test_expression_frames"] == 4
    assert -1.0 <= res["test_view_ssim"] <= 1.0
    rc, out, _ = _main(["head", "eval", run / "model.safetensors", capture, "--split", "test_view"], capsys)
    assert rc == 0 and "test_expression_psnr" not in json.loads(out)


# ---------------------------------------------------------------------------------- render

def test_render_orbit_mp4_is_signed_and_verifies(ball_ckpt, capture, tmp_path):
    import av

    ckpt = ball_ckpt[0]
    home = tmp_path / "home"
    dst = tmp_path / "out"
    dst.mkdir()
    mp4 = dst / "orbit.mp4"
    # 128 px: the video watermark is embedded at 64 px but not reliably found in 4 frames that small
    p = run_cli(["head", "render", ckpt, "--capture", capture, "--orbit", "--frames", "4", "--size", "128",
                 "--expression", "jawOpen=0.8", "--threads", "1", "--quiet", "--json", "-o", mp4], home, timeout=120)
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    assert res["frames"] == 4 and res["signed"] and res["expression"] == {"jawOpen": 0.8}
    assert sorted(x.name for x in dst.iterdir()) == ["orbit.mp4"]  # nothing else left behind
    with av.open(str(mp4)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == 4 and frames[0].shape == (128, 128, 3)
    v = json.loads(run_cli(["verify", "--json", mp4], home).stdout)
    assert v["label"] == "signed-generated-intact", v["reasons"]
    prov = v["provenance"]
    assert prov["state"] == "Trusted" and "trainedAlgorithmicMedia" in prov["digital_source_type"]
    gen = prov["generator"]
    assert gen["model_name"] == "dhstudio-head-nerf"
    assert gen["weights_sha256"] == _sha256(ckpt) == res["weights_sha256"]
    assert gen["parameters"]["expression"] == {"jawOpen": 0.8}
    assert {"title": "transforms.json", "sha256": _sha256(capture / "transforms.json")} in gen["inputs"]
    assert v["watermark"]["found"] and v["watermark"]["id"] == prov["soft_binding"]["id"]


def test_render_png_still(run, capture, tmp_path, home, capsys):
    from PIL import Image

    png = tmp_path / "front.png"
    rc, out, err = _main(["head", "render", run, "--capture", capture, "--size", "64", "--quiet", "-o", png], capsys)
    assert rc == 0, err
    assert "front.png" in out and "signed" in out
    im = np.asarray(Image.open(png))
    assert im.shape[:2] == (64, 64)
    from provenance.c2pa_io import read_file

    assert read_file(png).manifest_found
    # unsigned, at the capture's size
    raw = tmp_path / "raw.png"
    rc, out, err = _main(["head", "render", run, "--capture", capture, "--no-sign", "--quiet", "-o", raw,
                          "--expression", "jawOpen=0.5,eyeBlink_L=0"], capsys)  # an untrained name at 0 is neutral
    assert rc == 0, err
    assert np.asarray(Image.open(raw)).shape[:2] == (32, 32) and not read_file(raw).manifest_found


def test_export_mesh_glb_is_signed(ball_ckpt, capture, tmp_path, home, capsys):
    ball_ckpt, radius = ball_ckpt
    dst = tmp_path / "out"
    dst.mkdir()
    glb = dst / "head.glb"
    rc, out, err = _main(["head", "export-mesh", ball_ckpt, "--capture", capture, "--resolution", "128", "--threads",
                          "1", "--json", "-o", glb], capsys)
    assert rc == 0, err
    res = json.loads(out)
    assert res["vertices"] > 100 and res["signed"]
    assert sorted(x.name for x in dst.iterdir()) == ["head.glb", "head.glb.c2pa"]
    v = json.loads(run_cli(["verify", "--json", glb], home).stdout)
    assert v["label"] == "signed-generated-intact", v["reasons"]
    assert v["provenance"]["generator"]["model_name"] == "dhstudio-head-nerf"
    assert v["provenance"]["generator"]["weights_sha256"] == _sha256(ball_ckpt)
    import trimesh

    mesh = trimesh.load(glb, force="mesh")
    r = np.linalg.norm(mesh.vertices - mesh.vertices.mean(0), axis=1)
    assert abs(np.median(r) - radius) < 0.2 * radius, (np.median(r), radius)
    rc, _, err = _main(["head", "export-mesh", ball_ckpt, "--capture", capture, "-o", dst / "head.obj"], capsys)
    assert rc == 2 and "signed meshes are GLB" in err and not (dst / "head.obj").exists()


# ---------------------------------------------------------------------------------- bad input

@pytest.fixture(scope="module")
def bad_ckpts(tmp_path_factory):
    torch = pytest.importorskip("torch")
    from reconstruct.body.model import PIFu, PIFuConfig
    from reconstruct.body.train import save_weights

    d = tmp_path_factory.mktemp("bad")
    torch.manual_seed(0)
    m = PIFu(PIFuConfig(name="small", hg_channels=8, stem_channels=8, mlp=(8,), tex_channels=8, tex_mlp=(8,),
                        image_size=64))
    save_weights(m, d / "pifu.safetensors", {"steps": 0})
    (d / "corrupt.safetensors").write_bytes(b"\x00\x01garbage" * 20)
    return d


@pytest.mark.parametrize("case", ["unknown-name", "untrained-name", "syntax", "out-of-range", "body-ckpt",
                                  "corrupt-ckpt", "missing-ckpt", "missing-capture", "too-small-to-sign",
                                  "png-orbit", "bad-suffix"])
def test_render_bad_input(case, run, capture, bad_ckpts, tmp_path, home, capsys):
    dst = tmp_path / "out"
    dst.mkdir()
    out = dst / ("a.png" if case == "png-orbit" else "a.txt" if case == "bad-suffix" else "a.mp4")
    ckpt, cap, extra = run, capture, ["--orbit", "--frames", "2", "--size", "64"]
    needle = {"unknown-name": "unknown expression name 'jawOpn'; did you mean jawOpen",
              "untrained-name": "'eyeBlink_L' was never moved", "syntax": "not NAME=WEIGHT",
              "out-of-range": "in [0, 1]", "body-ckpt": "not a dhstudio head avatar checkpoint",
              "corrupt-ckpt": "not a readable safetensors", "missing-ckpt": "does not exist",
              "missing-capture": "capture", "too-small-to-sign": "too small to watermark",
              "png-orbit": "PNG holds one still", "bad-suffix": "must end in .mp4"}[case]
    if case == "unknown-name":
        extra += ["--expression", "jawOpn=0.5"]
    elif case == "untrained-name":  # a talking capture never blinks
        extra += ["--expression", "jawOpen=0.8,eyeBlink_L=1"]
    elif case == "syntax":
        extra += ["--expression", "jawOpen:0.8"]
    elif case == "out-of-range":
        extra += ["--expression", "jawOpen=3"]
    elif case == "body-ckpt":
        ckpt = bad_ckpts / "pifu.safetensors"
    elif case == "corrupt-ckpt":
        ckpt = bad_ckpts / "corrupt.safetensors"
    elif case == "missing-ckpt":
        ckpt = tmp_path / "nowhere.safetensors"
    elif case == "missing-capture":
        cap = tmp_path / "no_capture"
    elif case == "too-small-to-sign":
        extra = ["--orbit", "--frames", "2"]  # the capture's 32 px
    rc, stdout, err = _main(["head", "render", ckpt, "--capture", cap, "--quiet", "-o", out, *extra], capsys)
    assert rc == 2, (stdout, err)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("dhstudio: error: "), err
    assert needle.lower() in lines[0].lower(), lines[0]
    assert_no_partial(dst, set())


def test_train_and_eval_bad_input(capture, bad_ckpts, tmp_path):
    home = tmp_path / "home"
    p = run_cli(["head", "train", tmp_path / "no_capture", "-o", tmp_path / "r", "--quiet"], home)
    assert_clean_error(p, "does not exist")
    assert not (tmp_path / "r").exists()
    p = run_cli(["head", "eval", bad_ckpts / "pifu.safetensors", capture], home)
    assert_clean_error(p, "not a dhstudio head avatar checkpoint")
    assert p.stdout == ""


def test_train_on_a_missing_gpu_is_a_clean_error(capture, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    home = tmp_path / "home"
    p = run_cli(["head", "train", capture, "-o", tmp_path / "r", "--device", "cuda", "--quiet"], home)
    assert_clean_error(p, "no CUDA device")
    assert not (tmp_path / "r").exists()
    p = run_cli(["head", "train", capture, "-o", tmp_path / "r2", "--backend", "triton", "--quiet"], home)
    assert_clean_error(p, "triton")
    assert not (tmp_path / "r2").exists()
