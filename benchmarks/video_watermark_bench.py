"""Video watermark robustness (issue #2, section 4: video).

Every frame of each clip is marked with ``provenance.watermark.video.embed_video`` (H.264 CRF 18,
as ``dhstudio sign`` writes it), then attacked the way platforms re-process video, then decoded
with ``decode_video``. Recovered = ``found`` and the exact 48-bit id.

Clips (3 s unless the source is shorter, 24-30 fps):
  - real footage from ../shared/data/video_samples (two 1920x1080 DFDC clips, two 3 s segments
    each; two segments of the 512x512 talking head) and ../shared/data/c2pa_fixtures/video1.mp4
    (720x1280 portrait, 2 s);
  - procedural 1920x1080 scenes (``reconstruct.procedural.write_video``, panning content);
  - slow pan-and-zoom over still photos from the c2pa fixtures, rendered at 1920x1080.

Attacks: H.264 CRF 30 re-encode at the same size; downscale to 720 lines + CRF 30 (the social
network case); trim the first and last second + CRF 30; trim + 720p + CRF 30; beyond the issue's
targets, 480 and 360 lines + CRF 30. Downscales apply only to clips taller than the target
(otherwise "n/a"); trims only to clips of >= 3 s.

Unmarked: the same decoder on every unmarked clip and each of its attacked versions
(false-positive check).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/video_watermark_bench.py --jsonl .bench/video_wm.jsonl

The peer (``--method dwtDctSvd`` or ``dwtDct``, in the bench venv that has invisible-watermark, see
BENCHMARKS.md): every frame is marked with invisible-watermark's 48 raw bits (the id) and written
at CRF 18 like ours; after the same attacks, 8 frames spread over the clip are decoded and each
bit is taken by majority; recovered = the exact 48 bits. It has no decision rule (it always
returns 48 bits), so there is no unmarked check for it, and PSNR is its own.

Prints a markdown table and writes one JSON line per (clip, attack).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data"


def _wb():
    """The image benchmark module: its geometric edits and its invisible-watermark adapter."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import watermark_bench

    return watermark_bench


def _edit(rgb: np.ndarray, edit: str) -> np.ndarray:
    """A geometric edit of one frame (issue 18): the same on every frame of a clip."""
    wb = _wb()

    if edit == "crop8":  # 8 % off each side
        h, w = rgb.shape[:2]
        dy, dx = round(0.08 * h), round(0.08 * w)
        return rgb[dy:h - dy, dx:w - dx]
    if edit == "reframe916":  # landscape -> 9:16 portrait (portrait -> 16:9), full short side
        return wb.reframe(rgb)
    if edit == "mirror":
        return rgb[:, ::-1]
    if edit == "rot3":
        return wb.rotate_inner(rgb, 3.0)
    if edit == "mirror_reframe916":
        return wb.reframe(rgb[:, ::-1])
    raise ValueError(edit)


