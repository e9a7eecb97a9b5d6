"""Train and evaluate the face-forgery detectors on face crops.

Three steps, each a function and a ``dhstudio detect`` sub-command:

1. :func:`build_face_cache` (``detect cache``): every image of the manifest (``detect.data``) ->
   its most confident face (``reconstruct.faces``, 68 landmarks) -> one square crop of
   ``CACHE_SIZE`` px with a wide margin, stored with its landmarks in crop pixels
   (``crops.npy``, ``landmarks.npy``, ``index.json``). Tight crops (UTKFace) are reflect-padded
   when no face is found at first. Images with no face are listed, not cached.
2. :func:`train` (``detect train``): batches of half real crops (random SBI-style crop, flip,
   JPEG / resize augmentation) and half fakes: Self-Blended Images made on the fly from the real
   training crops (``detect.sbi``; the blend mask is the segmentation / boundary target) and,
   with ``gan_fraction``, the training part of faces_fake_public's StyleGAN2 faces and, with
   ``own_fraction``, the training part of the studio's own renders (a cache built with
   ``--renders``). AdamW, cosine schedule over the steps or the time budget (``max_seconds``),
   optionally from earlier weights (``init``), a progress bar, a resumable state every
   ``save_every`` steps, the model with the best validation AUC on the sources it trains on
   (:func:`trained_sources`) kept as ``model.safetensors``.
3. :func:`evaluate` (``detect eval``): AUC, EER, accuracy, TPR at 1 % FPR and calibration error
   (``detect.metrics.summary``) per source and per attack (``detect.sbi.ATTACKS``) on a split.

Attacks at evaluation are applied to the cached crop (``CACHE_SIZE`` px, about 2x the face),
before the detector's own crop: JPEG qualities as they are, ``resize0.5`` halves the crop,
``social`` (long edge <= 1080 + JPEG q75) is only its JPEG q75 at this size.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from provenance import media

CACHE_SIZE = 224  # cached face crop side (px)
CACHE_MARGIN = 0.5  # margin of the cached crop (fraction of the landmark box's long side, per side)
CROP_MARGIN = 0.25  # the detector's crop margin (train jitters it, eval and inference use it as is)
CACHE_SCHEMA = "dhstudio.detect.face-cache/1"
STATE_SCHEMA = "dhstudio.detect.train-state/1"


# --------------------------------------------------------------------------- face cache


def _load_rgb(path: Path) -> np.ndarray:
    from .score import load_rgb

    return load_rgb(path)


def build_face_cache(shared_data: Path, out: Path, *, progress: bool = True, limit: int | None = None,
                     renders: Path | None = None, reuse: Path | None = None) -> dict:
    """Detect the face of every manifest image once and cache the crops (see the module docstring).

    ``renders``: a folder of the studio's own renders (``dhstudio detect renders``) to add as fakes.
    ``reuse``: an existing face cache; an image it already holds (same path, same size on disk) is
    copied from it instead of being detected again.
    """
    from reconstruct.faces import detect_faces

    from .data import build_manifest
    from .sbi import crop_face

    shared_data, out = Path(shared_data), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    manifest = build_manifest(shared_data, renders=renders)
    if limit:
        manifest = manifest[:limit]
    old: dict[str, int] = {}
    old_cache = None
    if reuse is not None:
        old_cache = FaceCache.load(reuse)
        old = {it["path"]: i for i, it in enumerate(old_cache.items)}
    crops = np.zeros((len(manifest), CACHE_SIZE, CACHE_SIZE, 3), np.uint8)
    lms = np.zeros((len(manifest), 68, 2), np.float32)
    index, missed = [], []
    it = manifest
    if progress:
        from tqdm import tqdm

        it = tqdm(manifest, desc="faces", unit="img")
    t0 = time.perf_counter()
    n_reused = 0
    for item in it:
        j = old.get(item["path"])
        if j is not None and old_cache.items[j].get("width") == item.get("width") \
                and old_cache.items[j].get("height") == item.get("height"):
            i = len(index)
            crops[i], lms[i] = old_cache.crops[j], old_cache.landmarks[j]
            prev = old_cache.items[j]
            index.append({**item, "detection_score": prev["detection_score"], "padded": prev["padded"]})
            n_reused += 1
            continue
        try:
            rgb = _load_rgb(shared_data / item["path"])
        except Exception as e:  # noqa: BLE001 - listed, not fatal
            missed.append({"path": item["path"], "reason": f"unreadable: {e}"})
            continue
        faces = detect_faces(rgb, mode="short", max_faces=1)
        pad = 0
        if not faces:  # tight crops: give the detector some context
            pad = int(0.3 * max(rgb.shape[:2]))
            padded = np.pad(rgb, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
            faces = detect_faces(padded, mode="short", max_faces=1)
            rgb = padded
        if not faces or faces[0].landmarks68 is None:
            missed.append({"path": item["path"], "reason": "no face found"})
            continue
        f = faces[0]
        crop, pts = crop_face(rgb, np.asarray(f.landmarks68, np.float32), CACHE_SIZE, CACHE_MARGIN, pad="edge")
        i = len(index)
        crops[i], lms[i] = crop, pts
        index.append({**item, "detection_score": round(float(f.score), 4), "padded": bool(pad)})
    n = len(index)
    np.save(out / "crops.npy", crops[:n])
    np.save(out / "landmarks.npy", lms[:n])
    meta = {"schema": CACHE_SCHEMA, "cache_size": CACHE_SIZE, "cache_margin": CACHE_MARGIN, "items": index,
            "missed": missed, "seconds": round(time.perf_counter() - t0, 1)}
    media.write_atomic(out / "index.json", json.dumps(meta, indent=1))
    return {"cached": n, "reused": n_reused, "missed": len(missed), "seconds": meta["seconds"], "out": str(out)}


@dataclass
class FaceCache:
    crops: np.ndarray  # (N, S, S, 3) uint8
    landmarks: np.ndarray  # (N, 68, 2) float32, crop pixels
    items: list[dict]

    @classmethod
    def load(cls, folder: Path) -> "FaceCache":
        folder = Path(folder)
        meta = json.loads((folder / "index.json").read_text())
        if meta.get("schema") != CACHE_SCHEMA:
            raise ValueError(f"{folder}: not a face cache of schema {CACHE_SCHEMA}")
        return cls(np.load(folder / "crops.npy", mmap_mode="r"), np.load(folder / "landmarks.npy"), meta["items"])

    def where(self, *, split: str | None = None, label: int | None = None, source_prefix: str | None = None) -> np.ndarray:
        return np.array([i for i, it in enumerate(self.items)
                         if (split is None or it["split"] == split) and (label is None or it["label"] == label)
                         and (source_prefix is None or it["source"].startswith(source_prefix))], dtype=np.int64)


# --------------------------------------------------------------------------- samples


def _crop(cache: FaceCache, i: int, size: int, rng=None) -> tuple[np.ndarray, np.ndarray]:
    from .sbi import crop_face

    return crop_face(np.asarray(cache.crops[i]), cache.landmarks[i], size, CROP_MARGIN, rng, pad="edge")


LOWRES_SIDES = (24, 96)
"""Range of the crop side (px) that ``lowres_p`` brings a training crop down to before scaling it
back: a face about 14-55 px wide (the crop is ``1 + 2 * CROP_MARGIN`` face widths), as small
faces in wide shots are."""


def _lowres(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Down to a random side in LOWRES_SIDES and back up (bilinear / bicubic at random)."""
    import cv2

    s = img.shape[0]
    side = int(rng.integers(LOWRES_SIDES[0], LOWRES_SIDES[1] + 1))
    if side >= s:
        return img
    small = cv2.resize(img, (side, side), interpolation=cv2.INTER_AREA)
    interp = cv2.INTER_LINEAR if rng.random() < 0.5 else cv2.INTER_CUBIC
    return np.ascontiguousarray(cv2.resize(small, (s, s), interpolation=interp))


