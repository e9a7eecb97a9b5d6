"""Train a head avatar (:class:`reconstruct.head.field.HeadField`) on a capture, resume, load, evaluate.

Training (Instant-NGP recipe, on the capture's ``train`` frames): each step draws ``batch_rays``
pixels uniformly over all training pixels, renders them with their frame's expression vector
(and per-frame latent when enabled) through the occupancy grid, and minimises the MSE on RGB
plus, when the capture has masks, ``mask_weight`` times the MSE between the rendered opacity
and the mask (the synthetic captures' masks are the head's silhouette). Adam with
``betas=(0.9, 0.99)``, ``eps=1e-15``, learning rate ``lr`` on the hash table and ``lr_mlp``
(with weight decay ``weight_decay``) on the networks, both divided by 3 at 50 %, 75 % and 90 %
of the run (by steps or by ``max_seconds``, whichever is nearer its end). The occupancy grid is
refreshed every ``grid_every`` steps from the densities under random training expressions (the
grid is the union over expressions, so the open jaw stays occupied).

The run folder holds:

- ``model.safetensors``: the field's weights and the occupancy grid, with metadata ``schema``
  (``dhstudio.head-weights/1``), ``config`` (the field config JSON), ``occupancy`` and
  ``training``; what :func:`load_head` reads;
- ``state.safetensors`` + ``state.json``: optimiser moments, step, elapsed seconds, RNG states
  and the training config (resume: run again with the same config and folder);
- ``log.jsonl``: one line per ``log_every`` steps.

Evaluation (:func:`evaluate_head`): PSNR and SSIM (Gaussian window 11x11, sigma 1.5, Wang et
al. 2004) on ``test_view`` and ``test_expression`` frames, PSNR on a few training frames.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .._deps import require
from .._threads import choose_threads
from .data import visual_hull, write_atomic
from .field import FieldConfig

WEIGHTS_SCHEMA = "dhstudio.head-weights/1"
STATE_VERSION = 1
EXPRESSION_NAME_MODES = ("used", "all")
GRID_CARVE_MODES = ("hull", "none")
ADDED_CONFIG_DEFAULTS = {"grid_carve": "none"}
"""Config keys added after runs were saved, with the value an older run had (for resume)."""


def _cpu_field() -> FieldConfig:
    return FieldConfig(log2_hashmap_size=16, max_resolution=512)


@dataclass
class HeadTrainConfig:
    """Settings of a head training run."""

    steps: int = 3000
    """Optimiser steps (the run also stops at ``max_seconds``)."""
    max_seconds: float | None = None
    """Wall-clock budget of the training loop in seconds (None: none); resumed runs count the
    time already spent."""
    batch_rays: int = 2048
    """Rays per step (Instant-NGP on a GPU: ~2^18 samples; on a CPU 1-4k rays)."""
    lr: float = 1e-2
    """Adam learning rate of the hash table."""
    lr_mlp: float = 5e-3
    """Adam learning rate of the MLPs, the expression projection and the latent codes."""
    weight_decay: float = 1e-6
    """L2 weight decay on the MLPs (Instant-NGP: 1e-6)."""
    mask_weight: float = 0.1
    """Weight of the opacity-vs-mask MSE (used when the capture has masks; 0 turns it off)."""
    background: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """Background colour composited behind the head (the synthetic captures' is black)."""
    steps_per_diagonal: int = 256
    """Marching step = box diagonal / this."""
    grid_resolution: int = 64
    """Occupancy grid cells per axis."""
    grid_every: int = 16
    """Steps between occupancy grid updates."""
    grid_threshold: float = 0.01
    """One-step opacity below which a cell is empty."""
    grid_warmup_updates: int = 16
    """Updates that refresh every cell before switching to a random quarter + the occupied ones."""
    grid_dilate: int = 1
    """Cells by which the occupied set is grown after each update (0: none)."""
    grid_carve: str = "hull"
    """``hull``: when the capture has silhouette masks, the occupancy grid starts as their visual
    hull (:func:`reconstruct.head.data.visual_hull`) and never grows outside it, so the first
    steps already skip the empty box; ``none``: the grid starts full (Instant-NGP's start)."""
    box_padding: float = 0.05
    """Fraction of each side added around the capture's ``dhstudio.scene_box`` (when the field
    config keeps the default box)."""
    expression_names: str = "used"
    """``used``: the names with a non-zero weight in some training frame; ``all``: every name the
    capture declares."""
    field: FieldConfig = dataclasses.field(default_factory=_cpu_field)
    """Field hyper-parameters; the box, the expression names and the latent count are filled in
    from the capture (box only when left at its default)."""
    backend: str = "auto"
    """Hash grid backend (``auto``, ``torch``, ``tcnn``, ``triton``)."""
    device: str = "cpu"
    """Where the field trains: ``cpu``, ``cuda`` (or ``cuda:N``), or ``auto`` (CUDA when torch sees
    a GPU). The tcnn and triton backends need CUDA."""
    seed: int = 0
    ckpt_every: int = 500
    """Steps between checkpoints (also written on exit)."""
    log_every: int = 50
    threads: int | None = None
    """torch intra-op threads (None: the cores idle when the run starts, at least one:
    :func:`reconstruct._threads.choose_threads`; two threads sharing a busy core are several
    times slower than one thread on the free core)."""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["field"] = self.field.to_dict()
        d["background"] = list(self.background)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HeadTrainConfig:
        d = dict(d)
        if "field" in d:
            d["field"] = FieldConfig.from_dict(d["field"])
        if "background" in d:
            d["background"] = tuple(d["background"])
        return cls(**d)


# ------------------------------------------------------------------------------ weights I/O

def save_head(field_model, path: Path | str, grid=None, extra: dict | None = None) -> None:
    """Weights (+ occupancy grid) and config in one safetensors file, atomically."""
    st = require("safetensors.torch")
    tensors = {k: v.detach().contiguous().cpu() for k, v in field_model.state_dict().items()}
    meta = {"schema": WEIGHTS_SCHEMA, "config": field_model.cfg.to_json()}
    if grid is not None:
        tensors.update({k: v.cpu().contiguous() for k, v in grid.state_tensors().items()})
        meta["occupancy"] = json.dumps(grid.state_meta())
    if extra:
        meta["training"] = json.dumps(extra, sort_keys=True)
    write_atomic(Path(path), st.save(tensors, metadata=meta))


def load_head(path: Path | str, *, backend: str = "auto", device: str = "cpu"):
    """A :class:`HeadField` from ``model.safetensors`` (or its run folder), in eval mode.

    The occupancy grid saved with it is attached as ``field.occupancy_grid`` (used by
    :func:`reconstruct.head.render.render_image`); ``field.training_info`` holds the training
    summary. Raises ``FileNotFoundError`` for a missing file and ``ValueError`` with one line
    for a file that is not safetensors, another schema or weights that do not match the config.
    """
    torch = require("torch")
    st = require("safetensors")
    from .field import HeadField
    from .render import OccupancyGrid

    path = Path(path)
    if path.is_dir():
        path = path / "model.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"head checkpoint {path} does not exist")
    try:
        with st.safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises several types for corrupt headers
        raise ValueError(f"{path} is not a readable safetensors checkpoint ({str(e).splitlines()[0]})") from None
    schema = meta.get("schema")
    if schema != WEIGHTS_SCHEMA:
        raise ValueError(f"{path} is not a dhstudio head avatar checkpoint (schema {schema!r}, expected "
                         f"{WEIGHTS_SCHEMA!r})")
    try:
        cfg = FieldConfig.from_dict(json.loads(meta["config"]))
    except (KeyError, ValueError, TypeError) as e:
        raise ValueError(f"{path}: bad head field config in checkpoint ({e})") from None
    model = HeadField(cfg, backend=backend)
    weights = {k: v for k, v in tensors.items() if not k.startswith("occupancy.")}
    expected = model.state_dict()
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    if missing or unexpected:
        raise ValueError(f"{path} does not match the head field its config describes: missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]}")
    bad = [f"{k} {tuple(weights[k].shape)} != {tuple(v.shape)}" for k, v in expected.items()
           if weights[k].shape != v.shape]
    if bad:
        raise ValueError(f"{path} does not match the head field its config describes: {bad[0]}"
                         + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""))
    model.load_state_dict(weights)
    model.to(device).eval()
    grid = None
    if "occupancy" in meta:
        try:
            grid = OccupancyGrid.from_state(json.loads(meta["occupancy"]), tensors).to(device)
        except (KeyError, ValueError, TypeError) as e:
            raise ValueError(f"{path}: bad occupancy grid in checkpoint ({e})") from None
    model.occupancy_grid = grid
    model.training_info = json.loads(meta.get("training", "{}"))
    del torch
    return model


