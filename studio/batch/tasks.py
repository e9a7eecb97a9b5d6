"""What one batch worker does to one file: verify, detect or sign it, and return one row.

A :class:`FileTask` is built once per worker process (local pool process or Ray actor) from a
:class:`TaskSpec` (plain, picklable data): the signing identity, the registry and the detector are
loaded there once, not per file. ``FileTask(item)`` never raises for a problem with the file: the
row says ``status="error"`` with an error code and a one-line message. Only interrupts
(KeyboardInterrupt, SystemExit) go through.

Rows are plain dicts with the keys of :data:`COLUMNS` (the output's columns, in order):

- every op: ``path`` (absolute, as walked: symlinks not resolved), ``sha256`` and ``size`` of the
  bytes processed (None when the file could not be read), ``media_type`` (sniffed by
  ``provenance.media``), ``op``, ``status`` (``ok`` / ``error``), ``error_code``,
  ``error_message`` (one line), ``seconds`` (wall time of this file in the worker);
- verify: ``label``, ``reasons`` and ``result_json``: the whole Verdict JSON
  (``detect.Verdict.from_json`` reads it back). An ``unreadable`` verdict is a row with status
  ``error`` (its code: the first section's error code);
- detect: ``score`` (P(fake) of the most suspicious face / track), ``threshold`` (the detector's
  calibrated one, None when uncalibrated), ``faces`` (faces or video tracks), ``detector``,
  ``label`` (``looks-manipulated`` / ``looks-real`` / ``no-face`` / ``uncalibrated``), ``reasons``
  (the scorer's note, e.g. no face found) and ``result_json`` (what ``dhstudio detect --json``
  prints);
- sign: ``signed_path``, ``watermark_id`` (12 hex digits), ``manifest_bytes`` and ``result_json``
  (``PublishResult.to_dict()``).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

OPS = ("verify", "detect", "sign")

# name -> kind (the store maps kinds to Arrow types); the output's columns, in this order
COLUMNS: dict[str, str] = {
    "path": "str",
    "sha256": "str",
    "size": "int",
    "media_type": "str",
    "op": "str",
    "status": "str",
    "error_code": "str",
    "error_message": "str",
    "seconds": "float",
    "label": "str",
    "reasons": "list[str]",
    "result_json": "str",
    "score": "float",
    "threshold": "float",
    "faces": "int",
    "detector": "str",
    "signed_path": "str",
    "watermark_id": "str",
    "manifest_bytes": "int",
}


@dataclass
class TaskSpec:
    """Everything a worker needs to process files of one batch (plain data: pickled to workers)."""

    op: str
    """verify, detect or sign."""
    # verify
    content: bool = True
    """verify: run the face-forgery content check."""
    trust_anchors: bytes | None = None
    """verify: PEM trust anchors (None: the defaults, unless ``use_default_anchors`` is False)."""
    use_default_anchors: bool = True
    registry: str | None = "default"
    """verify: "default" (the registry in DHSTUDIO_HOME), a SQLite path, or None (no lookup)."""
    max_frames: int | None = None
    """verify / detect, video: frames scored at most."""
    # verify + detect
    weights: str | None = None
    """Detector weights (None: the shipped default)."""
    # sign
    generation: object = None
    """sign: the ``provenance.manifest.GenerationSpec`` every file is signed with."""
    watermark: bool = True
    passphrase: str | None = None
    """sign: passphrase of the signing key (read once by the driver; with ``--engine ray`` it travels
    to the actors in Ray's object store)."""


def empty_row(path: str, op: str) -> dict:
    row = dict.fromkeys(COLUMNS)
    row.update(path=path, op=op, status="error", reasons=[])
    return row


def _one_line(text) -> str:
    s = str(text).strip()
    return s.splitlines()[0] if s else ""


def error_row(path: str, op: str, code: str, message: str, **extra) -> dict:
    row = empty_row(path, op)
    row.update(extra)
    row.update(status="error", error_code=code, error_message=_one_line(message))
    return row


def _limit_threads() -> None:
    """One compute thread per worker: the pool, not the libraries, gives the parallelism."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = "1"
    import sys

    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)


def _warm_up(weights: str | None) -> None:
    """Load the face detector and the forgery detector now, when the worker starts, not on its
    first file: each row's ``seconds`` is then that file's own cost. A missing extra or bad weights
    are not raised here: the rows say what is missing."""
    try:
        import numpy as np

        from detect.content import load_detector_cached
        from reconstruct.faces import detect_faces

        detect_faces(np.zeros((64, 64, 3), np.uint8))
        getattr(load_detector_cached(weights).model, "name", None)  # the lazy model loads its weights
    except Exception:
        pass


class FileTask:
    """One worker's state for a batch: ``FileTask(spec)(item) -> row`` (see the module docstring).

    ``item`` is ``{"path": absolute path}``, plus ``"dst"`` (the signed output) for sign.
    """

    def __init__(self, spec: TaskSpec):
        _limit_threads()
        import importlib

        for mod in ("provenance.c2pa_io", "provenance.watermark.image"):  # now, not on the first file
            importlib.import_module(mod)  # (the watermark's scipy.fft alone takes half a second)
        self.spec = spec
        self.op = spec.op
        if spec.op == "verify":
            import detect

            registry = spec.registry
            if registry not in (None, "default"):
                from provenance.registry import Registry

                registry = Registry(registry)
            self._options = detect.VerifyOptions(trust_anchors=spec.trust_anchors,
                                                 use_default_anchors=spec.use_default_anchors,
                                                 registry=registry, content=spec.content,
                                                 detector_weights=spec.weights, max_frames=spec.max_frames)
            self._verify_fn = detect.verify
            if spec.content:
                _warm_up(spec.weights)
        elif spec.op == "detect":
            from detect.content import load_detector_cached

            self._det = load_detector_cached(spec.weights)
            self._info = {"name": self._det.info["name"], "weights_sha256": self._det.info["weights_sha256"]}
            _warm_up(spec.weights)
        elif spec.op == "sign":
            from provenance import keys
            from provenance.registry import Registry

            self._identity = keys.load_identity(passphrase=spec.passphrase, create=False)
            self._registry = Registry()
        else:
            raise ValueError(f"unknown batch op {spec.op!r}")

    def __call__(self, item: dict) -> dict:
        path = item["path"]
        row = empty_row(path, self.op)
        t0 = time.perf_counter()
        try:
            getattr(self, "_" + self.op)(item, row)
        except Exception as e:  # a bug must not stop the batch: the row says what happened
            from provenance.errors import DhsError

            if isinstance(e, DhsError):
                code, msg = e.code, e.message
            else:
                code, msg = "batch.internal", f"{type(e).__name__}: {_one_line(e)}"
            row.update(status="error", error_code=code, error_message=_one_line(msg))
        row["seconds"] = round(time.perf_counter() - t0, 4)
        return row

    # -- the ops ---------------------------------------------------------------------------

    def _verify(self, item: dict, row: dict) -> None:
        v = self._verify_fn(item["path"], self._options)
        d = v.to_dict()
        f = d["file"]
        row.update(sha256=f.get("sha256"), size=f.get("size"), media_type=f.get("media_type"),
                   label=v.label, reasons=[str(r) for r in v.reasons], result_json=v.to_json(), status="ok")
        if v.label == "unreadable":
            code = next((d[k]["error"]["code"] for k in ("provenance", "watermark", "content")
                         if isinstance(d.get(k), dict) and isinstance(d[k].get("error"), dict)
                         and d[k]["error"].get("code")), "verify.unreadable")
            row.update(status="error", error_code=code,
                       error_message=_one_line(v.reasons[0] if v.reasons else "the file could not be parsed"))

    def _detect(self, item: dict, row: dict) -> None:
        from provenance import media

        path = item["path"]
        snap = media.read_snapshot(path)
        row.update(sha256=snap.sha256, size=snap.size, media_type=snap.media_type,
                   threshold=self._det.threshold, detector=self._info["name"])
        mt = snap.media_type
        if mt in media.MESH_TYPES or mt in media.AUDIO_TYPES:
            row.update(error_code="detect.unsupported_media",
                       error_message=f"{mt} is not an image or a video: there are no faces to score")
            return
        if mt in media.VIDEO_TYPES:
            from detect.video import score_video

            r = score_video(snap.data, self._det.model, dict(self._info), max_frames=self.spec.max_frames,
                            path_label=path)
            n_faces = len(r.tracks)
        else:
            from detect.score import score_image

            r = score_image(snap.data, self._det.model, dict(self._info), path_label=path)
            n_faces = len(r.faces)
        err = r.error or {}
        row.update(score=r.score, faces=n_faces, result_json=json.dumps(r.to_dict(), default=str),
                   reasons=[_one_line(err["message"])] if err.get("message") else [])
        if r.score is None and err.get("code") not in (None, "detect.no_face"):
            row.update(error_code=err.get("code"), error_message=_one_line(err.get("message", "")))
            return
        row["status"] = "ok"
        if r.score is None:
            row["label"] = "no-face"
        elif self._det.threshold is None:
            row["label"] = "uncalibrated"
        else:
            row["label"] = "looks-manipulated" if r.score >= self._det.threshold else "looks-real"

    def _sign(self, item: dict, row: dict) -> None:
        from provenance import media
        from provenance.errors import OutputError
        from studio.pipelines.publish import publish

        path, dst = item["path"], Path(item["dst"])
        row.update(sha256=media.sha256_file(path), size=os.stat(path).st_size,
                   media_type=media.sniff_media_type(path))
        try:
            dst.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputError(f"cannot create {dst.parent}: {e.strerror}", code="output.unwritable") from None
        res = publish(path, dst, self.spec.generation, identity=self._identity, registry=self._registry,
                      watermark=self.spec.watermark)
        row.update(status="ok", media_type=res.media_type, signed_path=str(res.path),
                   watermark_id=media.wm_id_hex(res.watermark_id), manifest_bytes=res.manifest_bytes,
                   result_json=json.dumps(res.to_dict(), default=str))
