#!/usr/bin/env python
"""Face detection + landmarks benchmark (issue 13, section 1): ``reconstruct.faces``.

Prints one JSON line per figure (``--jsonl`` also writes them to a file), the first one with the
machine, date, versions and command. Run from the repository root in the main venv (faces extra
installed)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/faces_bench.py --jsonl .bench/faces_bench.jsonl

What it measures, for mode short / full / auto:

- ``pack``: on the real-face packs of ../shared/data, every image holds exactly one face. Per pack:
  detection rate (>= 1 face), faces-per-image histogram (0 / 1 / 2+), false detections per image
  (faces beyond the first: an upper bound, since a few FFHQ photos show a real second person in
  the background), landmark success (the face mesh confirmed the face), the same two
  figures counting only mesh-confirmed faces (``require_landmarks=True``), ms per image
  (detection + 478-point mesh, one thread). Sets: faces_real, a fixed random 500 of its 3,124
  (seed SEED; its 2,200 greyscale 350x350 LFW-style photos and 924 small colour crops are also
  reported apart over the same 500); faces_real_color, a fixed random 500 of its 4,263;
  faces_fake_public, all 800 (600 real FFHQ, 200 StyleGAN2; reported apart).
- ``no_face``: 300 fixed random crops (64 px to 1024 px, some greyscale) of the 7 distinct
  no-face photos among ../shared/data/c2pa_fixtures: false detections per image (all, and
  mesh-confirmed only).
- ``scale``: the size range of each detector. 60 FFHQ faces (faces_fake_public/real) pasted into
  a 1280x720 no-face photo at a face height (the detector box's height) of 4 % to 90 % of the
  frame height; hit = a detection whose box overlaps the pasted face (IoU >= 0.3). This is what
  "auto" is tuned on (see ``reconstruct/faces/_api.py``).
- ``jitter``: landmark jitter on video_samples/talking_head_french.mp4 (first ``--frames`` frames,
  each frame detected on its own, no smoothing): between consecutive frames, the 68 points of the
  earlier frame are mapped onto the later one by the best similarity transform (removes the head's
  global motion), and the mean remaining displacement is given as % of the inter-ocular distance
  (eye centre to eye centre). All 68 points, and the rigid ones (nose 27-35 and eye corners 36, 39,
  42, 45) where speech moves nothing. Also: the FaceTracker's id count over the clip.
- ``speed``: faces/s on 200 FFHQ images (384x384, one face each), per mode, with and without
  landmarks, one thread; then detect_faces_batch with 2 worker threads; and one 1920x1080 frame.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _machine import cpu_name  # noqa: E402

from reconstruct.faces import FaceTracker, detect_faces, detect_faces_batch  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
SEED = 20261213
MODES = ("short", "full", "auto")
NO_FACE_PHOTOS = ("C.jpg", "CA.jpg", "XCA.jpg", "earth_apollo17.jpg", "no_alg.jpg", "no_manifest.jpg", "ocsp.jpg")
RIGID = list(range(27, 36)) + [36, 39, 42, 45]

_out = None


def emit(d: dict) -> None:
    line = json.dumps(d)
    print(line, flush=True)
    if _out is not None:
        _out.write(line + "\n")
        _out.flush()


def load_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def machine(argv: list[str]) -> dict:
    import cv2
    import mediapipe

    return {"kind": "machine", "machine": f"{cpu_name()}, {os.cpu_count()} cpus, {platform.machine()}",
            "date": time.strftime("%Y-%m-%d %H:%M"), "python": platform.python_version(),
            "numpy": np.__version__, "mediapipe": mediapipe.__version__, "opencv": cv2.__version__,
            "command": " ".join(["benchmarks/faces_bench.py", *argv]), "seed": SEED}


# ----------------------------------------------------------------------------- packs

def pack_sets(n: int) -> dict[str, list[Path]]:
    rng = random.Random(SEED)
    real = sorted((SHARED / "faces_real" / "images").glob("*.jpg"))
    color = sorted((SHARED / "faces_real_color" / "images").rglob("*.jpg"))
    return {
        "faces_real": rng.sample(real, min(n, len(real))),
        "faces_real_color": rng.sample(color, min(n, len(color))),
        "faces_fake_public": sorted((SHARED / "faces_fake_public").glob("*/*.jpg")),
    }


def _subsets(name: str, files: list[Path]) -> dict[str, list[int]]:
    subs: dict[str, list[int]] = {name: list(range(len(files)))}
    if name == "faces_real":
        grey = [i for i, f in enumerate(files) if Image.open(f).mode == "L"]
        subs["faces_real/grey_lfw"] = grey
        subs["faces_real/colour_crops"] = [i for i in range(len(files)) if i not in set(grey)]
    if name == "faces_fake_public":
        subs["faces_fake_public/real_ffhq"] = [i for i, f in enumerate(files) if f.parent.name == "real"]
        subs["faces_fake_public/fake_stylegan2"] = [i for i, f in enumerate(files) if f.parent.name == "fake"]
    return subs


def bench_packs(n: int) -> None:
    for name, files in pack_sets(n).items():
        images = [load_rgb(f) for f in files]
        for mode in MODES:
            counts, confirmed, mesh_ok, dt, dets = [], [], [], [], Counter()
            for im in images:
                t = time.perf_counter()
                faces = detect_faces(im, mode=mode)
                dt.append(time.perf_counter() - t)
                counts.append(len(faces))
                confirmed.append(sum(f.landmarks is not None for f in faces))
                mesh_ok.append(bool(faces) and faces[0].landmarks is not None)
                dets.update(f.detector for f in faces[:1])
            counts_a, conf_a, mesh_a, dt_a = np.array(counts), np.array(confirmed), np.array(mesh_ok), np.array(dt)
            for sub, idx in _subsets(name, files).items():
                c, cc = counts_a[idx], conf_a[idx]
                emit({"kind": "pack", "pack": sub, "mode": mode, "images": len(idx),
                      "sample": (f"fixed random {len(files)} of the pack (seed {SEED})"
                                 if name != "faces_fake_public" else "whole pack"),
                      "detection_rate": round(float((c >= 1).mean()), 4),
                      "faces_per_image": {"0": int((c == 0).sum()), "1": int((c == 1).sum()),
                                          "2+": int((c >= 2).sum())},
                      "false_per_image": round(float(np.maximum(c - 1, 0).mean()), 4),
                      "require_landmarks": {"detection_rate": round(float((cc >= 1).mean()), 4),
                                            "false_per_image": round(float(np.maximum(cc - 1, 0).mean()), 4)},
                      "landmarks_ok_of_detected": (round(float(mesh_a[idx][c >= 1].mean()), 4)
                                                   if (c >= 1).any() else 0.0),
                      "found_by": dict(dets) if sub == name else None,
                      "ms_per_image": round(float(dt_a[idx].mean() * 1000), 2)})


# ----------------------------------------------------------------------------- no-face crops

def no_face_crops(k: int = 300) -> list[np.ndarray]:
    rng = np.random.default_rng(SEED)
    photos = [load_rgb(SHARED / "c2pa_fixtures" / p) for p in NO_FACE_PHOTOS]
    out = []
    for i in range(k):
        ph = photos[i % len(photos)]
        h, w = ph.shape[:2]
        side = int(rng.integers(64, min(h, w) + 1))
        y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        crop = ph[y:y + side, x:x + side]
        target = int(rng.integers(64, 1025))
        crop = np.asarray(Image.fromarray(crop).resize((target, target), Image.BILINEAR))
        if i % 5 == 0:
            crop = np.repeat(crop.mean(2, keepdims=True).astype(np.uint8), 3, axis=2)
        out.append(crop)
    return out


def bench_no_face() -> None:
    crops = no_face_crops()
    for mode in MODES:
        found = [detect_faces(im, mode=mode, landmarks=True) for im in crops]
        c = np.array([len(f) for f in found])
        cc = np.array([sum(x.landmarks is not None for x in f) for f in found])
        emit({"kind": "no_face", "mode": mode, "images": len(crops), "false_per_image": round(float(c.mean()), 4),
              "images_with_a_false_face": int((c > 0).sum()),
              "require_landmarks": {"false_per_image": round(float(cc.mean()), 4),
                                    "images_with_a_false_face": int((cc > 0).sum())}})


# ----------------------------------------------------------------------------- face size range

def bench_scale(k: int = 60) -> None:
    faces_dir = SHARED / "faces_fake_public" / "real"
    files = sorted(faces_dir.glob("*.jpg"))[:k]
    bg_src = load_rgb(SHARED / "c2pa_fixtures" / "no_manifest.jpg")
    bg = np.asarray(Image.fromarray(bg_src).resize((1280, 720), Image.BILINEAR))
    fractions = (0.04, 0.06, 0.08, 0.12, 0.18, 0.25, 0.35, 0.5, 0.7, 0.9)
    rng = np.random.default_rng(SEED)
    hits = {m: {f: 0 for f in fractions} for m in MODES}
    for path in files:
        src = load_rgb(path)
        ref = detect_faces(src, mode="short", landmarks=False)
        if not ref:
            continue
        fb = np.array(ref[0].box)
        face_h = fb[3] - fb[1]
        for frac in fractions:
            s = frac * 720 / face_h
            size = max(8, round(384 * s))
            tile = np.asarray(Image.fromarray(src).resize((size, size), Image.BILINEAR if s > 1 else Image.LANCZOS))
            canvas = bg.copy()
            # place the face box inside the frame; the tile may be cropped by the frame edge
            fx0, fy0 = fb[0] * s, fb[1] * s
            fw, fh = (fb[2] - fb[0]) * s, face_h * s
            x = int(rng.uniform(-fx0, 1280 - fx0 - fw)) if 1280 - fw > 0 else int(-fx0)
            y = int(rng.uniform(-fy0, 720 - fy0 - fh)) if 720 - fh > 0 else int(-fy0)
            cx0, cy0 = max(x, 0), max(y, 0)
            cx1, cy1 = min(x + size, 1280), min(y + size, 720)
            canvas[cy0:cy1, cx0:cx1] = tile[cy0 - y:cy1 - y, cx0 - x:cx1 - x]
            truth = np.array([x + fx0, y + fy0, x + fx0 + fw, y + fy0 + fh])
            for mode in MODES:
                found = detect_faces(canvas, mode=mode, landmarks=False)
                if any(_iou(np.array(f.box), truth) >= 0.3 for f in found):
                    hits[mode][frac] += 1
    n = len(files)
    for mode in MODES:
        emit({"kind": "scale", "mode": mode, "frame": "1280x720", "faces": n,
              "hit_rate_by_face_height_fraction": {str(f): round(hits[mode][f] / n, 3) for f in fractions}})


def _iou(p: np.ndarray, q: np.ndarray) -> float:
    ix = max(0.0, min(p[2], q[2]) - max(p[0], q[0]))
    iy = max(0.0, min(p[3], q[3]) - max(p[1], q[1]))
    inter = ix * iy
    return inter / ((p[2] - p[0]) * (p[3] - p[1]) + (q[2] - q[0]) * (q[3] - q[1]) - inter)


# ----------------------------------------------------------------------------- jitter

def video_frames(n: int) -> list[np.ndarray]:
    import av

    out = []
    with av.open(str(SHARED / "video_samples" / "talking_head_french.mp4")) as c:
        for frame in c.decode(video=0):
            out.append(frame.to_ndarray(format="rgb24"))
            if len(out) >= n:
                break
    return out


def _similarity_residual(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-point distance between b and the best similarity transform of a onto b."""
    ma, mb = a.mean(0), b.mean(0)
    a0, b0 = a - ma, b - mb
    u, s, vt = np.linalg.svd(b0.T @ a0)
    d = np.sign(np.linalg.det(u @ vt))
    r = u @ np.diag([1.0, d]) @ vt
    scale = (s * np.array([1.0, d])).sum() / (a0 ** 2).sum()
    return np.linalg.norm(b0 - scale * a0 @ r.T, axis=1)


