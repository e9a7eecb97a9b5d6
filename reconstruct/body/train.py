"""Train PIFu on a body dataset (see :mod:`reconstruct.body.data`), with checkpoints and resume.

Loss (PIFu): mean squared error between the predicted occupancy and the 0/1 label, summed over
the hourglass stacks (intermediate supervision); Tex-PIFu: L1 between predicted and sampled
colours (geometry features detached). Each step draws ``batch`` subjects, one to ``max_views``
views of each (mostly one: the single-view case is the one we ship), ``n_points`` occupancy
samples and ``n_colour`` colour samples per subject.

Outputs in the run folder:

- ``model.safetensors``: weights only, with the model config and training summary in the
  safetensors metadata (what ``load_model`` reads and what ships in assets/);
- ``state.safetensors`` + ``state.json``: optimiser moments, step, RNG state (resume);
- ``log.jsonl``: one line per logged step (loss, validation occupancy accuracy/IoU, time).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .._deps import require

WEIGHTS_SCHEMA = "dhstudio.pifu-weights/1"


@dataclass
class TrainConfig:
    """Training run settings."""

    model: str = "small"
    """PIFu config name ('small' or 'paper')."""
    steps: int = 6000
    """Optimiser steps."""
    batch: int = 4
    """Subjects per step."""
    lr: float = 1e-3
    """Adam learning rate (cosine-decayed to 5 % over the run)."""
    n_points: int = 4096
    """Occupancy samples per subject per step (PIFu: 5,000)."""
    n_colour: int = 2048
    """Colour samples per subject per step."""
    colour_weight: float = 1.0
    """Weight of the colour L1 loss."""
    max_views: int = 4
    """Most views per subject in a step; the count is drawn from ``view_mix``."""
    view_mix: tuple[int, ...] = (1, 1, 1, 2, 3, 4)
    """View counts a step draws from (uniformly; repeat a count to make it likelier)."""
    image_size: int | None = None
    """Network input size; default: the model config's image_size."""
    seed: int = 0
    ckpt_every: int = 250
    """Steps between checkpoints (also on exit)."""
    log_every: int = 50
    val_every: int = 500
    threads: int | None = None
    """torch intra-op threads (default: torch's choice)."""
    init: str | None = None
    """Start from these weights (a model.safetensors of the same config) instead of random."""
    z_frequencies: int | None = None
    """Override the model config's ``z_frequencies`` (Fourier bands of the depth input)."""
    cone_balance: bool = False
    """Balance inside/outside among the occupancy points inside the first view's silhouette
    (``data._cone_balanced``); False: the stored samples as drawn."""
    hull_fraction: float = 0.0
    """Share of each item's points drawn on the first view's silhouette rays outside the visual
    hull of the subject's other views (``data._hull_carved``), labelled empty."""
    photo_aug: bool = False
    """Appearance augmentation of the input views towards real photos (``data._photo_augment``:
    painted hair caps, colour jitter)."""
    ray_weight: float = 0.0
    """Weight of the ray-coverage loss: on ``n_rays`` rays through the first view's silhouette
    (``data._silhouette_rays``, 24 depths each) the largest predicted occupancy should reach
    RAY_TARGET (every silhouette ray meets the body; a hinge, so rays that already do are left
    alone and the loss does not thicken the body); 0 = off."""
    n_rays: int = 32
    """Rays per subject per step for the ray-coverage loss."""
    depth_head: bool = False
    """Train a PIFu with the depth head (``PIFuConfig.depth_head``); with ``init`` weights of a
    model without one, its occupancy MLP grows two zero-initialised inputs, so training starts
    from the same predictions."""
    depthnet: str | None = None
    """Train a PIFu whose occupancy MLP also gets the point's depth relative to the front/back
    maps of these depth-net weights (``depth_train.train_depthnet``; frozen). With ``init``
    weights of a plain PIFu, its MLP grows two zero-initialised inputs as for ``depth_head``."""
    prior_size: int = 0
    """Train a PIFu with the body prior (``PIFuConfig.prior_size``: maps of this side; ICON-style,
    :mod:`reconstruct.body.prior`); with ``init`` weights of a model without it, its occupancy MLP
    grows three zero-initialised inputs. 0: off."""
    prior_estimated_p: float = 0.5
    """Share of training views whose prior is the one fitted to the rendered view (``dhstudio
    body priors``), where the dataset has it; the others get the true pose with noise."""
    prior_noise_deg: float = 6.0
    """Std of the random turn of each joint group of the true-pose prior (degrees)."""
    depth_weight: float = 10.0
    """Weight of the depth head's L1 loss (normalised z; 0.005 is about 1 cm) against the
    ray-cast front and back depth of the input views, on pixels whose ray meets the body."""