# ------------------------------------------------------------------------------ data

class _RayData:
    """All pixels of some frames as flat tensors (origins, directions, colours, masks, ids)."""

    def __init__(self, cap, idx: Sequence[int], expr: np.ndarray, torch):
        o, d, rgb, m, fid = [], [], [], [], []
        has_mask = all(cap.frames[i].mask_path is not None for i in idx)
        for j, i in enumerate(idx):
            oi, di = cap.rays(i)
            o.append(oi.reshape(-1, 3)), d.append(di.reshape(-1, 3))
            rgb.append(cap.image(i).reshape(-1, 3))
            if has_mask:
                m.append(cap.mask(i).reshape(-1).astype(np.float32))
            fid.append(np.full(oi.shape[0] * oi.shape[1], j, np.int64))
        self.origins = torch.from_numpy(np.concatenate(o))
        self.dirs = torch.from_numpy(np.concatenate(d))
        self.rgb = torch.from_numpy(np.concatenate(rgb))
        self.mask = torch.from_numpy(np.concatenate(m)) if has_mask else None
        self.frame = torch.from_numpy(np.concatenate(fid))
        self.expr = torch.from_numpy(np.ascontiguousarray(expr, np.float32))  # (F, E)

    def __len__(self) -> int:
        return self.origins.shape[0]


