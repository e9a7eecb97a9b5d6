"""sign -> verify through the real CLI, JSON Verdict keys (issue #2, section 6)."""

import json

import pytest
from PIL import Image

from tests.studio.test_cli_bad_input import run_cli

REQUIRED = {
    "schema": None,
    "file": {"path", "sha256", "media_type"},
    "provenance": {"manifest_found", "state", "failures", "signer", "digital_source_type", "generator"},
    "watermark": {"found", "id", "confidence"},
    "registry": {"hit", "manifest_summary"},
    "label": None,
    "reasons": None,
}


def check_keys(v):
    for k, sub in REQUIRED.items():
        assert k in v, k
        if sub:
            assert sub <= set(v[k]), (k, sub - set(v[k]))


@pytest.fixture()
def photo(tmp_path):
    from reconstruct.procedural import scene

    p = tmp_path / "gen.jpg"
    Image.fromarray(scene(540, 960, seed=3)).save(p, quality=93)
    return p


def test_sign_then_verify_trusted(tmp_path, photo):
    home = tmp_path / "home"
    out = tmp_path / "signed.jpg"
    p = run_cli(["sign", photo, "-o", out, "--model", "unit-test-model", "--seed", "5",
                 "--param", "steps=20", "--ingredient", photo], home)
    assert p.returncode == 0, p.stderr
    assert "created a local CA" in p.stderr  # first use notice
    v = json.loads(run_cli(["verify", "--json", out], home).stdout)
    check_keys(v)
    assert v["label"] == "signed-generated-intact", v["reasons"]
    assert v["provenance"]["state"] == "Trusted"
    assert v["provenance"]["generator"]["model_name"] == "unit-test-model"
    assert v["watermark"]["found"] and v["watermark"]["id"] == v["provenance"]["soft_binding"]["id"]

    # without the local CA as anchor the same file is intact but untrusted
    v = json.loads(run_cli(["verify", "--json", "--no-default-anchors", out], home).stdout)
    assert v["label"] == "untrusted-signer"
    assert v["provenance"]["state"] == "Valid"
    assert "signingCredential.untrusted" in v["provenance"]["failures"]

    # an explicit anchor file (what `keys anchor` prints) makes it trusted again
    anchor = tmp_path / "ca.pem"
    a = run_cli(["keys", "anchor"], home)
    assert a.returncode == 0 and "BEGIN CERTIFICATE" in a.stdout
    anchor.write_text(a.stdout)
    v = json.loads(run_cli(["verify", "--json", "--no-default-anchors", "--trust-anchors", anchor, out], home).stdout)
    assert v["provenance"]["state"] == "Trusted"

    # human summary
    p = run_cli(["verify", out], home)
    assert p.returncode == 0 and "signed-generated-intact" in p.stdout


def test_sign_no_watermark_and_unmarked(tmp_path, photo):
    home = tmp_path / "home"
    out = tmp_path / "signed.jpg"
    p = run_cli(["sign", photo, "-o", out, "--no-watermark"], home)
    assert p.returncode == 0, p.stderr
    v = json.loads(run_cli(["verify", "--json", out], home).stdout)
    assert v["label"] == "signed-generated-intact"
    assert v["watermark"]["found"] is False
    v = json.loads(run_cli(["verify", "--json", "--no-content", photo], home).stdout)
    assert v["label"] == "unsigned-unmarked"
    assert v["provenance"]["manifest_found"] is False
    # with the content check (the default) a file without provenance gets the content's label when
    # a face was weighed, provenance's otherwise (no face, extra missing): never a signed label
    v = json.loads(run_cli(["verify", "--json", photo], home).stdout)
    assert v["label"] in ("unsigned-unmarked", "no-provenance-no-evidence", "no-provenance-looks-manipulated")
    assert v["provenance"]["manifest_found"] is False
