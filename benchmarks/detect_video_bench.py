"""Speed of the whole video path of ``dhstudio detect VIDEO`` (issue 14, section 1): JSON lines.

    .venv/bin/python benchmarks/detect_video_bench.py [--seconds 10] [--threads 1,2] [--annotate]
        [--minute-seconds 60] [--weights assets/detector_default.safetensors] [--out-dir DIR]

Clips: the shared talking-head sample (``video_samples/talking_head_french.mp4``: a real address to
camera, 512 x 512, 30 fps) upscaled (bilinear) to 720 and 1080 px tall and centred on a grey 16:9
canvas (1280 x 720, 1920 x 1080), H.264 CRF 20 (libx264 veryfast), written once to ``--out-dir``
(default: a temporary folder). The face fills about a third of the frame's height, as in a
talking-head video; 16:9 frames also get the detector's two-halves pass for small faces.

One JSON line per measurement (``bench`` says which):
- ``video_frames``: every frame of a ``--seconds`` clip through ``detect.video.score_video``
  (decode, upright RGB, face detection + landmarks, crop, detector, tracking, pooling) with
  ``max_frames`` = the clip's frame count, so every frame is scored: ``frames_per_s`` = frames
  scored / wall time; ``decode_frames_per_s``: decoding + RGB conversion alone, same clip.
- ``video_minute``: checking a ``--minute-seconds`` (60) 720p clip with the defaults (at most
  300 frames scored: 5 frames/s over the minute, every frame decoded); the issue asks for under
  a minute on 2 cores. ``realtime`` = clip length / wall time.
- ``video_annotate`` (``--annotate``): writing the annotated MP4 of that clip (every frame
  decoded, drawn, encoded; audio copied).

Each (measurement, threads) pair runs in a fresh process with ``OMP_NUM_THREADS``, torch's threads
and the video decoder's threads (``DHSTUDIO_MAX_DECODER_THREADS``) set to the thread count; the
face detector (MediaPipe / TFLite) keeps its own default. The first call of each process (model
load, graph start) is excluded by a warm-up on a 1-second cut of the same clip.
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
sys.path.insert(0, str(ROOT))

from benchmarks._machine import cpu_name  # noqa: E402

SAMPLE = ROOT.parent / "shared" / "data" / "video_samples" / "talking_head_french.mp4"


def make_clip(src: Path, dst: Path, height: int, seconds: float) -> Path:
    """The talking head upscaled to ``height`` px, centred on a grey 16:9 canvas, ``seconds`` long
    (the sample is looped when it is shorter), H.264 CRF 20, 30 fps; no audio."""
    import av
    import numpy as np

    if dst.is_file():
        return dst
    width = height * 16 // 9
    width -= width % 2
    n = int(round(seconds * 30))
    tmp = dst.with_suffix(".part.mp4")
    with av.open(str(tmp), "w", format="mp4") as out:
        st = out.add_stream("libx264", rate=30)
        st.width, st.height, st.pix_fmt = width, height, "yuv420p"
        st.options = {"crf": "20", "preset": "veryfast"}
        canvas = np.full((height, width, 3), 96, np.uint8)
        x0 = (width - height) // 2
        i = 0
        while i < n:
            with av.open(str(src)) as inp:
                for f in inp.decode(video=0):
                    if i >= n:
                        break
                    canvas[:, x0:x0 + height] = f.reformat(width=height, height=height, format="rgb24",
                                                           interpolation="BILINEAR").to_ndarray()
                    vf = av.VideoFrame.from_ndarray(canvas, format="rgb24")
                    vf.pts = i
                    for p in st.encode(vf):
                        out.mux(p)
                    i += 1
        for p in st.encode():
            out.mux(p)
    tmp.replace(dst)
    return dst


def _cut(src: Path, dst: Path, seconds: float) -> Path:
    """The first ``seconds`` of ``src``, stream-copied (for the warm-up)."""
    import av

    if dst.is_file():
        return dst
    with av.open(str(src)) as inp, av.open(str(dst), "w", format="mp4") as out:
        vs = out.add_stream_from_template(inp.streams.video[0])
        for p in inp.demux(video=0):
            if p.dts is None or p.dts * p.time_base > seconds:
                continue
            p.stream = vs
            out.mux(p)
    return dst


def child(spec: dict) -> dict:
    """One measurement in this process (threads already set through the environment)."""
    import torch

    torch.set_num_threads(spec["threads"])
    import av

    from detect.score import load_default_detector
    from detect.video import score_video, write_annotated

    model, info = load_default_detector(spec["weights"])
    info["name"] = model.name
    clip = Path(spec["clip"])
    score_video(_cut(clip, clip.with_name(clip.stem + "_warm.mp4"), 1.0), model, info, max_frames=10)
    out = {"threads": spec["threads"]}
    if spec["bench"] == "video_frames":
        with av.open(str(clip)) as c:
            v = c.streams.video[0]
            v.thread_type, v.thread_count = "AUTO", spec["threads"]
            t0 = time.perf_counter()
            n = sum(1 for f in c.decode(v) if f.to_ndarray(format="rgb24") is not None)
            out["decode_frames_per_s"] = round(n / (time.perf_counter() - t0), 1)
        t0 = time.perf_counter()
        r = score_video(clip, model, info, max_frames=n)
        dt = time.perf_counter() - t0
        out.update(frames=r.frames_sampled, seconds=round(dt, 2), frames_per_s=round(r.frames_sampled / dt, 2),
                   frames_with_faces=r.frames_with_faces, tracks=len(r.tracks), error=r.error)
    else:
        t0 = time.perf_counter()
        r = score_video(clip, model, info)
        dt = time.perf_counter() - t0
        out.update(clip_seconds=r.duration, frames_decoded=r.frames_decoded, frames_scored=r.frames_sampled,
                   seconds=round(dt, 2), realtime=round((r.duration or 0) / dt, 2), under_a_minute=dt < 60,
                   score=r.score, error=r.error)
        if spec["bench"] == "video_annotate":
            dst = Path(spec["out_dir"]) / f"annotated_{spec['threads']}.mp4"
            t0 = time.perf_counter()
            a = write_annotated(clip, r, dst)
            dt = time.perf_counter() - t0
            out = {"threads": spec["threads"], "clip_seconds": r.duration, "frames": a["frames"],
                   "seconds": round(dt, 2), "frames_per_s": round(a["frames"] / dt, 2)}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", default=str(ROOT / "assets" / "detector_default.safetensors"))
    ap.add_argument("--sample", default=str(SAMPLE), help="the talking-head video the clips are made from")
    ap.add_argument("--seconds", type=float, default=10.0, help="length of the every-frame clips")
    ap.add_argument("--minute-seconds", type=float, default=60.0, help="length of the 'one minute' 720p clip")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--heights", default="720,1080")
    ap.add_argument("--annotate", action="store_true", help="also time the annotated MP4 of the minute clip")
    ap.add_argument("--out-dir", default=None, help="where the clips go (kept; default: a temporary folder)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print("RESULT " + json.dumps(child(json.loads(args.child))), flush=True)
        return 0

    tmp = None
    if args.out_dir:
        out_dir = Path(args.out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="detect_video_bench_")
        out_dir = Path(tmp.name)
    src = Path(args.sample)
    threads = [int(t) for t in args.threads.split(",")]
    heights = [int(h) for h in args.heights.split(",")]
    jobs = []
    for h in heights:
        clip = make_clip(src, out_dir / f"talk_{h}p_{args.seconds:g}s.mp4", h, args.seconds)
        jobs += [{"bench": "video_frames", "clip": str(clip), "height": h, "threads": t} for t in threads]
    minute = make_clip(src, out_dir / f"talk_720p_{args.minute_seconds:g}s.mp4", 720, args.minute_seconds)
    jobs += [{"bench": "video_minute", "clip": str(minute), "height": 720, "threads": t} for t in threads]
    if args.annotate:
        jobs += [{"bench": "video_annotate", "clip": str(minute), "height": 720, "threads": t} for t in threads]
    common = {"machine": f"{cpu_name()}, {os.cpu_count()} cpus", "date": time.strftime("%Y-%m-%d"),
              "weights": Path(args.weights).name, "source": f"{src.name} upscaled, centred on 16:9"}
    for job in jobs:
        spec = dict(job, weights=args.weights, out_dir=str(out_dir))
        n = str(job["threads"])
        env = dict(os.environ, OMP_NUM_THREADS=n, MKL_NUM_THREADS=n, DHSTUDIO_MAX_DECODER_THREADS=n)
        p = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True,
                           env=env, cwd=ROOT)
        res = [ln[7:] for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
        row = {"bench": job["bench"], "height": job["height"], **common}
        row.update(json.loads(res[0]) if res else {"threads": job["threads"], "error": p.stderr.strip()[-400:]})
        print(json.dumps(row), flush=True)
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
