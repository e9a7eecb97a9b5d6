"""Faces/s of crop + score for every registered detector, on 1 and 2 torch threads (issue 13).

    .venv/bin/python benchmarks/detect_speed.py --cache /work/data/faces_cache_v2 \
        [--weights NAME=run/model.safetensors ...] [--input-size 128] [--faces 256]

For each detector in ``detect.registry.list_detectors()``: cut the test-time crop of ``--faces``
cached faces (``detect.score.face_crops``' crop: landmarks, ``CROP_MARGIN``, ``CROP_SIZE`` px) and
score them (``predict_proba``, batches of 32), timed end to end after one warm-up batch; best of
``--repeats``. The weights do not change the arithmetic: a detector without ``--weights`` is timed
with a fresh initialisation at ``--input-size``; with weights, at the size it was trained at.
Face detection (mediapipe) is not included: ``benchmarks/faces_bench.py`` times it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._machine import cpu_name  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", required=True, help="face cache folder (dhstudio detect cache)")
    ap.add_argument("--weights", action="append", default=[], metavar="NAME=PATH")
    ap.add_argument("--input-size", type=int, default=128)
    ap.add_argument("--faces", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", default="1,2")
    args = ap.parse_args(argv)

    import numpy as np
    import torch

    from detect.registry import create_detector, list_detectors, load_detector
    from detect.sbi import crop_face
    from detect.score import CROP_SIZE
    from detect.train import CROP_MARGIN, FaceCache

    given = dict(w.split("=", 1) for w in args.weights)
    cache = FaceCache.load(Path(args.cache))
    idx = cache.where(split="test")[: args.faces]
    raw = np.asarray(cache.crops[idx])
    lms = cache.landmarks[idx]
    for name in list_detectors():
        torch.manual_seed(0)
        model = load_detector(given[name]) if name in given else create_detector(name, input_size=args.input_size)
        model.eval()
        n_params = sum(p.numel() for p in model.parameters())
        for th in (int(t) for t in args.threads.split(",")):
            torch.set_num_threads(th)
            model.predict_proba(np.stack([crop_face(raw[i], lms[i], CROP_SIZE, CROP_MARGIN)[0] for i in range(8)]))
            best = float("inf")
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                crops = np.stack([crop_face(raw[i], lms[i], CROP_SIZE, CROP_MARGIN)[0] for i in range(len(raw))])
                model.predict_proba(crops)
                best = min(best, time.perf_counter() - t0)
            print(json.dumps({"bench": "detect_speed", "detector": name, "input_size": model.config.input_size,
                              "params": n_params, "weights": given.get(name), "threads": th, "faces": len(raw),
                              "faces_per_s": round(len(raw) / best, 1),
                              "machine": f"{cpu_name()}, {os.cpu_count()} cpus", "date": time.strftime("%Y-%m-%d")}),
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