def _degrade(img: np.ndarray, rng: np.random.Generator, jpeg_p: float, lowres_p: float = 0.0) -> np.ndarray:
    """Low resolution (``lowres_p``), then a JPEG round trip (``jpeg_p``): applied to real and fake
    crops alike, so neither is a cue for the label."""
    from .sbi import jpeg

    if lowres_p and rng.random() < lowres_p:
        img = _lowres(img, rng)
    if rng.random() < jpeg_p:
        img = jpeg(img, int(rng.integers(40, 96)))
    return img


def _augment(img: np.ndarray, rng: np.random.Generator, jpeg_p: float, lowres_p: float = 0.0) -> np.ndarray:
    """Real crops: a random flip, then :func:`_degrade`."""
    if rng.random() < 0.5:
        img = img[:, ::-1].copy()
    return _degrade(img, rng, jpeg_p, lowres_p)


def sbi_sample(cache: FaceCache, i: int, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A self-blended fake of real crop ``i`` at ``size`` px and its blend mask."""
    from .sbi import self_blend

    crop, pts = _crop(cache, i, size, rng)
    return self_blend(crop, pts, rng)


@dataclass
class TrainConfig:
    detector: str = "efficientnet_lite"
    """Registered detector name (``detect.registry.list_detectors()``)."""
    detector_config: dict = field(default_factory=dict)
    """Overrides of the detector's config (e.g. ``{"input_size": 128}``)."""
    steps: int = 2000
    batch: int = 32
    """Half real, half fake."""
    lr: float = 1e-3
    weight_decay: float = 1e-4
    gan_fraction: float = 0.2
    """Share of the fakes taken from faces_fake_public's training StyleGAN2 faces."""
    own_fraction: float = 0.0
    """Share of the fakes taken from the studio's own training renders (``own/...`` in the cache).
    The rest of the fakes (``1 - gan_fraction - own_fraction``) are Self-Blended Images."""
    jpeg_p: float = 0.3
    """Probability of a JPEG round trip (q 40-95) on a training crop."""
    lowres_p: float = 0.0
    """Probability that a training crop (real or fake alike) is brought down to a small face's
    resolution and back (:data:`LOWRES_SIDES`): without it, the detector learns "blurry = fake"
    and flags small real faces (BENCHMARKS.md)."""
    crop_size: int = 160
    """Training crops, blends and JPEG are made at this size (the model resizes to its input);
    evaluation and inference crop at ``CACHE_SIZE``."""
    val_every: int = 250
    save_every: int = 100
    seed: int = 0
    threads: int | None = None
    max_seconds: float | None = None
    """Stop after this much training time (the learning rate follows the cosine of whichever of
    steps and time runs out first)."""
    init: str | None = None
    """Start from these detector weights (same detector and input size) instead of a fresh init."""

    def check(self) -> None:
        for name in ("gan_fraction", "own_fraction", "jpeg_p", "lowres_p"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and 0.0 <= v <= 1.0):
                raise ValueError(f"{name} must be in [0, 1], got {v!r}")
        if self.gan_fraction + self.own_fraction > 1.0 + 1e-9:
            raise ValueError(f"gan_fraction + own_fraction must be <= 1, got {self.gan_fraction + self.own_fraction}")
        for name in ("steps", "batch", "crop_size", "val_every", "save_every"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if self.batch < 2:
            raise ValueError(f"batch must be >= 2 (half real, half fake), got {self.batch}")
        if self.max_seconds is not None and not self.max_seconds > 0:
            raise ValueError(f"max_seconds must be positive, got {self.max_seconds!r}")


def trained_sources(cfg: TrainConfig) -> tuple[str, ...]:
    """The fake sources a run trains on; its best checkpoint is chosen by the mean validation AUC
    of these only, so a run trained on one source never picks weights by the sources it is later
    tested on (the cross matrix)."""
    out = []
    if cfg.gan_fraction + cfg.own_fraction < 1.0 - 1e-9:
        out.append("sbi")
    if cfg.gan_fraction > 0:
        out.append("gan")
    if cfg.own_fraction > 0:
        out.append("own")
    return tuple(out)


def _fake_source(cfg: TrainConfig, rng: np.random.Generator, gan_idx, own_idx) -> str:
    r = rng.random()
    if r < cfg.gan_fraction and len(gan_idx):
        return "gan"
    if r < cfg.gan_fraction + cfg.own_fraction and len(own_idx):
        return "own"
    return "sbi"


def _batch(cache: FaceCache, real_idx, gan_idx, cfg: TrainConfig, size: int, rng: np.random.Generator,
           mask_kind: str | None = "manipulation", own_idx=()):
    """``(images uint8 [B,S,S,3], masks float [B,S,S], labels [B])``: half real, half fake. The mask is the
    SBI blend mask; a StyleGAN2 face or one of our renders is generated everywhere but blended nowhere, so
    its mask is all ones for a manipulation map and all zeros for a blending-boundary map (``mask_kind``)."""
    n_fake = cfg.batch // 2
    n_real = cfg.batch - n_fake
    imgs, masks, labels = [], [], []
    for i in rng.choice(real_idx, n_real):
        c, _ = _crop(cache, int(i), size, rng)
        imgs.append(_augment(c, rng, cfg.jpeg_p, cfg.lowres_p))
        masks.append(np.zeros((size, size), np.float32))
        labels.append(0.0)
    for _ in range(n_fake):
        src = _fake_source(cfg, rng, gan_idx, own_idx)
        if src != "sbi":
            c, _ = _crop(cache, int(rng.choice(gan_idx if src == "gan" else own_idx)), size, rng)
            m = (np.zeros if mask_kind == "boundary" else np.ones)((size, size), np.float32)
        else:
            c, m = sbi_sample(cache, int(rng.choice(real_idx)), size, rng)
        flip = rng.random() < 0.5
        if flip:
            c, m = c[:, ::-1].copy(), m[:, ::-1].copy()
        imgs.append(_degrade(c, rng, cfg.jpeg_p, cfg.lowres_p))
        masks.append(m)
        labels.append(1.0)
    return np.stack(imgs), np.stack(masks), np.asarray(labels, np.float32)


OWN_SOURCES = ("own/head_synth", "own/head_nerf", "own/body_turntable")


def eval_set(cache: FaceCache, split: str, size: int, *, seed: int = 1234, max_real: int | None = None) -> dict:
    """Fixed evaluation sets of a split, as (crops uint8, labels) per source:
    ``sbi`` (real crops vs SBI fakes of the same real faces, one fake per face),
    ``gan`` (faces_fake_public real vs StyleGAN2 fake),
    ``own`` (the same real crops as ``sbi`` vs every own render of the split) and, when the split
    holds them, one set per kind of own render (``own/head_synth``...) against those real crops.
    The sets share real faces: :func:`combined_parts` says which rows make the combined set."""
    rng = np.random.default_rng(seed)
    real = cache.where(split=split, label=0)
    real = np.array([i for i in real if not cache.items[i]["source"].startswith("faces_fake_public")], np.int64)
    if max_real and len(real) > max_real:
        real = np.sort(rng.choice(real, max_real, replace=False))
    r = np.stack([_crop(cache, int(i), size)[0] for i in real])
    f = np.stack([sbi_sample(cache, int(i), size, rng)[0] for i in real])
    sets = {"sbi": (np.concatenate([r, f]), np.r_[np.zeros(len(r)), np.ones(len(f))])}
    gr = cache.where(split=split, label=0, source_prefix="faces_fake_public")
    gf = cache.where(split=split, label=1, source_prefix="faces_fake_public")
    if len(gr) and len(gf):
        g = np.stack([_crop(cache, int(i), size)[0] for i in np.r_[gr, gf]])
        sets["gan"] = (g, np.r_[np.zeros(len(gr)), np.ones(len(gf))])
    own = cache.where(split=split, label=1, source_prefix="own/")
    if len(own):
        o = np.stack([_crop(cache, int(i), size)[0] for i in own])
        sets["own"] = (np.concatenate([r, o]), np.r_[np.zeros(len(r)), np.ones(len(o))])
        kinds = np.array([cache.items[i]["source"] for i in own])
        for kind in sorted(set(kinds)):
            k = kinds == kind
            sets[kind] = (np.concatenate([r, o[k]]), np.r_[np.zeros(len(r)), np.ones(int(k.sum()))])
    return sets


def combined_parts(sets: dict) -> dict[str, np.ndarray]:
    """Row masks that make the combined set from :func:`eval_set`'s sets without counting a face
    twice: all of ``sbi`` and ``gan``, the fakes of ``own`` (its real rows are ``sbi``'s)."""
    parts = {}
    for name, (_, y) in sets.items():
        if name in ("sbi", "gan"):
            parts[name] = np.ones(len(y), bool)
        elif name == "own":
            parts[name] = np.asarray(y) == 1
    return parts


def _scores(model, images: np.ndarray, batch: int = 64) -> np.ndarray:
    return np.concatenate([model.predict_proba(images[i:i + batch]) for i in range(0, len(images), batch)])


# --------------------------------------------------------------------------- resumable state


def _save_state(out: Path, model, opt, step: int, best: float, elapsed: float, cfg: TrainConfig) -> None:
    import torch
    from safetensors.torch import save as st_save

    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    osd = opt.state_dict()
    for pid, st in osd["state"].items():
        for k, v in st.items():
            tensors[f"opt.{pid}.{k}"] = (v if isinstance(v, torch.Tensor) else torch.tensor(v)).detach().cpu().contiguous()
    media.write_atomic(out / "state.safetensors", st_save(tensors))
    media.write_atomic(out / "state.json", json.dumps({"schema": STATE_SCHEMA, "step": step, "best_val_auc": best,
                                                       "elapsed_s": elapsed, "config": asdict(cfg),
                                                       "param_groups": osd["param_groups"]}))


def _load_state(out: Path, model, opt, cfg: TrainConfig):
    from safetensors.torch import load as st_load

    meta = json.loads((out / "state.json").read_text())
    if meta.get("schema") != STATE_SCHEMA:
        raise ValueError(f"{out}: unknown training state schema {meta.get('schema')!r}")
    if json.loads(json.dumps(asdict(cfg))) != meta["config"]:
        raise ValueError(f"{out} holds a run with another configuration; use another folder or the same options")
    t = st_load((out / "state.safetensors").read_bytes())
    model.load_state_dict({k[6:]: v for k, v in t.items() if k.startswith("model.")})
    state: dict = {}
    for k, v in t.items():
        if k.startswith("opt."):
            _, pid, name = k.split(".", 2)
            state.setdefault(int(pid), {})[name] = v
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    return meta["step"], meta["best_val_auc"], meta["elapsed_s"]


# --------------------------------------------------------------------------- training


def train(cache_dir: Path, out: Path, cfg: TrainConfig, *, progress: bool = True) -> dict:
    """Train ``cfg.detector`` on the face cache; resumes when ``out`` holds a run of the same config."""
    import torch

    from . import metrics
    from .registry import create_detector

    cfg.check()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    cache = FaceCache.load(cache_dir)
    model = create_detector(cfg.detector, **cfg.detector_config)
    if cfg.init:
        from .registry import load_detector

        start = load_detector(cfg.init)
        if start.name != model.name or start.config != model.config:
            raise ValueError(f"--init {cfg.init} holds {start.name} {start.config}, not {model.name} {model.config}")
        model.load_state_dict(start.state_dict())
    size = cfg.crop_size  # crops, blends and JPEG happen at this size; the model resizes to its input
    real_idx = np.array([i for i in cache.where(split="train", label=0)], np.int64)
    gan_idx = cache.where(split="train", label=1, source_prefix="faces_fake_public")
    own_idx = cache.where(split="train", label=1, source_prefix="own/")
    if cfg.own_fraction > 0 and not len(own_idx):
        raise ValueError(f"{cache_dir}: own_fraction {cfg.own_fraction} but the cache holds no own training renders "
                         "(build it with --renders)")
    if cfg.gan_fraction > 0 and not len(gan_idx):
        raise ValueError(f"{cache_dir}: gan_fraction {cfg.gan_fraction} but the cache holds no StyleGAN2 training faces")
    if len(real_idx) == 0:
        raise ValueError(f"{cache_dir}: no real training faces in the cache")
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    step, best, elapsed = 0, -1.0, 0.0
    if (out / "state.json").is_file():
        step, best, elapsed = _load_state(out, model, opt, cfg)
    val = eval_set(cache, "val", size, max_real=400)
    select_on = trained_sources(cfg)
    rng = np.random.default_rng(cfg.seed * 1_000_003 + step)
    log = open(out / "log.jsonl", "a")
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.steps, initial=step, desc=f"train {cfg.detector}", unit="step")
    t_start = time.perf_counter() - elapsed
    try:
        model.train()
        while step < cfg.steps:
            run_s = time.perf_counter() - t_start
            if cfg.max_seconds is not None and run_s >= cfg.max_seconds:
                break
            frac = step / cfg.steps
            if cfg.max_seconds is not None:
                frac = max(frac, run_s / cfg.max_seconds)
            lr = cfg.lr * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0)))
            for g in opt.param_groups:
                g["lr"] = lr
            imgs, masks, labels = _batch(cache, real_idx, gan_idx, cfg, size, rng, model.mask_kind, own_idx)
            x = model.preprocess(imgs)
            outp = model(x)
            losses = model.loss(outp, torch.from_numpy(labels), torch.from_numpy(masks)[:, None])
            opt.zero_grad(set_to_none=True)
            losses["total"].backward()
            opt.step()
            step += 1
            rec = {"step": step, "lr": round(lr, 6), **{k: round(float(v.detach()), 5) for k, v in losses.items()}}
            last = step == cfg.steps or (cfg.max_seconds is not None
                                         and time.perf_counter() - t_start >= cfg.max_seconds)
            if step % cfg.val_every == 0 or last:
                model.eval()
                rec["val"] = {}
                for name, (vi, vy) in val.items():
                    s = metrics.summary(vy, _scores(model, vi))
                    rec["val"][name] = {"auc": s.get("auc"), "eer": s.get("eer")}
                aucs = [v["auc"] for k, v in rec["val"].items() if k in select_on and v["auc"] is not None]
                val_auc = float(np.mean(aucs)) if aucs else -1.0
                rec["val_auc"] = val_auc
                if val_auc > best:
                    best = val_auc
                    model.save(out / "model.safetensors", metadata={"step": step, "val": rec["val"],
                                                                    "train_config": asdict(cfg)})
                model.train()
            rec["elapsed_s"] = round(time.perf_counter() - t_start, 1)
            log.write(json.dumps(rec) + "\n")
            log.flush()
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{rec['total']:.3f}", best=f"{best:.3f}")
            if step % cfg.save_every == 0 or last:
                _save_state(out, model, opt, step, best, time.perf_counter() - t_start, cfg)
    finally:
        log.close()
        if bar is not None:
            bar.close()
    return {"out": str(out), "steps": step, "best_val_auc": best, "seconds": round(time.perf_counter() - t_start, 1),
            "weights": str(out / "model.safetensors")}


