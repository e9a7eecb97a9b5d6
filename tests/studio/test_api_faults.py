"""The service under faults (issue 17): a full disk, a corrupt database (before the start and while
it runs), a restart mid-queue, concurrent signing across a kill, and a short load. Most run a real
``dhstudio serve`` subprocess on loopback (its own DHSTUDIO_HOME; the content check on, as users
get it). A killed worker process is tested in test_api_sign.py."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the service extra (fastapi) is not installed")
uvicorn = pytest.importorskip("uvicorn", reason="the service extra (uvicorn) is not installed")
httpx = pytest.importorskip("httpx", reason="the service extra (httpx) is not installed")

from studio.api.app import RESTART_REASON, create_app  # noqa: E402
from tests.live import free_port  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


# ----------------------------------------------------------------------------- helpers (shared)


class Served:
    """A ``dhstudio serve`` subprocess (its own session, so its worker processes can be killed with it)."""

    def __init__(self, proc: subprocess.Popen, base: str, log: Path):
        self.proc, self.base, self.log = proc, base, log

    def kill(self, sig=signal.SIGKILL) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)

    def stop(self, sig=signal.SIGTERM, timeout=30.0) -> int:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                self.proc.wait(10)
        self.kill()  # whatever is left of its process group (worker processes)
        return self.proc.returncode


@contextlib.contextmanager
def serve(home: Path, *args, tmpdir: Path | None = None, preexec_fn=None, env: dict | None = None):
    """``dhstudio serve --port P *args`` with DHSTUDIO_HOME=``home`` (and TMPDIR=``tmpdir``: where
    uploads are spooled); yields a :class:`Served` once /healthz answers; stopped (SIGTERM, then
    SIGKILL to its process group) at the end."""
    port = free_port()
    e = dict(os.environ, DHSTUDIO_HOME=str(home), OMP_NUM_THREADS="1", **(env or {}))
    e.pop("DHSTUDIO_DEBUG", None)
    if tmpdir is not None:
        e["TMPDIR"] = str(tmpdir)
    log = home.parent / f"serve-{port}.log"
    with open(log, "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "studio.cli", "serve", "--port", str(port), *map(str, args)],
                                env=e, cwd=REPO, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True,
                                preexec_fn=preexec_fn)
    s = Served(proc, f"http://127.0.0.1:{port}", log)
    try:
        t0 = time.monotonic()
        while True:
            assert proc.poll() is None, f"dhstudio serve exited {proc.returncode}: {log.read_text()}"
            assert time.monotonic() - t0 < 60, "dhstudio serve did not answer in 60 s"
            try:
                if httpx.get(s.base + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.05)
        yield s
    finally:
        s.stop()


def png_noise(side: int, seed: int = 0) -> bytes:
    """A PNG of random pixels (about 3 * side**2 bytes: noise does not compress)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray((np.random.default_rng(seed).random((side, side, 3)) * 255).astype(np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def jpeg_scene(seed: int = 3) -> bytes:
    from PIL import Image

    from reconstruct.procedural import scene

    buf = io.BytesIO()
    Image.fromarray(scene(270, 480, seed=seed)).save(buf, "JPEG", quality=93)
    return buf.getvalue()


def mp4_flat() -> bytes:
    """A 64x48, 10-frame H.264 MP4 (test_api's)."""
    from tests.studio.test_api import _mp4

    return _mp4()


def wait_job(base: str, job: str, timeout: float = 120.0) -> dict:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        st = httpx.get(f"{base}/v1/jobs/{job}", timeout=10).json()
        if st["state"] in ("finished", "failed"):
            return st
        time.sleep(0.1)
    raise AssertionError(f"job {job} still {st}")


def uploads_left(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("dhstudio-upload-"))


# ----------------------------------------------------------------------------- a full disk


@contextlib.contextmanager
def tiny_disk(folder: Path, size: str = "2m"):
    """A tmpfs of ``size`` at ``folder`` (root and a kernel that allows it), else None."""
    folder.mkdir(parents=True, exist_ok=True)
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(folder)],
                       capture_output=True, text=True)
    if p.returncode != 0:
        yield None
        return
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def test_a_full_disk_answers_507_keeps_nothing_and_the_server_stays_up(tmp_path):
    """Uploads spooled to a 4 MB filesystem that is nearly full (a tmpfs as TMPDIR, where both
    Starlette's spool and our private upload folder live: an upload takes twice its size there
    while it is received): 507 with a clear message, nothing half written, the server up; once
    space is back the same upload is verified. Without tmpfs (not
    root), the per-file size limit (RLIMIT_FSIZE) of the server process does the same."""
    import resource

    big = png_noise(700)  # about 1.5 MB
    home = tmp_path / "home"
    home.mkdir()
    with tiny_disk(tmp_path / "tiny", "4m") as tiny:
        if tiny is not None:
            (tiny / "filler").write_bytes(b"\0" * (4 * 1024 * 1024 - 600 * 1024))  # 600 KB left
            preexec, spool = None, tiny
        else:
            spool = tmp_path / "spool"
            spool.mkdir()

            def preexec():  # files of the server over 1 MB cannot be written (EFBIG; Python ignores SIGXFSZ)
                resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
        with serve(home, "--workers", "1", "--queue", "1", "--max-upload-mb", "5", tmpdir=spool,
                   preexec_fn=preexec) as s:
            for route in ("/v1/verify", "/matches/byContent"):
                r = httpx.post(s.base + route, files={"file": ("big.png", big, "image/png")}, timeout=60)
                assert r.status_code == 507, (route, r.status_code, r.text)
                assert "cannot store the upload" in r.json()["detail"], r.text
            assert httpx.get(s.base + "/healthz").status_code == 200
            assert sorted(p.name for p in spool.iterdir()) == (["filler"] if tiny else [])
            r = httpx.post(s.base + "/v1/verify", files={"file": ("small.png", png_noise(64), "image/png")}, timeout=60)
            assert r.status_code == 200, r.text  # small uploads still fit
            if tiny is not None:
                (tiny / "filler").unlink()
                r = httpx.post(s.base + "/v1/verify", files={"file": ("big.png", big, "image/png")}, timeout=60)
                assert r.status_code == 200 and r.json()["verdict"]["schema"].startswith("dhstudio.verdict/"), r.text
            assert uploads_left(spool) == []


