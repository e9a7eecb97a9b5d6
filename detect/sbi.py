"""Self-Blended Images (SBI): fake faces made from one real face, plus the crops and attacks the
detector is trained and evaluated with.

Written from the paper (K. Shiohara and T. Yamasaki, "Detecting Deepfakes with Self-Blended
Images", CVPR 2022), not from its code. A real face is copied into a *source* and a *target*; one
of the two gets a colour and a frequency jitter, the source gets a small geometric jitter, and the
source is blended into the target through a soft mask built from the face's landmarks. The result
carries the statistical traces of a face swap (blending boundary, colour and sharpness mismatch,
landmark mismatch) without any identity change, so a binary classifier trained on
real vs. self-blended learns those traces rather than one generator.

- :func:`self_blend` -- ``(image, landmarks68, rng) -> (fake, mask)``.
- :func:`boundary` -- the Face X-ray target ``4 * mask * (1 - mask)``.
- :func:`crop_face` -- a square face crop, with SBI's random margin at train time.
- :func:`jpeg`, :data:`ATTACKS`, :func:`apply_attack` -- the evaluation perturbations.

Shapes: images are ``(H, W, 3)`` uint8 RGB; landmarks are ``(N, 2)`` float ``(x, y)`` pixel
coordinates with the origin at the top-left corner of the top-left pixel (so a pixel's centre is at
``+0.5``), 68 points in the iBUG order for :func:`self_blend`.

Everything random comes from the ``rng`` argument (``numpy.random.Generator`` or an int seed):
the same seed gives the same bytes. numpy, scipy and Pillow only (no OpenCV, no torch).

Example::

    >>> rng = np.random.default_rng(0)
    >>> crop, lm = crop_face(image, landmarks68, size=256, margin=0.25, rng=rng)
    >>> fake, mask = self_blend(crop, lm, rng)
    >>> target = boundary(mask)           # Face X-ray style boundary map
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

__all__ = [
    "ATTACKS",
    "SBIConfig",
    "apply_attack",
    "attack_scale",
    "boundary",
    "crop_face",
    "face_mask",
    "jpeg",
    "self_blend",
]

# ----------------------------------------------------------------------------- checks / helpers


def _check_image(image, name: str = "image") -> np.ndarray:
    a = np.asarray(image)
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3 or a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"{name} must be an (H, W, 3) uint8 RGB array, got shape {a.shape} dtype {a.dtype}")
    return a


def _check_points(points, name: str, n: int | None = None) -> np.ndarray:
    p = np.asarray(points, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 2 or (n is not None and p.shape[0] != n) or p.shape[0] < 3:
        want = f"({n}, 2)" if n is not None else "(N, 2) with N >= 3"
        raise ValueError(f"{name} must be {want} (x, y) points, got shape {p.shape}")
    if not np.isfinite(p).all():
        raise ValueError(f"{name} has NaN or infinite coordinates")
    return p


def _rng(rng) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)):
        return np.random.default_rng(int(rng))
    raise TypeError(f"rng must be a numpy Generator or an int seed, got {type(rng).__name__}")


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


def _is_grey(a: np.ndarray) -> bool:
    return bool(np.array_equal(a[..., 0], a[..., 1]) and np.array_equal(a[..., 1], a[..., 2]))


# ----------------------------------------------------------------------------- config


@dataclass(frozen=True)
class SBIConfig:
    """Ranges of every random choice in :func:`self_blend` (defaults follow the paper where it gives
    them; sizes relative to the face are fractions of ``sqrt(width * height)`` of the landmarks'
    bounding box)."""

    p_jitter_source: float = 0.5
    """Probability that the colour/frequency jitter goes on the source (else on the target)."""
    p_color: float = 1.0
    """Probability of the colour jitter on the chosen copy."""
    hue_deg: float = 10.0
    """Hue rotation, uniform in +-hue_deg degrees (rotation of the YIQ chroma plane)."""
    saturation: tuple[float, float] = (0.8, 1.2)
    """Chroma scale range."""
    brightness: float = 0.1
    """Additive brightness, uniform in +-brightness (image in [0, 1])."""
    contrast: tuple[float, float] = (0.85, 1.15)
    """Contrast scale about the mean luminance."""
    rgb_shift: float = 20.0 / 255.0
    """Per-channel additive shift, uniform in +-rgb_shift (skipped on greyscale images, so a grey
    photo never gets a coloured face)."""
    p_freq: float = 1.0
    """Probability of the frequency jitter on the chosen copy: blur, down-up scaling or sharpening,
    one of them with equal odds."""
    blur_sigma: tuple[float, float] = (0.5, 1.5)
    """Gaussian blur sigma in pixels."""
    downscale: tuple[float, float] = (0.25, 0.5)
    """Down-up scaling factor (bilinear down, bilinear up)."""
    sharpen: tuple[float, float] = (0.3, 1.0)
    """Unsharp-mask amount (sigma 1 px)."""
    scale: tuple[float, float] = (0.95, 1.05)
    """Source scale, drawn separately for x and y, about the landmarks' centroid."""
    translate: float = 0.03
    """Source translation, uniform in +-translate of the image width / height."""
    p_forehead: float = 0.5
    """Probability of extending the hull over the forehead (68 points stop at the brows; the paper
    uses an 81-point model for this): the brow points are moved up by 10-35 % of the
    nose-bridge-to-chin distance."""
    p_deform: float = 0.5
    """Probability of a smooth radial deformation of the hull (landmark deformation)."""
    deform: float = 0.08
    """Largest radial change of the hull, as a fraction of its radius (first harmonic; the k-th
    harmonic gets deform / k)."""
    p_elastic: float = 0.5
    """Probability of a random elastic deformation of the mask."""
    elastic: float = 0.04
    """Elastic displacement amplitude, fraction of the face size."""
    morph: float = 0.05
    """Random erosion (< 0) or dilation (> 0) radius, uniform in +-morph of the face size."""
    blur: tuple[float, float] = (0.01, 0.05)
    """Gaussian sigma range of the mask blur, fraction of the face size."""
    p_inner: float = 0.5
    """Probability of the paper's two-stage smoothing: blur, zero everything below 1 (the soft edge
    moves inside the hull), blur again. Otherwise one blur."""
    blend_ratios: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0, 1.0, 1.0)
    """The mask is multiplied by one of these (uniform choice)."""