RAY_TARGET = 0.6  # hinge of the ray-coverage loss (the surface is the 0.5 level)


def save_weights(model, path: Path, extra: dict | None = None) -> None:
    """Weights + config in one safetensors file (atomic)."""
    from ._runstate import write_weights

    meta = {"schema": WEIGHTS_SCHEMA, "config": model.cfg.to_json(),
            "with_colour": json.dumps(bool(model.with_colour))}
    if extra:
        meta["training"] = json.dumps(extra, sort_keys=True)
    write_weights(path, model, meta)


def load_model(path: Path, device: str = "cpu"):
    """A PIFu from a weights file; clear errors for missing, corrupt or foreign checkpoints."""
    require("torch")
    from ._runstate import read_weights
    from .model import PIFu, PIFuConfig

    path = Path(path)
    meta, tensors = read_weights(path, WEIGHTS_SCHEMA, "PIFu")
    try:
        cfg = PIFuConfig.from_dict(json.loads(meta["config"]))
    except (KeyError, ValueError, TypeError) as e:
        raise ValueError(f"{path}: bad model config in checkpoint ({e})") from None
    model = PIFu(cfg, with_colour=json.loads(meta.get("with_colour", "true")))
    try:
        missing, unexpected = model.load_state_dict(tensors, strict=False)
    except RuntimeError as e:  # shape mismatches
        raise ValueError(f"{path} does not match the {cfg.name} PIFu its metadata describes "
                         f"({str(e).splitlines()[-1].strip()})") from None
    if missing or unexpected:
        raise ValueError(f"{path} does not match the {cfg.name} PIFu: {len(missing)} missing and "
                         f"{len(unexpected)} unexpected tensors")
    model.training_info = json.loads(meta.get("training", "{}"))
    return model.to(device).eval()


def _batch(ds, idx, rng, n_views, cfg: TrainConfig, torch, depth_size: int = 0):
    items = [ds.item(int(i), rng, n_views=n_views, n_points=cfg.n_points, n_colour=cfg.n_colour,
                     cone_balance=cfg.cone_balance, hull_fraction=cfg.hull_fraction,
                     photo_aug=cfg.photo_aug, n_rays=cfg.n_rays if cfg.ray_weight > 0 else 0,
                     depth_size=depth_size, prior_size=cfg.prior_size,
                     prior_estimated_p=cfg.prior_estimated_p, prior_noise_deg=cfg.prior_noise_deg) for i in idx]

    def st(k):
        return torch.from_numpy(np.stack([it[k] for it in items]))
    img = st("image").permute(0, 1, 4, 2, 3) * 2 - 1  # (B, V, 3, S, S) in [-1, 1]
    depth = st("depth").flatten(0, 1) if depth_size else None  # (B*V, 3, D, D)
    prior = st("prior") if cfg.prior_size else None  # (B, V, 3, P, P)
    return img, st("uv"), st("z"), st("labels"), st("cuv"), st("cz"), st("crgb"), depth, prior


def depth_loss(model, feats, depth, torch):
    """Mean L1 between the depth head's front/back maps and the ray-cast ones (pixels whose ray
    meets the body), summed over the stacks."""
    hit = depth[:, 2:3]
    n = hit.sum().clamp_min(1.0) * 2
    return sum((torch.abs(d - depth[:, :2]) * hit).sum() / n for d in model.depth_maps(feats))


