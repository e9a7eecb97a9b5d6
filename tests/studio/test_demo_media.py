"""The demo's "social network" re-encoders: sizes, formats and sane timestamps."""

from __future__ import annotations

import av
from PIL import Image

from reconstruct import procedural
from studio.pipelines.demo import social_image, social_video


def test_social_video_downscales_and_keeps_timing(tmp_path):
    src = procedural.write_video(tmp_path / "in.mp4", h=360, w=640, seconds=1.0, fps=24, seed=3)
    dst = social_video(src, tmp_path / "out.mp4", height=240, crf=30)
    with av.open(str(dst)) as c:
        s = c.streams.video[0]
        pts = [f.pts for f in c.decode(s)]
        assert (s.codec_context.width, s.codec_context.height) == (426, 240)
        assert len(pts) == 24
        assert all(b > a for a, b in zip(pts, pts[1:])), "timestamps must increase"
        assert abs(c.duration / 1e6 - 1.0) < 0.1


def test_social_image_long_edge_and_jpeg(tmp_path):
    src = procedural.write_image(tmp_path / "in.png", 1000, 1600, seed=2)
    dst = social_image(src, tmp_path / "out.jpg")
    with Image.open(dst) as im:
        assert im.format == "JPEG" and max(im.size) == 1080
