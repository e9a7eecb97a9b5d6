"""The verifier and signer as a web service: FastAPI, served by uvicorn (`dhstudio serve`).

Routes:

- ``GET /``: the web page (``static/``: drop a file, see the verdict; no build step, no CDN);
- ``POST /v1/verify`` (multipart, field ``file``): images, meshes and audio are verified at once
  and answered with the Verdict (``detect.verify``, the one way in) and a report id; videos become
  a job, answered ``202`` with its id;
- ``GET /v1/jobs/{id}``: a job's state (``queued``, ``running``, ``finished``, ``failed``) and
  progress; ``GET /v1/reports/{id}``: its Verdict (``409`` while it runs);
  ``GET /v1/reports/{id}/annotated``: the annotated image (JPEG) or video (MP4);
  ``GET /v1/reports/{id}/html``: the HTML report;
- ``POST /v1/sign`` (bearer token with the ``sign`` scope, made by ``dhstudio tokens create``):
  the file watermarked, signed and registered (``studio.pipelines.publish``), answered with the
  signed bytes; the signing key is loaded once into this process and never leaves it;
- the C2PA soft-binding resolution API over the registry: ``GET /services/supportedAlgorithms``,
  ``GET|POST /matches/byBinding``, ``POST /matches/byContent``, ``GET /manifests/{manifestId}``;
- ``GET /healthz``; ``GET /metrics`` (Prometheus text); the OpenAPI docs at ``/docs``.

Limits: request headers over 16 KiB are refused (``431``); a body over ``max_upload_bytes`` (plus
its multipart framing) is refused (``413``) from its Content-Length, or as it streams in, before it
is spooled; ``/v1/sign`` checks its token before it reads the body; a full disk answers ``507``; a
failing database ``503`` with a one-line JSON reason. The upload is streamed to a private temporary
file and refused past ``max_upload_bytes`` (``413``); the media type comes from the bytes
(``provenance.media.sniff_bytes``; the client's name and type are not trusted: ``415`` for anything
unknown); the client's file name is never used as a path; each client (its address) has a request
budget per minute (``429`` with ``Retry-After``), and failed token checks have a much smaller one
(guessing is refused long before it could work); at most ``workers`` jobs run, each in its own
process (a worker that dies fails its job, not the server), and ``queue`` wait; a full queue, or
more than ``workers + queue`` images waiting to be verified at once, answers ``503`` with
``Retry-After``; finished jobs and their annotated files are kept ``job_ttl_s`` seconds; every
temporary file is removed when its request or job ends, whatever happens (a server killed with
SIGKILL cannot: its upload folders, named by its pid, are removed at the next start). Jobs live in the store
(``studio.api.store``: SQLite by default, PostgreSQL with ``db="postgresql://..."``, which also
holds the registry): a restart fails the jobs the stopped server left unfinished, with the reason.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import multiprocessing
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections import Counter, deque
from concurrent.futures import CancelledError, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

# the service extra; this module is imported only by `dhstudio serve` and its tests
from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse, Response
from fastapi.exception_handlers import http_exception_handler
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.concurrency import run_in_threadpool

MAX_UPLOAD_BYTES = 200 * 1024 * 1024
UPLOAD_PREFIX = "dhstudio-upload-"
MAX_HEADER_BYTES = 16 * 1024  # all request headers together (431 above)
BODY_SLACK_BYTES = 1024 * 1024  # a body may exceed the upload cap by its multipart framing and form fields
VIDEO_TYPES_PREFIX = "video/"
STATIC_DIR = Path(__file__).with_name("static")
RESTART_REASON = "the server stopped before this job ended; upload the file again"
WORKER_DIED = "the worker process verifying this file died (killed or crashed); upload the file again"


def _without_path(obj, path: Path):
    """A verdict dict with the upload's private path (messages name the file they read) replaced by
    its bare name: clients never see the server's folders."""
    if isinstance(obj, str):
        return obj.replace(str(path), path.name)
    if isinstance(obj, dict):
        return {k: _without_path(v, path) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_without_path(v, path) for v in obj]
    return obj


def _first_line(e: BaseException) -> str:
    text = str(e).splitlines()[0] if str(e) else ""
    return text or type(e).__name__


