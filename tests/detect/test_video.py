"""detect.video and `dhstudio detect VIDEO`: sampling, tracking, per-track pooling, and the awkward
videos (corrupt packets, 10-bit, display-matrix rotation, variable frame rate, no face, audio
only, huge frames, two hours); the annotated MP4 keeps the audio and is written atomically.

Clips are made here with PyAV (faces from faces_fake_public/real pasted on a plain background),
plus the shared talking-head sample cut to 3 s. The detector is a tiny randomly initialised
meso4: nothing here depends on its accuracy.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

av = pytest.importorskip("av")
pytest.importorskip("torch", reason="the [body] extra (torch) is not installed")
pytest.importorskip("mediapipe", reason="the faces extra is not installed (make install adds it)")

from detect import video as dv  # noqa: E402
from detect.registry import create_detector  # noqa: E402
from detect.score import load_default_detector  # noqa: E402
from provenance.limits import Limits  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "data"
REAL = SHARED / "faces_fake_public" / "real"
TALKING_HEAD = SHARED / "video_samples" / "talking_head_french.mp4"


# ----------------------------------------------------------------------------- fixtures and clips


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    import torch

    torch.manual_seed(0)
    return create_detector("meso4", input_size=64).save(tmp_path_factory.mktemp("w") / "meso.safetensors")


@pytest.fixture(scope="module")
def det(weights):
    import torch

    torch.set_num_threads(1)
    model, info = load_default_detector(weights)
    info["name"] = model.name
    return model, info


@pytest.fixture(scope="module")
def faces():
    if not REAL.is_dir():
        pytest.skip(f"shared data folder {SHARED} is absent")
    return [np.asarray(Image.open(REAL / f"{n}.jpg").convert("RGB").resize((150, 150))) for n in (0, 10)]


def scene(faces, n, moving=True, second=False):
    """n frames of 400 x 300 (400 x 400 with ``second``): face 0 sliding from left to right (or
    still), face 1 still at the bottom right when asked."""
    w, h = 400, (400 if second else 300)
    for i in range(n):
        a = np.full((h, w, 3), 70, np.uint8)
        x = 10 + (int((w - 170) * i / max(1, n - 1)) if moving else 0)
        a[20:170, x:x + 150] = faces[0]
        if second:
            a[230:380, w - 160:w - 10] = faces[1]
        yield a


def write_clip(path, frames, *, fps=20, pix_fmt="yuv420p", rotation=None, pts_ms=None, audio=False, gop=None):
    """H.264 MP4 of RGB frames; ``pts_ms`` gives each frame's time (variable frame rate),
    ``rotation`` a display matrix, ``audio`` a mono AAC tone as long as the video."""
    frames = list(frames)
    with av.open(str(path), "w", format="mp4") as out:
        st = out.add_stream("libx264", rate=fps)
        st.height, st.width = frames[0].shape[:2]
        st.pix_fmt = pix_fmt
        st.options = {"preset": "ultrafast", **({"g": str(gop)} if gop else {})}
        tb = Fraction(1, 1000) if pts_ms is not None else Fraction(1, fps)
        st.codec_context.time_base = tb
        if rotation is not None:
            st.set_display_rotation(rotation)
        ast = None
        if audio:
            ast = out.add_stream("aac", rate=16000)
            ast.layout = "mono"
        for i, a in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(a), format="rgb24")
            vf.pts, vf.time_base = (pts_ms[i] if pts_ms is not None else i), tb
            for p in st.encode(vf):
                out.mux(p)
        for p in st.encode():
            out.mux(p)
        if ast is not None:
            sr, total = 16000, int(len(frames) / fps * 16000)
            for t in range(0, total, 1024):
                k = min(1024, total - t)
                s = (0.2 * np.sin(2 * np.pi * 440 * np.arange(t, t + k) / sr)).astype(np.float32)[None]
                af = av.AudioFrame.from_ndarray(s, format="fltp", layout="mono")
                af.sample_rate, af.pts = sr, t
                for p in ast.encode(af):
                    out.mux(p)
            for p in ast.encode():
                out.mux(p)
    return path


def streams(path):
    with av.open(str(path)) as c:
        return {s.type: (s.codec_context.name, float(s.duration * s.time_base) if s.duration else None)
                for s in c.streams}


def run_cli(args, tmp_path, env=None):
    e = dict(os.environ, DHSTUDIO_HOME=str(tmp_path / "home"), OMP_NUM_THREADS="1", **(env or {}))
    return subprocess.run([sys.executable, "-m", "studio.cli", "detect", *map(str, args)], capture_output=True,
                          text=True, timeout=300, cwd=REPO, env=e)


# ----------------------------------------------------------------------------- sampling rule


def test_sampling_plan_rule():
    every = dv.sampling_plan(10.0, 300, max_frames=300)
    assert every["rule"] == "every frame" and every["step"] is None
    one_min = dv.sampling_plan(60.0, 1800, max_frames=300)  # a rate, spread over the whole minute
    assert one_min["rule"] == "rate" and one_min["n"] == 300 and one_min["step"] == pytest.approx(0.2)
    two_h = dv.sampling_plan(7200.0, 216_000, max_frames=300)  # bounded: 300 instants, one every 24 s
    assert two_h["n"] == 300 and two_h["step"] == pytest.approx(24.0)
    slow = dv.sampling_plan(60.0, 1800, max_frames=300, sample_fps=1.0, fps=30.0)
    assert slow["n"] == 60 and slow["step"] == pytest.approx(1.0)
    capped = dv.sampling_plan(60.0, 1800, max_frames=100, sample_fps=10.0, fps=30.0)  # rate lowered to fit
    assert capped["n"] == 100 and capped["step"] == pytest.approx(0.6)
    assert dv.sampling_plan(5.0, 150, sample_fps=30.0, fps=30.0)["rule"] == "every frame"
    assert dv.sampling_plan(None, None)["step"] == pytest.approx(1 / dv.FALLBACK_SAMPLE_FPS)
    with pytest.raises(ValueError):
        dv.sampling_plan(1.0, 10, max_frames=0)


# ----------------------------------------------------------------------------- tracks and pooling


@pytest.mark.shared
def test_tracks_stable_and_pooled(det, faces, tmp_path):
    clip = write_clip(tmp_path / "two.mp4", scene(faces, 24, second=True), fps=12)
    r = dv.score_video(clip, *det)
    assert r.error is None and r.frames_decoded == r.frames_sampled == 24 and r.sampling["rule"] == "every frame"
    assert [t.id for t in r.tracks] == [0, 1] and all(t.frames == 24 for t in r.tracks)  # no id switch
    moving = min(r.tracks, key=lambda t: t.timeline[0][2][0])
    xs = [e[2][0] for e in moving.timeline]
    assert xs[-1] - xs[0] > 150 and all(b > a - 5 for a, b in zip(xs, xs[1:]))  # one face, left to right
    for t in r.tracks:  # the rule: track = mean of its frames, video = most suspicious counted track
        assert t.counted and t.score == pytest.approx(np.mean([e[1] for e in t.timeline]), abs=1e-5)
        assert t.max_score == pytest.approx(max(e[1] for e in t.timeline), abs=1e-6)
        assert [e[0] for e in t.timeline] == pytest.approx([i / 12 for i in range(24)], abs=1e-3)
    assert r.score == max(t.score for t in r.tracks)
    d = r.to_dict()
    assert set(d) == {"path", "score", "faces", "detector", "error", "video"}
    assert [f["id"] for f in d["faces"]] == [0, 1] and "timeline" not in d["faces"][0]
    assert len(d["video"]["tracks"][0]["timeline"]) == 24 and d["detector"]["name"] == "meso4"
    json.dumps(d)


@pytest.mark.shared
def test_short_tracks_do_not_count(det, faces, tmp_path, monkeypatch):
    clip = write_clip(tmp_path / "two.mp4", scene(faces, 6, second=True), fps=12)
    monkeypatch.setattr(dv, "MIN_TRACK_FRAMES", 7)  # no track long enough: all count
    r = dv.score_video(clip, *det)
    assert all(t.counted for t in r.tracks) and r.score == max(t.score for t in r.tracks)
    monkeypatch.setattr(dv, "MIN_TRACK_FRAMES", 3)
    assert all(t.counted for t in dv.score_video(clip, *det).tracks)


# ----------------------------------------------------------------------------- sampling in practice


@pytest.mark.shared
def test_every_frame_vs_sampled_and_max_frames(det, faces, tmp_path):
    clip = write_clip(tmp_path / "c.mp4", scene(faces, 40), fps=20)  # 2 s
    full = dv.score_video(clip, *det)
    assert full.frames_sampled == full.frames_decoded == 40 and full.tracks[0].frames == 40
    few = dv.score_video(clip, *det, max_frames=8)
    assert few.sampling["rule"] == "rate" and few.frames_sampled == 8 and few.tracks[0].frames == 8
    ts = [e[0] for e in few.tracks[0].timeline]
    assert ts == pytest.approx([(k + 0.5) * 0.25 for k in range(8)], abs=0.051)  # spread over the 2 s
    rate = dv.score_video(clip, *det, sample_fps=2.0)
    assert rate.frames_sampled == 4 and [e[0] for e in rate.tracks[0].timeline] == pytest.approx(
        [0.25, 0.75, 1.25, 1.75], abs=0.051)
    huge = dv.score_video(clip, *det, max_frames=10**6, limits=Limits(max_verify_frames=5))
    assert huge.frames_sampled == 5 and huge.notes[0]["code"] == "limit.verify_frames"


def test_two_hour_video_is_bounded(det, tmp_path):
    n = 3600  # 2 h at 0.5 fps: x264 puts a keyframe every 250 frames (500 s)
    clip = write_clip(tmp_path / "long.mp4", (np.full((64, 96, 3), 40 + (i % 50), np.uint8) for i in range(n)),
                      fps=Fraction(1, 2))
    t = time.perf_counter()
    r = dv.score_video(clip, *det, max_frames=12)
    assert time.perf_counter() - t < 30
    assert r.duration == pytest.approx(7200, rel=0.01) and r.frames_sampled == 12
    assert r.frames_decoded < 400 and r.sampling["seeks"] >= 5  # seeking, not decoding 3600 frames
    assert r.error["code"] == "detect.no_face"


def test_decode_frame_limit(det, faces, tmp_path):
    """A pass that would decode more than ``max_detect_decode_frames`` stops there and says so."""
    clip = write_clip(tmp_path / "c.mp4", scene(faces, 30), fps=10)  # 3 s, scored frame by frame
    r = dv.score_video(clip, *det, limits=Limits(max_detect_decode_frames=12))
    assert r.frames_decoded == 12 and r.frames_sampled == 12
    assert any(n["code"] == "limit.decode_frames" and "DHSTUDIO_MAX_DETECT_DECODE_FRAMES" in n["message"]
               for n in r.notes), r.notes


# ----------------------------------------------------------------------------- awkward videos


def _corrupt_packets(src: Path, dst: Path, which) -> None:
    data = bytearray(src.read_bytes())
    with av.open(str(src)) as c:
        pk = [(p.pos, p.size) for p in c.demux(video=0) if p.size and not p.is_keyframe]
    for i in which:
        pos, size = pk[i]
        data[pos:pos + 4] = b"\x7f\xff\xff\xff"  # the first NAL's length: far past the packet's end
        data[pos + 4:pos + min(size, 64)] = bytes(range(min(size, 64) - 4))
    dst.write_bytes(bytes(data))


@pytest.mark.shared
def test_corrupt_frames_skipped_and_counted(det, faces, tmp_path):
    good = write_clip(tmp_path / "good.mp4", scene(faces, 40), fps=20, gop=10)
    bad = tmp_path / "bad.mp4"
    _corrupt_packets(good, bad, [15, 16, 25])
    r = dv.score_video(bad, *det)
    assert r.error is None and r.score is not None
    assert r.frames_skipped >= 1 and r.frames_decoded + r.frames_skipped >= 38
    assert r.tracks[0].last_time > 1.5  # frames after the damage were scored


@pytest.mark.shared
def test_ten_bit(det, faces, tmp_path):
    clip = write_clip(tmp_path / "p10.mp4", scene(faces, 12), fps=12, pix_fmt="yuv420p10le")
    with av.open(str(clip)) as c:
        assert c.streams.video[0].codec_context.pix_fmt == "yuv420p10le"
    r = dv.score_video(clip, *det)
    assert r.error is None and r.frames_with_faces == 12 and len(r.tracks) == 1


@pytest.mark.shared
def test_rotated_display_matrix(det, faces, tmp_path):
    upright = np.full((400, 270, 3), 70, np.uint8)  # portrait, the face in the top half
    upright[40:190, 60:210] = faces[0]
    stored = np.ascontiguousarray(np.rot90(upright, -1))  # what a phone stores: turned on its side
    clip = write_clip(tmp_path / "rot.mp4", [stored] * 8, fps=8, rotation=90)
    r = dv.score_video(clip, *det)
    assert r.rotation == 90 and (r.width, r.height) == (270, 400)
    assert r.error is None and r.frames_with_faces == 8
    x0, y0, x1, y1 = r.tracks[0].box  # upright pixels: the face is near (135, 115)
    assert abs((x0 + x1) / 2 - 135) < 30 and abs((y0 + y1) / 2 - 120) < 40, r.tracks[0].box


@pytest.mark.shared
def test_variable_frame_rate_times(det, faces, tmp_path):
    pts = [0, 40, 100, 400, 433, 1000, 1500, 1530, 1560, 2000]
    clip = write_clip(tmp_path / "vfr.mp4", list(scene(faces, 10)), fps=25, pts_ms=pts)
    r = dv.score_video(clip, *det)
    assert [e[0] for e in r.tracks[0].timeline] == pytest.approx([p / 1000 for p in pts], abs=1e-3)
    s = dv.score_video(clip, *det, sample_fps=2.0)  # instants 0.25, 0.75, ...: the first frame at or after each
    assert [e[0] for e in s.tracks[0].timeline] == pytest.approx([0.4, 1.0, 1.5, 2.0], abs=1e-3)


@pytest.mark.shared
def test_no_face_audio_only_and_frame_limit(det, faces, tmp_path):
    blank = write_clip(tmp_path / "blank.mp4", [np.full((120, 160, 3), 200, np.uint8)] * 6, fps=6)
    r = dv.score_video(blank, *det)
    assert r.score is None and r.error["code"] == "detect.no_face" and r.frames_sampled == 6 and not r.tracks
    snd = tmp_path / "sound.mp4"
    with av.open(str(snd), "w", format="mp4") as out:
        ast = out.add_stream("aac", rate=16000)
        ast.layout = "mono"
        for t in range(0, 16000, 1024):
            af = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            af.sample_rate, af.pts = 16000, t
            for p in ast.encode(af):
                out.mux(p)
        for p in ast.encode():
            out.mux(p)
    a = dv.score_video(snd, *det)
    assert a.score is None and a.error["code"] == "input.no_video_stream"
    clip = write_clip(tmp_path / "c.mp4", scene(faces, 3), fps=3)
    big = dv.score_video(clip, *det, limits=Limits(max_frame_pixels=50_000))  # 400 x 300 = 120,000
    assert big.error["code"] == "limit.frame_pixels" and big.frames_decoded == 0
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00\x00\x00\x18ftypisom" + os.urandom(3000))
    assert dv.score_video(junk, *det).error["code"].startswith("input.")


@pytest.mark.shared
def test_talking_head_sample(det, tmp_path):
    if not TALKING_HEAD.is_file():
        pytest.skip(f"{TALKING_HEAD} is absent")
    cut = tmp_path / "talk3s.mp4"  # the first 3 s, stream-copied (audio kept)
    with av.open(str(TALKING_HEAD)) as inp, av.open(str(cut), "w", format="mp4") as out:
        omap = {s.index: out.add_stream_from_template(s) for s in (inp.streams.video[0], inp.streams.audio[0])}
        for p in inp.demux(inp.streams.video[0], inp.streams.audio[0]):
            if p.dts is None or p.pts is None:
                continue
            if p.dts * p.time_base > 3:
                continue
            p.stream = omap[p.stream.index]
            out.mux(p)
    r = dv.score_video(cut, *det, max_frames=15)
    assert r.error is None and r.sampling["rule"] == "rate" and r.frames_sampled == 15
    assert r.frames_with_faces >= 14 and len([t for t in r.tracks if t.counted]) == 1
    assert (r.width, r.height) == (512, 512) and r.fps == pytest.approx(30, abs=0.1)


# ----------------------------------------------------------------------------- annotated MP4 and CLI


@pytest.mark.shared
def test_cli_video_json_and_annotate_keeps_audio(weights, faces, tmp_path):
    clip = write_clip(tmp_path / "talk.mp4", scene(faces, 20), fps=10, audio=True)
    face = REAL / "0.jpg"
    out = tmp_path / "ann.mp4"
    p = run_cli([clip, "--weights", weights, "--json", "--annotate", out, "--max-frames", "8"], tmp_path)
    assert p.returncode == 0, p.stderr
    (d,) = [json.loads(x) for x in p.stdout.splitlines()]
    assert set(d) == {"path", "score", "faces", "detector", "error", "video"} and d["error"] is None
    assert d["video"]["frames_sampled"] == 8 and d["faces"][0]["frames"] == 8
    ann = d["video"]["annotated"]
    assert ann["audio"] == "copied" and ann["frames"] == 20 and ann["path"] == str(out)
    got, src = streams(out), streams(clip)
    assert got["video"][0] == "h264" and got["audio"][0] == "aac"
    assert got["audio"][1] == pytest.approx(src["audio"][1], abs=0.1)
    assert got["video"][1] == pytest.approx(2.0, abs=0.15)
    with av.open(str(out)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == 20 and frames[0].shape[1] == 400 and frames[0].shape[0] > 300  # the plot strip
    t, score, box = d["video"]["tracks"][0]["timeline"][0]
    x0, y0, x1, y1 = np.round(box).astype(int)
    edge = frames[round(t * 10)][y0 + 4:y1 - 4, x0:x0 + 2].astype(int)  # the box's left edge (2 px wide)
    assert np.abs(edge - np.asarray(dv.score_color(score))).mean() < 45, edge.mean((0, 1))
    assert not [f for f in os.listdir(tmp_path) if ".part" in f]
    # images keep their behaviour next to a video in one call (no --annotate)
    p = run_cli([face, clip, "--weights", weights, "--json", "--sample-fps", "2"], tmp_path)
    img, vid = [json.loads(x) for x in p.stdout.splitlines()]
    assert p.returncode == 0 and "video" not in img and img["faces"][0]["score"] == img["score"]
    assert vid["video"]["frames_sampled"] == 4


@pytest.mark.shared
def test_cli_annotate_errors(weights, faces, tmp_path):
    clip = write_clip(tmp_path / "c.mp4", scene(faces, 3), fps=3)
    face = REAL / "0.jpg"
    out = tmp_path / "ann.mp4"
    for args, want in (([clip, clip], "one video file"), ([face], "needs a video")):
        p = run_cli([*args, "--weights", weights, "--annotate", out], tmp_path)
        assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and want in p.stderr, p.stderr
        assert not out.exists()
    p = run_cli([clip, "--weights", weights, "--max-frames", "0"], tmp_path)
    assert p.returncode == 2 and "--max-frames" in p.stderr


@pytest.mark.shared
def test_annotate_failure_leaves_nothing(det, faces, tmp_path, monkeypatch):
    clip = write_clip(tmp_path / "c.mp4", scene(faces, 10), fps=10, audio=True)
    out = tmp_path / "ann.mp4"
    calls = []

    def boom(self, rgb, now):
        calls.append(now)
        if len(calls) > 3:
            raise OSError(28, "No space left on device")
        return np.zeros((self.h + self.strip, self.w, 3), np.uint8)

    monkeypatch.setattr(dv._Annotator, "draw", boom)
    r = dv.score_video(clip, *det, annotate=out)
    assert r.error["code"] == "output.unwritable" and r.score is not None and r.annotated is None
    assert sorted(os.listdir(tmp_path)) == ["c.mp4"]
    r = dv.score_video(clip, *det, annotate=clip)  # never over the input
    assert r.error["code"] == "output.same_as_input" and r.frames_sampled == 0
    r = dv.score_video(clip, *det, annotate=out, limits=Limits(max_sign_frames=5))  # refused before scoring
    assert r.error["code"] == "limit.sign_frames" and r.frames_sampled == 0 and not out.exists()