# ----------------------------------------------------------------------------- a corrupt database


def test_a_corrupt_database_stops_the_start_with_one_line(tmp_path):
    from tests.studio.test_cli_bad_input import assert_clean_error, run_cli

    home = tmp_path / "home"
    home.mkdir()
    (home / "service.sqlite3").write_bytes(b"this is not a database" * 100)
    p = run_cli(["serve", "--port", free_port()], home)
    assert_clean_error(p, "service database", "corrupt", "move it aside")
    assert p.elapsed < 30


def test_a_database_corrupted_while_the_server_runs_fails_requests_cleanly(tmp_path, monkeypatch):
    """The job store's file (and then the registry's) overwritten under a running server: requests
    that need them answer a 5xx with a JSON one-line reason, and the server stays up."""
    from detect.verifier import VerifyOptions
    from tests.live import live_server

    home = tmp_path / "home"
    monkeypatch.setenv("DHSTUDIO_HOME", str(home))
    up = tmp_path / "up"
    up.mkdir()
    app = create_app(workers=1, queue=1, tmp_root=up, options=VerifyOptions(content=False))
    with live_server(app, log_level="info") as base:
        r = httpx.post(base + "/v1/verify", files={"file": ("a.jpg", jpeg_scene(), "image/jpeg")})
        assert r.status_code == 200, r.text
        job = r.json()["report"]
        for suffix in ("", "-wal", "-shm"):
            (home / f"service.sqlite3{suffix}").unlink(missing_ok=True)
        (home / "service.sqlite3").write_bytes(os.urandom(8192))
        for method, path, kw in (("GET", f"/v1/jobs/{job}", {}), ("GET", f"/v1/reports/{job}", {}),
                                 ("GET", "/metrics", {}),
                                 ("POST", "/v1/verify", {"files": {"file": ("b.jpg", jpeg_scene(4), "image/jpeg")}}),
                                 ("POST", "/v1/verify", {"files": {"file": ("c.mp4", mp4_flat(), "video/mp4")}})):
            r = httpx.request(method, base + path, **kw)
            assert 500 <= r.status_code < 600, (path, r.status_code, r.text)
            detail = r.json()["detail"]
            assert "database" in detail and "\n" not in detail and str(home) not in detail, detail
        assert httpx.get(base + "/healthz").status_code == 200
        assert uploads_left(up) == []
        # the registry too (verification looks the file up there)
        (home / "service.sqlite3").unlink()
        reg = home / "registry.sqlite3"
        if reg.exists():
            reg.write_bytes(os.urandom(8192))
        else:
            reg.write_bytes(b"not a registry" * 600)
        r = httpx.post(base + "/v1/verify", files={"file": ("d.jpg", jpeg_scene(5), "image/jpeg")})
        assert r.status_code == 200 or (500 <= r.status_code < 600 and "database" in r.json()["detail"]), r.text
        if r.status_code == 200:  # the verdict says what it could not check
            assert any("registry" in x for x in r.json()["verdict"]["reasons"]), r.json()["verdict"]["reasons"]
        assert httpx.get(base + "/healthz").status_code == 200
        assert uploads_left(up) == []


