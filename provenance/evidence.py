"""Provenance evidence for one file: the C2PA section, the watermark section, the registry section.

provenance gathers evidence and decides nothing: the label and its reasons are ``detect.fuse``'s.
:func:`gather` works on a :class:`~provenance.media.Snapshot` (the file's bytes read once), so
every section speaks of the same bytes. Every section that could not be computed carries
``error = {"code", "message"}``; nothing is silently empty.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

from . import media
from .c2pa_io import ProvenanceResult, read_manifest_store, read_snapshot
from .errors import DhsError

__all__ = ["Section", "FileInfo", "WatermarkEvidence", "RegistryEvidence", "Evidence", "gather",
           "default_trust_anchors", "open_registry", "provenance_from_dict"]


def _err(code: str, message: str) -> dict:
    return {"code": code, "message": message}


def _fields_of(cls, d: dict) -> dict:
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in (d or {}).items() if k in names}


class Section:
    """A verdict section: a dataclass with a JSON-ready dict form (unknown keys are ignored)."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict):
        return cls(**_fields_of(cls, d))


@dataclass
class FileInfo(Section):
    path: str
    sha256: str | None
    media_type: str | None
    size: int


@dataclass
class WatermarkEvidence(Section):
    """What the invisible-watermark decoder found (``id`` is the 48-bit registry id)."""

    found: bool = False
    id: int | None = None
    id_hex: str | None = None
    confidence: float = 0.0
    bit_errors: int | None = None
    false_positive_bound: float | None = None
    algorithm: str | None = None
    detail: dict = field(default_factory=dict)
    error: dict | None = None


@dataclass
class RegistryEvidence(Section):
    """The registry lookup: by watermark id, else by the file's sha256."""

    hit: bool = False
    lookup: str | None = None  # "watermark-id" | "asset-sha256" | None
    record: dict | None = None
    asset_unchanged: bool | None = None
    manifest_summary: dict | None = None
    error: dict | None = None


def provenance_from_dict(d: dict) -> ProvenanceResult:
    return ProvenanceResult(**_fields_of(ProvenanceResult, d))


@dataclass
class Evidence:
    file: FileInfo
    provenance: ProvenanceResult
    watermark: WatermarkEvidence
    registry: RegistryEvidence
    trust_anchors: str = "none"  # "configured" | "none"
    limits: list[dict] = field(default_factory=list)  # [{"code": "limit.*", "message"}] that applied


# --------------------------------------------------------------------------- trust anchors, registry


def default_trust_anchors() -> bytes | None:
    """Trust anchors when the caller gives none: $DHSTUDIO_TRUST_ANCHORS, else the local studio CA."""
    env = os.environ.get("DHSTUDIO_TRUST_ANCHORS")
    if env:
        return media.read_regular(Path(env), what="trust anchors")
    try:
        from .keys import trust_anchor_pem

        return trust_anchor_pem()
    except Exception:
        return None


def open_registry(registry):
    """``"default"`` -> the SQLite registry in DHSTUDIO_HOME when it exists; a path -> that file
    (a ``postgresql://`` URL -> that database);
    a Registry -> itself; None -> no lookup. Returns ``(registry or None, error dict or None)``."""
    if registry is None:
        return None, _err("registry.disabled", "no registry configured for this verification")
    try:
        from .registry import Registry, default_path

        if isinstance(registry, str) and registry == "default":
            p = default_path()
            if not p.exists():
                return None, _err("registry.absent", f"no registry at {p}")
            return Registry(p), None
        if isinstance(registry, (str, os.PathLike)):  # a path, or a postgresql:// URL kept as it is
            return Registry(registry), None
        return registry, None
    except DhsError as e:
        return None, e.to_dict()


# --------------------------------------------------------------------------- sections


def _provenance_section(snap: media.Snapshot, trust_anchors: bytes | None) -> ProvenanceResult:
    try:
        return read_snapshot(snap, trust_anchors=trust_anchors)
    except DhsError as e:
        return ProvenanceResult(error=e.to_dict())
    except Exception as e:  # a reader bug must not kill the verdict
        return ProvenanceResult(error=_err("provenance.internal", f"{type(e).__name__}: {e}"))


