"""Verdict labels on files written by other C2PA implementations (c2pa-rs fixtures).

With no trust anchors, c2pa-rs reports every intact signed fixture as Valid +
signingCredential.untrusted; our label must follow from that report. The content check is off
here (these are the provenance labels; the fused verdict on the same files, content check on, is
test_verdict_regression's, with its reviewed table).
"""

import pytest

import detect

EXPECTED = {
    "C.jpg": "untrusted-signer",
    "CA.jpg": "untrusted-signer",
    "CACA.jpg": "untrusted-signer",
    "CA_ct.jpg": "untrusted-signer",
    "CIE-sig-CA.jpg": "untrusted-signer",
    "boxhash.jpg": "untrusted-signer",
    "ocsp.jpg": "untrusted-signer",
    "video1.mp4": "untrusted-signer",
    "legacy.mp4": "untrusted-signer",
    "E-sig-CA.jpg": "signed-tampered",
    "XCA.jpg": "signed-tampered",
    "cloudx.jpg": "remote-manifest-not-fetched",
    "no_alg.jpg": "manifest-unreadable",
    "prerelease.jpg": "manifest-unreadable",
    "no_manifest.jpg": "unsigned-unmarked",
    "earth_apollo17.jpg": "unsigned-unmarked",
    "sample1.png": "unsigned-unmarked",
    "sample1.webp": "unsigned-unmarked",
    "sample1.wav": "unsigned-unmarked",
    "video1_no_manifest.mp4": "unsigned-unmarked",
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_label(name, shared_data, dhs_home):
    v = detect.verify(shared_data / "c2pa_fixtures" / name,
                      detect.VerifyOptions(use_default_anchors=False, registry=None, content=False))
    assert v.label == EXPECTED[name], (v.label, v.reasons, v.provenance)
    assert v.reasons and v.content.status == "not_run"
    if EXPECTED[name] == "untrusted-signer":
        assert v.provenance.state == "Valid"
        assert v.provenance.failures == ["signingCredential.untrusted"]
    if EXPECTED[name] == "signed-tampered":
        assert v.provenance.state == "Invalid"
    # no fixture carries our watermark: zero false detections on real photos
    assert v.watermark.found is False
