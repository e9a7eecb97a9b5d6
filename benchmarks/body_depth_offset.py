"""How much of the single-view body error is one global depth offset? (issue #3 diagnostic)

    .venv/bin/python benchmarks/body_depth_offset.py --data DATASET [--checkpoint W] [--max-subjects N]

For each test subject (first view, as ``dhstudio body eval`` at 1 view), reconstruct, then slide
the reconstruction along the camera's viewing direction by the offset (searched from -30 to
+30 cm in 1 cm steps) that minimises P2S to the true surface. Prints per subject and mean: P2S
and Chamfer as evaluated, the best offset, and P2S / Chamfer after it. A large drop means the
network places the body at the wrong depth as a whole (the depth origin, the subject's bounding
box centre, is not visible in one photo); what remains is shape error.
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--checkpoint", type=Path, default=ROOT / "assets" / "pifu_small.safetensors")
    ap.add_argument("--resolution", type=int, default=256)
    ap.add_argument("--max-subjects", type=int, default=None)
    a = ap.parse_args()

    import trimesh

    from reconstruct.body.data import BodyDataset
    from reconstruct.body.infer import reconstruct_views
    from reconstruct.body.train import load_model
    from reconstruct.metrics import shift_aligned_metrics, surface_metrics

    model = load_model(a.checkpoint)
    ds = BodyDataset(a.data, "test", image_size=model.cfg.image_size)
    ids = ds.ids[: a.max_subjects] if a.max_subjects else ds.ids
    rows = []
    t0 = time.time()
    for sid in ids:
        gt = trimesh.load(ds.subject(sid)["dir"] / "mesh.ply", force="mesh", process=False)
        img, _, cam = ds.view(sid, 0)
        rec = reconstruct_views(model, img[None], [cam], resolution=a.resolution, coarse=64, colour=False).mesh
        raw = surface_metrics(rec, gt)
        al = shift_aligned_metrics(rec, gt, cam.R[2])  # along the camera's viewing direction
        rows.append({"subject": sid, "pose": ds.subject(sid)["meta"].get("pose"), "p2s_cm": raw["p2s_cm"],
                     "chamfer_cm": raw["chamfer_cm"], "best_offset_cm": al["offset_cm"],
                     "p2s_aligned_cm": al["p2s_cm"], "chamfer_aligned_cm": al["chamfer_cm"]})
        print(json.dumps(rows[-1]), flush=True)
    mean = {k: float(np.mean([r[k] for r in rows])) for k in ("p2s_cm", "chamfer_cm", "p2s_aligned_cm",
                                                              "chamfer_aligned_cm")}
    mean["mean_abs_offset_cm"] = float(np.mean([abs(r["best_offset_cm"]) for r in rows]))
    print(json.dumps({"machine": f"{platform.machine()} {os.cpu_count()} cpus", "date": time.strftime("%Y-%m-%d"),
                      "checkpoint": str(a.checkpoint), "subjects": len(rows), "views": 1,
                      "resolution": a.resolution, "seconds": round(time.time() - t0, 1), "mean": mean}))


if __name__ == "__main__":
    main()
