"""Head field and renderer: SH basis, compositing, occupancy-grid skipping, expressions,
checkpoints, SSIM, and a tiny training run on a synthetic capture."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")

from reconstruct.head.field import FieldConfig, HeadField, UnknownExpressionError, spherical_harmonics  # noqa: E402
from reconstruct.head.render import (OccupancyGrid, composite, render_image, render_rays,  # noqa: E402
                                     render_step, sample_along_rays)
from reconstruct.head.train import (HeadTrainConfig, evaluate_head, load_head, psnr, save_head, ssim,  # noqa: E402
                                    train_head)

REPO_ROOT = Path(__file__).resolve().parents[3]
ICT_DIR = REPO_ROOT.parent / "shared" / "data" / "ict_face"

NAMES = ("jawOpen", "mouthSmile_L", "mouthSmile_R", "eyeBlink_L")


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _small_cfg(**kw) -> FieldConfig:
    base = dict(box_min=(-1, -1, -1), box_max=(1, 1, 1), expression_names=NAMES, n_levels=4,
                log2_hashmap_size=12, max_resolution=64, hidden_dim=16, color_hidden_dim=16)
    base.update(kw)
    return FieldConfig(**base)


def _pinhole_rays(size: int, eye=(0.0, 0.0, -3.0), fov_deg: float = 40.0):
    """(H, W, 3) origins and unit directions of a camera at ``eye`` looking down +z."""
    f = 0.5 * size / math.tan(math.radians(fov_deg) / 2)
    j, i = np.meshgrid(np.arange(size) + 0.5, np.arange(size) + 0.5)
    d = np.stack([(j - size / 2) / f, (i - size / 2) / f, np.ones_like(j)], -1)
    d /= np.linalg.norm(d, axis=-1, keepdims=True)
    o = np.broadcast_to(np.asarray(eye, np.float64), d.shape)
    return torch.tensor(o, dtype=torch.float32), torch.tensor(d, dtype=torch.float32)


# ------------------------------------------------------------------------------ SH basis

def test_sh_basis_is_orthonormal_up_to_band_4():
    # Gauss-Legendre in cos(theta) x uniform phi: exact for the degree-8 products of two l <= 4 terms
    z, wz = np.polynomial.legendre.leggauss(12)
    phi = np.arange(24) * 2 * np.pi / 24
    zz, pp = np.meshgrid(z, phi, indexing="ij")
    r = np.sqrt(1 - zz ** 2)
    dirs = torch.tensor(np.stack([r * np.cos(pp), r * np.sin(pp), zz], -1).reshape(-1, 3))
    w = torch.tensor((wz[:, None] * np.full(24, 2 * np.pi / 24)[None]).reshape(-1))
    for degree in range(1, 6):
        y = spherical_harmonics(dirs, degree)
        assert y.shape == (dirs.shape[0], degree ** 2)
        gram = (y * w[:, None]).T @ y
        assert torch.allclose(gram, torch.eye(degree ** 2, dtype=gram.dtype), atol=1e-10), degree
    # the 16-coefficient basis the field uses is the first 16 of the 25
    assert torch.equal(spherical_harmonics(dirs, 4), spherical_harmonics(dirs, 5)[:, :16])
    with pytest.raises(ValueError, match="degree"):
        spherical_harmonics(dirs, 6)


# ------------------------------------------------------------------------------ compositing

class SlabField:
    """Density ``sigma`` for ``z0 <= z <= z1`` (constant colour), empty elsewhere; box [-1, 1]^3."""

    def __init__(self, sigma: float, z0: float, z1: float, colour=(0.2, 0.6, 0.9)):
        self.box = torch.tensor([[-1.0, -1, -1], [1, 1, 1]])
        self.sigma, self.z0, self.z1 = sigma, z0, z1
        self.colour = torch.tensor(colour)

    def query_density(self, x, cond=None):
        inside = (x[:, 2] >= self.z0) & (x[:, 2] <= self.z1)
        return inside.float() * self.sigma, x.new_zeros(x.shape[0], 1)

    def query_color(self, geo, dirs, cond=None):
        return self.colour.expand(geo.shape[0], 3)


@pytest.mark.parametrize("sigma", [0.5, 3.0, 40.0])
def test_constant_slab_gives_analytic_opacity_and_colour(sigma):
    field = SlabField(sigma, -0.25, 0.25)
    bg = torch.tensor([1.0, 0.5, 0.0])
    o = torch.tensor([[0.0, 0.0, -3.0], [0.3, -0.2, -3.0]])
    d = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    # rays enter the box at t = 2; samples at 2 + (k + 0.5) * 0.05 cover the slab with 10 samples
    out = render_rays(field, o, d, grid=None, step=0.05, background=bg, t_threshold=0.0)
    acc = 1 - math.exp(-sigma * 0.5)
    assert torch.allclose(out["acc"], torch.full((2,), acc), atol=1e-5)
    want = field.colour * acc + bg * (1 - acc)
    assert torch.allclose(out["rgb"], want.expand(2, 3), atol=1e-5)
    # expected depth of a uniform slab from t = 2.75 to 3.25 (continuous limit, within one step)
    L = 0.5
    depth = 2.75 + 1 / sigma - L * math.exp(-sigma * L) / (1 - math.exp(-sigma * L))
    assert abs(float(out["depth"][0]) - depth) < 0.05


def test_composite_matches_the_product_formula_and_masks():
    g = torch.Generator().manual_seed(0)
    sigma = torch.rand(3, 7, generator=g) * 5
    rgb = torch.rand(3, 7, 3, generator=g)
    t = torch.arange(7.0).expand(3, 7) * 0.1
    valid = torch.ones(3, 7, dtype=torch.bool)
    valid[1, 4:] = False
    out = composite(sigma, rgb, t, 0.1, valid)
    for r in range(3):
        trans, col, acc = 1.0, torch.zeros(3), 0.0
        for k in range(7):
            if not valid[r, k]:
                continue
            a = 1 - math.exp(-float(sigma[r, k]) * 0.1)
            col += trans * a * rgb[r, k]
            acc += trans * a
            trans *= 1 - a
        assert torch.allclose(out["rgb"][r], col, atol=1e-5)
        assert abs(float(out["acc"][r]) - acc) < 1e-5


def test_early_termination_changes_little():
    field = SlabField(400.0, -0.5, 0.5)
    o, d = torch.tensor([[0.0, 0.0, -3.0]]), torch.tensor([[0.0, 0.0, 1.0]])
    full = render_rays(field, o, d, step=0.01, t_threshold=-1.0)  # keeps every sample
    early = render_rays(field, o, d, step=0.01)
    # 200 samples cross the box; 50 lie before the slab, and T < 1e-4 after 3 slab samples
    assert int(full["n_samples"]) == 200
    assert int(early["n_samples"]) <= 50 + 4
    assert torch.allclose(early["rgb"], full["rgb"], atol=1e-3)
    assert abs(float(early["acc"]) - float(full["acc"])) < 1e-3


# ------------------------------------------------------------------------------ occupancy grid

class BallField:
    """Smooth density bump of radius R at c (zero outside), colour varying with position."""

    def __init__(self, centre=(0.2, -0.1, 0.0), radius=0.3, peak=60.0):
        self.box = torch.tensor([[-1.0, -1, -1], [1, 1, 1]])
        self.c, self.r, self.peak = torch.tensor(centre), radius, peak
        self.calls = 0

    def query_density(self, x, cond=None):
        self.calls += x.shape[0]
        q = ((x - self.c) ** 2).sum(-1) / self.r ** 2
        return self.peak * (1 - q).clamp(min=0) ** 2, (x - self.box[0]) / 2

    def query_color(self, geo, dirs, cond=None):
        return geo.clamp(0, 1)


def test_occupancy_grid_skips_empty_space():
    field = BallField()
    step = render_step(field.box)
    grid = OccupancyGrid(field.box, resolution=32, threshold=1e-3, warmup_updates=4)
    o, d = _pinhole_rays(24)
    # before any update every cell is occupied: the grid changes nothing
    assert grid.occupied_fraction == 1.0
    t0, v0 = sample_along_rays(o.reshape(-1, 3), d.reshape(-1, 3), field.box, step)
    t1, v1 = sample_along_rays(o.reshape(-1, 3), d.reshape(-1, 3), field.box, step, grid=grid)
    assert int(v0.sum()) == int(v1.sum())

    gen = torch.Generator().manual_seed(0)
    for _ in range(6):
        grid.update(lambda x: field.query_density(x)[0], step, generator=gen)
    cell = 2 / 32
    # the ball's cells grown by one (dilate=1) fill at most the ball of radius r + 2 cell diagonals
    cell_diag = math.sqrt(3) * cell
    assert int(grid.bits.sum()) * cell ** 3 <= 4 / 3 * math.pi * (field.r + 2 * cell_diag) ** 3
    assert grid.occupied_fraction < 0.05

    t, valid = sample_along_rays(o.reshape(-1, 3), d.reshape(-1, 3), field.box, step, grid=grid)
    rows, cols = torch.nonzero(valid, as_tuple=True)
    x = o.reshape(-1, 3)[rows] + t[rows, cols, None] * d.reshape(-1, 3)[rows]
    assert float(torch.linalg.norm(x - field.c, dim=-1).max()) <= field.r + 2 * cell_diag
    assert valid.sum() < 0.1 * v0.sum()

    with_grid = render_image(field, o, d, grid=grid)
    field.calls = 0
    without = render_image(field, o, d, grid=None)
    assert field.calls > 5 * int(valid.sum())
    assert with_grid["acc"].max() > 0.9
    assert np.abs(with_grid["rgb"] - without["rgb"]).max() < 1e-3
    assert np.abs(with_grid["acc"] - without["acc"]).max() < 1e-3


# ------------------------------------------------------------------------------ the field

def test_expression_encoding_and_errors():
    field = HeadField(_small_cfg(), backend="torch")
    e = field.encode_expression({"jawOpen": 0.5, "eyeBlink_L": 1})
    assert e.tolist() == [0.5, 0.0, 0.0, 1.0]
    assert field.encode_expression(None).tolist() == [0.0] * 4
    with pytest.raises(UnknownExpressionError, match="'jawOpne'.*did you mean jawOpen"):
        field.encode_expression({"jawOpne": 0.5})
    with pytest.raises(UnknownExpressionError, match="valid names include jawOpen, mouthSmile_L"):
        field.encode_expression({"zzz": 0.5})
    with pytest.raises(ValueError, match="finite"):
        field.encode_expression({"jawOpen": float("nan")})
    with pytest.raises(TypeError, match="mapping"):
        field.encode_expression([0.5])
    x, dirs = torch.rand(5, 3) - 0.5, torch.nn.functional.normalize(torch.randn(5, 3), dim=-1)
    with pytest.raises(ValueError, match=r"expression must be \(5, 4\)"):
        field(x, dirs, torch.zeros(5, 3))
    sigma, rgb = field(x, dirs, e.expand(5, -1))
    assert sigma.shape == (5,) and rgb.shape == (5, 3) and bool((sigma >= 0).all())
    # the density depends on the expression (the jaw can open)
    with torch.no_grad():
        field.expression_proj.weight.fill_(1.0)
        s0, _ = field.query_density(x, {"expression": torch.zeros(5, 4)})
        s1, _ = field.query_density(x, {"expression": e.expand(5, -1)})
    assert not torch.allclose(s0, s1)
    # outside the box the field is empty
    s_out, _ = field.query_density(torch.tensor([[2.0, 0, 0]]))
    assert float(s_out.detach()) == 0.0


def test_field_config_round_trip_and_validation():
    cfg = _small_cfg(latent_dim=4, n_latents=3)
    d = json.loads(json.dumps(cfg.to_dict()))
    assert d["schema"] == "dhstudio.head-field/1"
    assert FieldConfig.from_dict(d) == cfg
    with pytest.raises(ValueError, match="not a head field config"):
        FieldConfig.from_dict({**d, "schema": "dhstudio.pifu/1"})
    with pytest.raises(ValueError, match="unknown keys"):
        FieldConfig.from_dict({**d, "colour_layers": 3})
    with pytest.raises(ValueError, match="box_max must exceed box_min"):
        FieldConfig(box_min=(0, 0, 0), box_max=(1, 0, 1))
    with pytest.raises(ValueError, match="latent_dim"):
        FieldConfig(latent_dim=4)


def test_checkpoint_round_trip_and_load_errors(tmp_path):
    torch.manual_seed(0)
    field = HeadField(_small_cfg(latent_dim=2, n_latents=3), backend="torch")
    with torch.no_grad():
        for p in field.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    grid = OccupancyGrid(field.box, resolution=8, warmup_updates=1)
    grid.update(lambda x: field.query_density(x)[0], render_step(field.box))
    path = tmp_path / "model.safetensors"
    save_head(field, path, grid, {"steps": 3})
    loaded = load_head(tmp_path, backend="torch")
    for k, v in field.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k
    assert loaded.cfg == field.cfg and loaded.training_info == {"steps": 3}
    assert torch.equal(loaded.occupancy_grid.bits, grid.bits)
    assert torch.equal(loaded.occupancy_grid.density, grid.density)
    x, dirs = torch.rand(4, 3) - 0.5, torch.nn.functional.normalize(torch.randn(4, 3), dim=-1)
    e = field.encode_expression({"jawOpen": 0.3}).expand(4, -1)
    frame = torch.tensor([0, 1, 2, -1])
    with torch.no_grad():
        a, b = field(x, dirs, e, frame), loaded(x, dirs, e, frame)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])

    st = pytest.importorskip("safetensors.torch")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_head(tmp_path / "nope.safetensors")
    bad = tmp_path / "corrupt.safetensors"
    bad.write_bytes(b"\x00\x01garbage" * 10)
    with pytest.raises(ValueError, match="not a readable safetensors"):
        load_head(bad)
    trunc = tmp_path / "trunc.safetensors"
    trunc.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match="not a readable safetensors"):
        load_head(trunc)
    pifu = tmp_path / "pifu.safetensors"
    pifu.write_bytes(st.save({"w": torch.zeros(2)}, metadata={"schema": "dhstudio.pifu-weights/1"}))
    with pytest.raises(ValueError, match="not a dhstudio head avatar checkpoint.*pifu-weights"):
        load_head(pifu)
    # weights that do not match the config in the metadata
    tensors = {k: v.contiguous() for k, v in field.state_dict().items()}
    meta = {"schema": "dhstudio.head-weights/1", "config": _small_cfg(hidden_dim=32, latent_dim=2,
                                                                         n_latents=3).to_json()}
    wrong = tmp_path / "wrong.safetensors"
    wrong.write_bytes(st.save(tensors, metadata=meta))
    with pytest.raises(ValueError, match="does not match the head field"):
        load_head(wrong)
    meta["config"] = json.dumps({"schema": "dhstudio.head-field/1", "hidden": 3})
    wrong.write_bytes(st.save(tensors, metadata=meta))
    with pytest.raises(ValueError, match="bad head field config"):
        load_head(wrong)


# ------------------------------------------------------------------------------ metrics

def test_ssim_known_values():
    rng = np.random.default_rng(0)
    x = rng.random((32, 32, 3))
    assert ssim(x, x) == pytest.approx(1.0, abs=1e-12)
    # constant images: no structure, SSIM = (2ab + C1) / (a^2 + b^2 + C1)
    a, b, c1 = 0.5, 0.25, 0.01 ** 2
    assert ssim(np.full((16, 16), a), np.full((16, 16), b)) == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1))
    # negated contrast around the same mean: luminance 1, contrast-structure (-s^2 + C2) / (s^2 + C2)
    y = 0.5 + 0.2 * np.sign(rng.standard_normal((64, 64)))
    s = ssim(y, 1.0 - y)
    assert -1.0 < s < -0.5
    noise = rng.normal(0, 1, x.shape)
    s_small, s_big = ssim(x, x + 0.02 * noise), ssim(x, x + 0.2 * noise)
    assert 1.0 > s_small > s_big > 0.0
    assert psnr(x, x) == 100.0
    assert psnr(np.zeros((4, 4)), np.full((4, 4), 0.1)) == pytest.approx(20.0)
    with pytest.raises(ValueError, match="shape"):
        ssim(x, x[:-1])


# ------------------------------------------------------------------------------ training

def _require_synth():
    if not (ICT_DIR / "ict_face_model.npz").is_file():
        pytest.skip(f"ICT face model absent ({ICT_DIR})")
    from reconstruct._deps import MissingExtra, require

    try:
        require("open3d")
    except MissingExtra as e:
        pytest.skip(f"the [body] extra (open3d) is not usable: {e}")


def test_tiny_training_run_improves_and_resumes(tmp_path):
    _require_synth()
    from reconstruct.head.synth import synth_capture

    cap_dir = tmp_path / "cap"
    synth_capture(cap_dir, face_model_path=ICT_DIR, n_views=4, n_frames=3, size=32, supersample=1)
    out = tmp_path / "run"
    cfg = HeadTrainConfig(steps=0, batch_rays=512, backend="torch", grid_warmup_updates=2, grid_resolution=32,
                          ckpt_every=1000, log_every=10,
                          field=FieldConfig(log2_hashmap_size=14, max_resolution=256))
    train_head(cap_dir, out, cfg, progress=False)
    before = evaluate_head(out, cap_dir, n_train=2, max_frames=2)
    cfg.steps = 70
    summary = train_head(cap_dir, out, cfg, progress=False)  # resumes from step 0
    assert summary["steps"] == 70
    after = evaluate_head(out, cap_dir, n_train=2, max_frames=2)
    assert all(math.isfinite(v) for v in after.values()), after
    assert after["train_psnr"] > before["train_psnr"] + 5.0, (before, after)
    assert after["test_view_frames"] == 2 and after["test_expression_frames"] == 2
    assert 0.0 < after["test_expression_ssim"] <= 1.0
    state = json.loads((out / "state.json").read_text())
    assert state["step"] == 70
    model = load_head(out)
    assert "jawOpen" in model.expression_names and model.occupancy_grid.updates > 0
    # a run folder is not resumed with another configuration
    with pytest.raises(ValueError, match="another configuration"):
        train_head(cap_dir, out, HeadTrainConfig(steps=71, batch_rays=256, backend="torch"), progress=False)


def test_segment_marching_matches_one_pass_and_stops_early():
    """Rendering without gradients marches SEGMENT samples at a time and stops each ray at its
    surface: the same image as the one-pass path, with far fewer density evaluations."""
    from reconstruct.head.render import render_rays

    field = BallField(peak=5000.0)  # a sharp surface, like a trained head's
    grid = OccupancyGrid(field.box, resolution=32, threshold=1e-3, warmup_updates=4)
    gen = torch.Generator().manual_seed(0)
    for _ in range(4):
        grid.update(lambda x: field.query_density(x)[0], render_step(field.box), generator=gen)
    o, d = _pinhole_rays(24)
    o, d = o.reshape(-1, 3), d.reshape(-1, 3)
    with torch.no_grad():
        for g in (None, grid):
            field.calls = 0
            one = render_rays(field, o, d, grid=g, segment=None)
            calls_one = field.calls
            for seg in (1, 5, 16, 1000):
                seg_out = render_rays(field, o, d, grid=g, segment=seg)
                for key in ("rgb", "acc", "depth"):
                    assert torch.allclose(seg_out[key], one[key], atol=1e-5), (seg, key)
                assert int(seg_out["n_samples"]) == int(one["n_samples"])
            field.calls = 0
            render_rays(field, o, d, grid=g, segment=16)
            assert one["acc"].max() > 0.99  # opaque: the rays do terminate inside the ball
        # through the grid, the samples are the ball's: those behind its front surface are skipped
        assert field.calls < 0.75 * calls_one, (field.calls, calls_one)
