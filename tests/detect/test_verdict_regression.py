"""With no content check installed, the reshaped verify path (detect.verify) gives exactly the
verdicts the old provenance.report.verify gave on every shared fixture and sample.

data/verdict_regression.json was recorded with the code before the reshaping (commit 23a1135,
`verify(path, trust_anchors=None, use_default_anchors=False, registry=None)`), for every image,
video and audio file under ../shared/data/{c2pa_fixtures,video_samples,body_photos}.
"""

import json
from pathlib import Path

import pytest

import detect

TABLE = json.loads((Path(__file__).parent / "data" / "verdict_regression.json").read_text())


@pytest.mark.parametrize("rel", sorted(TABLE))
def test_same_verdict_as_before(rel, shared_data, dhs_home):
    want = TABLE[rel]
    v = detect.verify(shared_data / rel, detect.VerifyOptions(use_default_anchors=False, registry=None))
    got = {
        "label": v.label, "reasons": v.reasons, "media_type": v.file.media_type, "sha256": v.file.sha256,
        "state": v.provenance.state, "failures": v.provenance.failures,
        "manifest_found": v.provenance.manifest_found, "watermark_found": v.watermark.found,
    }
    assert got == want
    assert v.limits == []
    assert v.content.status == "not_run" and v.content.error["code"] == "content.not_available"
