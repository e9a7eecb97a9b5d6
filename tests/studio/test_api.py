"""`dhstudio serve`'s API (issue 17, first part) against a live uvicorn server on loopback."""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the service extra (fastapi) is not installed")
uvicorn = pytest.importorskip("uvicorn", reason="the service extra (uvicorn) is not installed")
httpx = pytest.importorskip("httpx", reason="the service extra (httpx) is not installed")

from studio.api.app import create_app  # noqa: E402
from tests.live import live_server, tiny_mp4  # noqa: E402


@pytest.fixture()
def server(tmp_path, monkeypatch):
    from detect.verifier import VerifyOptions

    monkeypatch.setenv("DHSTUDIO_HOME", str(tmp_path / "home"))
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    app = create_app(max_upload_bytes=2_000_000, workers=1, queue=2, tmp_root=uploads,
                     options=VerifyOptions(content=False, registry=None))
    with live_server(app) as base:
        yield base, uploads


def _png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray((np.random.default_rng(0).random((64, 96, 3)) * 255).astype(np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _mp4() -> bytes:
    return tiny_mp4()


def test_health_metrics_and_docs(server):
    base, _ = server
    r = httpx.get(base + "/healthz")
    assert r.status_code == 200 and r.json()["status"] == "ok"
    assert httpx.get(base + "/openapi.json").json()["info"]["title"] == "dhstudio verifier"
    m = httpx.get(base + "/metrics").text
    assert 'dhstudio_http_requests_total{route="/healthz",code="200"} 1' in m
    assert "dhstudio_job_capacity 3" in m


def test_an_image_is_verified_at_once_and_nothing_is_left(server):
    base, uploads = server
    r = httpx.post(base + "/v1/verify", files={"file": ("../../etc/passwd", _png(), "text/plain")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["media_type"] == "image/png"  # from the bytes, not the client's name or type
    assert body["verdict"]["schema"].startswith("dhstudio.verdict/")
    assert body["verdict"]["label"] == "unsigned-unmarked"  # no manifest, no watermark (content check off here)
    assert list(uploads.iterdir()) == []  # the upload's temporary folder is gone
    assert not Path("/etc/passwd.dhstudio").exists()


def test_bad_uploads_are_refused(server):
    base, uploads = server
    r = httpx.post(base + "/v1/verify", files={"file": ("x.png", b"this is not an image", "image/png")})
    assert r.status_code == 415
    r = httpx.post(base + "/v1/verify", files={"file": ("x.png", b"", "image/png")})
    assert r.status_code == 400
    r = httpx.post(base + "/v1/verify", files={"file": ("big.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 2_100_000, "image/png")})
    assert r.status_code == 413
    r = httpx.post(base + "/v1/verify", data={"nofile": "1"})
    assert r.status_code == 422
    assert httpx.get(base + "/v1/jobs/nope").status_code == 404
    assert httpx.get(base + "/v1/reports/nope").status_code == 404
    assert list(uploads.iterdir()) == []
    assert httpx.get(base + "/healthz").status_code == 200  # still up


def test_a_video_becomes_a_job_with_a_report(server):
    base, uploads = server
    r = httpx.post(base + "/v1/verify", files={"file": ("clip.mp4", _mp4(), "video/mp4")})
    assert r.status_code == 202, r.text
    job = r.json()["job"]
    for _ in range(300):
        st = httpx.get(f"{base}/v1/jobs/{job}").json()
        if st["state"] in ("finished", "failed"):
            break
        time.sleep(0.05)
    assert st["state"] == "finished", st
    rep = httpx.get(f"{base}/v1/reports/{job}").json()
    assert rep["media_type"] == "video/mp4" and rep["verdict"]["label"] == "unsigned-unmarked"
    assert list(uploads.iterdir()) == []


def test_a_signed_image_and_its_tampered_copy(server, tmp_path):
    """Signed by the CLI in the server's home: the upload verifies as signed and intact; a copy
    with changed pixels (same manifest) does not."""
    from PIL import Image

    from reconstruct.procedural import scene
    from tests.studio.test_cli_bad_input import run_cli

    base, _ = server
    src, out = tmp_path / "gen.jpg", tmp_path / "signed.jpg"
    Image.fromarray(scene(270, 480, seed=3)).save(src, quality=93)
    p = run_cli(["sign", src, "-o", out, "--model", "api-test"], tmp_path / "home")
    assert p.returncode == 0, p.stderr
    r = httpx.post(base + "/v1/verify", files={"file": ("a.jpg", out.read_bytes(), "image/jpeg")})
    assert r.status_code == 200 and r.json()["verdict"]["label"] == "signed-generated-intact", r.text
    data = bytearray(out.read_bytes())
    data[-200] ^= 0xFF  # a byte of the image data, after the manifest
    r = httpx.post(base + "/v1/verify", files={"file": ("b.jpg", bytes(data), "image/jpeg")})
    assert r.status_code == 200 and r.json()["verdict"]["label"] != "signed-generated-intact"


def test_serve_refuses_bad_arguments(tmp_path):
    from tests.studio.test_cli_bad_input import assert_clean_error, run_cli

    p = run_cli(["serve", "--workers", "0"], tmp_path / "home")
    assert_clean_error(p, "--workers")
