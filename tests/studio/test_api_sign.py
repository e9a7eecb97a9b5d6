"""The service's signing route (bearer tokens), the C2PA soft-binding resolution routes, reports
with their annotated file and HTML, and per-client rate limits, against a live uvicorn server."""

from __future__ import annotations

import base64
import io
import logging
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the service extra (fastapi) is not installed")
uvicorn = pytest.importorskip("uvicorn", reason="the service extra (uvicorn) is not installed")
httpx = pytest.importorskip("httpx", reason="the service extra (httpx) is not installed")

from studio.api.app import create_app  # noqa: E402
from tests.live import live_server  # noqa: E402

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
REAL_FACES = SHARED / "faces_fake_public" / "real"


@pytest.fixture()
def home(tmp_path, monkeypatch):
    from provenance import keys

    h = tmp_path / "home"
    monkeypatch.setenv("DHSTUDIO_HOME", str(h))
    keys.init_keys()
    return h


def _jpeg(seed=3) -> bytes:
    from PIL import Image

    from reconstruct.procedural import scene

    buf = io.BytesIO()
    Image.fromarray(scene(270, 480, seed=seed)).save(buf, "JPEG", quality=93)
    return buf.getvalue()


def _no_content(**kw):
    from detect.verifier import VerifyOptions

    return VerifyOptions(content=False, **kw)


def test_sign_needs_a_valid_unrevoked_token_and_never_shows_the_key(home, tmp_path, caplog):
    from studio.api.store import open_store

    store = open_store()
    token, row = store.create_token("pipeline")
    revoked, _ = store.create_token("old")
    store.revoke_token("old")
    key_pem = (home / "keys" / "signer.key").read_bytes()
    assert b"PRIVATE KEY" in key_pem
    app = create_app(workers=1, queue=1, tmp_root=tmp_path, options=_no_content(), auth_failures_per_minute=50)
    caplog.set_level(logging.DEBUG)
    with live_server(app, log_level="info") as base:
        f = {"file": ("x.jpg", _jpeg(), "image/jpeg")}
        assert httpx.post(base + "/v1/sign", files=f).status_code == 401
        assert httpx.post(base + "/v1/sign", files=f, headers={"Authorization": "Basic abc"}).status_code == 401
        assert httpx.post(base + "/v1/sign", files=f, headers={"Authorization": "Bearer " + token[:-2] + "xx"}).status_code == 401
        r = httpx.post(base + "/v1/sign", files=f, headers={"Authorization": "Bearer " + revoked})
        assert r.status_code == 401 and "revoked" in r.json()["detail"]
        r = httpx.post(base + "/v1/sign", files={"file": ("x.txt", b"hello world, not an image", "text/plain")},
                       headers={"Authorization": "Bearer " + token})
        assert r.status_code == 415
        r = httpx.post(base + "/v1/sign", files=f, data={"model": "ad-pipeline"},
                       headers={"Authorization": "Bearer " + token})
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "image/jpeg" and r.headers["x-dhstudio-watermark-id"]
        signed = r.content
        # the signed bytes verify as signed, generated and intact, against the server's own registry
        v = httpx.post(base + "/v1/verify", files={"file": ("s.jpg", signed, "image/jpeg")}).json()
        assert v["verdict"]["label"] == "signed-generated-intact", v["verdict"]["reasons"]
        assert v["verdict"]["registry"]["hit"]
    assert store.get_token(row["id"])["last_used"] is not None
    # the private key is nowhere in what the server said or logged
    logged = "\n".join(r.getMessage() for r in caplog.records)
    bodies = [b.strip().split(b"\n")[0] for b in key_pem.split(b"-----") if len(b) > 60]  # base64 lines
    assert bodies
    for body in bodies:
        assert body not in signed and body.decode() not in logged and body.decode() not in r.text


def test_token_guessing_is_rate_limited(home, tmp_path):
    from studio.api.store import open_store

    token, _ = open_store().create_token("pipeline")
    app = create_app(workers=1, queue=1, tmp_root=tmp_path, options=_no_content(), auth_failures_per_minute=5)
    with live_server(app, log_level="info") as base:
        codes = []
        for i in range(8):
            guess = f"dhs_{i:012x}_" + "A" * 43
            codes.append(httpx.post(base + "/v1/sign", files={"file": ("x.jpg", b"x", "image/jpeg")},
                                    headers={"Authorization": "Bearer " + guess}).status_code)
        assert codes[:5] == [401] * 5 and set(codes[5:]) == {429}
        # locked out: even the right token waits (a guesser cannot tell a hit from the lockout)
        r = httpx.post(base + "/v1/sign", files={"file": ("x.jpg", _jpeg(), "image/jpeg")},
                       headers={"Authorization": "Bearer " + token})
        assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
        assert list(tmp_path.glob("dhstudio-upload-*")) == []


