"""Face-forgery detector evaluation (issue 13, section 3): one command, JSON lines out.

    .venv/bin/python benchmarks/detect_eval.py --weights assets/detector_default.safetensors \
        --cache /work/data/faces_cache_v2 --renders /work/data/own_renders_v1 [--split test] [--threads 2]

The one command behind BENCHMARKS.md's evaluation table: the crop-level table below, the DFDC
smoke test, and (unless ``--no-fullimage``) ``benchmarks/detect_fullimage.py``'s attacks on whole
images through the whole ``dhstudio detect`` path, with the same weights, split and renders.

Prints, per attack (none, jpeg90, jpeg70, jpeg50, resize0.5, social) and source, the metrics of
``detect.metrics.summary`` (AUC, EER, accuracy, TPR at 1 % FPR, calibration error, counts):
- ``sbi``: held-out real faces (faces_real, faces_real_color, identity split) against
  Self-Blended fakes made from those same held-out faces;
- ``gan``: the held-out part of faces_fake_public (FFHQ photos against StyleGAN2 faces);
- ``own``: the same held-out real faces against the studio's own held-out renders (a cache built
  with ``--renders``), and one line per kind of render (``own/head_synth``, ``own/head_nerf``,
  ``own/body_turntable``);
- ``combined``: all of them, each face once.
Then the DFDC smoke test (``video_samples/dfdc_two_fakes/prepared_dataset``: 11 real and 11 fake
face crops from two face-swap videos; far too few to claim accuracy) through the whole
``dhstudio detect`` path (face detection, crop, score), and the speed of that path in faces/s.
The face cache is built by ``dhstudio detect cache`` (``detect.train.build_face_cache``).
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
    ap.add_argument("--weights", default=str(ROOT / "assets" / "detector_default.safetensors"))
    ap.add_argument("--cache", required=True, help="face cache folder (dhstudio detect cache)")
    ap.add_argument("--shared", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--split", default="test", choices=["val", "test"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--renders", default=None, help="own renders folder (for the whole-image part)")
    ap.add_argument("--no-fullimage", action="store_true", help="skip the whole-image attacks")
    ap.add_argument("--max-per-source", type=int, default=None, help="whole-image part: images per pool")
    args = ap.parse_args(argv)

    import numpy as np
    import torch

    from detect import metrics
    from detect.score import load_default_detector, score_image
    from detect.train import evaluate

    torch.set_num_threads(args.threads)
    common = {"machine": f"{cpu_name()}, {os.cpu_count()} cpus, torch threads {args.threads}",
              "date": time.strftime("%Y-%m-%d"), "split": args.split}
    t0 = time.perf_counter()
    res = evaluate(Path(args.weights), Path(args.cache), split=args.split, progress=False)
    for attack, per in res["results"].items():
        for source, s in per.items():
            print(json.dumps({"bench": "detect_eval", "attack": attack, "source": source, **s,
                              "detector": res["detector"], "weights_sha256": res["weights_sha256"], **common}))
    print(json.dumps({"bench": "detect_eval_speed_model_only", "faces_per_s": res["faces_per_s"],
                      "seconds": round(time.perf_counter() - t0, 1), **common}))

    detector, info = load_default_detector(args.weights)
    info["name"] = detector.name
    folder = Path(args.shared) / "video_samples" / "dfdc_two_fakes" / "prepared_dataset"
    ys, ss, n_noface = [], [], 0
    t0 = time.perf_counter()
    n = 0
    for label, sub in ((0, "real"), (1, "fake")):
        for p in sorted((folder / sub).glob("*.png")):
            r = score_image(p, detector, info)
            n += 1
            if r.score is None:
                n_noface += 1
                continue
            ys.append(label)
            ss.append(r.score)
    dt = time.perf_counter() - t0
    s = metrics.summary(np.array(ys), np.array(ss)) if ys else {"undefined": "no faces"}
    print(json.dumps({"bench": "detect_dfdc_smoke", **s, "images": n, "no_face": n_noface,
                      "note": "11 real + 11 fake crops from two DFDC videos: a smoke test, not an accuracy claim",
                      **common}))
    print(json.dumps({"bench": "detect_speed_end_to_end", "images_per_s": round(n / dt, 1),
                      "what": "read + face detection (mediapipe) + crop + score, DFDC crops", **common}))
    if not args.no_fullimage:
        from benchmarks import detect_fullimage

        fargs = ["--weights", args.weights, "--shared", args.shared, "--split", args.split,
                 "--threads", str(args.threads)]
        if args.renders:
            fargs += ["--renders", args.renders]
        if args.max_per_source:
            fargs += ["--max-per-source", str(args.max_per_source)]
        sys.stdout.flush()
        return detect_fullimage.main(fargs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
