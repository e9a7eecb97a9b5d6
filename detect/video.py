"""Score videos for face forgery: sample frames, find and track the faces, score every face per
sampled frame, pool the scores per face track and per video; optionally write an annotated MP4.

``score_video(path, detector, info) -> VideoScore`` is what ``dhstudio detect VIDEO`` prints: the
keys of an image's result (``path``, ``score``, ``faces``: one summary per face track,
``detector``, ``error``) plus ``video`` (sampling, frame counts, rotation, every track's timeline).
``write_annotated(path, result, out)`` draws that result on the video (``--annotate``).

Sampling (:func:`sampling_plan`): a clip of at most ``max_frames`` frames (default
:data:`DEFAULT_MAX_FRAMES` = 300: 10 s at 30 fps) is scored frame by frame; a longer one at
``max_frames`` instants spread evenly over its whole duration (1 min at 30 fps: 5 frames/s; 2 h:
one every 24 s), or at ``sample_fps`` when given, lowered when that would exceed ``max_frames``.
``max_frames`` itself is capped by ``provenance.limits``' ``max_verify_frames``. Time comes from
each frame's timestamp, never from its index and a nominal rate, so variable-frame-rate videos are
sampled at the right instants and their timelines say when each face was seen. Sampled instants
far apart are reached by seeking: to the last keyframe before the instant when that keyframe lies
more than :data:`SEEK_MIN_SKIP_S` past the previous sample (that keyframe is the sample: one frame
decoded instead of a whole GOP), else by decoding on; so a 2-hour video costs about ``max_frames``
decoded frames, not 200,000 (``provenance.limits``' ``max_detect_decode_frames`` bounds a stream
whose keyframes do not help).

Bounded and robust: frames over ``max_frame_pixels`` are refused (``limit.frame_pixels``) before
decoding and per frame; decoder threads are capped (``max_decoder_threads``); a packet the decoder
rejects mid-video is skipped and counted (``frames_skipped``), never fatal; 10-bit and other pixel
formats are converted by swscale; a display matrix (phone videos) is applied, so faces are found
upright and every box is in the upright frame's pixels (``width`` x ``height``).

Faces: ``reconstruct.faces.detect_faces`` in "auto" mode on the whole frame; on a wide (or tall)
frame, whose long side is at least :data:`WIDE_ASPECT` times its short side, the full-range model
also runs on two overlapping halves (:func:`detect_video_faces`): the face detectors letterbox the
frame to 128-192 px, so a face 8 % of a 1080p frame's height is ~9 px wide in the whole frame and
~16 px in a half, where the full-range model finds it (in one of the shared DFDC samples, the
face is found in 0 of 10 frames without the halves and in 10 of 10 with them). ``FaceTracker``
gives the faces of consecutive samples stable ids (its centre-shift gate widened for sparse
samples: :func:`_tracker`); the crops of many frames are scored in one batch.

Decision (the MesoNet pipeline's aggregation step, Afchar et al. 2018, which averages the
per-frame predictions of a video): a track's score is the **mean** P(fake) over its frames
(``detect.metrics.video_scores``, "mean"): single-frame scores swing with blur, pose and coding
noise, and the mean over a track is steadier than any one frame, while a maximum over hundreds
of frames would flag nearly every real video (a 1 % per-frame false-positive rate compounds).
Only tracks with at least :data:`MIN_TRACK_FRAMES` frames count (shorter ones are mostly
detector false positives seen once or twice); when none is that long, all count. The video's
score is the **most suspicious counted track** (max over tracks): one swapped face among real
ones makes the video manipulated (DFDC labels a video fake when any face is).
"""

from __future__ import annotations

import bisect
import io
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from provenance import limits as _limits
from provenance import media
from provenance.errors import DhsError, InputError
from provenance.limits import Limits
from provenance.watermark.video import AudioPassthrough, check_frame_pixels, configure_decoder, open_video

__all__ = ["DEFAULT_MAX_FRAMES", "MIN_TRACK_FRAMES", "TrackScore", "VideoScore", "detect_video_faces",
           "sampling_plan", "score_video", "write_annotated"]

DEFAULT_MAX_FRAMES = 300
"""Frames scored at most per video (clips up to this many frames are scored frame by frame)."""
FALLBACK_SAMPLE_FPS = 5.0
"""Sampling rate when a video's duration is unknown (no container or stream duration)."""
MIN_TRACK_FRAMES = 3
"""A track counts towards the video's score with at least this many scored frames."""
SEEK_MIN_SKIP_S = 1.0
"""Seek only when that skips more than this many seconds; else decoding on is cheaper."""
SEEK_NO_INDEX_GAP_S = 10.0
"""Without a keyframe index, seek only to instants this far (s) past the previous sample."""
WIDE_ASPECT = 1.4
"""Frames whose long side is at least this times the short side also get the two-halves pass."""
HALF_OVERLAP = 0.1
"""The two halves overlap by twice this fraction of the long side (each spans 0.6 of it)."""
BATCH = 32
"""Face crops scored per detector call."""
_EPS = 1e-6