# ----------------------------------------------------------------------------- restarts


def _submit(base: str, data: bytes, n: int) -> list[str]:
    jobs = []
    for i in range(n):
        r = httpx.post(base + "/v1/verify", files={"file": (f"c{i}.mp4", data, "video/mp4")}, timeout=30)
        assert r.status_code == 202, r.text
        jobs.append(r.json()["job"])
    return jobs


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
def test_a_restart_mid_queue_ends_every_job(tmp_path, sig):
    """Jobs queued and running when the server is stopped (SIGKILL to it and its workers, or
    SIGTERM): after a restart on the same home every one of them is finished or failed with the
    restart reason, and new jobs run."""
    home = tmp_path / "home"
    home.mkdir()
    spool = tmp_path / "spool"
    spool.mkdir()
    clip = mp4_flat()
    with serve(home, "--workers", "1", "--queue", "4", tmpdir=spool) as s:
        jobs = _submit(s.base, clip, 4)
        states = [httpx.get(f"{s.base}/v1/jobs/{j}").json()["state"] for j in jobs]
        assert "queued" in states, states  # the worker needs seconds to start: the rest wait
        if sig == signal.SIGKILL:
            s.kill(signal.SIGKILL)
        else:
            assert s.stop(signal.SIGTERM, timeout=60) in (0, 128 + signal.SIGTERM, -signal.SIGTERM)
        s.proc.wait(30)
    if sig == signal.SIGTERM:
        assert uploads_left(spool) == []  # a graceful stop removes every private upload folder
    with serve(home, "--workers", "1", "--queue", "4", tmpdir=spool) as s:
        ended = [httpx.get(f"{s.base}/v1/jobs/{j}").json() for j in jobs]
        for st in ended:
            assert st["state"] in ("finished", "failed"), st
            if st["state"] == "failed":
                assert st["error"] == RESTART_REASON, st
        assert any(st["state"] == "failed" for st in ended)
        new = _submit(s.base, clip, 1)[0]
        assert wait_job(s.base, new)["state"] == "finished"


