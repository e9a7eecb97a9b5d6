"""How far a front/back depth prior takes single-view body reconstruction (issue #3).

    .venv/bin/python benchmarks/body_depth_prior.py --data DATASET [--depthnet W] [--size 128]

On the test split (held-out subjects), view 0 of each subject (the single view
``dhstudio body eval`` uses), one run:

- ``oracle``: the solid between the *ray-cast* front and back depth maps at ``--size`` px
  (``infer.depth_hull``): the best a front/back depth representation can do at that resolution
  (hidden concavities between the two surfaces count as inside);
- ``oracle_thickness``: the ray-cast thickness (back - front) but the middle put at the subject's
  centre: what a perfect thickness predictor that knows nothing of the middle would give;
- ``oracle_offset``: the ray-cast maps shifted by their mean middle depth over the body's pixels:
  the true shape at the wrong depth as a whole, the cost of the per-view depth offset alone;
- ``slab``: a constant slab +-``--slab-cm`` around the subject's centre in the silhouette (a
  prior with no image reading at all);
- ``depthnet`` (with ``--depthnet``): the solid between the depth net's predicted maps, and its
  depth errors (front/back, thickness, middle) in cm;
- ``pifu:NAME`` (with ``--checkpoint``, repeatable): a PIFu checkpoint's mesh, same run.

P2S / Chamfer in cm and normal consistency (``reconstruct.metrics``), means over subjects, and
per pose family (``by_pose``: 'random' = full-range random joint angles, else the BVH or rest pose
the subject's pose was jittered from); one JSON line per method and a summary line.
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


def emit(d: dict) -> None:
    from _machine import cpu_name

    d = {"machine": f"{platform.machine()} {os.cpu_count()} cpus ({cpu_name()})", "date": time.strftime("%Y-%m-%d"), **d}
    print(json.dumps(d), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--depthnet", type=Path, default=None)
    ap.add_argument("--checkpoint", type=Path, action="append", default=[],
                    help="a PIFu checkpoint to compare with (repeat for several)")
    ap.add_argument("--size", type=int, default=128, help="depth-map size of the oracle")
    ap.add_argument("--slab-cm", type=float, default=10.0)
    ap.add_argument("--resolution", type=int, default=256)
    ap.add_argument("--max-subjects", type=int, default=None)
    ap.add_argument("--split", default="test")
    args = ap.parse_args()

    import trimesh

    from reconstruct.body.data import BodyDataset
    from reconstruct.body.infer import depth_hull, reconstruct_views
    from reconstruct.metrics import surface_metrics

    net = None
    if args.depthnet:
        from reconstruct.body.depth_train import depth_errors_cm, load_depthnet, predict

        net = load_depthnet(args.depthnet)
    pifus = {}
    if args.checkpoint:
        from reconstruct.body.train import load_model

        pifus = {f"pifu:{p.name}": load_model(p) for p in args.checkpoint}
    ds = BodyDataset(args.data, args.split)
    small = BodyDataset(args.data, args.split, image_size=net.cfg.image_size) if net is not None else None
    pds = {name: BodyDataset(args.data, args.split, image_size=m.cfg.image_size) for name, m in pifus.items()}
    ids = ds.ids[:args.max_subjects] if args.max_subjects else ds.ids
    rows = {k: [] for k in ("oracle", "oracle_thickness", "oracle_offset", "slab", "depthnet")}
    derr = []
    families = []  # pose family of each subject: 'random' (full-range joint angles) or the base pose
    t0 = time.perf_counter()
    for sid in ids:
        gt = trimesh.load(ds.subject(sid)["dir"] / "mesh.ply", force="mesh", process=False)
        families.append(str(ds.subject(sid)["meta"].get("pose") or "unknown").split("+")[0])
        _, mask, cam = ds.view(sid, 0)
        d = ds.depths(sid, args.size)[0]
        rows["oracle"].append(surface_metrics(depth_hull(d[0], d[1], mask, cam, resolution=args.resolution).mesh, gt))
        half = 0.5 * (d[1] - d[0])
        rows["oracle_thickness"].append(surface_metrics(depth_hull(-half, half, mask, cam, resolution=args.resolution).mesh, gt))
        mid = (0.5 * (d[0] + d[1]))[d[2] > 0.5].mean()
        rows["oracle_offset"].append(surface_metrics(
            depth_hull(d[0] - mid, d[1] - mid, mask, cam, resolution=args.resolution).mesh, gt))
        t = args.slab_cm / 100 / cam.half_height
        flat = np.full_like(d[0], t)
        rows["slab"].append(surface_metrics(depth_hull(-flat, flat, mask, cam, resolution=args.resolution).mesh, gt))
        if net is not None:
            S = net.cfg.image_size
            img_s, m_s, cam_s = small.view(sid, 0)
            pred = predict(net, img_s[None])[0]
            derr.append(depth_errors_cm(pred[None], small.depths(sid, S)[:1], np.array([cam_s.half_height])))
            rec = depth_hull(pred[0], pred[1], m_s, cam, resolution=args.resolution)
            rows["depthnet"].append(surface_metrics(rec.mesh, gt))
        for name, pifu in pifus.items():
            img_p, _, cam_p = pds[name].view(sid, 0)
            rec = reconstruct_views(pifu, img_p[None], [cam_p], resolution=args.resolution, colour=False)
            rows.setdefault(name, []).append(surface_metrics(rec.mesh, gt))
        for d_ in (ds, small, *pds.values()):
            if d_ is not None:
                d_._cache.clear()
    summary = {}
    for k, rs in rows.items():
        if not rs:
            continue
        summary[k] = {m: round(float(np.mean([r[m] for r in rs])), 3) for m in ("p2s_cm", "chamfer_cm", "normal_consistency")}
        by_pose = {}
        for fam in sorted(set(families)):
            sel = [r for r, f in zip(rs, families) if f == fam]
            by_pose[fam] = {"subjects": len(sel), "p2s_cm": round(float(np.mean([r["p2s_cm"] for r in sel])), 2),
                            "chamfer_cm": round(float(np.mean([r["chamfer_cm"] for r in sel])), 2)}
        emit({"bench": "body_depth_prior", "method": k, "subjects": len(rs), **summary[k],
              "per_subject_p2s": [round(r["p2s_cm"], 2) for r in rs], "by_pose": by_pose})
    if derr:
        summary["depthnet_errors_cm"] = {k: round(float(np.mean([e[k] for e in derr])), 2) for k in derr[0]}
    emit({"bench": "body_depth_prior", "split": args.split, "subjects": len(ids), "size": args.size,
          "resolution": args.resolution, "seconds": round(time.perf_counter() - t0, 1),
          "depthnet": args.depthnet.name if args.depthnet else None,
          "checkpoints": [p.name for p in args.checkpoint], "summary": summary})


if __name__ == "__main__":
    main()
