"""Face-forgery detector under whole-image attacks, through the whole detect path (issue 13).

    .venv/bin/python benchmarks/detect_fullimage.py [--weights assets/detector_default.safetensors] \
        [--shared ../shared/data] [--renders /work/data/own_renders_v1] [--split test] \
        [--max-per-source 20] [--attacks none,jpeg90,jpeg70,jpeg50,resize0.5,social] [--threads 2]

``benchmarks/detect_eval.py`` attacks the cached 224-px face crop. A social network attacks the
whole picture, and that is what breaks detectors; so here every attack of
``detect.sbi.apply_attack`` (the same functions: ``jpeg90``/``jpeg70``/``jpeg50`` one JPEG round
trip, ``resize0.5`` the whole image halved (bicubic, antialiased) and not scaled back, ``social``
the long edge brought down to 1080 px when longer (never up) then JPEG q75) is applied to the whole
image, and the attacked image goes through ``detect.score.score_image`` as ``dhstudio detect`` runs
it: read, face detection ("auto"), crop, score (the most suspicious face). ``none`` scores the
file itself; an attacked or self-blended image is handed to ``score_image`` as lossless PNG bytes
(its ``bytes`` input: the same code path, the pixels unchanged).

Sources, all from ``detect.data.build_manifest`` restricted to ``--split`` (never another split):

- ``gan``: faces_fake_public, real FFHQ (0) against StyleGAN2 (1);
- ``own``: real faces of faces_real + faces_real_color (0) against the studio's own renders
  (``--renders``, 1), and one line per render kind (``own/head_synth``, ``own/head_nerf``,
  ``own/body_turntable``) against the same reals; absent without ``--renders``;
- ``sbi_full``: the same real images (0) against a Self-Blended fake made on the whole image (1):
  the face is found by ``reconstruct.faces.detect_faces(rgb, mode="short", max_faces=1)`` and
  ``detect.sbi.self_blend`` runs on the whole image with its 68 landmarks (it works at any size).
  The one change: SBI's source translation is a fraction of the *image* size, and training blends
  on a face crop of ``(1 + 2 * CROP_MARGIN)`` times the landmark box; that fraction is scaled by
  crop side / image long side (at most 1) so the shift stays the training one relative to the face.
  Images with no face found before the attack get no fake (``sbi_no_face_before``);
- ``combined``: all of the above, each image counted once (the reals shared by ``own`` and
  ``sbi_full`` once).

``--max-per-source N`` samples (fixed seed) at most N images of each pool: gan reals, gan fakes,
the reals of own/sbi_full, each render kind; the SBI fakes come from the sampled reals.

No face after an attack: ``score_image`` returns ``score`` None ("detect.no_face"), the detector's
outcome for that image. Those images are left out of the metrics (AUC, EER, accuracy, TPR at FPR,
ECE of ``detect.metrics.summary`` over the scored images only) and counted in ``no_face``
(``no_face_real``, ``no_face_fake``); ``images`` counts all of them. A fake that loses its face is
not caught, so read the metrics together with ``no_face_fake``.

Output: one JSON object per line: ``detect_fullimage_setup`` (pools and counts), one
``detect_fullimage`` per attack and source, ``detect_fullimage_speed`` (images/s of
``score_image``: read + face detection + crop + score, with the torch threads used).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._machine import cpu_name  # noqa: E402

DEFAULT_ATTACKS = "none,jpeg90,jpeg70,jpeg50,resize0.5,social"


def _sample(items: list[dict], n: int | None, name: str, seed: int) -> list[dict]:
    """At most ``n`` of ``items`` (sorted by path; a fixed draw per pool name and seed)."""
    import numpy as np

    items = sorted(items, key=lambda it: it["path"])
    if n is None or len(items) <= n:
        return items
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    keep = np.sort(rng.choice(len(items), size=n, replace=False))
    return [items[i] for i in keep]


def _png(rgb) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _whole_image_sbi(rgb, seed: int, path: str):
    """A self-blended fake of the whole image, or None when no face (with landmarks) is found."""
    import dataclasses

    import numpy as np

    from detect.sbi import DEFAULT_CONFIG, self_blend
    from detect.train import CROP_MARGIN
    from reconstruct.faces import detect_faces

    faces = detect_faces(rgb, mode="short", max_faces=1)
    if not faces or faces[0].landmarks68 is None:
        return None
    lm = np.asarray(faces[0].landmarks68, np.float64)
    side = float((lm.max(axis=0) - lm.min(axis=0)).max()) * (1.0 + 2.0 * CROP_MARGIN)
    cfg = dataclasses.replace(DEFAULT_CONFIG,
                              translate=DEFAULT_CONFIG.translate * min(1.0, side / max(rgb.shape[:2])))
    fake, _mask = self_blend(rgb, lm, np.random.default_rng([seed, zlib.crc32(path.encode())]), cfg)
    return fake


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", default=str(ROOT / "assets" / "detector_default.safetensors"))
    ap.add_argument("--shared", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--renders", default=None, help="folder of own renders (with MANIFEST.tsv)")
    ap.add_argument("--split", default="test", choices=["val", "test"])
    ap.add_argument("--max-per-source", type=int, default=None, help="at most N images per pool (fixed seed)")
    ap.add_argument("--attacks", default=DEFAULT_ATTACKS)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))

    import numpy as np
    import torch

    from detect import metrics
    from detect.data import build_manifest, select
    from detect.sbi import ATTACKS, apply_attack
    from detect.score import load_default_detector, load_rgb, score_image

    attacks = [a.strip() for a in args.attacks.split(",") if a.strip()]
    for a in attacks:
        if a not in ATTACKS:
            ap.error(f"unknown attack {a!r}; known: {', '.join(sorted(ATTACKS))}")
    torch.set_num_threads(args.threads)
    common = {"machine": f"{cpu_name()}, {os.cpu_count()} cpus, torch threads {args.threads}",
              "date": time.strftime("%Y-%m-%d"), "split": args.split, "threads": args.threads}

    detector, info = load_default_detector(args.weights)
    info["name"] = detector.name
    shared = Path(args.shared)
    items = select(build_manifest(shared, renders=Path(args.renders) if args.renders else None), split=args.split)
    n = args.max_per_source

    def path_of(it: dict) -> str:
        return it["path"] if Path(it["path"]).is_absolute() else str(shared / it["path"])

    pools = {
        "gan_real": _sample(select(items, source="faces_fake_public", label=0), n, "gan_real", args.seed),
        "gan_fake": _sample(select(items, source="faces_fake_public", label=1), n, "gan_fake", args.seed),
        "real": _sample(select(items, source=["faces_real", "faces_real_color"], label=0), n, "real", args.seed),
    }
    own_kinds = sorted({it["source"] for it in select(items, source="own", label=1)})
    for kind in own_kinds:
        pools[kind] = _sample(select(items, source=kind, label=1), n, kind, args.seed)

    # units: key -> (label, path, made as SBI?); each scored once per attack
    units: dict[str, tuple[int, str, bool]] = {}
    members: dict[str, list[str]] = {"gan": [], "own": [], **{k: [] for k in own_kinds}, "sbi_full": []}
    for it in pools["gan_real"] + pools["gan_fake"]:
        units[it["path"]] = (it["label"], path_of(it), False)
        members["gan"].append(it["path"])
    for it in pools["real"]:
        units[it["path"]] = (0, path_of(it), False)
        members["sbi_full"].append(it["path"])
        if own_kinds:
            members["own"].append(it["path"])
            for kind in own_kinds:
                members[kind].append(it["path"])
    for kind in own_kinds:
        for it in pools[kind]:
            units[it["path"]] = (1, path_of(it), False)
            members["own"].append(it["path"])
            members[kind].append(it["path"])
    for it in pools["real"]:
        key = "sbi:" + it["path"]
        units[key] = (1, path_of(it), True)
        members["sbi_full"].append(key)
    if not own_kinds:
        del members["own"]
    members["combined"] = list(units)

    scores: dict[str, dict[str, float | None]] = {a: {} for a in attacks}
    sbi_no_face, unreadable = [], []
    t_score, n_scored = 0.0, 0
    t0 = time.perf_counter()
    for key, (label, path, is_sbi) in units.items():
        try:
            rgb = load_rgb(path)
        except Exception as e:  # noqa: BLE001 - listed, not fatal
            unreadable.append({"path": key, "reason": f"{type(e).__name__}: {e}"})
            continue
        if is_sbi:
            rgb = _whole_image_sbi(rgb, args.seed, key)
            if rgb is None:
                sbi_no_face.append(key)
                continue
        for a in attacks:
            src = path if (a == "none" and not is_sbi) else _png(apply_attack(rgb, a) if a != "none" else rgb)
            t1 = time.perf_counter()
            r = score_image(src, detector, info, path_label=key)
            t_score += time.perf_counter() - t1
            n_scored += 1
            if r.error is not None and r.error.get("code") != "detect.no_face":
                print(json.dumps({"bench": "detect_fullimage_error", "path": key, "attack": a, "error": r.error}),
                      file=sys.stderr)
            scores[a][key] = r.score
    total_s = time.perf_counter() - t0

    print(json.dumps({"bench": "detect_fullimage_setup", "max_per_source": n, "seed": args.seed,
                      "pools": {k: len(v) for k, v in pools.items()}, "renders": args.renders,
                      "sbi_no_face_before": len(sbi_no_face), "unreadable": len(unreadable),
                      "detector": info["name"], "weights_sha256": info["weights_sha256"], **common}))
    for a in attacks:
        for source, keys in members.items():
            keys = [k for k in keys if k in scores[a]]  # SBI fakes without a face and unreadable files: none
            ys = np.array([units[k][0] for k in keys if scores[a][k] is not None], dtype=np.int8)
            ss = np.array([scores[a][k] for k in keys if scores[a][k] is not None], dtype=np.float64)
            lost = [units[k][0] for k in keys if scores[a][k] is None]
            print(json.dumps({"bench": "detect_fullimage", "attack": a, "source": source,
                              **metrics.summary(ys, ss), "images": len(keys), "no_face": len(lost),
                              "no_face_real": lost.count(0), "no_face_fake": lost.count(1),
                              "detector": info["name"], "weights_sha256": info["weights_sha256"], **common}))
    print(json.dumps({"bench": "detect_fullimage_speed", "images_per_s": round(n_scored / max(t_score, 1e-9), 2),
                      "images": n_scored, "seconds_scoring": round(t_score, 1), "seconds_total": round(total_s, 1),
                      "what": "score_image on whole images: read + face detection (auto) + crop + score",
                      **common}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
