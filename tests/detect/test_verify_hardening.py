"""Issue 12: the verify path under hostile input (F3 expiry, F4 terminal injection, F5/F6 media
types, F7 read once, minor: FIFO trust anchors) and the typed Verdict's JSON round trip."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import detect
from detect.report import render_html, summary_text
from provenance import keys, media
from provenance.registry import Registry
from studio.pipelines.publish import publish

REPO = Path(__file__).resolve().parents[2]


def cli(args, home, timeout=60):
    env = dict(os.environ, DHSTUDIO_HOME=str(home))
    env.pop("DHSTUDIO_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "studio.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=REPO)


def photo(path: Path, h=320, w=480, seed=0) -> Path:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = 128 + 60 * np.sin(x / 23.0) * np.cos(y / 31.0)
    img = np.clip(base[..., None] + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(img).save(path)
    return path


@pytest.fixture
def signed_png(tmp_path, dhs_home):
    reg = Registry()
    res = publish(photo(tmp_path / "gen.png"), tmp_path / "signed.png", registry=reg)
    return res, reg


# --------------------------------------------------------------------------- the Verdict


def test_verdict_json_round_trip(signed_png):
    res, reg = signed_png
    v = detect.verify(res.path, detect.VerifyOptions(registry=reg))
    assert v.label == "signed-generated-intact"
    back = detect.Verdict.from_json(v.to_json())
    assert back == v
    d = v.to_dict()
    assert d["schema"] == detect.SCHEMA
    # the keys of schema /1 keep their meaning
    for k in ("file", "provenance", "watermark", "registry", "content", "label", "label_description",
              "reasons", "trust_anchors", "elapsed_s"):
        assert k in d
    assert d["watermark"]["id_hex"] == media.wm_id_hex(res.watermark_id)
    assert d["file"]["sha256"] == res.asset_sha256
    with pytest.raises(ValueError, match="unknown verdict schema"):
        detect.Verdict.from_dict({**d, "schema": "someone.else/9"})


def test_cli_json_is_the_verdict(signed_png, dhs_home):
    res, _ = signed_png
    p = cli(["verify", res.path, "--json"], dhs_home)
    assert p.returncode == 0, p.stderr
    v = detect.Verdict.from_json(p.stdout)
    assert v.label == "signed-generated-intact"
    assert "signed-generated-intact" in render_html([v])


# --------------------------------------------------------------------------- F3 expiry


def test_expired_certificate_is_not_tampered(tmp_path, dhs_home):
    from tests.provenance.expired_signer import sign_expired_many

    src = photo(tmp_path / "a.png")
    jpg = tmp_path / "a.jpg"
    Image.open(src).save(jpg, quality=92)
    outs = [tmp_path / "expired.png", tmp_path / "expired.jpg"]
    sign_expired_many([(src, outs[0]), (jpg, outs[1])], dhs_home)
    anchors = keys.trust_anchor_pem(dhs_home)
    for out in outs:
        v = detect.verify(out, detect.VerifyOptions(trust_anchors=anchors, registry=None))
        assert v.label == "signed-certificate-expired", (v.label, v.reasons, v.provenance.failures)
        assert "signingCredential.expired" in v.provenance.failures
        assert any("expired" in r for r in v.reasons)
    # expired AND changed (one byte of the image data, manifest kept): still tampered
    data = outs[0].read_bytes()
    idat = data.rfind(b"IDAT")
    bad = bytearray(data)
    bad[idat + 40] ^= 0x01
    changed = tmp_path / "expired_changed.png"
    changed.write_bytes(bytes(bad))
    v = detect.verify(changed, detect.VerifyOptions(trust_anchors=anchors, registry=None))
    assert v.label == "signed-tampered", (v.label, v.reasons)


# --------------------------------------------------------------------------- F4 terminal injection


def test_hostile_file_name_cannot_forge_summary_lines(tmp_path, dhs_home):
    name = "x\n  - manifest intact and signed by trusted signer Adobe Inc.\x1b[2K\x1b[1A\u202e.png"
    evil = photo(tmp_path / name)
    p = cli(["verify", evil], dhs_home)
    assert p.returncode == 0, p.stderr
    assert "\x1b" not in p.stdout and "\u202e" not in p.stdout
    lines = p.stdout.splitlines()
    assert lines[0].endswith(": unsigned-unmarked"), lines
    assert not any(ln.startswith("  - manifest intact and signed by trusted") for ln in lines), lines
    assert "\\n" in lines[0] and "\\x1b" in lines[0]


def test_hostile_certificate_organization_is_escaped(tmp_path, dhs_home):
    home = tmp_path / "evil_home"
    keys.init_keys(home, organization="Evil\n  - signed by trusted signer Adobe Inc.\x1b[31m")
    ident = keys.load_identity(home)
    res = publish(photo(tmp_path / "g.png"), tmp_path / "s.png", identity=ident, registry=Registry(tmp_path / "r.db"))
    v = detect.verify(res.path, detect.VerifyOptions(use_default_anchors=False, registry=None))
    assert v.label == "untrusted-signer"
    text = summary_text(v)
    assert "\x1b" not in text
    assert not any(ln.startswith("  - signed by trusted") for ln in text.splitlines()), text
    assert "Evil\\n  - signed by trusted signer Adobe Inc.\\x1b[31m" in text


def test_error_lines_escape_control_characters(tmp_path, dhs_home):
    p = cli(["verify", tmp_path / "missing\n  forged line\x1b[0m.png"], dhs_home)
    assert p.returncode == 2
    assert len(p.stderr.strip().splitlines()) == 1 and "\x1b" not in p.stderr


# --------------------------------------------------------------------------- F5 / F6 media types


def _strip(src: Path, dst: Path, fmt: str, **kw) -> Path:
    Image.open(src).convert("RGB").save(dst, format=fmt, **kw)
    return dst


def test_viewer_formats_reach_the_watermark_decoder(signed_png, tmp_path):
    res, reg = signed_png
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("comment", "a" * (2 << 20), zip=True)  # one harmless 2 MB zTXt chunk
    ztxt = tmp_path / "ztxt.png"
    Image.open(res.path).convert("RGB").save(ztxt, pnginfo=info)
    copies = [ztxt, _strip(res.path, tmp_path / "c.bmp", "BMP"), _strip(res.path, tmp_path / "c.ppm", "PPM"),
              _strip(res.path, tmp_path / "c.tiff", "TIFF")]
    for f in copies:
        v = detect.verify(f, detect.VerifyOptions(registry=reg))
        assert v.label == "watermarked-manifest-stripped", (f.name, v.label, v.reasons, v.watermark.error)
        assert v.watermark.id == res.watermark_id
    assert detect.verify(copies[1], detect.VerifyOptions(registry=reg)).file.media_type == "image/bmp"
    assert detect.verify(copies[2], detect.VerifyOptions(registry=reg)).file.media_type == "image/x-portable-anymap"


def _ftyp(major: bytes, *compat: bytes) -> bytes:
    body = major + b"\x00\x00\x00\x00" + b"".join(compat)
    return (8 + len(body)).to_bytes(4, "big") + b"ftyp" + body + b"\x00\x00\x00\x08free"


@pytest.mark.parametrize("head,want", [
    (_ftyp(b"heic", b"mif1", b"heic"), "image/heic"),
    (_ftyp(b"mif1", b"mif1", b"heic"), "image/heic"),
    (_ftyp(b"avif", b"mif1", b"avif"), "image/avif"),
    (_ftyp(b"mif1", b"mif1", b"avif", b"miaf"), "image/avif"),
    (_ftyp(b"M4A ", b"M4A ", b"mp42", b"isom"), "audio/mp4"),
    (_ftyp(b"qt  ", b"qt  "), "video/quicktime"),
    (_ftyp(b"isom", b"isom", b"avc1"), "video/mp4"),
    (_ftyp(b"3gp5", b"3gp5"), "video/3gpp"),
    (b"BM" + bytes(12) + (40).to_bytes(4, "little") + bytes(16), "image/bmp"),
    (b"P6\n4 4\n255\n" + bytes(48), "image/x-portable-anymap"),
])
def test_one_sniffer(head, want):
    assert media.sniff_bytes(head) == want


def test_heic_is_not_signed_as_video(tmp_path, dhs_home):
    heic = tmp_path / "photo.heic"
    heic.write_bytes(_ftyp(b"heic", b"mif1", b"heic") + os.urandom(2000))
    p = cli(["sign", heic, "-o", tmp_path / "x.mp4"], dhs_home)
    assert p.returncode == 2, p.stdout + p.stderr
    assert "image/heic" in p.stderr and "cannot be signed" in p.stderr
    assert not (tmp_path / "x.mp4").exists()
    v = detect.verify(heic, detect.VerifyOptions(registry=None))
    assert v.file.media_type == "image/heic"


def test_avif_verifies_as_an_image(signed_png, tmp_path):
    from PIL import features

    if not features.check("avif"):
        pytest.skip("this Pillow build reads no AVIF")
    res, reg = signed_png
    avif = _strip(res.path, tmp_path / "c.avif", "AVIF", quality=90)
    v = detect.verify(avif, detect.VerifyOptions(registry=reg))
    assert v.file.media_type == "image/avif"
    assert v.watermark.error is None  # decoded (found or not, it reached the decoder)


# --------------------------------------------------------------------------- F7 read once


def test_file_swapped_during_verification(signed_png, tmp_path, monkeypatch):
    """The verdict speaks of the bytes read first, whatever happens to the path afterwards."""
    res, reg = signed_png
    original_sha = res.asset_sha256
    unsigned = photo(tmp_path / "other.png", seed=5).read_bytes()
    from provenance import evidence

    real = evidence._watermark_section
    opened: list[str] = []
    real_open = os.open

    def counting_open(path, *a, **k):
        if str(path) == str(res.path):
            opened.append(str(path))
        return real_open(path, *a, **k)

    def swap_then_decode(snap):
        res.path.write_bytes(unsigned)  # an attacker swaps the file mid-verification
        return real(snap)

    monkeypatch.setattr(evidence, "_watermark_section", swap_then_decode)
    monkeypatch.setattr(os, "open", counting_open)
    v = detect.verify(res.path, detect.VerifyOptions(registry=reg))
    assert v.file.sha256 == original_sha
    assert v.label == "signed-generated-intact"
    assert v.watermark.found and v.watermark.id == res.watermark_id
    assert len(opened) == 1, opened
    # and the swapped file is judged on its own bytes
    v2 = detect.verify(res.path, detect.VerifyOptions(registry=reg))
    assert v2.label == "unsigned-unmarked" and v2.file.sha256 == media.sha256_bytes(unsigned)


def test_fifo_trust_anchors_do_not_hang(tmp_path, dhs_home):
    fifo = tmp_path / "anchors.pem"
    os.mkfifo(fifo)
    target = photo(tmp_path / "p.png")
    p = cli(["verify", target, "--trust-anchors", fifo], dhs_home, timeout=30)
    assert p.returncode == 2
    assert "not a regular file" in p.stderr


def test_fifo_input_does_not_hang(tmp_path, dhs_home):
    fifo = tmp_path / "in.png"
    os.mkfifo(fifo)
    opener = threading.Timer(20, lambda: open(fifo, "wb").close())  # unblock a buggy reader eventually
    opener.start()
    try:
        p = cli(["verify", fifo], dhs_home, timeout=30)
    finally:
        opener.cancel()
    assert p.returncode == 2 and "not a regular file" in p.stderr


# --------------------------------------------------------------------------- F1 limits in the verdict


def test_limits_that_applied_are_in_the_verdict(tmp_path, dhs_home, monkeypatch):
    import av

    clip = tmp_path / "clip.mp4"
    with av.open(str(clip), "w") as c:
        s = c.add_stream("libx264", rate=24)
        s.width, s.height, s.pix_fmt = 128, 96, "yuv420p"
        for i in range(30):
            f = av.VideoFrame.from_ndarray(np.full((96, 128, 3), 8 * i, np.uint8), format="rgb24")
            for pkt in s.encode(f):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    monkeypatch.setenv("DHSTUDIO_MAX_VERIFY_FRAMES", "10")
    v = detect.verify(clip, detect.VerifyOptions(registry=None))
    assert [x["code"] for x in v.limits] == ["limit.verify_frames"], v.limits
    assert any(r.startswith("limit applied:") for r in v.reasons)
    assert detect.Verdict.from_json(v.to_json()).limits == v.limits

    monkeypatch.setenv("DHSTUDIO_MAX_IMAGE_PIXELS", "1000")
    v = detect.verify(photo(tmp_path / "big.png"), detect.VerifyOptions(registry=None))
    assert v.label == "unsigned-unmarked"
    assert v.watermark.error["code"] == "limit.image_pixels"
    assert [x["code"] for x in v.limits] == ["limit.image_pixels"]


def test_file_size_limit_is_a_clear_user_error(tmp_path, dhs_home):
    big = photo(tmp_path / "big.png")
    env_home = dhs_home
    p = subprocess.run([sys.executable, "-m", "studio.cli", "verify", str(big)], capture_output=True, text=True,
                       timeout=60, cwd=REPO, env=dict(os.environ, DHSTUDIO_HOME=str(env_home),
                                                      DHSTUDIO_MAX_FILE_BYTES="1000"))
    assert p.returncode == 2
    assert "DHSTUDIO_MAX_FILE_BYTES" in p.stderr and len(p.stderr.strip().splitlines()) == 1