def transcode(src: Path, dst: Path, *, height: int | None = None, crf: int = 30,
              t0: float = 0.0, t1: float | None = None, max_seconds: float | None = None,
              edit: str | None = None, fps_div: int = 1, frame_fn=None) -> Path:
    """Re-encode H.264 yuv420p at ``crf``; optional geometric ``edit`` of every frame (crop,
    reframe, mirror, rotate: see ``_edit``), downscale to ``height`` lines (even width), every
    ``fps_div``-th frame only, and time window [t0, t1) (or the first ``max_seconds``);
    ``frame_fn`` (rgb -> rgb, same size) runs on every frame kept (the peer's embedder)."""
    import av

    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        vin = inp.streams.video[0]
        rate = (vin.average_rate or Fraction(25, 1)) / fps_div
        w, h = vin.codec_context.width, vin.codec_context.height
        if edit is not None:
            eh, ew = _edit(np.zeros((h, w, 3), np.uint8), edit).shape[:2]
            w, h = ew, eh
        if height is not None and height < h:
            w, h = int(round(w * height / h / 2) * 2), height
        w, h = w - w % 2, h - h % 2
        st = out.add_stream("libx264", rate=rate)
        st.width, st.height, st.pix_fmt = w, h, "yuv420p"
        st.options = {"crf": str(crf), "preset": "veryfast"}
        tb, i, n_in = Fraction(1, 1) / rate, 0, -1
        for frame in inp.decode(vin):
            n_in += 1
            if n_in % fps_div:
                continue
            t = float(frame.pts * frame.time_base) if frame.pts is not None else 0.0
            if t < t0:
                continue
            if t1 is not None and t >= t1:
                break
            if max_seconds is not None and t >= t0 + max_seconds:
                break
            if edit is not None:
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(_edit(frame.to_ndarray(format="rgb24"), edit)),
                                                   format="rgb24")
            if frame_fn is not None:
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame_fn(frame.to_ndarray(format="rgb24"))),
                                                   format="rgb24")
            f2 = frame.reformat(width=w, height=h, format="yuv420p")
            f2.pts, f2.time_base = i, tb  # constant frame rate, timestamps from 0
            i += 1
            for pkt in st.encode(f2):
                out.mux(pkt)
        for pkt in st.encode():
            out.mux(pkt)
    return dst


def duration_s(path: Path) -> float:
    import av

    with av.open(str(path)) as c:
        s = c.streams.video[0]
        n = s.frames or sum(1 for _ in c.decode(s))
        return n / float(s.average_rate or 25)


def pan_video(rgb: np.ndarray, dst: Path, *, w: int = 1920, h: int = 1080, seconds: float = 3.0,
              fps: int = 24) -> Path:
    """Slow pan and zoom over a still photo (the photo is resized to cover w x h x 1.25)."""
    import av
    from PIL import Image

    im = Image.fromarray(rgb)
    cover = max(w * 1.25 / im.width, h * 1.25 / im.height)
    big = im.resize((int(im.width * cover) + 1, int(im.height * cover) + 1), Image.Resampling.BICUBIC)
    n = int(seconds * fps)
    with av.open(str(dst), "w") as out:
        st = out.add_stream("libx264", rate=fps)
        st.width, st.height, st.pix_fmt = w, h, "yuv420p"
        st.options = {"crf": "18", "preset": "veryfast"}
        for i in range(n):
            a = i / max(1, n - 1)
            zoom = 1.0 + 0.15 * a
            cw, ch = big.width / zoom, big.height / zoom
            cw, ch = max(cw, w), max(ch, h)
            x0 = (big.width - cw) * (0.2 + 0.6 * a)
            y0 = (big.height - ch) * 0.5
            fr = big.resize((w, h), Image.Resampling.BILINEAR, box=(x0, y0, x0 + cw, y0 + ch))
            vf = av.VideoFrame.from_ndarray(np.asarray(fr.convert("RGB")), format="rgb24")
            vf.pts, vf.time_base = i, Fraction(1, fps)
            for pkt in st.encode(vf):
                out.mux(pkt)
        for pkt in st.encode():
            out.mux(pkt)
    return dst


def build_clips(work: Path, n_proc: int, n_pan: int) -> list[tuple[str, Path]]:
    from PIL import Image

    from reconstruct import procedural

    clips: list[tuple[str, Path]] = []
    vs = SHARED / "video_samples"
    for p in sorted((vs / "dfdc_two_fakes" / "train_sample_videos").glob("*.mp4")):
        for k, t0 in enumerate((0.0, 5.0)):
            clips.append((f"dfdc/{p.stem}@{t0:g}s", transcode(p, work / f"dfdc_{p.stem}_{k}.mp4", crf=18,
                                                             t0=t0, max_seconds=3.0)))
    th = vs / "talking_head_french.mp4"
    if th.is_file():
        for k, t0 in enumerate((0.0, 20.0)):
            clips.append((f"talking_head@{t0:g}s", transcode(th, work / f"th_{k}.mp4", crf=18, t0=t0,
                                                            max_seconds=3.0)))
    v1 = SHARED / "c2pa_fixtures" / "video1.mp4"
    if v1.is_file():
        clips.append(("fixture/video1.mp4", transcode(v1, work / "video1.mp4", crf=18)))
    for s in range(n_proc):
        clips.append((f"proc/scene{s}", procedural.write_video(work / f"proc{s}.mp4", h=1080, w=1920,
                                                               seconds=3.0, fps=24, seed=100 + s)))
    # distinct photos only (several fixtures are the same picture with different manifests)
    photos = [SHARED / "c2pa_fixtures" / n for n in ("C.jpg", "cloudx.jpg", "sample1.png", "no_manifest.jpg",
                                                      "CACA.jpg", "ocsp.jpg")]
    photos = [p for p in photos if p.is_file()][:n_pan]
    for p in photos:
        rgb = np.asarray(Image.open(p).convert("RGB"))
        clips.append((f"pan/{p.name}", pan_video(rgb, work / f"pan_{p.stem}.mp4")))
    return clips


