"""The one ``dhstudio`` command.

User errors print one line, ``dhstudio: error: ...``, on stderr and exit 2;
nothing is half-written. ``DHSTUDIO_DEBUG=1`` shows tracebacks of internal
errors (exit 3).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from provenance.media import wm_id_hex

EXIT_USER = 2
EXIT_INTERNAL = 3


class Terminated(BaseException):
    """SIGTERM / SIGHUP: unwind like Ctrl-C, so every temporary file and folder is removed."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _on_signal(signum, frame):
    raise Terminated(signum)


def _install_signal_handlers() -> None:
    import signal

    for name in ("SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)
        if sig is not None:
            try:
                signal.signal(sig, _on_signal)
            except (ValueError, OSError):  # not the main thread
                pass


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("dhstudio")
    except Exception:
        return "0+unknown"


def _read_passphrase(args) -> str | None:
    f = getattr(args, "passphrase_file", None)
    if f:
        from provenance.errors import KeyStoreError

        try:
            return Path(f).read_text().rstrip("\r\n")
        except OSError as e:
            raise KeyStoreError(f"passphrase file {f}: {e.strerror}") from None
    return os.environ.get("DHSTUDIO_KEY_PASSPHRASE") or None


# -- keys ----------------------------------------------------------------------

def cmd_keys_init(args) -> int:
    from provenance import keys

    keys.init_keys(passphrase=_read_passphrase(args), organization=args.org, force=args.force)
    home = keys.home_dir()
    print(f"created a local CA and a signing certificate in {home / 'keys'}")
    print("give verifiers the trust anchor: dhstudio keys anchor > dhstudio-ca.pem")
    return 0


def cmd_keys_import(args) -> int:
    from provenance import keys

    key_pass = None
    if args.key_passphrase_file:
        key_pass = Path(args.key_passphrase_file).read_text().rstrip("\r\n")
    keys.import_keys(
        Path(args.cert), Path(args.key), passphrase=_read_passphrase(args), key_passphrase=key_pass, force=args.force
    )
    print(f"imported signing certificate into {keys.home_dir() / 'keys'}")
    return 0


def cmd_keys_anchor(args) -> int:
    from provenance import keys

    sys.stdout.write(keys.trust_anchor_pem().decode())
    return 0


# -- sign / verify ----------------------------------------------------------------

def _parse_params(items: list[str]) -> dict:
    out = {}
    for it in items or []:
        if "=" not in it:
            from provenance.errors import InputError

            raise InputError(f"--param {it!r}: expected NAME=VALUE")
        k, v = it.split("=", 1)
        try:
            out[k] = json.loads(v)
        except ValueError:
            out[k] = v
    return out


def cmd_sign(args) -> int:
    from provenance.errors import printable
    from provenance.manifest import GenerationSpec
    from studio.pipelines.publish import publish

    spec = GenerationSpec(
        model_name=args.model,
        model_version=args.model_version,
        weights_sha256=args.weights_sha256,
        parameters=_parse_params(args.param),
        seed=args.seed,
        digital_source_type=args.source_type,
        ingredients=[Path(p) for p in args.ingredient or []],
        training_mining=args.training_mining,
    )
    from provenance.media import check_input_path

    for ing in spec.ingredients:
        check_input_path(ing)
    res = publish(Path(args.input), Path(args.output), spec, watermark=not args.no_watermark,
                  passphrase=_read_passphrase(args))
    if res.identity_created:
        from provenance.keys import home_dir

        print(f"dhstudio: notice: no signing identity found; created a local CA and signer in "
              f"{printable(home_dir() / 'keys')}",
              file=sys.stderr)
    if args.json:
        print(json.dumps(res.to_dict()))
    else:
        wm = f", watermark id {wm_id_hex(res.watermark_id)}" if res.watermark_id is not None else ", no watermark"
        print(f"signed {printable(res.path)} ({res.media_type}{wm})")
        if res.sidecar:
            print(f"manifest written beside it: {printable(res.sidecar)}")
    return 0


def cmd_verify(args) -> int:
    import detect
    from detect.report import render_html, summary_text
    from provenance import media
    from provenance.errors import InputError, printable

    anchors = None
    if args.trust_anchors:
        anchors = media.read_regular(Path(args.trust_anchors), what="trust anchors")
        if b"-----BEGIN CERTIFICATE-----" not in anchors:
            raise InputError(f"trust anchors {args.trust_anchors}: no PEM certificate in the file", code="trust.invalid")
    registry = "default"
    if args.registry:
        from provenance.registry import Registry

        registry = Registry(args.registry)
    elif args.no_registry:
        registry = None
    if args.max_frames is not None and args.max_frames < 1:
        raise InputError(f"--max-frames must be >= 1, got {args.max_frames}")
    if args.weights:
        media.check_input_path(args.weights)
    if args.threads and not args.no_content:
        try:
            import torch
        except ImportError:  # no torch: the content section says so (detect.missing_extra)
            torch = None
        if torch is not None:
            torch.set_num_threads(args.threads)
    v = detect.verify(Path(args.file), detect.VerifyOptions(trust_anchors=anchors,
                                                             use_default_anchors=not args.no_default_anchors,
                                                             registry=registry, content=not args.no_content,
                                                             detector_weights=args.weights,
                                                             max_frames=args.max_frames,
                                                             content_visuals=bool(args.html)))
    if args.html:
        media.write_atomic(Path(args.html), render_html([v]))
    if args.json:
        print(v.to_json())
    else:
        print(summary_text(v))
    if v.label == "unreadable":
        print(f"dhstudio: warning: {printable(args.file)}: {printable('; '.join(v.reasons))}", file=sys.stderr)
    return 0


def cmd_serve(args) -> int:
    from provenance.errors import InputError

    try:
        import uvicorn

        from studio.api.app import create_app
    except ImportError as e:
        raise InputError(f"the web service needs the service extra ({e.name} is missing): "
                         "pip install 'dhstudio[service]' (make install does)") from None
    if not (1 <= args.workers <= 64) or args.queue < 0 or args.max_upload_mb <= 0 or args.rate_limit < 0:
        raise InputError("--workers must be 1-64, --queue >= 0, --max-upload-mb > 0, --rate-limit >= 0")
    if args.job_ttl <= 0:
        raise InputError("--job-ttl must be > 0 seconds")
    app = create_app(max_upload_bytes=int(args.max_upload_mb * 1024 * 1024), workers=args.workers,
                     queue=args.queue, job_ttl_s=args.job_ttl, db=args.db, rate_limit_per_minute=args.rate_limit,
                     passphrase=_read_passphrase(args))
    print(f"dhstudio verifier on http://{args.host}:{args.port} (web page at /, docs at /docs)", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning",
                limit_concurrency=256)  # above it uvicorn answers 503 unread; the app's own limits come first
    return 0


def cmd_tokens(args) -> int:
    """``dhstudio tokens create NAME | list | revoke ID-OR-NAME``: the bearer tokens of POST /v1/sign."""
    from provenance.errors import InputError, printable
    from studio.api.store import open_store

    store = open_store(args.db)
    if args.tokens_cmd == "create":
        try:
            token, row = store.create_token(args.name, tuple(args.scope or ["sign"]))
        except ValueError as e:
            raise InputError(str(e)) from None
        if args.json:
            print(json.dumps({"token": token, **row}))
        else:
            print(token)
            print(f"dhstudio: token {row['id']} ({printable(row['name'])}, scopes {','.join(row['scopes'])}) created; "
                  "it is shown only now: keep it secret", file=sys.stderr)
    elif args.tokens_cmd == "list":
        rows = store.list_tokens()
        if args.json:
            print(json.dumps(rows))
        for r in rows if not args.json else []:
            state = f"revoked {r['revoked']}" if r["revoked"] else "active"
            print(f"{r['id']}  {printable(r['name'])}  scopes={','.join(r['scopes'])}  created {r['created']}  "
                  f"last used {r['last_used'] or 'never'}  {state}")
    else:
        n = store.revoke_token(args.id_or_name)
        if n == 0:
            raise InputError(f"no active token with id or name {printable(args.id_or_name)}")
        print(f"revoked {n} token{'s' if n > 1 else ''}")
    return 0


def _detect_kind(path: str) -> str:
    """"video" for what the one sniffer calls a video (or an MP4 audio file: its error says there is no
    video stream), else "image" (score_image reports what is wrong with anything else)."""
    from provenance import media
    from provenance.errors import DhsError

    try:
        mt = media.sniff_media_type(path)
    except DhsError:
        return "image"
    return "video" if mt in media.VIDEO_TYPES or mt == "audio/mp4" else "image"


def cmd_detect(args) -> int:
    """Score image and video files for face forgery with the shipped (or given) detector: JSON
    lines or text. A video is sampled, its faces tracked and scored per frame (detect.video)."""
    import math

    from provenance import media
    from provenance.errors import InputError, printable

    if args.max_frames is not None and args.max_frames < 1:
        raise InputError(f"--max-frames must be >= 1, got {args.max_frames}")
    if args.sample_fps is not None and not (args.sample_fps > 0 and math.isfinite(args.sample_fps)):
        raise InputError(f"--sample-fps must be a positive number, got {args.sample_fps}")
    kinds = [_detect_kind(f) for f in args.files]
    if args.annotate:
        if len(args.files) != 1:
            raise InputError(f"--annotate writes one video: give one video file, not {len(args.files)} files")
        media.check_input_path(args.files[0])
        if kinds[0] != "video":
            raise InputError(f"--annotate needs a video; {args.files[0]} is not one")
        media.check_output_path(args.annotate, src=args.files[0])
    from detect.score import load_default_detector, score_image  # torch: after the quick checks

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    detector, info = load_default_detector(args.weights)
    info["name"] = detector.name
    worst = 0
    for f, kind in zip(args.files, kinds):
        if kind == "video":
            from detect.video import score_video

            r = score_video(Path(f), detector, info, max_frames=args.max_frames, sample_fps=args.sample_fps,
                            annotate=Path(args.annotate) if args.annotate else None, path_label=f,
                            progress=not args.json and sys.stderr.isatty())
            faces = f"{len(r.tracks)} face track(s), {r.frames_sampled} frames sampled"
        else:
            r = score_image(Path(f), detector, info, path_label=f)
            faces = f"{len(r.faces)} face(s)"
        if args.json:
            print(json.dumps(r.to_dict()))
        else:
            what = "no face" if r.score is None else f"fake probability {r.score:.3f} ({faces})"
            if kind == "video" and r.score is None and r.error and r.error.get("code") != "detect.no_face":
                what = "not checked"
            err = f" [{printable(r.error['message'])}]" if r.error and (r.score is None or kind == "video") else ""
            print(f"{printable(f)}: {what}{err}")
            if kind == "video" and r.annotated:
                print(f"annotated video: {printable(r.annotated['path'])}")
        if r.error and r.error.get("code") not in ("detect.no_face",):
            worst = EXIT_USER
    return worst


def _detect_sub_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dhstudio detect", description="face-forgery detectors: cache, train, eval")
    sub = p.add_subparsers(dest="detect_cmd", required=True)
    c = sub.add_parser("cache", help="detect the face of every training image once and cache the crops")
    c.add_argument("shared_data", help="the shared data folder (faces_real, faces_real_color, faces_fake_public)")
    c.add_argument("-o", "--out", required=True, help="cache folder (crops.npy, landmarks.npy, index.json)")
    c.add_argument("--limit", type=int, default=None, help="first N images only (tests)")
    c.add_argument("--renders", default=None, help="a folder of our own renders (`detect renders`) to add as fakes")
    c.add_argument("--reuse", default=None, help="an earlier cache: images it holds are copied, not detected again")
    c.add_argument("--quiet", action="store_true")
    r = sub.add_parser("renders", help="render the studio's own output (heads, NeRF avatars, body turntable) "
                                       "as a fake source for training and evaluation")
    r.add_argument("out", help="new folder (images/, MANIFEST.tsv)")
    r.add_argument("--identities", type=int, default=120, help="random synthetic head identities")
    r.add_argument("--views", type=int, default=4)
    r.add_argument("--expressions", type=int, default=3)
    r.add_argument("--size", type=int, default=256)
    r.add_argument("--nerf-avatars", type=int, default=0, help="NeRF head avatars to train and render (minutes each)")
    r.add_argument("--nerf-seconds", type=float, default=240.0, help="training time per NeRF avatar")
    r.add_argument("--nerf-frames", type=int, default=16)
    r.add_argument("--body-photo", default=None, help="a body photo: its reconstruction's turntable frames")
    r.add_argument("--body-mask", default=None)
    r.add_argument("--body-frames", type=int, default=24)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--threads", type=int, default=None)
    r.add_argument("--quiet", action="store_true")
    t = sub.add_parser("train", help="train a detector on the face cache (resumes when OUT holds a run)")
    t.add_argument("cache", help="face cache folder (from `detect cache`)")
    t.add_argument("-o", "--out", required=True, help="run folder (model.safetensors, state, log.jsonl)")
    t.add_argument("--detector", default="efficientnet_lite", help="registered detector name")
    t.add_argument("--config", default="{}", metavar="JSON", help='detector config overrides, e.g. \'{"input_size": 128}\'')
    t.add_argument("--steps", type=int, default=2000)
    t.add_argument("--batch", type=int, default=32)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--gan-fraction", type=float, default=0.2, help="share of fakes from the StyleGAN2 training faces")
    t.add_argument("--own-fraction", type=float, default=0.0,
                   help="share of fakes from our own training renders (a cache built with --renders)")
    t.add_argument("--minutes", type=float, default=None, help="stop after this much training time")
    t.add_argument("--init", default=None, help="start from these weights (same detector and config)")
    t.add_argument("--jpeg-p", type=float, default=0.3, help="probability of a JPEG round trip per crop")
    t.add_argument("--lowres-p", type=float, default=0.0,
                   help="probability of bringing a crop down to a small face's resolution and back")
    t.add_argument("--val-every", type=int, default=250)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, default=None)
    t.add_argument("--quiet", action="store_true")
    k = sub.add_parser("calibrate", help="the threshold at a false-positive rate on real faces (validation split, "
                                          "whole images through the verifier's path), stored in the weights")
    k.add_argument("weights", help="detector weights (model.safetensors)")
    k.add_argument("shared_data", help="the shared data folder (faces_real, faces_real_color, faces_fake_public)")
    k.add_argument("--renders", default=None, help="a folder of our own renders (`detect renders`): their "
                                                    "validation images report the TPR too")
    k.add_argument("--max-per-source", type=int, default=None, help="at most N images per source (tests)")
    k.add_argument("--quiet", action="store_true")
    k.add_argument("-o", "--out", default=None, help="write the calibrated weights here (default: print only)")
    k.add_argument("--fpr", type=float, default=0.01)
    k.add_argument("--split", choices=["train", "val"], default="val")
    k.add_argument("--threads", type=int, default=None)
    e = sub.add_parser("eval", help="AUC / EER / TPR@1%%FPR / calibration per source and attack, as JSON")
    e.add_argument("weights", help="detector weights (model.safetensors)")
    e.add_argument("cache", help="face cache folder")
    e.add_argument("--split", choices=["train", "val", "test"], default="test")
    e.add_argument("--attacks", default=None, help="comma-separated (default: none,jpeg90,jpeg70,jpeg50,resize0.5,social)")
    e.add_argument("--max-real", type=int, default=None, help="evaluate at most this many real faces (and their fakes)")
    e.add_argument("--threads", type=int, default=None)
    return p