def _expression_names(cap, mode: str) -> tuple[str, ...]:
    if mode not in EXPRESSION_NAME_MODES:
        raise ValueError(f"expression_names must be one of {EXPRESSION_NAME_MODES}, got {mode!r}")
    declared = list(cap.expression_names or ())
    seen: list[str] = []
    for i in cap.indices("train"):
        for n, w in (cap.frames[i].expression or {}).items():
            if n not in seen and (mode == "all" or w != 0):
                seen.append(n)
    if mode == "all":
        return tuple(declared + [n for n in seen if n not in declared])
    order = {n: k for k, n in enumerate(declared)}
    return tuple(sorted(seen, key=lambda n: (order.get(n, len(order)), n)))


def _scene_box(cap, cfg: HeadTrainConfig) -> tuple[tuple[float, ...], tuple[float, ...]]:
    default = FieldConfig()
    if (cfg.field.box_min, cfg.field.box_max) != (default.box_min, default.box_max):
        return cfg.field.box_min, cfg.field.box_max
    box = (cap.extra.get("dhstudio") or {}).get("scene_box")
    if box is None:
        raise ValueError("the capture has no dhstudio.scene_box; give the field's box_min / box_max "
                         "(world units) in the training config")
    lo, hi = np.asarray(box[0], np.float64), np.asarray(box[1], np.float64)
    pad = (hi - lo) * cfg.box_padding
    return tuple(float(v) for v in lo - pad), tuple(float(v) for v in hi + pad)


