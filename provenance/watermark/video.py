"""Invisible video watermark: the image watermark on every frame's luma, H.264 MP4 out.

Embedding (:func:`embed_video`) decodes every frame with PyAV, adds the image watermark's luma
delta (see :mod:`provenance.watermark.image`; same key, same 48-bit id, informed per frame) to the
Y plane (scaled by 219/255 because the Y plane is limited range, so the RGB-equivalent PSNR is the
image target, 42 dB), and encodes H.264 yuv420p (libx264, ``crf``) into an MP4. Audio is copied
when the MP4 container accepts its codec, else re-encoded to AAC. The write is atomic.

Decoding (:func:`decode_video`) samples up to ``max_frames`` frames evenly over the video (over
its first ``Limits.max_verify_frames`` frames), averages their luma (the mark is static, content and
coding noise are not: averaging raises the SNR) and runs the image decoder's first path on the
average, then its geometric path (``_sync``: a reframed, mirrored, turned or stretched video: the
edit is the same on every frame, so the average keeps the template); when both fail it also tries
up to ``FALLBACK_FRAMES`` single frames with the first path. Decision rule: found only if a CRC-32
check passes; at most (1 + FALLBACK_FRAMES) x 64 + 24 CRC-checked words, so
P(found | unmarked video) <= 344 * 2**-32 ~= 8.0e-8. Trimming, re-encoding and rescaling (the grid
follows the long edge) do not matter to the decoder.

Bounded memory and time (limits in :mod:`provenance.limits`): each sampled frame is reduced at once
to the decoder's small intermediate image (long edge 512; frames beyond 4K UHD first scaled by
swscale to a long edge of 2048), and only the running sum and a few intermediates for the fallback
are kept; verification decodes at most ``max_verify_frames`` frames; frames over
``max_frame_pixels`` and (for signing) videos over ``max_sign_frames`` frames are refused with a
one-line ``limit.*`` InputError; embedding works on strips of each frame.

Shared with the video content check (``detect.video``): :func:`open_video`,
:func:`configure_decoder`, :func:`check_frame_pixels` (the one bounded way to open and decode a
video) and :class:`AudioPassthrough` (the input's audio carried into an MP4 being written).
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np

from .. import limits as _limits
from .. import media
from ..errors import InputError, OutputError, WatermarkError
from ..limits import Limits
from . import _core
from .image import DEFAULT_KEY, WORDS_GEOMETRIC, WORDS_PER_IMAGE, WatermarkResult, _check_id, _geometric, _result

FALLBACK_FRAMES = 4
VIDEO_FALSE_POSITIVE_BOUND = ((1 + FALLBACK_FRAMES) * WORDS_PER_IMAGE + WORDS_GEOMETRIC) * 2.0 ** -32
_Y_SCALE = 219.0 / 255.0
_COPY_AUDIO = {"aac", "mp3", "ac3", "eac3", "alac", "opus", "flac"}
_KEEP_INTERMEDIATES = 32  # per-frame intermediates kept for the single-frame fallback (thinned beyond)
# frames averaged by the decoder: a 3 s clip at 30 fps whole (more frames, less content and coding
# noise in the average; each costs one frame's reduction to the intermediate image)
DEFAULT_MAX_FRAMES = 96

Source = Union[str, os.PathLike, bytes, bytearray, memoryview, BinaryIO]


def open_video(src: Source):
    """``(container, label)``: an av input container for a path, bytes or a binary file object
    (which stays the caller's), and the name to use in messages. One-line InputError when it cannot
    be opened or holds no video stream (``input.no_video_stream``: an audio-only MP4, say)."""
    import av

    if isinstance(src, (bytes, bytearray, memoryview)):
        fobj, label = io.BytesIO(src), "video"
    elif isinstance(src, (str, os.PathLike)):
        src = Path(src)
        if not src.is_file():
            raise InputError(f"cannot read {src}: no such file")
        fobj, label = str(src), str(src)
    elif hasattr(src, "read"):
        fobj, label = src, str(getattr(src, "name", "") or "video")
    else:
        raise TypeError(f"expected a path, bytes or a binary file object, got {type(src).__name__}")
    try:
        # the probe decodes no frame (the size comes from the stream's parameters): a header that
        # declares 16000 x 16000 frames costs nothing before check_frame_pixels refuses it
        c = av.open(fobj, stream_options=[{"skip_frame": "all"}])
    except (av.FFmpegError, OSError, ValueError) as e:
        raise InputError(f"cannot decode video {label}: {e}".splitlines()[0]) from None
    if not c.streams.video:
        c.close()
        raise InputError(f"{label} has no video stream", code="input.no_video_stream")
    return c, label


def configure_decoder(vin, lim: Limits) -> None:
    """Frame + slice threads, at most ``lim.max_decoder_threads`` (and the machine's cores)."""
    n = max(1, min(int(lim.max_decoder_threads), os.cpu_count() or 1))
    try:
        vin.thread_type = "AUTO"
        vin.thread_count = n
    except Exception:  # a decoder that takes no thread settings
        pass


def check_frame_pixels(w: int, h: int, lim: Limits, label: str) -> None:
    """InputError ``limit.frame_pixels`` (one line) when a ``w`` x ``h`` frame is over the limit."""
    if w * h > lim.max_frame_pixels:
        raise InputError(f"{label}: video frames are {w}x{h} ({_limits.mp(w * h)}), over the "
                         f"{_limits.mp(lim.max_frame_pixels)} limit ({lim.env_var('max_frame_pixels')})",
                         code="limit.frame_pixels")


def _frame_count(inp, vin) -> int | None:
    """Frames in the stream: its frame count, else duration x frame rate; None when unknown."""
    if vin.frames:
        return int(vin.frames)
    rate = vin.average_rate or vin.guessed_rate
    if not rate:
        return None
    if vin.duration and vin.time_base:
        return int(round(float(vin.duration * vin.time_base) * float(rate)))
    if inp.duration:
        return int(round(inp.duration / 1_000_000 * float(rate)))
    return None


def _luma_plane(frame) -> np.ndarray:
    """Y plane of a decoded frame as uint8 HxW (converting when it is not planar YUV)."""
    if frame.format.name not in ("yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p"):
        frame = frame.reformat(format="yuv420p")
    p = frame.planes[0]
    a = np.frombuffer(p, dtype=np.uint8).reshape(p.height, p.line_size)
    return a[:, : p.width]


class AudioPassthrough:
    """The input's audio carried into an MP4 being written: packets copied when the MP4 container
    takes the codec (AAC, MP3, AC-3, E-AC-3, ALAC, Opus, FLAC), else decoded and re-encoded to AAC.
    ``how`` is "copied", "re-encoded", or None when there is no audio (``ain`` None).

    Example::

        audio = AudioPassthrough(out, inp.streams.audio[0] if inp.streams.audio else None)
        for packet in inp.demux(vin, *([ain] if ain else [])):
            if packet.stream.type == "audio":
                audio.mux(packet)
            ...
        audio.flush()  # before out.close()
    """

    def __init__(self, out, ain):
        self.out, self.stream, self.how = out, None, None
        if ain is None:
            return
        if ain.codec_context.name in _COPY_AUDIO:
            self.stream, self.how = out.add_stream_from_template(ain), "copied"
        else:
            self.stream = out.add_stream("aac", rate=ain.codec_context.sample_rate or 48000)
            self.how = "re-encoded"

    def mux(self, packet) -> None:
        """Write one demuxed audio packet (the demuxer's empty flush packets are ignored)."""
        if self.stream is None or packet.dts is None:
            return
        if self.how == "copied":
            packet.stream = self.stream
            self.out.mux(packet)
            return
        for af in packet.decode():
            af.pts = None
            for op in self.stream.encode(af):
                self.out.mux(op)

    def flush(self) -> None:
        """Drain the AAC encoder (nothing to do when copying)."""
        if self.how == "re-encoded":
            for op in self.stream.encode():
                self.out.mux(op)


PRESCALE_EDGE = 4 * _core.INTERMEDIATE  # decode: frames beyond one strip are first scaled to this long edge


def _sample_luma(frame) -> np.ndarray:
    """Luma of a frame sampled for decoding. A frame larger than one strip (``_core.STRIP_PIXELS``,
    i.e. beyond 4K UHD) is first reduced by swscale (area filter) to a long edge of
    PRESCALE_EDGE (4x the decoder's intermediate size): about 15x faster than the float
    reduction of the full frame. Smaller frames (every normal video) are used as decoded."""
    w, h = frame.width, frame.height
    if w * h > _core.STRIP_PIXELS:
        f = max(w, h) / PRESCALE_EDGE
        frame = frame.reformat(width=max(2, round(w / f)), height=max(2, round(h / f)), format="yuv420p",
                               interpolation="AREA")
    return _luma_plane(frame)


def _float_rows(y: np.ndarray):
    return lambda y0, y1: y[y0:y1].astype(np.float32)


def _transcode(inp, vin, ain, tmp, *, wm_id: int, key: bytes, strength: float, crf: int, preset: str,
               lim: Limits, label: str, stats: dict, psnrs: list) -> None:
    """Decode ``inp``, add the mark to every frame's Y plane (strip by strip), encode H.264 into ``tmp``."""
    import av

    max_frames = int(lim.max_sign_frames)
    w, h = vin.codec_context.width, vin.codec_context.height
    out = av.open(str(tmp), "w", format="mp4")
    try:
        rate = vin.average_rate or vin.guessed_rate or 25
        vout = out.add_stream("libx264", rate=rate)
        vout.width, vout.height = w - (w % 2), h - (h % 2)
        vout.pix_fmt = "yuv420p"
        vout.options = {"crf": str(int(crf)), "preset": preset}
        vout.codec_context.time_base = vin.time_base
        audio = AudioPassthrough(out, ain)
        stats["audio"] = audio.how
        stats.update(width=vout.width, height=vout.height, fps=float(rate))
        streams = [vin] + ([ain] if ain is not None else [])
        vh, vw = vout.height, vout.width
        for packet in inp.demux(*streams):
            if packet.stream.type == "audio":
                audio.mux(packet)
                continue
            for frame in packet.decode():
                if stats["frames"] >= max_frames:
                    raise InputError(f"{label}: the video has more than {max_frames} frames; watermarking takes "
                                     f"at most {max_frames} ({lim.env_var('max_sign_frames')})",
                                     code="limit.sign_frames")
                check_frame_pixels(frame.width, frame.height, lim, label)
                yuv = frame.reformat(format="yuv420p", width=vw, height=vh)
                arr = yuv.to_ndarray()  # (3h/2, w) planar
                del yuv
                yp = arr[:vh]
                inter, fx, fy = _core.to_intermediate_rows(vh, vw, _float_rows(yp))
                plan = _core.DeltaPlan(inter, fx, fy, vh, vw, wm_id, key, strength)
                sse = 0
                for y0, y1 in plan.strips():
                    y = yp[y0:y1].astype(np.float32)
                    delta = plan.rows(y0, y1) * np.float32(_Y_SCALE)
                    ny = np.clip(y + delta + 0.5, 0, 255).astype(np.uint8)
                    sse += int(np.sum(np.square(ny.astype(np.int32) - yp[y0:y1]), dtype=np.int64))
                    yp[y0:y1] = ny
                mse = sse / (vh * vw)
                psnrs.append(10 * np.log10(255.0 ** 2 / mse) if mse > 0 else 99.0)
                del plan
                nf = av.VideoFrame.from_ndarray(arr, format="yuv420p")
                nf.pts, nf.time_base = frame.pts, frame.time_base
                for op in vout.encode(nf):
                    out.mux(op)
                stats["frames"] += 1
        for op in vout.encode():
            out.mux(op)
        audio.flush()
    finally:
        out.close()


def embed_video(src: Source, dst: Path, wm_id: int, *, crf: int = 18, key: bytes = DEFAULT_KEY,
                strength: float = 1.0, preset: str = "medium", limits: Limits | None = None) -> dict:
    """Watermark every frame of ``src`` (a path, bytes or a binary file object) and write an
    H.264 (yuv420p) MP4 to ``dst``.

    Returns stats: frames, width, height, fps, crf, audio ("copied" / "re-encoded" / None),
    mean_psnr_y (Y-plane PSNR of the marked frames before H.264 coding).

    Limits (InputError, one line): frames over ``limits.max_frame_pixels`` -> ``limit.frame_pixels``;
    more than ``limits.max_sign_frames`` frames (from the container's count or duration x rate
    before work starts, and counted while decoding) -> ``limit.sign_frames``.
    """
    import av

    wm_id = _check_id(wm_id)
    lim = _limits.resolve(limits)
    dst = Path(dst)
    if not dst.parent.is_dir():
        raise OutputError(f"cannot write {dst}: folder {dst.parent} does not exist")
    inp, label = open_video(src)
    stats = {"frames": 0, "crf": int(crf), "audio": None}
    psnrs = []
    try:
        vin = inp.streams.video[0]
        ain = inp.streams.audio[0] if inp.streams.audio else None
        w, h = vin.codec_context.width, vin.codec_context.height
        if min(w, h) < _core.MIN_SIDE:
            raise WatermarkError(f"video too small to watermark ({w}x{h}); need {_core.MIN_SIDE} px per side")
        check_frame_pixels(w, h, lim, label)
        max_frames = int(lim.max_sign_frames)
        n_est = _frame_count(inp, vin)
        if n_est is not None and n_est > max_frames:
            raise InputError(f"{label}: the video has about {n_est} frames; watermarking takes at most {max_frames} "
                             f"({lim.env_var('max_sign_frames')})", code="limit.sign_frames")
        configure_decoder(vin, lim)
        with media.atomic_target(dst) as tmp:
            try:
                _transcode(inp, vin, ain, tmp, wm_id=wm_id, key=key, strength=strength, crf=crf, preset=preset,
                           lim=lim, label=label, stats=stats, psnrs=psnrs)
            except av.FFmpegError as e:
                raise InputError(f"cannot transcode video {label}: {e}".splitlines()[0]) from None
            if stats["frames"] == 0:
                raise InputError(f"{label} has no decodable video frames")
    except av.FFmpegError as e:
        raise InputError(f"cannot transcode video {label}: {e}".splitlines()[0]) from None
    finally:
        try:
            inp.close()
        except Exception:
            pass
    stats["mean_psnr_y"] = round(float(np.mean(psnrs)), 2) if psnrs else None
    return stats


def _v2(i: int) -> int:
    """2-adic valuation of i > 0 (how many times 2 divides it); 63 for i = 0."""
    return 63 if i == 0 else (i & -i).bit_length() - 1


def decode_video(source: Source, *, max_frames: int = DEFAULT_MAX_FRAMES, key: bytes = DEFAULT_KEY,
                 limits: Limits | None = None) -> WatermarkResult:
    """Decode the watermark from a video (a path, the file's bytes or a binary file object):
    averaged luma of up to ``max_frames`` frames sampled evenly over the first
    ``limits.max_verify_frames`` frames, then single frames as a fallback.
    ``false_positive_bound`` is the video decision bound.

    Bounded memory and time: each sampled frame is reduced at once (strip by strip) to the small
    intermediate image; at most ``max_verify_frames`` frames (and ``max_verify_pixels`` pixels) are
    decoded, with ``detail["limits"]`` saying so when the video is longer; the decoder runs at most
    ``max_decoder_threads`` threads. Frames over ``limits.max_frame_pixels`` are not decoded:
    InputError ``limit.frame_pixels`` (one line), as for any other video the decoder cannot read.
    """
    import av

    lim = _limits.resolve(limits)
    max_frames = max(1, int(max_frames))
    notes: list[dict] = []
    inp, label = open_video(source)
    try:
        vin = inp.streams.video[0]
        cw, ch = vin.codec_context.width, vin.codec_context.height
        check_frame_pixels(cw, ch, lim, label)  # before any frame is decoded
        configure_decoder(vin, lim)
        cap = int(lim.max_verify_frames)
        if cw and ch:
            cap = max(1, min(cap, int(lim.max_verify_pixels) // (cw * ch)))
        n = int(vin.frames or 0)
        n_eff = min(n, cap) if n else 0
        stride = max(1, -(-n_eff // max_frames)) if n_eff else 1  # ceil: the samples span the range
        shape = None
        acc = None  # known count: running sum (float64) of the sampled intermediates
        buckets: dict[int, list] = {}  # unknown count: sums by the 2-adic valuation of the frame index
        count = 0  # samples at the current stride
        keep: list[tuple[int, np.ndarray]] = []  # (frame index, intermediate) for the fallback
        fx = fy = 1.0
        sh = sw = 0
        decoded = 0
        skipped = 0
        too_small = False
        more = False
        try:
            for i, frame in enumerate(inp.decode(vin)):
                if i >= cap:
                    more = True
                    break
                decoded = i + 1
                check_frame_pixels(frame.width, frame.height, lim, label)
                if i % stride:
                    continue
                if shape is None:
                    shape = (frame.height, frame.width)
                    if min(shape) < _core.MIN_SIDE:
                        too_small = True
                        break
                elif (frame.height, frame.width) != shape:
                    skipped += 1
                    continue
                y = _sample_luma(frame)
                sh, sw = y.shape  # the frame's size, or its prescaled size: the decoder is scale-free
                inter, fx, fy = _core.to_intermediate_rows(sh, sw, _float_rows(y))
                del y, frame
                if n_eff:
                    acc = inter.astype(np.float64) if acc is None else acc + inter
                else:
                    b = buckets.get(_v2(i))
                    if b is None:
                        buckets[_v2(i)] = [inter.astype(np.float64), 1]
                    else:
                        b[0] += inter
                        b[1] += 1
                keep.append((i, inter))
                if len(keep) > _KEEP_INTERMEDIATES:
                    keep = keep[::2]
                count += 1
                if n_eff and count >= max_frames:
                    break
                if not n_eff and count >= 4 * max_frames:
                    stride *= 2
                    count = (count + 1) // 2
                    keep = [(j, it) for j, it in keep if j % stride == 0]
        except av.FFmpegError as e:
            if not count and not too_small:
                raise InputError(f"cannot decode video {label}: {e}".splitlines()[0]) from None
    finally:
        inp.close()
    if shape is None:
        raise InputError(f"{label} has no decodable video frames")
    h, w = shape
    long_edge = float(max(sh, sw)) if count or buckets else float(max(h, w))
    if too_small:
        return WatermarkResult(False, None, 0.0, None, VIDEO_FALSE_POSITIVE_BOUND,
                               {"reason": f"video too small ({w}x{h})", "frames_used": 0})
    if n and n > n_eff:
        notes.append(_limits.note("limit.verify_frames", f"read the watermark from the first {n_eff} of {n} frames "
                                  f"(limits: {lim.max_verify_frames} frames, {_limits.mp(lim.max_verify_pixels)} "
                                  f"decoded; {lim.env_var('max_verify_frames')})"))
    elif more:
        notes.append(_limits.note("limit.verify_frames", f"read the watermark from the first {decoded} frames; the "
                                  f"video has more (limits: {lim.max_verify_frames} frames, "
                                  f"{_limits.mp(lim.max_verify_pixels)} decoded; {lim.env_var('max_verify_frames')})"))
    if not n_eff:  # frames i % stride == 0: the buckets of valuation >= log2(stride)
        k = stride.bit_length() - 1
        acc, count = None, 0
        for v in sorted(buckets):
            if v >= k:
                s, c = buckets[v]
                acc = s.copy() if acc is None else acc + s
                count += c
        keep = [(j, it) for j, it in keep if j % stride == 0]
    if acc is None or not count:
        raise InputError(f"{label} has no decodable video frames")
    avg = (acc / count).astype(np.float32)
    res = _core.decode_intermediate(avg, fx, fy, long_edge, key)
    res["mode"] = "average"
    decodes = 1
    if not res["found"]:  # reframed, mirrored, turned: the template on the average (the edit is the same on every frame)
        res = _geometric(avg, key, res)
        res["mode"] = "average, geometric" if res["found"] else "average"
    if not res["found"]:
        picks = np.unique(np.linspace(0, len(keep) - 1, min(FALLBACK_FRAMES, len(keep))).round().astype(int))
        for p in picks:
            i, inter = keep[int(p)]
            r = _core.decode_intermediate(inter, fx, fy, long_edge, key)
            decodes += 1
            if r["found"]:
                res = r
                res["mode"] = f"single frame {i // stride}"
                break
    res["frames_used"] = count
    res["frames_decoded"] = decoded
    res["image_decodes"] = decodes
    if skipped:
        res["frames_skipped"] = skipped
    if notes:
        res["limits"] = notes
    out = _result(res)
    out.false_positive_bound = VIDEO_FALSE_POSITIVE_BOUND
    return out
