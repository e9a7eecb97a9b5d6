"""Evaluate a PIFu checkpoint on a dataset split against the ground-truth meshes, side by side with
the visual-hull baseline from the same silhouettes (``dhstudio body eval``).

For every subject of the split and every view count in ``views`` (1-4), the first ``n`` views of
the subject (evenly spread in yaw) go to PIFu and to the visual hull; a PIFu trained with the body
prior gets each view's prior fitted to its render as to a photo (``pifu``) and, beside it, the
prior from the true joints (``pifu_oracle_prior``); the meshes are compared
with the subject's outer surface (``mesh.ply``) by :func:`reconstruct.metrics.surface_metrics`:
P2S, Chamfer (cm) and normal consistency. Reported: per-subject rows and the means.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .._deps import require


def _pick_views(n_total: int, n: int) -> list[int]:
    return sorted({int(round(k * n_total / n)) % n_total for k in range(n)})


def _depth_error_cm(model, ds, sid: str, k: int, img: np.ndarray, cam) -> dict:
    """The depth head against the ray-cast depth over the body's pixels of one view, mean
    absolute errors in cm: front and back depth (``depth_l1_cm``), the thickness back - front and
    the middle (front + back) / 2, the part a single silhouette leaves most open."""
    torch = require("torch")
    size = img.shape[0] // 4
    gt = ds.depths(sid, size)[k]
    with torch.no_grad():
        x = torch.from_numpy(img).permute(2, 0, 1)[None, None] * 2 - 1
        pred = model.depth_maps(model.encode(x))[-1][0].numpy()
    from .depth_train import depth_errors_cm

    return depth_errors_cm(pred[None], gt[None], np.array([cam.half_height]))


def evaluate(model, data: Path, *, split: str = "test", views=(1,), resolution: int = 256,
             coarse: int = 64, max_subjects: int | None = None, baseline: bool = True,
             progress: bool = True) -> dict:
    trimesh = require("trimesh")
    from ..metrics import surface_metrics
    from .data import BodyDataset
    from .infer import reconstruct_views, visual_hull

    ds = BodyDataset(data, split, image_size=model.cfg.image_size)
    if len(ds) == 0:
        raise ValueError(f"{data} has no subjects in split {split!r}")
    ids = ds.ids[:max_subjects] if max_subjects else ds.ids
    rows = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(ids) * len(views), desc=f"eval {split}", unit="recon")
    for sid in ids:
        sub = ds.subject(sid)
        gt = trimesh.load(sub["dir"] / "mesh.ply", force="mesh", process=False)
        nv_total = len(sub["meta"]["views"])
        for n in views:
            ks = _pick_views(nv_total, n)
            vs = [ds.view(sid, k) for k in ks]
            imgs = np.stack([v[0] for v in vs])
            cams = [v[2] for v in vs]
            ps = getattr(model.cfg, "prior_size", 0)
            # a model with the body prior gets it as a photo would: fitted to each view's render
            priors = np.stack([ds.estimated_prior_maps(sid, k, ps) for k in ks]) if ps else None
            t0 = time.perf_counter()
            rec = reconstruct_views(model, imgs, cams, resolution=resolution, coarse=coarse, colour=False,
                                    priors=priors)
            row = {"subject": sid, "views": len(ks), "seconds": round(time.perf_counter() - t0, 2)}
            try:
                row["pifu"] = surface_metrics(rec.mesh, gt)
            except ValueError as e:
                row["pifu"] = {"error": str(e)}
            if ps and sub["meta"].get("seed") is not None:  # beside it: the prior from the true joints
                oracle = np.stack([ds.prior_maps(sid, k, ps, None, fill=False) for k in ks])
                rec_o = reconstruct_views(model, imgs, cams, resolution=resolution, coarse=coarse, colour=False,
                                          priors=oracle)
                try:
                    row["pifu_oracle_prior"] = surface_metrics(rec_o.mesh, gt)
                except ValueError as e:
                    row["pifu_oracle_prior"] = {"error": str(e)}
            if baseline:
                try:
                    vh = visual_hull([v[1] for v in vs], cams, resolution=resolution, coarse=coarse)
                    row["visual_hull"] = surface_metrics(vh.mesh, gt)
                except ValueError as e:
                    row["visual_hull"] = {"error": str(e)}
            if n == 1 and getattr(model.cfg, "depth_head", False):
                row["depth_head"] = _depth_error_cm(model, ds, sid, ks[0], imgs[0], cams[0])
            rows.append(row)
            if bar:
                bar.update(1)
    if bar:
        bar.close()
    summary = {}
    for n in sorted({r["views"] for r in rows}):
        rs = [r for r in rows if r["views"] == n]
        s = {"subjects": len(rs)}
        for method in ("pifu", "pifu_oracle_prior", "visual_hull"):
            ok = [r[method] for r in rs if method in r and "error" not in r[method]]
            if ok:
                s[method] = {k: float(np.mean([m[k] for m in ok])) for k in ("p2s_cm", "chamfer_cm", "normal_consistency")}
                s[method]["failed"] = len(rs) - len(ok)
        dh = [r["depth_head"] for r in rs if "depth_head" in r]
        if dh:
            s["depth_head"] = {k: float(np.mean([d[k] for d in dh])) for k in dh[0]}
        if "pifu" in s and "visual_hull" in s:
            s["improvement_vs_visual_hull"] = {
                k: 1 - s["pifu"][k] / s["visual_hull"][k] for k in ("p2s_cm", "chamfer_cm")}
        summary[f"{n}_views"] = s
    return {"split": split, "resolution": resolution, "subjects": len(ids), "summary": summary, "rows": rows}