def _train_device(cfg: HeadTrainConfig, torch):
    """The torch device of ``cfg.device``; a clear ValueError when CUDA is asked for and absent."""
    name = str(cfg.device)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {cfg.device!r}: torch sees no CUDA device (use device='cpu')")
    try:
        dev = torch.device(name)
    except RuntimeError as e:
        raise ValueError(f"device {cfg.device!r} is not a torch device: {e}") from None
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device {cfg.device!r}: only cpu and cuda are supported")
    if cfg.backend in ("tcnn", "triton") and dev.type != "cuda":
        if not (cfg.backend == "triton" and os.environ.get("TRITON_INTERPRET", "0") == "1"):
            raise ValueError(f"the {cfg.backend} hash grid backend trains on CUDA; set device='cuda'")
    return dev


def _lr_factor(step: int, elapsed: float, cfg: HeadTrainConfig) -> float:
    p = step / max(cfg.steps, 1)
    if cfg.max_seconds:
        p = max(p, elapsed / cfg.max_seconds)
    return 1.0 / 3.0 ** sum(p >= m for m in (0.5, 0.75, 0.9))


# ------------------------------------------------------------------------------ training

def train_head(capture_dir: Path | str, out_dir: Path | str, cfg: HeadTrainConfig | None = None, *,
               progress: bool = True) -> dict:
    """Train (or resume) a head field on ``capture_dir``'s train frames into ``out_dir``.

    Returns the summary: ``steps``, ``seconds``, ``steps_per_s``, ``train_psnr`` (running
    mean of the last batches), ``occupied`` (grid fraction), ``out``.
    """
    torch = require("torch")
    st = require("safetensors.torch")
    from .data import load_capture
    from .field import HeadField
    from .render import OccupancyGrid, render_rays, render_step

    cfg = cfg or HeadTrainConfig()
    if cfg.steps < 0 or cfg.batch_rays < 1:
        raise ValueError(f"steps must be >= 0 and batch_rays >= 1, got {cfg.steps} and {cfg.batch_rays}")
    out = Path(out_dir)
    cap = load_capture(capture_dir)
    train_idx = cap.indices("train")
    if not train_idx:
        raise ValueError(f"{capture_dir}: the capture has no training frames")
    out.mkdir(parents=True, exist_ok=True)
    threads = choose_threads(cfg.threads)
    torch.set_num_threads(threads)

    names = _expression_names(cap, cfg.expression_names)
    lo, hi = _scene_box(cap, cfg)
    n_lat = len(train_idx) if cfg.field.latent_dim else 0
    fcfg = dataclasses.replace(cfg.field, box_min=lo, box_max=hi, expression_names=names, n_latents=n_lat)
    data = _RayData(cap, train_idx, cap.expression_matrix(names, train_idx) if names else
                    np.zeros((len(train_idx), 0), np.float32), torch)
    use_mask = data.mask is not None and cfg.mask_weight > 0

    dev = _train_device(cfg, torch)
    torch.manual_seed(cfg.seed)
    # "auto" would pick tcnn (a CUDA module) whenever it is installed: on the CPU train with torch
    backend = "torch" if cfg.backend == "auto" and dev.type == "cpu" else cfg.backend
    model = HeadField(fcfg, backend=backend).to(dev)
    if cfg.grid_carve not in GRID_CARVE_MODES:
        raise ValueError(f"grid_carve must be one of {GRID_CARVE_MODES}, got {cfg.grid_carve!r}")
    grid = OccupancyGrid(model.box.cpu(), cfg.grid_resolution, threshold=cfg.grid_threshold,
                         warmup_updates=cfg.grid_warmup_updates, dilate=cfg.grid_dilate)
    if cfg.grid_carve == "hull" and data.mask is not None:
        grid.set_bound(visual_hull(cap, train_idx, model.box.cpu().numpy(), cfg.grid_resolution))
    grid = grid.to(dev)
    hash_params = [model.encoding.params]
    other = [p for n, p in model.named_parameters() if not n.startswith("encoding.")]
    opt = torch.optim.Adam([{"params": hash_params, "lr": cfg.lr, "weight_decay": 0.0},
                            {"params": other, "lr": cfg.lr_mlp, "weight_decay": cfg.weight_decay}],
                           betas=(0.9, 0.99), eps=1e-15)
    step, elapsed = 0, 0.0
    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    state_json = out / "state.json"
    cfg_d = cfg.to_dict()
    cfg_cmp = {k: v for k, v in cfg_d.items() if k not in ("threads", "steps", "max_seconds", "ckpt_every",
                                                           "log_every", "backend", "device")}
    if state_json.is_file():  # resume
        s = json.loads(state_json.read_text())
        prev = {**ADDED_CONFIG_DEFAULTS, **s.get("train_config", {})}
        prev = {k: v for k, v in prev.items() if k in cfg_cmp}
        if prev != cfg_cmp:
            diff = sorted(k for k in cfg_cmp if prev.get(k) != cfg_cmp[k])
            raise ValueError(f"{out} holds a run with another configuration (differs in {diff}); "
                             f"use a new folder")
        tensors = st.load_file(str(out / "state.safetensors"), device=str(dev))
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        grid = OccupancyGrid.from_state(s["occupancy"], tensors).to(dev)
        osd = opt.state_dict()
        for pid in s.get("opt_params", []):
            osd["state"][int(pid)] = {"step": torch.tensor(float(s["opt_step"][str(pid)])),
                                      "exp_avg": tensors[f"opt.{pid}.exp_avg"],
                                      "exp_avg_sq": tensors[f"opt.{pid}.exp_avg_sq"]}
        opt.load_state_dict(osd)
        step, elapsed = int(s["step"]), float(s["elapsed_s"])
        rng.bit_generator.state = s["rng"]
        gen.set_state(torch.tensor(s["torch_rng"], dtype=torch.uint8))

    step_size = render_step(model.box, cfg.steps_per_diagonal)
    background = torch.tensor(cfg.background, dtype=torch.float32, device=dev)
    expr_all = data.expr.to(dev)

    def density_for_grid(x):
        # a random training expression per point: over updates the grid covers every expression
        j = torch.randint(0, expr_all.shape[0], (x.shape[0],), generator=gen).to(dev)
        cond = {"expression": expr_all[j]} if expr_all.shape[1] else {}
        return model.query_density(x.to(dev), cond)[0]

    def checkpoint(step: int, elapsed: float) -> None:
        tensors = {f"model.{k}": v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        tensors.update(grid.state_tensors())
        pids, opt_step = [], {}
        for pid, stt in opt.state_dict()["state"].items():
            tensors[f"opt.{pid}.exp_avg"] = stt["exp_avg"].contiguous().cpu()
            tensors[f"opt.{pid}.exp_avg_sq"] = stt["exp_avg_sq"].contiguous().cpu()
            pids.append(pid)
            opt_step[str(pid)] = float(stt["step"])
        write_atomic(out / "state.safetensors", st.save(tensors))
        write_atomic(state_json, json.dumps({
            "version": STATE_VERSION, "step": step, "elapsed_s": elapsed, "train_config": cfg_d,
            "rng": rng.bit_generator.state, "torch_rng": gen.get_state().tolist(),
            "occupancy": grid.state_meta(), "opt_params": pids, "opt_step": opt_step}).encode())
        save_head(model, out / "model.safetensors", grid,
                  {"steps": step, "seconds": round(elapsed, 1), "train_config": cfg_d,
                   "capture": str(capture_dir), "train_frames": len(train_idx)})

    from .._trainloop import TrainLoop

    loop = TrainLoop(out, steps=cfg.steps, step=step, elapsed=elapsed, checkpoint=checkpoint,
                     ckpt_every=cfg.ckpt_every, desc="head train", progress=progress,
                     max_seconds=cfg.max_seconds)
    model.train()
    psnr_hist: list[float] = []
    n = len(data)
    with loop:
        for step in loop:
            if step % cfg.grid_every == 0:
                model.eval()
                grid.update(density_for_grid, step_size, generator=gen)
                model.train()
            f = _lr_factor(step, loop.elapsed, cfg)
            opt.param_groups[0]["lr"] = cfg.lr * f
            opt.param_groups[1]["lr"] = cfg.lr_mlp * f
            idx = torch.from_numpy(rng.integers(0, n, cfg.batch_rays))
            fr = data.frame[idx]
            cond = {}
            if expr_all.shape[1]:
                cond["expression"] = expr_all[fr.to(dev)]
            if model.latents is not None:
                cond["frame"] = fr.to(dev)
            outr = render_rays(model, data.origins[idx].to(dev), data.dirs[idx].to(dev), cond, grid=grid,
                               step=step_size, perturb=True, background=background, generator=gen)
            target = data.rgb[idx].to(dev)
            mse = torch.mean((outr["rgb"] - target) ** 2)
            loss = mse
            if use_mask:
                loss = loss + cfg.mask_weight * torch.mean((outr["acc"] - data.mask[idx].to(dev)) ** 2)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            psnr = -10.0 * math.log10(max(float(mse.detach()), 1e-10))
            psnr_hist = (psnr_hist + [psnr])[-20:]
            rec = None
            if (step + 1) % cfg.log_every == 0:
                rec = {"loss": float(loss.detach()), "psnr": psnr, "samples": int(outr["n_samples"]),
                       "occupied": grid.occupied_fraction, "lr_factor": f}
            loop.end_step({"psnr": f"{np.mean(psnr_hist):.2f}", "samples": int(outr["n_samples"]),
                           "occ": f"{grid.occupied_fraction:.3f}"}, rec)
    step, elapsed = loop.step, loop.elapsed
    return {"steps": step, "seconds": round(elapsed, 2), "steps_per_s": step / elapsed if elapsed else 0.0,
            "threads": threads,
            "train_psnr": float(np.mean(psnr_hist)) if psnr_hist else float("nan"),
            "occupied": grid.occupied_fraction, "out": str(out)}


# ------------------------------------------------------------------------------ metrics

def _gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    ax = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-(ax ** 2) / (2 * sigma ** 2))
    g /= g.sum()
    return g