def bench_jitter(n: int) -> None:
    frames = video_frames(n)
    tracker = FaceTracker()
    pts, ids, misses = [], set(), 0
    for fr in frames:
        faces = detect_faces(fr, mode="auto", max_faces=4)
        for tid, _ in tracker.update(faces):
            ids.add(tid)
        if faces and faces[0].landmarks68 is not None:
            pts.append(faces[0].landmarks68.astype(np.float64))
        else:
            pts.append(None)
            misses += 1
    all_j, rigid_j, raw_j = [], [], []
    for a, b in zip(pts[:-1], pts[1:]):
        if a is None or b is None:
            continue
        iod = np.linalg.norm(b[36:42].mean(0) - b[42:48].mean(0))
        res = _similarity_residual(a, b)
        all_j.append(res.mean() / iod * 100)
        rigid_j.append(_similarity_residual(a[RIGID], b[RIGID]).mean() / iod * 100)
        raw_j.append(np.linalg.norm(b - a, axis=1).mean() / iod * 100)

    def stats(v):
        v = np.array(v)
        return {"mean": round(float(v.mean()), 3), "median": round(float(np.median(v)), 3),
                "p95": round(float(np.percentile(v, 95)), 3)}

    emit({"kind": "jitter", "video": "talking_head_french.mp4", "frames": len(frames), "frames_without_face": misses,
          "pairs": len(all_j), "unit": "% of inter-ocular distance per frame step",
          "all68_after_global_motion": stats(all_j), "rigid13_after_global_motion": stats(rigid_j),
          "all68_raw": stats(raw_j), "tracker_ids": sorted(ids)})