def main_detect_sub(argv: list[str]) -> int:
    from provenance.errors import InputError

    args = _detect_sub_parser().parse_args(argv)
    try:
        if getattr(args, "threads", None):
            import torch

            torch.set_num_threads(args.threads)
        if args.detect_cmd == "cache":
            from detect.train import build_face_cache

            print(json.dumps(build_face_cache(Path(args.shared_data), Path(args.out), progress=not args.quiet,
                                              limit=args.limit, renders=Path(args.renders) if args.renders else None,
                                              reuse=Path(args.reuse) if args.reuse else None)))
        elif args.detect_cmd == "renders":
            from studio.pipelines.own_renders import make_own_renders

            print(json.dumps(make_own_renders(
                Path(args.out), identities=args.identities, views=args.views, expressions=args.expressions,
                size=args.size, nerf_avatars=args.nerf_avatars, nerf_seconds=args.nerf_seconds,
                nerf_frames=args.nerf_frames, body_photo=args.body_photo, body_mask=args.body_mask,
                body_frames=args.body_frames, seed=args.seed, threads=args.threads, progress=not args.quiet)))
        elif args.detect_cmd == "train":
            from detect.train import TrainConfig, train

            try:
                overrides = json.loads(args.config)
            except ValueError:
                raise InputError(f"--config must be a JSON object, got {args.config!r}") from None
            if not isinstance(overrides, dict):
                raise InputError(f"--config must be a JSON object, got {args.config!r}")
            if args.minutes is not None and not args.minutes > 0:
                raise InputError(f"--minutes must be positive, got {args.minutes}")
            cfg = TrainConfig(detector=args.detector, detector_config=overrides, steps=args.steps, batch=args.batch,
                              lr=args.lr, gan_fraction=args.gan_fraction, own_fraction=args.own_fraction,
                              jpeg_p=args.jpeg_p, lowres_p=args.lowres_p, val_every=args.val_every, seed=args.seed, threads=args.threads,
                              max_seconds=args.minutes * 60 if args.minutes else None, init=args.init)
            cfg.check()
            print(json.dumps(train(Path(args.cache), Path(args.out), cfg, progress=not args.quiet)))
        elif args.detect_cmd == "calibrate":
            from detect.train import calibrate

            print(json.dumps(calibrate(Path(args.weights), Path(args.shared_data), split=args.split, fpr=args.fpr,
                                       renders=Path(args.renders) if args.renders else None,
                                       max_per_source=args.max_per_source, progress=not args.quiet,
                                       out=Path(args.out) if args.out else None)))
        else:
            from detect.train import evaluate

            attacks = args.attacks.split(",") if args.attacks else None
            print(json.dumps(evaluate(Path(args.weights), Path(args.cache), split=args.split, attacks=attacks,
                                      max_real=args.max_real)))
    except (ValueError, FileNotFoundError) as e:
        raise InputError(str(e).splitlines()[0] if str(e) else type(e).__name__) from None
    return 0