DEFAULT_CONFIG = SBIConfig()

# ----------------------------------------------------------------------------- source-target generator

_YIQ = np.array([[0.299, 0.587, 0.114],
                 [0.596, -0.274, -0.322],
                 [0.211, -0.523, 0.312]])
_YIQ_INV = np.linalg.inv(_YIQ)


def _color_jitter(x: np.ndarray, rng: np.random.Generator, cfg: SBIConfig, grey: bool) -> np.ndarray:
    """Hue rotation + saturation (one 3x3 matrix in YIQ), contrast, brightness, RGB shift."""
    th = np.deg2rad(rng.uniform(-cfg.hue_deg, cfg.hue_deg))
    s = rng.uniform(*cfg.saturation)
    c = rng.uniform(*cfg.contrast)
    b = rng.uniform(-cfg.brightness, cfg.brightness)
    shift = rng.uniform(-cfg.rgb_shift, cfg.rgb_shift, size=3)
    rot = np.array([[1.0, 0.0, 0.0],
                    [0.0, s * np.cos(th), -s * np.sin(th)],
                    [0.0, s * np.sin(th), s * np.cos(th)]])
    m = (_YIQ_INV @ rot @ _YIQ).astype(np.float32)
    y = x if grey else x @ m.T  # a grey image has no chroma to rotate or scale
    lum = float((x @ _YIQ[0].astype(np.float32)).mean())
    y = (y - lum) * c + lum + b
    if not grey:
        y = y + shift.astype(np.float32)
    return np.clip(y, 0.0, 1.0)