ATTACKS = {
    "none": None,
    "crf30": dict(crf=30),
    "720p_crf30": dict(crf=30, height=720),
    "trim1s_crf30": dict(crf=30, trim=True),
    "trim1s_720p_crf30": dict(crf=30, height=720, trim=True),
    "480p_crf30": dict(crf=30, height=480),
    "360p_crf30": dict(crf=30, height=360),
}
GEOMETRIC = {  # issue 18: what platforms and people do to the frame
    "crop8_crf28": dict(crf=28, edit="crop8"),
    "reframe916_crf28": dict(crf=28, edit="reframe916"),
    "mirror_crf28": dict(crf=28, edit="mirror"),
    "rot3_crf28": dict(crf=28, edit="rot3"),
    "mirror_reframe916_crf28": dict(crf=28, edit="mirror_reframe916"),
    "reframe916_360p_halffps_crf32": dict(crf=32, edit="reframe916", height=360, fps_div=2),
}
CLASSIC = dict(ATTACKS)


def attack(src: Path, dst: Path, spec: dict | None, h: int, dur: float) -> Path | None:
    if spec is None:
        return src
    spec = dict(spec)
    if "height" in spec and spec["height"] >= h:
        return None
    if spec.pop("trim", False):
        if dur < 3.0 - 1e-6:
            return None
        spec.update(t0=1.0, t1=dur - 1.0)
    return transcode(src, dst, **spec)


PEER_FRAMES = 8


def _peer_embed(src: Path, dst: Path, wm_id: int, method: str) -> dict:
    """invisible-watermark on every frame (48 raw bits = the id), H.264 CRF 18; Y PSNR of the
    marked frames before H.264."""
    wb = _wb()

    psnr = []

    def mark(rgb):
        out = wb.iw_embed(rgb, wm_id, method)
        ya, yb = (a.astype(np.float64) @ [0.299, 0.587, 0.114] for a in (rgb, out))
        mse = float(np.mean((ya - yb) ** 2))
        psnr.append(99.0 if mse == 0 else 10 * np.log10(255.0 ** 2 / mse))
        return out

    transcode(src, dst, crf=18, frame_fn=mark)
    return {"mean_psnr_y": round(float(np.mean(psnr)), 2)}