def cmd_demo(args) -> int:
    from studio.pipelines.demo import run_demo

    run_demo(Path(args.out), quick=args.quick)
    return 0


# -- body ------------------------------------------------------------------------

def _user_errors(fn):
    """Bad input from the reconstruct side (ValueError, missing files, missing extras) becomes a
    one-line InputError."""
    def run(args):
        from provenance.errors import InputError
        from reconstruct._deps import MissingExtra

        try:
            return fn(args)
        except (ValueError, FileNotFoundError, MissingExtra) as e:
            raise InputError(str(e).splitlines()[0] if str(e) else type(e).__name__) from None
    return run


@_user_errors
def cmd_body_dataset(args) -> int:
    from reconstruct.body.data import DatasetConfig, bodies_from_meshes, build_dataset

    cfg = DatasetConfig(n_subjects=args.subjects, views=args.views, size=args.size, seed=args.seed,
                        n_occ=args.occ_samples)
    source = None
    if args.from_meshes:
        source = list(bodies_from_meshes(Path(args.from_meshes), up=args.up, height_m=args.height))
    man = build_dataset(Path(args.out), cfg, source=source, progress=not args.quiet)
    splits = {}
    for s in man["subjects"].values():
        splits[s["split"]] = splits.get(s["split"], 0) + 1
    print(json.dumps({"dataset": str(args.out), "subjects": len(man["subjects"]), "splits": splits}))
    return 0