def test_soft_binding_resolution_finds_the_manifest_of_a_stripped_file(home, tmp_path):
    import c2pa
    from PIL import Image

    from studio.api.store import open_store

    token, _ = open_store().create_token("pipeline")
    app = create_app(workers=1, queue=1, tmp_root=tmp_path, options=_no_content())
    with live_server(app, log_level="info") as base:
        algs = httpx.get(base + "/services/supportedAlgorithms").json()
        alg = "io.dhstudio.watermark.image.v2"
        assert {"alg": alg} in algs["watermarks"] and {"alg": "io.dhstudio.watermark.image.v1"} in algs["watermarks"]
        r = httpx.post(base + "/v1/sign", files={"file": ("x.jpg", _jpeg(5), "image/jpeg")},
                       headers={"Authorization": "Bearer " + token})
        assert r.status_code == 200, r.text
        wm = int(r.headers["x-dhstudio-watermark-id"], 16)
        value = base64.b64encode(wm.to_bytes(6, "big")).decode()
        m = httpx.get(base + "/matches/byBinding", params={"alg": alg, "value": value}).json()["matches"]
        assert len(m) == 1 and m[0]["manifestId"].startswith("urn:") and m[0]["similarityScore"] == 100
        mid = m[0]["manifestId"]
        assert httpx.post(base + "/matches/byBinding", json={"alg": alg, "value": value}).json()["matches"] == m
        # the manifest store comes back as application/c2pa, and c2pa-python reads it: same active manifest
        store = httpx.get(f"{base}/manifests/{mid}")
        assert store.status_code == 200 and store.headers["content-type"] == "application/c2pa"
        with c2pa.Reader("application/c2pa", io.BytesIO(store.content)) as rd:
            import json

            assert json.loads(rd.json())["active_manifest"] == mid
        # a stripped copy (pixels re-encoded: no manifest, the watermark stays) finds it by content
        buf = io.BytesIO()
        Image.open(io.BytesIO(r.content)).convert("RGB").save(buf, "PNG")
        by_content = httpx.post(base + "/matches/byContent", files={"file": ("s.png", buf.getvalue(), "image/png")})
        assert by_content.json()["matches"] == m
        unmarked = httpx.post(base + "/matches/byContent", files={"file": ("u.jpg", _jpeg(9), "image/jpeg")})
        assert unmarked.json() == {"matches": []}
        # unknown or bad queries
        other = base64.b64encode((wm ^ 1).to_bytes(6, "big")).decode()
        assert httpx.get(base + "/matches/byBinding", params={"alg": alg, "value": other}).json() == {"matches": []}
        assert httpx.get(base + "/matches/byBinding", params={"alg": "com.other.1", "value": value}).status_code == 400
        assert httpx.get(base + "/matches/byBinding", params={"alg": alg, "value": "!!"}).status_code == 400
        assert httpx.get(base + "/manifests/urn:uuid:00000000-0000-0000-0000-000000000000").status_code == 404


def test_per_client_rate_limit(home, tmp_path):
    app = create_app(workers=1, queue=1, tmp_root=tmp_path, options=_no_content(), rate_limit_per_minute=4)
    with live_server(app, log_level="info") as base:
        codes = [httpx.get(base + "/v1/jobs/nope").status_code for _ in range(6)]
        assert codes[:4] == [404] * 4 and codes[4:] == [429, 429]
        r = httpx.get(base + "/v1/jobs/nope")
        assert int(r.headers["retry-after"]) >= 1
        assert httpx.get(base + "/healthz").status_code == 200  # health checks are not limited


def _face_image() -> bytes:
    from PIL import Image

    if not REAL_FACES.is_dir():
        pytest.skip(f"shared data folder {SHARED} is absent")
    canvas = Image.new("RGB", (480, 360), (70, 70, 70))
    canvas.paste(Image.open(REAL_FACES / "0.jpg").convert("RGB").resize((200, 200)), (140, 60))
    buf = io.BytesIO()
    canvas.save(buf, "JPEG", quality=92)
    return buf.getvalue()


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    torch = pytest.importorskip("torch", reason="the [body] extra (torch) is not installed")
    pytest.importorskip("mediapipe", reason="the faces extra is not installed (make install adds it)")
    from detect.registry import create_detector

    torch.manual_seed(0)
    return create_detector("meso4", input_size=64).save(tmp_path_factory.mktemp("w") / "meso.safetensors")


def _face_clip(n=16) -> bytes:
    import av
    from fractions import Fraction
    from PIL import Image

    face = np.asarray(Image.open(io.BytesIO(_face_image())).convert("RGB"))
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        st = out.add_stream("libx264", rate=10)
        st.height, st.width = face.shape[:2]
        st.pix_fmt, st.options = "yuv420p", {"preset": "ultrafast"}
        for i in range(n):
            fr = av.VideoFrame.from_ndarray(np.roll(face, 4 * i, axis=1), format="rgb24")
            fr.pts, fr.time_base = i, Fraction(1, 10)
            for p in st.encode(fr):
                out.mux(p)
        for p in st.encode():
            out.mux(p)
    return buf.getvalue()


