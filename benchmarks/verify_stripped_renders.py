"""Our own renders through the fused verifier as the manifest, then the watermark, are lost (issue 14).

    .venv/bin/python benchmarks/verify_stripped_renders.py --renders /work/data/own_renders_v1 \
        [--split test] [--n 40] [--threads 1]

Fakes: ``--n`` held-out renders of the studio's own generators (``--renders`` folder, split
``--split``: synthetic ICT heads and NeRF avatar stills), each published as dhstudio publishes
its output (``studio.pipelines.publish``: watermark, C2PA manifest, registry record; a throw-away
signing identity and registry in a temporary DHSTUDIO_HOME). Reals: ``--n`` held-out real faces
(faces_real_color, same split), never signed. Conditions, every file through ``detect.verify``
with the shipped (calibrated) detector and the local CA as trust anchor:

- ``signed``: the published file as it is;
- ``stripped``: its pixels saved again as PNG (the manifest is gone, the watermark stays);
- ``stripped+crop+jpeg50``: 10 % cut from every side, then JPEG q50 (manifest and, mostly, the
  watermark gone: what is left is the content check);
- reals: ``original`` and ``crop+jpeg50`` (the same attack): how often a real face is accused.

Prints one JSON line per class and condition: label counts, the share found by the watermark,
the share labelled ``no-provenance-looks-manipulated``, and the mean content score.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._machine import cpu_name  # noqa: E402


def _crop_jpeg(src: Path, dst: Path, q: int = 50) -> None:
    from PIL import Image

    with Image.open(src) as im:
        im = im.convert("RGB")
        w, h = im.size
        im.crop((w // 10, h // 10, w - w // 10, h - h // 10)).save(dst, quality=q)


def _repng(src: Path, dst: Path) -> None:
    from PIL import Image

    with Image.open(src) as im:
        buf = io.BytesIO()
        im.convert("RGB").save(buf, format="PNG")
    dst.write_bytes(buf.getvalue())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--renders", required=True)
    ap.add_argument("--shared", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--split", default="test", choices=["val", "test"])
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--weights", default=None, help="detector weights (default: the shipped ones)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="dhs-stripped-"))
    os.environ["DHSTUDIO_HOME"] = str(work / "home")
    (work / "home").mkdir(mode=0o700)

    import detect
    from detect.data import build_manifest, select
    from provenance.registry import Registry
    from studio.pipelines.publish import publish

    rng = np.random.default_rng(args.seed)
    items = build_manifest(Path(args.shared), packs=("faces_real_color",), renders=Path(args.renders))
    fakes = [it for it in select(items, split=args.split, label=1)
             if it["source"] in ("own/head_synth", "own/head_nerf")]
    reals = select(items, split=args.split, label=0)
    fakes = [fakes[i] for i in sorted(rng.choice(len(fakes), min(args.n, len(fakes)), replace=False))]
    reals = [reals[i] for i in sorted(rng.choice(len(reals), min(args.n, len(reals)), replace=False))]
    registry = Registry(work / "registry.sqlite")
    opts = detect.VerifyOptions(registry=registry, detector_weights=args.weights)
    common = {"machine": f"{cpu_name()}, {os.cpu_count()} cpus, torch threads {args.threads}",
              "date": time.strftime("%Y-%m-%d"), "split": args.split}

    results: dict[tuple[str, str], list] = {}

    def check(cls: str, cond: str, path: Path, source: str) -> None:
        v = detect.verify(path, opts)
        results.setdefault((cls, cond), []).append((v.label, v.watermark.found, v.content.score, source))

    t0 = time.perf_counter()
    for k, it in enumerate(fakes):
        raw = Path(it["path"])
        signed = work / f"f{k}_signed.png"
        publish(raw, signed, registry=registry)
        check("own render", "signed", signed, it["source"])
        stripped = work / f"f{k}_stripped.png"
        _repng(signed, stripped)
        check("own render", "stripped", stripped, it["source"])
        attacked = work / f"f{k}_attacked.jpg"
        _crop_jpeg(signed, attacked)
        check("own render", "stripped+crop+jpeg50", attacked, it["source"])
    shared = Path(args.shared)
    for k, it in enumerate(reals):
        src = shared / it["path"]
        check("real face", "original", src, it["source"])
        attacked = work / f"r{k}_attacked.jpg"
        _crop_jpeg(src, attacked)
        check("real face", "crop+jpeg50", attacked, it["source"])
    for (cls, cond), rows in results.items():
        labels = Counter(r[0] for r in rows)
        scores = [r[2] for r in rows if r[2] is not None]
        print(json.dumps({"bench": "verify_stripped_renders", "class": cls, "condition": cond, "n": len(rows),
                          "labels": dict(labels.most_common()),
                          "watermark_found": round(sum(r[1] for r in rows) / len(rows), 3),
                          "looks_manipulated": round(labels.get("no-provenance-looks-manipulated", 0) / len(rows), 3),
                          "no_face": sum(r[2] is None for r in rows),
                          "mean_score": round(float(np.mean(scores)), 3) if scores else None,
                          "seconds": round(time.perf_counter() - t0, 1), **common}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