def _watermark_section(snap: media.Snapshot) -> WatermarkEvidence:
    mt = snap.media_type
    try:
        if mt in media.IMAGE_TYPES:
            from .watermark import image as wm_image

            res, alg = wm_image.decode_file(snap.data), wm_image.ALGORITHM
        elif mt in media.VIDEO_TYPES:
            from .watermark import image as wm_image
            from .watermark import video as wm_video

            res, alg = wm_video.decode_video(snap.data), wm_image.ALGORITHM
        elif mt in media.MESH_TYPES:
            from .watermark import mesh as wm_mesh

            res = wm_mesh.decode_mesh_file(snap.data, media_type=mt)
            alg = res.to_dict()["algorithm"]  # the version that was read (v2, or v1)
        elif mt is None:
            return WatermarkEvidence(error=_err("watermark.unsupported_media", "unknown media type: not decoded"))
        else:
            return WatermarkEvidence(error=_err("watermark.unsupported_media", f"no watermark scheme for {mt}"))
    except DhsError as e:
        return WatermarkEvidence(error=e.to_dict())
    except Exception as e:
        return WatermarkEvidence(error=_err("watermark.decode_failed", f"{type(e).__name__}: {e}"))
    d = res.to_dict()
    d["algorithm"] = alg
    wm = WatermarkEvidence.from_dict(d)
    if wm.found and wm.id is not None:
        wm.id_hex = media.wm_id_hex(wm.id)
    return wm


def _registry_section(wm: WatermarkEvidence, registry, trust_anchors: bytes | None, file_sha: str) -> RegistryEvidence:
    out = RegistryEvidence()
    try:
        rec, how = None, None
        if wm.found and wm.id is not None:
            rec, how = registry.get(int(wm.id)), "watermark-id"
        if rec is None:
            rec = registry.find_by_sha256(file_sha)
            how = "asset-sha256" if rec is not None else how
    except DhsError as e:
        out.error = e.to_dict()
        return out
    out.lookup = how
    if rec is None:
        return out
    out.hit = True
    out.record = rec.summary()
    out.asset_unchanged = rec.asset_sha256 == file_sha
    if rec.manifest:
        try:
            out.manifest_summary = read_manifest_store(rec.manifest, trust_anchors=trust_anchors).to_dict()
        except DhsError as e:
            out.error = e.to_dict()
        except Exception as e:
            out.error = _err("registry.manifest_unreadable", f"{type(e).__name__}: {e}")
    return out


def gather(snap: media.Snapshot, *, trust_anchors: bytes | None, registry="default") -> Evidence:
    """The three provenance sections for the bytes in ``snap``.

    ``registry``: see :func:`open_registry`. ``trust_anchors``: PEM bytes, or None to trust nothing.
    """
    info = FileInfo(str(snap.path), snap.sha256, snap.media_type, snap.size)
    reg_obj, reg_err = open_registry(registry)
    if snap.size == 0:
        empty = _err("input.empty", "file is empty")
        prov = ProvenanceResult(error=empty)
        wm = WatermarkEvidence(error=empty)
        reg = RegistryEvidence(error=reg_err) if reg_err and reg_err["code"] != "registry.disabled" else RegistryEvidence()
    else:
        if snap.media_type in ("model/ply", "model/obj"):
            fmt = snap.media_type.split("/")[1].upper()
            prov = ProvenanceResult(error=_err(
                "provenance.format_without_c2pa",
                f"{fmt} has no C2PA embedding (dhstudio signs meshes as GLB with a .c2pa sidecar)"))
        else:
            prov = _provenance_section(snap, trust_anchors)
        wm = _watermark_section(snap)
        if reg_err is not None:
            reg = RegistryEvidence(error=reg_err)
        else:
            reg = _registry_section(wm, reg_obj, trust_anchors, snap.sha256)
    limits = list((wm.detail or {}).get("limits") or [])
    if wm.error and str(wm.error.get("code", "")).startswith("limit."):
        limits.append(dict(wm.error))
    return Evidence(info, prov, wm, reg, "configured" if trust_anchors else "none", limits)