def _freq_jitter(x: np.ndarray, rng: np.random.Generator, cfg: SBIConfig) -> np.ndarray:
    kind = int(rng.integers(3))
    h, w = x.shape[:2]
    if kind == 0:  # blur
        sigma = rng.uniform(*cfg.blur_sigma)
        return ndimage.gaussian_filter(x, sigma=(sigma, sigma, 0), mode="reflect")
    if kind == 1:  # down-up scaling
        f = rng.uniform(*cfg.downscale)
        small = (max(1, round(w * f)), max(1, round(h * f)))
        im = Image.fromarray(_to_uint8(x))
        im = im.resize(small, Image.BILINEAR).resize((w, h), Image.BILINEAR)
        return np.asarray(im, dtype=np.float32) / 255.0
    amount = rng.uniform(*cfg.sharpen)  # sharpen (unsharp mask)
    soft = ndimage.gaussian_filter(x, sigma=(1.0, 1.0, 0), mode="reflect")
    return np.clip(x + amount * (x - soft), 0.0, 1.0)


def _geometry_jitter(x: np.ndarray, center: np.ndarray, rng: np.random.Generator,
                     cfg: SBIConfig) -> np.ndarray:
    """Scale (separately in x and y) about ``center`` and translate; bilinear, edges repeated."""
    h, w = x.shape[:2]
    sx, sy = rng.uniform(*cfg.scale, size=2)
    tx = rng.uniform(-cfg.translate, cfg.translate) * w
    ty = rng.uniform(-cfg.translate, cfg.translate) * h
    # output point o -> input point (o - c - t) / s + c, in continuous pixel coordinates; the input
    # is padded by repeating its edges so nothing black comes in at the border
    p = int(np.ceil(max(h, w) * (cfg.translate + abs(max(cfg.scale) - 1) + abs(1 - min(cfg.scale))))) + 2
    cx, cy = center
    a = 1.0 / sx
    e = 1.0 / sy
    c = cx - (cx + tx) / sx + p
    f = cy - (cy + ty) / sy + p
    xp = np.pad(x, ((p, p), (p, p), (0, 0)), mode="edge")
    out = np.empty_like(x)
    for ch in range(x.shape[2]):
        im = Image.fromarray(np.ascontiguousarray(xp[..., ch]), mode="F")
        out[..., ch] = np.asarray(im.transform((w, h), Image.AFFINE, (a, 0.0, c, 0.0, e, f),
                                               resample=Image.BILINEAR))
    return out


# ----------------------------------------------------------------------------- mask generator


def _convex_hull(p: np.ndarray) -> np.ndarray:
    """Monotone-chain convex hull, counter-clockwise, no repeated end point."""
    pts = np.unique(p, axis=0)
    if len(pts) < 3:
        return pts

    def cross(o, a, b):
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower: list = []
    for q in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], q) <= 0:
            lower.pop()
        lower.append(q)
    upper: list = []
    for q in pts[::-1]:
        while len(upper) >= 2 and cross(upper[-2], upper[-1], q) <= 0:
            upper.pop()
        upper.append(q)
    return np.array(lower[:-1] + upper[:-1])


def _polygon_mask(poly: np.ndarray, h: int, w: int) -> np.ndarray:
    im = Image.new("L", (w, h), 0)
    if len(poly) >= 3:
        # PIL fills pixels whose index lies inside; shift so pixel centres (+0.5) are tested
        ImageDraw.Draw(im).polygon([(float(x) - 0.5, float(y) - 0.5) for x, y in poly], fill=255)
    return np.asarray(im) > 0


def _face_size(lm: np.ndarray) -> float:
    span = lm.max(axis=0) - lm.min(axis=0)
    return float(max(np.sqrt(max(span[0], 1.0) * max(span[1], 1.0)), 4.0))