# ----------------------------------------------------------------------------- results


@dataclass
class TrackScore:
    """One face track: its scored frames and their pooled score."""

    id: int
    """Track id from ``FaceTracker`` (0, 1, 2, ... in order of first appearance)."""
    frames: int
    """Sampled frames in which this face was found and scored."""
    first_time: float
    """Seconds from the start of the video of its first and last scored frame."""
    last_time: float
    score: float | None
    """Mean P(fake) over its frames (the decision rule: see the module docstring)."""
    max_score: float | None
    counted: bool
    """Whether it counts towards the video's score (at least MIN_TRACK_FRAMES frames)."""
    detection_score: float
    """Mean face-detector confidence over its frames."""
    box: list[float]
    """(x0, y0, x1, y1) in the upright frame's pixels, at its most suspicious frame."""
    timeline: list[list] = field(default_factory=list)
    """``[t, score, [x0, y0, x1, y1]]`` per scored frame, in time order."""

    def summary(self) -> dict:
        """Everything but the timeline (the ``faces`` entries of the CLI's JSON)."""
        d = asdict(self)
        d.pop("timeline")
        return d


@dataclass
class VideoScore:
    """What ``score_video`` found. ``to_dict()`` is the JSON of ``dhstudio detect VIDEO --json``."""

    path: str
    score: float | None
    """The video's P(fake): its most suspicious counted track; None when no face was scored."""
    tracks: list[TrackScore] = field(default_factory=list)
    detector: dict | None = None
    error: dict | None = None
    """``{code, message}`` when the video could not be checked (or had no face), else None."""
    width: int | None = None
    """Upright frame size (after the display matrix's rotation): the boxes' pixels."""
    height: int | None = None
    fps: float | None = None
    """The stream's average frame rate (timestamps, not this rate, place the samples)."""
    duration: float | None = None
    """Seconds, from the stream or the container."""
    start_time: float = 0.0
    """Stream time (s) of t = 0 in the timelines: the stream's start time, else its first frame."""
    rotation: int = 0
    """Degrees counter-clockwise the frames were turned to stand upright (display matrix)."""
    frames_decoded: int = 0
    frames_sampled: int = 0
    """Frames looked at for faces (and scored when one was found)."""
    frames_skipped: int = 0
    """Corrupt packets / frames the decoder rejected, skipped."""
    frames_with_faces: int = 0
    sampling: dict = field(default_factory=dict)
    """How frames were picked: rule, max_frames, step (s), seek, seeks made."""
    aggregation: dict = field(default_factory=dict)
    notes: list[dict] = field(default_factory=list)
    """``{code, message}`` for what shortened the work (a limit, a demuxer that broke off)."""
    annotated: dict | None = None
    """The annotated MP4 when asked for: path, frames, audio ("copied" / "re-encoded" / None)."""
    seconds: float = 0.0
    """Wall time of the check (and of the annotation, when asked for)."""

    def to_dict(self) -> dict:
        """``{path, score, faces, detector, error, video}``: the image result's keys (``faces`` holds
        one summary per track) plus every detail under ``video``."""
        d = asdict(self)
        top = {k: d.pop(k) for k in ("path", "score", "detector", "error")}
        return {"path": top["path"], "score": top["score"], "faces": [t.summary() for t in self.tracks],
                "detector": top["detector"], "error": top["error"], "video": d}


# ----------------------------------------------------------------------------- sampling


def sampling_plan(duration: float | None, frame_count: int | None, *, max_frames: int = DEFAULT_MAX_FRAMES,
                  sample_fps: float | None = None, fps: float | None = None) -> dict:
    """Which frames to score (the rule of the module docstring), as plain data.

    ``{"rule": "every frame" | "rate", "step": seconds between sampled instants (None for every
    frame), "n": instants to sample (None when the duration is unknown: up to max_frames),
    "max_frames": max_frames}``. Instant k is at ``(k + 0.5) * step`` seconds.
    """
    if max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    if sample_fps is not None and not (sample_fps > 0 and math.isfinite(sample_fps)):
        raise ValueError(f"sample_fps must be a positive number, got {sample_fps}")
    every = frame_count is not None and frame_count <= max_frames and (
        sample_fps is None or (fps is not None and sample_fps >= fps - _EPS))
    if every:
        return {"rule": "every frame", "step": None, "n": None, "max_frames": int(max_frames)}
    if duration is not None and duration > 0:
        step = duration / max_frames
        if sample_fps is not None:
            step = max(step, 1.0 / sample_fps)
        n = max(1, min(int(max_frames), math.ceil(duration / step - _EPS)))
        return {"rule": "rate", "step": step, "n": n, "max_frames": int(max_frames)}
    rate = sample_fps if sample_fps is not None else FALLBACK_SAMPLE_FPS
    return {"rule": "rate", "step": 1.0 / rate, "n": None, "max_frames": int(max_frames)}