# --------------------------------------------------------------------------- evaluation


def evaluate(weights: Path, cache_dir: Path, *, split: str = "test", attacks=None, max_real: int | None = None,
             progress: bool = True) -> dict:
    """Metrics per source and attack on ``split`` of the face cache (JSON-ready)."""
    from . import metrics
    from .registry import load_detector
    from .sbi import ATTACKS, apply_attack

    model = load_detector(weights)
    model.eval()
    size = model.config.input_size
    cache = FaceCache.load(cache_dir)
    sets = eval_set(cache, split, CACHE_SIZE, max_real=max_real)  # as in training; attacks act on this crop
    own_sources = [cache.items[i]["source"] for i in cache.where(split=split, label=1, source_prefix="own/")]
    attacks = list(attacks) if attacks else ["none", "jpeg90", "jpeg70", "jpeg50", "resize0.5", "social"]
    for a in attacks:
        if a not in ATTACKS:
            raise ValueError(f"unknown attack {a!r}; known: {', '.join(sorted(ATTACKS))}")
    res: dict = {"weights": str(weights), "weights_sha256": media.sha256_file(weights), "split": split,
                 "detector": model.name, "input_size": size, "results": {}}
    t0 = time.perf_counter()
    n_faces = 0
    parts = combined_parts(sets)
    for a in attacks:
        per = {}
        all_y, all_s = [], []
        scored: dict = {}
        for name, (imgs, y) in sets.items():
            if name.startswith("own/"):  # rows of "own": its real rows and the renders of one kind
                k = np.r_[np.ones(int((sets["own"][1] == 0).sum()), bool),
                          np.array([cache_src == name for cache_src in own_sources])]
                s = scored["own"][k]
            else:
                att = np.stack([apply_attack(im, a) for im in imgs]) if a != "none" else imgs
                s = _scores(model, att)
                n_faces += len(att)
                scored[name] = s
            per[name] = metrics.summary(y, s)
            if name in parts:
                all_y.append(np.asarray(y)[parts[name]])
                all_s.append(s[parts[name]])
        per["combined"] = metrics.summary(np.concatenate(all_y), np.concatenate(all_s))
        res["results"][a] = per
    res["faces_per_s"] = round(n_faces / max(time.perf_counter() - t0, 1e-9), 1)
    return res