def _filter_valid(img: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Separable 'valid' correlation of ``(H, W)`` with the 1-D window ``g`` on both axes."""
    k = g.shape[0]
    h, w = img.shape
    rows = sum(g[i] * img[i:h - k + 1 + i, :] for i in range(k))
    return sum(g[j] * rows[:, j:w - k + 1 + j] for j in range(k))


def ssim(a: np.ndarray, b: np.ndarray, *, data_range: float = 1.0, window: int = 11, sigma: float = 1.5,
         k1: float = 0.01, k2: float = 0.03) -> float:
    """Mean SSIM (Wang et al. 2004) of two ``(H, W)`` or ``(H, W, C)`` images.

    Gaussian window ``window x window`` with standard deviation ``sigma``, statistics over the
    'valid' positions (as the authors' ``ssim_index.m``), ``C1 = (k1 L)^2``, ``C2 = (k2 L)^2``;
    the mean over positions and channels.
    """
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"ssim: images differ in shape {a.shape} vs {b.shape}")
    if a.ndim == 2:
        a, b = a[..., None], b[..., None]
    if a.shape[0] < window or a.shape[1] < window:
        raise ValueError(f"ssim: images must be at least {window}x{window}, got {a.shape[:2]}")
    g = _gaussian_window(window, sigma)
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    vals = []
    for c in range(a.shape[2]):
        x, y = a[..., c], b[..., c]
        mx, my = _filter_valid(x, g), _filter_valid(y, g)
        sxx = _filter_valid(x * x, g) - mx * mx
        syy = _filter_valid(y * y, g) - my * my
        sxy = _filter_valid(x * y, g) - mx * my
        m = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
        vals.append(m.mean())
    return float(np.mean(vals))


def psnr(a: np.ndarray, b: np.ndarray, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB (capped at 100 for identical images)."""
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return 100.0 if mse <= 1e-10 * data_range ** 2 else 10.0 * math.log10(data_range ** 2 / mse)


def evaluate_head(ckpt_or_model, capture_dir: Path | str, splits: Sequence[str] = ("test_view", "test_expression"),
                  *, n_train: int = 4, max_frames: int | None = None, chunk: int = 8192,
                  background: Sequence[float] = (0.0, 0.0, 0.0), device: str = "cpu") -> dict:
    """PSNR / SSIM of the avatar against the capture's held-out frames.

    ``ckpt_or_model``: a checkpoint path / run folder or a loaded :class:`HeadField`. For each
    split in ``splits`` (frames rendered from their camera with their expression; the mean
    latent): ``{split}_psnr``, ``{split}_ssim`` (means over frames) and ``{split}_frames``; plus
    ``train_psnr`` on ``n_train`` training frames spread over the split (rendered with their own
    latent). ``max_frames`` caps the frames per split (spread evenly). A split without frames
    gives NaN and 0 frames. Expression names the avatar does not know are dropped; those with a
    non-zero weight are listed under ``ignored_expression_names``. ``device``: where a checkpoint
    path is loaded (``cpu`` or ``cuda``); a model passed in renders where it is.
    """
    from .data import load_capture
    from .render import render_image

    model = (load_head(ckpt_or_model, device=device) if isinstance(ckpt_or_model, (str, Path))
             else ckpt_or_model)
    cap = load_capture(capture_dir)
    train_idx = cap.indices("train")

    def pick(idx: list[int], k: int | None) -> list[int]:
        if k is None or len(idx) <= k:
            return idx
        return [idx[int(round(j))] for j in np.linspace(0, len(idx) - 1, k)]

    known = set(model.expression_names)
    ignored: set[str] = set()

    def run(idx: list[int], with_ssim: bool, latent: bool) -> tuple[list[float], list[float]]:
        ps, ss = [], []
        for i in idx:
            o, d = cap.rays(i)
            frame = train_idx.index(i) if latent and getattr(model, "latents", None) is not None else None
            full = cap.frames[i].expression or {}
            expr = {k: v for k, v in full.items() if k in known}
            ignored.update(k for k, v in full.items() if k not in known and v != 0)
            r = render_image(model, o, d, expr, frame=frame, chunk=chunk, background=background)["rgb"]
            gt = cap.image(i)
            ps.append(psnr(r, gt))
            if with_ssim:
                ss.append(ssim(r, gt))
        return ps, ss

    res: dict[str, Any] = {}
    for split in splits:
        idx = pick(cap.indices(split), max_frames)
        ps, ss = run(idx, True, False)
        res[f"{split}_psnr"] = float(np.mean(ps)) if ps else float("nan")
        res[f"{split}_ssim"] = float(np.mean(ss)) if ss else float("nan")
        res[f"{split}_frames"] = len(idx)
    ps, _ = run(pick(train_idx, n_train), False, True)
    res["train_psnr"] = float(np.mean(ps)) if ps else float("nan")
    res["train_frames"] = len(ps)
    if ignored:  # non-zero weights of names the avatar was not trained with (never seen in training)
        res["ignored_expression_names"] = sorted(ignored)
    return res


__all__ = ["WEIGHTS_SCHEMA", "HeadTrainConfig", "train_head", "save_head", "load_head", "evaluate_head", "ssim",
           "psnr"]
