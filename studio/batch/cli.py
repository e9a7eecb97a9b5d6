"""``dhstudio batch verify|detect|sign PATHS... --out results.parquet [--engine local|ray] [--workers N]``.

``studio.cli.build_parser`` calls :func:`add_parser`; everything else of the batch command lives
here. Exit codes: 0 all files of this run ok (or nothing left to do), 1 finished but some files of
this run have status ``error`` (their rows say why), 2 a user error (one line, nothing written),
130 / 143 interrupted (the rows done are saved; the same command goes on).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

EXIT_FILE_ERRORS = 1


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", metavar="PATH", help="files and folders (folders are walked)")
    p.add_argument("-o", "--out", required=True, metavar="RESULTS.parquet",
                   help="results file, one row per file; an existing one is resumed (its files are skipped)")
    p.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="local: a process pool on this machine (default); ray: Ray Data (the batch extra)")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="worker processes / Ray actors (default: this machine's CPUs; with --address: the "
                        "cluster's)")
    p.add_argument("--address", default=None, metavar="ADDR",
                   help="--engine ray: an existing Ray cluster (e.g. ray://head:10001 or auto); default: start "
                        "a local one")
    p.add_argument("--checkpoint-every", type=int, default=100, metavar="N",
                   help="save the finished rows every N files (and every minute); default 100")
    p.add_argument("--retry-errors", action="store_true", help="run again the files whose row says error")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def add_parser(sub) -> None:
    """Add ``batch`` and its three operations to the ``dhstudio`` sub-parsers ``sub``."""
    b = sub.add_parser("batch", help="verify, detect or sign many files into one Parquet results file "
                                     "(resumable; local process pool or Ray)")
    bsub = b.add_subparsers(dest="batch_cmd", required=True)

    v = bsub.add_parser("verify", help="the Verdict of every file: label, reasons, the whole Verdict JSON")
    _common(v)
    v.add_argument("--no-content", action="store_true", help="skip the face-forgery content check")
    v.add_argument("--trust-anchors", metavar="PEM", help="trusted root certificates (default: the local studio CA)")
    v.add_argument("--no-default-anchors", action="store_true", help="trust nothing unless --trust-anchors is given")
    v.add_argument("--registry", metavar="SQLITE", help="registry database (default: the one in DHSTUDIO_HOME)")
    v.add_argument("--no-registry", action="store_true", help="skip the registry lookup")
    v.add_argument("--weights", help="content check: detector weights (default: the shipped detector)")
    v.add_argument("--max-frames", type=int, default=None, metavar="N", help="video: score at most N frames")
    v.set_defaults(func=cmd_batch)

    d = bsub.add_parser("detect", help="face-forgery scores of every image and video (as `dhstudio detect`)")
    _common(d)
    d.add_argument("--weights", help="detector weights (default: the shipped detector)")
    d.add_argument("--max-frames", type=int, default=None, metavar="N", help="video: score at most N frames")
    d.set_defaults(func=cmd_batch)

    s = bsub.add_parser("sign", help="watermark, C2PA-sign and register every file (as `dhstudio sign`) into "
                                     "--out-dir, keeping the folder layout")
    _common(s)
    s.add_argument("--out-dir", required=True, metavar="DIR", help="folder for the signed files (created)")
    s.add_argument("--model", default="dhstudio-procedural", help="generator model name")
    s.add_argument("--model-version", default="0")
    s.add_argument("--weights-sha256", default=None)
    s.add_argument("--seed", type=int, default=None)
    s.add_argument("--param", action="append", metavar="NAME=VALUE", help="generation parameter (repeatable)")
    s.add_argument("--source-type", default="trainedAlgorithmicMedia", help="IPTC digitalSourceType")
    s.add_argument("--training-mining", default="notAllowed", choices=["allowed", "notAllowed", "constrained"])
    s.add_argument("--no-watermark", action="store_true", help="sign without the invisible watermark")
    s.add_argument("--passphrase-file", help="passphrase of the signing key")
    s.set_defaults(func=cmd_batch)


def _spec(args):
    from provenance import media
    from provenance.errors import InputError

    from .tasks import TaskSpec

    op = args.batch_cmd
    if getattr(args, "max_frames", None) is not None and args.max_frames < 1:
        raise InputError(f"--max-frames must be >= 1, got {args.max_frames}")
    if op == "verify":
        anchors = None
        if args.trust_anchors:
            anchors = media.read_regular(Path(args.trust_anchors), what="trust anchors")
            if b"-----BEGIN CERTIFICATE-----" not in anchors:
                raise InputError(f"trust anchors {args.trust_anchors}: no PEM certificate in the file",
                                 code="trust.invalid")
        registry = "default"
        if args.registry:
            media.check_input_path(args.registry)
            registry = str(Path(args.registry).resolve())
        elif args.no_registry:
            registry = None
        return TaskSpec(op="verify", content=not args.no_content, trust_anchors=anchors,
                        use_default_anchors=not args.no_default_anchors, registry=registry,
                        weights=str(Path(args.weights).resolve()) if args.weights else None,
                        max_frames=args.max_frames)
    if op == "detect":
        return TaskSpec(op="detect", weights=str(Path(args.weights).resolve()) if args.weights else None,
                        max_frames=args.max_frames)
    from provenance.manifest import GenerationSpec, digital_source_type_iri
    from studio.cli import _parse_params, _read_passphrase

    try:
        digital_source_type_iri(args.source_type)
    except ValueError as e:
        raise InputError(f"--source-type: {e}") from None
    gen = GenerationSpec(model_name=args.model, model_version=args.model_version, weights_sha256=args.weights_sha256,
                         parameters=_parse_params(args.param), seed=args.seed,
                         digital_source_type=args.source_type, training_mining=args.training_mining)
    return TaskSpec(op="sign", generation=gen, watermark=not args.no_watermark, passphrase=_read_passphrase(args))


def cmd_batch(args) -> int:
    from provenance.errors import printable

    from .runner import BatchConfig, run_batch

    cfg = BatchConfig(spec=_spec(args), paths=list(args.paths), out=args.out, engine=args.engine,
                      workers=args.workers, address=args.address, out_dir=getattr(args, "out_dir", None),
                      checkpoint_every=args.checkpoint_every, retry_errors=args.retry_errors,
                      progress=not args.quiet and not args.json)
    s = run_batch(cfg)
    if args.json:
        d = {k: v for k, v in s.__dict__.items()}
        d["files_per_s"] = s.files_per_s
        print(json.dumps(d))
    else:
        rate = f", {s.files_per_s:.2f} files/s with {s.workers} {s.engine} worker(s)" if s.files_per_s else ""
        skipped = f", {s.skipped} already in the results (skipped)" if s.skipped else ""
        notes = [f"{n} {what}" for n, what in ((s.skipped_links, "symlink(s) out of the folder"),
                                              (s.skipped_special, "special file(s)"),
                                              (s.skipped_hidden, "hidden name(s)")) if n]
        print(f"batch {s.op}: {s.files} file(s){skipped}; {s.processed} processed: {s.ok} ok, {s.errors} error(s)"
              f"{rate}; {s.rows} row(s) in {printable(s.out)}")
        if notes:
            print(f"not taken from the folders: {', '.join(notes)}", file=sys.stderr)
    return EXIT_FILE_ERRORS if s.errors else 0
