"""Invisible video watermark: the image watermark on every frame's luma, H.264 MP4 out.

Embedding (:func:`embed_video`) decodes every frame with PyAV, adds the image watermark's luma
delta (see :mod:`provenance.watermark.image`; same key, same 48-bit id, informed per frame) to the
Y plane (scaled by 219/255 because the Y plane is limited range, so the RGB-equivalent PSNR is the
image target, 42 dB), and encodes H.264 yuv420p (libx264, ``crf``) into an MP4. Audio is copied
when the MP4 container accepts its codec, else re-encoded to AAC. The write is atomic.

Decoding (:func:`decode_video`) samples up to ``max_frames`` frames evenly over the video, averages
their luma (the mark is static, content and coding noise are not: averaging raises the SNR) and runs
the image decoder on the average; when that fails it also tries up to ``FALLBACK_FRAMES`` single
frames. Decision rule: found only if a CRC-32 check passes; at most (1 + FALLBACK_FRAMES) image
decodes of at most 64 CRC-checked words each, so P(found | unmarked video) <= 320 * 2**-32 ~= 7.5e-8.
Trimming, re-encoding and rescaling (the grid follows the long edge) do not matter to the decoder.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from ..errors import InputError, OutputError, WatermarkError
from . import _core
from .image import DEFAULT_KEY, WORDS_PER_IMAGE, WatermarkResult, _check_id, _result

FALLBACK_FRAMES = 4
VIDEO_FALSE_POSITIVE_BOUND = (1 + FALLBACK_FRAMES) * WORDS_PER_IMAGE * 2.0 ** -32
_Y_SCALE = 219.0 / 255.0
_COPY_AUDIO = {"aac", "mp3", "ac3", "eac3", "alac", "opus", "flac"}


def _open_input(src: Path):
    import av

    src = Path(src)
    if not src.is_file():
        raise InputError(f"cannot read {src}: no such file")
    try:
        c = av.open(str(src))
    except (av.FFmpegError, OSError, ValueError) as e:
        raise InputError(f"cannot decode video {src}: {e}".splitlines()[0]) from None
    if not c.streams.video:
        c.close()
        raise InputError(f"{src} has no video stream")
    return c


def _luma_plane(frame) -> np.ndarray:
    """Y plane of a decoded frame as uint8 HxW (converting when it is not planar YUV)."""
    if frame.format.name not in ("yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p"):
        frame = frame.reformat(format="yuv420p")
    p = frame.planes[0]
    a = np.frombuffer(p, dtype=np.uint8).reshape(p.height, p.line_size)
    return a[:, : p.width]


def embed_video(src: Path, dst: Path, wm_id: int, *, crf: int = 18, key: bytes = DEFAULT_KEY,
                strength: float = 1.0, preset: str = "medium") -> dict:
    """Watermark every frame of ``src`` and write an H.264 (yuv420p) MP4 to ``dst``.

    Returns stats: frames, width, height, fps, crf, audio ("copied" / "re-encoded" / None),
    mean_psnr_y (Y-plane PSNR of the marked frames before H.264 coding).
    """
    import av

    wm_id = _check_id(wm_id)
    src, dst = Path(src), Path(dst)
    if not dst.parent.is_dir():
        raise OutputError(f"cannot write {dst}: folder {dst.parent} does not exist")
    inp = _open_input(src)
    fd, tmp = tempfile.mkstemp(prefix=".wm-", suffix=".mp4", dir=dst.parent)
    os.close(fd)
    stats = {"frames": 0, "crf": int(crf), "audio": None}
    psnrs = []
    try:
        vin = inp.streams.video[0]
        ain = inp.streams.audio[0] if inp.streams.audio else None
        w, h = vin.codec_context.width, vin.codec_context.height
        if min(w, h) < _core.MIN_SIDE:
            raise WatermarkError(f"video too small to watermark ({w}x{h}); need {_core.MIN_SIDE} px per side")
        rate = vin.average_rate or vin.guessed_rate or 25
        out = av.open(tmp, "w", format="mp4")
        vout = out.add_stream("libx264", rate=rate)
        vout.width, vout.height = w - (w % 2), h - (h % 2)
        vout.pix_fmt = "yuv420p"
        vout.options = {"crf": str(int(crf)), "preset": preset}
        vout.codec_context.time_base = vin.time_base
        aout = None
        if ain is not None:
            if ain.codec_context.name in _COPY_AUDIO:
                aout = out.add_stream_from_template(ain)
                stats["audio"] = "copied"
            else:
                aout = out.add_stream("aac", rate=ain.codec_context.sample_rate or 48000)
                stats["audio"] = "re-encoded"
        stats.update(width=vout.width, height=vout.height, fps=float(rate))
        streams = [vin] + ([ain] if ain is not None else [])
        for packet in inp.demux(*streams):
            if packet.stream.type == "audio":
                if aout is None or packet.dts is None:
                    continue
                if stats["audio"] == "copied":
                    packet.stream = aout
                    out.mux(packet)
                else:
                    for af in packet.decode():
                        af.pts = None
                        for op in aout.encode(af):
                            out.mux(op)
                continue
            for frame in packet.decode():
                yuv = frame.reformat(format="yuv420p", width=vout.width, height=vout.height)
                arr = yuv.to_ndarray()  # (3h/2, w) planar
                y = arr[: vout.height].astype(np.float32)
                delta = _core.embed_delta(y, wm_id, key, strength) * np.float32(_Y_SCALE)
                ny = np.clip(y + delta + 0.5, 0, 255).astype(np.uint8)
                d = ny.astype(np.float32) - y
                mse = float(np.mean(d * d))
                psnrs.append(10 * np.log10(255.0 ** 2 / mse) if mse > 0 else 99.0)
                arr[: vout.height] = ny
                nf = av.VideoFrame.from_ndarray(arr, format="yuv420p")
                nf.pts, nf.time_base = frame.pts, frame.time_base
                for op in vout.encode(nf):
                    out.mux(op)
                stats["frames"] += 1
        for op in vout.encode():
            out.mux(op)
        if aout is not None and stats["audio"] == "re-encoded":
            for op in aout.encode():
                out.mux(op)
        out.close()
        inp.close()
        if stats["frames"] == 0:
            raise InputError(f"{src} has no decodable video frames")
        os.replace(tmp, dst)
    except av.FFmpegError as e:
        _cleanup(tmp, inp)
        raise InputError(f"cannot transcode video {src}: {e}".splitlines()[0]) from None
    except BaseException:
        _cleanup(tmp, inp)
        raise
    stats["mean_psnr_y"] = round(float(np.mean(psnrs)), 2) if psnrs else None
    return stats


def _cleanup(tmp: str, inp) -> None:
    try:
        inp.close()
    except Exception:
        pass
    try:
        os.unlink(tmp)
    except OSError:
        pass


def decode_video(path: Path, *, max_frames: int = 32, key: bytes = DEFAULT_KEY) -> WatermarkResult:
    """Decode the watermark from a video: averaged luma of up to ``max_frames`` sampled frames,
    then single frames as a fallback. ``false_positive_bound`` is the video decision bound."""
    import av

    inp = _open_input(Path(path))
    try:
        vin = inp.streams.video[0]
        n = vin.frames or 0
        stride = max(1, n // max_frames) if n else 1
        frames = []
        try:
            for i, frame in enumerate(inp.decode(vin)):
                if i % stride == 0:
                    frames.append(_luma_plane(frame).astype(np.float32))
                    if len(frames) >= max_frames and n:
                        break
                    if not n and len(frames) >= 4 * max_frames:
                        frames = frames[::2]
                        stride *= 2
        except av.FFmpegError as e:
            if not frames:
                raise InputError(f"cannot decode video {path}: {e}".splitlines()[0]) from None
    finally:
        inp.close()
    if not frames:
        raise InputError(f"{path} has no decodable video frames")
    h, w = frames[0].shape
    if min(h, w) < _core.MIN_SIDE:
        return WatermarkResult(False, None, 0.0, None, VIDEO_FALSE_POSITIVE_BOUND,
                               {"reason": f"video too small ({w}x{h})", "frames_used": len(frames)})
    acc = None
    for f in frames:
        inter, fx, fy = _core.to_intermediate(f)
        acc = inter.astype(np.float64) if acc is None else acc + inter
    avg = (acc / len(frames)).astype(np.float32)
    res = _core.decode_intermediate(avg, fx, fy, float(max(h, w)), key)
    res["mode"] = "average"
    decodes = 1
    if not res["found"]:
        picks = np.unique(np.linspace(0, len(frames) - 1, min(FALLBACK_FRAMES, len(frames))).round().astype(int))
        for i in picks:
            inter, fx, fy = _core.to_intermediate(frames[i])
            r = _core.decode_intermediate(inter, fx, fy, float(max(h, w)), key)
            decodes += 1
            if r["found"]:
                res = r
                res["mode"] = f"single frame {int(i)}"
                break
    res["frames_used"] = len(frames)
    res["image_decodes"] = decodes
    out = _result(res)
    out.false_positive_bound = VIDEO_FALSE_POSITIVE_BOUND
    return out
