"""Train the front/back depth U-Net (:mod:`reconstruct.body.depthnet`) on a body dataset.

Every training view of the dataset, at the net's size, with its ray-cast front and back depth
(``BodyDataset.depths``), is loaded once into memory (about 0.3 MB a view at 128 px). Each step
draws ``batch`` views, flips half of them left-right (a mirrored person is a person; orthographic
depth is unchanged by the flip), optionally applies PIFu's photo augmentation (hair caps, colour
jitter), and minimises the L1 depth error over the body's pixels plus the same error after the best per-view
depth shift (``relative_weight``; the body's shape, which the image shows better than where the
body sits along the view axis). Adam, cosine decay to 5 %.

Outputs in the run folder (resumable, like ``reconstruct.body.train``): ``depthnet.safetensors``
(weights + config + training summary in the metadata), ``state.safetensors`` + ``state.json``
(optimiser, step, RNG), ``log.jsonl``.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .._deps import require

WEIGHTS_SCHEMA = "dhstudio.body-depthnet-weights/1"


@dataclass
class DepthTrainConfig:
    steps: int = 3000
    batch: int = 16
    lr: float = 1e-3
    image_size: int = 128
    channels: tuple[int, ...] = (16, 32, 64, 128, 192)
    photo_aug: bool = True
    """Hair caps and colour jitter on half of the inputs (``data._photo_augment``)."""
    relative_weight: float = 1.0
    """Weight of the shift-invariant L1 (``depthnet.shift_invariant_l1``) added to the plain L1."""
    seed: int = 0
    threads: int | None = None
    ckpt_every: int = 250
    log_every: int = 50
    val_every: int = 500


def save_depthnet(net, path: Path, extra: dict | None = None) -> None:
    from ._runstate import write_weights

    meta = {"schema": WEIGHTS_SCHEMA, "config": net.cfg.to_json()}
    if extra:
        meta["training"] = json.dumps(extra, sort_keys=True)
    write_weights(path, net, meta)


def load_depthnet(path: Path):
    """A DepthNet from its weights file; clear errors for missing, corrupt or foreign files."""
    require("torch")
    from ._runstate import read_weights
    from .depthnet import DepthNet, DepthNetConfig

    meta, tensors = read_weights(Path(path), WEIGHTS_SCHEMA, "depth-net")
    try:
        cfg = DepthNetConfig.from_dict(json.loads(meta["config"]))
        net = DepthNet(cfg)
        net.load_state_dict(tensors)
    except (KeyError, ValueError, TypeError, RuntimeError) as e:
        raise ValueError(f"{path}: does not match the depth net its metadata describes "
                         f"({str(e).strip().splitlines()[-1]})") from None
    net.training_info = json.loads(meta.get("training", "{}"))
    return net.eval()


def load_views(ds, size: int, max_subjects: int | None = None):
    """(images (N, S, S, 3) float32 with background 0.5, masks (N, S, S) bool, depth (N, 3, S, S),
    half heights (N,) metres, (subject, view) ids) of every view of the dataset split."""
    imgs, masks, depth, hh, ids = [], [], [], [], []
    for sid in ds.ids[:max_subjects]:
        d = ds.depths(sid, size)
        for k in range(len(ds.subject(sid)["meta"]["views"])):
            img, m, cam = ds.view(sid, k)
            imgs.append(img), masks.append(m), depth.append(d[k]), hh.append(cam.half_height), ids.append((sid, k))
        ds._cache.pop(("depth", sid, size), None)
    return np.stack(imgs), np.stack(masks), np.stack(depth), np.asarray(hh), ids


def depth_errors_cm(pred: np.ndarray, gt: np.ndarray, half_height: np.ndarray) -> dict:
    """Mean absolute errors (cm) over the body's pixels: front/back depth, thickness, middle.
    pred (N, 2, S, S), gt (N, 3, S, S), half_height (N,) metres."""
    hit = gt[:, 2] > 0.5
    cm = (np.asarray(half_height)[:, None, None] * 100 * np.ones_like(gt[:, 0]))[hit]
    pf, pb, gf, gb = pred[:, 0][hit], pred[:, 1][hit], gt[:, 0][hit], gt[:, 1][hit]
    return {"depth_l1_cm": float(np.mean((np.abs(pf - gf) + np.abs(pb - gb)) / 2 * cm)),
            "thickness_l1_cm": float(np.mean(np.abs((pb - pf) - (gb - gf)) * cm)),
            "middle_l1_cm": float(np.mean(np.abs((pb + pf) - (gb + gf)) / 2 * cm))}


def predict(net, images: np.ndarray, batch: int = 32) -> np.ndarray:
    """(N, S, S, 3) [0, 1] images with 0.5 background -> (N, 2, S, S) front, back."""
    torch = require("torch")
    out = []
    with torch.no_grad():
        for s in range(0, len(images), batch):
            x = torch.from_numpy(np.ascontiguousarray(images[s:s + batch])).permute(0, 3, 1, 2) * 2 - 1
            out.append(net(x).numpy())
    return np.concatenate(out)


def train_depthnet(data: Path, out: Path, cfg: DepthTrainConfig | None = None, *, progress: bool = True) -> dict:
    torch = require("torch")
    from ._runstate import cosine_lr, load_state, save_state
    from .data import BodyDataset, _photo_augment
    from .depthnet import DepthNet, DepthNetConfig, depth_l1, shift_invariant_l1

    cfg = cfg or DepthTrainConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    S = cfg.image_size
    ds, val = BodyDataset(data, "train", image_size=S), BodyDataset(data, "val", image_size=S)
    if len(ds) == 0:
        raise ValueError(f"{data} has no training subjects")
    t_load = time.perf_counter()
    imgs, masks, depth, _, _ = load_views(ds, S)
    vimgs, _, vdepth, vhh, _ = load_views(val, S) if len(val) else (None, None, None, None, None)
    t_load = time.perf_counter() - t_load
    torch.manual_seed(cfg.seed)
    net = DepthNet(DepthNetConfig(image_size=S, channels=tuple(cfg.channels)))
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    step, elapsed = 0, 0.0
    rng = np.random.default_rng(cfg.seed)
    resumed = load_state(out, net, opt, cfg)
    if resumed:
        step, elapsed, rng = resumed

    def validate() -> dict:
        if vimgs is None:
            return {}
        net.eval()
        r = depth_errors_cm(predict(net, vimgs), vdepth, vhh)
        net.train()
        return {f"val_{k}": v for k, v in r.items()}

    def checkpoint(step: int, elapsed: float, summary: dict | None = None) -> None:
        save_state(out, net, opt, step, elapsed, cfg, rng)
        save_depthnet(net, out / "depthnet.safetensors",
                      {"steps": step, "seconds": round(elapsed, 1), "train_config": asdict(cfg), "data": str(data),
                       "train_views": len(imgs)} | (summary or {}))

    from .._trainloop import TrainLoop

    loop = TrainLoop(out, steps=cfg.steps, step=step, elapsed=elapsed, checkpoint=checkpoint,
                     ckpt_every=cfg.ckpt_every, desc="train depth", progress=progress)
    net.train()
    ema = None
    with loop:
        for step in loop:
            for g in opt.param_groups:
                g["lr"] = cfg.lr * cosine_lr(step, cfg.steps)
            idx = rng.choice(len(imgs), size=min(cfg.batch, len(imgs)), replace=False)
            x, y = imgs[idx].copy(), depth[idx].copy()
            for j, i in enumerate(idx):
                if cfg.photo_aug and rng.random() < 0.5:
                    x[j] = _photo_augment(x[j], masks[i], rng)
                if rng.random() < 0.5:
                    x[j], y[j] = x[j][:, ::-1], y[j][:, :, ::-1]
            xt = torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2) * 2 - 1
            yt = torch.from_numpy(np.ascontiguousarray(y))
            pred = net(xt)
            loss = depth_l1(pred, yt)
            if cfg.relative_weight:
                loss = loss + cfg.relative_weight * shift_invariant_l1(pred, yt)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            lv = float(loss.detach())
            ema = lv if ema is None else 0.98 * ema + 0.02 * lv
            done = step + 1
            rec = {"l1": lv, "l1_ema": ema} if done % cfg.log_every == 0 else None
            if done % cfg.val_every == 0:
                rec = (rec or {}) | validate()
            loop.end_step({"l1": f"{ema:.4f}"}, rec)
    step, elapsed = loop.step, loop.elapsed
    summary = {"steps": step, "seconds": round(elapsed, 1), "load_seconds": round(t_load, 1),
               "train_views": len(imgs)} | validate()
    checkpoint(step, elapsed, summary)
    return summary