def grow_from(model, start) -> None:
    """Load ``start``'s weights into ``model`` (same config but for ``depth_head``): tensors of
    equal shape are copied; occupancy-MLP layers of ``model`` with more inputs (the depth head's
    two) get ``start``'s weights in their first columns and zeros in the new last ones, which is
    where ``PIFu.query`` and ``SkipMLP`` put them; the rest (the depth heads) keep their init."""
    torch = require("torch")
    own = model.state_dict()
    with torch.no_grad():
        for k, v in start.state_dict().items():
            if k not in own:
                raise ValueError(f"--init weights have a tensor {k!r} this model lacks")
            w = own[k]
            if w.shape == v.shape:
                w.copy_(v)
            elif k.startswith("occ_mlp.") and k.endswith(".weight") and w.shape[0] == v.shape[0] \
                    and w.shape[2:] == v.shape[2:] and w.shape[1] > v.shape[1]:
                w.zero_()
                w[:, :v.shape[1]] = v
            else:
                raise ValueError(f"--init weights: {k} has shape {tuple(v.shape)}, this model {tuple(w.shape)}")


def evaluate_occupancy(model, ds, n_subjects: int = 8, seed: int = 123, n_points: int = 4096) -> dict:
    """Single-view occupancy accuracy and IoU on sample points of ``n_subjects`` subjects."""
    torch = require("torch")
    rng = np.random.default_rng(seed)
    tp = fp = fn = correct = total = 0
    model.eval()
    with torch.no_grad():
        for i in range(min(n_subjects, len(ds))):
            ps = model.cfg.prior_size
            it = ds.item(i, rng, n_views=1, n_points=n_points, n_colour=16, prior_size=ps, prior_estimated_p=1.0)
            img = torch.from_numpy(it["image"]).permute(0, 3, 1, 2)[None] * 2 - 1
            prior = torch.from_numpy(it["prior"])[None] if ps else None
            p = model(img, torch.from_numpy(it["uv"])[None], torch.from_numpy(it["z"])[None],
                      prior=prior)[-1][0].numpy() > 0.5
            y = it["labels"] > 0.5
            tp += int((p & y).sum()); fp += int((p & ~y).sum()); fn += int((~p & y).sum())
            correct += int((p == y).sum()); total += len(y)
    model.train()
    return {"val_acc": correct / max(total, 1), "val_iou": tp / max(tp + fp + fn, 1)}


