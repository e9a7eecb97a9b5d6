"""Image watermark: round trip, attacks, unmarked images, API contract."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance
from scipy import ndimage

from provenance.errors import InputError, WatermarkError
from provenance.watermark.image import (ALGORITHM, FALSE_POSITIVE_BOUND, ID_BITS, WatermarkResult, decode_file,
                                        decode_image, embed_file, embed_image, psnr)

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
FIXTURES = SHARED / "c2pa_fixtures"
needs_shared = pytest.mark.skipif(not FIXTURES.is_dir(), reason=f"shared data not found at {SHARED}")


def scene(w: int, h: int, seed: int) -> np.ndarray:
    """Procedural test scene: gradient, flat patches, a texture band, shapes and mild noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    u, v = xx / w, yy / h
    img = np.stack([40 + 150 * u, 60 + 120 * v, 200 - 120 * u], -1)
    band = (v > 0.55) & (v < 0.8)
    img[band] += (25 * np.sin(2 * np.pi * (18 * u + 9 * v)) * np.cos(2 * np.pi * 23 * v))[band][:, None]
    for _ in range(8):
        cx, cy, r = rng.uniform(0, 1), rng.uniform(0, 0.5), rng.uniform(0.03, 0.12)
        m = ((u - cx) * w) ** 2 + ((v - cy) * h) ** 2 < (r * w) ** 2
        img[m] = rng.uniform(20, 235, 3)
    img += rng.normal(0, 2.0, img.shape)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def codec(rgb, fmt, **kw):
    b = io.BytesIO()
    Image.fromarray(rgb).save(b, fmt, **kw)
    b.seek(0)
    return np.asarray(Image.open(b).convert("RGB"))


def resize(rgb, w, h):
    im = Image.fromarray(rgb)
    return np.asarray(im.resize((w, h), Image.BICUBIC if w > im.size[0] else Image.BOX))


def _crop_centre(a):
    h, w = a.shape[:2]
    k = np.sqrt(0.9)
    ch, cw = round(h * k), round(w * k)
    return a[(h - ch) // 2:(h - ch) // 2 + ch, (w - cw) // 2:(w - cw) // 2 + cw]


def _long1080_q75(a):
    h, w = a.shape[:2]
    f = 1080 / max(h, w)
    return codec(resize(a, round(w * f), round(h * f)), "JPEG", quality=75)


ATTACKS = {
    "jpeg_q50": lambda a: codec(a, "JPEG", quality=50),
    "resize_x0.5": lambda a: resize(a, round(a.shape[1] / 2), round(a.shape[0] / 2)),
    "long1080_jpeg_q75": _long1080_q75,
    "crop10_centre": _crop_centre,
    "crop10_left": lambda a: a[:, round(0.1 * a.shape[1]):],
    "crop10_top": lambda a: a[round(0.1 * a.shape[0]):],
    "brightness+20": lambda a: np.asarray(ImageEnhance.Brightness(Image.fromarray(a)).enhance(1.2)),
    "brightness-20": lambda a: np.asarray(ImageEnhance.Brightness(Image.fromarray(a)).enhance(0.8)),
    "contrast+20": lambda a: np.asarray(ImageEnhance.Contrast(Image.fromarray(a)).enhance(1.2)),
    "contrast-20": lambda a: np.asarray(ImageEnhance.Contrast(Image.fromarray(a)).enhance(0.8)),
    "blur_sigma1": lambda a: np.clip(ndimage.gaussian_filter(a.astype(np.float32), (1, 1, 0)) + 0.5, 0, 255).astype(np.uint8),
    "noise_0.02": lambda a: np.clip(a + np.random.default_rng(3).normal(0, 5.1, a.shape) + 0.5, 0, 255).astype(np.uint8),
    "webp_q80": lambda a: codec(a, "WEBP", quality=80),
}


def _images():
    imgs = {"scene_640x480": scene(640, 480, 1), "scene_1280x720": scene(1280, 720, 2)}
    if FIXTURES.is_dir():
        imgs["photo_CA"] = np.asarray(Image.open(FIXTURES / "CA.jpg").convert("RGB"))
        imgs["photo_sample1_webp"] = np.asarray(Image.open(FIXTURES / "sample1.webp").convert("RGB"))
    return imgs


@pytest.fixture(scope="module")
def marked():
    out = {}
    for i, (name, rgb) in enumerate(_images().items()):
        wm_id = (0x5A5A5A5A5A5A * (i + 3)) % (1 << ID_BITS)
        out[name] = (rgb, embed_image(rgb, wm_id), wm_id)
    return out


def test_round_trip_and_psnr(marked):
    for name, (rgb, m, wm_id) in marked.items():
        assert m.shape == rgb.shape and m.dtype == np.uint8
        assert psnr(rgb, m) >= 40.0, name
        r = decode_image(m)
        assert r.found and r.id == wm_id, (name, r)
        assert 0.0 < r.confidence <= 1.0 and r.bit_errors is not None
        # at most 64 CRC-checked words on the first path (8 candidates x 2 readers x 4 list paths),
        # 24 on the geometric one (3 hypotheses x 1 shift x 2 readers x 4 paths)
        assert r.false_positive_bound == FALSE_POSITIVE_BOUND == (64 + 24) * 2.0 ** -32
        json.dumps(r.to_dict())
        assert r.to_dict()["algorithm"] == ALGORITHM


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_attack(marked, attack):
    fails = []
    for name, (_, m, wm_id) in marked.items():
        r = decode_image(ATTACKS[attack](m))
        if not (r.found and r.id == wm_id):
            fails.append((name, r.detail))
        assert not (r.found and r.id != wm_id), "a wrong id passed the CRC"
    assert not fails, fails


@needs_shared
def test_faces_and_body_round_trip():
    faces = SHARED / "faces_real" / "images"
    names = sorted(os.listdir(faces))[:400:100] if faces.is_dir() else []
    paths = [faces / n for n in names] + [SHARED / "body_photos" / "ryota.png"]
    for i, p in enumerate(paths):
        if not p.is_file():
            continue
        rgb = np.asarray(Image.open(p).convert("RGB"))
        if min(rgb.shape[:2]) < 64:
            continue
        m = embed_image(rgb, 1000 + i)
        assert psnr(rgb, m) >= 40.0
        r = decode_image(codec(m, "JPEG", quality=75))
        assert r.found and r.id == 1000 + i, (p.name, r.detail)


def test_unmarked_random_crops_not_detected():
    rng = np.random.default_rng(2026)
    bases = [scene(800, 600, 11), scene(600, 800, 12)]
    if FIXTURES.is_dir():
        bases += [np.asarray(Image.open(FIXTURES / n).convert("RGB")) for n in ("C.jpg", "ocsp.jpg", "cloudx.jpg")]
    hits = []
    for k in range(240):
        b = bases[k % len(bases)]
        h, w = b.shape[:2]
        ch, cw = int(rng.integers(64, min(h, 400) + 1)), int(rng.integers(64, min(w, 400) + 1))
        y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        crop = b[y0:y0 + ch, x0:x0 + cw]
        if k % 3 == 0:
            crop = codec(crop, "JPEG", quality=int(rng.integers(40, 95)))
        r = decode_image(np.ascontiguousarray(crop))
        if r.found:
            hits.append((k, r.id))
    flat = decode_image(np.full((300, 400, 3), 128, np.uint8))
    noise = decode_image(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8))
    assert not hits and not flat.found and not noise.found


