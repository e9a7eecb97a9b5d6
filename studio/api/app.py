"""The verifier as a web service (issue 17, first part): FastAPI, served by uvicorn (`dhstudio serve`).

Routes:

- ``POST /v1/verify`` (multipart, field ``file``): images, meshes and audio are verified at once
  and answered with the Verdict (``detect.verify``, the one way in); videos become a job, answered
  ``202`` with its id;
- ``GET /v1/jobs/{id}``: a job's state (``queued``, ``running``, ``finished``, ``failed``);
- ``GET /v1/reports/{id}``: a finished job's Verdict (``409`` while it runs);
- ``GET /healthz``; ``GET /metrics`` (Prometheus text); the OpenAPI docs at ``/docs``.

Limits: the upload is streamed to a private temporary file and refused past ``max_upload_bytes``
(``413``); the media type comes from the bytes (``provenance.media.sniff_bytes``; the client's
name and type are not trusted: ``415`` for anything unknown); the client's file name is never
used as a path; at most ``workers`` jobs run and ``queue`` wait (a full queue answers ``503`` with
``Retry-After``); finished jobs are kept ``job_ttl_s`` seconds; every temporary file is removed
when its request or job ends, whatever happens.

Not here yet (issue 17's later parts): signing with tokens, the soft-binding routes, rate limits
per client, the web page, PostgreSQL, the batch engine.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

# the service extra; this module is imported only by `dhstudio serve` and its tests
from fastapi import FastAPI, File, HTTPException, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.concurrency import run_in_threadpool

MAX_UPLOAD_BYTES = 200 * 1024 * 1024
VIDEO_TYPES_PREFIX = "video/"


@dataclass
class Job:
    id: str
    media_type: str
    size: int
    state: str = "queued"
    created: float = field(default_factory=time.time)
    finished: float | None = None
    verdict: dict | None = None
    error: str | None = None

    def public(self) -> dict:
        return {"id": self.id, "state": self.state, "media_type": self.media_type, "bytes": self.size,
                "created": self.created, "finished": self.finished, "error": self.error}


class _Jobs:
    """In-memory jobs with a bounded pool: ``workers`` run, ``queue`` wait, results expire."""

    def __init__(self, workers: int, queue: int, ttl_s: float, run):
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dhstudio-job")
        self.capacity = workers + queue
        self.ttl_s, self.run = ttl_s, run
        self.jobs: dict[str, Job] = {}
        self.lock = threading.Lock()

    def active(self) -> int:
        return sum(1 for j in self.jobs.values() if j.state in ("queued", "running"))

    def submit(self, job: Job, path: Path, workdir: Path) -> bool:
        with self.lock:
            self._expire()
            if self.active() >= self.capacity:
                return False
            self.jobs[job.id] = job
        self.pool.submit(self._work, job, path, workdir)
        return True

    def _work(self, job: Job, path: Path, workdir: Path) -> None:
        job.state = "running"
        try:
            job.verdict = self.run(path)
            job.state = "finished"
        except Exception as e:  # noqa: BLE001 - a job ends failed with its reason, the server stays up
            job.error = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}".rstrip(": ")
            job.state = "failed"
        finally:
            job.finished = time.time()
            shutil.rmtree(workdir, ignore_errors=True)

    def get(self, job_id: str) -> Job | None:
        with self.lock:
            self._expire()
            return self.jobs.get(job_id)

    def _expire(self) -> None:
        now = time.time()
        for k in [k for k, j in self.jobs.items() if j.finished is not None and now - j.finished > self.ttl_s]:
            del self.jobs[k]

    def states(self) -> Counter:
        with self.lock:
            return Counter(j.state for j in self.jobs.values())


def create_app(*, max_upload_bytes: int = MAX_UPLOAD_BYTES, workers: int = 2, queue: int = 8,
               job_ttl_s: float = 3600.0, tmp_root: str | os.PathLike | None = None, options=None):
    """The FastAPI application. ``options``: ``detect.VerifyOptions`` for every verification."""
    from detect.verifier import verify
    from provenance.media import SNIFF_BYTES, sniff_bytes

    tmp_root = Path(tmp_root) if tmp_root else Path(tempfile.gettempdir())
    requests: Counter = Counter()

    def run(path: Path) -> dict:
        return verify(path, options).to_dict()

    jobs = _Jobs(workers, queue, job_ttl_s, run)
    app = FastAPI(title="dhstudio verifier", version="1",
                  description="Provenance (C2PA, watermark, registry) and content checks of images, videos and meshes.")

    @app.middleware("http")
    async def count(request, call_next):
        response = await call_next(request)
        route = request.scope.get("route")
        requests[(getattr(route, "path", "other"), response.status_code)] += 1
        return response

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok", "jobs_active": jobs.active()}

    @app.get("/metrics", response_class=PlainTextResponse)
    def metrics() -> str:
        lines = ["# HELP dhstudio_http_requests_total HTTP requests by route and status.",
                 "# TYPE dhstudio_http_requests_total counter"]
        for (route, code), n in sorted(requests.items()):
            lines.append(f'dhstudio_http_requests_total{{route="{route}",code="{code}"}} {n}')
        lines += ["# HELP dhstudio_jobs Jobs kept, by state.", "# TYPE dhstudio_jobs gauge"]
        states = jobs.states()
        for s in ("queued", "running", "finished", "failed"):
            lines.append(f'dhstudio_jobs{{state="{s}"}} {states.get(s, 0)}')
        lines += ["# HELP dhstudio_job_capacity Jobs that may run or wait at once.",
                  "# TYPE dhstudio_job_capacity gauge", f"dhstudio_job_capacity {jobs.capacity}"]
        return "\n".join(lines) + "\n"

    async def _receive(upload: UploadFile) -> tuple[Path, Path, str, int]:
        """The upload streamed into a private folder under a name of ours; (folder, file, type, size)."""
        workdir = Path(tempfile.mkdtemp(prefix="dhstudio-upload-", dir=tmp_root))
        dst = workdir / "upload"
        size, head = 0, b""
        try:
            with open(dst, "wb") as f:
                while True:
                    chunk = await upload.read(1 << 20)
                    if not chunk:
                        break
                    size += len(chunk)
                    if size > max_upload_bytes:
                        raise HTTPException(413, f"upload over the {max_upload_bytes} byte limit")
                    if len(head) < SNIFF_BYTES:
                        head += chunk[:SNIFF_BYTES - len(head)]
                    f.write(chunk)
            if size == 0:
                raise HTTPException(400, "empty upload")
            mtype = sniff_bytes(head, name=upload.filename or None)  # the name only tells OBJ text apart
            if mtype is None:
                raise HTTPException(415, "not a supported image, video, audio or mesh file (type sniffed from its bytes)")
            if mtype == "model/obj":  # the verifier's sniffer reads OBJ by its extension
                dst = dst.rename(workdir / "upload.obj")
            return workdir, dst, mtype, size
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise

    @app.post("/v1/verify")
    async def verify_upload(file: UploadFile = File(...)):
        workdir, path, mtype, size = await _receive(file)
        if mtype.startswith(VIDEO_TYPES_PREFIX):
            job = Job(uuid.uuid4().hex, mtype, size)
            if not jobs.submit(job, path, workdir):
                shutil.rmtree(workdir, ignore_errors=True)
                return JSONResponse({"detail": "the job queue is full; retry later"}, status_code=503,
                                    headers={"Retry-After": "10"})
            return JSONResponse({"job": job.id, "state": job.state, "status_url": f"/v1/jobs/{job.id}",
                                 "report_url": f"/v1/reports/{job.id}"}, status_code=202)
        try:
            verdict = await run_in_threadpool(run, path)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        return {"media_type": mtype, "verdict": verdict}

    @app.get("/v1/jobs/{job_id}")
    def job_state(job_id: str) -> dict:
        job = jobs.get(job_id)
        if job is None:
            raise HTTPException(404, "no such job (unknown, or its result expired)")
        return job.public()

    @app.get("/v1/reports/{job_id}")
    def report(job_id: str):
        job = jobs.get(job_id)
        if job is None:
            raise HTTPException(404, "no such job (unknown, or its result expired)")
        if job.state == "failed":
            raise HTTPException(422, f"the job failed: {job.error}")
        if job.state != "finished":
            return JSONResponse({"detail": f"the job is {job.state}"}, status_code=409, headers={"Retry-After": "2"})
        return {"job": job.id, "media_type": job.media_type, "verdict": job.verdict}

    app.state.jobs = jobs
    return app
