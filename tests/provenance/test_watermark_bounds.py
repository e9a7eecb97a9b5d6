"""Bounded watermark decoding and embedding (issues F1, F5): hostile sizes, frame counts, limits,
PNG ancillary chunks, every image format a viewer shows, bytes and file-object sources."""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, features

from provenance.errors import InputError
from provenance.limits import DEFAULT_LIMITS, Limits, current_limits
from provenance.watermark import _core
from provenance.watermark.image import decode_file, embed_file, embed_image

av = pytest.importorskip("av")

from provenance.watermark.video import decode_video, embed_video  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
WM_ID = 0x5EED1234ABCD


# ----------------------------------------------------------------------------- helpers

def scene(w: int, h: int, seed: int = 0) -> np.ndarray:
    """Smooth gradient + blobs + mild noise (a host the watermark reads well at small sizes)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    u, v = xx / w, yy / h
    img = np.stack([50 + 140 * u, 70 + 110 * v, 190 - 110 * u], -1)
    for _ in range(6):
        cx, cy, r = rng.uniform(0, 1, 3)
        img[((u - cx) * w) ** 2 + ((v - cy) * h) ** 2 < (0.1 * r * w) ** 2 + 1] = rng.uniform(30, 220, 3)
    img += rng.normal(0, 2.0, img.shape)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def png_chunk(ctype: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + ctype + data + struct.pack(">I", zlib.crc32(ctype + data) & 0xFFFFFFFF)


def with_chunk(png: bytes, chunk: bytes) -> bytes:
    """``chunk`` inserted right after IHDR (before the pixel data, where Pillow reads it on open)."""
    i = 8 + 8 + 13 + 4
    return png[:i] + chunk + png[i:]


def encode(a: np.ndarray, fmt: str, **kw) -> bytes:
    b = io.BytesIO()
    Image.fromarray(a).save(b, fmt, **kw)
    return b.getvalue()


def flat_video(path: Path, w: int, h: int, n: int, *, fragmented: bool = False) -> Path:
    """n mostly flat frames (tiny on disk whatever their size); fragmented: no frame count in the moov."""
    opts = {"movflags": "frag_keyframe+empty_moov"} if fragmented else {}
    out = av.open(str(path), "w", format="mp4", options=opts)
    vs = out.add_stream("libx264", rate=30)
    vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
    vs.options = {"preset": "ultrafast", "crf": "40"}
    buf = np.full((h * 3 // 2, w), 128, np.uint8)
    for i in range(n):
        buf[:h] = 100 + (i % 50)
        f = av.VideoFrame.from_ndarray(buf, format="yuv420p")
        f.pts = i
        for p in vs.encode(f):
            out.mux(p)
    for p in vs.encode():
        out.mux(p)
    out.close()
    return path


def run_child(code: str, env: dict | None = None, timeout: float = 120) -> dict:
    """Run ``code`` in a fresh interpreter; it prints a JSON dict; add the child's peak RSS (MB).

    The peak is VmHWM of /proc/self/status (this process's own memory): ru_maxrss would also count
    the forking parent's RSS, which Linux carries across exec (pytest itself can be ~700 MB)."""
    prog = ("import json, re, sys\n" + code +
            "\nout['rss_mb'] = int(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)) / 1024"
            "\nprint(json.dumps(out))\n")
    e = dict(os.environ, PYTHONPATH=str(REPO), **(env or {}))
    r = subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True, timeout=timeout, env=e, cwd=REPO)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def marked_png() -> bytes:
    return encode(embed_image(scene(640, 480, 1), WM_ID), "PNG")


@pytest.fixture(scope="module")
def marked_clip(tmp_path_factory) -> Path:
    """A watermarked 320x240 clip of 60 frames (known frame count)."""
    d = tmp_path_factory.mktemp("wmbounds")
    src = d / "src.mp4"
    out = av.open(str(src), "w")
    vs = out.add_stream("libx264", rate=30)
    vs.width, vs.height, vs.pix_fmt = 320, 240, "yuv420p"
    vs.options = {"crf": "18", "preset": "ultrafast"}
    base = scene(320, 240, 2).astype(np.int16)
    for i in range(60):
        f = av.VideoFrame.from_ndarray(np.clip(np.roll(base, i, axis=1), 0, 255).astype(np.uint8), format="rgb24")
        for p in vs.encode(f):
            out.mux(p)
    for p in vs.encode():
        out.mux(p)
    out.close()
    embed_video(src, d / "wm.mp4", WM_ID, preset="ultrafast")
    return d / "wm.mp4"


