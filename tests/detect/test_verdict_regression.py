"""The fused verdict (content check ON, the default, with the shipped detector) on every shared
fixture and sample is the provenance-only verdict recorded before the content check existed,
wherever the content check adds nothing.

Two tables:

- data/verdict_regression.json was recorded with the code before the verify reshaping (commit
  23a1135, `verify(path, trust_anchors=None, use_default_anchors=False, registry=None)`), for
  every image, video and audio file under ../shared/data/{c2pa_fixtures,video_samples,body_photos}
  (51 files). Its provenance part still holds everywhere: the same media type, hash, C2PA state
  and failures, watermark, and its reasons are the first reasons of the fused verdict, followed by
  exactly one content line (why the content was not weighed, or what it said).
- data/verdict_content_regression.json (written by ``python -m tests.detect.record_content_regression``,
  reviewed by hand) lists the fixtures on which the content check scored at least one face, with
  the fused label expected there. Everywhere else (no face: the c2pa_fixtures photos, which show
  no people, ryota_mask.png, the WAV files, the unreadable files) the label is the recorded
  provenance label.

Which fixtures have faces (29 of 51): body_photos/ryota.png; the three c2pa_fixtures videos
legacy.mp4, video1.mp4, video1_no_manifest.mp4 (the same clip, a person on camera); the 22 DFDC
face crops under video_samples/dfdc_two_fakes/prepared_dataset (11 fake, 11 real); the two DFDC
videos and talking_head_french.mp4. With the detector shipped when the table was last recorded
(xray aa33929ed5c1, calibrated at 1 % FPR on whole validation images, threshold 0.989), 27 of the
29 go from unsigned-unmarked to no-provenance-no-evidence (no face is over the threshold: the
highest is ryota.png, a real photo, at 0.973) and legacy.mp4 / video1.mp4 keep untrusted-signer.
When other weights ship, the sha256 check below fails until the table is recorded again; the
recorder prints every label that changes (unsigned-unmarked -> no-provenance-*: the only labels a
content check may change here, since none of these fixtures is signed as a capture by a trusted
signer), and those changes are what must be reviewed.

Videos are verified with max_frames=8 (the default is 300): the table's video scores are for that
sampling, and it keeps this test at about 30 s on 2 cores.
"""

import json
import re
from pathlib import Path

import pytest

import detect
from provenance import media

DATA = Path(__file__).parent / "data"
TABLE = json.loads((DATA / "verdict_regression.json").read_text())
CONTENT = json.loads((DATA / "verdict_content_regression.json").read_text())
OPTIONS = {"use_default_anchors": False, "registry": None, "max_frames": CONTENT["options"]["max_frames"]}
RECORD = "OMP_NUM_THREADS=1 .venv/bin/python -m tests.detect.record_content_regression"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    try:
        import torch
    except ImportError:
        yield
        return
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _shipped_sha() -> str | None:
    from detect.score import DEFAULT_WEIGHTS

    return media.sha256_file(DEFAULT_WEIGHTS) if DEFAULT_WEIGHTS.is_file() else None


SHIPPED_SHA = _shipped_sha()
TABLE_IS_CURRENT = SHIPPED_SHA == CONTENT["weights_sha256"]


def test_content_table_is_for_the_shipped_weights():
    assert TABLE_IS_CURRENT, (
        f"assets/detector_default.safetensors changed (sha256 {SHIPPED_SHA}; the content table was recorded with "
        f"{CONTENT['weights_sha256']}): record the table again with `{RECORD}`, review the label changes it "
        f"prints, and commit tests/detect/data/verdict_content_regression.json")


def test_content_table_is_a_subset_of_the_fixtures():
    assert set(CONTENT["fixtures"]) <= set(TABLE)
    for rel, rec in CONTENT["fixtures"].items():
        assert rec["old_label"] == TABLE[rel]["label"], rel
        # a content check may turn unsigned-unmarked into no-provenance-* (signed-intact captures: none here)
        assert rec["label"] == rec["old_label"] or (
            rec["old_label"] == "unsigned-unmarked" and rec["label"].startswith("no-provenance-")), rel


@pytest.mark.parametrize("rel", sorted(TABLE))
def test_same_verdict_as_before(rel, shared_data, dhs_home):
    want = TABLE[rel]
    v = detect.verify(shared_data / rel, detect.VerifyOptions(**OPTIONS))
    n = len(want["reasons"])
    got = {
        "reasons": v.reasons[:n], "media_type": v.file.media_type, "sha256": v.file.sha256,
        "state": v.provenance.state, "failures": v.provenance.failures,
        "manifest_found": v.provenance.manifest_found, "watermark_found": v.watermark.found,
    }
    assert got == {k: want[k] for k in got}
    assert len(v.reasons) == n + 1, v.reasons  # provenance's reasons, then one content line
    assert v.limits == []
    c = v.content
    if c.status != "ok":  # no face (or no torch / mediapipe here): provenance alone
        assert v.label == want["label"]
        assert v.reasons[-1].startswith("content not weighed: "), v.reasons[-1]
        if c.error and c.error.get("code") != "detect.missing_extra" and TABLE_IS_CURRENT:
            assert rel not in CONTENT["fixtures"], f"{rel}: the table says the content check found a face: {c.error}"
        return
    if not TABLE_IS_CURRENT:
        pytest.skip(f"the shipped detector changed; record the content table again ({RECORD}) and review it")
    rec = CONTENT["fixtures"].get(rel)
    assert rec is not None, f"{rel}: the content check now scores a face ({c.score}); the table has none"
    assert v.label == rec["label"], (v.label, v.reasons)
    assert (len(c.tracks) if c.tracks else len(c.faces)) == (rec["tracks"] or rec["faces"])
    assert c.score == pytest.approx(rec["score"], abs=0.02)
    assert _no_scores(v.reasons[-1]) == _no_scores(rec["content_reason"])  # the score's last digit may move


def _no_scores(text: str) -> str:
    return re.sub(r"score \d\.\d+", "score N", text)
