"""Body from one photo with and without the body prior (issue 16), side by side in one run.

    .venv/bin/python benchmarks/body_prior_bench.py --data DATASET [--prior-checkpoint W]
        [--checkpoint W] [--views 1,2,4] [--split test] [--max-subjects N] [--photo PHOTO --mask MASK]

On the held-out subjects of ``--split``, for 1, 2 and 4 views (the views ``dhstudio body eval``
takes: 0; 0, 4; 0, 2, 4, 6), every method on the same views:

- ``visual_hull``: the silhouettes' visual hull (``infer.visual_hull``);
- ``pifu``: the PIFu without the prior (``--checkpoint``, default the shipped
  ``assets/pifu_small.safetensors``);
- ``pifu_prior_est``: the PIFu trained with the prior (``--prior-checkpoint``), each view's prior
  fitted to that rendered view as to a photo (``dhstudio body priors``: MediaPipe pose on the
  RGB with its background, MakeHuman fit; read from ``prior_est.npz``, fitted here if absent);
- ``pifu_prior_oracle``: the same network, the prior from the subject's true joints (no noise);
- ``prior_solid_est`` / ``prior_solid_oracle`` (1 view): no network, the solid between the
  prior's front and back maps inside the view's silhouette (``infer.depth_hull``).

P2S, Chamfer (cm) and normal consistency (``reconstruct.metrics``), raw and after the best single
shift along view 0's axis (``metrics.shift_aligned_metrics``), means over all subjects and over
standing poses (rest / standing01 with jitter) and the rest apart. One JSON line per subject and
view count, then one summary line (``summary`` -> ``N_views`` -> method -> metrics).

``--photo`` (and ``--mask``, only to score the segmentation): the real photo through the prior
path without a mask: segmentation IoU, the fitted body's silhouette IoU, fit time, and the depth
extent of the torso of the reconstruction against the prior's (a body, not a slab).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

METRICS = ("p2s_cm", "chamfer_cm", "normal_consistency")


def emit(d: dict) -> None:
    from _machine import cpu_name

    print(json.dumps({"machine": f"{platform.machine()} {os.cpu_count()} cpus ({cpu_name()})",
                      "date": time.strftime("%Y-%m-%d"), **d}), flush=True)


def _standing(pose: str | None) -> bool:
    return bool(pose) and pose.split("+")[0] in ("rest", "standing01")


def _score(mesh, gt, fwd) -> dict:
    from reconstruct.metrics import shift_aligned_metrics, surface_metrics

    try:
        raw = surface_metrics(mesh, gt)
        al = shift_aligned_metrics(mesh, gt, fwd)
    except ValueError as e:
        return {"error": str(e)}
    return {**{k: raw[k] for k in METRICS}, **{f"{k}_aligned": al[k] for k in METRICS},
            "offset_cm": al["offset_cm"]}


def _torso_depth_extent(vertices: np.ndarray) -> float:
    """Depth (z) extent in metres of the torso band: heights 50-70 % of the body, |x| < 15 % of it."""
    v = np.asarray(vertices, np.float64)
    lo, hi = v[:, 1].min(), v[:, 1].max()
    h = hi - lo
    band = v[(v[:, 1] > lo + 0.5 * h) & (v[:, 1] < lo + 0.7 * h)]
    band = band[np.abs(band[:, 0] - np.median(band[:, 0])) < 0.15 * h]
    return float(np.ptp(band[:, 2])) if len(band) else float("nan")


def photo_report(photo: Path, mask: Path | None, checkpoint: Path) -> dict:
    from PIL import Image

    from reconstruct.body import prior
    from reconstruct.body.infer import reconstruct_photo
    from reconstruct.body.train import load_model
    from reconstruct.metrics import mask_iou

    with Image.open(photo) as im:
        rgb = np.asarray(im.convert("RGB"))
    t0 = time.perf_counter()
    est = prior.estimate_person(rgb)
    fit = prior.fit_body(est)
    t_fit = time.perf_counter() - t0
    out = {"photo": str(photo), "seconds_pose": round(est.seconds, 2), "seconds_fit": round(fit.seconds, 2),
           "seconds_pose_and_fit": round(t_fit, 2), "landmark_error_px": round(fit.landmark_error_px, 1)}
    if mask is not None:
        with Image.open(mask) as im:
            m = np.asarray(im.convert("L")) >= 128
        out["segmentation_iou"] = mask_iou(est.mask, m)
    sil = fit.maps(est.mask.shape[0])[2] > 0
    if sil.shape == est.mask.shape:
        out["prior_silhouette_iou"] = mask_iou(sil, est.mask)
    model = load_model(checkpoint)
    t0 = time.perf_counter()
    rec = reconstruct_photo(model, rgb, est.mask, fit=fit if model.cfg.prior_size else None)
    out["seconds_reconstruct"] = round(time.perf_counter() - t0, 2)
    mesh = rec.mesh
    out["mesh_torso_depth_m"] = round(_torso_depth_extent(mesh.vertices), 3)
    v, _ = fit.vertices()
    vb = prior.upright_vertices(v, fit.pose)  # faces +Z, as the reconstruction does
    out["prior_torso_depth_m"] = round(_torso_depth_extent(vb), 3)
    out["mesh_depth_m"] = round(float(np.ptp(mesh.vertices[:, 2])), 3)
    out["prior_depth_m"] = round(float(np.ptp(vb[:, 2])), 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--checkpoint", type=Path, default=ROOT / "assets" / "pifu_small.safetensors")
    ap.add_argument("--prior-checkpoint", type=Path, default=ROOT / "assets" / "pifu_prior.safetensors")
    ap.add_argument("--views", default="1,2,4")
    ap.add_argument("--split", default="test")
    ap.add_argument("--resolution", type=int, default=256)
    ap.add_argument("--max-subjects", type=int, default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--photo", type=Path, default=None)
    ap.add_argument("--mask", type=Path, default=None)
    a = ap.parse_args()

    import torch
    import trimesh

    from reconstruct.body.data import BodyDataset
    from reconstruct.body.evaluate import _pick_views
    from reconstruct.body.infer import depth_hull, reconstruct_views, visual_hull
    from reconstruct.body.train import load_model

    torch.set_num_threads(a.threads)
    t_start = time.time()
    base = load_model(a.checkpoint)
    pm = load_model(a.prior_checkpoint) if a.prior_checkpoint.is_file() else None
    if pm is not None and not pm.cfg.prior_size:
        raise SystemExit(f"{a.prior_checkpoint} was not trained with the body prior")
    ds = BodyDataset(a.data, a.split, image_size=base.cfg.image_size)
    ids = ds.ids[: a.max_subjects] if a.max_subjects else ds.ids
    counts = [int(v) for v in a.views.split(",")]
    P = pm.cfg.prior_size if pm is not None else 128
    rows = []
    for sid in ids:
        sub = ds.subject(sid)
        gt = trimesh.load(sub["dir"] / "mesh.ply", force="mesh", process=False)
        pose = sub["meta"].get("pose")
        for n in counts:
            ks = _pick_views(len(sub["meta"]["views"]), n)
            vs = [ds.view(sid, k) for k in ks]
            imgs, masks, cams = np.stack([v[0] for v in vs]), [v[1] for v in vs], [v[2] for v in vs]
            fwd = cams[0].R[2]
            row = {"subject": sid, "pose": pose, "views": len(ks)}
            row["visual_hull"] = _score(visual_hull(masks, cams, resolution=a.resolution).mesh, gt, fwd)
            row["pifu"] = _score(reconstruct_views(base, imgs, cams, resolution=a.resolution, colour=False).mesh, gt, fwd)
            oracle = np.stack([ds.prior_maps(sid, k, P, None, fill=False) for k in ks])
            est_maps = [ds.estimated_prior_maps(sid, k, P) for k in ks]
            est_maps = np.stack(est_maps)
            if n == 1:
                for name, mp in (("prior_solid_est", est_maps[0]), ("prior_solid_oracle", oracle[0])):
                    row[name] = _score(depth_hull(mp[0], mp[1], masks[0], cams[0], resolution=a.resolution).mesh, gt, fwd) \
                        if (mp[2] > 0).any() else {"error": "no prior"}
            if pm is not None:
                for name, mp in (("pifu_prior_est", est_maps), ("pifu_prior_oracle", oracle)):
                    rec = reconstruct_views(pm, imgs, cams, resolution=a.resolution, colour=False, priors=mp)
                    row[name] = _score(rec.mesh, gt, fwd)
            rows.append(row)
            print(json.dumps(row), flush=True)

    summary = {}
    for n in sorted({r["views"] for r in rows}):
        s = {}
        for group, keep in (("all", lambda r: True), ("standing", lambda r: _standing(r["pose"])),
                            ("other_poses", lambda r: not _standing(r["pose"]))):
            rs = [r for r in rows if r["views"] == n and keep(r)]
            g = {"subjects": len(rs)}
            for m in ("visual_hull", "pifu", "prior_solid_est", "prior_solid_oracle", "pifu_prior_est",
                      "pifu_prior_oracle"):
                ok = [r[m] for r in rs if m in r and "error" not in r[m]]
                if ok:
                    g[m] = {k: round(float(np.mean([x[k] for x in ok])), 3) for k in ok[0] if k != "offset_cm"}
                    g[m]["mean_abs_offset_cm"] = round(float(np.mean([abs(x["offset_cm"]) for x in ok])), 2)
                    g[m]["failed"] = len(rs) - len(ok)
            s[group] = g
        summary[f"{n}_views"] = s
    out = {"split": a.split, "subjects": len(ids), "checkpoint": str(a.checkpoint),
           "prior_checkpoint": str(a.prior_checkpoint) if pm is not None else None,
           "threads": a.threads, "seconds": round(time.time() - t_start, 1), "summary": summary}
    if a.photo is not None:
        out["photo"] = photo_report(a.photo, a.mask, a.prior_checkpoint if pm is not None else a.checkpoint)
    emit(out)


if __name__ == "__main__":
    main()
