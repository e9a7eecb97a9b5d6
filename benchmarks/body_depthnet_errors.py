"""Depth errors of a front/back depth net against ray-cast depth, next to constant predictions.

    .venv/bin/python benchmarks/body_depthnet_errors.py --data DATASET --depthnet W [--split val]

Over every view of the split, at the net's size, mean absolute errors in cm over the body's pixels
(``depth_train.depth_errors_cm``): front/back depth, thickness (back - front), middle
((front + back) / 2); and the *relative* middle error, after moving each view's predicted middle
by the offset that best aligns it (what the image could tell about which part is in front of
which). Side by side: a flat slab +-``--slab-cm`` at the subject's centre, whose relative middle
error is the spread of the true middle within a view. One JSON line.
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


def relative_middle_cm(pred: np.ndarray, gt: np.ndarray, half_height: np.ndarray) -> float:
    errs = []
    for p, g, h in zip(pred, gt, half_height):
        hit = g[2] > 0.5
        pm, gm = (0.5 * (p[0] + p[1]))[hit], (0.5 * (g[0] + g[1]))[hit]
        errs.append(np.mean(np.abs((pm - pm.mean()) - (gm - gm.mean()))) * h * 100)
    return float(np.mean(errs))


def main() -> None:
    from _machine import cpu_name

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--depthnet", required=True, type=Path)
    ap.add_argument("--split", default="val")
    ap.add_argument("--slab-cm", type=float, default=10.0)
    args = ap.parse_args()

    from reconstruct.body.data import BodyDataset
    from reconstruct.body.depth_train import depth_errors_cm, load_depthnet, load_views, predict

    t0 = time.perf_counter()
    net = load_depthnet(args.depthnet)
    S = net.cfg.image_size
    imgs, _, depth, hh, ids = load_views(BodyDataset(args.data, args.split, image_size=S), S)
    pred = predict(net, imgs)
    slab = np.zeros_like(pred)
    t = (args.slab_cm / 100 / hh)[:, None, None]
    slab[:, 0], slab[:, 1] = -t, t
    rows = {}
    for name, p in (("depthnet", pred), ("slab", slab)):
        rows[name] = {k: round(v, 2) for k, v in depth_errors_cm(p, depth, hh).items()}
        rows[name]["relative_middle_l1_cm"] = round(relative_middle_cm(p, depth, hh), 2)
    # the per-view mean middle (where the body sits as a whole) against the subject's centre
    hit = depth[:, 2] > 0.5
    offs = [abs(float((0.5 * (g[0] + g[1]))[m].mean())) * h * 100 for g, m, h in zip(depth, hit, hh)]
    print(json.dumps({"machine": f"{platform.machine()} {os.cpu_count()} cpus ({cpu_name()})",
                      "date": time.strftime("%Y-%m-%d"), "bench": "body_depthnet_errors", "split": args.split,
                      "views": len(ids), "weights": args.depthnet.name, "image_size": S,
                      "mean_abs_view_offset_cm": round(float(np.mean(offs)), 2),
                      "seconds": round(time.perf_counter() - t0, 1), **rows}))


if __name__ == "__main__":
    main()