def test_signing_concurrently_loses_and_duplicates_no_registry_record(tmp_path):
    """N files signed through /v1/sign by concurrent clients: N registry records, N distinct
    watermark ids; then a batch cut by SIGKILL and a restart: every signed file that came back is
    registered once, nothing that never came back is counted twice, and signing goes on."""
    from provenance import keys
    from provenance.registry import Registry
    from studio.api.store import open_store

    home = tmp_path / "home"
    keys.init_keys(home, passphrase=None)
    token, _ = open_store(home / "service.sqlite3").create_token("load")
    auth = {"Authorization": "Bearer " + token}
    images = [jpeg_scene(seed) for seed in range(12)]

    def sign(base, data):
        try:
            r = httpx.post(base + "/v1/sign", files={"file": ("x.jpg", data, "image/jpeg")}, headers=auth, timeout=60)
        except httpx.HTTPError:
            return None
        if r.status_code == 503:
            return "busy"
        assert r.status_code == 200, r.text
        return int(r.headers["x-dhstudio-watermark-id"], 16)

    def count():
        return Registry(home / "registry.sqlite3").count()

    with serve(home, "--workers", "2", "--queue", "4") as s:
        with ThreadPoolExecutor(4) as ex:
            ids = list(ex.map(lambda d: sign(s.base, d), images[:6]))
        assert "busy" not in ids and None not in ids, ids
        assert len(set(ids)) == 6 and count() == 6
        # a second batch, cut by SIGKILL after the first answer
        got: list = []
        with ThreadPoolExecutor(4) as ex:
            futs = [ex.submit(sign, s.base, d) for d in images[6:10]]
            while not any(f.done() for f in futs):
                time.sleep(0.01)
            s.kill(signal.SIGKILL)
            got = [f.result() for f in futs]
    ok = [g for g in got if isinstance(g, int)]
    assert ok, got
    with serve(home, "--workers", "2", "--queue", "4") as s:
        n = count()
        assert 6 + len(ok) <= n <= 6 + len(got), (n, got)  # a file signed as the server died may be registered
        reg = Registry(home / "registry.sqlite3")
        for wm in ids + ok:
            assert reg.get(wm) is not None and reg.get(wm).manifest
        more = [sign(s.base, d) for d in images[10:12]]
        assert count() == n + 2 and len(set(ids + ok + more)) == len(ids) + len(ok) + 2


# ----------------------------------------------------------------------------- a short load


def test_a_short_load_fails_nothing_but_deliberately(tmp_path, monkeypatch):
    """10 clients uploading images and short videos for about 5 s (content check off) against one
    server: no answer other than 2xx and the deliberate 413/429/503, every job ends (the full run is
    benchmarks/service_load.py)."""
    import importlib.util

    from detect.verifier import VerifyOptions
    from tests.live import live_server

    spec = importlib.util.spec_from_file_location("service_load", REPO / "benchmarks" / "service_load.py")
    load = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(load)
    monkeypatch.setenv("DHSTUDIO_HOME", str(tmp_path / "home"))
    up = tmp_path / "up"
    up.mkdir()
    app = create_app(workers=1, queue=2, tmp_root=up, options=VerifyOptions(content=False, registry=None))
    images = [("a.jpg", jpeg_scene(1), "image/jpeg"), ("b.png", png_noise(128), "image/png")]
    videos = [("c.mp4", mp4_flat(), "video/mp4")]
    with live_server(app, log_level="info") as base:
        res = load.run_load(base, clients=10, duration_s=5.0, video_share=0.3, poll_s=0.25, drain_s=60.0,
                            corpus_=(images, videos))
        assert httpx.get(base + "/healthz").status_code == 200
    assert res["failures"] == [], res
    assert res["types"]["verify-image"]["codes"].get("200", 0) > 0, res
    assert res["jobs"] and set(res["jobs"]) <= {"finished", "failed"}, res["jobs"]
    assert res["jobs"].get("finished", 0) > 0, res["jobs"]
    assert uploads_left(up) == []


def test_uploads_left_by_a_killed_server_are_removed_at_the_next_start(tmp_path, monkeypatch):
    from detect.verifier import VerifyOptions
    from studio.api.app import UPLOAD_PREFIX

    monkeypatch.setenv("DHSTUDIO_HOME", str(tmp_path / "home"))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid that no longer runs
    stale = tmp_path / f"{UPLOAD_PREFIX}{dead.pid}-abc"
    live_one = tmp_path / f"{UPLOAD_PREFIX}{os.getppid()}-def"  # a running process's: kept
    for d in (stale, live_one):
        d.mkdir()
        (d / "upload").write_bytes(b"x" * 100)
    create_app(workers=1, queue=1, tmp_root=tmp_path, options=VerifyOptions(content=False, registry=None))
    assert not stale.exists() and live_one.exists()
