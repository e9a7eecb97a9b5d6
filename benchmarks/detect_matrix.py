"""Detectors side by side on every fake source: the cross matrix and the model comparison (issue 13).

    .venv/bin/python benchmarks/detect_matrix.py --cache /work/data/faces_cache_v2 \
        --run "sbi only=/work/data/runs/x_sbi/model.safetensors" --run ... [--attacks none,jpeg50]

Each ``--run LABEL=WEIGHTS`` is evaluated with ``detect.train.evaluate`` on the same split of the
face cache (the same real faces, the same Self-Blended fakes: fixed seed) and printed as one JSON
line per run, attack and source (AUC, EER, TPR at 1 % FPR...), then a markdown table of AUCs
(rows: runs; columns: sources). The training commands of the runs reported in BENCHMARKS.md are
listed there; a run's own training config is also in its weights' header (``train_config``).
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

COLUMNS = ("sbi", "gan", "own", "own/head_synth", "own/head_nerf", "own/body_turntable", "combined")


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", required=True)
    ap.add_argument("--run", action="append", required=True, metavar="LABEL=WEIGHTS")
    ap.add_argument("--split", default="test", choices=["val", "test"])
    ap.add_argument("--attacks", default="none")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)

    import torch

    from detect.registry import read_detector_header
    from detect.train import evaluate

    torch.set_num_threads(args.threads)
    common = {"machine": f"{cpu_name()}, {os.cpu_count()} cpus, torch threads {args.threads}",
              "date": time.strftime("%Y-%m-%d"), "split": args.split}
    rows = []
    for spec in args.run:
        label, _, w = spec.partition("=")
        if not w:
            ap.error(f"--run {spec!r}: expected LABEL=WEIGHTS")
        header = read_detector_header(w)
        tc = (header.get("metadata") or {}).get("train_config") or {}
        res = evaluate(Path(w), Path(args.cache), split=args.split, attacks=args.attacks.split(","), progress=False)
        for attack, per in res["results"].items():
            for source, s in per.items():
                print(json.dumps({"bench": "detect_matrix", "run": label, "attack": attack, "source": source,
                                  **{k: s.get(k) for k in ("auc", "eer", "tpr@fpr=0.01", "accuracy", "ece", "n_real",
                                                           "n_fake")},
                                  "detector": res["detector"], "input_size": res["input_size"],
                                  "gan_fraction": tc.get("gan_fraction"), "own_fraction": tc.get("own_fraction", 0.0),
                                  "weights_sha256": res["weights_sha256"], **common}), flush=True)
            rows.append((label, attack, res["detector"], per))
    print()
    print("| run | attack | detector | " + " | ".join(COLUMNS) + " | TPR@1%FPR combined |")
    print("|---|---|---|" + "---:|" * (len(COLUMNS) + 1))
    for label, attack, det, per in rows:
        cells = [_fmt((per.get(c) or {}).get("auc")) for c in COLUMNS]
        tpr = (per.get("combined") or {}).get("tpr@fpr=0.01")
        print(f"| {label} | {attack} | {det} | " + " | ".join(cells) + f" | {_fmt(tpr)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