def _probe(inp, vin) -> tuple[float | None, int | None, float | None, float | None]:
    """(duration s, frame count, average fps, stream start s) from the headers; None when unknown."""
    rate = vin.average_rate or vin.guessed_rate
    fps = float(rate) if rate else None
    tb = vin.time_base
    start = float(vin.start_time * tb) if vin.start_time is not None and tb else None
    duration = None
    if vin.duration and tb:
        duration = float(vin.duration * tb)
    elif inp.duration:
        duration = inp.duration / 1_000_000
    if duration is not None and not (duration > 0 and math.isfinite(duration)):
        duration = None
    count = int(vin.frames) if vin.frames else None
    if count is None and duration is not None and fps:
        count = int(round(duration * fps))
    return duration, count, fps, start


def _keyframes(vin) -> list[int]:
    """Keyframe timestamps (stream time base) from the container's index ([] without one)."""
    try:
        return sorted(int(e.timestamp) for e in vin.index_entries if e.is_keyframe)
    except Exception:  # a demuxer without an index, or an older PyAV
        return []


class _Reader:
    """Decoded frames in stream order from a video stream, packet by packet: a packet the decoder
    rejects is counted in ``skipped`` and passed over. Stops (with a note) after
    ``lim.max_detect_decode_frames`` frames or when the demuxer breaks off."""

    def __init__(self, inp, vin, lim: Limits, label: str, notes: list):
        self.inp, self.vin, self.lim, self.label, self.notes = inp, vin, lim, label, notes
        self.decoded = self.skipped = self.seeks = 0
        self._it = self._frames()

    def _frames(self):
        import av

        try:
            for packet in self.inp.demux(self.vin):
                try:
                    frames = packet.decode()
                except av.FFmpegError:  # corrupt data: this packet's frame is lost, the next may decode
                    self.skipped += 1
                    continue
                yield from frames
        except av.FFmpegError as e:
            self.notes.append(_limits.note("input.decode_stopped", f"the demuxer stopped after {self.decoded} "
                                           f"frames: {str(e).splitlines()[0] if str(e) else type(e).__name__}"))

    def seek(self, ts: int) -> bool:
        import av

        try:
            self.inp.seek(int(ts), stream=self.vin, backward=True)
        except (av.FFmpegError, OSError, ValueError):
            return False
        self.seeks += 1
        self._it = self._frames()
        return True

    def next(self):
        """The next decoded frame, or None at the end."""
        cap = int(self.lim.max_detect_decode_frames)
        if self.decoded >= cap:
            self.notes.append(_limits.note("limit.decode_frames", f"{self.label}: stopped after decoding "
                                           f"{cap} frames (this stream's keyframes are too far apart to "
                                           f"seek; {self.lim.env_var('max_detect_decode_frames')}); the "
                                           f"result covers the video up to there"))
            return None
        f = next(self._it, None)
        if f is not None:
            self.decoded += 1
            check_frame_pixels(f.width, f.height, self.lim, self.label)
        return f


def _sampled(reader: _Reader, plan: dict, t0: float | None, keyframes: list[int], counts: dict):
    """Yield ``(frame, t)`` for the frames the plan picks (t: seconds from the video's start);
    ``counts["t0"]`` is the stream time of t = 0 (the stream's start time, else its first frame's)."""
    vin = reader.vin
    tb = float(vin.time_base) if vin.time_base else None
    every = plan["rule"] == "every frame"
    n = plan["n"] if plan["n"] is not None else plan["max_frames"]
    step = plan["step"]
    pend = None
    if t0 is None:  # the first frame says where t = 0 is
        pend = reader.next()
        if pend is None:
            return
        t0 = pend.time if pend.time is not None else 0.0
    counts["t0"] = t0
    k = sampled = 0
    prev = last = None  # times of the last sample and of the last decoded frame
    seeking = not every and tb is not None
    just_seeked = False
    want = accept = None  # the instant sought, and the time from which a frame is taken for it
    while True:
        if not every and want is None:
            if k >= n:
                return
            want = accept = t0 + (k + 0.5) * step
            if seeking and pend is None:
                r = _maybe_seek(reader, want, prev, last if last is not None else t0, tb, keyframes)
                if r is False:
                    seeking = False
                elif r is not None:
                    accept, just_seeked = r, True
        if pend is not None:
            f, pend = pend, None
        else:
            f = reader.next()
        if f is None:
            return
        t = f.time
        if t is None:  # no timestamp: one nominal frame after the last
            t = last + 1.0 / (plan.get("fps") or 25.0) if last is not None else t0
        if just_seeked:
            just_seeked = False
            if prev is not None and t <= prev + _EPS:  # landed behind us: seeking does not help here
                seeking = False
                accept = want
        last = t
        if every:
            if sampled >= plan["max_frames"]:
                counts["more"] = True
                return
            sampled += 1
            yield f, t - t0
            continue
        if t + _EPS >= accept and (prev is None or t > prev + _EPS):
            sampled += 1
            prev = t
            yield f, t - t0
            k += 1  # one frame per instant (a keyframe taken early for it included)
            while k < n and t0 + (k + 0.5) * step <= t + _EPS:
                k += 1
            want = None