def _view_mix(text: str) -> tuple[int, ...]:
    try:
        mix = tuple(int(x) for x in text.split(","))
    except ValueError:
        raise ValueError(f"--view-mix must be comma-separated view counts, got {text!r}") from None
    if not mix or min(mix) < 1:
        raise ValueError(f"--view-mix counts must be >= 1, got {text!r}")
    return mix


@_user_errors
def cmd_body_train(args) -> int:
    from reconstruct.body.train import TrainConfig, train

    cfg = TrainConfig(model=args.model, steps=args.steps, batch=args.batch, lr=args.lr,
                      image_size=args.image_size, seed=args.seed, threads=args.threads,
                      init=args.init, z_frequencies=args.z_frequencies, cone_balance=args.cone_balance,
                      hull_fraction=args.hull_fraction, photo_aug=args.photo_aug,
                      ray_weight=args.ray_weight, depth_head=args.depth_head, depth_weight=args.depth_weight,
                      depthnet=args.depthnet, view_mix=_view_mix(args.view_mix), prior_size=args.prior_size,
                      prior_estimated_p=args.prior_estimated_p, prior_noise_deg=args.prior_noise_deg)
    if args.depth_head and args.depthnet:
        raise ValueError("--depth-head and --depthnet exclude each other")
    print(json.dumps(train(Path(args.data), Path(args.out), cfg, progress=not args.quiet)))
    return 0


@_user_errors
def cmd_body_train_depth(args) -> int:
    from reconstruct.body.depth_train import DepthTrainConfig, train_depthnet

    if args.steps < 1 or args.batch < 1 or args.image_size < 16 or args.image_size % 16:
        raise ValueError("--steps and --batch must be >= 1, --image-size a multiple of 16")
    cfg = DepthTrainConfig(steps=args.steps, batch=args.batch, lr=args.lr, image_size=args.image_size,
                           photo_aug=not args.no_photo_aug, seed=args.seed, threads=args.threads)
    print(json.dumps(train_depthnet(Path(args.data), Path(args.out), cfg, progress=not args.quiet)))
    return 0


@_user_errors
def cmd_body_priors(args) -> int:
    from reconstruct.body.prior import estimate_dataset_priors

    try:
        views = tuple(int(v) for v in args.views.split(","))
        i, n = (int(x) for x in args.shard.split("/"))
    except ValueError:
        raise ValueError("--views takes view indices like 0,2,4,6 and --shard I/N like 0/2") from None
    if not 0 <= i < n:
        raise ValueError("--shard I/N needs 0 <= I < N")
    print(json.dumps(estimate_dataset_priors(Path(args.data), views=views, size=args.size, shard=(i, n),
                                             splits=tuple(args.splits.split(",")), progress=not args.quiet)))
    return 0


@_user_errors
def cmd_body_eval(args) -> int:
    from reconstruct.body.evaluate import evaluate
    from reconstruct.body.train import load_model
    from studio.pipelines.body import default_checkpoint

    model = load_model(Path(args.checkpoint or default_checkpoint()))
    views = tuple(int(v) for v in args.views.split(","))
    if any(v < 1 or v > 8 for v in views):
        raise ValueError("--views takes counts between 1 and 8, e.g. 1,2,4")
    res = evaluate(model, Path(args.data), split=args.split, views=views, resolution=args.resolution,
                   max_subjects=args.max_subjects, progress=not args.quiet)
    if not args.rows:
        res.pop("rows")
    print(json.dumps(res))
    return 0


