"""Photo -> textured body mesh (GLB) + turntable MP4, both watermarked, signed and registered.

``reconstruct_body`` is what ``dhstudio body reconstruct`` runs: it checks the inputs (one clear
error each), frames the photo by its person mask, runs the PIFu checkpoint
(:mod:`reconstruct.body`), extracts the mesh coarse-to-fine, renders a turntable with our ray
caster, then publishes both through :func:`studio.pipelines.publish.publish` with the photo as
ingredient and the checkpoint's sha256 in the generation assertion. Outputs appear only when
complete (everything is written to a temporary folder next to them first).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from provenance.errors import InputError, OutputError
from provenance.media import sha256_file, wm_id_hex

ASSETS = Path(__file__).resolve().parents[2] / "assets"
DEFAULT_CHECKPOINT = ASSETS / "pifu_small.safetensors"
#: PIFu trained with the body prior (issue 16): the default when the pose model is installed.
PRIOR_CHECKPOINT = ASSETS / "pifu_prior.safetensors"
MAX_PIXELS = 64_000_000  # refuse decompression bombs before decoding
WORK_LONG_EDGE = 2048  # photos are downscaled to this long edge before framing
#: An alpha channel is a person cut-out only when it leaves this much of the photo or less opaque
#: (a nearly opaque alpha, e.g. the sample photo's 99.98 %, is no mask).
ALPHA_CUTOUT_MAX = 0.95


@dataclass
class BodyResult:
    mesh_path: Path
    video_path: Path | None
    vertices: int
    faces: int
    seconds: dict = field(default_factory=dict)
    watermark_ids: dict = field(default_factory=dict)
    mask_iou: float | None = None
    notes: list = field(default_factory=list)
    """What the user should know (the mask came from segmentation, the prior is off, ...)."""
    prior: dict | None = None
    """The fitted body prior: landmark error, silhouette IoU, seconds (None without one)."""

    def to_dict(self) -> dict:
        return {"mesh": str(self.mesh_path), "video": str(self.video_path) if self.video_path else None,
                "vertices": self.vertices, "faces": self.faces, "seconds": self.seconds,
                "watermark_ids": {k: wm_id_hex(v) for k, v in self.watermark_ids.items() if v is not None},
                "mask_iou": self.mask_iou, "notes": self.notes, "prior": self.prior}


def default_checkpoint() -> Path:
    """The weights ``body reconstruct`` and ``body eval`` use by default: the PIFu with the body
    prior when the pose model (faces extra) is installed and its weights are there, else the plain
    PIFu."""
    from reconstruct.body.prior import pose_available

    return PRIOR_CHECKPOINT if (PRIOR_CHECKPOINT.is_file() and pose_available()) else DEFAULT_CHECKPOINT


def load_photo(photo: Path, mask: Path | None = None, *, require_mask: bool = True
               ) -> tuple[np.ndarray, np.ndarray | None, str]:
    """(rgb uint8 HxWx3, mask bool HxW, how the mask was obtained). Grayscale, 16-bit, palette
    and RGBA photos are converted; huge ones refused; the mask comes from ``mask`` (any image,
    nonzero = person) or the photo's alpha channel; without either, None (``require_mask``
    False: the caller segments the person) or an error."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    photo = Path(photo)

    def _open(p: Path, what: str):
        if not p.is_file():
            raise InputError(f"cannot read {what} {p}: no such file")
        try:
            im = Image.open(p)
            if im.width * im.height > MAX_PIXELS:
                raise InputError(f"{what} {p} is too large ({im.width}x{im.height}; limit {MAX_PIXELS // 10**6} MP)")
            im.load()
            return im
        except Image.DecompressionBombError:
            raise InputError(f"{what} {p} is too large (decompression bomb guard)") from None
        except InputError:
            raise
        except Exception as e:
            raise InputError(f"cannot decode {what} {p}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None

    im = _open(photo, "photo")
    alpha = None
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        alpha = np.asarray(im)[..., 3] >= 128
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(im, np.float64)
        a = (a / max(a.max(), 1) * 255).round().astype(np.uint8)
        im = Image.fromarray(a, "L")
    rgb_im = im.convert("RGB")
    if mask is not None:
        mim = _open(Path(mask), "mask")
        if mim.size != rgb_im.size:
            raise InputError(f"mask {mask} is {mim.width}x{mim.height} but the photo is {rgb_im.width}x{rgb_im.height}")
        m = np.asarray(mim.convert("L")) >= 128
        how = "mask file"
    elif alpha is not None and 0 < alpha.mean() < ALPHA_CUTOUT_MAX:
        m, how = alpha, "alpha channel"
    elif not require_mask:
        m, how = None, "segmentation"
    else:
        raise InputError(f"{photo} has no person mask: give --mask MASK.png or an RGBA photo whose alpha is the "
                         "person, or install the faces extra (make install) for the built-in segmentation")
    s = WORK_LONG_EDGE / max(rgb_im.size)
    if s < 1:
        size = (round(rgb_im.width * s), round(rgb_im.height * s))
        rgb_im = rgb_im.resize(size, Image.Resampling.LANCZOS)
        if m is not None:
            m = np.asarray(Image.fromarray(m.astype(np.uint8) * 255).resize(size, Image.Resampling.BILINEAR)) >= 128
    if m is not None and m.sum() < 100:
        raise InputError(f"the person mask of {photo} is empty (or under 100 pixels): nothing to reconstruct")
    return np.asarray(rgb_im), m, how


def write_mp4(frames, path: Path, fps: int = 24, crf: int = 18) -> Path:
    import av

    with av.open(str(path), "w", format="mp4") as out:
        st = None
        for i, fr in enumerate(frames):
            if st is None:
                h, w = fr.shape[:2]
                st = out.add_stream("libx264", rate=fps)
                st.width, st.height, st.pix_fmt = w - w % 2, h - h % 2, "yuv420p"
                st.options = {"crf": str(crf)}
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(fr[: st.height, : st.width]), format="rgb24")
            vf.pts, vf.time_base = i, Fraction(1, fps)
            for p in st.encode(vf):
                out.mux(p)
        if st is not None:
            for p in st.encode():
                out.mux(p)
    return path


