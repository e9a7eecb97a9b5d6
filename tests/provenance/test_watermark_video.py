"""Video watermark: procedural 1080p H.264 clip, round trip, CRF 30, 720p, trim, audio kept."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av")

from provenance.errors import InputError  # noqa: E402
from provenance.watermark.video import VIDEO_FALSE_POSITIVE_BOUND, decode_video, embed_video  # noqa: E402

WM_ID = 0xABCDEF123456
FPS = 6
SECONDS = 3


def make_clip(path: Path, w=1920, h=1080, seconds=SECONDS, fps=FPS, audio=True):
    """Moving procedural scene (gradient, texture, moving disc) + a sine tone, H.264 yuv420p."""
    out = av.open(str(path), "w")
    vs = out.add_stream("libx264", rate=fps)
    vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
    vs.options = {"crf": "18", "preset": "ultrafast"}
    a_s = out.add_stream("aac", rate=44100) if audio else None
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    rng = np.random.default_rng(0)
    tex = np.kron(rng.normal(0, 1, (h // 16 + 1, w // 16 + 1)).astype(np.float32), np.ones((16, 16), np.float32))[:h, :w]
    for i in range(seconds * fps):
        t = i / fps
        img = 60 + 100 * (xx / w) + 40 * np.sin(yy / 90 + t) + 15 * tex
        cx = w * (0.3 + 0.4 * t / seconds)
        img = np.where((xx - cx) ** 2 + (yy - h / 2) ** 2 < (h / 6) ** 2, 200 - 30 * np.cos(xx / 20), img)
        rgb = np.clip(np.stack([img, img * 0.9 + 20, 255 - img], -1), 0, 255).astype(np.uint8)
        for p in vs.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
            out.mux(p)
    for p in vs.encode():
        out.mux(p)
    if a_s is not None:
        n, sr = 1024, 44100
        for k in range(int(seconds * sr / n)):
            s = (0.2 * np.sin(2 * np.pi * 440 * (np.arange(n) + k * n) / sr)).astype(np.float32)[None]
            af = av.AudioFrame.from_ndarray(s, format="fltp", layout="mono")
            af.sample_rate, af.pts = sr, k * n
            for p in a_s.encode(af):
                out.mux(p)
        for p in a_s.encode():
            out.mux(p)
    out.close()


def transcode(src: Path, dst: Path, crf=30, height=None, trim=None):
    """Re-encode with libx264 at ``crf``; optionally rescale to ``height`` and drop ``trim`` s at both ends."""
    inp = av.open(str(src))
    vin = inp.streams.video[0]
    out = av.open(str(dst), "w")
    vs = out.add_stream("libx264", rate=vin.average_rate)
    w, h = vin.codec_context.width, vin.codec_context.height
    if height:
        w, h = round(w * height / h / 2) * 2, height
    vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
    vs.options = {"crf": str(crf), "preset": "veryfast"}
    n, fps = vin.frames, float(vin.average_rate)
    kept = 0
    for i, f in enumerate(inp.decode(vin)):
        t = i / fps
        if trim and (t < trim or t >= n / fps - trim):
            continue
        nf = f.reformat(width=w, height=h, format="yuv420p", interpolation="AREA")
        nf.pts = None
        for p in vs.encode(nf):
            out.mux(p)
        kept += 1
    for p in vs.encode():
        out.mux(p)
    out.close()
    inp.close()
    return kept


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("wmvideo")
    make_clip(d / "src.mp4")
    stats = embed_video(d / "src.mp4", d / "wm.mp4", WM_ID)
    return d, stats


def test_embed_stats_and_streams(clips):
    d, stats = clips
    assert stats["frames"] == SECONDS * FPS and (stats["width"], stats["height"]) == (1920, 1080)
    assert stats["audio"] == "copied" and stats["mean_psnr_y"] >= 40.0
    with av.open(str(d / "wm.mp4")) as c:
        v = c.streams.video[0]
        assert v.codec_context.name == "h264" and v.codec_context.pix_fmt == "yuv420p"
        assert (v.codec_context.width, v.codec_context.height) == (1920, 1080)
        assert [s.type for s in c.streams] == ["video", "audio"]
    assert not [p for p in d.iterdir() if p.name.startswith(".wm-")]


def test_round_trip_and_every_frame(clips):
    d, _ = clips
    r = decode_video(d / "wm.mp4")
    assert r.found and r.id == WM_ID and r.false_positive_bound == VIDEO_FALSE_POSITIVE_BOUND
    # every frame carries the id on its own (first, middle, last)
    from provenance.watermark.image import decode_luma
    from provenance.watermark.video import _luma_plane
    with av.open(str(d / "wm.mp4")) as c:
        frames = [_luma_plane(f).astype(np.float32) for f in c.decode(video=0)]
    for i in (0, len(frames) // 2, len(frames) - 1):
        assert decode_luma(frames[i]).id == WM_ID, i


def test_unmarked_video(clips):
    d, _ = clips
    assert not decode_video(d / "src.mp4").found


@pytest.mark.parametrize("name,kw", [("crf30", dict(crf=30)), ("720p", dict(crf=23, height=720)),
                                     ("trim1s", dict(crf=23, trim=1.0))])
def test_attacks(clips, name, kw):
    d, _ = clips
    kept = transcode(d / "wm.mp4", d / f"{name}.mp4", **kw)
    assert kept > 0
    r = decode_video(d / f"{name}.mp4")
    assert r.found and r.id == WM_ID, r.detail


def test_bad_inputs(tmp_path):
    bad = tmp_path / "x.mp4"
    bad.write_bytes(b"not a video")
    with pytest.raises(InputError):
        decode_video(bad)
    with pytest.raises(InputError):
        embed_video(bad, tmp_path / "o.mp4", 1)
    with pytest.raises(ValueError):
        embed_video(bad, tmp_path / "o.mp4", -1)
    assert not (tmp_path / "o.mp4").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".wm-")]
