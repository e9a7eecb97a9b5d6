"""Record tests/detect/data/verdict_content_regression.json: the fused verdict (content check ON,
the shipped detector) of every shared fixture on which the content check scored a face.

    OMP_NUM_THREADS=1 .venv/bin/python -m tests.detect.record_content_regression

Run it again whenever assets/detector_default.safetensors changes (its sha256 is in the table and
test_verdict_regression fails until the table matches), then REVIEW the printed label changes
before committing the table: each one is a verdict that users will see change.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "data"
TABLE = Path(__file__).parent / "data" / "verdict_regression.json"
OUT = Path(__file__).parent / "data" / "verdict_content_regression.json"
# the options test_verdict_regression verifies with (max_frames keeps the three face videos quick)
OPTIONS = {"use_default_anchors": False, "registry": None, "max_frames": 8}


def record() -> dict:
    import torch

    import detect
    from detect.content import load_detector_cached

    torch.set_num_threads(1)
    old = json.loads(TABLE.read_text())
    det = load_detector_cached(None)
    out = {
        "recorded_with": "python -m tests.detect.record_content_regression",
        "weights": "assets/detector_default.safetensors",
        "weights_sha256": det.info["weights_sha256"],
        "detector": det.info["name"],
        "threshold": det.threshold,
        "calibration": det.calibration,
        "options": {k: v for k, v in OPTIONS.items() if k in ("max_frames",)},
        "fixtures": {},
    }
    with tempfile.TemporaryDirectory() as home:
        os.environ["DHSTUDIO_HOME"] = home
        for rel in sorted(old):
            v = detect.verify(SHARED / rel, detect.VerifyOptions(**OPTIONS))
            c = v.content
            if c.status != "ok":
                continue
            out["fixtures"][rel] = {
                "old_label": old[rel]["label"],
                "label": v.label,
                "faces": len(c.faces),
                "tracks": len(c.tracks),
                "score": round(float(c.score), 4),
                "above_threshold": c.above_threshold,
                "content_reason": v.reasons[len(old[rel]["reasons"])],
            }
    return out


def main() -> int:
    if not SHARED.is_dir():
        print(f"{SHARED} is absent", file=sys.stderr)
        return 2
    table = record()
    OUT.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")
    print(f"wrote {OUT} (weights {table['weights_sha256'][:12]}, threshold {table['threshold']})")
    for rel, r in table["fixtures"].items():
        mark = "CHANGED" if r["old_label"] != r["label"] else "same   "
        print(f"{mark} {rel}: {r['old_label']} -> {r['label']} (score {r['score']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
