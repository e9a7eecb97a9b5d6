"""Body reconstruction figures (issue #3): accuracy vs the visual hull, extraction speed, photo run.

    .venv/bin/python benchmarks/body_bench.py --data DATASET [--checkpoint W] [--views 1,2,4]

1. ``evaluate``: P2S / Chamfer (cm) / normal consistency on the test split (held-out subjects) at
   each view count, PIFu and the visual hull of the same silhouettes, same run.
2. Coarse-to-fine vs dense 256^3 evaluation of the same network on one test view: wall time,
   network evaluations, and the Chamfer distance between the two meshes.
3. ``dhstudio body reconstruct`` path on ../shared/data/body_photos/ryota.png with its mask
   (time of the whole call, unsigned and signed, and the silhouette IoU).

Prints one JSON line per result.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def emit(d: dict) -> None:
    d = {"machine": f"{platform.machine()} {os.cpu_count()} cpus", "date": time.strftime("%Y-%m-%d"), **d}
    print(json.dumps(d), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--checkpoint", type=Path, default=ROOT / "assets" / "pifu_small.safetensors")
    ap.add_argument("--views", default="1,2,4")
    ap.add_argument("--resolution", type=int, default=256)
    ap.add_argument("--max-subjects", type=int, default=None)
    ap.add_argument("--skip", default="", help="comma list of parts to skip: eval,extract,photo")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))

    from reconstruct.body.evaluate import evaluate
    from reconstruct.body.train import load_model

    model = load_model(args.checkpoint)
    if "eval" not in skip:
        t0 = time.perf_counter()
        res = evaluate(model, args.data, split="test", views=tuple(int(v) for v in args.views.split(",")),
                       resolution=args.resolution, max_subjects=args.max_subjects, progress=False)
        emit({"bench": "body_eval", "checkpoint": args.checkpoint.name, "seconds": round(time.perf_counter() - t0, 1),
              "subjects": res["subjects"], "resolution": args.resolution, "summary": res["summary"]})

    if "extract" not in skip:
        from reconstruct.body.data import BodyDataset
        from reconstruct.body.infer import reconstruct_views
        from reconstruct.metrics import surface_metrics

        ds = BodyDataset(args.data, "test", image_size=model.cfg.image_size)
        sid = ds.ids[0]
        img, _, cam = ds.view(sid, 0)
        out = {}
        for mode in ("coarse_to_fine", "dense"):
            t0 = time.perf_counter()
            rec = reconstruct_views(model, img[None], [cam], resolution=256, coarse=64, dense=(mode == "dense"),
                                    colour=False)
            out[mode] = {"seconds": round(time.perf_counter() - t0, 2), "evaluations": rec.stats.evaluated,
                         "mesh": rec.mesh}
        m = surface_metrics(out["coarse_to_fine"]["mesh"], out["dense"]["mesh"], n_points=20000)
        emit({"bench": "extraction_256", "subject": sid,
              "coarse_to_fine_s": out["coarse_to_fine"]["seconds"], "dense_s": out["dense"]["seconds"],
              "speedup": round(out["dense"]["seconds"] / out["coarse_to_fine"]["seconds"], 2),
              "evaluations": [out["coarse_to_fine"]["evaluations"], out["dense"]["evaluations"]],
              "chamfer_between_mm": round(m["chamfer_cm"] * 10, 4), "threads": int(__import__("torch").get_num_threads())})

    if "photo" not in skip:
        photo = ROOT.parent / "shared" / "data" / "body_photos" / "ryota.png"
        if not photo.is_file():
            emit({"bench": "photo", "skipped": f"{photo} absent"})
            return
        os.environ.setdefault("DHSTUDIO_HOME", tempfile.mkdtemp(prefix="dhs-bench-home-"))
        from studio.pipelines.body import reconstruct_body

        d = Path(tempfile.mkdtemp(prefix="body-bench-"))
        for sign in (False, True):
            t0 = time.perf_counter()
            r = reconstruct_body(photo, d / f"ryota_{int(sign)}.glb", mask=photo.with_name("ryota_mask.png"),
                                 checkpoint=args.checkpoint, turntable=sign, sign=sign)
            emit({"bench": "photo_reconstruct", "signed_with_turntable": sign,
                  "seconds": round(time.perf_counter() - t0, 2), "steps": r.seconds, "vertices": r.vertices,
                  "mask_iou": round(r.mask_iou, 4), "threads": int(__import__("torch").get_num_threads())})


if __name__ == "__main__":
    main()