# ----------------------------------------------------------------------------- limits module

def test_limits_defaults_env_and_invalid(monkeypatch):
    for name in ("max_image_pixels", "max_embed_pixels", "max_frame_pixels", "max_verify_frames",
                 "max_verify_pixels", "max_sign_frames", "max_decoder_threads", "max_png_chunks", "max_icc_bytes"):
        monkeypatch.delenv("DHSTUDIO_" + name.upper(), raising=False)
    assert current_limits() == DEFAULT_LIMITS
    assert DEFAULT_LIMITS.max_verify_frames == 1800 and DEFAULT_LIMITS.max_sign_frames == 36_000
    monkeypatch.setenv("DHSTUDIO_MAX_VERIFY_FRAMES", "12")
    monkeypatch.setenv("DHSTUDIO_MAX_EMBED_PIXELS", "1_000_000")
    lim = current_limits()
    assert lim.max_verify_frames == 12 and lim.max_embed_pixels == 1_000_000
    assert lim.max_image_pixels == DEFAULT_LIMITS.max_image_pixels
    monkeypatch.setenv("DHSTUDIO_MAX_VERIFY_FRAMES", "lots")
    with pytest.raises(InputError) as e:
        current_limits()
    assert e.value.code == "config.invalid" and "DHSTUDIO_MAX_VERIFY_FRAMES" in e.value.message


# ----------------------------------------------------------------------------- strip-wise = one-shot

def test_strip_wise_reduction_and_delta_match_one_shot(monkeypatch):
    rng = np.random.default_rng(0)
    y = (rng.random((1500, 1100), dtype=np.float32) * 255).astype(np.float32)
    ref, fx, fy = _core.to_intermediate(y)
    ref_delta = _core.embed_delta(y, WM_ID, b"k")
    monkeypatch.setattr(_core, "STRIP_PIXELS", 1 << 17)  # ~119 rows per strip
    got, gx, gy = _core.to_intermediate_rows(1500, 1100, lambda a, b: y[a:b])
    assert (gx, gy) == (fx, fy) and np.allclose(got, ref, atol=1e-3)
    for keep in (1 << 24, 0):  # strips kept from the RMS pass, or computed again
        monkeypatch.setattr(_core, "KEEP_PIXELS", keep)
        plan = _core.DeltaPlan(got, gx, gy, 1500, 1100, WM_ID, b"k")
        assert len(list(plan.strips())) > 5
        delta = np.concatenate([plan.rows(a, b) for a, b in plan.strips()])
        assert np.allclose(delta, ref_delta, atol=1e-4 * float(np.abs(ref_delta).max()))


# ----------------------------------------------------------------------------- F5: any image a viewer shows

def test_png_with_big_ztxt_and_iccp_decodes(marked_png):
    ztxt = png_chunk(b"zTXt", b"Comment\0\0" + zlib.compress(b"harmless text " * 150_000))  # 2.1 MB inflated
    iccp = png_chunk(b"iCCP", b"big profile\0\0" + zlib.compress(bytes(2 << 20)))
    for data in (with_chunk(marked_png, ztxt), with_chunk(marked_png, iccp),
                 marked_png[:-12] + ztxt + marked_png[-12:]):  # also after the pixel data
        r = decode_file(data)
        assert r.found and r.id == WM_ID, r.detail


FORMATS = [("BMP", {}), ("PPM", {}), ("TIFF", {}), ("WEBP", {"lossless": True}), ("GIF", {})]
if features.check("avif"):
    FORMATS.append(("AVIF", {"quality": 90}))


@pytest.mark.parametrize("fmt,kw", FORMATS, ids=[f for f, _ in FORMATS])
def test_other_formats_decode(marked_png, fmt, kw):
    a = np.asarray(Image.open(io.BytesIO(marked_png)).convert("RGB"))
    r = decode_file(encode(a, fmt, **kw))
    assert r.found and r.id == WM_ID, (fmt, r.detail)


