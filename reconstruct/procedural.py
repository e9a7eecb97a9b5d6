"""Procedural stand-in generator: images and short videos made from a seed.

Used by the demo and the tests until the body and head generators land. The
scenes mix smooth gradients, flat areas, hard edges, fine texture and a
stylised head-and-shoulders figure, so they exercise the watermark on every
kind of content. Deterministic by seed; no downloads.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np


def _value_noise(h: int, w: int, cells: int, rng: np.random.Generator) -> np.ndarray:
    """Smooth noise in [0, 1] of shape (h, w): bilinear upsampling of a random grid."""
    gh, gw = cells + 1, max(2, int(round(cells * w / h)) + 1)
    grid = rng.random((gh, gw))
    y = np.linspace(0, gh - 1.001, h)
    x = np.linspace(0, gw - 1.001, w)
    y0, x0 = y.astype(int), x.astype(int)
    fy, fx = (y - y0)[:, None], (x - x0)[None, :]
    fy, fx = fy * fy * (3 - 2 * fy), fx * fx * (3 - 2 * fx)
    a = grid[y0][:, x0]
    b = grid[y0][:, x0 + 1]
    c = grid[y0 + 1][:, x0]
    d = grid[y0 + 1][:, x0 + 1]
    return (a * (1 - fx) + b * fx) * (1 - fy) + (c * (1 - fx) + d * fx) * fy


def scene(h: int = 1000, w: int = 1600, seed: int = 0, t: float = 0.0) -> np.ndarray:
    """An RGB uint8 scene (h, w, 3): sky, sun, hills, textured ground, a figure.

    ``t`` in seconds animates the sun, clouds and the figure (for video).
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    u, v = xx / w, yy / h
    sky_top = rng.uniform([0.15, 0.3, 0.6], [0.3, 0.5, 0.9])
    sky_bot = rng.uniform([0.7, 0.75, 0.8], [0.95, 0.9, 0.95])
    img = sky_top[None, None, :] * (1 - v[..., None]) + sky_bot[None, None, :] * v[..., None]
    # clouds
    clouds = _value_noise(h, w, 6, rng)
    shift = int(t * w * 0.05) % w
    clouds = np.roll(clouds, shift, axis=1)
    cmask = np.clip((clouds - 0.55) * 4, 0, 1) * (v < 0.55)
    img = img * (1 - cmask[..., None] * 0.8) + cmask[..., None] * 0.8
    # sun
    sx, sy = 0.75 + 0.1 * np.sin(t * 0.5), 0.2 + 0.02 * np.cos(t)
    r = np.hypot((u - sx) * w / h, v - sy)
    sun = np.clip(1 - r / 0.07, 0, 1) ** 0.5
    img = img * (1 - sun[..., None]) + np.array([1.0, 0.95, 0.7]) * sun[..., None]
    # hills (flat colour areas with hard edges)
    for k in range(3):
        base = 0.55 + 0.1 * k
        ridge = base + 0.05 * np.sin(u[0] * (4 + 3 * k) * np.pi + rng.uniform(0, 6)) + 0.03 * (_value_noise(1, w, 8, rng)[0] - 0.5)
        col = rng.uniform([0.1, 0.3, 0.1], [0.4, 0.6, 0.3]) * (1 - 0.15 * k)
        m = v > ridge[None, :]
        img[m] = col
    # textured ground (fine grass-like texture)
    ground = v > 0.82
    tex = rng.random((h, w)) * 0.25 + _value_noise(h, w, 40, rng) * 0.25
    img[ground] = np.stack([0.3 + tex, 0.45 + tex, 0.2 + 0.5 * tex], -1)[ground]
    # a stylised head-and-shoulders figure
    cx = 0.3 + 0.02 * np.sin(t * 2)
    head = ((u - cx) * w / h) ** 2 / 0.008 + (v - 0.5) ** 2 / 0.014 < 1
    body = (((u - cx) * w / h) ** 2 / 0.03 + (v - 0.85) ** 2 / 0.05 < 1) & (v > 0.64)
    skin = np.array([0.85, 0.66, 0.55]) * (0.9 + 0.2 * _value_noise(h, w, 30, rng))[..., None]
    img[head] = skin[head]
    shirt = np.array(rng.uniform([0.2, 0.1, 0.3], [0.8, 0.5, 0.9]))
    stripes = (np.sin(xx * 0.25) > 0)[..., None] * 0.15
    img[body] = (shirt[None, None, :] + stripes)[body]
    eye_y = 0.48
    for ex in (-0.025, 0.025):
        eye = ((u - cx - ex) * w / h) ** 2 + (v - eye_y) ** 2 < 0.00012
        img[eye] = 0.1
    mouth = (np.abs((u - cx) * w / h) < 0.03) & (np.abs(v - 0.56 - 0.004 * np.sin(t * 6)) < 0.004)
    img[mouth] = [0.5, 0.15, 0.15]
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def write_image(path: Path, h: int = 1000, w: int = 1600, seed: int = 0) -> Path:
    from PIL import Image

    Image.fromarray(scene(h, w, seed)).save(path)
    return path


def write_video(path: Path, *, h: int = 1080, w: int = 1920, seconds: float = 3.0, fps: int = 24,
                seed: int = 0, crf: int = 18) -> Path:
    """An H.264 MP4 (yuv420p) of the animated scene."""
    import av

    n = int(round(seconds * fps))
    pan = max(8, n * 3)
    # One render of a wider canvas; the camera pans across it (cheap per frame).
    canvas = scene(h, w + pan, seed, 0.0)
    with av.open(str(path), "w") as out:
        st = out.add_stream("libx264", rate=Fraction(fps, 1))
        st.width, st.height, st.pix_fmt = w, h, "yuv420p"
        st.options = {"crf": str(crf), "preset": "veryfast"}
        for i in range(n):
            x0 = min(pan, i * 3)
            frame = np.ascontiguousarray(canvas[:, x0:x0 + w])
            vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
            for pkt in st.encode(vf):
                out.mux(pkt)
        for pkt in st.encode():
            out.mux(pkt)
    return path