def _maybe_seek(reader: _Reader, want: float, prev: float | None, here: float, tb: float, keyframes: list[int]):
    """Seek towards the instant ``want`` when that skips enough decoding. Returns the time from
    which to take a frame for it (the keyframe seeked to), None to decode on, False when the
    container cannot seek."""
    if keyframes:
        i = bisect.bisect_right(keyframes, int(math.floor(want / tb + _EPS))) - 1
        if i < 0:
            return None
        kt = keyframes[i] * tb
        if kt - here > SEEK_MIN_SKIP_S and (prev is None or kt > prev + _EPS):
            return kt if reader.seek(keyframes[i]) else False
        return None
    if want - here > SEEK_NO_INDEX_GAP_S:
        if not reader.seek(int(math.floor(want / tb))):
            return False
        return min(want, (prev if prev is not None else here) + SEEK_MIN_SKIP_S)
    return None


# ----------------------------------------------------------------------------- frames and faces


def _quarter_turns(frame) -> int:
    """The display matrix's counter-clockwise rotation in quarter turns (np.rot90's k); an angle
    that is not a multiple of 90 degrees is rounded to the nearest one, a mirroring is ignored."""
    try:
        deg = float(frame.rotation or 0)
    except Exception:  # no side data support
        return 0
    return int(round(deg / 90.0)) % 4


def upright_rgb(frame) -> tuple[np.ndarray, int]:
    """A decoded frame as upright (H, W, 3) uint8 RGB (any pixel format, 10-bit included; the
    display matrix's rotation applied) and the rotation in degrees counter-clockwise."""
    rgb = frame.to_ndarray(format="rgb24")
    k = _quarter_turns(frame)
    if k:
        rgb = np.ascontiguousarray(np.rot90(rgb, k))
    return rgb, 90 * k


def _shifted(face, dx: float, dy: float):
    off = np.array([dx, dy], dtype=np.float32)
    b = face.box
    return replace(face, box=(b[0] + dx, b[1] + dy, b[2] + dx, b[3] + dy),
                   keypoints=None if face.keypoints is None else face.keypoints + off,
                   landmarks=None if face.landmarks is None else face.landmarks + off,
                   landmarks68=None if face.landmarks68 is None else face.landmarks68 + off)


def detect_video_faces(rgb: np.ndarray, *, max_faces: int = 8) -> list:
    """Faces in one upright frame, best score first: ``detect_faces`` ("auto") on the whole frame,
    and on a wide or tall frame (long side >= WIDE_ASPECT x short side) the full-range model on two
    overlapping halves too (small faces; see the module docstring). Boxes of one face are merged
    (the better score kept): a box mostly inside another or overlapping it (IoU >= 0.3); "auto"
    can return a face and a larger, weaker box around it, which would make two tracks."""
    from reconstruct.faces import detect_faces, same_face

    found = detect_faces(rgb, mode="auto", max_faces=max_faces)
    h, w = rgb.shape[:2]
    if max(h, w) >= WIDE_ASPECT * min(h, w):
        long_side = max(h, w)
        span = int(round(long_side * (0.5 + HALF_OVERLAP)))
        for start in (0, long_side - span):
            tile = rgb[:, start:start + span] if w >= h else rgb[start:start + span]
            dx, dy = (start, 0) if w >= h else (0, start)
            found += [_shifted(f, dx, dy) for f in detect_faces(tile, mode="full", max_faces=max_faces)]
    kept: list = []
    for f in sorted(found, key=lambda f: -f.score):
        if len(kept) >= max_faces:
            break
        if not any(same_face(f.box, k.box) for k in kept):
            kept.append(f)
    return kept


# ----------------------------------------------------------------------------- scoring


TRACK_MAX_SHIFT = 2.0
"""Largest centre shift (in face sizes) the tracker accepts between two sparse samples."""


def _tracker(plan: dict, fps: float | None):
    """A FaceTracker whose centre-shift gate (0.6 face sizes from one frame to the next) grows with
    the square root of the frames between two samples, up to TRACK_MAX_SHIFT: a face moves further
    between samples 0.5 s apart than between two frames."""
    from reconstruct.faces import FaceTracker

    gap = 1.0 if plan["step"] is None or not fps else max(1.0, plan["step"] * fps)
    return FaceTracker(max_center_shift=min(TRACK_MAX_SHIFT, 0.6 * math.sqrt(gap)))


def _video_error(code: str, message: str) -> dict:
    return {"code": code, "message": message}


