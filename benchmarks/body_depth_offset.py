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
    from reconstruct.metrics import N_POINTS, _directed, _sample, _scene

    model = load_model(a.checkpoint)
    ds = BodyDataset(a.data, "test", image_size=model.cfg.image_size)
    ids = ds.ids[: a.max_subjects] if a.max_subjects else ds.ids
    offsets = np.arange(-0.30, 0.3001, 0.01)
    rows = []
    t0 = time.time()
    for sid in ids:
        gt = trimesh.load(ds.subject(sid)["dir"] / "mesh.ply", force="mesh", process=False)
        img, _, cam = ds.view(sid, 0)
        rec = reconstruct_views(model, img[None], [cam], resolution=a.resolution, coarse=64, colour=False).mesh
        fwd = cam.R[2].astype(np.float32)  # the camera's viewing direction in world coordinates
        rp, rn = _sample(rec, N_POINTS, 0)
        gp, gn = _sample(gt, N_POINTS, 1)
        gscene = _scene(gt)

        def metrics(dz: float) -> tuple[float, float]:
            moved = rec.copy()
            moved.apply_translation(fwd.astype(np.float64) * dz)
            d_rg, _ = _directed((rp + fwd * dz).astype(np.float32), rn, gt, gscene)
            d_gr, _ = _directed(gp, gn, moved, _scene(moved))
            p2s = float(d_rg.mean()) * 100
            return p2s, 0.5 * (p2s + float(d_gr.mean()) * 100)

        p2s_by = [float(_directed((rp + fwd * dz).astype(np.float32), rn, gt, gscene)[0].mean()) * 100 for dz in offsets]
        best = float(offsets[int(np.argmin(p2s_by))])
        p0, c0 = metrics(0.0)
        p1, c1 = metrics(best)
        rows.append({"subject": sid, "pose": ds.subject(sid)["meta"].get("pose"), "p2s_cm": p0, "chamfer_cm": c0,
                     "best_offset_cm": round(best * 100, 1), "p2s_aligned_cm": p1, "chamfer_aligned_cm": c1})
        print(json.dumps(rows[-1]), flush=True)
    mean = {k: float(np.mean([r[k] for r in rows])) for k in ("p2s_cm", "chamfer_cm", "p2s_aligned_cm",
                                                              "chamfer_aligned_cm")}
    mean["mean_abs_offset_cm"] = float(np.mean([abs(r["best_offset_cm"]) for r in rows]))
    print(json.dumps({"machine": f"{platform.machine()} {os.cpu_count()} cpus", "date": time.strftime("%Y-%m-%d"),
                      "checkpoint": str(a.checkpoint), "subjects": len(rows), "views": 1,
                      "resolution": a.resolution, "seconds": round(time.time() - t0, 1), "mean": mean}))


if __name__ == "__main__":
    main()