def face_mask(shape: tuple[int, int], landmarks68, rng, config: SBIConfig | None = None) -> np.ndarray:
    """The SBI mask generator alone: a soft face mask, ``(H, W)`` float32 in [0, 1].

    Convex hull of the 68 landmarks (optionally over the forehead, optionally deformed: smooth
    random radial scaling of the hull vertices) -> filled polygon -> optional elastic deformation
    -> random erosion/dilation -> Gaussian edge blur (one stage, or the paper's blur / keep only
    the full-strength core / blur again) -> times a random blend ratio.
    """
    cfg = config or DEFAULT_CONFIG
    rng = _rng(rng)
    h, w = int(shape[0]), int(shape[1])
    lm = _check_points(landmarks68, "landmarks68", 68)
    size = _face_size(lm)

    pts = lm.copy()
    if rng.uniform() < cfg.p_forehead:
        up = lm[27] - lm[8]  # chin -> top of the nose bridge
        pts = np.vstack([pts, lm[17:27] + up * rng.uniform(0.10, 0.35)])
    hull = _convex_hull(pts)
    if rng.uniform() < cfg.p_deform and len(hull) >= 3:
        c = hull.mean(axis=0)
        d = hull - c
        ang = np.arctan2(d[:, 1], d[:, 0])
        r = np.ones(len(hull))
        for k in (1, 2, 3):
            r += rng.uniform(-cfg.deform, cfg.deform) / k * np.cos(k * ang + rng.uniform(0, 2 * np.pi))
        hull = c + d * r[:, None]
    m = _polygon_mask(hull, h, w).astype(np.float32)

    if rng.uniform() < cfg.p_elastic:
        # smooth random displacement: a coarse random grid, upsampled with cubic splines
        g = 6
        amp = cfg.elastic * size
        coarse = rng.uniform(-1.0, 1.0, size=(2, g, g)).astype(np.float32)
        dy, dx = (np.asarray(Image.fromarray(c, mode="F").resize((w, h), Image.BICUBIC)) * amp
                  for c in coarse)
        rr, cc = np.mgrid[0:h, 0:w].astype(np.float32)
        m = ndimage.map_coordinates(m, [rr + dy, cc + dx], order=1, mode="constant", cval=0.0)
        m = (m >= 0.5).astype(np.float32)

    radius = rng.uniform(-cfg.morph, cfg.morph) * size
    inside = m > 0.5
    if inside.any() and abs(radius) >= 0.5:
        if radius > 0:  # dilate: everything within `radius` of the mask
            m = (ndimage.distance_transform_edt(~inside) <= radius).astype(np.float32)
        else:  # erode: keep what is farther than |radius| from the outside
            eroded = ndimage.distance_transform_edt(inside) > -radius
            if eroded.any():
                m = eroded.astype(np.float32)

    s1 = rng.uniform(*cfg.blur) * size
    soft = ndimage.gaussian_filter(m, sigma=s1)
    if rng.uniform() < cfg.p_inner:
        core = np.where(soft >= 1.0 - 1e-3, 1.0, 0.0).astype(np.float32)
        s2 = rng.uniform(*cfg.blur) * size
        if core.any():
            soft = ndimage.gaussian_filter(core, sigma=s2)
    ratio = float(rng.choice(np.asarray(cfg.blend_ratios, dtype=np.float64)))
    return np.clip(soft * ratio, 0.0, 1.0).astype(np.float32)


# ----------------------------------------------------------------------------- SBI


