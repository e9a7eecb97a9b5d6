"""How well the body prior's pose is estimated from one rendered view (issue 16).

    .venv/bin/python benchmarks/body_pose_errors.py --data DATASET [--split val] [--view 0]
        [--max-subjects N]

For each subject of the split, view ``--view`` (its RGB with the random background, as a photo),
against the subject's true MakeHuman joints (``makehuman.subject_spec`` of its seed) for 12
joints (shoulders, elbows, wrists, hips, knees, ankles):

- ``mp_2d_px`` / ``fit_2d_px``: image distance of MediaPipe's landmarks / the fitted skeleton's
  joints to the true joints' projections (pixels of the 512 px view);
- ``fit_depth_cm`` / ``mp_depth_cm`` / ``flat_depth_cm``: mean error of each joint's depth relative
  to the hips' centre, for the fitted skeleton (``prior.fit_body``), MediaPipe's world landmarks
  as they are, and a flat body (every joint at the hips' depth);
- per joint means of the depth errors, and the segmentation IoU with the true mask.

One JSON line per subject, then a summary line. Tune the fit on ``val``; report ``test``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--split", default="val")
    ap.add_argument("--view", type=int, default=0)
    ap.add_argument("--max-subjects", type=int, default=None)
    a = ap.parse_args()

    import trimesh
    from PIL import Image

    from reconstruct.body import makehuman as mh
    from reconstruct.body import prior
    from reconstruct.body.data import BodyDataset

    joints = [prior.L_SHOULDER, prior.R_SHOULDER, prior.L_ELBOW, prior.R_ELBOW, prior.L_WRIST, prior.R_WRIST,
              prior.L_HIP, prior.R_HIP, prior.L_KNEE, prior.R_KNEE, prior.L_ANKLE, prior.R_ANKLE]
    names = ["shoulder.L", "shoulder.R", "elbow.L", "elbow.R", "wrist.L", "wrist.R", "hip.L", "hip.R",
             "knee.L", "knee.R", "ankle.L", "ankle.R"]
    hips = [joints.index(prior.L_HIP), joints.index(prior.R_HIP)]
    pack = mh.load_pack()
    ds = BodyDataset(a.data, a.split)
    ids = ds.ids[: a.max_subjects] if a.max_subjects else ds.ids
    rows, t0 = [], time.time()
    for sid in ids:
        sub = ds.subject(sid)
        meta = sub["meta"]
        gt = trimesh.load(sub["dir"] / "mesh.ply", force="mesh", process=False)
        spec = mh.subject_spec(meta["seed"])
        skel = mh.build_skeleton(mh.shape_vertices(spec.params, pack), pack)
        heads, _ = mh.posed_joints(skel, mh.pose_transforms(skel, spec.pose))
        skin, _ = prior.posed_skin(spec.params, spec.pose)
        shift = (np.asarray(gt.vertices)[:mh.N_BODY_VERTS] - skin).mean(0)
        true3 = np.array([heads[skel.index(prior.LANDMARK_ON_BODY[j][1])] / 10 + shift for j in joints])
        with Image.open(sub["dir"] / meta["views"][a.view]["file"]) as im:
            rgba = np.asarray(im.convert("RGBA"))
        _, mask, cam = ds.view(sid, a.view)
        uv_t, z_t = cam.project(true3)
        try:
            est = prior.estimate_person(rgba[..., :3])
            fit = prior.fit_body(est)
        except prior.NoPerson as e:
            rows.append({"subject": sid, "pose": meta["pose"], "error": str(e)})
            print(json.dumps(rows[-1]), flush=True)
            continue
        fsk = mh.build_skeleton(mh.shape_vertices(fit.params, pack), pack)
        fh, _ = mh.posed_joints(fsk, mh.pose_transforms(fsk, fit.pose))
        fit3 = np.array([fh[fsk.index(prior.LANDMARK_ON_BODY[j][1])] / 10 for j in joints])
        uv_f, z_f = fit.camera().project(fit3)
        zt = z_t - z_t[hips].mean()
        zf = (z_f - z_f[hips].mean()) * fit.scale / cam.fx  # fitted metres -> the view's metres
        zw = est.world[joints][:, 2] - est.world[joints][hips, 2].mean()
        rows.append({"subject": sid, "pose": meta["pose"],
                     "seg_iou": float((est.mask & mask).sum() / max((est.mask | mask).sum(), 1))
                     if est.mask.shape == mask.shape else None,
                     "mp_2d_px": float(np.linalg.norm(est.landmarks[joints] - uv_t, axis=1).mean()),
                     "fit_2d_px": float(np.linalg.norm(uv_f - uv_t, axis=1).mean()),
                     "fit_depth_cm": float(np.abs(zf - zt).mean() * 100),
                     "mp_depth_cm": float(np.abs(zw - zt).mean() * 100),
                     "flat_depth_cm": float(np.abs(zt).mean() * 100),
                     "fit_depth_by_joint_cm": (np.abs(zf - zt) * 100).round(1).tolist(),
                     "mp_depth_by_joint_cm": (np.abs(zw - zt) * 100).round(1).tolist(),
                     "seconds_fit": round(fit.seconds, 2)})
        print(json.dumps(rows[-1]), flush=True)
    ok = [r for r in rows if "error" not in r]
    keys = ("mp_2d_px", "fit_2d_px", "fit_depth_cm", "mp_depth_cm", "flat_depth_cm", "seconds_fit")
    summary = {k: round(float(np.mean([r[k] for r in ok])), 2) for k in keys} if ok else {}
    if ok:
        summary["fit_depth_by_joint_cm"] = dict(zip(names, np.mean([r["fit_depth_by_joint_cm"] for r in ok], 0).round(1).tolist()))
        summary["mp_depth_by_joint_cm"] = dict(zip(names, np.mean([r["mp_depth_by_joint_cm"] for r in ok], 0).round(1).tolist()))
    print(json.dumps({"machine": f"{platform.machine()} {os.cpu_count()} cpus", "date": time.strftime("%Y-%m-%d"),
                      "split": a.split, "view": a.view, "subjects": len(rows), "no_person": len(rows) - len(ok),
                      "seconds": round(time.time() - t0, 1), "summary": summary}), flush=True)


if __name__ == "__main__":
    main()