# ----------------------------------------------------------------------------- speed

def bench_speed() -> None:
    files = sorted((SHARED / "faces_fake_public" / "real").glob("*.jpg"))[:200]
    images = [load_rgb(f) for f in files]
    for landmarks in (True, False):
        for mode in MODES:
            detect_faces(images[0], mode=mode, landmarks=landmarks)  # warm the graphs
            t = time.perf_counter()
            nf = sum(len(detect_faces(im, mode=mode, landmarks=landmarks)) for im in images)
            dt = time.perf_counter() - t
            emit({"kind": "speed", "mode": mode, "landmarks": landmarks, "images": len(images), "faces": nf,
                  "image": "384x384", "threads": 1, "faces_per_s": round(nf / dt, 1),
                  "ms_per_image": round(dt / len(images) * 1000, 2)})
    for workers in (1, 2):
        detect_faces_batch(images[:4], workers=workers)
        t = time.perf_counter()
        res = detect_faces_batch(images, workers=workers)
        dt = time.perf_counter() - t
        nf = sum(len(r) for r in res)
        emit({"kind": "speed", "mode": "auto", "landmarks": True, "images": len(images), "faces": nf,
              "image": "384x384", "api": "detect_faces_batch", "threads": workers,
              "faces_per_s": round(nf / dt, 1)})
    frame = np.asarray(Image.fromarray(video_frames(1)[0]).resize((1080, 1080)))
    big = np.zeros((1080, 1920, 3), np.uint8)
    big[:, 420:1500] = frame
    for mode in MODES:
        detect_faces(big, mode=mode)
        t = time.perf_counter()
        for _ in range(20):
            nf = len(detect_faces(big, mode=mode))
        emit({"kind": "speed", "mode": mode, "landmarks": True, "image": "1920x1080 (one face)", "faces": nf,
              "threads": 1, "ms_per_image": round((time.perf_counter() - t) / 20 * 1000, 2)})


