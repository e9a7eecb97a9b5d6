"""Load on the verifier service (issue 17): concurrent clients uploading images and short videos.

Starts ``dhstudio serve`` as a real subprocess on loopback (its own DHSTUDIO_HOME in a temporary
folder; the content check on with the default detector in ``assets/``, which is what users get),
or uses ``--base`` for a server that is already running. Each client has its own loopback source
address (127.0.0.2, 127.0.0.3, ...), so each gets its own per-client rate budget, as separate
users would. A client loops for ``--duration`` seconds: it uploads an image (answered at once) or,
with probability ``--video-share``, a short video (a job: it polls ``/v1/jobs/{id}`` every
``--poll`` seconds until the job ends, then fetches the report). Deliberate refusals (413, 429,
503: a full queue, a busy server, uvicorn's connection cap) are counted apart and honoured by
waiting (``Retry-After``, at most 2 s); anything else that is not 2xx, or a transport error, is a
failure. After the clients stop, every job still open is waited for (``--drain`` seconds).

The resident memory of the server process and its worker processes is sampled every 0.25 s
(psutil; the sum over the process tree, and its peak).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/service_load.py --clients 50 --duration 60

Prints JSON lines: one per request type (count, status codes, p50/p95/max latency in seconds),
then a summary (throughput, failures, jobs by end state, peak RSS). ``run_load()`` is the same
loop as a function, for tests against a server they started themselves.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from fractions import Fraction
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_FACES = REPO.parent / "shared" / "data" / "faces_fake_public" / "real"
DELIBERATE = {413, 429, 503}


# ----------------------------------------------------------------------------- the corpus


def _jpeg(arr, quality=90) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _face(w=480, h=360):
    """A face from the shared data pasted on a grey canvas (None when the data is absent)."""
    import numpy as np
    from PIL import Image

    src = SHARED_FACES / "0.jpg"
    if not src.is_file():
        return None
    canvas = Image.new("RGB", (w, h), (70, 70, 70))
    canvas.paste(Image.open(src).convert("RGB").resize((h * 5 // 9, h * 5 // 9)), (w // 3, h // 6))
    return np.asarray(canvas)


def _mp4(frames) -> bytes:
    import av

    buf = io.BytesIO()
    h, w = frames[0].shape[:2]
    with av.open(buf, "w", format="mp4") as out:
        st = out.add_stream("libx264", rate=10)
        st.width, st.height, st.pix_fmt, st.options = w, h, "yuv420p", {"preset": "ultrafast"}
        for i, a in enumerate(frames):
            fr = av.VideoFrame.from_ndarray(a, format="rgb24")
            fr.pts, fr.time_base = i, Fraction(1, 10)
            for p in st.encode(fr):
                out.mux(p)
        for p in st.encode():
            out.mux(p)
    return buf.getvalue()


def corpus() -> tuple[list[tuple[str, bytes, str]], list[tuple[str, bytes, str]]]:
    """(images, videos), each a list of (name, bytes, content type): scenes without faces of two
    sizes, a PNG, and (when ../shared/data is there) a face image and a 1.6 s face clip."""
    import numpy as np
    from PIL import Image

    from reconstruct.procedural import scene

    rng = np.random.default_rng(0)
    png = io.BytesIO()
    Image.fromarray((rng.random((256, 256, 3)) * 255).astype(np.uint8)).save(png, "PNG")
    images = [("scene-480x270.jpg", _jpeg(scene(270, 480, seed=1)), "image/jpeg"),
              ("scene-1280x720.jpg", _jpeg(scene(720, 1280, seed=2)), "image/jpeg"),
              ("noise-256.png", png.getvalue(), "image/png")]
    videos = [("flat-64x48-10f.mp4", _mp4([np.full((48, 64, 3), i * 20, np.uint8) for i in range(10)]), "video/mp4")]
    face = _face()
    if face is not None:
        images.append(("face-480x360.jpg", _jpeg(face, 92), "image/jpeg"))
        videos.append(("face-480x360-16f.mp4", _mp4([np.roll(face, 4 * i, axis=1) for i in range(16)]), "video/mp4"))
    return images, videos


# ----------------------------------------------------------------------------- memory


class RssSampler:
    """Samples the resident memory of ``pid`` and its descendants every ``every_s`` seconds."""

    def __init__(self, pid: int, every_s: float = 0.25):
        self.pid, self.every_s = pid, every_s
        self.peak_total, self.peak_server, self.peak_worker, self.samples = 0, 0, 0, 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        try:
            root = psutil.Process(self.pid)
        except psutil.Error:
            return
        while not self._stop.is_set():
            try:
                server = root.memory_info().rss
                workers = []
                for c in root.children(recursive=True):
                    try:
                        workers.append(c.memory_info().rss)
                    except psutil.Error:
                        pass
            except psutil.Error:
                break
            self.peak_server = max(self.peak_server, server)
            self.peak_worker = max([self.peak_worker, *workers])
            self.peak_total = max(self.peak_total, server + sum(workers))
            self.samples += 1
            self._stop.wait(self.every_s)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join(5)

    def summary(self) -> dict:
        mb = 1 << 20
        return {"peak_rss_total_mb": round(self.peak_total / mb, 1), "peak_rss_server_mb": round(self.peak_server / mb, 1),
                "peak_rss_one_worker_mb": round(self.peak_worker / mb, 1), "rss_samples": self.samples}


# ----------------------------------------------------------------------------- the clients


def _pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(q * len(xs)))], 4)


class _Stats:
    def __init__(self):
        self.lat: dict[str, list[float]] = {}
        self.lat_ok: dict[str, list[float]] = {}  # 2xx answers only (refusals are fast and skew the rest)
        self.codes: dict[str, dict[str, int]] = {}
        self.failures: list[str] = []
        self.jobs: dict[str, str] = {}  # job id -> last state seen

    def add(self, kind: str, code, dt: float) -> None:
        self.lat.setdefault(kind, []).append(dt)
        if isinstance(code, int) and 200 <= code < 300:
            self.lat_ok.setdefault(kind, []).append(dt)
        c = self.codes.setdefault(kind, {})
        c[str(code)] = c.get(str(code), 0) + 1
        if not (code == "503-conn" or isinstance(code, int) and (200 <= code < 300 or code in DELIBERATE)):
            if len(self.failures) < 50:
                self.failures.append(f"{kind}: {code}")


async def _request(stats: _Stats, kind: str, coro_fn):
    import httpx

    t0 = time.perf_counter()
    try:
        r = await coro_fn()
    except httpx.HTTPError as e:
        stats.add(kind, f"{type(e).__name__}", time.perf_counter() - t0)
        return None
    code = r.status_code
    if code == 503 and not r.headers.get("content-type", "").startswith("application/json"):
        code = "503-conn"  # uvicorn's connection cap (--limit-concurrency), not the app's queue
    stats.add(kind, code, time.perf_counter() - t0)
    return r


async def _backoff(r) -> None:
    try:
        wait = float(r.headers.get("retry-after", "1"))
    except ValueError:
        wait = 1.0
    await asyncio.sleep(min(2.0, max(0.2, wait)) * (0.5 + random.random()))


async def _follow_job(client, stats: _Stats, job: str, poll_s: float, deadline: float) -> None:
    while time.monotonic() < deadline:
        await asyncio.sleep(poll_s)
        r = await _request(stats, "job-state", lambda: client.get(f"/v1/jobs/{job}"))
        if r is None or r.status_code in DELIBERATE:
            if r is not None:
                await _backoff(r)
            continue
        if r.status_code != 200:
            stats.jobs[job] = f"http-{r.status_code}"
            return
        state = r.json()["state"]
        stats.jobs[job] = state
        if state in ("finished", "failed"):
            if state == "finished":
                await _request(stats, "report", lambda: client.get(f"/v1/reports/{job}"))
            return


async def _client(i: int, base: str, images, videos, stats: _Stats, *, stop_at: float, drain_until: float,
                  video_share: float, poll_s: float, own_address: bool, seed: int) -> None:
    import httpx

    rnd = random.Random(seed * 1000 + i)
    transport = httpx.AsyncHTTPTransport(local_address=f"127.0.{(i + 2) // 250}.{(i + 2) % 250 + 2}") \
        if own_address else httpx.AsyncHTTPTransport()
    async with httpx.AsyncClient(base_url=base, transport=transport, timeout=120.0) as client:
        await asyncio.sleep(rnd.random() * 0.5)  # do not all start on the same millisecond
        while time.monotonic() < stop_at:
            if videos and rnd.random() < video_share:
                name, data, ctype = rnd.choice(videos)
                r = await _request(stats, "verify-video", lambda: client.post("/v1/verify", files={"file": (name, data, ctype)}))
                if r is not None and r.status_code == 202:
                    job = r.json()["job"]
                    stats.jobs[job] = "queued"
                    await _follow_job(client, stats, job, poll_s, drain_until)
                elif r is not None and r.status_code in DELIBERATE:
                    await _backoff(r)
            else:
                name, data, ctype = rnd.choice(images)
                r = await _request(stats, "verify-image", lambda: client.post("/v1/verify", files={"file": (name, data, ctype)}))
                if r is not None and r.status_code in DELIBERATE:
                    await _backoff(r)


def run_load(base: str, *, clients: int = 10, duration_s: float = 5.0, video_share: float = 0.3, poll_s: float = 0.5,
             drain_s: float = 120.0, own_address: bool = True, corpus_=None, seed: int = 0) -> dict:
    """Runs the clients against ``base`` and returns ``{"types": {kind: stats}, "failures": [...],
    "jobs": {state: n}, "requests": n, "throughput_rps": x, "wall_s": t}``; every job a client
    started is followed to its end (at most ``drain_s`` after the clients stop)."""
    images, videos = corpus_ if corpus_ is not None else corpus()
    stats = _Stats()
    t0 = time.monotonic()
    stop_at, drain_until = t0 + duration_s, t0 + duration_s + drain_s

    async def main():
        await asyncio.gather(*[_client(i, base, images, videos, stats, stop_at=stop_at, drain_until=drain_until,
                                       video_share=video_share, poll_s=poll_s, own_address=own_address, seed=seed)
                               for i in range(clients)])

    asyncio.run(main())
    wall = time.monotonic() - t0
    n = sum(len(v) for v in stats.lat.values())
    jobs: dict[str, int] = {}
    for s in stats.jobs.values():
        jobs[s] = jobs.get(s, 0) + 1
    types = {k: {"n": len(v), "codes": stats.codes[k], "p50_s": _pct(v, 0.5), "p95_s": _pct(v, 0.95),
                 "max_s": round(max(v), 4), "mean_s": round(statistics.fmean(v), 4),
                 "n_ok": len(stats.lat_ok.get(k, [])), "p50_ok_s": _pct(stats.lat_ok.get(k, []), 0.5),
                 "p95_ok_s": _pct(stats.lat_ok.get(k, []), 0.95)} for k, v in sorted(stats.lat.items())}
    ok = sum(c for k in stats.codes for code, c in stats.codes[k].items() if code.isdigit() and 200 <= int(code) < 300)
    return {"types": types, "failures": stats.failures, "jobs": jobs, "requests": n, "ok_requests": ok,
            "throughput_rps": round(n / wall, 2), "ok_throughput_rps": round(ok / wall, 2), "wall_s": round(wall, 1),
            "load_s": duration_s, "clients": clients}


# ----------------------------------------------------------------------------- the server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(home: Path, *, port: int, workers: int, queue: int, extra=()) -> subprocess.Popen:
    """``dhstudio serve`` in a subprocess on 127.0.0.1:``port`` with DHSTUDIO_HOME=``home``; returns
    once /healthz answers."""
    import httpx

    env = dict(os.environ, DHSTUDIO_HOME=str(home), OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    exe = Path(sys.executable).with_name("dhstudio")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "studio.cli"]
    proc = subprocess.Popen([*cmd, "serve", "--port", str(port), "--workers", str(workers), "--queue", str(queue),
                             *extra], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 60:
        if proc.poll() is not None:
            raise RuntimeError(f"dhstudio serve exited: {proc.stderr.read().decode(errors='replace')}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("dhstudio serve did not answer /healthz in 60 s")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--duration", type=float, default=60.0, help="seconds the clients upload")
    ap.add_argument("--video-share", type=float, default=0.3, help="share of uploads that are videos")
    ap.add_argument("--poll", type=float, default=0.5, help="seconds between job-state polls")
    ap.add_argument("--drain", type=float, default=180.0, help="seconds to wait for open jobs after the load")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--queue", type=int, default=8)
    ap.add_argument("--base", help="use this running server instead of starting one (no memory sampling)")
    ap.add_argument("--same-address", action="store_true", help="all clients from 127.0.0.1 (one rate budget)")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(REPO))
    from benchmarks._machine import cpu_name

    t_corpus = time.perf_counter()
    data = corpus()
    info = {"machine": cpu_name(), "cores": os.cpu_count(), "date": time.strftime("%Y-%m-%d"),
            "images": [(n, len(b)) for n, b, _ in data[0]], "videos": [(n, len(b)) for n, b, _ in data[1]],
            "corpus_s": round(time.perf_counter() - t_corpus, 1)}
    proc = None
    with tempfile.TemporaryDirectory(prefix="dhs-load-") as tmp:
        if args.base:
            base = args.base.rstrip("/")
        else:
            port = _free_port()
            proc = start_server(Path(tmp) / "home", port=port, workers=args.workers, queue=args.queue)
            base = f"http://127.0.0.1:{port}"
            info["server"] = f"dhstudio serve --workers {args.workers} --queue {args.queue} (content check on, default detector)"
        print(json.dumps({"kind": "setup", **info}), flush=True)
        try:
            sampler = RssSampler(proc.pid) if proc else None
            if sampler:
                sampler.__enter__()
            res = run_load(base, clients=args.clients, duration_s=args.duration, video_share=args.video_share,
                           poll_s=args.poll, drain_s=args.drain, own_address=not args.same_address, corpus_=data)
            if sampler:
                sampler.__exit__(None, None, None)
                import psutil

                with_children = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
                info["rss_after_drain_mb"] = round(sum(p.memory_info().rss for p in with_children) / (1 << 20), 1)
            import httpx

            alive = httpx.get(base + "/healthz", timeout=5).status_code == 200
            metrics = httpx.get(base + "/metrics", timeout=5).text
        finally:
            if proc:
                proc.terminate()
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
    for kind, s in res["types"].items():
        print(json.dumps({"kind": "requests", "type": kind, **s}), flush=True)
    jobs_line = [ln for ln in metrics.splitlines() if ln.startswith("dhstudio_jobs{")]
    print(json.dumps({"kind": "summary", "clients": args.clients, "load_s": args.duration, "wall_s": res["wall_s"],
                      "requests": res["requests"], "throughput_rps": res["throughput_rps"],
                      "ok_throughput_rps": res["ok_throughput_rps"], "failures": len(res["failures"]),
                      "failure_examples": res["failures"][:10], "jobs_seen_by_clients": res["jobs"],
                      "server_jobs": jobs_line, "server_up_after": alive,
                      "rss_after_drain_mb": info.get("rss_after_drain_mb"),
                      **(sampler.summary() if sampler else {})}), flush=True)
    return 0 if not res["failures"] and alive else 1


if __name__ == "__main__":
    sys.exit(main())