@_user_errors
def cmd_body_reconstruct(args) -> int:
    from studio.pipelines.body import reconstruct_body

    res = reconstruct_body(Path(args.photo), Path(args.output), mask=Path(args.mask) if args.mask else None,
                           checkpoint=Path(args.checkpoint) if args.checkpoint else None, height_m=args.height,
                           resolution=args.resolution, turntable=not args.no_turntable, sign=not args.no_sign,
                           passphrase=_read_passphrase(args), person=args.person)
    for note in res.notes:
        print(f"note: {note}", file=sys.stderr)
    if args.json:
        print(json.dumps(res.to_dict()))
    else:
        print(f"mesh: {res.mesh_path} ({res.vertices} vertices, {res.faces} faces)")
        if res.video_path:
            print(f"turntable: {res.video_path}")
        if res.watermark_ids:
            print("signed and watermarked: " + ", ".join(f"{k} {wm_id_hex(v)}" for k, v in res.watermark_ids.items() if v))
        print(f"silhouette IoU with the input mask: {res.mask_iou:.3f}; times {res.seconds}")
    return 0


# -- head ------------------------------------------------------------------------

def cmd_head_train(args) -> int:
    from studio.pipelines.head import train_avatar

    res = train_avatar(Path(args.capture), Path(args.out), steps=args.steps, minutes=args.minutes,
                       threads=args.threads, seed=args.seed, batch_rays=args.batch_rays, progress=not args.quiet,
                       device=args.device, backend=args.backend)
    print(json.dumps(res))
    return 0


def cmd_head_eval(args) -> int:
    from studio.pipelines.head import evaluate_avatar

    print(json.dumps(evaluate_avatar(Path(args.checkpoint), Path(args.capture), split=args.split,
                                     max_frames=args.max_frames, threads=args.threads, device=args.device)))
    return 0


def cmd_head_render(args) -> int:
    from studio.pipelines.head import render_avatar

    res = render_avatar(Path(args.checkpoint), Path(args.capture), Path(args.output), orbit=args.orbit,
                        frames=args.frames, expression=args.expression, size=args.size, fps=args.fps,
                        sign=not args.no_sign, threads=args.threads, progress=not args.quiet,
                        passphrase=_read_passphrase(args))
    if args.json:
        print(json.dumps(res.to_dict()))
    else:
        what = f"{res.frames}-frame orbit" if res.frames > 1 or args.orbit else "still"
        print(f"head render: {res.path} ({what}, {res.width}x{res.height})")
        if res.signed:
            wm = f", watermark id {wm_id_hex(res.watermark_id)}" if res.watermark_id is not None else ""
            print(f"signed{wm}; checkpoint sha256 {res.weights_sha256}")
    return 0


def cmd_head_export_mesh(args) -> int:
    from studio.pipelines.head import export_avatar_mesh

    res = export_avatar_mesh(Path(args.checkpoint), Path(args.capture), Path(args.output),
                             resolution=args.resolution, expression=args.expression, threshold=args.threshold,
                             sign=not args.no_sign, threads=args.threads, passphrase=_read_passphrase(args))
    if args.json:
        print(json.dumps(res.to_dict()))
    else:
        print(f"mesh: {res.path} ({res.vertices} vertices, {res.faces} faces)")
        if res.signed:
            wm = f", watermark id {wm_id_hex(res.watermark_id)}" if res.watermark_id is not None else ""
            print(f"signed{wm}; manifest beside it: {res.sidecar}")
    return 0


