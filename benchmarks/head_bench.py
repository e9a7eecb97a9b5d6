"""Head avatar quality in a CPU time budget (issue #4): held-out-view and held-out-expression PSNR / SSIM.

The claim: on the 2-core CPU machine, at 128 px, with <= 15 minutes of training, a head avatar
reaches held-out-view PSNR >= 28 dB and held-out-expression PSNR >= 26 dB on a synthetic ICT
capture.

Steps:

1. the capture (made once, reused when the folder exists): ``reconstruct.head.synth.synth_capture``
   with the arguments below (default: ICT identity ``identity003``, multiview rig, 8 camera
   positions of which 2 held out between the training cameras, 12 training frames of the
   ``talking`` sequence + 3 held-out expressions, 128 px, seed 0);
2. training from scratch into a new run folder (``reconstruct.head.train.train_head`` with the
   default :class:`HeadTrainConfig` except ``max_seconds`` (default 900) and ``threads``);
   ``steps`` is set high so that the time budget ends the run. The time counted is the training
   loop's (data loading and the capture are not counted);
3. evaluation (``evaluate_head``) on every ``test_view`` and ``test_expression`` frame, and PSNR on
   a few training frames.

Prints one JSON line: machine, date, threads, the capture, steps, seconds, PSNR / SSIM per split.

Measured 2026-12-02 (AMD EPYC, 2 cpus, one thread pinned to core 1, torch 2.13.0 CPU, 900 s of
training, identity003, talking, 12 training frames + 3 held-out expressions, 128 px, seed 0):

- ``--views 8`` (6 training cameras, 2 held out): 3639 steps; held-out views 27.90 dB / SSIM
  0.912, held-out expressions 38.72 dB / 0.991, training frames 39.88 dB;
- ``--views 12`` (9 training cameras, 3 held out): 4101 steps; held-out views 32.57 dB / SSIM
  0.962, held-out expressions 39.17 dB / 0.991, training frames 40.27 dB.

The 8-view run's 12 dB gap between training frames and held-out views is the field
over-fitting six cameras; nine close it to 8 dB. The target (>= 28 / >= 26 dB) holds with
12 views and misses by 0.1 dB on held-out views with 8.

Run from the repository root, pinned to one core (the machine's other core was busy with another
job when the figure was measured, so one thread is the honest setting)::

    taskset -c 1 nice -n 5 env OMP_NUM_THREADS=1 .venv/bin/python benchmarks/head_bench.py \\
        --threads 1 --seconds 900 --views 12 >> .bench/head_bench.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _machine import cpu_name as _cpu_name  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--capture", type=Path, default=None,
                    help="capture folder (made when absent; default .bench/head_capture_<settings>)")
    ap.add_argument("--run", type=Path, default=None, help="new run folder (default .bench/head_run_<time>)")
    ap.add_argument("--identity", default="identity003")
    ap.add_argument("--views", type=int, default=8)
    ap.add_argument("--frames", type=int, default=12)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--sequence", default="talking")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--seconds", type=float, default=900.0, help="training time budget")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-rays", type=int, default=None)
    ap.add_argument("--carve", choices=["hull", "none"], default="hull",
                    help="occupancy grid at the start: the masks' visual hull (default) or full (as before issue 15)")
    ap.add_argument("--face-model", type=Path, default=ROOT.parent / "shared" / "data" / "ict_face")
    ap.add_argument("--progress", action="store_true", help="progress bars on stderr")
    args = ap.parse_args(argv)

    import torch

    from reconstruct.head.synth import synth_capture
    from reconstruct.head.train import HeadTrainConfig, evaluate_head, train_head

    torch.set_num_threads(args.threads)
    tag = f"{args.identity}_v{args.views}_f{args.frames}_{args.sequence}_{args.size}px_s{args.seed}"
    cap_dir = args.capture or ROOT / ".bench" / f"head_capture_{tag}"
    t0 = time.perf_counter()
    if not (cap_dir / "transforms.json").is_file():
        cap_dir.parent.mkdir(parents=True, exist_ok=True)
        synth_capture(cap_dir, identity=args.identity, n_views=args.views, n_frames=args.frames, size=args.size,
                      sequence=args.sequence, seed=args.seed, face_model_path=args.face_model,
                      progress=args.progress)
    synth_s = time.perf_counter() - t0
    run = args.run or ROOT / ".bench" / f"head_run_{time.strftime('%Y%m%d_%H%M%S')}"
    if run.exists():
        shutil.rmtree(run)  # a benchmark trains from scratch, never resumes
    cfg = HeadTrainConfig(steps=10**7, max_seconds=args.seconds, threads=args.threads, seed=args.seed)
    cfg.grid_carve = args.carve
    if args.batch_rays:
        cfg.batch_rays = args.batch_rays
    summary = train_head(cap_dir, run, cfg, progress=args.progress)
    t1 = time.perf_counter()
    res = evaluate_head(run, cap_dir, n_train=6)
    eval_s = time.perf_counter() - t1
    out = {"bench": "head", "machine": f"{_cpu_name()}, {os.cpu_count()} cpus, {platform.machine()}",
           "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "python": platform.python_version(),
           "torch": torch.__version__, "threads": args.threads, "affinity": sorted(os.sched_getaffinity(0)),
           "capture": {"identity": args.identity, "rig": "multiview", "views": args.views,
                       "frames": args.frames, "sequence": args.sequence, "size": args.size, "seed": args.seed,
                       "path": str(cap_dir)},
           "budget_s": args.seconds, "grid_carve": cfg.grid_carve, "steps": summary["steps"], "seconds": summary["seconds"],
           "batch_rays": cfg.batch_rays, "train_psnr_running": round(summary["train_psnr"], 3),
           **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in res.items()},
           "synth_s": round(synth_s, 1), "eval_s": round(eval_s, 1), "run": str(run),
           "targets": {"test_view_psnr": 28.0, "test_expression_psnr": 26.0},
           "command": "python benchmarks/head_bench.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