def train(data: Path, out: Path, cfg: TrainConfig | None = None, *, progress: bool = True) -> dict:
    """Train (or resume) into ``out``. Returns the final summary."""
    torch = require("torch")
    from ._runstate import cosine_lr, load_state, save_state
    from .data import BodyDataset
    from .model import PIFu, PIFuConfig

    cfg = cfg or TrainConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    mcfg = PIFuConfig.named(cfg.model)
    size = cfg.image_size or mcfg.image_size
    mcfg.image_size = size
    if cfg.z_frequencies is not None:
        mcfg.z_frequencies = int(cfg.z_frequencies)
    mcfg.depth_head = bool(cfg.depth_head)
    mcfg.prior_size = int(cfg.prior_size)
    dnet = None
    if cfg.depthnet:
        from .depth_train import load_depthnet

        dnet = load_depthnet(Path(cfg.depthnet))
        mcfg.depth_net = dnet.cfg.to_dict()
    ds = BodyDataset(data, "train", image_size=size)
    val = BodyDataset(data, "val", image_size=size)
    if len(ds) == 0:
        raise ValueError(f"{data} has no training subjects")
    torch.manual_seed(cfg.seed)
    model = PIFu(mcfg)
    if cfg.init:
        start = load_model(Path(cfg.init))
        ignore = {"depth_head": None, "depth_net": None, "prior_size": None}
        if start.cfg.to_dict() | ignore != mcfg.to_dict() | ignore \
                or (start.cfg.depth_head and not mcfg.depth_head) or (start.cfg.depth_net and not mcfg.depth_net) \
                or (start.cfg.prior_size and start.cfg.prior_size != mcfg.prior_size):
            raise ValueError(f"--init {cfg.init} is a {start.cfg.name} PIFu at {start.cfg.image_size} px"
                             f"{' with a depth head' if start.cfg.depth_head else ''}; this run trains "
                             f"{mcfg.name} at {mcfg.image_size} px{' with a depth head' if mcfg.depth_head else ''}")
        grow_from(model, start)
    if dnet is not None:  # the given depth net, whatever --init held
        model.depth_net.load_state_dict(dnet.state_dict())
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    step, elapsed = 0, 0.0
    rng = np.random.default_rng(cfg.seed)
    resumed = load_state(out, model, opt, cfg)
    if resumed:
        step, elapsed, rng = resumed
    depth_size = size // 4 if mcfg.depth_head else 0  # the feature maps' size

    def checkpoint(step: int, elapsed: float) -> None:
        save_state(out, model, opt, step, elapsed, cfg, rng)
        save_weights(model, out / "model.safetensors", {"steps": step, "seconds": round(elapsed, 1),
                                                        "train_config": asdict(cfg), "data": str(data),
                                                        "train_subjects": len(ds)})

    from .._trainloop import TrainLoop

    loop = TrainLoop(out, steps=cfg.steps, step=step, elapsed=elapsed, checkpoint=checkpoint,
                     ckpt_every=cfg.ckpt_every, desc="train", progress=progress)
    model.train()
    ema = None
    with loop:
        for step in loop:
            for g in opt.param_groups:
                g["lr"] = cfg.lr * cosine_lr(step, cfg.steps)
            n_views = min(int(rng.choice(cfg.view_mix)), cfg.max_views, len(ds.subject(ds.ids[0])["meta"]["views"]))
            idx = rng.choice(len(ds), size=min(cfg.batch, len(ds)), replace=False)
            img, uv, z, lab, cuv, cz, crgb, depth, prior = _batch(ds, idx, rng, n_views, cfg, torch, depth_size)
            feats = model.encode(img)
            occ = model.query(feats, uv, z, prior=prior)
            nl = lab.shape[1]
            loss_occ = sum(torch.mean((o[:, :nl] - lab) ** 2) for o in occ)
            rgb = model.colour(img, cuv, cz, feats=feats)
            loss_col = torch.mean(torch.abs(rgb - crgb))
            loss = loss_occ + cfg.colour_weight * loss_col
            loss_ray = None
            if cfg.ray_weight > 0:  # the best point of each silhouette ray should be inside
                b = lab.shape[0]
                best = [o[:, nl:].reshape(b, cfg.n_rays, -1).amax(-1) for o in occ]
                loss_ray = sum(torch.mean(torch.relu(RAY_TARGET - m) ** 2) for m in best)
                loss = loss + cfg.ray_weight * loss_ray
            loss_depth = None
            if depth is not None:
                loss_depth = depth_loss(model, feats, depth, torch)
                loss = loss + cfg.depth_weight * loss_depth
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            lv = float(loss_occ.detach()) / len(occ)
            ema = lv if ema is None else 0.98 * ema + 0.02 * lv
            done = step + 1
            rec = None
            if done % cfg.log_every == 0:
                rec = {"occ_mse": lv, "occ_mse_ema": ema, "col_l1": float(loss_col.detach()), "views": n_views}
                if loss_ray is not None:
                    rec["ray_loss"] = float(loss_ray.detach()) / len(occ)
                if loss_depth is not None:
                    rec["depth_l1"] = float(loss_depth.detach()) / len(occ)
            if done % cfg.val_every == 0 and len(val):
                rec = (rec or {}) | evaluate_occupancy(model, val)
            loop.end_step({"occ_mse": f"{ema:.4f}", "col_l1": f"{float(loss_col.detach()):.3f}"}, rec)
    step, elapsed = loop.step, loop.elapsed
    summary = {"steps": step, "seconds": round(elapsed, 1), "train_subjects": len(ds)}
    if len(val):
        summary |= evaluate_occupancy(model, val)
    return summary
