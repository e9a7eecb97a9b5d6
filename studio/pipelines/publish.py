"""Publish a generated file: watermark, C2PA-sign, register.

The one place that marks an output. Order matters: the watermark changes the
pixels, so it is embedded first; the C2PA manifest (which names the watermark
id in its soft-binding assertion) is then bound to the watermarked bytes; the
manifest store goes to the registry under the watermark id so ``verify`` can
recover it after a platform strips the manifest.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from provenance.errors import InputError, OutputError
from provenance.report import check_input_path, sha256_file, sniff_media_type

_IMAGE = {"image/jpeg", "image/png", "image/webp"}
_VIDEO = {"video/mp4"}
_SIGNABLE = _IMAGE | _VIDEO | {"audio/wav", "model/gltf-binary"}


@dataclass
class PublishResult:
    path: Path
    media_type: str
    watermark_id: int | None
    asset_sha256: str
    manifest_bytes: int
    signer: str
    sidecar: Path | None = None
    identity_created: bool = False

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["path"] = str(self.path)
        d["sidecar"] = str(self.sidecar) if self.sidecar else None
        d["watermark_id_hex"] = f"{self.watermark_id:012x}" if self.watermark_id is not None else None
        return d


def check_output_path(src: Path, dst: Path) -> None:
    """Refuse outputs that would destroy the input or cannot be written."""
    try:
        same = dst.exists() and os.path.samefile(src, dst)
    except OSError:
        same = False
    if same or src.resolve() == dst.resolve():
        raise OutputError(f"output {dst} is the input file; choose another output path", code="output.same_as_input")
    parent = dst.parent if str(dst.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"output directory {parent} does not exist", code="output.no_directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"output directory {parent} is not writable", code="output.unwritable")
    if dst.is_dir():
        raise OutputError(f"output {dst} is a directory", code="output.is_directory")


def publish(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    spec=None,
    *,
    identity=None,
    registry=None,
    watermark: bool = True,
    passphrase: str | None = None,
) -> PublishResult:
    """Watermark ``src`` (image/video), sign it into ``dst``, register the manifest.

    ``spec`` is a ``provenance.manifest.GenerationSpec`` (defaults to a
    procedural-generator spec). ``identity`` defaults to the local signing
    identity, created on first use (``result.identity_created`` tells).
    """
    from provenance import c2pa_io, keys
    from provenance.manifest import GenerationSpec
    from provenance.registry import Registry

    src, dst = Path(src), Path(dst)
    check_input_path(src)
    check_output_path(src, dst)
    if src.stat().st_size == 0:
        raise InputError(f"{src}: file is empty", code="input.empty")
    media_type = sniff_media_type(src)
    if media_type not in _SIGNABLE:
        raise InputError(
            f"{src}: unsupported or unrecognised file type ({media_type or 'unknown bytes'}); "
            "dhstudio signs JPEG, PNG, WebP, MP4, WAV and GLB",
            code="input.unsupported_type",
        )
    expected = {
        "image/jpeg": {".jpg", ".jpeg"}, "image/png": {".png"}, "image/webp": {".webp"},
        "video/mp4": {".mp4", ".m4v"}, "audio/wav": {".wav"}, "model/gltf-binary": {".glb"},
    }[media_type]
    if dst.suffix.lower() not in expected:
        raise OutputError(
            f"output {dst} must keep the input's format ({media_type}: {'/'.join(sorted(expected))})",
            code="output.wrong_extension",
        )

    spec = dataclasses.replace(spec) if spec is not None else GenerationSpec()
    created = False
    if identity is None:
        identity = keys.load_identity(passphrase=passphrase, create=True)
        created = bool(getattr(identity, "created", False))
    registry = registry if registry is not None else Registry()

    has_manifest = False
    try:
        has_manifest = c2pa_io.read_file(src).manifest_found
    except Exception:
        has_manifest = False

    wm_id = None
    try:
        tmpdir = Path(tempfile.mkdtemp(prefix=".dhstudio-publish-", dir=dst.parent))
    except OSError as e:
        raise OutputError(f"cannot write in {dst.parent}: {e.strerror}", code="output.unwritable") from None
    try:
        work = tmpdir / ("marked" + dst.suffix.lower())
        if watermark and media_type in _IMAGE:
            from provenance.watermark import image as wm_image

            wm_id = registry.new_id()
            wm_image.embed_file(src, work, wm_id)
            spec.watermark_alg, spec.watermark_id = wm_image.ALGORITHM, wm_id
        elif watermark and media_type in _VIDEO:
            from provenance.watermark import image as wm_image
            from provenance.watermark import video as wm_video

            wm_id = registry.new_id()
            wm_video.embed_video(src, work, wm_id)
            spec.watermark_alg, spec.watermark_id = wm_image.ALGORITHM, wm_id
        elif watermark and media_type == "model/gltf-binary":
            from provenance.watermark import mesh as wm_mesh

            wm_id = registry.new_id()
            wm_mesh.embed_mesh_file(src, work, wm_id)
            spec.watermark_alg, spec.watermark_id = wm_mesh.ALGORITHM, wm_id
        else:
            shutil.copyfile(src, work)
        manifest = c2pa_io.sign_file(work, dst, spec, identity, parent=src if has_manifest else None)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)

    sha = sha256_file(dst)
    signer = getattr(identity, "subject", None) or "unknown"
    # Unmarked outputs are registered too (found again by their sha256 only).
    record_id = wm_id if wm_id is not None else registry.new_id()
    registry.put(record_id, manifest, asset_sha256=sha, media_type=media_type, signer=signer,
                 label=None if wm_id is not None else "unmarked")
    sidecar = dst.with_suffix(dst.suffix + ".c2pa") if media_type == "model/gltf-binary" else None
    return PublishResult(
        path=dst,
        media_type=media_type,
        watermark_id=wm_id,
        asset_sha256=sha,
        manifest_bytes=len(manifest or b""),
        signer=signer,
        sidecar=sidecar,
        identity_created=created,
    )
