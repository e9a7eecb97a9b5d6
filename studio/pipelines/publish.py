"""Publish a generated file: watermark, C2PA-sign, register, then put it in place.

The one place that marks an output. Order matters: the watermark changes the pixels, so it is
embedded first; the C2PA manifest (which names the watermark id in its soft-binding assertion) is
then bound to the watermarked bytes; the manifest store goes to the registry under the watermark
id, so ``verify`` can recover it after a platform strips the manifest; only then is the signed file
renamed into place. A kill at any point leaves either no output, or an output whose record is
already in the registry (never a published file the registry does not know).

All work happens in a private folder ``.dhstudio-publish-<pid>-*`` next to the output, on the
input's bytes copied there once (a file swapped on disk meanwhile changes nothing). The folder is
removed on success, on errors and on SIGTERM/SIGHUP (the CLI turns them into an exception); a
folder left by a SIGKILLed run is removed by the next publish into the same directory.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from provenance import media
from provenance.errors import DhsError, InputError, OutputError

_WORK_PREFIX = ".dhstudio-publish-"


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
        d["watermark_id_hex"] = media.wm_id_hex(self.watermark_id)
        return d


def _remove_stale_workdirs(folder: Path) -> None:
    """Remove work folders of publish runs whose process is gone (killed with SIGKILL)."""
    media.remove_stale_workdirs(folder, _WORK_PREFIX)


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
    """Watermark ``src`` (image/video/GLB), sign it, register the manifest, and move it to ``dst``.

    ``spec`` is a ``provenance.manifest.GenerationSpec`` (defaults to a procedural-generator
    spec). ``identity`` defaults to the local signing identity, created on first use
    (``result.identity_created`` tells).
    """
    from provenance import c2pa_io, keys
    from provenance.manifest import GenerationSpec
    from provenance.registry import Registry

    src, dst = Path(src), Path(dst)
    media.check_input_path(src)
    media.check_output_path(dst, src)
    _remove_stale_workdirs(dst.parent if str(dst.parent) else Path("."))
    try:
        tmpdir = Path(tempfile.mkdtemp(prefix=f"{_WORK_PREFIX}{os.getpid()}-", dir=dst.parent))
    except OSError as e:
        raise OutputError(f"cannot write in {dst.parent}: {e.strerror}", code="output.unwritable") from None
    try:
        (tmpdir / "in").mkdir()
        (tmpdir / "out").mkdir()
        # the one read of the input: every step below works on this private copy
        work_src = tmpdir / "in" / src.name
        with media.open_regular(src) as fin, open(work_src, "wb") as fout:
            shutil.copyfileobj(fin, fout, 1 << 20)
        if work_src.stat().st_size == 0:
            raise InputError(f"{src}: file is empty", code="input.empty")
        media_type = media.sniff_media_type(work_src)
        if media_type not in media.SIGNABLE_TYPES:
            raise InputError(
                f"{src}: {media_type or 'unrecognised bytes'} cannot be signed; "
                "dhstudio signs JPEG, PNG, WebP, MP4, WAV and GLB",
                code="input.unsupported_type",
            )
        expected = media.EXTENSIONS[media_type]
        if dst.suffix.lower() not in expected:
            raise OutputError(
                f"output {dst} must keep the input's format ({media_type}: {'/'.join(expected)})",
                code="output.wrong_extension",
            )
        if media_type == "model/gltf-binary":
            sc = c2pa_io.find_sidecar(src)
            if sc is not None:  # a signed GLB's manifest is its sidecar: it comes along as the parent's
                media.write_atomic(c2pa_io.sidecar_path(work_src), media.read_regular(sc, what="manifest store"))

        spec = dataclasses.replace(spec) if spec is not None else GenerationSpec()
        created = False
        if identity is None:
            identity = keys.load_identity(passphrase=passphrase, create=True)
            created = bool(getattr(identity, "created", False))
        registry = registry if registry is not None else Registry()
        has_manifest = c2pa_io.has_manifest(work_src, media_type)

        wm_id = None
        marked = tmpdir / ("marked" + dst.suffix.lower())
        if watermark and media_type in ("image/jpeg", "image/png", "image/webp"):
            from provenance.watermark import image as wm_image

            wm_id = registry.new_id()
            wm_image.embed_file(work_src, marked, wm_id)
            spec.watermark_alg, spec.watermark_id = wm_image.ALGORITHM, wm_id
        elif watermark and media_type == "video/mp4":
            from provenance.watermark import image as wm_image
            from provenance.watermark import video as wm_video

            wm_id = registry.new_id()
            wm_video.embed_video(work_src, marked, wm_id)
            spec.watermark_alg, spec.watermark_id = wm_image.ALGORITHM, wm_id
        elif watermark and media_type == "model/gltf-binary":
            from provenance.watermark import mesh as wm_mesh

            wm_id = registry.new_id()
            stats = wm_mesh.embed_mesh_file(work_src, marked, wm_id)
            spec.watermark_alg, spec.watermark_id = stats["algorithm"], wm_id  # v1 when v2 cannot fit
        else:
            shutil.copyfile(work_src, marked)
        signed = tmpdir / "out" / dst.name
        manifest = c2pa_io.sign_file(marked, signed, spec, identity, parent=work_src if has_manifest else None)
        sha = media.sha256_file(signed)
        signer = getattr(identity, "subject", None) or "unknown"
        # register before publishing: a published file is always known to the registry.
        # Unmarked outputs are registered too (found again by their sha256 only).
        record_id = wm_id if wm_id is not None else registry.new_id()
        registry.put(record_id, manifest, asset_sha256=sha, media_type=media_type, signer=signer,
                     label=None if wm_id is not None else "unmarked",
                     manifest_id=c2pa_io.active_manifest_label(manifest))
        sidecar = None
        try:
            if media_type == "model/gltf-binary":
                sidecar = c2pa_io.sidecar_path(dst)
                os.replace(c2pa_io.sidecar_path(signed), sidecar)
            os.replace(signed, dst)
        except OSError as e:
            raise OutputError(f"cannot write {dst}: {e.strerror or e}", code="output.unwritable") from None
    except DhsError as e:  # messages name the user's file, never the private work copy
        work = str(tmpdir / "in" / src.name)
        if work in e.message:
            e.args = (e.message.replace(work, str(src)), *e.args[1:])
        raise
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
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