def _peer_decode(path: Path, method: str) -> int | None:
    """Majority vote per bit over PEER_FRAMES frames spread over the clip."""
    import av

    wb = _wb()

    with av.open(str(path)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])]
    picks = np.unique(np.linspace(0, len(frames) - 1, min(PEER_FRAMES, len(frames))).round().astype(int))
    votes = np.zeros(48)
    for i in picks:
        v = wb.iw_decode(frames[i], method)
        if v is not None:
            votes += [((v >> (47 - b)) & 1) * 2 - 1 for b in range(48)]
    bits = votes > 0
    return int(sum(int(b) << (47 - k) for k, b in enumerate(bits))) if len(picks) else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--proc", type=int, default=4, help="procedural 1080p clips")
    ap.add_argument("--pan", type=int, default=4, help="pan-and-zoom clips over fixture photos")
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--jsonl", type=Path, default=None)
    ap.add_argument("--markdown", type=Path, default=None)
    ap.add_argument("--attacks", choices=["classic", "geometric", "all"], default="classic",
                    help="today's attacks, the geometric edits of issue 18, or both")
    ap.add_argument("--method", choices=["ours", "dwtDctSvd", "dwtDct"], default="ours",
                    help="our mark, or invisible-watermark's (the peer; needs the bench venv)")
    args = ap.parse_args()
    ATTACKS.clear()
    ATTACKS.update({"classic": CLASSIC, "geometric": {"none": None, **GEOMETRIC},
                    "all": {**CLASSIC, **GEOMETRIC}}[args.attacks])

    import av

    from provenance.watermark.video import embed_video, decode_video

    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="vwm-bench-"))
    t_start = time.time()
    clips = build_clips(work, args.proc, args.pan)
    print(f"{len(clips)} clips built in {time.time() - t_start:.0f} s", flush=True)
    records = []
    jf = open(args.jsonl, "w") if args.jsonl else None
    for name, src in clips:
        with av.open(str(src)) as c:
            s = c.streams.video[0]
            w, h = s.codec_context.width, s.codec_context.height
        dur = duration_s(src)
        wm_id = rng.getrandbits(48)
        marked = work / f"{src.stem}.marked.mp4"
        if args.method == "ours":
            stats = embed_video(src, marked, wm_id)
        else:
            stats = _peer_embed(src, marked, wm_id, args.method)
        for aname, spec in ATTACKS.items():
            rec = {"clip": name, "size": f"{w}x{h}", "seconds": round(dur, 2), "attack": aname,
                   "psnr_y": stats["mean_psnr_y"]}
            att = attack(marked, work / f"{src.stem}.{aname}.mp4", spec, h, dur)
            if att is None:
                rec["result"] = "n/a"
            elif args.method != "ours":
                got = _peer_decode(att, args.method)
                rec.update(found=True, correct=got == wm_id, wrong_id=False, unmarked_found=False,
                           bit_errors=None if got is None else bin(got ^ wm_id).count("1"))
            else:
                r = decode_video(att)
                rec.update(found=r.found, correct=bool(r.found and r.id == wm_id),
                           wrong_id=bool(r.found and r.id != wm_id), bit_errors=r.bit_errors,
                           pilot_z=r.detail.get("pilot_z"), mode=r.detail.get("mode"))
                un = attack(src, work / f"{src.stem}.{aname}.unmarked.mp4", spec, h, dur)
                ru = decode_video(un)
                rec["unmarked_found"] = ru.found
                rec["unmarked_pilot_z"] = ru.detail.get("pilot_z")
            records.append(rec)
            print(json.dumps(rec), flush=True)
            if jf:
                jf.write(json.dumps(rec) + "\n")
                jf.flush()
    lines = ["| attack | recovered | wrong id | unmarked detected |", "|---|---|---|---|"]
    for aname in ATTACKS:
        rs = [r for r in records if r["attack"] == aname and r.get("result") != "n/a"]
        ok = sum(r["correct"] for r in rs)
        unmarked = (f"{sum(r['unmarked_found'] for r in rs)}/{len(rs)}" if args.method == "ours"
                    else "n/a (no decision rule)")
        lines.append(f"| {aname} | {ok}/{len(rs)} ({100 * ok / max(1, len(rs)):.1f} %) | "
                     f"{sum(r['wrong_id'] for r in rs)} | {unmarked} |")
    psnr = [r["psnr_y"] for r in records if r["attack"] == "none"]
    lines.append("")
    lines.append(f"Mean Y-plane PSNR of the marked frames (before H.264): {np.mean(psnr):.2f} dB "
                 f"(min {np.min(psnr):.2f}) over {len(psnr)} clips; wall time {time.time() - t_start:.0f} s.")
    md = "\n".join(lines)
    print(md)
    if args.markdown:
        args.markdown.write_text(md + "\n")


if __name__ == "__main__":
    main()
