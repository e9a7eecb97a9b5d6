"""The studio's own output as a fake source for the face-forgery detectors (issue 13).

The paired detector must know what dhstudio itself generates even after the watermark and the
manifest are gone. This module renders that output into a folder the detector's data code reads
(``detect.data.build_manifest(..., renders=FOLDER)``), unsigned (the watermark is exactly what is
assumed lost) and labelled fake:

- ``own/head_synth``: the synthetic ICT-FaceKit heads that head avatars are trained on
  (:func:`reconstruct.head.synth.synth_capture`): ``identities`` random identities (PCA weights
  and skin / eye / hair colours drawn from the seed), ``views`` cameras of the multiview rig,
  ``expressions`` frames of the ``talking`` sequence each, ``size`` px, black background as the
  head renders are published. One identity = one group; the split is
  :func:`detect.data.split_of` of the group, like every other pack.
- ``own/head_nerf``: stills of hash-grid NeRF avatars (``dhstudio head train``) trained for
  ``nerf_seconds`` each on a capture of a further random identity, rendered along the published
  orbit at ``size`` px with the capture's expressions. Too costly on a CPU to make many: avatar
  ``k`` goes to the split ``NERF_SPLITS[k % 3]`` (train, test, val) so that the first two
  avatars already give one training and one held-out identity.
- ``own/body_turntable``: frames of the turntable MP4 that ``dhstudio body reconstruct`` makes
  from a photo (``body_photo``; the shared pack has one). One person: held out (test) only, a
  smoke test of the body generator's faces, not an accuracy claim.

Every file is listed in ``MANIFEST.tsv`` (``file``, ``source``, ``group``, ``split``,
``generator``); the folder is built next to ``out`` and renamed into place when complete.

Command line: ``dhstudio detect renders OUT [--identities N] [--nerf-avatars K] [--body-photo P]``.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from provenance.errors import InputError, OutputError

NERF_SPLITS = ("train", "test", "val")
SCHEMA = "dhstudio.own-renders/1"


def _save_png(path: Path, rgb: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(np.ascontiguousarray(rgb)).save(path)


def _head_synth(tmp: Path, rows: list, *, identities: int, views: int, expressions: int, size: int, seed: int,
                bar) -> None:
    from detect.data import split_of
    from reconstruct.head.synth import synth_capture

    folder = tmp / "images" / "head_synth"
    folder.mkdir(parents=True)
    for k in range(identities):
        s = seed * 100_003 + k
        with tempfile.TemporaryDirectory(dir=tmp) as work:
            cap = synth_capture(Path(work) / "cap", identity=None, n_views=views, n_frames=expressions,
                                size=size, seed=s, n_test_views=0, n_test_expressions=0)
            group = f"own_head:{s}"
            for fr in cap.frames:
                name = f"{s}_{Path(fr.file_path).stem}.png"
                shutil.copyfile(cap.root / fr.file_path, folder / name)
                rows.append({"file": f"images/head_synth/{name}", "source": "own/head_synth", "group": group,
                             "split": split_of(group), "generator": "reconstruct.head.synth"})
        bar(f"head_synth {k + 1}/{identities}")


def _head_nerf(tmp: Path, rows: list, *, avatars: int, seconds: float, frames: int, size: int, seed: int,
               threads: int | None, bar) -> None:
    from reconstruct.head.render import render_view
    from reconstruct.head.synth import synth_capture
    from studio.pipelines.head import load_avatar, load_capture_checked, orbit_cameras, render_intrinsics, \
        train_avatar

    folder = tmp / "images" / "head_nerf"
    folder.mkdir(parents=True)
    for k in range(avatars):
        s = seed * 100_003 + 50_000 + k
        group = f"own_nerf:{s}"
        with tempfile.TemporaryDirectory(dir=tmp) as work:
            work = Path(work)
            synth_capture(work / "cap", identity=None, n_views=12, n_frames=12, size=128, seed=s)
            train_avatar(work / "cap", work / "run", steps=100_000, minutes=seconds / 60, threads=threads,
                         seed=k, progress=False)
            model, _ = load_avatar(work / "run")
            cap = load_capture_checked(work / "cap")
            intr = render_intrinsics(cap, size)
            exprs = [fr.expression for fr in cap.frames]
            rng = np.random.default_rng(s)
            for j, c2w in enumerate(orbit_cameras(cap, frames, orbit=True)):
                expr = exprs[int(rng.integers(len(exprs)))]
                rgb = render_view(model, intr, c2w, expr)["rgb"]
                name = f"{s}_{j:03d}.png"
                _save_png(folder / name, (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8))
                rows.append({"file": f"images/head_nerf/{name}", "source": "own/head_nerf", "group": group,
                             "split": NERF_SPLITS[k % len(NERF_SPLITS)], "generator": "dhstudio head train+render"})
        bar(f"head_nerf {k + 1}/{avatars}")


def _body_turntable(tmp: Path, rows: list, *, photo: Path, mask: Path | None, frames: int, bar) -> None:
    import av

    from studio.pipelines.body import reconstruct_body

    folder = tmp / "images" / "body_turntable"
    folder.mkdir(parents=True)
    with tempfile.TemporaryDirectory(dir=tmp) as work:
        res = reconstruct_body(photo, Path(work) / "body.glb", mask=mask, frames=frames, sign=False)
        with av.open(str(res.video_path)) as c:
            for j, fr in enumerate(c.decode(video=0)):
                name = f"{photo.stem}_{j:03d}.png"
                _save_png(folder / name, fr.to_ndarray(format="rgb24"))
                rows.append({"file": f"images/body_turntable/{name}", "source": "own/body_turntable",
                             "group": f"own_body:{photo.stem}", "split": "test",
                             "generator": "dhstudio body reconstruct (turntable MP4)"})
    bar("body_turntable")


def make_own_renders(out: Path | str, *, identities: int = 120, views: int = 4, expressions: int = 3,
                     size: int = 256, nerf_avatars: int = 0, nerf_seconds: float = 240.0, nerf_frames: int = 16,
                     body_photo: Path | str | None = None, body_mask: Path | str | None = None,
                     body_frames: int = 24, seed: int = 0, threads: int | None = None,
                     progress: bool = True) -> dict:
    """Render the studio's own output into the new folder ``out`` (see the module docstring)."""
    out = Path(out)
    for name, v, lo in (("identities", identities, 0), ("views", views, 1), ("expressions", expressions, 1),
                        ("size", size, 64), ("nerf_avatars", nerf_avatars, 0), ("nerf_frames", nerf_frames, 1),
                        ("body_frames", body_frames, 1)):
        if int(v) != v or v < lo:
            raise InputError(f"--{name.replace('_', '-')} must be an integer >= {lo}, got {v!r}")
    if nerf_avatars and not nerf_seconds > 0:
        raise InputError(f"--nerf-seconds must be positive, got {nerf_seconds}")
    if out.exists():
        raise OutputError(f"{out} exists; give a new folder", code="output.exists")
    if not out.parent.is_dir():
        raise OutputError(f"cannot create {out}: folder {out.parent} does not exist", code="output.no_directory")
    photo = Path(body_photo) if body_photo else None
    if photo is not None and not photo.is_file():
        raise InputError(f"body photo {photo} does not exist", code="input.missing")
    t0 = time.perf_counter()

    def bar(msg: str) -> None:
        if progress:
            print(f"[{time.perf_counter() - t0:7.1f} s] {msg}", flush=True)

    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    rows: list[dict] = []
    try:
        if identities:
            _head_synth(tmp, rows, identities=identities, views=views, expressions=expressions, size=size,
                        seed=seed, bar=bar)
        if nerf_avatars:
            _head_nerf(tmp, rows, avatars=nerf_avatars, seconds=nerf_seconds, frames=nerf_frames, size=size,
                       seed=seed, threads=threads, bar=bar)
        if photo is not None:
            _body_turntable(tmp, rows, photo=photo, mask=Path(body_mask) if body_mask else None,
                            frames=body_frames, bar=bar)
        buf = io.StringIO()
        w = csv.DictWriter(buf, ["file", "source", "group", "split", "generator"], delimiter="\t",
                           lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        (tmp / "MANIFEST.tsv").write_text(buf.getvalue(), encoding="utf-8")
        (tmp / "README.md").write_text(
            f"# dhstudio own renders ({SCHEMA})\n\nMade by `studio.pipelines.own_renders.make_own_renders` "
            f"(identities={identities}, views={views}, expressions={expressions}, size={size}, "
            f"nerf_avatars={nerf_avatars}, nerf_seconds={nerf_seconds}, body_photo={photo}, seed={seed}). "
            "Synthetic heads from the ICT-FaceKit model (MIT); every image is label 1 (generated).\n",
            encoding="utf-8")
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["source"]] = counts.get(r["source"], 0) + 1
    return {"out": str(out), "images": len(rows), "by_source": counts,
            "seconds": round(time.perf_counter() - t0, 1)}