def test_pgm_path_and_file_object_sources(marked_png, tmp_path):
    gray = np.asarray(Image.open(io.BytesIO(marked_png)).convert("L"))
    p = tmp_path / "gray.pgm"
    p.write_bytes(encode(gray, "PPM"))
    assert decode_file(p).id == WM_ID
    assert decode_file(str(p)).id == WM_ID
    with open(p, "rb") as f:
        assert decode_file(f).id == WM_ID
    assert decode_file(io.BytesIO(marked_png)).id == WM_ID


def test_sign_png_with_big_text_and_icc(tmp_path):
    src_png = encode(scene(400, 300, 3), "PNG")
    icc = b"\x00\x01" * (1 << 20)  # 2 MB 'profile': over Pillow's own 1 MB chunk limit
    ztxt = png_chunk(b"zTXt", b"Comment\0\0" + zlib.compress(b"x" * (2 << 20)))
    iccp = png_chunk(b"iCCP", b"p\0\0" + zlib.compress(icc))
    src = tmp_path / "in.png"
    src.write_bytes(with_chunk(with_chunk(src_png, ztxt), iccp))
    embed_file(src, tmp_path / "out.png", 77)
    out = (tmp_path / "out.png").read_bytes()
    assert decode_file(out).id == 77
    assert b"iCCP" in out and b"zTXt" not in out  # ICC kept, text dropped
    # an ICC profile over the limit: a one-line refusal, not a traceback
    with pytest.raises(InputError) as e:
        embed_file(src, tmp_path / "out2.png", 77, limits=Limits(max_icc_bytes=1 << 20))
    assert e.value.code == "limit.icc_bytes" and "\n" not in e.value.message


# ----------------------------------------------------------------------------- image pixel caps

def _flat_png(w: int, h: int) -> bytes:
    """A flat gray w x h PNG built without holding the pixels (compressed rows streamed)."""
    z = zlib.compressobj(1)
    row = bytes(w + 1)
    parts = [z.compress(row) for _ in range(h)] + [z.flush()]
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", b"".join(parts))
            + png_chunk(b"IEND", b""))


def test_image_pixel_caps(marked_png, tmp_path):
    with pytest.raises(InputError) as e:
        decode_file(marked_png, limits=Limits(max_image_pixels=100_000))
    assert e.value.code == "limit.image_pixels" and "DHSTUDIO_MAX_IMAGE_PIXELS" in e.value.message
    jpg = encode(np.asarray(Image.open(io.BytesIO(marked_png)).convert("RGB")), "JPEG", quality=90)
    with pytest.raises(InputError) as e:
        decode_file(jpg, limits=Limits(max_image_pixels=100_000))
    assert e.value.code == "limit.image_pixels"
    src = tmp_path / "in.png"
    src.write_bytes(marked_png)
    with pytest.raises(InputError) as e:
        embed_file(src, tmp_path / "o.png", 1, limits=Limits(max_embed_pixels=100_000))
    assert e.value.code == "limit.image_pixels" and "DHSTUDIO_MAX_EMBED_PIXELS" in e.value.message
    assert not (tmp_path / "o.png").exists()
    # a header claiming 20000 x 10000 (past Pillow's own bomb check): our code, not Pillow's error
    bmp = (b"BM" + struct.pack("<IHHI", 54, 0, 0, 54) +
           struct.pack("<IiiHHIIiiII", 40, 20000, 10000, 1, 24, 0, 0, 2835, 2835, 0, 0))
    with pytest.raises(InputError) as e:
        decode_file(bmp)
    assert e.value.code == "limit.image_pixels"


def test_sign_12000px_png_refused_in_bounded_memory(tmp_path):
    p = tmp_path / "big.png"
    p.write_bytes(_flat_png(12000, 12000))
    out = run_child(
        "from provenance.watermark.image import embed_file\n"
        "from provenance.errors import InputError\n"
        "out = {}\n"
        "try:\n"
        f"    embed_file({str(p)!r}, {str(tmp_path / 'o.png')!r}, 1)\n"
        "except InputError as e:\n"
        "    out['code'] = e.code\n")
    assert out.get("code") == "limit.image_pixels" and out["rss_mb"] < 400, out


def test_large_jpeg_decoded_scaled_still_found():
    a = scene(4400, 2600, 4)
    m = embed_image(a, WM_ID)
    jpg = encode(m, "JPEG", quality=85)
    r = decode_file(jpg)
    assert r.found and r.id == WM_ID, r.detail


# ----------------------------------------------------------------------------- video