# --------------------------------------------------------------------------- calibration


CALIBRATION_CONDITIONS = ("none", "resize0.5", "social")
"""How each calibration image is shown to the detector (``detect.sbi.ATTACKS``): as it is, halved
(smaller faces, as in wide shots and thumbnails) and as a social network re-encodes it (long edge
at most 1080, JPEG q75). The false-positive rate must hold for real faces as the verifier meets
them, not only for the crops the network trained on."""


def calibrate(weights: Path, shared_data: Path, *, renders: Path | None = None, split: str = "val",
              fpr: float = 0.01, out: Path | None = None, max_per_source: int | None = None,
              conditions=CALIBRATION_CONDITIONS, progress: bool = False) -> dict:
    """The decision threshold at which at most ``fpr`` of ``split``'s real faces are called fake,
    measured on whole images through the path ``dhstudio detect`` and ``verify`` use
    (``detect.score.score_image``: read, face detection, crop, score of the most suspicious face).

    Real images: every image of ``split`` labelled real in ``detect.data.build_manifest``
    (faces_real, faces_real_color, faces_fake_public's FFHQ photos), each under every condition of
    ``conditions`` (:data:`CALIBRATION_CONDITIONS`); an image in which no face is found has no
    score and does not count. Fakes (faces_fake_public's StyleGAN2 faces and, with ``renders``,
    our renders of that split, under the same conditions) only report the TPR reached at that
    threshold. The threshold is :func:`detect.metrics.tpr_at_fpr`'s (the lowest threshold whose
    empirical FPR is ``<= fpr``). With ``out``, the weights are written there with the record under
    ``metadata["calibration"]``; the verifier reads its threshold from there. Calibrate on the
    validation split: a threshold chosen on the test split would make the test figures a lie.
    ``max_per_source`` samples at most that many images per source (fixed seed; for tests).
    """
    import io

    from PIL import Image

    from . import metrics
    from .data import build_manifest, select
    from .registry import load_detector
    from .sbi import ATTACKS, apply_attack
    from .score import load_rgb, score_image

    if not 0.0 < fpr < 1.0:
        raise ValueError(f"fpr must lie in (0, 1), got {fpr}")
    conditions = tuple(conditions)
    bad = [c for c in conditions if c not in ATTACKS]
    if bad or not conditions:
        raise ValueError(f"unknown calibration conditions {bad}; known: {sorted(ATTACKS)}")
    model = load_detector(weights)
    model.eval()
    info = {"name": model.name, "weights_sha256": media.sha256_file(weights)}
    items = select(build_manifest(Path(shared_data), renders=Path(renders) if renders else None), split=split)
    if max_per_source:
        rng = np.random.default_rng(4321)
        by: dict[str, list] = {}
        for it in items:
            by.setdefault(f"{it['source']}:{it['label']}", []).append(it)
        items = [it for v in by.values()
                 for it in ([v[k] for k in np.sort(rng.choice(len(v), max_per_source, replace=False))]
                            if len(v) > max_per_source else v)]
    root = Path(shared_data)
    scores: dict[int, list[float]] = {0: [], 1: []}
    fake_sources: set[str] = set()
    no_face = {0: 0, 1: 0}
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(items), desc="calibrate", unit="img")
    for it in items:
        y = int(it["label"])
        rgb = load_rgb(root / it["path"])
        for cond in conditions:
            img = rgb if cond == "none" else apply_attack(rgb, cond)
            buf = io.BytesIO()
            Image.fromarray(img).save(buf, format="PNG", compress_level=1)
            r = score_image(buf.getvalue(), model, info, path_label=it["path"])
            if r.score is None:
                no_face[y] += 1
                continue
            scores[y].append(float(r.score))
            if y == 1:
                fake_sources.add(str(it["source"]))
        if bar:
            bar.update(1)
    if bar:
        bar.close()
    s_real, s_fake = np.asarray(scores[0], np.float64), np.asarray(scores[1], np.float64)
    yv = np.r_[np.zeros(len(s_real)), np.ones(len(s_fake))]
    res = metrics.tpr_at_fpr(yv, np.r_[s_real, s_fake], fpr) if len(s_real) and len(s_fake) else None
    if res is None:
        raise ValueError(f"{shared_data}: split {split!r} lacks real or fake faces to calibrate on")
    tpr, thr = res
    rec = {"split": split, "path": "whole image (detect.score.score_image)", "conditions": list(conditions),
           "fpr_target": fpr, "threshold": float(thr), "n_real": int(len(s_real)), "n_fake": int(len(s_fake)),
           "no_face_real": no_face[0], "no_face_fake": no_face[1],
           "fpr_measured": float((s_real >= thr).mean()), "tpr": float(tpr),
           "fake_sources": sorted(fake_sources), "weights_sha256": info["weights_sha256"]}
    if out is not None:
        model.save(out, metadata={"calibration": rec})
    return rec