def _wait(base, job, states=("finished", "failed"), timeout=120.0):
    t0, seen = time.time(), []
    while time.time() - t0 < timeout:
        st = httpx.get(f"{base}/v1/jobs/{job}").json()
        seen.append((st["state"], st["progress"]))
        if st["state"] in states:
            return st, seen
        time.sleep(0.1)
    raise AssertionError(f"job {job} still {seen[-1]}")


def test_reports_have_an_annotated_file_and_html(home, tmp_path, tiny_weights):
    from detect.verifier import VerifyOptions

    opts = VerifyOptions(detector_weights=tiny_weights, registry=None)
    app = create_app(workers=1, queue=1, tmp_root=tmp_path / "up", options=opts, files_dir=tmp_path / "files",
                     job_ttl_s=60)
    (tmp_path / "up").mkdir()
    with live_server(app, log_level="info") as base:
        r = httpx.post(base + "/v1/verify", files={"file": ("face.jpg", _face_image(), "image/jpeg")}).json()
        assert r["verdict"]["content"]["status"] == "ok" and r["annotated_url"]
        img = httpx.get(base + r["annotated_url"])
        assert img.status_code == 200 and img.headers["content-type"] == "image/jpeg"
        from PIL import Image

        assert Image.open(io.BytesIO(img.content)).size == (480, 360)
        html = httpx.get(base + r["html_url"]).text
        assert r["verdict"]["label"] in html and "<script" not in html.lower()
        assert httpx.get(base + r["report_url"]).json()["verdict"] == r["verdict"]

        clip = httpx.post(base + "/v1/verify", files={"file": ("c.mp4", _face_clip(), "video/mp4")})
        assert clip.status_code == 202
        job = clip.json()["job"]
        st, seen = _wait(base, job)
        assert st["state"] == "finished" and st["progress"] == 1.0, st
        rep = httpx.get(f"{base}/v1/reports/{job}").json()
        assert rep["verdict"]["content"]["tracks"] and rep["annotated_url"]
        mp4 = httpx.get(base + rep["annotated_url"])
        assert mp4.status_code == 200 and mp4.headers["content-type"] == "video/mp4" and mp4.content[4:8] == b"ftyp"
    assert list((tmp_path / "up").iterdir()) == []


def test_a_killed_worker_fails_its_job_and_the_next_job_runs(home, tmp_path, tiny_weights):
    import os
    import signal

    from detect.verifier import VerifyOptions
    from studio.api.app import WORKER_DIED

    opts = VerifyOptions(detector_weights=tiny_weights, registry=None, max_frames=400)
    app = create_app(workers=1, queue=2, tmp_root=tmp_path, options=opts, files_dir=tmp_path / "files")
    with live_server(app, log_level="info") as base:
        job = httpx.post(base + "/v1/verify", files={"file": ("c.mp4", _face_clip(120), "video/mp4")}).json()["job"]
        _wait(base, job, states=("running", "finished", "failed"))
        procs = list(app.state.jobs.pool._processes.values())
        assert procs, "no worker process"
        for p in procs:
            os.kill(p.pid, signal.SIGKILL)
        st, _ = _wait(base, job)
        assert st["state"] == "failed" and st["error"] == WORKER_DIED, st
        assert httpx.get(f"{base}/v1/reports/{job}").status_code == 422
        job2 = httpx.post(base + "/v1/verify", files={"file": ("c.mp4", _face_clip(), "video/mp4")}).json()["job"]
        st2, _ = _wait(base, job2)
        assert st2["state"] == "finished", st2
    assert [p for p in tmp_path.iterdir() if p.name.startswith("dhstudio-upload-")] == []


def test_a_restart_ends_the_jobs_left_in_the_queue(home, tmp_path):
    from studio.api.app import RESTART_REASON
    from studio.api.store import open_store

    st = open_store()
    st.add_job("q" * 32, kind="verify", media_type="video/mp4", size=1)
    st.add_job("r" * 32, kind="verify", media_type="video/mp4", size=1, state="running")
    app = create_app(workers=1, queue=1, tmp_root=tmp_path, options=_no_content())
    with live_server(app, log_level="info") as base:
        for j in ("q" * 32, "r" * 32):
            s = httpx.get(f"{base}/v1/jobs/{j}").json()
            assert s["state"] == "failed" and s["error"] == RESTART_REASON
            assert "upload the file again" in httpx.get(f"{base}/v1/reports/{j}").json()["detail"]
