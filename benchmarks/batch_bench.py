"""Files per second of ``dhstudio batch verify``: local engine vs Ray Data, 1 and 2 workers (issue 17).

Corpus (built in a temp folder at run time, never copied into the repo): ``--photos`` colour face
photos spread evenly over ``../shared/data/faces_real_color/images`` (200x200 to 640x640 JPEGs),
each also signed with ``publish`` (watermark + C2PA + registry, a fresh local identity), so the
corpus is half unsigned photos, half signed ones: ``2 x --photos`` files.

Every configuration runs the real command, ``dhstudio batch verify CORPUS --out R.parquet --engine E
--workers W --json --quiet`` (content check on: the default), in a fresh process with a fresh
results file, on the whole corpus and on its first ``--small`` files; wall time around the command.
From the two sizes: the fixed start-up cost (intercept) and the cost per file (slope) of each
engine, so Ray's overhead is split into its start-up and its per-file parts. A 1-worker run is
pinned to CPU 1, a 2-worker run to CPUs 0-1 (the affinity is inherited by the workers and by Ray's
own processes).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/batch_bench.py --photos 100 --reps 2

Then the engines' own cost, without the verifier: N files whose task does nothing (``NoopTask``),
N = 200 and 2000, in this process: start-up and milliseconds per file of each engine; and the
driver's cost per row (``driver_cost``). ``--overhead-only`` runs only these two.

One JSON line per run, then one per configuration (medians), then the summaries.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared" / "data" / "faces_real_color" / "images"

CONFIGS = [("local", 1), ("local", 2), ("ray", 1), ("ray", 2)]


def build_corpus(root: Path, photos: int) -> Path:
    from provenance.manifest import GenerationSpec
    from studio.pipelines.publish import publish

    files = sorted(p for p in SHARED.rglob("*.jpg"))
    if len(files) < photos:
        raise SystemExit(f"{SHARED}: {len(files)} photos, {photos} asked")
    step = len(files) / photos
    picked = [files[int(i * step)] for i in range(photos)]
    corpus = root / "corpus"
    (corpus / "unsigned").mkdir(parents=True)
    (corpus / "signed").mkdir()
    spec = GenerationSpec(model_name="batch-bench")
    for i, src in enumerate(picked):
        dst = corpus / "unsigned" / f"{i:04d}.jpg"
        shutil.copyfile(src, dst)
        publish(dst, corpus / "signed" / f"{i:04d}.jpg", spec)
    return corpus


def small_subset(corpus: Path, root: Path, n: int) -> Path:
    """The first n/2 unsigned and n/2 signed files, as hard links (same bytes, other paths)."""
    sub = root / f"small{n}"
    for kind in ("unsigned", "signed"):
        (sub / kind).mkdir(parents=True)
        for p in sorted((corpus / kind).iterdir())[: n // 2]:
            os.link(p, sub / kind / p.name)
    return sub


def run_once(corpus: Path, out: Path, engine: str, workers: int, env: dict) -> dict:
    cpus = "1" if workers == 1 else "0,1"
    cmd = ["taskset", "-c", cpus, sys.executable, "-m", "studio.cli", "batch", "verify", str(corpus),
           "--out", str(out), "--engine", engine, "--workers", str(workers), "--json", "--quiet"]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=1800)
    wall = time.perf_counter() - t0
    if p.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(cmd)}: exit {p.returncode}\n{p.stderr}")
    s = json.loads(p.stdout)
    import pyarrow.parquet as pq

    t = pq.read_table(out, columns=["seconds", "status", "label"])
    secs = sorted(t.column("seconds").to_pylist())
    labels = t.column("label").to_pylist()
    out.unlink()
    return {"engine": engine, "workers": workers, "files": s["files"], "errors": s["errors"],
            "wall_s": round(wall, 3), "engine_s": s["seconds"], "first_row_s": s["first_row_s"],
            "ray_init_s": (s.get("engine_info") or {}).get("ray_init_s"),
            "files_per_s": round(s["files"] / wall, 3),
            "file_s_median": round(statistics.median(secs), 4), "file_s_p90": round(secs[int(0.9 * len(secs))], 4),
            "file_s_sum": round(sum(secs), 2),
            "labels": {k: labels.count(k) for k in sorted(set(labels), key=str)}}


class NoopTask:
    """A worker task that does nothing to its file: what is left is the engine's own cost per file."""

    def __init__(self, spec):
        self.op = spec.op

    def __call__(self, item):
        from studio.batch.tasks import empty_row

        row = empty_row(item["path"], self.op)
        row.update(status="ok", seconds=0.0)
        return row


def engine_overhead(sizes=(200, 2000)) -> list[dict]:
    """Wall time of each engine on N files that cost nothing (``NoopTask``), for two N: the start-up
    (intercept) and the engine's own cost per file (slope), in this process, pinned as above."""
    from studio.batch.local import run_local
    from studio.batch.ray_engine import run_ray
    from studio.batch.tasks import TaskSpec

    out = []
    spec = TaskSpec(op="verify", content=False)
    for engine, workers in CONFIGS:
        os.sched_setaffinity(0, {1} if workers == 1 else {0, 1})
        walls = {}
        for n in sizes:
            items = [{"path": f"/nonexistent/noop/{i:06d}.jpg"} for i in range(n)]
            rows = []
            t0 = time.perf_counter()
            if engine == "local":
                run_local(items, spec, workers, rows.append, task_cls=NoopTask)
            else:
                run_ray(items, spec, workers, rows.append, task_cls=NoopTask)
            walls[n] = time.perf_counter() - t0
            assert len(rows) == n
        (a, b) = sizes
        per_file = (walls[b] - walls[a]) / (b - a)
        r = {"overhead": {"engine": engine, "workers": workers, "wall_s": {str(k): round(v, 3) for k, v in walls.items()},
                          "per_file_ms": round(1000 * per_file, 3), "startup_s": round(walls[a] - a * per_file, 2)}}
        print(json.dumps(r), flush=True)
        out.append(r["overhead"])
    os.sched_setaffinity(0, {0, 1})
    return out


