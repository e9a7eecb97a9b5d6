"""How far a front/back depth prior takes single-view body reconstruction (issue #3).

    .venv/bin/python benchmarks/body_depth_prior.py --data DATASET [--depthnet W] [--size 128]

On the test split (held-out subjects), view 0 of each subject (the single view
``dhstudio body eval`` uses), one run:

- ``oracle``: the solid between the *ray-cast* front and back depth maps at ``--size`` px
  (``infer.depth_hull``): the best a front/back depth representation can do at that resolution
  (hidden concavities between the two surfaces count as inside);
- ``slab``: a constant slab +-``--slab-cm`` around the subject's centre in the silhouette (a
  prior with no image reading at all);
- ``depthnet`` (with ``--depthnet``): the solid between the depth net's predicted maps, and its
  depth errors (front/back, thickness, middle) in cm;
- ``pifu`` (with ``--checkpoint``): the PIFu checkpoint's mesh, for comparison in the same run.

P2S / Chamfer in cm and normal consistency (``reconstruct.metrics``), means over subjects; one
JSON line per method and a summary line.
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
    d = {"machine": f"{platform.machine()} {os.cpu_count()} cpus", "date": time.strftime("%Y-%m-%d"), **d}
    print(json.dumps(d), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--depthnet", type=Path, default=None)
    ap.add_argument("--checkpoint", type=Path, default=None, help="a PIFu checkpoint to compare with")
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
    pifu = None
    if args.checkpoint:
        from reconstruct.body.train import load_model

        pifu = load_model(args.checkpoint)
    ds = BodyDataset(args.data, args.split)
    ids = ds.ids[:args.max_subjects] if args.max_subjects else ds.ids
    rows = {k: [] for k in ("oracle", "slab", "depthnet", "pifu")}
    derr = []
    t0 = time.perf_counter()
    for sid in ids:
        gt = trimesh.load(ds.subject(sid)["dir"] / "mesh.ply", force="mesh", process=False)
        _, mask, cam = ds.view(sid, 0)
        d = ds.depths(sid, args.size)[0]
        rows["oracle"].append(surface_metrics(depth_hull(d[0], d[1], mask, cam, resolution=args.resolution).mesh, gt))
        t = args.slab_cm / 100 / cam.half_height
        flat = np.full_like(d[0], t)
        rows["slab"].append(surface_metrics(depth_hull(-flat, flat, mask, cam, resolution=args.resolution).mesh, gt))
        if net is not None:
            S = net.cfg.image_size
            small = BodyDataset(args.data, args.split, image_size=S)
            img_s, m_s, cam_s = small.view(sid, 0)
            pred = predict(net, img_s[None])[0]
            derr.append(depth_errors_cm(pred[None], small.depths(sid, S)[:1], np.array([cam_s.half_height])))
            rec = depth_hull(pred[0], pred[1], m_s, cam, resolution=args.resolution)
            rows["depthnet"].append(surface_metrics(rec.mesh, gt))
        if pifu is not None:
            pds = BodyDataset(args.data, args.split, image_size=pifu.cfg.image_size)
            img_p, _, cam_p = pds.view(sid, 0)
            rec = reconstruct_views(pifu, img_p[None], [cam_p], resolution=args.resolution, colour=False)
            rows["pifu"].append(surface_metrics(rec.mesh, gt))
        ds._cache.clear()
    summary = {}
    for k, rs in rows.items():
        if not rs:
            continue
        summary[k] = {m: round(float(np.mean([r[m] for r in rs])), 3) for m in ("p2s_cm", "chamfer_cm", "normal_consistency")}
        emit({"bench": "body_depth_prior", "method": k, "subjects": len(rs), **summary[k],
              "per_subject_p2s": [round(r["p2s_cm"], 2) for r in rs]})
    if derr:
        summary["depthnet_errors_cm"] = {k: round(float(np.mean([e[k] for e in derr])), 2) for k in derr[0]}
    emit({"bench": "body_depth_prior", "split": args.split, "subjects": len(ids), "size": args.size,
          "resolution": args.resolution, "seconds": round(time.perf_counter() - t0, 1),
          "depthnet": args.depthnet.name if args.depthnet else None,
          "checkpoint": args.checkpoint.name if args.checkpoint else None, "summary": summary})


if __name__ == "__main__":
    main()