# ----------------------------------------------------------------------------- rate limits


class RateLimiter:
    """A sliding one-minute window per key: ``allow(key)`` -> seconds to wait (0: allowed)."""

    def __init__(self, per_minute: int, window_s: float = 60.0):
        self.per_minute, self.window_s = int(per_minute), float(window_s)
        self.hits: dict[str, deque] = {}
        self.lock = threading.Lock()

    def allow(self, key: str, *, record: bool = True) -> float:
        if self.per_minute <= 0:
            return 0.0
        now = time.monotonic()
        with self.lock:
            q = self.hits.setdefault(key, deque())
            while q and now - q[0] > self.window_s:
                q.popleft()
            if len(q) >= self.per_minute:
                return max(0.1, self.window_s - (now - q[0]))
            if record:
                q.append(now)
            if len(self.hits) > 100_000:  # forget idle clients rather than grow without bound
                for k in [k for k, v in self.hits.items() if not v][:50_000]:
                    del self.hits[k]
            return 0.0

    def add(self, key: str) -> None:
        with self.lock:
            self.hits.setdefault(key, deque()).append(time.monotonic())


class RequestLimits:
    """Pure ASGI guard in front of the app: headers over ``max_header_bytes`` are refused (431), a
    body over ``max_body_bytes`` is refused (413) at once from its Content-Length, or as it streams
    in (chunked): without it the multipart parser would spool a whole oversized body to disk before
    the route could count it."""

    def __init__(self, app, *, max_body_bytes: int, max_header_bytes: int = MAX_HEADER_BYTES):
        self.app, self.max_body_bytes, self.max_header_bytes = app, max_body_bytes, max_header_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = scope.get("headers") or []
        if sum(len(k) + len(v) for k, v in headers) > self.max_header_bytes:
            return await JSONResponse({"detail": f"request headers over {self.max_header_bytes} bytes"},
                                      status_code=431)(scope, receive, send)
        length = dict(headers).get(b"content-length", b"")
        too_big = HTTPException(413, f"request body over the {self.max_body_bytes} byte limit",
                                headers={"Connection": "close"})
        if length.isdigit() and int(length) > self.max_body_bytes:
            return await JSONResponse({"detail": too_big.detail}, status_code=413,
                                      headers=too_big.headers)(scope, receive, send)
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body_bytes:
                    raise too_big  # FastAPI passes it through body parsing; answered 413 as any HTTPException
            return message

        await self.app(scope, limited, send)


# ----------------------------------------------------------------------------- jobs


def _job_worker(job_id: str, path: str, annotate: str, options, store_target) -> dict:
    """Runs in a worker process: verify ``path`` and write the annotated copy; progress goes to the
    store directly (throttled), the result back to the server, which records it."""
    from detect.verifier import verify
    from studio.api.store import open_store

    store = open_store(store_target)
    store.update_job(job_id, state="running", started=time.time())
    last = [0.0]

    def progress(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] < 0.5 or not total:
            return
        last[0] = now
        try:
            store.update_job(job_id, progress=round(min(0.99, done / total), 3))
        except Exception:  # noqa: BLE001 - progress is best effort; the result is what counts
            pass

    import dataclasses

    opts = dataclasses.replace(options, annotate=annotate, progress=progress)
    return _without_path(verify(Path(path), opts).to_dict(), Path(path))


def _init_worker(threads: int) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:
        pass