def score_video(path, detector, info: dict, *, max_frames: int | None = None, sample_fps: float | None = None,
                annotate=None, max_faces: int = 8, progress=False, limits: Limits | None = None,
                path_label: str | None = None) -> VideoScore:
    """Score the faces of a video file (see the module docstring for the sampling and the rule).

    Args:
        path: the video file, or its bytes (``detect.verify`` passes the bytes it read once, so
            the video scored is the one its provenance was checked on; ``path_label`` names it).
        detector, info: a face-forgery detector (``predict_proba``) and what to report about it
            (``detect.score.load_default_detector``).
        max_frames: frames scored at most (default DEFAULT_MAX_FRAMES; capped at
            ``limits.max_verify_frames``).
        sample_fps: sample at this rate instead (lowered when it would exceed ``max_frames``).
        annotate: write the annotated MP4 here as well (:func:`write_annotated`; atomic).
        max_faces: faces per frame at most.
        progress: True for a progress bar on stderr, or a callable ``progress(done, total)``.
        limits: ``provenance.limits.Limits`` (default: ``current_limits()``).

    Never raises for bad input: problems land in ``error`` (``input.*``, ``limit.*``,
    ``output.*`` for the annotated file, ``detect.no_face`` when no face was found,
    ``detect.missing_extra`` without the faces extra).
    """
    t_start = time.perf_counter()
    in_memory = isinstance(path, (bytes, bytearray, memoryview))
    label = path_label or ("video" if in_memory else str(path))
    res = VideoScore(path=label, score=None, detector=info)
    try:
        lim = _limits.resolve(limits)
        want = DEFAULT_MAX_FRAMES if max_frames is None else int(max_frames)
        if want < 1:
            raise InputError(f"max_frames must be >= 1, got {max_frames}", code="input.invalid_option")
        if sample_fps is not None and not (sample_fps > 0 and math.isfinite(sample_fps)):
            raise InputError(f"sample_fps must be a positive number, got {sample_fps}", code="input.invalid_option")
        cap = int(lim.max_verify_frames)
        if want > cap:
            res.notes.append(_limits.note("limit.verify_frames", f"max_frames {want} lowered to {cap} "
                                          f"({lim.env_var('max_verify_frames')})"))
            want = cap
        if annotate is not None and in_memory:
            raise InputError("annotate needs the video as a file path, not bytes", code="input.invalid_option")
        if annotate is not None:  # refused before the scoring, not after it
            media.check_output_path(annotate, src=path)
            media.check_input_path(path)
            inp, _ = open_video(Path(path))
            try:
                _check_annotatable(inp, inp.streams.video[0], lim, label)
            finally:
                inp.close()
        _score(path if in_memory else Path(path), detector, res, want, sample_fps, max_faces, progress, lim, label)
        if annotate is not None and (res.error is None or res.error["code"] == "detect.no_face"):
            res.annotated = write_annotated(Path(path), res, Path(annotate), limits=lim, progress=progress)
    except DhsError as e:
        if res.error is None or res.error["code"] == "detect.no_face":
            res.error = e.to_dict()
    except ImportError as e:  # reconstruct's MissingExtra: the faces extra (mediapipe) is not installed
        res.error = _video_error("detect.missing_extra", str(e).splitlines()[0] if str(e) else type(e).__name__)
    except Exception as e:  # a model bug must not kill a batch
        res.error = _video_error("detect.internal",
                                 f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    res.seconds = round(time.perf_counter() - t_start, 3)
    return res


def _score(path, detector, res: VideoScore, max_frames: int, sample_fps, max_faces: int, progress,
           lim: Limits, label: str) -> None:
    import av

    from .metrics import video_scores
    from .score import face_crops

    if isinstance(path, Path):
        media.check_input_path(path)
        src = path
    else:  # bytes: a file object named like the file, so that messages name it
        src = io.BytesIO(path)
        src.name = label
    inp, _ = open_video(src)
    try:
        vin = inp.streams.video[0]
        cw, ch = vin.codec_context.width, vin.codec_context.height
        check_frame_pixels(cw, ch, lim, label)  # from the header, before any frame is decoded
        configure_decoder(vin, lim)
        duration, count, fps, start = _probe(inp, vin)
        plan = sampling_plan(duration, count, max_frames=max_frames, sample_fps=sample_fps, fps=fps)
        plan["fps"] = fps
        keyframes = _keyframes(vin) if plan["rule"] == "rate" else []
        res.fps = round(fps, 4) if fps else None
        res.duration = round(duration, 4) if duration else None
        reader = _Reader(inp, vin, lim, label, res.notes)
        counts = {"t0": start}
        tracker = _tracker(plan, fps)
        per_track: dict[int, list] = {}
        pending: list[tuple[int, float, object]] = []
        crops: list[np.ndarray] = []

        def flush():
            if not crops:
                return
            probs = detector.predict_proba(np.concatenate(crops))
            for (tid, t, face), p in zip(pending, probs):
                per_track.setdefault(tid, []).append((t, float(p), face.box, float(face.score)))
            pending.clear()
            crops.clear()

        bar = _progress_bar(progress, count if plan["rule"] == "every frame" else plan["n"], "detect video")
        try:
            for frame, t in _sampled(reader, plan, start, keyframes, counts):
                rgb, rot = upright_rgb(frame)
                del frame
                if res.width is None:
                    res.height, res.width = rgb.shape[:2]
                    res.rotation = rot
                res.frames_sampled += 1
                faces = detect_video_faces(rgb, max_faces=max_faces)
                if faces:
                    res.frames_with_faces += 1
                    c = face_crops(rgb, faces)
                    for (tid, face) in tracker.update(faces):
                        pending.append((tid, t, face))
                    crops.append(c)
                    if len(pending) >= BATCH:
                        flush()
                else:
                    tracker.update([])
                if bar is not None:
                    bar.update(1)
            flush()
        except av.FFmpegError as e:  # the decoder gave up on the rest of the stream
            res.notes.append(_limits.note("input.decode_stopped",
                                          f"decoding stopped: {str(e).splitlines()[0] if str(e) else type(e).__name__}"))
            flush()
        finally:
            if bar is not None:
                bar.close()
        res.frames_decoded, res.frames_skipped = reader.decoded, reader.skipped
        res.start_time = round(float(counts.get("t0") or 0.0), 6)
        if counts.get("more"):
            res.notes.append(_limits.note("limit.max_frames", f"the video has more than the {max_frames} frames "
                                          f"its header announced; scored the first {max_frames}"))
        res.sampling = {"rule": plan["rule"], "max_frames": max_frames,
                        "step": None if plan["step"] is None else round(plan["step"], 6),
                        "sample_fps": sample_fps, "seeks": reader.seeks}
        res.aggregation = {"track": "mean of per-frame P(fake)", "min_track_frames": MIN_TRACK_FRAMES,
                           "video": "max over counted tracks"}
    finally:
        inp.close()
    if res.frames_decoded == 0:
        raise InputError(f"{label} has no decodable video frames", code="input.no_frames")
    tracks = []
    for tid in sorted(per_track):
        entries = sorted(per_track[tid], key=lambda e: e[0])
        scores = [e[1] for e in entries]
        worst = int(np.argmax(scores))
        tracks.append(TrackScore(
            id=int(tid), frames=len(entries), first_time=round(entries[0][0], 4), last_time=round(entries[-1][0], 4),
            score=round(float(video_scores(scores, "mean")), 6), max_score=round(max(scores), 6), counted=False,
            detection_score=round(float(np.mean([e[3] for e in entries])), 4),
            box=[round(float(v), 1) for v in entries[worst][2]],
            timeline=[[round(e[0], 4), round(e[1], 6), [round(float(v), 1) for v in e[2]]] for e in entries]))
    long_enough = [tr for tr in tracks if tr.frames >= MIN_TRACK_FRAMES] or tracks
    for tr in long_enough:
        tr.counted = True
    res.tracks = tracks
    if long_enough:
        res.score = max(tr.score for tr in long_enough)
    elif res.error is None:
        res.error = _video_error("detect.no_face", f"no face found in {res.frames_sampled} sampled frames")


class _CallbackBar:
    """``progress(done, total)`` called as frames go by (the web service's job progress)."""

    def __init__(self, fn, total):
        self.fn, self.total, self.done = fn, int(total or 0), 0

    def update(self, n: int = 1) -> None:
        self.done += n
        self.fn(self.done, self.total)

    def close(self) -> None:
        pass


def _progress_bar(progress, total, desc: str):
    """None, a tqdm bar on stderr (``progress=True``) or a callback adapter (``progress`` callable)."""
    if callable(progress):
        return _CallbackBar(progress, total)
    if progress:
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, unit="frame")
    return None