def test_wrong_key_not_detected(marked):
    _, m, _ = marked["scene_640x480"]
    assert not decode_image(m, key=b"another key").found


def test_invalid_ids():
    rgb = scene(128, 128, 0)
    for bad in (-1, 1 << ID_BITS, 2 ** 60, 1.5, "7", True):
        with pytest.raises(ValueError):
            embed_image(rgb, bad)
    embed_image(rgb, 0)
    embed_image(rgb, (1 << ID_BITS) - 1)


def test_extreme_ids_round_trip():
    rgb = scene(512, 384, 4)
    for wm_id in (0, (1 << ID_BITS) - 1):
        assert decode_image(embed_image(rgb, wm_id)).id == wm_id


def test_tiny_images():
    with pytest.raises(WatermarkError):
        embed_image(np.zeros((63, 200, 3), np.uint8), 1)
    r = decode_image(np.zeros((40, 40, 3), np.uint8))
    assert not r.found and "too small" in r.detail["reason"]


def test_gray_and_rgba_inputs():
    rgb = scene(400, 300, 5)
    gray = np.asarray(Image.fromarray(rgb).convert("L"))
    mg = embed_image(gray, 77)
    assert mg.shape == gray.shape and decode_image(mg).id == 77
    rgba = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 200, np.uint8)], 2)
    ma = embed_image(rgba, 78)
    assert ma.shape == rgba.shape and np.array_equal(ma[..., 3], rgba[..., 3])
    assert decode_image(ma).id == 78
    with pytest.raises(WatermarkError):
        decode_image(np.zeros((100, 100, 3), np.float32))


@pytest.mark.parametrize("fmt,ext", [("JPEG", ".jpg"), ("PNG", ".png"), ("WEBP", ".webp")])
def test_files(tmp_path, fmt, ext):
    rgb = scene(900, 600, 6)
    src = tmp_path / f"in{ext}"
    Image.fromarray(rgb).save(src, fmt, **({"quality": 92} if fmt == "JPEG" else {}))
    dst = tmp_path / f"out{ext}"
    embed_file(src, dst, 4242)
    with Image.open(dst) as im:
        assert im.format == fmt and im.size == (900, 600)
        out = np.asarray(im.convert("RGB"))
    src_rgb = np.asarray(Image.open(src).convert("RGB"))
    assert psnr(src_rgb, out) >= 40.0
    if fmt in ("PNG", "WEBP"):  # lossless: exactly what embed_image returns
        assert np.array_equal(out, embed_image(src_rgb, 4242))
    assert decode_file(dst).id == 4242
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".wm-")] == []


def test_file_errors(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(InputError):
        decode_file(bad)
    with pytest.raises(InputError):
        embed_file(bad, tmp_path / "o.jpg", 1)
    with pytest.raises(InputError):
        decode_file(tmp_path / "missing.png")
    assert not (tmp_path / "o.jpg").exists()
    assert [p for p in tmp_path.iterdir() if p.name.startswith(".wm-")] == []


def test_result_dataclass():
    r = WatermarkResult(False, None, 0.0, None, FALSE_POSITIVE_BOUND, {"x": 1})
    assert r.to_dict()["found"] is False
