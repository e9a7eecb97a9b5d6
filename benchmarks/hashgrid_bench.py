"""Hash-grid encoding speed (issue #4): forward + backward points/s, ours vs nerfstudio's torch HashEncoding.

Configuration (both encoders): 3-D points, 16 levels x 2 features, 2^19 table rows per level at
most, base resolution 16, per-level scale exp(ln(2048 / 16) / 15) (ours: ``max_resolution=2048``;
nerfstudio: ``min_res=16, max_res=2048``, the same growth factor). Points: uniform in [0, 1]^3,
fixed seed, N = 2^16 and 2^18. One step: ``encoder(x).sum().backward()`` with the table's
gradient cleared before it (x does not need a gradient). Each method gets warm-up steps, then the
repeats run interleaved (ours, nerfstudio, ours, ...) so that load from other processes hits both
alike; the figure is the median wall time of the repeats (the median process CPU time is
recorded too: on a shared machine it shows what contention added).

Methods:
- ``ours``: ``reconstruct.head.encoding.HashGrid(backend="torch")``, the fused path
  (``HashGridFunction``: hand-written backward).
- ``ours-autograd``: the same encoding through plain autograd (``hash_grid_encode(...,
  fused=False)``, the reference the fused path is tested against; what the torch backend was
  before the fused path); ``--no-reference`` skips it.
- ``nerfstudio``: ``nerfstudio.field_components.encodings.HashEncoding(implementation="torch")``
  from nerfstudio 1.1.5, imported as is (no stubs).

Semantics are not identical, so the two encoders compute comparable but different features:
nerfstudio scales level l by ``floor(16 * g^l)`` with no +0.5 offset and takes the upper corner as
``ceil`` (ours: tcnn's ``16 * g^l - 1`` in float32, ``+0.5``, ``floor + 1``); it hashes every level
into 2^19 rows (ours: tcnn's layout, coarse levels dense with fewer rows: 6,098,120 rows in all
against 8,388,608); and its table is initialised in [-1e-3, 1e-3] (ours: [-1e-4, 1e-4]). The
work per point (8 corners x 16 levels, gather, weights, scatter-add of the table gradient) is
the same.

Environment (its own venv; nerfstudio is not a dependency of the project). Exact commands, run
from the repository root::

    python3.11 -m venv .venv-bench-head
    .venv-bench-head/bin/pip install torch==2.13.0        # the CPU wheel from the local wheel dir
    .venv-bench-head/bin/pip install nerfstudio==1.1.5 --no-deps
    .venv-bench-head/bin/pip install jaxtyping numpy viser # what `from nerfstudio.field_components
                                                           # .encodings import HashEncoding` imports
                                                           # (viser: nerfstudio.data.scene_box)
    .venv-bench-head/bin/pip install -e . --no-deps

(torchvision is not needed and not installed.) Run::

    nice -n 10 taskset -c 1 env OMP_NUM_THREADS=1 .venv-bench-head/bin/python \\
        benchmarks/hashgrid_bench.py --threads 1 --jsonl .bench/hashgrid_bench.jsonl

Prints a markdown table; ``--jsonl`` appends one JSON line per (method, N, threads).

On a GPU machine (issue #4's GPU figures: our fused path against our torch path, and tcnn where
it is built), from the repository root with the machine's own Python (torch + triton)::

    PYTHONPATH=. python3 benchmarks/hashgrid_bench.py --device cuda --backends triton \\
        --no-nerfstudio --no-reference --sizes 16,18,20 --repeats 20 --warmup 5

(add ``tcnn`` to ``--backends`` where tiny-cuda-nn is installed; without ``--no-nerfstudio`` its
torch HashEncoding runs on the GPU too when nerfstudio is importable).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _machine import cpu_name as _cpu_name  # noqa: E402

N_LEVELS, N_FEATURES, LOG2_T, BASE_RES, MAX_RES = 16, 2, 19, 16, 2048


def _make_encoders(with_reference: bool, device: str = "cpu", extra: tuple[str, ...] = (), with_ns: bool = True):
    """Encoders by method name. ``extra``: also "triton" (ours, Triton kernels) and "tcnn"
    (tiny-cuda-nn through our HashGrid), CUDA only; nerfstudio is included when it imports."""
    import torch

    from reconstruct.head.encoding import HashGrid, hash_grid_encode

    ours = HashGrid(3, N_LEVELS, N_FEATURES, LOG2_T, BASE_RES, backend="torch", max_resolution=MAX_RES).to(device)
    ours.check_inputs = False  # the isfinite check is the module's, not the encoding's; skip it
    methods = {"ours": (ours, ours.params)}
    if with_reference:
        methods["ours-autograd"] = (lambda x: hash_grid_encode(x, ours.params, ours.config, fused=False), ours.params)
    for backend in extra:
        enc = HashGrid(3, N_LEVELS, N_FEATURES, LOG2_T, BASE_RES, backend=backend, max_resolution=MAX_RES).to(device)
        enc.check_inputs = False
        methods[f"ours-{backend}"] = (enc, enc.params)
    notes = {"ours_scales": [round(s, 4) for s in ours.level_scales], "ours_rows": ours.config.level_offsets[-1],
             "per_level_scale": ours.config.per_level_scale}
    HashEncoding = None
    if with_ns:
        try:
            from nerfstudio.field_components.encodings import HashEncoding
        except ImportError:
            pass
    if HashEncoding is not None:
        ns = HashEncoding(num_levels=N_LEVELS, min_res=BASE_RES, max_res=MAX_RES, log2_hashmap_size=LOG2_T,
                          features_per_level=N_FEATURES, implementation="torch").to(device)
        assert abs(ours.config.per_level_scale - float(ns.growth_factor)) < 1e-12, "level growth factors differ"
        methods["nerfstudio"] = (ns, ns.hash_table)
        notes.update(nerfstudio_scales=[float(s) for s in ns.scalings], nerfstudio_rows=int(ns.hash_table.shape[0]))
    torch.set_grad_enabled(True)
    return methods, notes


def _step(encoder, table, x) -> None:
    table.grad = None
    encoder(x).sum().backward()
    if x.is_cuda:
        import torch
        torch.cuda.synchronize()


def bench(n_points: int, threads: int, warmup: int, repeats: int, with_reference: bool, seed: int,
          device: str = "cpu", extra: tuple[str, ...] = (), with_ns: bool = True) -> list[dict]:
    import torch

    torch.set_num_threads(threads)
    methods, notes = _make_encoders(with_reference, device, extra, with_ns)
    x = torch.rand(n_points, 3, generator=torch.Generator().manual_seed(seed)).to(device)
    for name, (enc, table) in methods.items():
        out = enc(x)
        assert out.shape == (n_points, N_LEVELS * N_FEATURES), (name, tuple(out.shape))
        for _ in range(warmup):
            _step(enc, table, x)
        assert table.grad is not None and bool(torch.isfinite(table.grad).all()), name
    wall = {name: [] for name in methods}
    cpu = {name: [] for name in methods}
    for _ in range(repeats):
        for name, (enc, table) in methods.items():
            t0, c0 = time.perf_counter(), time.process_time()
            _step(enc, table, x)
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    rows = []
    for name in methods:
        w, c = statistics.median(wall[name]), statistics.median(cpu[name])
        rows.append({"method": name, "n_points": n_points, "threads": torch.get_num_threads(),
                     "median_s": round(w, 5), "points_per_s": round(n_points / w),
                     "median_cpu_s": round(c, 5), "points_per_cpu_s": round(n_points / c),
                     "wall_s": [round(t, 5) for t in wall[name]], "repeats": repeats, "warmup": warmup})
    # ratios against nerfstudio when it ran, else against our torch path
    peer = "nerfstudio" if "nerfstudio" in methods else "ours"
    ns_rate = next(r["points_per_s"] for r in rows if r["method"] == peer)
    ns_cpu_rate = next(r["points_per_cpu_s"] for r in rows if r["method"] == peer)
    for r in rows:
        r["device"] = device
        r["ratio_peer"] = peer
        r["vs_nerfstudio"] = round(r["points_per_s"] / ns_rate, 2)
        r["vs_nerfstudio_cpu"] = round(r["points_per_cpu_s"] / ns_cpu_rate, 2)
    rows[0]["notes"] = notes
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="16,18", help="log2 of the point counts (default 16,18)")
    ap.add_argument("--threads", default="1", help="comma list of torch thread counts (default 1)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-reference", action="store_true", help="skip ours through plain autograd")
    ap.add_argument("--jsonl", type=Path, default=None, help="append one JSON line per result here")
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    ap.add_argument("--backends", default="", help="comma list of extra backends of ours, CUDA only: triton,tcnn")
    ap.add_argument("--no-nerfstudio", action="store_true",
                    help="run without nerfstudio (GPU machine: ratios are then against our torch path)")
    args = ap.parse_args()
    if args.repeats < 5:
        ap.error("--repeats must be >= 5")

    if not args.no_nerfstudio:
        import nerfstudio  # noqa: F401  (fail early with a clear error outside the bench venv)
    import torch
    from importlib.metadata import PackageNotFoundError, version

    def _version(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    env = {"machine": f"{_cpu_name()}, {os.cpu_count()} cpus, {platform.machine()}",
           "date": time.strftime("%Y-%m-%d"), "python": platform.python_version(), "torch": torch.__version__,
           "nerfstudio": _version("nerfstudio"), "triton": _version("triton"),
           "gpu": torch.cuda.get_device_name(0) if args.device == "cuda" else None, "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
           "affinity": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None}
    print(f"# hash grid fwd+bwd: {env['machine']}; {env['date']}; Python {env['python']}, torch {env['torch']}, "
          f"nerfstudio {env['nerfstudio']}; OMP_NUM_THREADS={env['omp_num_threads']}, cpus {env['affinity']}",
          flush=True)
    results = []
    for threads in (int(t) for t in args.threads.split(",")):
        for lg in (int(s) for s in args.sizes.split(",")):
            extra = tuple(b for b in args.backends.split(",") if b)
            rows = bench(1 << lg, threads, args.warmup, args.repeats, not args.no_reference, args.seed,
                         args.device, extra, not args.no_nerfstudio)
            for r in rows:
                r.update({"bench": "hashgrid_fwd_bwd", "config": f"{N_LEVELS}x{N_FEATURES}, T=2^{LOG2_T}, "
                          f"base {BASE_RES}, max_res {MAX_RES}", **env})
                print(json.dumps({k: v for k, v in r.items() if k not in ("notes", "wall_s")}), file=sys.stderr,
                      flush=True)
            results.extend(rows)
            if args.jsonl:
                args.jsonl.parent.mkdir(parents=True, exist_ok=True)
                with args.jsonl.open("a") as fh:
                    for r in rows:
                        fh.write(json.dumps(r) + "\n")

    print()
    print(f"| N points | threads | method | median s (fwd+bwd) | points/s | vs {results[0]['ratio_peer']} "
          f"| points/CPU-s | vs {results[0]['ratio_peer']} (CPU) |")
    print("|---:|---:|---|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| 2^{r['n_points'].bit_length() - 1} | {r['threads']} | {r['method']} | {r['median_s']:.3f} | "
              f"{r['points_per_s']:,} | {r['vs_nerfstudio']:.2f}x | {r['points_per_cpu_s']:,} | "
              f"{r['vs_nerfstudio_cpu']:.2f}x |")
    notes = results[0]["notes"]
    print()
    print(f"Level scales, ours (x * s + 0.5): {notes['ours_scales']}")
    if "nerfstudio_scales" in notes:
        print(f"Level scales, nerfstudio (x * s): {notes['nerfstudio_scales']}")
        print(f"Table rows: ours {notes['ours_rows']:,} (coarse levels dense), nerfstudio "
              f"{notes['nerfstudio_rows']:,} (every level hashed); per-level scale "
              f"{notes['per_level_scale']:.9f} for both.")


if __name__ == "__main__":
    main()