# ----------------------------------------------------------------------------- annotation


def score_color(score: float) -> tuple[int, int, int]:
    """Green (0) -> yellow (0.5) -> red (1)."""
    s = min(1.0, max(0.0, float(score)))
    return int(round(230 * min(1.0, 2 * s))), int(round(210 * min(1.0, 2 * (1 - s)))), 30


def _text_mid(d, x: float, y: float, text: str, fill, font) -> None:
    """Text whose left edge is at x and whose middle is at y (no anchors: bitmap fonts lack them)."""
    b = d.textbbox((0, 0), text, font=font)
    d.text((x - b[0], y - (b[1] + b[3]) / 2), text, fill=fill, font=font)


_TRACK_COLORS = [(80, 160, 255), (255, 110, 220), (80, 230, 230), (255, 170, 60), (170, 120, 255),
                 (240, 240, 90), (120, 255, 140), (255, 255, 255)]


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: one bitmap size
        return ImageFont.load_default()


class _Annotator:
    """Draws boxes (coloured by score, labelled with the track id and the frame's score) and a
    strip under the frame with each track's score so far against time."""

    def __init__(self, res: VideoScore, width: int, height: int):
        self.w, self.h = width, height
        self.strip = max(64, int(round(height * 0.2)))
        self.strip += self.strip % 2
        ts = sorted(e[0] for tr in res.tracks for e in tr.timeline)
        gaps = np.diff(np.unique(np.asarray(ts))) if len(ts) > 1 else np.array([])
        frame_dt = 1.0 / res.fps if res.fps else 1 / 25
        step = float(np.median(gaps)) if gaps.size else frame_dt
        self.max_gap = max(3 * step, 0.5)  # boxes are interpolated across gaps up to this (s)
        self.hold = max(0.5 * step, 1.5 * frame_dt)  # shown this long around a lone sample
        self.duration = max(res.duration or 0.0, ts[-1] if ts else 0.0, 1e-3)
        self.tracks = []
        for i, tr in enumerate(res.tracks):
            t = np.array([e[0] for e in tr.timeline], dtype=np.float64)
            s = np.array([e[1] for e in tr.timeline], dtype=np.float64)
            b = np.array([e[2] for e in tr.timeline], dtype=np.float64).reshape(-1, 4)
            self.tracks.append((tr.id, t, s, b, _TRACK_COLORS[i % len(_TRACK_COLORS)]))
        self.lw = max(2, int(round(height / 270)))
        self.font = _font(max(11, int(round(height / 36))))
        self.small_size = max(10, int(round(self.strip / 9)))
        self.small = _font(self.small_size)
        self.video_score = res.score

    def _at(self, t: np.ndarray, s: np.ndarray, b: np.ndarray, now: float):
        """(box, score) of a track at time ``now`` (interpolated between close samples), or None."""
        if now < t[0] - self.hold or now > t[-1] + self.hold:
            return None
        i = int(np.searchsorted(t, now, side="right")) - 1
        if i < 0:
            return b[0], s[0]
        if i >= len(t) - 1:
            return (b[i], s[i]) if now - t[i] <= self.hold else None
        t0, t1 = t[i], t[i + 1]
        if t1 - t0 <= self.max_gap:
            a = (now - t0) / max(t1 - t0, 1e-9)
            return b[i] * (1 - a) + b[i + 1] * a, s[i] * (1 - a) + s[i + 1] * a
        if now - t0 <= self.hold:
            return b[i], s[i]
        if t1 - now <= self.hold:
            return b[i + 1], s[i + 1]
        return None

    def draw(self, rgb: np.ndarray, now: float) -> np.ndarray:
        from PIL import Image, ImageDraw

        canvas = Image.new("RGB", (self.w, self.h + self.strip), (22, 22, 26))
        if rgb.shape[0] != self.h or rgb.shape[1] != self.w:  # a stream whose size changes
            canvas.paste(Image.fromarray(rgb).resize((self.w, self.h), Image.BILINEAR))
        else:
            canvas.paste(Image.fromarray(rgb))
        d = ImageDraw.Draw(canvas)
        for tid, t, s, b, _ in self.tracks:
            got = self._at(t, s, b, now)
            if got is None:
                continue
            box, score = got
            col = score_color(score)
            x0, y0, x1, y1 = (float(v) for v in box)
            d.rectangle([x0, y0, x1, y1], outline=col, width=self.lw)
            text = f"#{tid} {score:.2f}"
            tb = d.textbbox((0, 0), text, font=self.font)
            tw, th = tb[2] - tb[0] + 6, tb[3] - tb[1] + 6
            ty = y0 - th if y0 - th >= 0 else min(y1, self.h - th)
            d.rectangle([x0, ty, x0 + tw, ty + th], fill=col)
            d.text((x0 + 3 - tb[0], ty + 3 - tb[1]), text, fill=(0, 0, 0), font=self.font)
        self._strip(d, now)
        return np.asarray(canvas)

    def _strip(self, d, now: float) -> None:
        top, fs = self.h, self.small_size
        left, right = int(d.textlength("0.5", font=self.small)) + 14, self.w - 12
        y0, y1 = top + fs // 2 + 4, top + self.strip - fs - 8  # score 1 at y0, 0 at y1; the caption below

        def X(t):
            return left + (right - left) * min(max(t / self.duration, 0.0), 1.0)

        def Y(s):
            return y1 - (y1 - y0) * float(s)

        d.rectangle([left, y0, right, y1], outline=(90, 90, 96))
        d.line([left, Y(0.5), right, Y(0.5)], fill=(70, 70, 76))
        for v in (0.0, 0.5, 1.0):
            _text_mid(d, 6, Y(v), f"{v:.1f}", (170, 170, 170), self.small)
        d.text((left, y1 + 4), f"P(fake) per face track    t = {now:.1f} s of {self.duration:.1f} s",
               fill=(190, 190, 190), font=self.small)
        width = max(2, self.lw - 1)
        for tid, t, s, b, col in self.tracks:
            n = int(np.searchsorted(t, now, side="right"))
            if n == 0:
                continue
            pts = [(X(t[j]), Y(s[j])) for j in range(n)]
            if len(pts) > 1:
                d.line(pts, fill=col, width=width)
            px, py = pts[-1]
            r = width + 2
            d.ellipse([px - r, py - r, px + r, py + r], fill=col)
            _text_mid(d, px + r + 3, py, f"#{tid}", col, self.small)
        cx = X(now)
        d.line([cx, y0, cx, y1], fill=(235, 235, 235), width=1)


