"""Memory and time of watermark decode (as ``verify`` runs it) and embed (as ``sign`` runs it) on
hostile inputs that are small on disk and huge once decoded (issues F1 and F5).

Builds the inputs in a temp folder (or ``--dir``), then runs every (case, operation) in a child
process of its own and prints one JSON line per run: peak RSS of that child (MB: ru_maxrss of
``resource.getrusage(RUSAGE_CHILDREN)`` in a measuring process whose only child it is), wall
seconds, and what the child got (found / id ok / error code / limits).

    .venv/bin/python benchmarks/verify_bounds.py --code both
    .venv/bin/python benchmarks/verify_bounds.py --code after --cases v8192 png12000
    .venv/bin/python benchmarks/verify_bounds.py --code before --before-path /tmp/before

``--code before`` runs the code at ``--before-path`` (its decoders take a path, so every run
passes the path); ``after`` the working tree. Runs over ``--timeout`` seconds are killed and
reported with ``"timed_out": true``. Signing the 100,000-frame video with the old code takes
20-35 minutes: the ``long_prefix`` case (2,000 frames of the same kind) is timed instead and the
``estimate_s`` field of the ``long`` sign row extrapolates it linearly (x 50).

Cases:
  v8192       34 frames 8192x8192 H.264 MP4, mostly flat (~200 KB)
  v4096frag   130 frames 4096x4096, fragmented MP4 (frag_keyframe+empty_moov: no frame count)
  png12000    12000x12000 flat PNG (~420 KB)
  png12000_capraised   the same, signed with DHSTUDIO_MAX_EMBED_PIXELS=150000000 (after only)
  long        100,000 frames 64x64 H.264 MP4
  long_prefix its first 2,000 frames
  normal_video  watermarked 1280x720, 60 frames (detection and cost of a normal clip)
  normal_image  watermarked 1920x1080 JPEG q90
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WM_ID = 0x123456789ABC
LONG_FRAMES = 100_000
PREFIX_FRAMES = 2_000

CASES = ["normal_image", "normal_video", "v8192", "v4096frag", "png12000", "png12000_capraised", "long", "long_prefix"]
MEDIA = {"normal_image": "image", "png12000": "image", "png12000_capraised": "image"}
FILES = {"normal_image": "normal.jpg", "normal_video": "normal.mp4", "v8192": "v8192.mp4",
         "v4096frag": "v4096frag.mp4", "png12000": "png12000.png", "png12000_capraised": "png12000.png",
         "long": "long.mp4", "long_prefix": "long_prefix.mp4"}
ENV = {"png12000_capraised": {"DHSTUDIO_MAX_EMBED_PIXELS": "150000000"}}


# ----------------------------------------------------------------------------- inputs

def _write_video(path: Path, w: int, h: int, frames, *, crf: int, fragmented: bool = False) -> None:
    """Encode yuv420p planes ((h * 3 // 2, w) uint8, from the iterable ``frames``) as H.264 MP4, 30 fps."""
    import av

    opts = {"movflags": "frag_keyframe+empty_moov"} if fragmented else {}
    out = av.open(str(path), "w", format="mp4", options=opts)
    vs = out.add_stream("libx264", rate=30)
    vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
    vs.options = {"preset": "ultrafast", "crf": str(crf)}
    for i, buf in enumerate(frames):
        f = av.VideoFrame.from_ndarray(buf, format="yuv420p")
        f.pts = i
        for p in vs.encode(f):
            out.mux(p)
    for p in vs.encode():
        out.mux(p)
    out.close()


def _flat_video(path: Path, w: int, h: int, n: int, *, fragmented: bool = False, crf: int = 40) -> None:
    """Mostly flat gray frames with a small moving square: tiny on disk."""
    import numpy as np

    def frames():
        buf = np.full((h * 3 // 2, w), 128, np.uint8)
        s = max(8, min(w, h) // 16)
        for i in range(n):
            buf[:h] = 110
            x = (i * 7) % max(1, w - s)
            buf[16:16 + s, x:x + s] = 200
            yield buf

    _write_video(path, w, h, frames(), crf=crf, fragmented=fragmented)


def _tiny_long_video(path: Path, n: int) -> None:
    """n frames of 64x64 (slowly changing content), 30 fps."""
    import numpy as np

    def frames():
        buf = np.full((96, 64), 128, np.uint8)
        for i in range(n):
            buf[:64] = 60 + (i // 30) % 120
            buf[20:40, (i % 44):(i % 44) + 20] = 220
            yield buf

    _write_video(path, 64, 64, frames(), crf=30)


def build(d: Path, cases: list[str]) -> None:
    """Create the inputs the cases need (skipping those already there)."""
    from PIL import Image

    sys.path.insert(0, str(ROOT))
    d.mkdir(parents=True, exist_ok=True)
    need = {FILES[c] for c in cases}
    t0 = time.time()
    if "normal.jpg" in need and not (d / "normal.jpg").exists():
        from provenance.watermark.image import embed_image
        from tests.provenance.test_watermark_image import scene
        Image.fromarray(embed_image(scene(1920, 1080, 7), WM_ID)).save(d / "normal.jpg", quality=90)
    if "normal.mp4" in need and not (d / "normal.mp4").exists():
        from provenance.watermark.video import embed_video
        from tests.provenance.test_watermark_video import make_clip
        make_clip(d / "normal_src.mp4", w=1280, h=720, seconds=10, fps=6, audio=False)
        embed_video(d / "normal_src.mp4", d / "normal.mp4", WM_ID, preset="veryfast")
    if "v8192.mp4" in need and not (d / "v8192.mp4").exists():
        _flat_video(d / "v8192.mp4", 8192, 8192, 34)
    if "v4096frag.mp4" in need and not (d / "v4096frag.mp4").exists():
        _flat_video(d / "v4096frag.mp4", 4096, 4096, 130, fragmented=True)
    if "png12000.png" in need and not (d / "png12000.png").exists():
        Image.new("RGB", (12000, 12000), (120, 128, 136)).save(d / "png12000.png", compress_level=9)
    if "long.mp4" in need and not (d / "long.mp4").exists():
        _tiny_long_video(d / "long.mp4", LONG_FRAMES)
    if "long_prefix.mp4" in need and not (d / "long_prefix.mp4").exists():
        _tiny_long_video(d / "long_prefix.mp4", PREFIX_FRAMES)
    for c in cases:
        p = d / FILES[c]
        print(json.dumps({"input": c, "file": p.name, "bytes": p.stat().st_size}), flush=True)
    print(json.dumps({"built_s": round(time.time() - t0, 1)}), flush=True)


# ----------------------------------------------------------------------------- child

def child(case: str, op: str, path: str, out_dir: str) -> None:
    """Run one operation with whatever ``provenance`` is on PYTHONPATH; print a JSON result."""
    from provenance.errors import DhsError

    media = MEDIA.get(case, "video")
    res: dict = {}
    try:
        if media == "image":
            from provenance.watermark import image as wm
            if op == "verify":
                r = wm.decode_file(Path(path))
            else:
                wm.embed_file(Path(path), Path(out_dir) / ("out" + Path(path).suffix), WM_ID)
                r = None
        else:
            from provenance.watermark import video as wv
            if op == "verify":
                r = wv.decode_video(Path(path))
            else:
                res["stats"] = wv.embed_video(Path(path), Path(out_dir) / "out.mp4", WM_ID, preset="ultrafast")
                r = None
        if r is not None:
            res.update(found=r.found, id_ok=(r.id == WM_ID), limits=r.detail.get("limits"),
                       frames_used=r.detail.get("frames_used"))
    except DhsError as e:
        res["error"] = e.to_dict()
    except MemoryError:
        res["error"] = {"code": "MemoryError", "message": ""}
    print("RESULT " + json.dumps(res, default=str), flush=True)


def measure(cmd: list[str], timeout: float) -> None:
    """Run ``cmd`` (the only child of this process) and print its wall time and peak RSS:
    resource.getrusage(RUSAGE_CHILDREN).ru_maxrss is that child's own peak (KB on Linux)."""
    import resource

    t0 = time.perf_counter()
    timed_out = False
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        p.kill()
        stdout, stderr = p.communicate()
    dt = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    row = {"seconds": round(dt, 2), "rss_mb": round(rss, 1), "timed_out": timed_out}
    for line in (stdout or "").splitlines():
        if line.startswith("RESULT "):
            row.update(json.loads(line[7:]))
    if p.returncode != 0 and not timed_out:
        row["returncode"] = p.returncode
        row["stderr_tail"] = (stderr or "").strip().splitlines()[-1:] or None
    print("MEASURE " + json.dumps(row, default=str), flush=True)


def run_one(case: str, op: str, code: str, d: Path, before_path: str, timeout: float) -> dict:
    """One (case, op, code) run: a measuring process whose only child runs the operation."""
    env = dict(os.environ)
    env["PYTHONPATH"] = before_path if code == "before" else str(ROOT)
    env.update(ENV.get(case, {}))
    me = str(Path(__file__).resolve())
    with tempfile.TemporaryDirectory(prefix="vb-out-") as out_dir:
        cmd = [sys.executable, me, "--child", case, op, str(d / FILES[case]), out_dir]
        r = subprocess.run([sys.executable, me, "--measure", str(timeout), "--", *cmd], env=env, cwd=out_dir,
                           capture_output=True, text=True)
    row = {"case": case, "op": op, "code": code}
    for line in r.stdout.splitlines():
        if line.startswith("MEASURE "):
            row.update(json.loads(line[8:]))
    if "rss_mb" not in row:
        row["error"] = {"code": "bench.failed", "message": (r.stderr.strip().splitlines() or [""])[-1]}
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", nargs=4, metavar=("CASE", "OP", "PATH", "OUT"), help=argparse.SUPPRESS)
    ap.add_argument("--measure", type=float, default=None, help=argparse.SUPPRESS)
    ap.add_argument("cmd", nargs="*", help=argparse.SUPPRESS)
    ap.add_argument("--code", choices=["before", "after", "both"], default="after")
    ap.add_argument("--before-path", default="/tmp/before")
    ap.add_argument("--cases", nargs="*", default=CASES, choices=CASES)
    ap.add_argument("--ops", nargs="*", default=["verify", "sign"], choices=["verify", "sign"])
    ap.add_argument("--dir", type=Path, default=None, help="input folder (kept; built where missing)")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per run")
    a = ap.parse_args()
    if a.child:
        child(*a.child)
        return
    if a.measure is not None:
        measure(a.cmd, a.measure)
        return
    d = a.dir or Path(tempfile.mkdtemp(prefix="verify-bounds-"))
    build(d, a.cases)
    codes = ["before", "after"] if a.code == "both" else [a.code]
    prefix_sign: dict[str, float] = {}
    for case in a.cases:
        for op in a.ops:
            for code in codes:
                if case == "png12000_capraised" and (code == "before" or op != "sign"):
                    continue
                if case == "long_prefix" and op == "verify":
                    continue
                if case == "long" and op == "sign" and code == "before":
                    est = prefix_sign.get("before")
                    row = {"case": case, "op": op, "code": code,
                           "skipped": "too long to run (tens of minutes); see estimate_s"}
                    if est is None:
                        r = run_one("long_prefix", "sign", "before", d, a.before_path, a.timeout)
                        est = r["seconds"]
                        row["prefix_rss_mb"] = r.get("rss_mb")
                    row["estimate_s"] = round(est * LONG_FRAMES / PREFIX_FRAMES)
                    row["estimate_from"] = f"long_prefix ({PREFIX_FRAMES} frames) x {LONG_FRAMES // PREFIX_FRAMES}"
                    print(json.dumps(row), flush=True)
                    continue
                row = run_one(case, op, code, d, a.before_path, a.timeout)
                if case == "long_prefix":
                    prefix_sign[code] = row.get("seconds")
                print(json.dumps(row, default=str), flush=True)


if __name__ == "__main__":
    main()