def driver_cost(corpus_file: Path, n: int = 20000) -> list[dict]:
    """The driver's own cost per row (parse the row a worker sent, keep it, checkpoint it as a
    Parquet part) and the final merge, for rows carrying a real Verdict JSON (content check on) of
    ``corpus_file``, pinned to CPU 1."""
    from studio.batch.store import ResultStore
    from studio.batch.tasks import FileTask, TaskSpec

    os.sched_setaffinity(0, {1})
    row = FileTask(TaskSpec(op="verify"))({"path": str(corpus_file)})
    text = json.dumps(row)
    out = []
    with tempfile.TemporaryDirectory() as d:
        for every in (100, 10000):
            st = ResultStore(Path(d) / f"r{every}.parquet", "verify")
            st.open()
            t0 = time.perf_counter()
            for i in range(n):
                r = json.loads(text)
                r["path"] = f"/corpus/{i:07d}.jpg"
                st.add(r)
                if len(st.pending) >= every:
                    st.checkpoint()
            t1 = time.perf_counter()
            st.finalize()
            t2 = time.perf_counter()
            st.close()
            r = {"driver": {"checkpoint_every": every, "rows": n, "verdict_json_bytes": len(row["result_json"]),
                            "per_row_us": round((t1 - t0) / n * 1e6, 1), "final_merge_s": round(t2 - t1, 2)}}
            print(json.dumps(r), flush=True)
            out.append(r["driver"])
    os.sched_setaffinity(0, {0, 1})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=int, default=100, help="photos taken (the corpus is twice that)")
    ap.add_argument("--small", type=int, default=20, help="files of the small run (intercept)")
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--keep", action="store_true", help="keep the temp folder")
    ap.add_argument("--overhead-only", action="store_true",
                    help="only the engines' own cost (no-op files) and the driver's cost per row")
    args = ap.parse_args()
    if args.overhead_only:
        engine_overhead()
        with tempfile.TemporaryDirectory() as d:
            os.environ["DHSTUDIO_HOME"] = str(Path(d) / "home")
            driver_cost(sorted(SHARED.rglob("*.jpg"))[0])
        return

    root = Path(tempfile.mkdtemp(prefix="dhs-batch-bench-"))
    env = dict(os.environ, DHSTUDIO_HOME=str(root / "home"), OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    os.environ["DHSTUDIO_HOME"] = env["DHSTUDIO_HOME"]
    try:
        t0 = time.perf_counter()
        corpus = build_corpus(root, args.photos)
        small = small_subset(corpus, root, args.small)
        n_big = sum(1 for _ in corpus.rglob("*.jpg"))
        print(json.dumps({"corpus": n_big, "small": args.small, "build_s": round(time.perf_counter() - t0, 1),
                          "cpu": _cpu(), "python": platform.python_version(), "date": time.strftime("%Y-%m-%d")}),
              flush=True)
        results: dict = {}
        for rep in range(args.reps):
            for engine, workers in CONFIGS:
                for name, folder in (("small", small), ("big", corpus)):
                    r = run_once(folder, root / "r.parquet", engine, workers, env)
                    r.update(rep=rep, size=name)
                    print(json.dumps(r), flush=True)
                    results.setdefault((engine, workers, name), []).append(r)
        summary = []
        for engine, workers in CONFIGS:
            big, sm = results[(engine, workers, "big")], results[(engine, workers, "small")]
            wb = statistics.median(r["wall_s"] for r in big)
            ws = statistics.median(r["wall_s"] for r in sm)
            per_file = (wb - ws) / (n_big - args.small)
            row = {"engine": engine, "workers": workers, "files": n_big, "wall_s": round(wb, 2),
                   "files_per_s": round(n_big / wb, 2), "wall_small_s": round(ws, 2),
                   "per_file_s": round(per_file, 4), "steady_files_per_s": round(1 / per_file, 2),
                   "startup_s": round(ws - args.small * per_file, 2),
                   "first_row_s": statistics.median(r["first_row_s"] for r in big),
                   "ray_init_s": statistics.median(r["ray_init_s"] for r in big) if engine == "ray" else None,
                   "worker_file_s_median": statistics.median(r["file_s_median"] for r in big)}
            summary.append(row)
            print(json.dumps({"config": row}), flush=True)
        by = {(r["engine"], r["workers"]): r for r in summary}
        over = {}
        for w in (1, 2):
            lo, ra = by[("local", w)], by[("ray", w)]
            over[f"workers_{w}"] = {"startup_extra_s": round(ra["startup_s"] - lo["startup_s"], 2),
                                    "per_file_extra_ms": round(1000 * (ra["per_file_s"] - lo["per_file_s"]), 1),
                                    "wall_ratio": round(ra["wall_s"] / lo["wall_s"], 3)}
        print(json.dumps({"ray_overhead": over}), flush=True)
        engine_overhead()
        driver_cost(sorted((corpus / "signed").iterdir())[0])
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"kept {root}", file=sys.stderr)


def _cpu() -> str:
    from _machine import cpu_name  # benchmarks/_machine.py (the script folder is on sys.path)

    return cpu_name()


if __name__ == "__main__":
    main()