def _check_annotatable(inp, vin, lim: Limits, label: str) -> int | None:
    """The stream's frame count (None when unknown); InputError ``limit.sign_frames`` when it is
    over the number of frames an annotated video re-encodes."""
    count = _probe(inp, vin)[1]
    cap = int(lim.max_sign_frames)
    if count is not None and count > cap:
        raise InputError(f"{label}: about {count} frames; an annotated video re-encodes at most {cap} "
                         f"({lim.env_var('max_sign_frames')}); use the JSON timeline instead",
                         code="limit.sign_frames")
    return count


def write_annotated(path, result: VideoScore, out, *, limits: Limits | None = None, progress=False) -> dict:
    """Write ``path`` with ``result`` drawn on it to the MP4 ``out``, atomically: every decoded
    frame turned upright, each face's box coloured by its score (green -> red) with its track id,
    a strip below with every track's score so far; H.264 yuv420p at the input's timestamps (a
    variable frame rate stays variable), the input's audio copied (re-encoded to AAC when MP4 does
    not take its codec). Corrupt frames are skipped. Returns ``{path, frames, audio}``.

    Re-encodes every frame, so it is bounded by ``limits.max_sign_frames`` (the embedder's bound on
    re-encoding; ``limit.sign_frames``) besides the frame-size limit. OutputError / InputError
    (one line) on failure, with nothing written."""
    import av

    lim = _limits.resolve(limits)
    out = media.check_output_path(out, src=path)
    label = result.path or str(path)
    inp, _ = open_video(Path(path))
    written = skipped = 0
    try:
        vin = inp.streams.video[0]
        ain = inp.streams.audio[0] if inp.streams.audio else None
        cw, ch = vin.codec_context.width, vin.codec_context.height
        check_frame_pixels(cw, ch, lim, label)
        configure_decoder(vin, lim)
        count = _check_annotatable(inp, vin, lim, label)
        cap = int(lim.max_sign_frames)
        w, h = result.width or cw, result.height or ch
        if not result.width and result.rotation in (90, 270):
            w, h = h, w
        ann = _Annotator(result, w - w % 2, h - h % 2)
        t0 = result.start_time
        rate = vin.average_rate or vin.guessed_rate or 25
        bar = _progress_bar(progress, count, "annotate")
        with media.atomic_target(out) as tmp:
            o = av.open(str(tmp), "w", format="mp4")
            try:
                vout = o.add_stream("libx264", rate=rate)
                vout.width, vout.height, vout.pix_fmt = ann.w, ann.h + ann.strip, "yuv420p"
                vout.options = {"crf": "23", "preset": "veryfast"}
                vout.codec_context.time_base = vin.time_base
                audio = AudioPassthrough(o, ain)
                last_pts = None
                streams = [vin] + ([ain] if ain is not None else [])
                for packet in inp.demux(*streams):
                    if packet.stream.type == "audio":
                        audio.mux(packet)
                        continue
                    try:
                        frames = packet.decode()
                    except av.FFmpegError:
                        skipped += 1
                        continue
                    for f in frames:
                        check_frame_pixels(f.width, f.height, lim, label)
                        if written >= cap:
                            raise InputError(f"{label}: more than {cap} frames; an annotated video re-encodes at "
                                             f"most {cap} ({lim.env_var('max_sign_frames')})",
                                             code="limit.sign_frames")
                        pts = f.pts if f.pts is not None else (0 if last_pts is None else last_pts + 1)
                        if last_pts is not None and pts <= last_pts:
                            skipped += 1  # a repeated timestamp: the encoder needs them increasing
                            continue
                        now = (f.time - t0) if f.time is not None else written / float(rate)
                        rgb, _ = upright_rgb(f)
                        nf = av.VideoFrame.from_ndarray(ann.draw(rgb, now), format="rgb24")
                        nf.pts, nf.time_base = pts, vin.time_base
                        for op in vout.encode(nf):
                            o.mux(op)
                        last_pts = pts
                        written += 1
                        if bar is not None:
                            bar.update(1)
                for op in vout.encode():
                    o.mux(op)
                audio.flush()
            except av.FFmpegError as e:
                raise InputError(f"cannot write the annotated video for {label}: "
                                 f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
            finally:
                o.close()
                if bar is not None:
                    bar.close()
            if written == 0:
                raise InputError(f"{label} has no decodable video frames", code="input.no_frames")
    finally:
        inp.close()
    return {"path": str(out), "frames": written, "frames_skipped": skipped, "audio": audio.how,
            "width": ann.w, "height": ann.h + ann.strip}