class _Jobs:
    """Video jobs on a bounded process pool: ``workers`` run, ``queue`` wait; state in the store."""

    def __init__(self, store, store_target, *, workers: int, queue: int, ttl_s: float, files_dir: Path, options,
                 threads: int = 1):
        self.store, self.store_target = store, store_target
        self.workers, self.capacity, self.ttl_s = workers, workers + queue, ttl_s
        self.files_dir, self.options, self.threads = files_dir, options, threads
        self.active: dict[str, Path] = {}  # job id -> its private upload folder
        self.lock = threading.Lock()
        self.pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        # spawn: the server has threads (uvicorn, the thread pool); forking them is unsafe
        return ProcessPoolExecutor(max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_init_worker, initargs=(self.threads,))

    def submit(self, job_id: str, media_type: str, size: int, path: Path, workdir: Path) -> bool:
        with self.lock:
            if len(self.active) >= self.capacity:
                return False
            self.store.add_job(job_id, kind="verify", media_type=media_type, size=size)
            self.active[job_id] = workdir
            annotate = str(self.files_dir / f"{job_id}.mp4")
            try:
                fut = self.pool.submit(_job_worker, job_id, str(path), annotate, self.options, self.store_target)
            except BrokenProcessPool:
                self.pool = self._new_pool()
                fut = self.pool.submit(_job_worker, job_id, str(path), annotate, self.options, self.store_target)
        fut.add_done_callback(lambda f, j=job_id, a=annotate: self._done(j, f, a))
        return True

    def _done(self, job_id: str, fut, annotate: str) -> None:
        try:
            verdict = fut.result()
            ann = Path(annotate)
            self.store.update_job(job_id, state="finished", progress=1.0, finished=time.time(), result=verdict,
                                  annotated=ann.name if ann.is_file() else None)
        except CancelledError:  # the server is stopping (lifespan shutdown) before the job ran
            self._fail(job_id, RESTART_REASON, annotate)
        except BrokenProcessPool:
            self._fail(job_id, WORKER_DIED, annotate)
            with self.lock:  # the pool is unusable after a worker died: a new one for the next jobs
                if getattr(self.pool, "_broken", False):
                    self.pool = self._new_pool()
        except Exception as e:  # noqa: BLE001 - a job ends failed with its reason, the server stays up
            self._fail(job_id, f"{type(e).__name__}: {_first_line(e)}", annotate)
        finally:
            with self.lock:
                workdir = self.active.pop(job_id, None)
            if workdir is not None:
                shutil.rmtree(workdir, ignore_errors=True)

    def _fail(self, job_id: str, reason: str, annotate: str) -> None:
        Path(annotate).unlink(missing_ok=True)
        try:
            self.store.update_job(job_id, state="failed", finished=time.time(), error=reason)
        except Exception:  # noqa: BLE001 - the store itself failed: the restart marks it failed
            pass

    def expire(self) -> None:
        for gone in self.store.expire_jobs(time.time() - self.ttl_s):
            if gone.get("annotated"):
                (self.files_dir / Path(gone["annotated"]).name).unlink(missing_ok=True)

    def shutdown(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


# ----------------------------------------------------------------------------- the app


def create_app(*, max_upload_bytes: int = MAX_UPLOAD_BYTES, workers: int = 2, queue: int = 8,
               job_ttl_s: float = 3600.0, tmp_root: str | os.PathLike | None = None, options=None,
               db: str | os.PathLike | None = None, files_dir: str | os.PathLike | None = None,
               rate_limit_per_minute: int = 600, auth_failures_per_minute: int = 10,
               signer=None, passphrase: str | None = None, job_threads: int = 1):
    """The FastAPI application.

    ``options``: ``detect.VerifyOptions`` for every verification (its registry is replaced by
    ``db``'s when ``db`` is given). ``db``: where jobs, tokens and (when given) the registry live:
    a SQLite path or a ``postgresql://`` URL (default: ``service.sqlite3`` in DHSTUDIO_HOME and
    the default registry). ``files_dir``: where annotated files are kept for ``job_ttl_s``.
    ``signer``: a loaded ``provenance.keys.SigningIdentity`` for ``/v1/sign`` (default: the
    identity in DHSTUDIO_HOME, loaded on the first signing request, with ``passphrase``).
    """
    import dataclasses

    from detect.report import render_html
    from detect.verifier import Verdict, VerifyOptions, verify
    from provenance.errors import RegistryError
    from provenance.keys import home_dir
    from provenance.media import SNIFF_BYTES, private_workdir, remove_stale_workdirs, sniff_bytes
    from studio.api.store import open_store

    options = options or VerifyOptions()
    registry_target = None
    if db is not None:
        registry_target = str(db)
        options = dataclasses.replace(options, registry=registry_target)
    elif isinstance(options.registry, (str, os.PathLike)) and options.registry != "default":
        registry_target = str(options.registry)
    store_target = str(db) if db is not None else None
    store = open_store(store_target)
    store.fail_unfinished(RESTART_REASON)
    tmp_root = Path(tmp_root) if tmp_root else Path(tempfile.gettempdir())
    remove_stale_workdirs(tmp_root, UPLOAD_PREFIX)  # uploads of a server killed mid-request
    files_dir = Path(files_dir) if files_dir else home_dir() / "service-files"
    files_dir.mkdir(parents=True, exist_ok=True)
    requests: Counter = Counter()
    limiter = RateLimiter(rate_limit_per_minute)
    auth_limiter = RateLimiter(auth_failures_per_minute)
    jobs = _Jobs(store, store_target, workers=workers, queue=queue, ttl_s=job_ttl_s, files_dir=files_dir,
                 options=options, threads=job_threads)
    sync_slots = {"busy": 0, "max": workers + queue}
    # images are verified on ``workers`` threads of our own, the other slots wait: the face detector's
    # graphs are per thread, so anyio's 40-thread pool would end up holding up to 40 copies (~65 MB each)
    verify_pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dhstudio-verify")
    sync_lock = asyncio.Lock()
    identity = {"obj": signer}
    lazy_lock = threading.Lock()

    def run_verify(path: Path, annotate: Path | None) -> dict:
        opts = dataclasses.replace(options, annotate=annotate) if annotate is not None else options
        return _without_path(verify(path, opts).to_dict(), path)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        jobs.shutdown()
        verify_pool.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="dhstudio verifier", version="1", lifespan=lifespan,
                  description="Provenance (C2PA, watermark, registry) and content checks of images, videos and "
                              "meshes; signing for pipelines; C2PA soft-binding resolution.")

    def client_key(request: Request) -> str:
        return request.client.host if request.client else "unknown"

    app.add_middleware(RequestLimits, max_body_bytes=max_upload_bytes + BODY_SLACK_BYTES)

    @app.exception_handler(StarletteHTTPException)
    async def http_errors(request: Request, exc):
        cause = exc.__cause__
        if exc.status_code == 400 and isinstance(cause, OSError):  # the body could not be spooled: disk full
            exc = HTTPException(507, f"the server cannot store the upload now ({cause.strerror or cause}); retry later")
        return await http_exception_handler(request, exc)

    @app.exception_handler(RegistryError)
    async def store_errors(request: Request, exc: RegistryError):
        # the backend's one-line reason, never the database's path or URL
        reason = _first_line(Exception(getattr(exc, "reason", None) or "corrupt or unreadable"))
        return JSONResponse({"detail": f"the server's database failed ({reason}); retry later", "code": exc.code},
                            status_code=503, headers={"Retry-After": "30"})

    @app.middleware("http")
    async def limits_and_counts(request: Request, call_next):
        path = request.url.path
        if path.startswith(("/v1/", "/matches/", "/manifests/")):
            wait = limiter.allow(client_key(request))
            if wait:
                requests[("rate-limited", 429)] += 1
                return JSONResponse({"detail": "too many requests from this client; retry later"}, status_code=429,
                                    headers={"Retry-After": str(int(wait) + 1)})
        if path == "/v1/sign" and request.method == "POST":  # the token before the body: no anonymous upload is read
            try:
                request.state.token_id = await run_in_threadpool(_bearer, request)
            except HTTPException as e:
                requests[("/v1/sign", e.status_code)] += 1
                return JSONResponse({"detail": e.detail}, status_code=e.status_code, headers=e.headers)
            except RegistryError as e:
                return await store_errors(request, e)
        response = await call_next(request)
        route = request.scope.get("route")
        requests[(getattr(route, "path", "other"), response.status_code)] += 1
        return response

    # -- page, health, metrics ---------------------------------------------------------------
    if STATIC_DIR.is_dir():
        app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page():
        index = STATIC_DIR / "index.html"
        if not index.is_file():
            raise HTTPException(404, "the web page is not installed")
        return FileResponse(index, media_type="text/html")

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok", "jobs_active": len(jobs.active)}

    @app.get("/metrics", response_class=PlainTextResponse)
    def metrics() -> str:
        lines = ["# HELP dhstudio_http_requests_total HTTP requests by route and status.",
                 "# TYPE dhstudio_http_requests_total counter"]
        for (route, code), n in sorted(requests.items()):
            lines.append(f'dhstudio_http_requests_total{{route="{route}",code="{code}"}} {n}')
        lines += ["# HELP dhstudio_jobs Jobs kept, by state.", "# TYPE dhstudio_jobs gauge"]
        states = store.count_jobs()
        for s in ("queued", "running", "finished", "failed"):
            lines.append(f'dhstudio_jobs{{state="{s}"}} {states.get(s, 0)}')
        lines += ["# HELP dhstudio_job_capacity Video jobs that may run or wait at once.",
                  "# TYPE dhstudio_job_capacity gauge", f"dhstudio_job_capacity {jobs.capacity}",
                  "# HELP dhstudio_sync_busy Images being verified now.", "# TYPE dhstudio_sync_busy gauge",
                  f"dhstudio_sync_busy {sync_slots['busy']}"]
        return "\n".join(lines) + "\n"

    # -- uploads ---------------------------------------------------------------------------
    async def _receive(upload: UploadFile) -> tuple[Path, Path, str, int]:
        """The upload streamed into a private folder under a name of ours; (folder, file, type, size)."""
        workdir = private_workdir(tmp_root, UPLOAD_PREFIX)  # also removes a killed server's leftovers
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
        except OSError as e:  # a full disk or a quota: refused, nothing kept, the server stays up
            shutil.rmtree(workdir, ignore_errors=True)
            raise HTTPException(507, f"the server cannot store the upload now ({e.strerror or e}); retry later")
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise

    async def _sync_slot() -> bool:
        async with sync_lock:
            if sync_slots["busy"] >= sync_slots["max"]:
                return False
            sync_slots["busy"] += 1
            return True

    async def _release_slot() -> None:
        async with sync_lock:
            sync_slots["busy"] -= 1

    def _busy() -> JSONResponse:
        return JSONResponse({"detail": "the server is busy; retry later"}, status_code=503, headers={"Retry-After": "5"})

    # -- verify, jobs, reports ---------------------------------------------------------------
    @app.post("/v1/verify")
    async def verify_upload(file: UploadFile = File(...)):
        await run_in_threadpool(jobs.expire)
        workdir, path, mtype, size = await _receive(file)
        job_id = uuid.uuid4().hex
        if mtype.startswith(VIDEO_TYPES_PREFIX):
            try:
                accepted = jobs.submit(job_id, mtype, size, path, workdir)
            except BaseException:  # the store failed: nothing of the upload is kept
                shutil.rmtree(workdir, ignore_errors=True)
                raise
            if not accepted:
                shutil.rmtree(workdir, ignore_errors=True)
                return JSONResponse({"detail": "the job queue is full; retry later"}, status_code=503,
                                    headers={"Retry-After": "10"})
            return JSONResponse({"job": job_id, "state": "queued", "status_url": f"/v1/jobs/{job_id}",
                                 "report_url": f"/v1/reports/{job_id}"}, status_code=202)
        if not await _sync_slot():
            shutil.rmtree(workdir, ignore_errors=True)
            return _busy()
        annotate = files_dir / f"{job_id}.jpg"
        try:
            verdict = await asyncio.get_running_loop().run_in_executor(
                verify_pool, run_verify, path, annotate if mtype.startswith("image/") else None)
        finally:
            await _release_slot()
            shutil.rmtree(workdir, ignore_errors=True)
        has_ann = annotate.is_file()
        store.add_job(job_id, kind="verify", media_type=mtype, size=size, state="finished")
        store.update_job(job_id, progress=1.0, finished=time.time(), result=verdict,
                         annotated=annotate.name if has_ann else None)
        return {"report": job_id, "media_type": mtype, "verdict": verdict, "report_url": f"/v1/reports/{job_id}",
                "annotated_url": f"/v1/reports/{job_id}/annotated" if has_ann else None,
                "html_url": f"/v1/reports/{job_id}/html"}

    def _job_or_404(job_id: str) -> dict:
        job = store.get_job(job_id) if len(job_id) <= 64 else None
        if job is None:
            raise HTTPException(404, "no such job (unknown, or its result expired)")
        return job

    @app.get("/v1/jobs/{job_id}")
    def job_state(job_id: str) -> dict:
        job = _job_or_404(job_id)
        return {"id": job["id"], "state": job["state"], "progress": job["progress"], "media_type": job["media_type"],
                "bytes": job["size"], "created": job["created"], "started": job["started"],
                "finished": job["finished"], "error": job["error"]}

    def _finished(job_id: str) -> dict:
        job = _job_or_404(job_id)
        if job["state"] == "failed":
            raise HTTPException(422, f"the job failed: {job['error']}")
        if job["state"] != "finished":
            raise HTTPException(409, f"the job is {job['state']}", headers={"Retry-After": "2"})
        return job

    @app.get("/v1/reports/{job_id}")
    def report(job_id: str):
        job = _finished(job_id)
        return {"job": job["id"], "media_type": job["media_type"], "verdict": job["result"],
                "annotated_url": f"/v1/reports/{job['id']}/annotated" if job["annotated"] else None,
                "html_url": f"/v1/reports/{job['id']}/html"}

    @app.get("/v1/reports/{job_id}/annotated")
    def annotated(job_id: str):
        job = _finished(job_id)
        name = job["annotated"]
        f = files_dir / Path(name).name if name else None
        if f is None or not f.is_file():
            raise HTTPException(404, "no annotated file for this report (no face was scored, or not an image or video)")
        return FileResponse(f, media_type="video/mp4" if f.suffix == ".mp4" else "image/jpeg")

    @app.get("/v1/reports/{job_id}/html", response_class=HTMLResponse)
    def report_html(job_id: str):
        job = _finished(job_id)
        return HTMLResponse(render_html([Verdict.from_dict(job["result"])]))

    # -- signing -------------------------------------------------------------------------------
    def _identity():
        with lazy_lock:
            if identity["obj"] is None:
                from provenance.keys import load_identity

                identity["obj"] = load_identity(passphrase=passphrase, create=False)
            return identity["obj"]

    registry_cache: dict = {}

    def _registry():
        """The registry, opened (schema checked) on first use and kept: it connects per call."""
        with lazy_lock:
            if "reg" not in registry_cache:
                from provenance.registry import Registry

                registry_cache["reg"] = Registry(registry_target) if registry_target else Registry()
            return registry_cache["reg"]

    def _bearer(request: Request) -> str:
        key = client_key(request)
        if auth_limiter.allow(key, record=False):
            raise HTTPException(429, "too many failed token checks from this client; retry later",
                                headers={"Retry-After": "60"})
        auth = request.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            auth_limiter.add(key)
            raise HTTPException(401, "a bearer token with the sign scope is required (dhstudio tokens create)",
                                headers={"WWW-Authenticate": "Bearer"})
        info, why = store.check_token(token.strip(), "sign")
        if why != "ok":
            auth_limiter.add(key)
            msg = {"revoked": "this token was revoked", "scope": "this token may not sign"}.get(why, "invalid token")
            raise HTTPException(403 if why == "scope" else 401, msg, headers={"WWW-Authenticate": "Bearer"})
        return info["id"]

    @app.post("/v1/sign")
    async def sign_upload(request: Request, file: UploadFile = File(...), model: str = Form("dhstudio-pipeline"),
                          digital_source_type: str = Form("trainedAlgorithmicMedia"), watermark: bool = Form(True)):
        from provenance.errors import DhsError
        from provenance.manifest import GenerationSpec
        from provenance.media import EXTENSIONS
        from studio.pipelines.publish import publish

        token_id = getattr(request.state, "token_id", None) or _bearer(request)  # checked by the middleware
        workdir, path, mtype, size = await _receive(file)
        try:
            if mtype not in EXTENSIONS or mtype == "model/gltf-binary":
                raise HTTPException(415, f"{mtype} cannot be signed here; the service signs JPEG, PNG, WebP, MP4 "
                                         "and WAV (meshes keep their manifest beside them: dhstudio sign)")
            if not await _sync_slot():
                return _busy()
            try:
                spec = GenerationSpec(model_name=model[:200], digital_source_type=digital_source_type)
                src = path.rename(workdir / ("input" + EXTENSIONS[mtype][0]))
                out = workdir / ("signed" + EXTENSIONS[mtype][0])
                res = await run_in_threadpool(publish, src, out, spec, identity=_identity(), registry=_registry(),
                                              watermark=watermark)
            except ValueError as e:  # an unknown digitalSourceType and the like
                raise HTTPException(400, _first_line(e))
            except DhsError as e:
                raise HTTPException(422, f"{e.code}: {_first_line(e)}")
            finally:
                await _release_slot()
            data = out.read_bytes()
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        from provenance.media import wm_id_hex

        headers = {"X-Dhstudio-Media-Type": res.media_type, "X-Dhstudio-Sha256": res.asset_sha256,
                   "X-Dhstudio-Token": token_id}
        if res.watermark_id is not None:
            headers["X-Dhstudio-Watermark-Id"] = wm_id_hex(res.watermark_id)
        return Response(data, media_type=res.media_type, headers=headers)

    # -- C2PA soft-binding resolution ----------------------------------------------------------
    from provenance.watermark import image as _wm_image
    from provenance.watermark import mesh as _wm_mesh

    algs = (*_wm_image.ALGORITHMS_READ, *_wm_mesh.ALGORITHMS_READ)  # the ids of every version share the registry

    def _matches(alg: str, value: str, max_results: int) -> dict:
        from provenance.manifest import decode_watermark_id

        if alg not in algs:
            raise HTTPException(400, f"unsupported soft-binding algorithm {alg[:80]!r} (supported: {', '.join(algs)})")
        try:
            raw = base64.b64decode(value, validate=True)
        except Exception:
            raise HTTPException(400, "value must be base64 (the 6 bytes of the 48-bit watermark id)")
        if len(raw) != 6:
            raise HTTPException(400, "value must be base64 of 6 bytes (the 48-bit watermark id)")
        rec = _registry().get(decode_watermark_id(value))
        if rec is None or not rec.manifest or not _manifest_id(rec):
            return {"matches": []}
        return {"matches": [{"manifestId": _manifest_id(rec), "similarityScore": 100}][:max(1, max_results)]}

    def _manifest_id(rec) -> str | None:
        mid = getattr(rec, "manifest_id", None)
        if mid:
            return mid
        from provenance.c2pa_io import active_manifest_label

        return active_manifest_label(rec.manifest) if rec.manifest else None

    @app.get("/services/supportedAlgorithms", tags=["c2pa soft binding"])
    def supported_algorithms() -> dict:
        return {"watermarks": [{"alg": a} for a in algs], "fingerprints": []}

    @app.get("/matches/byBinding", tags=["c2pa soft binding"])
    def matches_by_binding(alg: str, value: str, maxResults: int = 10):  # noqa: N803 - the C2PA API's name
        return _matches(alg, value, maxResults)

    @app.post("/matches/byBinding", tags=["c2pa soft binding"])
    async def matches_by_binding_post(request: Request, maxResults: int = 10):  # noqa: N803
        try:
            body = await request.json()
            alg, value = str(body["alg"]), str(body["value"])
        except Exception:
            raise HTTPException(400, 'the body must be JSON {"alg": ..., "value": ...}')
        return _matches(alg, value, maxResults)

    @app.post("/matches/byContent", tags=["c2pa soft binding"])
    async def matches_by_content(file: UploadFile = File(...), maxResults: int = 10):  # noqa: N803
        from provenance import media
        from provenance.evidence import gather
        from provenance.manifest import encode_watermark_id

        workdir, path, mtype, size = await _receive(file)
        try:
            snap = await run_in_threadpool(media.read_snapshot, path)
            ev = await run_in_threadpool(gather, snap, trust_anchors=None, registry=None)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        wm = ev.watermark
        if not wm.found or wm.id is None:
            return {"matches": []}
        return _matches(wm.algorithm or _wm_image.ALGORITHM, encode_watermark_id(int(wm.id)), maxResults)

    @app.get("/manifests/{manifest_id:path}", tags=["c2pa soft binding"])
    def manifest(manifest_id: str, returnActiveManifest: bool = False):  # noqa: N803
        if not manifest_id or len(manifest_id) > 200:
            raise HTTPException(400, "invalid manifest id")
        rec = _registry().get_by_manifest_id(manifest_id)
        if rec is None or not rec.manifest:
            raise HTTPException(404, "no manifest with this id in the registry")
        return Response(rec.manifest, media_type="application/c2pa")

    app.state.jobs = jobs
    app.state.store = store
    return app