def main(argv: list[str]) -> int:
    global _out
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=500, help="images sampled from faces_real and faces_real_color")
    ap.add_argument("--frames", type=int, default=150, help="video frames for the jitter figure")
    ap.add_argument("--only", nargs="*", default=None,
                    help="run only these parts: packs no_face scale jitter speed")
    ap.add_argument("--jsonl", type=Path, default=None, help="also write the JSON lines here")
    args = ap.parse_args(argv)
    if not SHARED.is_dir():
        print(f"faces_bench: shared data folder {SHARED} is absent", file=sys.stderr)
        return 2
    if args.jsonl:
        args.jsonl.parent.mkdir(parents=True, exist_ok=True)
        _out = args.jsonl.open("w")
    parts = args.only or ["packs", "no_face", "scale", "jitter", "speed"]
    detect_faces(np.zeros((64, 64, 3), np.uint8))  # import mediapipe before the machine line
    emit(machine(argv))
    t0 = time.time()
    if "packs" in parts:
        bench_packs(args.n)
    if "no_face" in parts:
        bench_no_face()
    if "scale" in parts:
        bench_scale()
    if "jitter" in parts:
        bench_jitter(args.frames)
    if "speed" in parts:
        bench_speed()
    emit({"kind": "done", "wall_s": round(time.time() - t0, 1)})
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
