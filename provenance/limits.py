"""Resource limits of the watermark decoders and embedders (one place, documented, overridable).

A hostile file can be tiny on disk and huge once decoded: a 200 KB MP4 of 8192 x 8192 frames, a
420 KB PNG of 12000 x 12000 pixels, an MP4 of 100,000 tiny frames. The decoders and embedders in
``provenance.watermark`` check these limits *before* they decode (declared sizes and frame counts)
and again while they decode (actual sizes, frames counted), so memory and time stay bounded.

Every limit has a default (:data:`DEFAULT_LIMITS`) and an environment variable that overrides it,
``DHSTUDIO_`` + the field name in capitals (``max_image_pixels`` -> ``DHSTUDIO_MAX_IMAGE_PIXELS``),
read by :func:`current_limits` (a positive integer; ``_`` separators allowed). Functions that take
``limits=None`` use ``current_limits()`` at call time.

How a limit shows up:

* a refusal is an :class:`~provenance.errors.InputError` whose ``code`` is ``limit.<name>`` and
  whose message is one line naming the limit and its environment variable (``verify`` reports it
  as "watermark not checked: ...");
* a limit that only shortened the work (verification read the first N frames of a longer video)
  is listed in ``WatermarkResult.detail["limits"]`` as ``{"code": "limit.<name>", "message": ...}``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields

from .errors import InputError

ENV_PREFIX = "DHSTUDIO_"


@dataclass(frozen=True)
class Limits:
    """Resource limits of the watermark code paths (see the module docstring)."""

    max_file_bytes: int = 2 << 30
    """Largest file ``verify`` examines (2 GiB). ``verify`` reads the file once, into memory, and
    works on those bytes; a larger file is refused with ``limit.file_bytes`` (exit 2 in the CLI)
    before anything is read."""

    max_image_pixels: int = 150_000_000
    """Largest image (width x height, declared in its header) the watermark *decoder* (verify)
    reads, about 12,250 x 12,250 or a 150-megapixel camera. Larger images are refused with
    ``limit.image_pixels`` before any pixel is decoded. Decoding holds the 8-bit pixels (<= 4 bytes
    per pixel) plus small strips, so this bounds verify's memory to about 0.6 GB for images.
    Pillow's own decompression-bomb error (above ~179 megapixels) is reported with this code too."""

    max_embed_pixels: int = 100_000_000
    """Largest image the watermark *embedder* (sign) marks, e.g. 12,000 x 8,333. Larger images are
    refused with ``limit.image_pixels``. Embedding holds the source pixels, the output pixels and
    the output image for the encoder (about 7-10 bytes per pixel) plus float32 strips."""

    max_frame_pixels: int = 35_651_584
    """Largest video frame (width x height) decoded, for verify and sign: 8192 x 4352, the largest
    frame that H.264 and HEVC level 6.2 allow (8K UHD is 7680 x 4320). Larger frames are refused
    with ``limit.frame_pixels`` before decoding (from the stream header) and while decoding (every
    decoded frame is checked)."""

    max_verify_frames: int = 1800
    """Video verification decodes at most this many frames from the start (1 minute at 30 fps); the
    watermark id is the same on every frame. When the video is longer, the result lists
    ``limit.verify_frames`` in ``detail["limits"]``."""

    max_verify_pixels: int = 4_000_000_000
    """Video verification decodes at most this many pixels in all (about 1900 frames of 1080p, 115
    frames of 8K): caps the time a verification of large frames takes. Reported, like the frame
    cap, as ``limit.verify_frames``."""

    max_detect_decode_frames: int = 108_000
    """Frames the content check (``detect.video``) decodes at most in one pass over a video: 1 hour
    at 30 fps. It samples by time and seeks between samples, so this only binds on a stream whose
    keyframes are too far apart for seeking to help; the result then covers the video up to there
    and lists ``limit.decode_frames``."""

    max_sign_frames: int = 36_000
    """Longest video (in frames) the watermark embedder marks: 20 minutes at 30 fps. Checked from
    the container's frame count or duration x frame rate before work starts, and while decoding;
    refused with ``limit.sign_frames``."""

    max_decoder_threads: int = 4
    """Video decoder threads (never more than the machine's cores). Every frame thread holds frames
    of its own, so this also bounds the decoder's memory."""

    max_png_chunks: int = 100_000
    """Most PNG chunks read when the watermark code parses a PNG itself (it drops ancillary
    chunks, text and ICC included, before handing the image data to Pillow). More chunks are
    refused with ``limit.png_chunks``."""

    max_icc_bytes: int = 16 << 20
    """Largest ICC profile (decompressed) that signing copies from a PNG into the marked output;
    a larger one is refused with ``limit.icc_bytes`` (real profiles are at most a few MB)."""

    def env_var(self, name: str) -> str:
        """The environment variable that overrides field ``name``."""
        return ENV_PREFIX + name.upper()


DEFAULT_LIMITS = Limits()


def current_limits() -> Limits:
    """:data:`DEFAULT_LIMITS` with every ``DHSTUDIO_MAX_...`` environment variable applied.

    A value that is not a positive integer raises InputError ``config.invalid`` (one line).
    """
    over = {}
    for f in fields(Limits):
        var = ENV_PREFIX + f.name.upper()
        v = os.environ.get(var)
        if v is None or not v.strip():
            continue
        try:
            n = int(v.strip().replace("_", ""))
        except ValueError:
            n = 0
        if n <= 0:
            raise InputError(f"{var} must be a positive integer, got {v!r}", code="config.invalid")
        over[f.name] = n
    return Limits(**over) if over else DEFAULT_LIMITS


def resolve(limits: Limits | None) -> Limits:
    """``limits`` itself, or :func:`current_limits` when it is None."""
    return current_limits() if limits is None else limits


def note(code: str, message: str) -> dict:
    """A ``detail["limits"]`` entry."""
    return {"code": code, "message": message}


def mp(pixels: int) -> str:
    """Pixels in a short human form: '35.7 megapixels', '4.0 gigapixels'."""
    if pixels >= 1_000_000_000:
        return f"{pixels / 1e9:.1f} gigapixels"
    return f"{pixels / 1e6:.1f} megapixels"
