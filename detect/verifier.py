"""``detect.verify(path, options) -> Verdict``: the one way to verify a file.

The file is read once (``provenance.media.read_snapshot``); provenance gathers its evidence from
those bytes (C2PA, watermark, registry); the content check runs the face-forgery detector on the
faces in those same bytes (``detect.content``: images and videos; audio and meshes are
``not_applicable``); ``detect.fuse`` decides the label and its reasons, provenance first, content
after. The :class:`Verdict` is a typed, versioned dataclass with a JSON round trip; the CLI, the
HTML report and the pipelines all show that one object.

Schema ``dhstudio.verdict/3`` (this release): the ``content`` section gained status
ok / error / not_run / not_applicable, the detector's version, threshold and calibration, faces,
tracks with timelines, video sampling facts, key frames and notes; the labels
``no-provenance-looks-manipulated``, ``no-provenance-no-evidence`` and
``signed-capture-looks-manipulated`` are new. ``from_dict`` still reads /1 and /2 (their content
section was always ``not_run``).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from provenance import media
from provenance.c2pa_io import ProvenanceResult
from provenance.evidence import (
    Evidence,
    FileInfo,
    RegistryEvidence,
    WatermarkEvidence,
    default_trust_anchors,
    gather,
    provenance_from_dict,
)

from . import fuse
from .content import MAX_FACES, ContentSection, check_content

SCHEMA = "dhstudio.verdict/3"
# older schemas from_dict still reads (/1: the same keys, no "limits", no signed-certificate-expired;
# /2: the content section was always not_run, with a "frames" list that /3 calls "tracks")
READABLE_SCHEMAS = ("dhstudio.verdict/1", "dhstudio.verdict/2", SCHEMA)

__all__ = ["SCHEMA", "READABLE_SCHEMAS", "VerifyOptions", "ContentSection", "Verdict", "verify"]


@dataclass
class VerifyOptions:
    """How to verify (every field has a safe default)."""

    trust_anchors: bytes | None = None
    """PEM trust anchors; None with ``use_default_anchors`` -> $DHSTUDIO_TRUST_ANCHORS or the local CA."""
    use_default_anchors: bool = True
    """False: trust only ``trust_anchors`` (nothing when it is None)."""
    registry: object = "default"
    """"default" (the SQLite registry in DHSTUDIO_HOME, if it exists), a path, a Registry, or None."""
    max_file_bytes: int | None = None
    """Refuse larger files (default $DHSTUDIO_MAX_FILE_BYTES or 2 GiB)."""
    content: bool = True
    """Run the face-forgery content check on images and videos (False: the section says not_run
    and the label is provenance's alone). Needs torch and the faces extra; without them the
    section is an error (``detect.missing_extra``) and the label is provenance's alone."""
    detector_weights: str | os.PathLike | None = None
    """Detector weights (safetensors); None: the shipped ``assets/detector_default.safetensors``.
    Its calibration record (``metadata["calibration"]``) gives the threshold; without one the
    score is reported but not weighed."""
    max_frames: int | None = None
    """Videos: frames scored at most (None: ``detect.video.DEFAULT_MAX_FRAMES``, 300; shorter
    clips are scored frame by frame, longer ones sampled evenly; capped by
    $DHSTUDIO_MAX_VERIFY_FRAMES)."""
    max_faces: int = MAX_FACES
    """Faces scored at most per image or video frame (the highest detection scores)."""
    content_visuals: bool = False
    """Also keep what the HTML report draws: up to 4 key frames as small JPEG data URIs with their
    faces' boxes, and each face's localisation map at 16 x 16 (off by default: the JSON stays small)."""
    annotate: str | os.PathLike | None = None
    """Also write the annotated file here (atomically): for a video the MP4 with each face's box
    and score and the score strip (``detect.video.write_annotated``), for an image a JPEG with the
    faces' boxes and scores (``detect.report.annotated_image``). Only when faces were scored; a
    failure to write it is a note in the content section, never the verdict's."""
    progress: object = None
    """Videos: a callable ``progress(done, total)`` called as frames are scored (then annotated)."""


@dataclass
class Verdict:
    """What dhstudio concludes about one file (schema ``dhstudio.verdict/3``)."""

    file: FileInfo
    provenance: ProvenanceResult
    watermark: WatermarkEvidence
    registry: RegistryEvidence
    content: ContentSection
    label: str
    reasons: list[str]
    label_description: str = ""
    limits: list[dict] = field(default_factory=list)
    trust_anchors: str = "none"
    elapsed_s: float = 0.0
    schema: str = SCHEMA

    def to_dict(self) -> dict:
        return {
            "schema": self.schema,
            "file": self.file.to_dict(),
            "provenance": self.provenance.to_dict(),
            "watermark": self.watermark.to_dict(),
            "registry": self.registry.to_dict(),
            "content": self.content.to_dict(),
            "label": self.label,
            "label_description": self.label_description,
            "reasons": list(self.reasons),
            "limits": [dict(x) for x in self.limits],
            "trust_anchors": self.trust_anchors,
            "elapsed_s": self.elapsed_s,
        }

    def to_json(self, **kw) -> str:
        return json.dumps(self.to_dict(), default=str, **kw)

    @classmethod
    def from_dict(cls, d: dict) -> "Verdict":
        schema = d.get("schema")
        if schema not in READABLE_SCHEMAS:
            raise ValueError(f"unknown verdict schema {schema!r} (this dhstudio reads {', '.join(READABLE_SCHEMAS)})")
        return cls(
            file=FileInfo.from_dict(d["file"]),
            provenance=provenance_from_dict(d.get("provenance") or {}),
            watermark=WatermarkEvidence.from_dict(d.get("watermark") or {}),
            registry=RegistryEvidence.from_dict(d.get("registry") or {}),
            content=ContentSection.from_dict(d.get("content") or {}),
            label=d["label"],
            reasons=list(d.get("reasons") or []),
            label_description=d.get("label_description", ""),
            limits=list(d.get("limits") or []),
            trust_anchors=d.get("trust_anchors", "none"),
            elapsed_s=float(d.get("elapsed_s") or 0.0),
            schema=SCHEMA,
        )

    @classmethod
    def from_json(cls, text: str) -> "Verdict":
        return cls.from_dict(json.loads(text))


def verify(path: str | os.PathLike, options: VerifyOptions | None = None) -> Verdict:
    """Verify the file at ``path``: provenance evidence + content check -> one :class:`Verdict`.

    Raises ``provenance.errors.InputError`` only when the path cannot be examined at all
    (missing, a folder, a FIFO, over the file-size limit); everything else is in the verdict
    (a content check that cannot run, too: its section says why and the label is provenance's).
    """
    opts = options or VerifyOptions()
    t0 = time.perf_counter()
    snap = media.read_snapshot(Path(path), max_bytes=opts.max_file_bytes)
    anchors = opts.trust_anchors
    if anchors is None and opts.use_default_anchors:
        anchors = default_trust_anchors()
    ev: Evidence = gather(snap, trust_anchors=anchors, registry=opts.registry)
    content = check_content(snap, opts)
    label, reasons = fuse.decide(ev, content)
    return Verdict(
        file=ev.file, provenance=ev.provenance, watermark=ev.watermark, registry=ev.registry, content=content,
        label=label, reasons=reasons, label_description=fuse.LABELS.get(label, ""),
        limits=fuse.limits_applied(ev, content), trust_anchors=ev.trust_anchors,
        elapsed_s=round(time.perf_counter() - t0, 3),
    )
