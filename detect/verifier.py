"""``detect.verify(path, options) -> Verdict``: the one way to verify a file.

The file is read once (``provenance.media.read_snapshot``); provenance gathers its evidence from
those bytes (C2PA, watermark, registry); the content check runs on the faces (not part of this
release yet: the section says so); ``detect.fuse`` decides the label and its reasons. The
:class:`Verdict` is a typed, versioned dataclass with a JSON round trip; the CLI, the HTML report
and the pipelines all show that one object.
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
    Section,
    WatermarkEvidence,
    default_trust_anchors,
    gather,
    provenance_from_dict,
)

from . import fuse

SCHEMA = "dhstudio.verdict/2"
# older schemas from_dict still reads (/1: the same keys, no "limits", no signed-certificate-expired)
READABLE_SCHEMAS = ("dhstudio.verdict/1", SCHEMA)

__all__ = ["SCHEMA", "VerifyOptions", "ContentSection", "Verdict", "verify"]


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


@dataclass
class ContentSection(Section):
    """The content check (face-forgery detectors). Not run until a detector is installed."""

    status: str = "not_run"  # "not_run" | "ok" | "error"
    detector: str | None = None
    version: str | None = None
    score: float | None = None
    faces: list = field(default_factory=list)
    frames: list = field(default_factory=list)
    error: dict | None = None

    @classmethod
    def not_available(cls) -> "ContentSection":
        return cls(error={"code": "content.not_available",
                          "message": "face-forgery content detectors are not part of this release yet"})


@dataclass
class Verdict:
    """What dhstudio concludes about one file (schema ``dhstudio.verdict/2``)."""

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
    (missing, a folder, a FIFO, over the file-size limit); everything else is in the verdict.
    """
    opts = options or VerifyOptions()
    t0 = time.perf_counter()
    snap = media.read_snapshot(Path(path), max_bytes=opts.max_file_bytes)
    anchors = opts.trust_anchors
    if anchors is None and opts.use_default_anchors:
        anchors = default_trust_anchors()
    ev: Evidence = gather(snap, trust_anchors=anchors, registry=opts.registry)
    content = ContentSection.not_available()
    label, reasons = fuse.decide(ev, content)
    return Verdict(
        file=ev.file, provenance=ev.provenance, watermark=ev.watermark, registry=ev.registry, content=content,
        label=label, reasons=reasons, label_description=fuse.LABELS.get(label, ""), limits=ev.limits,
        trust_anchors=ev.trust_anchors, elapsed_s=round(time.perf_counter() - t0, 3),
    )