# -- parser ----------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dhstudio", description="Digital-human generation and provenance studio.")
    p.add_argument("--version", action="version", version=f"dhstudio {_version()}")
    sub = p.add_subparsers(dest="cmd", required=True)

    k = sub.add_parser("keys", help="signing identity: init, import, anchor")
    ksub = k.add_subparsers(dest="keys_cmd", required=True)
    ki = ksub.add_parser("init", help="create a local CA and an ES256 signing certificate")
    ki.add_argument("--org", default="dhstudio local studio", help="Organization (O=) of the certificates")
    ki.add_argument("--force", action="store_true", help="replace existing keys")
    ki.add_argument("--passphrase-file", help="encrypt the private keys with the passphrase in this file "
                    "(or set DHSTUDIO_KEY_PASSPHRASE)")
    ki.set_defaults(func=cmd_keys_init)
    kim = ksub.add_parser("import", help="use a certificate chain and key from a real CA")
    kim.add_argument("--cert", required=True, help="PEM chain: signing certificate first, then intermediates")
    kim.add_argument("--key", required=True, help="PEM private key of the signing certificate")
    kim.add_argument("--key-passphrase-file", help="passphrase of KEY.pem if it is encrypted")
    kim.add_argument("--passphrase-file", help="encrypt the stored key with this passphrase")
    kim.add_argument("--force", action="store_true", help="replace existing keys")
    kim.set_defaults(func=cmd_keys_import)
    ka = ksub.add_parser("anchor", help="print the trust anchor PEM to give to verifiers")
    ka.set_defaults(func=cmd_keys_anchor)

    s = sub.add_parser("sign", help="watermark, C2PA-sign and register a generated file")
    s.add_argument("input")
    s.add_argument("-o", "--output", required=True)
    s.add_argument("--model", default="dhstudio-procedural", help="generator model name")
    s.add_argument("--model-version", default="0")
    s.add_argument("--weights-sha256", default=None)
    s.add_argument("--seed", type=int, default=None)
    s.add_argument("--param", action="append", metavar="NAME=VALUE", help="generation parameter (repeatable)")
    s.add_argument("--ingredient", action="append", metavar="PATH", help="input the output was made from (inputTo)")
    s.add_argument("--source-type", default="trainedAlgorithmicMedia",
                   help="IPTC digitalSourceType (short name or IRI): trainedAlgorithmicMedia, algorithmicMedia, "
                        "compositeWithTrainedAlgorithmicMedia")
    s.add_argument("--training-mining", default="notAllowed", choices=["allowed", "notAllowed", "constrained"])
    s.add_argument("--no-watermark", action="store_true", help="sign without the invisible watermark")
    s.add_argument("--passphrase-file", help="passphrase of the signing key")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_sign)

    v = sub.add_parser("verify", help="check provenance (C2PA, watermark, registry) of any image, video or mesh, "
                                      "and the faces' content (face-forgery detector)")
    v.add_argument("file")
    v.add_argument("--json", action="store_true", help="print the Verdict as one JSON object")
    v.add_argument("--trust-anchors", metavar="PEM", help="trusted root certificates (default: the local studio CA)")
    v.add_argument("--no-default-anchors", action="store_true", help="trust nothing unless --trust-anchors is given")
    v.add_argument("--registry", metavar="SQLITE", help="registry database (default: the one in DHSTUDIO_HOME)")
    v.add_argument("--no-registry", action="store_true", help="skip the registry lookup")
    v.add_argument("--html", metavar="OUT", help="also write an HTML report (with the content check's key frames)")
    v.add_argument("--no-content", action="store_true",
                   help="skip the face-forgery content check (the label is then provenance's alone)")
    v.add_argument("--weights", help="content check: detector weights (default: assets/detector_default.safetensors)")
    v.add_argument("--max-frames", type=int, default=None, metavar="N",
                   help="content check, video: score at most N frames (default 300; shorter clips: every frame)")
    v.add_argument("--threads", type=int, default=None, help="content check: torch threads")
    v.set_defaults(func=cmd_verify)

    tk = sub.add_parser("tokens", help="bearer tokens for the web service's POST /v1/sign (stored hashed)")
    tk.add_argument("--db", default=None, help="the service database: a SQLite file or postgresql:// URL "
                                               "(default: service.sqlite3 in DHSTUDIO_HOME; as dhstudio serve --db)")
    tk.add_argument("--json", action="store_true")
    tsub = tk.add_subparsers(dest="tokens_cmd", required=True)
    tc = tsub.add_parser("create", help="make a token (printed once)")
    tc.add_argument("name", help="who or what uses it, e.g. the pipeline's name")
    tc.add_argument("--scope", action="append", choices=["sign"], help="what it may do (default: sign)")
    tsub.add_parser("list", help="every token (ids, names, scopes, last use; never the secret)")
    tr = tsub.add_parser("revoke", help="revoke a token by its id, or every token of a name")
    tr.add_argument("id_or_name")
    for t in (tk, tc, tr):
        t.set_defaults(func=cmd_tokens)

    sv = sub.add_parser("serve", help="the verifier as a web service (FastAPI + uvicorn): the web page at /, "
                                      "POST /v1/verify, jobs, reports, POST /v1/sign, C2PA soft-binding "
                                      "resolution, /healthz, /metrics, /docs")
    sv.add_argument("--host", default="127.0.0.1")
    sv.add_argument("--port", type=int, default=8000)
    sv.add_argument("--workers", type=int, default=2, help="video jobs run at once")
    sv.add_argument("--queue", type=int, default=8, help="video jobs that may wait (more: 503 + Retry-After)")
    sv.add_argument("--max-upload-mb", type=float, default=200.0, help="upload size cap (413 above it)")
    sv.add_argument("--job-ttl", type=float, default=3600.0, help="seconds a finished job's report is kept")
    sv.add_argument("--db", default=None, help="jobs, tokens and the registry in this SQLite file or postgresql:// "
                                               "URL (default: service.sqlite3 and registry.sqlite3 in DHSTUDIO_HOME)")
    sv.add_argument("--rate-limit", type=int, default=600, help="requests per minute per client (0: no limit)")
    sv.add_argument("--passphrase-file", help="the signing key's passphrase (default: $DHSTUDIO_KEY_PASSPHRASE)")
    sv.set_defaults(func=cmd_serve)

    from studio.batch.cli import add_parser as _add_batch
    _add_batch(sub)

    b = sub.add_parser("body", help="single-photo body reconstruction (PIFu): dataset, train, eval, reconstruct")
    bsub = b.add_subparsers(dest="body_cmd", required=True)
    bd = bsub.add_parser("dataset", help="render MakeHuman bodies (or your scans) into a training dataset")
    bd.add_argument("out", help="dataset folder (created; an existing one is resumed)")
    bd.add_argument("--from-meshes", metavar="DIR", help="textured scans (OBJ/GLB/PLY) instead of MakeHuman bodies")
    bd.add_argument("--up", choices=["y", "z"], default="y", help="up axis of the scans")
    bd.add_argument("--height", type=float, default=None, help="rescale scans to this height (m)")
    bd.add_argument("--subjects", type=int, default=120)
    bd.add_argument("--views", type=int, default=8)
    bd.add_argument("--size", type=int, default=512)
    bd.add_argument("--occ-samples", type=int, default=40000)
    bd.add_argument("--seed", type=int, default=0)
    bd.add_argument("--quiet", action="store_true")
    bd.set_defaults(func=cmd_body_dataset)
    bt = bsub.add_parser("train", help="train PIFu (resumes when OUT holds a run)")
    bt.add_argument("data")
    bt.add_argument("-o", "--out", required=True, help="run folder (model.safetensors, state, log.jsonl)")
    bt.add_argument("--model", choices=["small", "paper"], default="small")
    bt.add_argument("--steps", type=int, default=6000)
    bt.add_argument("--batch", type=int, default=4)
    bt.add_argument("--lr", type=float, default=1e-3)
    bt.add_argument("--image-size", type=int, default=None)
    bt.add_argument("--threads", type=int, default=None)
    bt.add_argument("--init", metavar="WEIGHTS", help="start from these weights (fine-tune / continue)")
    bt.add_argument("--z-frequencies", type=int, default=None, metavar="K",
                    help="Fourier bands of the depth input (default: the model config's, 0 = plain z)")
    bt.add_argument("--cone-balance", action="store_true",
                    help="balance inside/outside among the points inside the view's silhouette")
    bt.add_argument("--hull-fraction", type=float, default=0.0, metavar="F",
                    help="share of points carved out by the other views' silhouettes (labelled empty)")
    bt.add_argument("--photo-aug", action="store_true",
                    help="appearance augmentation towards real photos (painted hair caps, colour jitter)")
    bt.add_argument("--ray-weight", type=float, default=0.0, metavar="W",
                    help="weight of the ray-coverage loss (every silhouette ray must meet the body); 0 = off")
    bt.add_argument("--view-mix", default="1,1,1,2,3,4", metavar="N,N,...",
                    help="view counts each step draws from, uniformly (default 1,1,1,2,3,4)")
    bt.add_argument("--depth-head", action="store_true",
                    help="add the depth head (front/back depth maps from ray-cast depth, fed to the occupancy MLP)")
    bt.add_argument("--depth-weight", type=float, default=10.0, metavar="W",
                    help="weight of the depth head's L1 loss (default 10)")
    bt.add_argument("--depthnet", metavar="WEIGHTS",
                    help="front/back depth net (from `body train-depth`) whose maps feed the occupancy MLP")
    bt.add_argument("--prior-size", type=int, default=0, metavar="P",
                    help="train with the body prior (ICON-style MakeHuman fit), maps of P px; 0 = off")
    bt.add_argument("--prior-estimated-p", type=float, default=0.5, metavar="P",
                    help="share of views whose prior is the one fitted to the render (`body priors`), not the "
                         "true pose with noise")
    bt.add_argument("--prior-noise-deg", type=float, default=6.0, help="joint noise of the true-pose prior")
    bt.add_argument("--seed", type=int, default=0)
    bt.add_argument("--quiet", action="store_true")
    bt.set_defaults(func=cmd_body_train)
    btd = bsub.add_parser("train-depth", help="train the front/back depth U-Net (resumes when OUT holds a run)")
    btd.add_argument("data")
    btd.add_argument("-o", "--out", required=True, help="run folder (depthnet.safetensors, state, log.jsonl)")
    btd.add_argument("--steps", type=int, default=2600)
    btd.add_argument("--batch", type=int, default=16)
    btd.add_argument("--lr", type=float, default=1e-3)
    btd.add_argument("--image-size", type=int, default=128)
    btd.add_argument("--no-photo-aug", action="store_true", help="no hair caps / colour jitter on the inputs")
    btd.add_argument("--threads", type=int, default=None)
    btd.add_argument("--seed", type=int, default=0)
    btd.add_argument("--quiet", action="store_true")
    btd.set_defaults(func=cmd_body_train_depth)
    bp = bsub.add_parser("priors", help="fit the body prior to a dataset's rendered views, as to a photo "
                                        "(prior_est.npz per subject; resumable)")
    bp.add_argument("data")
    bp.add_argument("--views", default="0,2,4,6", help="view indices to fit (default 0,2,4,6: what eval uses)")
    bp.add_argument("--size", type=int, default=128, help="side of the prior maps")
    bp.add_argument("--splits", default="train,val,test")
    bp.add_argument("--shard", default="0/1", metavar="I/N", help="every N-th subject from the I-th (parallel runs)")
    bp.add_argument("--quiet", action="store_true")
    bp.set_defaults(func=cmd_body_priors)
    be = bsub.add_parser("eval", help="P2S / Chamfer / normal consistency vs the visual hull, as JSON")
    be.add_argument("data")
    be.add_argument("--checkpoint", help="weights (default: what `body reconstruct` uses: assets/pifu_prior.safetensors "
                                         "with the pose model installed, else assets/pifu_small.safetensors)")
    be.add_argument("--split", choices=["train", "val", "test"], default="test")
    be.add_argument("--views", default="1", help="view counts, e.g. 1,2,4")
    be.add_argument("--resolution", type=int, default=256)
    be.add_argument("--max-subjects", type=int, default=None)
    be.add_argument("--rows", action="store_true", help="include per-subject rows")
    be.add_argument("--quiet", action="store_true")
    be.set_defaults(func=cmd_body_eval)
    br = bsub.add_parser("reconstruct", help="one photo -> signed, watermarked GLB + turntable MP4")
    br.add_argument("photo")
    br.add_argument("-o", "--output", required=True, help="OUT.glb (the turntable goes to OUT.mp4)")
    br.add_argument("--mask", help="person mask (nonzero = person); default: the photo's alpha channel, else the "
                                   "built-in person segmentation (MediaPipe pose, faces extra)")
    br.add_argument("--checkpoint", help="weights (default: assets/pifu_prior.safetensors, the PIFu with the body "
                                         "prior, when the pose model is installed; else assets/pifu_small.safetensors)")
    br.add_argument("--person", type=int, default=None, metavar="N",
                    help="several people in the photo: reconstruct the N-th from the left (default: the largest)")
    br.add_argument("--height", type=float, default=1.7, help="assumed height of the person's silhouette (m)")
    br.add_argument("--resolution", type=int, choices=[128, 256, 512], default=256)
    br.add_argument("--no-turntable", action="store_true")
    br.add_argument("--no-sign", action="store_true", help="plain mesh, no watermark/manifest (not for publishing)")
    br.add_argument("--passphrase-file", help="passphrase of the signing key")
    br.add_argument("--json", action="store_true")
    br.set_defaults(func=cmd_body_reconstruct)

    h = sub.add_parser("head", help="NeRF head avatars: synth, train, eval, render, export-mesh")
    hsub = h.add_subparsers(dest="head_cmd", required=True)
    hsub.add_parser("synth", help="render a synthetic head capture from the ICT face model "
                    "(dhstudio head synth --help for its options)", add_help=False)
    ht = hsub.add_parser("train", help="train a head avatar on a capture (resumes when OUT holds a run)")
    ht.add_argument("capture", help="capture folder (nerfstudio transforms.json + images)")
    ht.add_argument("-o", "--out", required=True, help="run folder (model.safetensors, state, log.jsonl)")
    ht.add_argument("--steps", type=int, default=3000, help="optimiser steps (default 3000)")
    ht.add_argument("--minutes", type=float, default=None, help="training time budget; a resumed run counts "
                    "the time already spent")
    ht.add_argument("--batch-rays", type=int, default=None, help="rays per step (default 2048)")
    ht.add_argument("--threads", type=int, default=None, help="torch threads")
    ht.add_argument("--seed", type=int, default=0)
    ht.add_argument("--device", default="cpu", help="cpu (default), cuda, or auto (CUDA when present)")
    ht.add_argument("--backend", choices=["auto", "torch", "tcnn", "triton"], default="auto",
                    help="hash grid backend (tcnn and triton need CUDA)")
    ht.add_argument("--quiet", action="store_true", help="no progress bar")
    ht.set_defaults(func=cmd_head_train)
    he = hsub.add_parser("eval", help="PSNR / SSIM on held-out views and expressions, as JSON")
    he.add_argument("checkpoint", help="run folder or model.safetensors")
    he.add_argument("capture", help="capture folder with test_view / test_expression frames")
    he.add_argument("--split", choices=["test", "test_view", "test_expression"], default="test",
                    help="test: held-out views and held-out expressions")
    he.add_argument("--max-frames", type=int, default=None, help="frames per split at most (spread evenly)")
    he.add_argument("--threads", type=int, default=None)
    he.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    he.set_defaults(func=cmd_head_eval)
    hr = hsub.add_parser("render", help="render the avatar (orbit MP4 or still PNG), signed and watermarked")
    hr.add_argument("checkpoint", help="run folder or model.safetensors")
    hr.add_argument("--capture", required=True, help="the capture it was trained on (intrinsics and camera rig)")
    hr.add_argument("-o", "--output", required=True, help="OUT.mp4 (with --orbit) or OUT.png (a front still)")
    hr.add_argument("--orbit", action="store_true", help="swing the camera across the training views")
    hr.add_argument("--frames", type=int, default=48, help="orbit frames (default 48)")
    hr.add_argument("--fps", type=int, default=24)
    hr.add_argument("--expression", default=None, metavar="NAME=W,...",
                    help="blendshape weights in [0, 1], e.g. jawOpen=0.8,eyeBlink_L=1 (default: neutral)")
    hr.add_argument("--size", type=int, default=None, help="long side in pixels (default: the capture's)")
    hr.add_argument("--threads", type=int, default=None)
    hr.add_argument("--no-sign", action="store_true", help="no watermark/manifest (not for publishing)")
    hr.add_argument("--passphrase-file", help="passphrase of the signing key")
    hr.add_argument("--json", action="store_true")
    hr.add_argument("--quiet", action="store_true", help="no progress bar")
    hr.set_defaults(func=cmd_head_render)
    hm = hsub.add_parser("export-mesh", help="marching cubes on the avatar's density -> signed, watermarked GLB")
    hm.add_argument("checkpoint", help="run folder or model.safetensors")
    hm.add_argument("--capture", required=True, help="the capture it was trained on (the manifest's ingredient)")
    hm.add_argument("-o", "--output", required=True, help="OUT.glb (OBJ / PLY with --no-sign)")
    hm.add_argument("--resolution", type=int, choices=[64, 128, 256], default=128)
    hm.add_argument("--expression", default=None, metavar="NAME=W,...", help="blendshape weights (default: neutral)")
    hm.add_argument("--threshold", type=float, default=0.5, help="surface at this one-step opacity (0-1)")
    hm.add_argument("--threads", type=int, default=None)
    hm.add_argument("--no-sign", action="store_true", help="plain mesh, no watermark/manifest (not for publishing)")
    hm.add_argument("--passphrase-file", help="passphrase of the signing key")
    hm.add_argument("--json", action="store_true")
    hm.set_defaults(func=cmd_head_export_mesh)

    dt = sub.add_parser("detect", help="face-forgery detection: score images and videos "
                                       "(also: detect train / detect eval)")
    dt.add_argument("files", nargs="+", metavar="FILE")
    dt.add_argument("--weights", help="detector weights (default: assets/detector_default.safetensors)")
    dt.add_argument("--json", action="store_true", help="one JSON object per line and file")
    dt.add_argument("--threads", type=int, default=None, help="torch threads")
    dt.add_argument("--annotate", metavar="OUT.mp4", default=None,
                    help="video only: also write the video with boxes coloured by score, track ids and a "
                         "score plot (audio kept)")
    dt.add_argument("--max-frames", type=int, default=None, metavar="N",
                    help="video: score at most N frames (default 300; shorter clips: every frame)")
    dt.add_argument("--sample-fps", type=float, default=None, metavar="F",
                    help="video: sample F frames per second (lowered to fit --max-frames)")
    dt.set_defaults(func=cmd_detect)

    d = sub.add_parser("demo", help="the main job on built-in inputs: generate, sign, strip, verify")
    d.add_argument("--out", default="demo_out", help="output folder")
    d.add_argument("--quick", action="store_true", help="smaller inputs (for tests)")
    d.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:2] == ["head", "synth"]:  # its own parser (reconstruct.head.synth)
        from reconstruct.head.synth import main_synth

        return main_synth(argv[2:])
    if argv[:1] == ["detect"] and argv[1:2] and argv[1] in ("cache", "renders", "train", "calibrate", "eval"):
        def run() -> int:
            return main_detect_sub(argv[1:])
    else:
        args = build_parser().parse_args(argv)

        def run() -> int:
            return int(args.func(args) or 0)
    from provenance.errors import DhsError, printable

    _install_signal_handlers()
    try:
        return run()
    except DhsError as e:
        print(f"dhstudio: error: {printable(e.message)}", file=sys.stderr)
        return EXIT_USER
    except KeyboardInterrupt:
        print("dhstudio: interrupted", file=sys.stderr)
        return 130
    except Terminated as e:
        print(f"dhstudio: terminated by signal {e.signum}; nothing was left half-written", file=sys.stderr)
        return 128 + e.signum
    except BrokenPipeError:
        return 0
    except Exception as e:  # internal error: one line unless debugging
        if os.environ.get("DHSTUDIO_DEBUG"):
            raise
        msg = printable(str(e).splitlines()[0]) if str(e) else ""
        print(f"dhstudio: internal error: {type(e).__name__}: {msg} (set DHSTUDIO_DEBUG=1 for details)",
              file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