def test_hostile_4096_fragmented_video_bounded_memory(tmp_path):
    p = flat_video(tmp_path / "frag.mp4", 4096, 4096, 40, fragmented=True)  # no frame count: old code kept 40 frames
    out = run_child(
        "from provenance.watermark.video import decode_video\n"
        f"r = decode_video({str(p)!r})\n"
        "out = {'found': r.found, 'frames_used': r.detail.get('frames_used')}\n")
    assert out["found"] is False and out["frames_used"] == 40 and out["rss_mb"] < 1500, out


def test_frame_pixel_cap(tmp_path):
    big = flat_video(tmp_path / "big.mp4", 8192, 8192, 2)
    for fn in (lambda: decode_video(big), lambda: embed_video(big, tmp_path / "o.mp4", 1)):
        with pytest.raises(InputError) as e:
            fn()
        assert e.value.code == "limit.frame_pixels" and "DHSTUDIO_MAX_FRAME_PIXELS" in e.value.message
        assert "\n" not in e.value.message
    small = flat_video(tmp_path / "small.mp4", 128, 128, 3)
    with pytest.raises(InputError) as e:
        decode_video(small.read_bytes(), limits=Limits(max_frame_pixels=128 * 128 - 1))
    assert e.value.code == "limit.frame_pixels"
    assert not (tmp_path / "o.mp4").exists() and not list(tmp_path.glob(".wm-*"))


def test_verify_frame_cap_known_count(marked_clip):
    r = decode_video(marked_clip, limits=Limits(max_verify_frames=24))
    assert r.found and r.id == WM_ID
    assert r.detail["frames_decoded"] <= 24
    assert [x["code"] for x in r.detail["limits"]] == ["limit.verify_frames"]
    assert "first 24 of 60 frames" in r.detail["limits"][0]["message"]
    full = decode_video(marked_clip.read_bytes())  # bytes source, no limit hit
    assert full.found and full.id == WM_ID and "limits" not in full.detail


def test_verify_frame_cap_unknown_count_and_env(tmp_path, monkeypatch):
    p = flat_video(tmp_path / "frag.mp4", 96, 64, 300, fragmented=True)
    monkeypatch.setenv("DHSTUDIO_MAX_VERIFY_FRAMES", "100")
    with open(p, "rb") as f:
        r = decode_video(f)
    assert not r.found and r.detail["frames_decoded"] == 100
    assert r.detail["limits"][0]["code"] == "limit.verify_frames"
    assert "first 100 frames" in r.detail["limits"][0]["message"]


def test_sign_frame_cap(tmp_path, monkeypatch):
    p = flat_video(tmp_path / "v.mp4", 64, 64, 50)
    with pytest.raises(InputError) as e:
        embed_video(p, tmp_path / "o.mp4", 1, limits=Limits(max_sign_frames=20))
    assert e.value.code == "limit.sign_frames" and "DHSTUDIO_MAX_SIGN_FRAMES" in e.value.message
    q = flat_video(tmp_path / "f.mp4", 64, 64, 50, fragmented=True)  # no count: duration x rate
    with pytest.raises(InputError) as e:
        embed_video(q, tmp_path / "o.mp4", 1, limits=Limits(max_sign_frames=20))
    assert e.value.code == "limit.sign_frames"
    # a container that says nothing about its length: counted while decoding
    from provenance.watermark import video
    monkeypatch.setattr(video, "_frame_count", lambda inp, vin: None)
    with pytest.raises(InputError) as e:
        embed_video(q, tmp_path / "o.mp4", 1, limits=Limits(max_sign_frames=20))
    assert e.value.code == "limit.sign_frames" and "more than 20 frames" in e.value.message
    assert not (tmp_path / "o.mp4").exists() and not list(tmp_path.glob(".wm-*"))


def test_long_video_verify_bounded_time(tmp_path):
    """5,000 tiny frames, verification capped at 300: only the first 300 (+1) are decoded."""
    p = flat_video(tmp_path / "long.mp4", 64, 64, 5000)
    r = decode_video(p, limits=Limits(max_verify_frames=300))
    from provenance.watermark.video import DEFAULT_MAX_FRAMES

    stride = -(-300 // DEFAULT_MAX_FRAMES)  # samples spread over the 300 frames verified
    assert r.detail["frames_decoded"] <= 300 and r.detail["frames_used"] == len(range(0, 300, stride))
    assert "first 300 of 5000 frames" in r.detail["limits"][0]["message"]