def reconstruct_body(photo: Path, out: Path, *, mask: Path | None = None, checkpoint: Path | None = None,
                     height_m: float = 1.7, resolution: int = 256, turntable: bool = True, frames: int = 48,
                     sign: bool = True, registry=None, identity=None, passphrase: str | None = None,
                     person: int | None = None) -> BodyResult:
    """``person``: with several people in the photo, the N-th from the left (1-based; default the
    largest); needs the pose model."""
    from reconstruct._deps import MissingExtra

    out = Path(out)
    if out.suffix.lower() not in (".glb", ".obj", ".ply"):
        raise OutputError(f"output {out} must end in .glb, .obj or .ply")
    if sign and out.suffix.lower() != ".glb":
        raise OutputError("signed meshes are GLB (C2PA sidecar); use -o NAME.glb or --no-sign")
    if not out.parent.is_dir():
        raise OutputError(f"cannot write {out}: folder {out.parent} does not exist")
    if resolution not in (128, 256, 512):
        raise InputError("resolution must be 128, 256 or 512")
    if not (0.5 <= height_m <= 2.5):
        raise InputError(f"--height {height_m} m is not a human height (0.5-2.5 m)")
    from reconstruct.body import prior as body_prior

    notes: list[str] = []
    pose_ok = body_prior.pose_available()
    if checkpoint is None:
        checkpoint = default_checkpoint()
        if not pose_ok:
            notes.append("the pose model (faces extra) is not installed: no body prior and no built-in "
                         "segmentation, reconstructing with the plain PIFu")
    if person is not None and not pose_ok:
        raise InputError("--person needs the pose model (the faces extra: make install)")
    if person is not None and not (1 <= person <= body_prior.MAX_PEOPLE):
        raise InputError(f"--person must be 1-{body_prior.MAX_PEOPLE} (counted from the left), got {person}")
    checkpoint = Path(checkpoint)
    if checkpoint.resolve() == Path(photo).resolve():
        raise InputError("the checkpoint and the photo are the same file")
    rgb, m, how = load_photo(photo, mask, require_mask=not pose_ok)
    times = {}
    prior_info = None
    try:
        from reconstruct.body.infer import reconstruct_photo
        from reconstruct.body.train import load_model
        from reconstruct.mesh import export_mesh

        t0 = time.perf_counter()
        try:
            model = load_model(checkpoint)
        except (ValueError, FileNotFoundError) as e:
            raise InputError(str(e)) from None
        times["load_model"] = round(time.perf_counter() - t0, 2)
        fit = None
        if pose_ok and (m is None or model.cfg.prior_size or person is not None):
            try:
                t0 = time.perf_counter()
                est = body_prior.estimate_person(rgb, person=person)
                times["segment_pose"] = round(time.perf_counter() - t0, 2)
                notes.extend(est.notes)
                if m is None:
                    m, how = est.mask, "segmentation (MediaPipe pose)"
                    if m.sum() < 100:
                        raise InputError(f"{photo}: the person is too small to reconstruct (under 100 pixels)")
                if model.cfg.prior_size:
                    t0 = time.perf_counter()
                    fit = body_prior.fit_body(est)
                    times["fit_prior"] = round(time.perf_counter() - t0, 2)
                    prior_info = {"landmark_error_px": round(fit.landmark_error_px, 1), "seconds": fit.seconds}
            except body_prior.NoPerson as e:
                raise InputError(f"{photo}: {e}") from None
        elif model.cfg.prior_size:
            raise InputError(f"{checkpoint} needs the body prior, which needs the pose model: install the faces "
                             "extra (make install)")
        t0 = time.perf_counter()
        coarse = {128: 32, 256: 64, 512: 64}[resolution]
        try:
            rec = reconstruct_photo(model, rgb, m, height_m=height_m, resolution=resolution, coarse=coarse, fit=fit)
        except ValueError as e:
            raise InputError(f"reconstruction failed: {e}") from None
        times["reconstruct"] = round(time.perf_counter() - t0, 2)
        mesh = rec.mesh
        iou = silhouette_iou(mesh, rec)
        tmpdir = Path(tempfile.mkdtemp(prefix=".dhstudio-body-", dir=out.parent))
        try:
            raw = export_mesh(mesh, tmpdir / ("raw" + out.suffix.lower()))
            raw_video = None
            if turntable:
                from reconstruct.body.render import render_turntable

                t0 = time.perf_counter()
                raw_video = write_mp4(render_turntable(mesh, frames, size=512, supersample=1), tmpdir / "raw.mp4")
                times["turntable"] = round(time.perf_counter() - t0, 2)
            video_out = out.with_suffix(".mp4") if turntable else None
            wm_ids = {}
            if sign:
                from provenance.manifest import GenerationSpec
                from studio.pipelines.publish import publish

                info = getattr(model, "training_info", {}) or {}
                spec = GenerationSpec(model_name=f"dhstudio-pifu-{model.cfg.name}", model_version="1",
                                      weights_sha256=sha256_file(checkpoint),
                                      parameters={"resolution": resolution, "height_m": height_m,
                                                  "mask": how, "train_steps": info.get("steps"),
                                                  "body_prior": fit is not None},
                                      digital_source_type="trainedAlgorithmicMedia",
                                      ingredients=[Path(photo)] + ([Path(mask)] if mask else []))
                t0 = time.perf_counter()
                staged = tmpdir / ("signed" + out.suffix.lower())
                r = publish(raw, staged, spec, registry=registry, identity=identity, passphrase=passphrase)
                wm_ids["mesh"] = r.watermark_id
                staged_v = None
                if raw_video is not None:
                    staged_v = tmpdir / "signed.mp4"
                    rv = publish(raw_video, staged_v, spec, registry=registry, identity=identity,
                                 passphrase=passphrase)
                    wm_ids["video"] = rv.watermark_id
                times["sign"] = round(time.perf_counter() - t0, 2)
                # move into place: the sidecar first, then the mesh, then the video
                if r.sidecar is not None:
                    shutil.move(str(r.sidecar), str(out.with_suffix(out.suffix + ".c2pa")))
                shutil.move(str(staged), str(out))
                if staged_v is not None:
                    shutil.move(str(staged_v), str(video_out))
            else:
                shutil.move(str(raw), str(out))
                if raw_video is not None:
                    shutil.move(str(raw_video), str(video_out))
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)
    except MissingExtra as e:
        raise InputError(str(e)) from None
    return BodyResult(out, video_out, len(mesh.vertices), len(mesh.faces), times, wm_ids, iou, notes, prior_info)


def silhouette_iou(mesh, rec) -> float:
    """IoU between the mesh re-projected into the framed input view and the input mask."""
    from reconstruct.body.render import render
    from reconstruct.metrics import mask_iou

    cam = rec.camera
    # the mesh was moved to feet-on-floor after reconstruction: undo that for the projection
    res = render(_unshift(mesh, rec), cam)
    return mask_iou(res.mask, rec.framed_mask)


def _unshift(mesh, rec):
    m = mesh.copy()
    if hasattr(rec, "shift"):
        m.apply_translation(-np.asarray(rec.shift))
    return m