def self_blend(image, landmarks68, rng, config: SBIConfig | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Make a self-blended fake from one real face.

    Args:
        image: ``(H, W, 3)`` uint8 RGB, usually a face crop (see :func:`crop_face`).
        landmarks68: ``(68, 2)`` float ``(x, y)`` iBUG-68 landmarks in ``image`` pixels.
        rng: ``numpy.random.Generator`` (or an int seed). Same seed, same output.
        config: ranges of the random choices (:class:`SBIConfig`).

    Returns:
        ``(fake, mask)``: ``fake`` ``(H, W, 3)`` uint8 = ``source * mask + target * (1 - mask)``;
        ``mask`` ``(H, W)`` float32 in [0, 1], the blend weight of the source (use
        :func:`boundary` for a Face X-ray target).
    """
    cfg = config or DEFAULT_CONFIG
    rng = _rng(rng)
    img = _check_image(image)
    lm = _check_points(landmarks68, "landmarks68", 68)
    grey = _is_grey(img)
    x = img.astype(np.float32) / 255.0

    # source-target generator
    src, tgt = x, x
    jitter_source = rng.uniform() < cfg.p_jitter_source
    other = src if jitter_source else tgt
    if rng.uniform() < cfg.p_color:
        other = _color_jitter(other, rng, cfg, grey)
    if rng.uniform() < cfg.p_freq:
        other = _freq_jitter(other, rng, cfg)
    if jitter_source:
        src = other
    else:
        tgt = other
    src = _geometry_jitter(src, lm.mean(axis=0), rng, cfg)

    # mask generator + blend
    mask = face_mask(img.shape[:2], lm, rng, cfg)
    fake = src * mask[..., None] + tgt * (1.0 - mask[..., None])
    return _to_uint8(fake), mask


def boundary(mask) -> np.ndarray:
    """Face X-ray blending boundary: ``4 * mask * (1 - mask)``, 1 where the blend is half-half and
    0 where it is pure source or pure target. Same shape as ``mask``, float32."""
    m = np.asarray(mask, dtype=np.float32)
    return 4.0 * m * (1.0 - m)


# ----------------------------------------------------------------------------- cropping


def crop_face(image, face, size: int = 256, margin: float = 0.25, rng=None, *, landmarks=None,
              pad: str = "constant") -> tuple[np.ndarray, np.ndarray | None]:
    """Crop a square around a face and resize it to ``size x size``.

    Args:
        image: ``(H, W, 3)`` uint8.
        face: a box ``(x0, y0, x1, y1)`` or landmarks ``(N, 2)`` (their bounding box is used, and
            they are returned in crop coordinates).
        size: output side in pixels.
        margin: added on every side, as a fraction of the box's longer side. The square's side is
            ``max(w, h) * (1 + 2 * margin)``, centred on the box.
        rng: None for a fixed crop (evaluation). A Generator (or seed) for SBI's train-time crop:
            the margin is drawn in ``[0.5, 1.5] * margin`` and the centre moves by up to half the
            drawn margin in x and y, so the box always stays inside the crop.
        landmarks: points to carry into crop coordinates when ``face`` is a box.
        pad: how to fill where the square leaves the image: ``"constant"`` (black), ``"edge"``
            or ``"reflect"`` (numpy.pad modes).

    Returns:
        ``(crop, points)``: ``crop`` ``(size, size, 3)`` uint8; ``points`` the landmarks (``face``
        when it is landmarks, else ``landmarks``) in crop pixels, or None.
    """
    img = _check_image(image)
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    if pad not in ("constant", "edge", "reflect"):
        raise ValueError(f"pad must be 'constant', 'edge' or 'reflect', got {pad!r}")
    f = np.asarray(face, dtype=np.float64)
    if f.shape == (4,):
        if not np.isfinite(f).all() or f[2] <= f[0] or f[3] <= f[1]:
            raise ValueError(f"box must be finite (x0, y0, x1, y1) with x1 > x0 and y1 > y0, got {f.tolist()}")
        x0, y0, x1, y1 = f
        pts = None if landmarks is None else _check_points(landmarks, "landmarks")
    else:
        pts = _check_points(f, "face (box or landmarks)")
        (x0, y0), (x1, y1) = pts.min(axis=0), pts.max(axis=0)
    bw, bh = max(x1 - x0, 1.0), max(y1 - y0, 1.0)
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    long_side = max(bw, bh)
    m = margin
    if rng is not None:
        g = _rng(rng)
        m = margin * g.uniform(0.5, 1.5)
        cx += g.uniform(-0.5, 0.5) * m * long_side
        cy += g.uniform(-0.5, 0.5) * m * long_side
    side = max(1, int(round(long_side * (1.0 + 2.0 * m))))
    sx, sy = int(round(cx - side / 2.0)), int(round(cy - side / 2.0))

    h, w = img.shape[:2]
    pl, pt_ = max(0, -sx), max(0, -sy)
    pr, pb = max(0, sx + side - w), max(0, sy + side - h)
    if pl or pt_ or pr or pb:
        padded = np.pad(img, ((pt_, pb), (pl, pr), (0, 0)), mode=pad)
    else:
        padded = img
    crop = padded[sy + pt_: sy + pt_ + side, sx + pl: sx + pl + side]
    if side != size:
        crop = np.asarray(Image.fromarray(crop).resize((size, size), Image.BILINEAR))
    else:
        crop = np.ascontiguousarray(crop)
    out_pts = None if pts is None else (pts - np.array([sx, sy], dtype=np.float64)) * (size / side)
    return crop, out_pts


# ----------------------------------------------------------------------------- attacks

ATTACKS = frozenset({"none", "jpeg90", "jpeg70", "jpeg50", "resize0.5", "social"})
"""Evaluation perturbations (:func:`apply_attack`):

- ``none``: the image as is.
- ``jpeg90`` / ``jpeg70`` / ``jpeg50``: one JPEG round trip at that quality (Pillow/libjpeg,
  4:2:0 chroma subsampling).
- ``resize0.5``: the whole image is downscaled by 0.5 (bicubic, antialiased) and *not* scaled back:
  evaluation then detects and crops the face in the smaller image, and the crop's resize to the
  model's input brings it back up. Landmarks found on the original image are multiplied by
  :func:`attack_scale`.
- ``social``: what a social platform does on upload: the long edge is brought down to 1080 px
  (bicubic, antialiased) when it is longer (never up), then JPEG quality 75, 4:2:0.
"""

SOCIAL_LONG_EDGE = 1080
SOCIAL_QUALITY = 75


def jpeg(image, quality: int) -> np.ndarray:
    """One JPEG encode/decode round trip in memory (Pillow, 4:2:0 subsampling). Same shape."""
    img = _check_image(image)
    if not 1 <= int(quality) <= 100:
        raise ValueError(f"JPEG quality must be in 1..100, got {quality}")
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=int(quality), subsampling=2)
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB"))


def _resize(img: np.ndarray, w: int, h: int) -> np.ndarray:
    return np.asarray(Image.fromarray(img).resize((max(1, w), max(1, h)), Image.BICUBIC))


def attack_scale(shape, name: str) -> float:
    """The factor an attack scales the image by (multiply landmark coordinates by it)."""
    if name not in ATTACKS:
        raise ValueError(f"unknown attack {name!r}; known: {sorted(ATTACKS)}")
    h, w = int(shape[0]), int(shape[1])
    if name == "resize0.5":
        return max(1, round(w * 0.5)) / w
    if name == "social" and max(h, w) > SOCIAL_LONG_EDGE:
        s = SOCIAL_LONG_EDGE / max(h, w)
        return max(1, round(w * s)) / w
    return 1.0


def apply_attack(image, name: str) -> np.ndarray:
    """Apply one of :data:`ATTACKS` (deterministic). ``resize0.5`` and a large ``social`` input
    return a smaller image (see :func:`attack_scale`); the others keep the shape."""
    img = _check_image(image)
    if name not in ATTACKS:
        raise ValueError(f"unknown attack {name!r}; known: {sorted(ATTACKS)}")
    h, w = img.shape[:2]
    if name == "none":
        return img.copy()
    if name.startswith("jpeg"):
        return jpeg(img, int(name[4:]))
    if name == "resize0.5":
        return _resize(img, round(w * 0.5), round(h * 0.5))
    # social
    if max(h, w) > SOCIAL_LONG_EDGE:
        s = SOCIAL_LONG_EDGE / max(h, w)
        img = _resize(img, round(w * s), round(h * s))
    return jpeg(img, SOCIAL_QUALITY)
