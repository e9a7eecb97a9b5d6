"""Issue 18: the image and video watermark survive geometry (rotation, mirror, half-frame crops,
16:9 -> 9:16 reframing, aspect changes), each followed by JPEG q75 / H.264 CRF 28, through the
template (``provenance.watermark._sync``); unmarked images stay unmarked; v1 marks still read."""

from __future__ import annotations

import io
from fractions import Fraction

import numpy as np
import pytest
from PIL import Image

from provenance.watermark import _core, _sync
from provenance.watermark.image import ALGORITHM, FALSE_POSITIVE_BOUND, decode_image, embed_image, psnr

from .test_watermark_image import scene

WM_ID = 0x5EC0DE_2026AB


def q75(a):
    b = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(a)).save(b, "JPEG", quality=75)
    return np.asarray(Image.open(io.BytesIO(b.getvalue())).convert("RGB"))


def rotate_inner(a, deg):
    h, w = a.shape[:2]
    r = np.asarray(Image.fromarray(a).rotate(deg, Image.BICUBIC))
    t = np.deg2rad(abs(deg))
    k = min(w / (w * np.cos(t) + h * np.sin(t)), h / (w * np.sin(t) + h * np.cos(t)))
    cw, ch = int(w * k) - 2, int(h * k) - 2
    return r[(h - ch) // 2:(h - ch) // 2 + ch, (w - cw) // 2:(w - cw) // 2 + cw]


EDITS = {
    "rotate +4": lambda a: rotate_inner(a, 4.0),
    "rotate -5": lambda a: rotate_inner(a, -5.0),
    "mirror": lambda a: a[:, ::-1],
    "crop 50 % centre": lambda a: a[a.shape[0] * 15 // 100: a.shape[0] * 85 // 100,
                                    a.shape[1] * 15 // 100: a.shape[1] * 85 // 100],
    "right half": lambda a: a[:, a.shape[1] // 2:],
    "16:9 -> 9:16": lambda a: a[:, (a.shape[1] - a.shape[0] * 9 // 16) // 2:][:, :a.shape[0] * 9 // 16],
    "stretch x1.1": lambda a: np.asarray(Image.fromarray(a).resize((round(a.shape[1] * 1.1), a.shape[0]),
                                                                   Image.BICUBIC)),
    "mirror + rotate -3": lambda a: rotate_inner(a[:, ::-1], -3.0),
}


@pytest.fixture(scope="module")
def marked():
    rgb = scene(960, 540, 7)
    return rgb, embed_image(rgb, WM_ID)


def test_psnr_and_the_algorithm(marked):
    rgb, m = marked
    assert ALGORITHM == "io.dhstudio.watermark.image.v2"
    assert psnr(rgb, m) >= 40.0
    # the whole mark (chips + template) lands on its stated target
    assert abs(psnr(rgb, m) - _core.total_target_psnr()) < 0.6


@pytest.mark.parametrize("edit", list(EDITS))
def test_geometric_edits_then_jpeg(marked, edit):
    _, m = marked
    r = decode_image(q75(EDITS[edit](m)))
    assert r.found and r.id == WM_ID, (edit, r.detail)
    assert r.false_positive_bound == FALSE_POSITIVE_BOUND <= 1e-6
    if edit != "crop 50 % centre":  # a same-aspect centre crop may already be read by the first path
        g = r.detail["geometry"]
        assert g["mirror"] == ("mirror" in edit)


def test_the_geometry_found_is_the_edit(marked):
    _, m = marked
    g = decode_image(q75(rotate_inner(m, 4.0))).detail["geometry"]
    assert abs(g["rotation_deg"] - 4.0) < 0.75 and not g["mirror"]
    g = decode_image(q75(EDITS["16:9 -> 9:16"](m))).detail["geometry"]
    assert abs(g["scale"] - 16 / 9) < 0.05  # the portrait's long edge is the original's short edge


def test_unmarked_images_and_edits_stay_unmarked():
    for seed in range(6):
        a = scene(640, 360, 100 + seed)
        for edit in ("rotate +4", "mirror", "16:9 -> 9:16"):
            r = decode_image(q75(EDITS[edit](a)))
            assert not r.found, (seed, edit, r.detail)
    assert FALSE_POSITIVE_BOUND == (_core.WORDS_PER_IMAGE + _sync.WORDS_GEOMETRIC) * 2.0 ** -32 <= 1e-6


def test_v1_marks_are_still_read(monkeypatch):
    """Files signed before the template (v1: chips only) decode as before, by the first path."""
    rgb = scene(640, 360, 3)
    monkeypatch.setattr(_sync, "TEMPLATE_SHARE", 0.0)
    v1 = embed_image(rgb, WM_ID)
    monkeypatch.undo()
    r = decode_image(q75(v1))
    assert r.found and r.id == WM_ID and "geometry" not in r.detail


def _clip(path, frames, fps=12):
    import av

    with av.open(str(path), "w", format="mp4") as out:
        st = out.add_stream("libx264", rate=fps)
        st.height, st.width = frames[0].shape[:2]
        st.pix_fmt, st.options = "yuv420p", {"crf": "28", "preset": "ultrafast"}
        for i, a in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(a), format="rgb24")
            vf.pts, vf.time_base = i, Fraction(1, fps)
            for p in st.encode(vf):
                out.mux(p)
        for p in st.encode():
            out.mux(p)
    return path


def test_video_reframed_and_mirrored(tmp_path):
    pytest.importorskip("av")
    from provenance.watermark.video import VIDEO_FALSE_POSITIVE_BOUND, decode_video, embed_video

    base = scene(1280, 720, 11)
    frames = [np.roll(base, 6 * i, axis=1) for i in range(12)]
    src = _clip(tmp_path / "src.mp4", frames)
    marked = tmp_path / "marked.mp4"
    embed_video(src, marked, WM_ID, crf=18)
    import av

    with av.open(str(marked)) as c:
        got = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    w916 = 720 * 9 // 16 // 2 * 2  # even, for yuv420p
    for name, edit in (("9:16", lambda a: a[:, 400:400 + w916]), ("mirror", lambda a: a[:, ::-1])):
        att = _clip(tmp_path / f"{name}.mp4", [edit(a) for a in got])
        r = decode_video(att)
        assert r.found and r.id == WM_ID, (name, r.detail)
        assert r.detail["mode"] == "average, geometric"
        assert r.false_positive_bound == VIDEO_FALSE_POSITIVE_BOUND <= 1e-6
    assert not decode_video(_clip(tmp_path / "unmarked.mp4", [a[:, ::-1] for a in frames])).found
