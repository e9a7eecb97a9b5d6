"""`dhstudio body reconstruct` on bad input: one clear error line, non-zero exit, no partial files.
And an end-to-end run with a tiny (untrained) checkpoint: outputs appear signed, nothing else."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch", reason="the [body] extra (torch) is not installed")

from tests.studio.test_cli_bad_input import _png_declaring, assert_clean_error, assert_no_partial, run_cli  # noqa: E402


@pytest.fixture()
def home(tmp_path):
    h = tmp_path / "home"
    h.mkdir()
    return h


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    from reconstruct.body.model import PIFu, PIFuConfig
    from reconstruct.body.train import save_weights

    torch.manual_seed(0)
    m = PIFu(PIFuConfig(name="small", hg_channels=16, stem_channels=8, mlp=(16,), tex_channels=8, tex_mlp=(8,),
                        image_size=64))
    with torch.no_grad():  # a field with a surface: inside near the image centre line
        m.occ_mlp.layers[-1].bias.fill_(0.0)
    p = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    save_weights(m, p, {"steps": 0})
    return p


@pytest.fixture()
def person(tmp_path):
    """An RGBA photo whose alpha is a person-shaped blob, plus the same mask as a file."""
    h, w = 256, 192
    yy, xx = np.mgrid[:h, :w]
    m = (((xx - 96) / 30) ** 2 + ((yy - 128) / 100) ** 2) < 1
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[..., 0] = 200
    rgba = np.dstack([rgb, (m * 255).astype(np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "person.png")
    Image.fromarray(rgb).save(tmp_path / "person_rgb.png")
    Image.fromarray((m * 255).astype(np.uint8)).save(tmp_path / "mask.png")
    return tmp_path


def _out(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    return out


def test_no_mask(person, home, tmp_path, tiny_ckpt):
    """No mask, no alpha: the built-in segmentation looks for a person (none in a flat red image);
    without the pose model, the error asks for a mask."""
    from reconstruct.body.prior import pose_available

    out = _out(tmp_path)
    p = run_cli(["body", "reconstruct", person / "person_rgb.png", "-o", out / "b.glb", "--checkpoint", tiny_ckpt], home)
    assert_clean_error(p, "no person" if pose_available() else "no person mask")
    assert_no_partial(out, set())


SAMPLE = __import__("pathlib").Path(__file__).resolve().parents[2].parent / "shared" / "data" / "body_photos"


@pytest.fixture(scope="module")
def tiny_prior_ckpt(tmp_path_factory):
    from reconstruct.body.model import PIFu, PIFuConfig
    from reconstruct.body.train import save_weights

    torch.manual_seed(0)
    m = PIFu(PIFuConfig(name="small", hg_channels=16, stem_channels=8, mlp=(16,), tex_channels=8, tex_mlp=(8,),
                        image_size=64, prior_size=32))
    p = tmp_path_factory.mktemp("ckpt") / "tiny_prior.safetensors"
    save_weights(m, p, {"steps": 0})
    return p


@pytest.mark.skipif(not (SAMPLE / "ryota.png").is_file(), reason="../shared/data/body_photos is absent")
@pytest.mark.parametrize("which", ["plain", "prior"])
def test_sample_photo_without_its_mask(tmp_path, tiny_ckpt, tiny_prior_ckpt, which):
    """The sample photo (nearly opaque alpha: no cut-out) is segmented by the pose model; a
    checkpoint trained with the prior also gets the fitted body."""
    from reconstruct.body.prior import pose_available
    from studio.pipelines.body import reconstruct_body

    if not pose_available():
        pytest.skip("mediapipe (faces extra) is not installed")
    ckpt = tiny_ckpt if which == "plain" else tiny_prior_ckpt
    res = reconstruct_body(SAMPLE / "ryota.png", tmp_path / "b.glb", checkpoint=ckpt, resolution=128,
                           turntable=False, sign=False)
    assert (tmp_path / "b.glb").is_file()
    assert "segment_pose" in res.seconds
    assert (res.prior is not None) == (which == "prior")
    if res.prior is not None:
        assert res.prior["landmark_error_px"] < 20


def test_empty_mask(person, home, tmp_path, tiny_ckpt):
    Image.fromarray(np.zeros((256, 192), np.uint8)).save(person / "empty.png")
    out = _out(tmp_path)
    p = run_cli(["body", "reconstruct", person / "person_rgb.png", "--mask", person / "empty.png",
                 "-o", out / "b.glb", "--checkpoint", tiny_ckpt], home)
    assert_clean_error(p, "mask", "empty")
    assert_no_partial(out, set())


def test_mask_of_another_size(person, home, tmp_path, tiny_ckpt):
    Image.fromarray(np.full((100, 100), 255, np.uint8)).save(person / "small.png")
    out = _out(tmp_path)
    p = run_cli(["body", "reconstruct", person / "person_rgb.png", "--mask", person / "small.png",
                 "-o", out / "b.glb", "--checkpoint", tiny_ckpt], home)
    assert_clean_error(p, "100x100", "192x256")
    assert_no_partial(out, set())


def test_huge_photo(person, home, tmp_path, tiny_ckpt):
    (person / "huge.png").write_bytes(_png_declaring(50000, 50000))
    out = _out(tmp_path)
    p = run_cli(["body", "reconstruct", person / "huge.png", "-o", out / "b.glb", "--checkpoint", tiny_ckpt], home)
    assert_clean_error(p, "too large")
    assert_no_partial(out, set())


def test_corrupt_and_foreign_checkpoints(person, home, tmp_path):
    out = _out(tmp_path)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a checkpoint at all")
    p = run_cli(["body", "reconstruct", person / "person.png", "-o", out / "b.glb", "--checkpoint", bad], home)
    assert_clean_error(p, "not a readable safetensors")
    from safetensors.torch import save_file

    other = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(other), metadata={"schema": "nerf-head/1"})
    p = run_cli(["body", "reconstruct", person / "person.png", "-o", out / "b.glb", "--checkpoint", other], home)
    assert_clean_error(p, "not a dhstudio PIFu checkpoint")
    p = run_cli(["body", "reconstruct", person / "person.png", "-o", out / "b.glb",
                 "--checkpoint", tmp_path / "missing.safetensors"], home)
    assert_clean_error(p, "does not exist")
    assert_no_partial(out, set())


def test_bad_output(person, home, tmp_path, tiny_ckpt):
    p = run_cli(["body", "reconstruct", person / "person.png", "-o", tmp_path / "b.stl", "--checkpoint", tiny_ckpt], home)
    assert_clean_error(p, ".glb")
    p = run_cli(["body", "reconstruct", person / "person.png", "-o", tmp_path / "nope" / "b.glb",
                 "--checkpoint", tiny_ckpt], home)
    assert_clean_error(p, "does not exist")


@pytest.mark.parametrize("mode", ["L", "I;16"])
def test_grayscale_and_16bit_photos_are_accepted(person, home, tmp_path, tiny_ckpt, mode):
    a = np.asarray(Image.open(person / "person_rgb.png").convert("L"))
    im = Image.fromarray(a) if mode == "L" else Image.fromarray(a.astype(np.uint16) * 257)
    im.save(person / f"photo_{mode.replace(';', '')}.png")
    out = _out(tmp_path)
    p = run_cli(["body", "reconstruct", person / f"photo_{mode.replace(';', '')}.png", "--mask", person / "mask.png",
                 "-o", out / "b.glb", "--checkpoint", tiny_ckpt, "--resolution", "128", "--no-turntable",
                 "--no-sign"], home, timeout=120)
    # an untrained tiny network may or may not find a surface; either way: a mesh or one clean error
    if p.returncode == 0:
        assert {f.name for f in out.iterdir()} == {"b.glb"}
    else:
        assert_clean_error(p, "reconstruction failed")
        assert_no_partial(out, set())


def test_train_depth_and_depthnet_bad_input(home, tmp_path):
    """`body train-depth` on a folder that is no dataset, bad sizes; `body train --depthnet` with a
    file that is not a depth net, or together with --depth-head: one clear line each."""
    p = run_cli(["body", "train-depth", tmp_path, "-o", tmp_path / "run"], home)
    assert_clean_error(p, "not a dataset folder")
    p = run_cli(["body", "train-depth", tmp_path, "-o", tmp_path / "run", "--image-size", "100"], home)
    assert_clean_error(p, "multiple of 16")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 64)
    p = run_cli(["body", "train", tmp_path, "-o", tmp_path / "run2", "--depthnet", bad], home)
    assert_clean_error(p)
    p = run_cli(["body", "train", tmp_path, "-o", tmp_path / "run3", "--depthnet", bad, "--depth-head"], home)
    assert_clean_error(p, "exclude each other")


def test_person_out_of_range_or_invalid(person, home, tmp_path, tiny_ckpt):
    """--person N: 0 is refused; N beyond the people in the photo is one clear line (here the
    photo holds no person the pose model finds, or, without it, --person needs it)."""
    from reconstruct.body.prior import pose_available

    out = _out(tmp_path)
    p = run_cli(["body", "reconstruct", person / "person.png", "-o", out / "b.glb", "--checkpoint", tiny_ckpt,
                 "--person", "0"], home)
    assert_clean_error(p, "--person must be 1-4" if pose_available() else "--person needs the pose model")
    p = run_cli(["body", "reconstruct", person / "person.png", "-o", out / "b.glb", "--checkpoint", tiny_ckpt,
                 "--person", "2"], home)
    assert_clean_error(p, "no person" if pose_available() else "--person needs the pose model")
    assert_no_partial(out, set())
